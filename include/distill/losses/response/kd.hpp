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
// Cost: O(N C) time, O(1) extra memory per row, no N x C temporaries. A row is
// read twice: once for the online max / sum-exp of student and teacher, once to
// form probabilities, the loss and the gradient (plus two reads for the moments
// and one more gradient pass when standardize is on). Masked (-inf) logits are
// probability 0: a -inf teacher entry contributes nothing; a -inf student entry
// where the teacher has mass makes the loss +inf.
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
    DISTILL_HD constexpr T operator()(T x) const noexcept { return (x - shift) * scale; }
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

/// The kd row kernel: loss, gradient row and d/dT of row i. Shared by every backend.
template <class T, class Label>
struct kd_row_kernel {
    row_context<T, Label> ctx;
    T tau, inv_tau;
    bool standardize;

    DISTILL_HD row_result<T> operator()(index_t i) const noexcept {
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
        online_logsumexp<T> lse_s_acc, lse_t_acc;
        for (index_t c = 0; c < cols; ++c) {
            lse_s_acc.add(fs(s[c * cs]));
            lse_t_acc.add(ft(t[c * ct]));
        }
        // log p = (z - max) - log(sum): z - max is exact near the max, whereas z - (max + log(sum))
        // would round max + log(sum) at the magnitude of z (|z / T| ~ 2e3 loses 1e-4 in float).
        const T max_s = lse_s_acc.max, max_t = lse_t_acc.max;
        const T log_sum_s = detail::log(lse_s_acc.sum), log_sum_t = detail::log(lse_t_acc.sum);
        // lt - ls = ((tp - max_t) - (sp - max_s)) - log(sum_t / sum_s): no per-element rounding at the
        // scale of log C (at T = 20 a row's KL is ~1e-3 while log-probabilities are ~log C), and no
        // cancellation of large max_t - max_s (|z / T| ~ 2e3).
        const T log_ratio = detail::log(lse_t_acc.sum / lse_s_acc.sum);
        const T gscale = w * tau;  // d(w T^2 KL)/d s' = w T^2 (ps - pt), and d s'/d z = 1/T

        T kl = 0, centred_s = 0, centred_t = 0, teacher_mean = 0, grad_dot_u = 0;
        for (index_t c = 0; c < cols; ++c) {
            const T sp = fs(s[c * cs]), tp = ft(t[c * ct]);
            const T ds = sp - max_s, dt = tp - max_t;
            const T ps = detail::exp(ds - log_sum_s), pt = detail::exp(dt - log_sum_t);
            if (pt > T(0)) {
                const T term = pt * ((dt - ds) - log_ratio);
                kl += term;
                if (ctx.want_dtemperature) {
                    centred_t += term * dt;
                    teacher_mean += pt * dt;
                }
            }
            const T d = ps - pt;
            if (ctx.want_dtemperature && d != T(0)) centred_s += d * ds;
            if (g) {
                if (!standardize) g[c * cg] = gscale * d;
                else grad_dot_u += gscale * d * (s[c * cs] - fs.shift);
            }
        }
        if (g && standardize) {
            // z = u / (eps + sigma), u = x - mean:  dx = (gz - mean(gz)) / d - (sum gz u) u / (d^2 (C-1) sigma),
            // with mean(gz) = 0 (sum of ps - pt) and the sigma term 0 when sigma = 0.
            const T coef = fs.sigma > T(0) ? grad_dot_u * fs.inv_d * fs.inv_d / (T(cols - 1) * fs.sigma) : T(0);
            for (index_t c = 0; c < cols; ++c) {
                const T x = s[c * cs];
                const T d = detail::exp((fs(x) - max_s) - log_sum_s) - detail::exp((ft(t[c * ct]) - max_t) - log_sum_t);
                g[c * cg] = gscale * d * fs.inv_d - coef * (x - fs.shift);
            }
        }
        row_result<T> r;
        r.value = w * tau * tau * kl;
        if (ctx.want_dtemperature)
            r.dtemperature = w * (T(2) * tau * kl - tau * (centred_s + centred_t - kl * teacher_mean));
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
