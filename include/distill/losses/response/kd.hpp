// distill/losses/response/kd.hpp: Hinton's knowledge-distillation loss.
//
// G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural
// Network", NIPS 2014 Deep Learning Workshop (arXiv:1503.02531).
// Logit standardization: S. Sun, W. Ren, J. Li, R. Wang, X. Cao, "Logit
// Standardization in Knowledge Distillation", CVPR 2024.
//
// For a temperature T > 0 and row i, with s = student_i / T, t = teacher_i / T,
// ls = log_softmax(s), lt = log_softmax(t), ps = exp(ls), pt = exp(lt):
//
//     L_i = T^2 * sum_c pt_c (lt_c - ls_c)          (= T^2 KL(p_t || p_s))
//
// reduced over rows with the weights of distill::reduction. With standardize,
// each row z of student and teacher is first replaced by
// (z - mean(z)) / (1e-7 + std(z)) (unbiased std) before the division by T.
//
// Gradients (from the same per-row statistics as the loss):
//     dL_i/d student_ic = w_i T (ps_c - pt_c)                     (no standardize)
//     dL_i/dT = w_i [2T KL_i - T (sum_c (ps_c - pt_c) s_c + sum_c pt_c (lt_c - ls_c - KL_i) t_c)]
// and through the standardization's Jacobian when standardize is on.
//
// Cost: O(N C) time, O(1) extra memory per row, no N x C temporaries. A row is read three
// times (maxima; sums of exp, which also leave exp(s - max_s) in the gradient row; loss,
// gradient and d/dT), twice more with standardize (moments) and once more for its gradient;
// after the first read the row is in cache. Three exp per class. Masked (-inf) logits are
// probability 0: a -inf teacher entry contributes nothing; a -inf student entry where the
// teacher has mass makes the loss +inf.
#pragma once

#include <cstdint>
#include <type_traits>

#include "divergence.hpp"
#include "driver.hpp"

namespace distill {

/// Parameters of kd. Real is the type the parameters are stored in: kd_options (double) for
/// general use; kd_float_options for float-only builds that must not touch double arithmetic.
template <class Real>
struct basic_kd_options {
    Real temperature = 1;                      ///< T > 0 and finite
    reduction reduce = reduction::batchmean;   ///< batchmean, sum or none
    std::int64_t ignore_index = -100;          ///< rows whose label equals this get weight 0
    bool standardize = false;                  ///< logit standardization (needs C >= 2)
};
using kd_options = basic_kd_options<double>;
using kd_float_options = basic_kd_options<float>;

namespace detail {

template <class T>
inline constexpr T logit_standardize_eps = T(1e-7);

/// s' = (x - shift) * scale: the tempered (and possibly standardized) logit of x.
template <class T>
struct row_transform {
    T shift = 0;
    T scale = 1;
    T inv_d = 1;  ///< 1 / (eps + sigma) when standardizing
    T sigma = 0;  ///< unbiased standard deviation when standardizing
    template <class V>
    DISTILL_HD DISTILL_FORCE_INLINE constexpr V operator()(V x) const noexcept {
        return (x - shift) * scale;
    }
};

template <class T>
DISTILL_HD inline row_transform<T> standardizing_transform(const T* x, index_t cols, index_t stride, T inv_tau) noexcept {
    T sum = 0;
    for (index_t c = 0; c < cols; ++c) sum += x[c * stride];
    const T mean = sum / T(cols);
    T m2 = 0;
    for (index_t c = 0; c < cols; ++c) {
        const T u = x[c * stride] - mean;
        m2 += u * u;
    }
    row_transform<T> r;
    r.shift = mean;
    r.sigma = detail::sqrt(m2 / T(cols - 1));
    r.inv_d = T(1) / (logit_standardize_eps<T> + r.sigma);
    r.scale = r.inv_d * inv_tau;
    return r;
}

/// The kd row kernel: loss, gradient row and d/dT of row i. Shared by every backend; written once
/// over the value type V (a scalar, or a SIMD pack of floats on the CPU: see detail/simd.hpp).
template <class T, class Label>
struct kd_row_kernel {
    /// Written for cooperative value types too (see lane_group): one GPU block per row.
    static constexpr bool cooperative_rows = true;
    /// On a GPU: 256 threads per row, 4 lanes each (one 16-byte access per thread, four
    /// independent chains; see gpu_row_shape).
    static constexpr gpu_row_shape gpu_rows{256, 4};
    row_context<T, Label> ctx;
    T tau, inv_tau;
    bool standardize;

    DISTILL_HD row_result<T> operator()(index_t i) const noexcept { return row<row_value_t<T>>(i); }

    /// Row i with values V: the unit-stride form (strides known, so loads and stores are plain
    /// vector moves, and the next row is prefetched) when every row is contiguous.
    template <class V>
    DISTILL_HD row_result<T> row(index_t i) const noexcept {
        if constexpr (host_simd_v<V>)
            if (!standardize && unit_stride_rows<V>(ctx.student, ctx.teacher, ctx.grad)) return row_impl<V, true, false>(i);
        return standardize ? row_impl<V, false, true>(i) : row_impl<V, false, false>(i);
    }

    /// Standardize: the logits go through row_transform (x - mean) / (eps + sigma) / T; otherwise
    /// through x / T alone, so that x / T - max is one fused multiply-add.
    template <class V, bool Unit, bool Standardize>
    DISTILL_HD DISTILL_FORCE_INLINE row_result<T> row_impl(index_t i) const noexcept {
        const index_t cols = ctx.student.cols;
        const index_t cs = Unit ? 1 : ctx.student.col_stride, ct = Unit ? 1 : ctx.teacher.col_stride,
                      cg = Unit ? 1 : ctx.grad.col_stride;
        const T* s = ctx.student.row(i);
        const T* t = ctx.teacher.row(i);
        T* g = ctx.grad.present() ? ctx.grad.row(i) : nullptr;
        const T w = ctx.row_scale(i);
        if (w == T(0)) {
            ctx.zero_grad_row(i);
            return {};
        }
        using transform = std::conditional_t<Standardize, row_transform<T>, row_scaling<T>>;
        transform fs, ft;
        fs.scale = ft.scale = inv_tau;
        if constexpr (Standardize) {
            fs = standardizing_transform(s, cols, cs, inv_tau);
            ft = standardizing_transform(t, cols, ct, inv_tau);
        }
        // The gradient row holds exp(s' - max_s) between the statistics and the gradient pass (not
        // when the gradients accumulate into it: exp(s' - max_s) is then computed again).
        // On a GPU (cooperative values) nothing is kept there between passes: an exp costs less
        // than a row's extra memory traffic.
        T* const student_exp = ctx.accumulate || cooperative_v<V> ? nullptr : g;
        // The next row is fetched while this one is computed on: its student during the sums, its
        // teacher during the loss pass, so that the memory traffic spreads over both.
        const T* const next_t = next_row_for_prefetch<V, Unit>(ctx.teacher, i);
        const softmax_pair_stats<T> st = softmax_pair_statistics<V>(
            s, cs, t, ct, cols, fs, ft, student_exp, cg, next_row_lines<T>{next_row_for_prefetch<V, Unit>(ctx.student, i)},
            /*log_sums=*/false);
        const T gscale = ctx.grad_scale(i) * tau;  // d(w T^2 KL)/d s' = w T^2 (ps - pt), and d s'/d z = 1/T
        const T pad = -infinity_v<T>;  // lanes past the row's end: probability 0, contribute nothing
        const auto student_exp_at = [&](index_t c, int count, V ds) DISTILL_LAMBDA_INLINE {
            return student_exp ? load_lanes<V>(student_exp + c * cg, cg, count, T(0)) : exp_nonpositive(ds);
        };

        // KL = sum_c pt_c (dt_c - ds_c - log_ratio) = inv_sum_t sum_c et_c (dt_c - ds_c - log_ratio), with
        // et = exp(dt), es = exp(ds): the sum runs on et and is scaled once. The gradient
        // w T (ps - pt) = (w T / sum_s) (es - et sum_s / sum_t): one fused multiply-add and a product,
        // and exactly 0 for equal rows (equal sums: the ratio is 1).
        V kl = V(0), centred_s = V(0), centred_t = V(0), teacher_mean = V(0), grad_dot_u = V(0);
        const V ratio = V(st.sum_s / st.sum_t);
        const T grad_factor = gscale * st.inv_sum_s;
        for_each_pack_revisit<V>(cols, [&](index_t c, int count) DISTILL_LAMBDA_INLINE {
            if (next_t) prefetch(next_t + c);
            const V x = load_lanes<V>(s + c * cs, cs, count, pad);
            const V ds = fs(x) - st.max_s, dt = ft(load_lanes<V>(t + c * ct, ct, count, pad)) - st.max_t;
            const V et = exp_nonpositive(dt);
            const auto teacher_mass = et > V(0);
            const V raw_term = select(teacher_mass, et * ((dt - ds) - st.log_ratio), V(0));
            kl += raw_term;
            if (ctx.want_dtemperature || Standardize || g) {
                const V es = student_exp_at(c, count, ds);
                if (ctx.want_dtemperature) {
                    const V ps = es * V(st.inv_sum_s), pt = et * V(st.inv_sum_t);
                    const V d = ps - pt;
                    centred_t += select(teacher_mass, raw_term * V(st.inv_sum_t) * dt, V(0));
                    teacher_mean += select(teacher_mass, pt * dt, V(0));
                    centred_s += select(d != V(0), d * ds, V(0));
                }
                if (g) {
                    const V d = es - et * ratio;  // (ps - pt) sum_s
                    if constexpr (!Standardize) ctx.put_grad(g + c * cg, cg, count, V(grad_factor) * d);
                    else grad_dot_u += select(d != V(0), V(grad_factor) * d * (x - fs.shift), V(0));
                }
            }
        });
        if constexpr (Standardize) {
            if (g) {
                // z = u / (eps + sigma), u = x - mean:  dx = (gz - mean(gz)) / d - (sum gz u) u / (d^2 (C-1) sigma),
                // with mean(gz) = 0 (sum of ps - pt) and the sigma term 0 when sigma = 0.
                const T dot = lane_sum(grad_dot_u);
                const T coef = fs.sigma > T(0) ? dot * fs.inv_d * fs.inv_d / (T(cols - 1) * fs.sigma) : T(0);
                for_each_pack<V>(cols, [&](index_t c, int count) DISTILL_LAMBDA_INLINE {
                    const V x = load_lanes<V>(s + c * cs, cs, count, pad);
                    const V y = load_lanes<V>(t + c * ct, ct, count, pad);
                    const V d = student_exp_at(c, count, fs(x) - st.max_s) - exp_nonpositive(ft(y) - st.max_t) * ratio;
                    ctx.put_grad(g + c * cg, cg, count, V(grad_factor) * d * fs.inv_d - V(coef) * (x - fs.shift));
                });
            }
        }
        const T loss = lane_sum(kl) * st.inv_sum_t;
        row_result<T> r;
        r.value = w * tau * tau * loss;
        if (ctx.want_dtemperature)
            r.dtemperature = w * ctx.grad_factor * (T(2) * tau * loss -
                                  tau * (lane_sum(centred_s) + lane_sum(centred_t) - loss * lane_sum(teacher_mean)));
        return r;
    }
};

}  // namespace detail

template <class Real>
struct response_method<basic_kd_options<Real>> {
    static constexpr const char* name = "kd";
    static constexpr bool has_temperature = true;
    static constexpr bool needs_teacher = true;
    static constexpr bool labels_required = false;
    static constexpr const char* min_classes_reason = "standardize";
    static constexpr index_t min_classes(const basic_kd_options<Real>& o) noexcept { return o.standardize ? 2 : 1; }
    static status check_params(const basic_kd_options<Real>& o) noexcept { return detail::check_tempered(name, o); }
    template <class T, class Label>
    static detail::kd_row_kernel<T, Label> kernel(const basic_kd_options<Real>& o, const row_context<T, Label>& ctx) noexcept {
        const T tau = static_cast<T>(o.temperature);
        return {ctx, tau, T(1) / tau, o.standardize};
    }
};

/// kd(student, teacher[, labels[, weight]][, opts]): loss, d loss / d student and d loss / d T.
inline constexpr response_loss_fn<basic_kd_options> kd{};

}  // namespace distill
