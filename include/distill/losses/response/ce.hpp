// distill/losses/response/ce.hpp: hard-label cross-entropy with optional label smoothing.
//
// The supervised term that accompanies most distillation losses, as in
// torch.nn.functional.cross_entropy (per-row weights instead of torch's per-class ones).
// Label smoothing: C. Szegedy, V. Vanhoucke, S. Ioffe, J. Shlens, Z. Wojna, "Rethinking the
// Inception Architecture for Computer Vision", CVPR 2016.
//
// No teacher, no temperature; labels are required. For row i with label y, C classes,
// ls = log_softmax(student_i) and smoothing eps in [0, 1]:
//
//     L_i = (1 - eps) (-ls_y) + (eps / C) sum_c (-ls_c)
//     dL/d student_c = w_i (ps_c - (1 - eps) [c == y] - eps / C),   ps = exp(ls)
//
// Rows whose label is ignore_index get weight 0 (ignore_index may be a valid class).
// Computed as -ls_y = (max - s_y) + log(sum) and (1/C) sum_c (-ls_c) = log(sum) - (1/C) sum_c (s_c - max),
// with max and sum = sum_c exp(s_c - max) from an online pass, so logits of 1e3 lose nothing.
//
// Cost: O(N C) time, two reads of each row (online max / sum-exp, then the smoothing sum and the
// gradient), O(1) extra memory per row.
// Masked logits: a -inf entry has probability 0 and gradient w (0 - eps/C) (no NaN). Its -ls_c
// is +inf, so the loss is +inf when eps > 0 or when the label's own entry is -inf; with eps = 0
// the other entries' terms are dropped and masked entries cost nothing. (A row that is -inf
// everywhere has no softmax and is not defined.)
#pragma once

#include <cstdint>

#include "divergence.hpp"
#include "driver.hpp"

namespace distill {

/// Parameters of ce. Real is the type the parameters are stored in (ce_options: double;
/// ce_float_options for float-only builds).
template <class Real>
struct basic_ce_options {
    reduction reduce = reduction::batchmean;  ///< batchmean, sum or none
    std::int64_t ignore_index = -100;         ///< rows whose label equals this get weight 0 (may be a class)
    Real label_smoothing = 0;                 ///< eps in [0, 1]
};
using ce_options = basic_ce_options<double>;
using ce_float_options = basic_ce_options<float>;

namespace detail {

/// The ce row kernel: loss and gradient row of row i.
template <class T, class Label>
struct ce_row_kernel {
    row_context<T, Label> ctx;
    T smoothing;  ///< eps

    DISTILL_HD row_result<T> operator()(index_t i) const noexcept {
        using V = row_value_t<T>;
        if constexpr (host_simd_v<V>)
            if (ctx.student.col_stride == 1 && (!ctx.grad.present() || ctx.grad.col_stride == 1)) return row<V, true>(i);
        return row<V, false>(i);
    }

    /// Row i over values V (SIMD packs for float on the host; unit-stride when contiguous): the
    /// maximum, a compensated sum of exp(s - max), then the gradient row and the centred sum.
    template <class V, bool Unit>
    DISTILL_HD row_result<T> row(index_t i) const noexcept {
        const T w = ctx.row_scale(i);
        if (w == T(0)) {  // also every ignored row, whose label may be outside [0, C)
            ctx.zero_grad_row(i);
            return {};
        }
        const index_t cols = ctx.student.cols, cs = Unit ? 1 : ctx.student.col_stride;
        const T* s = ctx.student.row(i);
        const auto y = static_cast<index_t>(ctx.labels[i]);
        const T pad = -infinity_v<T>;  // lanes past the row's end: probability 0

        V max_lanes = V(lowest<T>());
        for_each_pack<V>(cols, [&](index_t c, int count) DISTILL_LAMBDA_INLINE {
            max_lanes = max_of(max_lanes, load_lanes<V>(s + c * cs, cs, count, pad));
        });
        const T max_s = max_of(lowest<T>(), lane_max(max_lanes));
        blocked_sum<V> sum_lanes;
        for_each_pack<V>(cols, [&](index_t c, int count) DISTILL_LAMBDA_INLINE {
            sum_lanes.add(exp_nonpositive(load_lanes<V>(s + c * cs, cs, count, pad) - max_s));
        });
        const T sum_s = sum_lanes.value();
        const T log_sum = detail::log(sum_s);

        const T inv_cols = T(1) / T(cols);
        const T uniform = smoothing * inv_cols;  // eps / C: the smoothed target of every class
        const T hard = T(1) - smoothing;         // the label's extra target mass
        T* g = ctx.grad.present() ? ctx.grad.row(i) : nullptr;
        const index_t cg = Unit ? 1 : ctx.grad.col_stride;
        T centred_sum = 0;  // sum_c (s_c - max), needed only when eps > 0
        const T gscale = w * ctx.grad_factor;
        if (g || smoothing > T(0)) {
            const T inv_sum = T(1) / sum_s;
            V centred = V(0);
            for_each_pack<V>(cols, [&](index_t c, int count) DISTILL_LAMBDA_INLINE {
                // Lanes past the row's end read max_s: they add 0 to the centred sum (a masked -inf
                // entry still makes it -inf), and their gradient lanes are not stored.
                const V ds = load_lanes<V>(s + c * cs, cs, count, max_s) - max_s;
                if (smoothing > T(0)) centred += ds;
                if (g) ctx.put_grad(g + c * cg, cg, count, V(gscale) * (exp_nonpositive(ds) * V(inv_sum) - V(uniform)));
            });
            centred_sum = lane_sum(centred);
            // The label's extra target: one element, after the row (a pack never holds it twice).
            if (g && hard > T(0)) g[y * cg] -= gscale * hard;
        }
        // A zero factor drops its term, so that eps = 0 or eps = 1 never forms 0 * inf.
        T loss = 0;
        if (hard > T(0)) loss += hard * ((max_s - s[y * cs]) + log_sum);
        if (smoothing > T(0)) loss += smoothing * (log_sum - centred_sum * inv_cols);
        row_result<T> r;
        r.value = w * loss;
        return r;
    }
};

}  // namespace detail

template <class Real>
struct response_method<basic_ce_options<Real>> {
    using options = basic_ce_options<Real>;
    static constexpr const char* name = "ce";
    static constexpr bool has_temperature = false;
    static constexpr bool needs_teacher = false;
    static constexpr bool labels_required = true;
    static constexpr const char* min_classes_reason = "";
    static constexpr index_t min_classes(const options&) noexcept { return 1; }
    static status check_params(const options& o) noexcept {
        if (status s = detail::check_range(name, "label_smoothing", o.label_smoothing, 0.0, 1.0); !s) return s;
        return detail::check_reduction(name, o.reduce);
    }
    template <class T, class Label>
    static detail::ce_row_kernel<T, Label> kernel(const options& o, const row_context<T, Label>& ctx) noexcept {
        return {ctx, static_cast<T>(o.label_smoothing)};
    }
};

/// The convenience function object of ce (no teacher, labels required):
///   ce(student, labels[, weight][, opts])   and   ce(backend, student, labels, weight[, opts])
/// weight may be distill::none. Returns a loss_result (grad_temperature stays 0); throws
/// distill::error on bad input (with exceptions disabled, returns the status in the result).
struct ce_loss_fn {
    template <backend_object Backend, real_tensor S, integer_tensor L, optional_tensor W, class Real = double>
    auto operator()(const Backend& backend, const S& student, const L& labels, const W& weight,
                    const basic_ce_options<Real>& opts = {}) const {
        // make_response_args wants a teacher of the student's type: pass the student, then unbind it.
        auto args = make_response_args(student, student, labels, weight);
        args.teacher = {};
        return detail::run_owning(
            backend, args, opts.reduce, false, [&] { return check_args(backend, opts, args); },
            [&](const auto& outs) { return workspace_bytes(backend, opts, args, outs); },
            [&](const auto& outs, workspace ws) { return run(backend, opts, args, outs, ws); });
    }
    template <real_tensor S, integer_tensor L, optional_tensor W, class Real = double>
    auto operator()(const S& student, const L& labels, const W& weight, const basic_ce_options<Real>& opts = {}) const {
        return (*this)(default_backend_t<memory_space_t<S>>{}, student, labels, weight, opts);
    }
    template <real_tensor S, integer_tensor L, class Real = double>
    auto operator()(const S& student, const L& labels, const basic_ce_options<Real>& opts = {}) const {
        return (*this)(student, labels, none, opts);
    }
};

/// ce(student, labels[, weight][, opts]): loss and d loss / d student.
inline constexpr ce_loss_fn ce{};

}  // namespace distill
