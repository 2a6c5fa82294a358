// distill/schemes/multi_teacher.hpp: distillation from an ensemble of K teachers.
//
// G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural Network", 2015 (an
// ensemble's averaged predictions as the soft target); S. You, C. Xu, C. Xu, D. Tao, "Learning
// from Multiple Teacher Networks", KDD 2017 (averaged softened outputs); T. Fukuda et al.,
// "Efficient Knowledge Distillation from an Ensemble of Teachers", Interspeech 2017 (averaging
// and per-sample teacher selection); K. Kwon, H. Na, H. Lee, N. S. Kim, "Adaptive Knowledge
// Distillation Based on Entropy", ICASSP 2020, and H. Zhang, D. Chen, C. Wang, "Confidence-Aware
// Multi-Teacher Knowledge Distillation" (CA-MKD), ICASSP 2022 (per-sample confidence weights).
//
// For a temperature T > 0, row i, the student's s = student_i / T, ps = softmax(s), and the
// teachers' t_k = teacher_k,i / T, q_k = softmax(t_k), k = 1..K, with fixed weights pi_k >= 0
// (normalised to sum 1; 1/K when none are given), the ensemble's distribution p is
//
//   average_probabilities (default)  p = sum_k a_k q_k,           a_k = pi_k
//   average_logits                   p = softmax(sum_k a_k t_k),  a_k = pi_k
//   confidence_weighted              p = sum_k a_k q_k,           a_k = pi_k exp(-H_k) / sum_j pi_j exp(-H_j),
//                                    H_k = -sum_c q_kc log q_kc (the entropy of the tempered teacher)
//   best_teacher                     p = q_k*,  a_k = [k == k*], k* = argmax_k q_k[y_i] with labels,
//                                    argmin_k H_k without (ties: the lowest k); no fixed weights
//
// and the row loss and its gradient with respect to the student (the teachers get none; p is a
// constant of the student) are
//
//     L_i = T^2 KL(p || ps) = T^2 sum_c p_c (log p_c - log ps_c)
//     dL_i / d student_ic = w_i T (ps_c - p_c)
//
// reduced over rows with the row weights w_i of distill::reduction (row weight times
// [label != ignore_index]). The a_k of every row can be written to an N x K output.
//
// Cost: O(N C K) time and O(1) extra memory per row: the ensemble row is formed on the fly from
// the K teacher rows (their maxima and sums of exp first), never stored, so an LLM vocabulary
// costs no N x C buffer. Each row of the student and of every teacher is read three times
// (maxima; sums of exp, with the entropies; loss and gradient). Per class, with a gradient output
// (one exp more without): 2K + 1 exp and one log when p mixes probabilities, K + 2 exp for
// best_teacher, 3 for average_logits (as kd). When p is one softmax (average_logits, best_teacher,
// a single teacher with weight) log p - log ps is formed as kd forms it ((t - max_t) - (s - max_s)
// - log(sum_t / sum_s)), so K = 1 is kd. Measured (float, SSE2, one thread, N = 64, C = 32000,
// K = 4): average_probabilities about 6x, best_teacher 3.4x, average_logits 2.4x the time of one
// kd call (kd's unit-stride, prefetching row forms are not used here yet). A -inf teacher logit is probability 0; a -inf student logit where p has mass
// makes the loss +inf. At most max_teachers (16) teachers per call: the kernel carries their
// handles by value, so that it runs on a device without a table in device memory.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <ranges>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/dense_tensor.hpp"
#include "../core/error.hpp"
#include "../detail/math.hpp"
#include "../detail/simd.hpp"
#include "../losses/response/common.hpp"
#include "../losses/response/driver.hpp"
#include "../losses/response/result.hpp"

namespace distill {

/// How the K teachers' predictions of a row are combined (see the header comment).
enum class ensemble_mode : std::uint8_t {
    average_probabilities,  ///< p = sum_k a_k softmax(t_k)
    average_logits,         ///< p = softmax(sum_k a_k t_k)
    confidence_weighted,    ///< a_k proportional to pi_k exp(-entropy of teacher k), per row
    best_teacher,           ///< per row, the teacher most sure of the label (or of lowest entropy)
};

/// The most teachers one call takes.
inline constexpr int max_teachers = 16;

/// Parameters of multi_teacher (multi_teacher_options: double; multi_teacher_float_options for
/// float-only builds).
template <class Real>
struct basic_multi_teacher_options {
    Real temperature = 1;                                 ///< T > 0 and finite
    ensemble_mode mode = ensemble_mode::average_probabilities;
    reduction reduce = reduction::batchmean;              ///< batchmean, sum or none
    std::int64_t ignore_index = -100;                     ///< rows whose label equals this get weight 0
    std::span<const Real> teacher_weights{};              ///< optional fixed pi_k (K values >= 0, not all 0;
                                                          ///< normalised); empty: 1/K. Not with best_teacher
};
using multi_teacher_options = basic_multi_teacher_options<double>;
using multi_teacher_float_options = basic_multi_teacher_options<float>;

/// Inputs: N x C student logits, K N x C teacher logits, optional labels and row weights (length N).
template <class T, class Space = host_space, class Label = std::int64_t>
struct multi_teacher_args {
    using real_type = T;
    using label_type = Label;
    using memory_space = Space;
    any_view<const T, Space> student;
    std::span<const any_view<const T, Space>> teachers{};  ///< 1 <= K <= max_teachers, each N x C
    any_view<const Label, Space> labels{};  ///< optional; best_teacher uses them to pick the teacher
    any_view<const T, Space> weight{};      ///< optional; per-row weights >= 0
};

/// Outputs, written only when the call succeeds.
template <class T, class Space = host_space>
struct multi_teacher_outputs {
    any_view<T, Space> loss;                ///< 1 value (batchmean, sum) or N (none)
    any_view<T, Space> grad_student{};      ///< optional, N x C
    any_view<T, Space> ensemble_weights{};  ///< optional, N x K: the a_k of each row (0 for rows of weight 0)
    /// The gradient written is that of grad_scale * loss (the term's weight in an objective); the
    /// loss output itself is not scaled. Finite.
    T grad_scale = T(1);
    /// Add the gradient into grad_student instead of overwriting it (the terms of an objective
    /// accumulate into one buffer). ensemble_weights are always overwritten.
    bool accumulate = false;
};

namespace detail {

inline constexpr const char* multi_teacher_name = "multi_teacher";

/// The multi-teacher row kernel: loss, gradient row and combination weights of row i, written once
/// over the value type V (a scalar, or a SIMD pack of floats on the CPU).
template <class T, class Label>
struct multi_teacher_row_kernel {
    row_context<T, Label> ctx;  ///< student, gradient, labels and row weighting (its teacher is unused)
    matrix_ref<const T> teachers[max_teachers];
    T prior[max_teachers];  ///< pi_k, normalised
    int count;
    ensemble_mode mode;
    T tau, inv_tau;
    matrix_ref<T> ensemble_weights;  ///< absent unless requested

    DISTILL_HD row_result<T> operator()(index_t i) const noexcept { return row<row_value_t<T>>(i); }

    DISTILL_HD void write_weights(index_t i, const T* a) const noexcept {
        if (!ensemble_weights.present()) return;
        T* e = ensemble_weights.row(i);
        for (int k = 0; k < count; ++k) e[k * ensemble_weights.col_stride] = a ? a[k] : T(0);
    }

    template <class V>
    DISTILL_HD row_result<T> row(index_t i) const noexcept {
        constexpr int lanes = lanes_v<V>;
        const T w = ctx.row_scale(i);
        if (w == T(0)) {
            ctx.zero_grad_row(i);
            write_weights(i, nullptr);
            return {};
        }
        const index_t cols = ctx.student.cols, cs = ctx.student.col_stride, cg = ctx.grad.col_stride;
        const T* s = ctx.student.row(i);
        T* g = ctx.grad.present() ? ctx.grad.row(i) : nullptr;
        const T* t[max_teachers];
        index_t ct[max_teachers];
        for (int k = 0; k < count; ++k) {
            t[k] = teachers[k].row(i);
            ct[k] = teachers[k].col_stride;
        }
        const T inv = inv_tau;
        const T pad = -infinity_v<T>;  // lanes past the row's end: probability 0, contribute nothing
        const bool logits = mode == ensemble_mode::average_logits;
        const bool need_entropy =
            mode == ensemble_mode::confidence_weighted || (mode == ensemble_mode::best_teacher && !ctx.labels.present());

        // sum_k coef_k t_k / T over the teachers with coef_k > 0 (so a -inf logit of an unused
        // teacher never meets a zero factor); with one coefficient 1 it is exactly t_k / T.
        const auto combined = [&](index_t c, int n, const T* coef) DISTILL_LAMBDA_INLINE {
            V z = V(0);
            for (int k = 0; k < count; ++k)
                if (coef[k] > T(0)) z += V(coef[k]) * load_lanes<V>(t[k] + c * ct[k], ct[k], n, pad);
            return z * V(inv);
        };

        // Pass 1: maxima of the tempered rows (each teacher's, or the mixed logits' in slot 0).
        V max_s = V(lowest<T>());
        V max_t[max_teachers];
        for (int k = 0; k < count; ++k) max_t[k] = V(lowest<T>());
        for (index_t c = 0; c < cols; c += lanes) {
            const int n = cols - c < lanes ? static_cast<int>(cols - c) : lanes;
            max_s = max_of(max_s, load_lanes<V>(s + c * cs, cs, n, pad) * V(inv));
            if (logits) {
                max_t[0] = max_of(max_t[0], combined(c, n, prior));
            } else {
                for (int k = 0; k < count; ++k)
                    max_t[k] = max_of(max_t[k], load_lanes<V>(t[k] + c * ct[k], ct[k], n, pad) * V(inv));
            }
        }
        T m_s = lane_max(max_s), m_t[max_teachers];
        for (int k = 0; k < (logits ? 1 : count); ++k) m_t[k] = lane_max(max_t[k]);

        // Pass 2: compensated sums of exp(x - max) (the student's stay in the gradient row until
        // pass 3, unless the gradient accumulates there) and, for the entropies, sum_c exp(dt_c) dt_c.
        T* const student_exp = ctx.accumulate ? nullptr : g;
        compensated_sum<V> sum_s, sum_t[max_teachers];
        V dot_t[max_teachers];
        for (int k = 0; k < count; ++k) dot_t[k] = V(0);
        for (index_t c = 0; c < cols; c += lanes) {
            const int n = cols - c < lanes ? static_cast<int>(cols - c) : lanes;
            const V es = exp_nonpositive(load_lanes<V>(s + c * cs, cs, n, pad) * V(inv) - V(m_s));
            if (student_exp) store_lanes(student_exp + c * cg, cg, n, es);
            sum_s.add(es);
            if (logits) {
                sum_t[0].add(exp_nonpositive(combined(c, n, prior) - V(m_t[0])));
            } else {
                for (int k = 0; k < count; ++k) {
                    const V dt = load_lanes<V>(t[k] + c * ct[k], ct[k], n, pad) * V(inv) - V(m_t[k]);
                    const V e = exp_nonpositive(dt);
                    sum_t[k].add(e);
                    if (need_entropy) dot_t[k] += select(e > V(0), e * dt, V(0));
                }
            }
        }
        const T total_s = lane_sum(sum_s.sum) - lane_sum(sum_s.lost);
        T total_t[max_teachers];
        for (int k = 0; k < (logits ? 1 : count); ++k) total_t[k] = lane_sum(sum_t[k].sum) - lane_sum(sum_t[k].lost);

        // The combination weights a_k of this row.
        T a[max_teachers];
        for (int k = 0; k < count; ++k) a[k] = prior[k];
        if (need_entropy || mode == ensemble_mode::best_teacher) {
            // H_k = log S_k - (1 / S_k) sum_c exp(dt_c) dt_c, with dt = t / T - max.
            T score[max_teachers];
            for (int k = 0; k < count; ++k) {
                if (need_entropy) {
                    score[k] = -(detail::log(total_t[k]) - lane_sum(dot_t[k]) / total_t[k]);  // -H_k
                } else {  // log q_k[y] = (t_ky / T - max) - log S_k
                    const auto y = static_cast<index_t>(ctx.labels[i]);
                    score[k] = (t[k][y * ct[k]] * inv - m_t[k]) - detail::log(total_t[k]);
                }
            }
            if (mode == ensemble_mode::best_teacher) {
                int best = 0;
                for (int k = 1; k < count; ++k)
                    if (score[k] > score[best]) best = k;
                for (int k = 0; k < count; ++k) a[k] = k == best ? T(1) : T(0);
            } else {  // a_k = softmax_k(log pi_k - H_k) over the teachers with pi_k > 0
                T top = lowest<T>();
                for (int k = 0; k < count; ++k)
                    if (prior[k] > T(0) && score[k] > top) top = score[k];
                T norm = 0;
                for (int k = 0; k < count; ++k) {
                    a[k] = prior[k] > T(0) ? prior[k] * detail::exp(score[k] - top) : T(0);
                    norm += a[k];
                }
                for (int k = 0; k < count; ++k) a[k] /= norm;
            }
        }
        write_weights(i, a);

        // One softmax (average_logits, or a single teacher with weight): log p - log ps as kd forms it.
        int active = 0, last = 0;
        for (int k = 0; k < count; ++k)
            if (a[k] > T(0)) ++active, last = k;
        const bool single = logits || active == 1;
        T unit[max_teachers];  // the one-hot coefficients of the single teacher
        for (int k = 0; k < count; ++k) unit[k] = k == last ? T(1) : T(0);
        const T* single_coef = logits ? prior : unit;
        const T single_max = logits ? m_t[0] : m_t[last];
        const T single_sum = logits ? total_t[0] : total_t[last];
        const T log_ratio = detail::log(single_sum / total_s), inv_single = T(1) / single_sum;
        // A mixture: p_c = sum_k (a_k / S_k) exp(dt_kc), log ps_c = ds_c - log S_s.
        T mix[max_teachers];
        if (!single)
            for (int k = 0; k < count; ++k) mix[k] = a[k] / total_t[k];
        const T log_sum_s = detail::log(total_s), inv_sum_s = T(1) / total_s;

        // Pass 3: loss and gradient.
        const T gscale = ctx.grad_scale(i) * tau;  // d(w T^2 KL)/d s = w T^2 (ps - p), d s / d student = 1/T
        V kl = V(0);
        for (index_t c = 0; c < cols; c += lanes) {
            const int n = cols - c < lanes ? static_cast<int>(cols - c) : lanes;
            const V ds = load_lanes<V>(s + c * cs, cs, n, pad) * V(inv) - V(m_s);
            const V ps = (student_exp ? load_lanes<V>(student_exp + c * cg, cg, n, T(0)) : exp_nonpositive(ds)) *
                         V(inv_sum_s);
            V p, diff;  // p_c and log p_c - log ps_c
            if (single) {
                const V dt = combined(c, n, single_coef) - V(single_max);
                p = exp_nonpositive(dt) * V(inv_single);
                diff = (dt - ds) - V(log_ratio);
            } else {
                p = V(0);
                for (int k = 0; k < count; ++k)
                    if (mix[k] > T(0))
                        p += exp_nonpositive(load_lanes<V>(t[k] + c * ct[k], ct[k], n, pad) * V(inv) - V(m_t[k])) *
                             V(mix[k]);
                diff = detail::log(p) - (ds - V(log_sum_s));
            }
            kl += select(p > V(0), p * diff, V(0));
            if (g) ctx.put_grad(g + c * cg, cg, n, V(gscale) * (ps - p));
        }
        row_result<T> r;
        r.value = w * tau * tau * lane_sum(kl);
        return r;
    }
};

inline bool is_valid_mode(ensemble_mode m) noexcept {
    return m == ensemble_mode::average_probabilities || m == ensemble_mode::average_logits ||
           m == ensemble_mode::confidence_weighted || m == ensemble_mode::best_teacher;
}

/// "teachers[2]" in a message.
inline status& teacher_name(status& s, std::size_t k) noexcept {
    return s.text("teachers[").number(static_cast<std::int64_t>(k)).text("]");
}

/// Temperature, reduction and mode.
template <class Real>
status check_multi_teacher_params(const basic_multi_teacher_options<Real>& o) noexcept {
    const char* name = multi_teacher_name;
    if (status s = check_temperature(name, o.temperature); !s) return s;
    if (status s = check_reduction(name, o.reduce); !s) return s;
    if (!is_valid_mode(o.mode))
        return method_error(errc::invalid_parameter, name, "mode").text("mode = ").number(static_cast<int>(o.mode))
            .text(" is not average_probabilities, average_logits, confidence_weighted or best_teacher");
    return {};
}

/// The fixed weights against K teachers: K finite values >= 0 with a sum > 0, and not with best_teacher.
template <class Real>
status check_teacher_weights(const basic_multi_teacher_options<Real>& o, std::size_t teachers) noexcept {
    const char* name = multi_teacher_name;
    if (o.teacher_weights.empty()) return {};
    if (o.mode == ensemble_mode::best_teacher)
        return method_error(errc::invalid_parameter, name, "teacher_weights")
            .text("teacher_weights are not used by best_teacher, which picks one teacher per row; leave them empty");
    if (o.teacher_weights.size() != teachers)
        return method_error(errc::shape_mismatch, name, "teacher_weights").text("teacher_weights has ")
            .number(static_cast<std::int64_t>(o.teacher_weights.size())).text(" values but there are ")
            .number(static_cast<std::int64_t>(teachers)).text(" teachers");
    Real total = 0;
    for (std::size_t k = 0; k < teachers; ++k) {
        const Real v = o.teacher_weights[k];
        if (!(v >= Real(0)) || !is_finite(v))
            return method_error(errc::invalid_parameter, name, "teacher_weights").text("teacher_weights[")
                .number(static_cast<std::int64_t>(k)).text("] = ").real(v)
                .text(" must be finite and >= 0");
        total += v;
    }
    if (!(total > Real(0)) || !is_finite(total))
        return method_error(errc::invalid_parameter, name, "teacher_weights").text("teacher_weights sum to ")
            .real(total).text(": they must have a finite sum > 0");
    return {};
}

template <class T, class Space, class Label>
response_args<T, Space, Label> multi_teacher_rows(const multi_teacher_args<T, Space, Label>& a) noexcept {
    return {a.student, a.student, a.labels, a.weight};
}

}  // namespace detail

/// Parameters and inputs: the options, the student (2-D, N, C >= 1), 1 <= K <= max_teachers
/// teachers of the student's shape, the fixed weights (K values), labels and row weights.
template <class Backend, class Real, class T, class Space, class Label>
status check_args(const Backend& backend, const basic_multi_teacher_options<Real>& opts,
                  const multi_teacher_args<T, Space, Label>& args) noexcept(Backend::is_nothrow) {
    static_assert(backend_for<Backend, Space>, "this backend cannot run on the memory space of the arguments");
    const char* name = detail::multi_teacher_name;
    const std::size_t k_count = args.teachers.size();
    if (status s = detail::check_multi_teacher_params(opts); !s) return s;
    if (status s = detail::check_logits(name, detail::multi_teacher_rows(args)); !s) return s;
    if (k_count == 0)
        return detail::method_error(errc::missing_argument, name, "teachers")
            .text("teachers is empty: at least one teacher is required");
    if (k_count > static_cast<std::size_t>(max_teachers))
        return detail::method_error(errc::shape_mismatch, name, "teachers").text("teachers has ")
            .number(static_cast<std::int64_t>(k_count)).text(" tensors but at most ").number(max_teachers)
            .text(" are supported per call");
    for (std::size_t k = 0; k < k_count; ++k) {
        const any_view<const T, Space>& v = args.teachers[k];
        status s = detail::method_error(errc::missing_argument, name, "teachers");
        if (!v.bound()) return detail::teacher_name(s, k).text(" is unbound");
        index_t size = 0;
        if (!v.checked_size(size))
            return detail::teacher_name(s = detail::method_error(errc::size_overflow, name, "teachers"), k)
                .text(" has shape ").shape(v.extents(), v.rank()).text(" whose element count or address span overflows 63 bits");
        if (v.data() == nullptr && size != 0) return detail::teacher_name(s, k).text(" has no data");
        if (v.rank() != 2 || v.extent(0) != args.student.extent(0) || v.extent(1) != args.student.extent(1))
            return detail::teacher_name(s = detail::method_error(errc::shape_mismatch, name, "teachers"), k)
                .text(" has shape ").shape(v.extents(), v.rank()).text(" but student has shape ")
                .shape(args.student.extents(), 2);
    }
    if (status s = detail::check_teacher_weights(opts, k_count); !s) return s;
    return detail::check_rows(backend, name, detail::multi_teacher_rows(args), static_cast<std::int64_t>(opts.ignore_index),
                              false);
}

/// check_args, then the outputs (loss 1 or N values, grad_student N x C, ensemble_weights N x K)
/// and aliasing (no output may overlap an input, any teacher included, or another output).
template <class Backend, class Real, class T, class Space, class Label>
status check(const Backend& backend, const basic_multi_teacher_options<Real>& opts,
             const multi_teacher_args<T, Space, Label>& args,
             const multi_teacher_outputs<T, Space>& outs) noexcept(Backend::is_nothrow) {
    const char* name = detail::multi_teacher_name;
    if (status s = check_args(backend, opts, args); !s) return s;
    const response_outputs<T, Space> shared{outs.loss, outs.grad_student, {}, outs.grad_scale, outs.accumulate};
    if (status s = detail::check_outputs(name, detail::multi_teacher_rows(args), shared, opts.reduce); !s) return s;
    const index_t n = args.student.extent(0), k_count = static_cast<index_t>(args.teachers.size());
    if (outs.ensemble_weights.bound()) {
        if (status s = detail::check_present(name, "ensemble_weights", outs.ensemble_weights); !s) return s;
        if (outs.ensemble_weights.rank() != 2 || outs.ensemble_weights.extent(0) != n ||
            outs.ensemble_weights.extent(1) != k_count)
            return detail::method_error(errc::shape_mismatch, name, "ensemble_weights")
                .text("output ensemble_weights has shape ")
                .shape(outs.ensemble_weights.extents(), outs.ensemble_weights.rank())
                .text(" but must have shape [").number(n).text(", ").number(k_count)
                .text("] (rows x teachers)");
    }
    const detail::address_range out_ranges[] = {detail::range_of(outs.loss), detail::range_of(outs.grad_student),
                                                detail::range_of(outs.ensemble_weights)};
    const char* out_names[] = {"loss", "grad_student", "ensemble_weights"};
    const detail::address_range ins[] = {detail::range_of(args.student), detail::range_of(args.labels),
                                         detail::range_of(args.weight)};
    const char* in_names[] = {"student", "labels", "weight"};
    for (int o = 0; o < 3; ++o) {
        for (int j = 0; j < 3; ++j)
            if (out_ranges[o].overlaps(ins[j]))
                return detail::method_error(errc::aliasing, name, out_names[o]).text("output ").text(out_names[o])
                    .text(" overlaps input ").text(in_names[j]);
        for (std::size_t k = 0; k < args.teachers.size(); ++k)
            if (out_ranges[o].overlaps(detail::range_of(args.teachers[k]))) {
                status s = detail::method_error(errc::aliasing, name, out_names[o]);
                return detail::teacher_name(s.text("output ").text(out_names[o]).text(" overlaps input "), k);
            }
        for (int j = o + 1; j < 3; ++j)
            if (out_ranges[o].overlaps(out_ranges[j]))
                return detail::method_error(errc::aliasing, name, out_names[o]).text("output ").text(out_names[o])
                    .text(" overlaps output ").text(out_names[j]);
    }
    return {};
}

/// Scratch the run step needs on the backend (0 on the CPU; one value per row on Thrust unless
/// the reduction is none).
template <class Backend, class Real, class T, class Space, class Label>
std::size_t workspace_bytes(const Backend&, const basic_multi_teacher_options<Real>& opts,
                            const multi_teacher_args<T, Space, Label>& args, const multi_teacher_outputs<T, Space>&) noexcept {
    const index_t n = args.student.bound() && args.student.rank() == 2 ? args.student.extent(0) : 0;
    return Backend::template rows_workspace_bytes<T>(n, opts.reduce, false);
}

/// Run step: checks (O(N + K)), then the loss and the requested outputs. noexcept and
/// allocation-free on the CPU backend; on error nothing is written.
template <class Backend, class Real, class T, class Space, class Label>
status run(const Backend& backend, const basic_multi_teacher_options<Real>& opts,
           const multi_teacher_args<T, Space, Label>& args, const multi_teacher_outputs<T, Space>& outs,
           workspace ws = {}) noexcept(Backend::is_nothrow) {
    if (status s = check(backend, opts, args, outs); !s) return s;
    if (status s = detail::check_workspace(detail::multi_teacher_name, ws, workspace_bytes(backend, opts, args, outs)); !s)
        return s;
    const response_outputs<T, Space> shared{outs.loss, outs.grad_student, {}, outs.grad_scale, outs.accumulate};
    detail::multi_teacher_row_kernel<T, Label> kernel{};
    kernel.ctx = detail::make_row_context(backend, args.student, args.student, args.labels, args.weight,
                                          static_cast<std::int64_t>(opts.ignore_index), opts.reduce, shared);
    kernel.count = static_cast<int>(args.teachers.size());
    Real total = 0;
    for (int k = 0; k < kernel.count; ++k) {
        kernel.teachers[k] = detail::to_matrix_ref(args.teachers[static_cast<std::size_t>(k)]);
        total += opts.teacher_weights.empty() ? Real(1) : opts.teacher_weights[static_cast<std::size_t>(k)];
    }
    for (int k = 0; k < kernel.count; ++k)
        kernel.prior[k] = static_cast<T>(
            (opts.teacher_weights.empty() ? Real(1) : opts.teacher_weights[static_cast<std::size_t>(k)]) / total);
    kernel.mode = opts.mode;
    kernel.tau = static_cast<T>(opts.temperature);
    kernel.inv_tau = T(1) / kernel.tau;
    kernel.ensemble_weights = detail::to_matrix_ref(outs.ensemble_weights);
    detail::run_rows_into(backend, args.student.extent(0), kernel, opts.reduce, shared, ws);
    return {};
}

// The same steps on the default backend of the arguments' memory space.
template <class Real, class T, class Space, class Label>
status check_args(const basic_multi_teacher_options<Real>& opts, const multi_teacher_args<T, Space, Label>& args) noexcept(
    default_backend_t<Space>::is_nothrow) {
    return check_args(default_backend_t<Space>{}, opts, args);
}
template <class Real, class T, class Space, class Label>
status check(const basic_multi_teacher_options<Real>& opts, const multi_teacher_args<T, Space, Label>& args,
             const multi_teacher_outputs<T, Space>& outs) noexcept(default_backend_t<Space>::is_nothrow) {
    return check(default_backend_t<Space>{}, opts, args, outs);
}
template <class Real, class T, class Space, class Label>
std::size_t workspace_bytes(const basic_multi_teacher_options<Real>& opts, const multi_teacher_args<T, Space, Label>& args,
                            const multi_teacher_outputs<T, Space>& outs) noexcept {
    return workspace_bytes(default_backend_t<Space>{}, opts, args, outs);
}
template <class Real, class T, class Space, class Label>
status run(const basic_multi_teacher_options<Real>& opts, const multi_teacher_args<T, Space, Label>& args,
           const multi_teacher_outputs<T, Space>& outs, workspace ws = {}) noexcept(default_backend_t<Space>::is_nothrow) {
    return run(default_backend_t<Space>{}, opts, args, outs, ws);
}

/// What distill::multi_teacher returns.
template <class T, class Space = host_space>
struct multi_teacher_result {
    ::distill::status status{};          ///< ok, or why nothing was computed (no-exception builds)
    T loss{};                            ///< the reduced loss (reduction none: the sum of row_losses)
    tensor<T, Space> row_losses{};       ///< reduction none only: w_i L_i, one per row
    tensor<T, Space> grad_student{};     ///< N x C, d(loss)/d student
    tensor<T, Space> ensemble_weights{};  ///< N x K, the a_k of each row
};

/// The views of a few teacher tensors (one element type, one memory space), for
/// multi_teacher(student, teacher_views(t1, t2, t3), ...). The views refer to the tensors.
template <real_tensor First, real_tensor... Rest>
auto teacher_views(const First& first, const Rest&... rest) {
    using T = value_type_t<First>;
    using Space = memory_space_t<First>;
    static_assert(((std::is_same_v<value_type_t<Rest>, T> && std::is_same_v<memory_space_t<Rest>, Space>) && ...),
                  "every teacher must have the same element type and memory space");
    return std::array<any_view<const T, Space>, 1 + sizeof...(Rest)>{any_view<const T, Space>(as_view(first)),
                                                                       any_view<const T, Space>(as_view(rest))...};
}

/// The convenience function object:
///   multi_teacher(student, teachers[, labels[, weight]][, opts])
///   multi_teacher(backend, student, teachers, labels, weight[, opts])
/// `teachers` is a range of tensors (a std::vector of matrices, teacher_views(t1, t2), a span of
/// views); labels and weight may be distill::none. Allocates the outputs and returns a
/// multi_teacher_result; throws distill::error on bad input (without exceptions: the status is in
/// the result).
struct multi_teacher_fn {
    template <backend_object Backend, real_tensor S, std::ranges::forward_range R, optional_tensor L, optional_tensor W,
              class Real = double>
        requires real_tensor<std::ranges::range_value_t<R>>
    auto operator()(const Backend& backend, const S& student, const R& teachers, const L& labels, const W& weight,
                    const basic_multi_teacher_options<Real>& opts = {}) const {
        using T = value_type_t<S>;
        using Space = memory_space_t<S>;
        using Label = detail::label_type_t<L>;
        using Teacher = std::ranges::range_value_t<R>;
        static_assert(std::is_same_v<value_type_t<Teacher>, T> && std::is_same_v<memory_space_t<Teacher>, Space>,
                      "the teachers must have the student's element type and memory space");
        detail::check_row_input_types<T, Space, L, W>();
        std::vector<any_view<const T, Space>> views;
        for (const auto& teacher : teachers) views.push_back(any_view<const T, Space>(as_view(teacher)));
        const multi_teacher_args<T, Space, Label> args{any_view<const T, Space>(as_view(student)), views,
                                                       detail::optional_view<const Label, Space>(labels),
                                                       detail::optional_view<const T, Space>(weight)};
        multi_teacher_result<T, Space> result;
        if (status s = check_args(backend, opts, args); !s) {
            result.status = detail::raise(s);
            return result;
        }
        const index_t n = args.student.extent(0), c = args.student.extent(1);
        const index_t loss_extent = opts.reduce == reduction::none ? n : 1;
        const index_t grad_extents[2] = {n, c}, weight_extents[2] = {n, static_cast<index_t>(views.size())};
        tensor<T, Space> loss(&loss_extent, 1), grad(grad_extents, 2), ensemble(weight_extents, 2);
        const multi_teacher_outputs<T, Space> outs{loss.view(), grad.view(), ensemble.view()};
        const std::size_t bytes = workspace_bytes(backend, opts, args, outs);
        const index_t scratch_extent = static_cast<index_t>((bytes + sizeof(T) - 1) / sizeof(T));
        tensor<T, Space> scratch(&scratch_extent, 1);
        if (status s = run(backend, opts, args, outs, workspace{scratch.data(), bytes}); !s) {
            result.status = detail::raise(s);
            return result;
        }
        if (opts.reduce == reduction::none)
            result.loss = backend.transform_reduce(
                n, detail::element_of<T>{detail::to_vector_ref(any_view<const T, Space>(loss.view()))}, T(0),
                detail::plus_op<T>{});
        else
            result.loss = Backend::load(loss.data());
        if (opts.reduce == reduction::none) result.row_losses = std::move(loss);
        result.grad_student = std::move(grad);
        result.ensemble_weights = std::move(ensemble);
        return result;
    }
    template <real_tensor S, std::ranges::forward_range R, optional_tensor L, optional_tensor W, class Real = double>
        requires real_tensor<std::ranges::range_value_t<R>>
    auto operator()(const S& student, const R& teachers, const L& labels, const W& weight,
                    const basic_multi_teacher_options<Real>& opts = {}) const {
        return (*this)(default_backend_t<memory_space_t<S>>{}, student, teachers, labels, weight, opts);
    }
    template <real_tensor S, std::ranges::forward_range R, optional_tensor L, class Real = double>
        requires real_tensor<std::ranges::range_value_t<R>>
    auto operator()(const S& student, const R& teachers, const L& labels,
                    const basic_multi_teacher_options<Real>& opts = {}) const {
        return (*this)(student, teachers, labels, none, opts);
    }
    template <real_tensor S, std::ranges::forward_range R, class Real = double>
        requires real_tensor<std::ranges::range_value_t<R>>
    auto operator()(const S& student, const R& teachers, const basic_multi_teacher_options<Real>& opts = {}) const {
        return (*this)(student, teachers, none, none, opts);
    }
};

/// multi_teacher(student, teachers[, labels[, weight]][, opts]): the ensemble loss, d loss / d
/// student and the per-row teacher weights.
inline constexpr multi_teacher_fn multi_teacher{};

}  // namespace distill
