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
    DISTILL_HD constexpr V operator()(V x) const noexcept {
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
    row_context<T, Label> ctx;
    T tau, inv_tau;
    bool standardize;

    DISTILL_HD row_result<T> operator()(index_t i) const noexcept { return row<row_value_t<T>>(i); }

    template <class V>
    DISTILL_HD row_result<T> row(index_t i) const noexcept {
        constexpr int lanes = lanes_v<V>;
        const index_t cols = ctx.student.cols, cs = ctx.student.col_stride, ct = ctx.teacher.col_stride,
                      cg = ctx.grad.col_stride;
        const T* s = ctx.student.row(i);
        const T* t = ctx.teacher.row(i);
        T* g = ctx.grad.present() ? ctx.grad.row(i) : nullptr;
        const T w = ctx.row_scale(i);
        if (w == T(0)) {
            ctx.zero_grad_row(i);
            return {};
        }
        row_transform<T> fs, ft;
        fs.scale = ft.scale = inv_tau;
        if (standardize) {
            fs = standardizing_transform(s, cols, cs, inv_tau);
            ft = standardizing_transform(t, cols, ct, inv_tau);
        }
        // The gradient row holds exp(s' - max_s) between the statistics and the gradient pass.
        const softmax_pair_stats<T> st = softmax_pair_statistics<V>(s, cs, t, ct, cols, fs, ft, g, cg);
        const T gscale = w * tau;  // d(w T^2 KL)/d s' = w T^2 (ps - pt), and d s'/d z = 1/T
        const T pad = -infinity_v<T>;  // lanes past the row's end: probability 0, contribute nothing

        V kl = V(0), centred_s = V(0), centred_t = V(0), teacher_mean = V(0), grad_dot_u = V(0);
        for (index_t c = 0; c < cols; c += lanes) {
            const int count = cols - c < lanes ? static_cast<int>(cols - c) : lanes;
            const V x = load_lanes<V>(s + c * cs, cs, count, pad);
            const V ds = fs(x) - st.max_s, dt = ft(load_lanes<V>(t + c * ct, ct, count, pad)) - st.max_t;
            // ps and pt by the same arithmetic: equal rows give exactly equal probabilities.
            const V ps = (g ? load_lanes<V>(g + c * cg, cg, count, T(0)) : exp_nonpositive(ds)) * V(st.inv_sum_s);
            const V pt = exp_nonpositive(dt) * V(st.inv_sum_t);
            const auto teacher_mass = pt > V(0);
            const V term = select(teacher_mass, pt * ((dt - ds) - st.log_ratio), V(0));
            kl += term;
            const V d = ps - pt;
            if (ctx.want_dtemperature) {
                centred_t += select(teacher_mass, term * dt, V(0));
                teacher_mean += select(teacher_mass, pt * dt, V(0));
                centred_s += select(d != V(0), d * ds, V(0));
            }
            if (g) {
                if (!standardize) store_lanes(g + c * cg, cg, count, V(gscale) * d);
                else grad_dot_u += select(d != V(0), V(gscale) * d * (x - fs.shift), V(0));
            }
        }
        if (g && standardize) {
            // z = u / (eps + sigma), u = x - mean:  dx = (gz - mean(gz)) / d - (sum gz u) u / (d^2 (C-1) sigma),
            // with mean(gz) = 0 (sum of ps - pt) and the sigma term 0 when sigma = 0.
            const T dot = lane_sum(grad_dot_u);
            const T coef = fs.sigma > T(0) ? dot * fs.inv_d * fs.inv_d / (T(cols - 1) * fs.sigma) : T(0);
            for (index_t c = 0; c < cols; c += lanes) {
                const int count = cols - c < lanes ? static_cast<int>(cols - c) : lanes;
                const V x = load_lanes<V>(s + c * cs, cs, count, pad);
                const V y = load_lanes<V>(t + c * ct, ct, count, pad);
                const V d = load_lanes<V>(g + c * cg, cg, count, T(0)) * V(st.inv_sum_s) -
                            exp_nonpositive(ft(y) - st.max_t) * V(st.inv_sum_t);
                store_lanes(g + c * cg, cg, count, V(gscale) * d * fs.inv_d - V(coef) * (x - fs.shift));
            }
        }
        const T loss = lane_sum(kl);
        row_result<T> r;
        r.value = w * tau * tau * loss;
        if (ctx.want_dtemperature)
            r.dtemperature = w * (T(2) * tau * loss -
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
