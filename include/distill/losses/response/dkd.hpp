// distill/losses/response/dkd.hpp: Decoupled Knowledge Distillation.
//
// B. Zhao, Q. Cui, R. Song, Y. Qiu, J. Liang, "Decoupled Knowledge Distillation", CVPR 2022
// (megvii-research/mdistiller, DKD.py; defaults alpha 1, beta 8, T 4 from its cfg.py).
// KD splits into a target part (how much mass the target class gets) and a non-target part
// (how the rest is shared); DKD weights them separately, which lets the non-target "dark
// knowledge" count even when the teacher is confident.
//
// For row i with label y, s = student_i / T, t = teacher_i / T, LSE the log-sum-exp over all
// classes and LSE' the one over the classes c != y:
//
//     log b^s = [s_y - LSE(s), LSE'(s) - LSE(s)]       (target / non-target mass; b^t likewise)
//     log q^s_c = s_c - LSE'(s) for c != y              (softmax over the non-target classes)
//     TCKD = sum_j b^t_j (log b^t_j - log b^s_j),   NCKD = sum_{c != y} q^t_c (log q^t_c - log q^s_c)
//     L_i = T^2 (alpha TCKD + beta NCKD)
//
// The target is excluded exactly (its own accumulator), not with mdistiller's -1000 mask, which
// stops excluding once the logit gap over T passes ~960. NCKD = 0 exactly when C = 2. With
// alpha = beta = 1, TCKD + b^t_1 NCKD is KD's KL(p_t || p_s).
//
// Gradients, with F = alpha TCKD + beta NCKD and d1 = b^s_1 - b^t_1 (= b^t_0 - b^s_0):
//     dTCKD/ds_c = d1 ([c != y] q^s_c - [c == y]),    dNCKD/ds_c = [c != y] (q^s_c - q^t_c)
//     dL_i/d student_c = w_i T (alpha dTCKD/ds_c + beta dNCKD/ds_c)
//     dL_i/dT = w_i [2T F - T (sum_c dF/ds_c s_c + sum_c dF/dt_c t_c)], where, as every sum of a
//       derivative over the classes is 0, s and t are shifted by the non-target maxima:
//       sum_c dF/ds_c s_c = alpha d1 (E_qs[s] - s_y) + beta sum_{c != y} (q^s_c - q^t_c) s_c
//       sum_c dF/dt_c t_c = alpha b^t_0 b^t_1 (D_0 - D_1)(t_y - E_qt[t]) + beta sum_{c != y} q^t_c (r_c - NCKD) t_c
//       with D_j = log b^t_j - log b^s_j and r_c = log q^t_c - log q^s_c.
//
// Cost: O(N C) time, O(1) extra memory per row, no N x C temporaries, written once over SIMD packs
// of floats on the CPU (scalars in double and on devices; see detail/simd.hpp). A row is read three
// times, after the first from cache: the maxima of student and teacher over the non-target classes;
// their compensated sums of exp (which also leave exp(s - max'_s) in the gradient row); then q^s
// (from that stored exp), q^t, NCKD, the d/dT sums and the gradient row. The target is excluded by
// loading its lane as -inf in every pass (never by subtracting its exp, which would cancel when it
// dominates); the all-class statistics follow by adding it (scalar). Three exp per class, as kd
// (four when q^s is needed and the gradient row cannot hold exp(s - max'_s): accumulating, or d/dT
// without a gradient).
// Masked logits (-inf) have probability 0: an entry masked in both student and teacher adds
// nothing; one masked in the student only where the teacher has mass makes the loss +inf.
// Terms with a zero probability factor are dropped, never formed as 0 * inf. (A row whose
// non-target entries are all -inf has no q and is not defined.)
#pragma once

#include <cstdint>

#include "divergence.hpp"
#include "driver.hpp"

namespace distill {

/// Parameters of dkd. Real is the type the parameters are stored in (dkd_options: double;
/// dkd_float_options for float-only builds).
template <class Real>
struct basic_dkd_options {
    Real temperature = 4;                     ///< T > 0 and finite
    reduction reduce = reduction::batchmean;  ///< batchmean, sum or none
    std::int64_t ignore_index = -100;         ///< rows whose label equals this get weight 0
    Real alpha = 1;                           ///< weight of TCKD, finite and >= 0
    Real beta = 8;                            ///< weight of NCKD, finite and >= 0
};
using dkd_options = basic_dkd_options<double>;
using dkd_float_options = basic_dkd_options<float>;

namespace detail {

/// A weight of dkd: finite and >= 0 (nan fails too).
template <class R>
status check_dkd_weight(const char* name, R value) noexcept {
    if (is_finite(value) && value >= R(0)) return {};
    return method_error(errc::invalid_parameter, "dkd", name).text(name).text(" = ").real(value)
        .text(" must be finite and >= 0");
}

/// The dkd row kernel: loss, gradient row and d/dT of row i. Shared by every backend; written once
/// over the value type V (a scalar, or a SIMD pack of floats on the CPU: see detail/simd.hpp).
template <class T, class Label>
struct dkd_row_kernel {
    /// Written for cooperative value types too (see lane_group): one GPU block per row.
    static constexpr bool cooperative_rows = true;
    /// On a GPU: 256 threads per row, 4 lanes each (one 16-byte access per thread, four
    /// independent chains); rows of 4096 columns or more with 1024 threads, one block per
    /// multiprocessor (see gpu_row_shape, and block_lanes' later_passes_backwards).
    static constexpr gpu_row_shape gpu_rows{256, 4}, gpu_long_rows{1024, 4};
    row_context<T, Label> ctx;
    T tau, inv_tau, alpha, beta;

    DISTILL_HD index_t columns() const noexcept { return ctx.student.cols; }

    DISTILL_HD row_result<T> operator()(index_t i) const noexcept { return row<row_value_t<T>>(i); }

    /// Row i with values V: the unit-stride form (plain vector loads and stores, the next row
    /// prefetched) when every row is contiguous.
    template <class V>
    DISTILL_HD row_result<T> row(index_t i) const noexcept {
        if constexpr (host_simd_v<V>)
            if (unit_stride_rows<V>(ctx.student, ctx.teacher, ctx.grad)) return row_impl<V, true>(i);
        return row_impl<V, false>(i);
    }

    template <class V, bool Unit>
    DISTILL_HD DISTILL_FORCE_INLINE row_result<T> row_impl(index_t i) const noexcept {
        const T w = ctx.row_scale(i);
        if (w == T(0)) {  // also every ignored row, whose label may be outside [0, C)
            ctx.zero_grad_row(i);
            return {};
        }
        const index_t cols = ctx.student.cols;
        const index_t cs = Unit ? 1 : ctx.student.col_stride, ct = Unit ? 1 : ctx.teacher.col_stride,
                      cg = Unit ? 1 : ctx.grad.col_stride;
        const T* s = ctx.student.row(i);
        const T* t = ctx.teacher.row(i);
        const auto y = static_cast<index_t>(ctx.labels[i]);
        T* g = ctx.grad.present() ? ctx.grad.row(i) : nullptr;
        // The gradient row holds exp(s' - max'_s) from the sums until the last pass (not when the
        // gradients accumulate into it: it is then computed again). Accumulating, the last pass adds
        // 0 at the target (q^s = q^t = 0 there); its value before the row is kept to add the
        // target's gradient to, so that the result is exactly the old value plus that gradient.
        // On a GPU (cooperative values) nothing is kept there between passes: an exp costs less
        // than a row's extra memory traffic.
        T* const student_exp = ctx.accumulate || cooperative_v<V> ? nullptr : g;
        const T target_before = g != nullptr && ctx.accumulate ? g[y * cg] : T(0);
        const T* const next_t = next_row_for_prefetch<V, Unit>(ctx.teacher, i);
        const row_scaling<T> tempered{inv_tau};

        // Passes 1 and 2: maxima and compensated sums of exp over the non-target classes (the target
        // column is loaded as -inf: excluded exactly); the next row's student is fetched meanwhile.
        const softmax_pair_stats<T> st = softmax_pair_statistics<V, /*Excluding=*/true>(
            s, cs, t, ct, cols, tempered, tempered, student_exp, cg, next_row_lines<T>{next_row_for_prefetch<V, Unit>(ctx.student, i)}, /*log_sums=*/true, /*gap=*/false, /*skip=*/y);
        // Adding the target gives the all-class max and sum-exp.
        const T sy = s[y * cs] * inv_tau, ty = t[y * ct] * inv_tau;
        const T max_so = st.max_s, max_to = st.max_t;
        online_logsumexp<T> s_all{max_so, st.sum_s, T(0)}, t_all{max_to, st.sum_t, T(0)};
        s_all.add(sy);
        t_all.add(ty);
        const T log_sum_so = st.log_sum_s, log_sum_to = st.log_sum_t;
        const T log_sum_s = detail::log(s_all.sum), log_sum_t = detail::log(t_all.sum);
        // log b = [z_y - LSE, LSE' - LSE], each as (z - max) - log(sum): exact near the maxima.
        const T log_bs0 = (sy - s_all.max) - log_sum_s, log_bs1 = (max_so - s_all.max) + (log_sum_so - log_sum_s);
        const T log_bt0 = (ty - t_all.max) - log_sum_t, log_bt1 = (max_to - t_all.max) + (log_sum_to - log_sum_t);
        const T bs0 = detail::exp(log_bs0), bs1 = detail::exp(log_bs1);
        const T bt0 = detail::exp(log_bt0), bt1 = detail::exp(log_bt1);
        // b^s_1 - b^t_1 from the smaller masses, where it does not cancel.
        const T d1 = (bs1 > T(0.5) && bt1 > T(0.5)) ? bt0 - bs0 : bs1 - bt1;
        const T tckd_0 = bt0 > T(0) ? bt0 * (log_bt0 - log_bs0) : T(0);
        const T tckd_1 = bt1 > T(0) ? bt1 * (log_bt1 - log_bs1) : T(0);
        const T tckd = tckd_0 + tckd_1;

        // Pass 3: q^s, q^t over c != y (0 at the target's lane and past the row's end); NCKD, the d/dT
        // sums and the gradient row; the next row's teacher is fetched meanwhile.
        const bool student_has_others = st.sum_s > T(0), teacher_has_others = st.sum_t > T(0);
        const V inv_sum_so = V(student_has_others ? st.inv_sum_s : T(0));
        const V inv_sum_to = V(teacher_has_others ? st.inv_sum_t : T(0));
        // log q^t_c - log q^s_c = ((t_c - max') - (s_c - max')) - log(sum'_t / sum'_s): no rounding at the
        // scale of log C per class (see kd.hpp).
        const V log_ratio = V(st.log_ratio);
        const T gscale = w * tau * ctx.grad_factor;
        const V grad_qs = V(gscale * (alpha * d1)), grad_dq = V(gscale * beta);  // of q^s and of q^s - q^t
        const bool want_qs = g != nullptr || ctx.want_dtemperature;
        const T pad = -infinity_v<T>;  // lanes past the row's end and the target: probability 0
        V nckd = V(0), qs_ds = V(0), qt_dt = V(0), term_dt = V(0), dq_ds = V(0);
        for_each_pack_revisit<V>(cols, [&](index_t c, int count) DISTILL_LAMBDA_INLINE {
            if (next_t) prefetch(next_t + c);
            const V ds = tempered(load_lanes_excluding<V>(s, c, cs, count, pad, y)) - V(max_so);
            const V dt = tempered(load_lanes_excluding<V>(t, c, ct, count, pad, y)) - V(max_to);
            const V qt = exp_nonpositive(dt) * inv_sum_to;
            const auto teacher_mass = qt > V(0);
            const V term = select(teacher_mass, qt * ((dt - ds) - log_ratio), V(0));  // 0 * inf never formed
            nckd += term;
            if (want_qs) {
                const V es = student_exp ? load_lanes<V>(student_exp + c * cg, cg, count, T(0)) : exp_nonpositive(ds);
                const V qs = es * inv_sum_so;
                if (ctx.want_dtemperature) {
                    term_dt += select(teacher_mass, term * dt, V(0));
                    qt_dt += select(teacher_mass, qt * dt, V(0));
                    qs_ds += select(qs > V(0), qs * ds, V(0));
                    dq_ds += select(qs != qt, (qs - qt) * ds, V(0));
                }
                if (g) ctx.put_grad(g + c * cg, cg, count, grad_qs * qs + grad_dq * (qs - qt));
            }
        });
        // The target's gradient, over the 0 the pass wrote (or added) there: by one worker, once
        // every worker's pass is done (cooperative value types, see lane_group).
        lane_group<V>::barrier();
        if (g && lane_group<V>::leader()) {
            if (ctx.accumulate) g[y * cg] = target_before;
            ctx.put_grad(g[y * cg], gscale * (-alpha * d1));
        }
        const T nckd_sum = lane_sum(nckd), qt_dt_sum = lane_sum(qt_dt);
        const T inner = alpha * tckd + beta * nckd_sum;
        row_result<T> r;
        r.value = w * tau * tau * inner;
        if (ctx.want_dtemperature) {
            T student_sum = beta * lane_sum(dq_ds);  // sum_c dF/ds_c (s_c - max'_s)
            if (d1 != T(0)) student_sum += alpha * d1 * (lane_sum(qs_ds) - (sy - max_so));
            T teacher_sum = beta * (lane_sum(term_dt) - nckd_sum * qt_dt_sum);  // sum_c dF/dt_c (t_c - max'_t)
            if (bt0 > T(0) && bt1 > T(0)) {
                const T log_ratio_gap = (log_bt0 - log_bs0) - (log_bt1 - log_bs1);  // D_0 - D_1
                teacher_sum += alpha * bt0 * bt1 * log_ratio_gap * ((ty - max_to) - qt_dt_sum);
            }
            r.dtemperature = w * ctx.grad_factor * (T(2) * tau * inner - tau * (student_sum + teacher_sum));
        }
        return r;
    }
};

}  // namespace detail

template <class Real>
struct response_method<basic_dkd_options<Real>> {
    using options = basic_dkd_options<Real>;
    static constexpr const char* name = "dkd";
    static constexpr bool has_temperature = true;
    static constexpr bool needs_teacher = true;
    static constexpr bool labels_required = true;
    static constexpr const char* min_classes_reason = "dkd (a target and a non-target class)";
    static constexpr index_t min_classes(const options&) noexcept { return 2; }
    static status check_params(const options& o) noexcept {
        if (status s = detail::check_tempered(name, o); !s) return s;
        if (status s = detail::check_dkd_weight("alpha", o.alpha); !s) return s;
        return detail::check_dkd_weight("beta", o.beta);
    }
    template <class T, class Label>
    static detail::dkd_row_kernel<T, Label> kernel(const options& o, const row_context<T, Label>& ctx) noexcept {
        const T tau = static_cast<T>(o.temperature);
        return {ctx, tau, T(1) / tau, static_cast<T>(o.alpha), static_cast<T>(o.beta)};
    }
};

/// dkd(student, teacher, labels[, weight][, opts]): loss, d loss / d student and d loss / d T.
/// (The shorter overload without labels compiles but reports that labels are required.)
inline constexpr response_loss_fn<basic_dkd_options> dkd{};

}  // namespace distill
