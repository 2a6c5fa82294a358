// distill/losses/response/divergence.hpp: the row kernel of every divergence between the
// tempered student and teacher distributions that is a sum of per-class terms.
//
// For s = student_i / T, t = teacher_i / T, ls = log_softmax(s), lt = log_softmax(t),
// ps = exp(ls), pt = exp(lt), a method supplies the per-class term
//
//     phi_c = phi(ls_c, lt_c, ps_c, pt_c)   with  a_c = d phi_c / d ls_c,  b_c = d phi_c / d lt_c
//
// (total derivatives: ps_c = exp(ls_c) moves with ls_c) as terms(ls, lt, ps, pt, ls_minus_lt),
// where ls_minus_lt = ls - lt formed accurately (use it rather than ls - lt whenever phi depends
// on the log ratio), and the row loss is L_i = T^2 sum_c phi_c. Through the softmax Jacobian d ls_j / d s_c = delta_jc - ps_c:
//
//     dL_i / d student_ic = w_i T (a_c - ps_c A),   A = sum_j a_j
//     dL_i / d T          = w_i [2T sum phi - T (sum_c (a_c - ps_c A) s_c + sum_c (b_c - pt_c B) t_c)]
//
// with B = sum_j b_j; s and t may be shifted by any constant per row (the bracketed sums
// are invariant), which keeps them small. Three passes over a row: online max and sum-exp,
// then loss, A, B and the d/dT sums, then the gradient row (recomputing the terms; no
// per-class storage). A term whose probability is 0 contributes 0, never 0 * inf.
#pragma once

#include "../../detail/math.hpp"
#include "driver.hpp"

namespace distill {

/// A per-class divergence term and its derivatives with respect to ls and lt.
template <class T>
struct divergence_term {
    T value{};
    T d_log_student{};
    T d_log_teacher{};
};

namespace detail {

/// log(wa exp(la) + wb exp(lb)) for weights in [0, 1], in log space; a weight of 0 drops its term.
template <class T>
DISTILL_HD inline T log_mix(T la, T log_wa, bool has_a, T lb, T log_wb, bool has_b) noexcept {
    if (!has_a) return lb + log_wb;
    if (!has_b) return la + log_wa;
    const T x = la + log_wa, y = lb + log_wb;
    const T hi = x > y ? x : y, lo = x > y ? y : x;
    if (!(hi > lowest<T>())) return hi;  // both -inf
    return hi + detail::log1p(detail::exp(lo - hi));
}

/// Online max and sum of exp(x - max) in one pass: log-sum-exp = max + log(sum). The sum is
/// compensated (Kahan): a plain float sum of C ~ 1e4 terms is off by ~sqrt(C) 6e-8 ~ 1e-5
/// relative, which shifts every log-probability by as much; at T = 20 that is 4e-3 of loss.
template <class T>
struct online_logsumexp {
    T max = lowest<T>();
    T sum = 0;
    T lost = 0;  ///< what the last additions rounded away (Kahan)
    DISTILL_HD void add(T x) noexcept {
        if (x > max) {
            const T scale = detail::exp(max - x);
            sum = sum * scale;
            lost = lost * scale;
            max = x;
            x = max;
        }
        const T y = detail::exp(x - max) - lost;
        const T t = sum + y;
        lost = (t - sum) - y;
        sum = t;
    }
};

/// The row kernel shared by the divergence methods; Terms maps (ls, lt, ps, pt) to a divergence_term.
template <class T, class Label, class Terms>
struct divergence_row_kernel {
    row_context<T, Label> ctx;
    T tau, inv_tau;
    Terms terms;

    DISTILL_HD row_result<T> operator()(index_t i) const noexcept {
        const T w = ctx.row_scale(i);
        if (w == T(0)) {
            ctx.zero_grad_row(i);
            return {};
        }
        const index_t cols = ctx.student.cols, cs = ctx.student.col_stride, ct = ctx.teacher.col_stride;
        const T* s = ctx.student.row(i);
        const T* t = ctx.teacher.row(i);

        online_logsumexp<T> student_lse, teacher_lse;
        for (index_t c = 0; c < cols; ++c) {
            student_lse.add(s[c * cs] * inv_tau);
            teacher_lse.add(t[c * ct] * inv_tau);
        }
        const T max_s = student_lse.max, max_t = teacher_lse.max;
        const T log_sum_s = detail::log(student_lse.sum), log_sum_t = detail::log(teacher_lse.sum);
        // ls - lt = (ds - dt) + log(sum_t / sum_s): formed directly, it has no rounding at the scale
        // of log C, which ls and lt each carry (a divergence ~1e-6 per row at T = 20 needs that).
        const T log_sum_ratio = detail::log(teacher_lse.sum / student_lse.sum);

        // One class: its max-shifted logits, log-probabilities, probabilities and term.
        struct at_class {
            T ds, dt, ps, pt;
            divergence_term<T> f;
        };
        auto evaluate = [&](index_t c) {
            at_class e;
            e.ds = s[c * cs] * inv_tau - max_s;
            e.dt = t[c * ct] * inv_tau - max_t;
            const T ls = e.ds - log_sum_s, lt = e.dt - log_sum_t;
            e.ps = detail::exp(ls);
            e.pt = detail::exp(lt);
            e.f = terms(ls, lt, e.ps, e.pt, (e.ds - e.dt) + log_sum_ratio);
            return e;
        };

        T loss = 0, sum_a = 0, sum_b = 0, a_ds = 0, ps_ds = 0, b_dt = 0, pt_dt = 0;
        for (index_t c = 0; c < cols; ++c) {
            const at_class e = evaluate(c);
            loss += e.f.value;
            sum_a += e.f.d_log_student;
            if (ctx.want_dtemperature) {
                sum_b += e.f.d_log_teacher;
                if (e.f.d_log_student != T(0)) a_ds += e.f.d_log_student * e.ds;
                if (e.ps > T(0)) ps_ds += e.ps * e.ds;
                if (e.f.d_log_teacher != T(0)) b_dt += e.f.d_log_teacher * e.dt;
                if (e.pt > T(0)) pt_dt += e.pt * e.dt;
            }
        }
        if (ctx.grad.present()) {
            T* g = ctx.grad.row(i);
            const index_t cg = ctx.grad.col_stride;
            const T scale = w * tau;
            for (index_t c = 0; c < cols; ++c) {
                const at_class e = evaluate(c);
                g[c * cg] = scale * (e.f.d_log_student - e.ps * sum_a);
            }
        }
        row_result<T> r;
        r.value = w * tau * tau * loss;
        if (ctx.want_dtemperature)
            r.dtemperature = w * (T(2) * tau * loss - tau * (a_ds - sum_a * ps_ds + b_dt - sum_b * pt_dt));
        return r;
    }
};

/// response_method for a divergence method: the options carry temperature, reduce, ignore_index;
/// Method supplies name, check_extra(opts) and terms<T>(opts).
template <class Options, class Method>
struct divergence_method_base {
    static constexpr const char* name = Method::name;
    static constexpr bool has_temperature = true;
    static constexpr bool needs_teacher = true;
    static constexpr bool labels_required = false;
    static constexpr const char* min_classes_reason = "";
    static constexpr index_t min_classes(const Options&) noexcept { return 1; }
    static status check_params(const Options& o) noexcept {
        if (status s = check_tempered(name, o); !s) return s;
        return Method::check_extra(o);
    }
    template <class T, class Label>
    static auto kernel(const Options& o, const row_context<T, Label>& ctx) noexcept {
        const T tau = static_cast<T>(o.temperature);
        using terms_t = decltype(Method::template terms<T>(o));
        return divergence_row_kernel<T, Label, terms_t>{ctx, tau, T(1) / tau, Method::template terms<T>(o)};
    }
};

}  // namespace detail
}  // namespace distill
