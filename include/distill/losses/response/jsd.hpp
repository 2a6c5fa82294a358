// distill/losses/response/jsd.hpp: generalized Jensen-Shannon divergence.
//
// R. Agarwal, N. Vieillard, Y. Zhou, P. Stanczyk, S. Ramos, M. Geist, O. Bachem, "On-Policy
// Distillation of Language Models: Learning from Self-Generated Mistakes" (GKD), ICLR 2024,
// Eq. 1. beta weights the teacher (as in TRL and Liger-Kernel): with M = beta pt + (1-beta) ps,
//
//     L_i = T^2 [ beta KL(pt || M) + (1 - beta) KL(ps || M) ]
//     lm  = log M = logaddexp(lt + log beta, ls + log(1 - beta))          (log space)
//     phi = beta pt (lt - lm) + (1 - beta) ps (ls - lm)
//     d phi / d ls = (1 - beta) ps (ls - lm),   d phi / d lt = beta pt (lt - lm)
//
// (d lm / d ls = (1 - beta) ps / M, so the terms through lm add up to -(1 - beta) ps and
// cancel the 1 of d (ps ls) / d ls = ps (ls + 1)). beta = 0.5 is the ordinary JSD, bounded
// by log 2 per row (times T^2).
// beta must lie in the open interval (0, 1): at 0 and 1 the formula is identically 0
// (TRL's special cases there are kd and reverse_kd; use those instead).
//
// Cost: O(N C) time, four passes over a row (maxima; sums of exp, leaving the student's in the
// gradient row; the loss, leaving d phi / d ls there; the gradient), four exp, one division and
// one log per class, O(1) extra memory per row. On the host SIMD path, when the backend runs the
// next row after this one on the same worker (every row of a block but its last), the teacher's
// exps and then d phi / d ls go to the next row's gradient instead: two exp per class, and the
// loss pass reads neither logit row (the part of phi linear in ls - lt is summed with the
// statistics; see without_log_ratio).
// Masked logits: each half is weighted by its own probability, so a class where pt = 0
// (ps = 0) drops the teacher (student) half; M > 0 wherever either probability is, so every
// result is finite for any mask.
#pragma once

#include <cstdint>

#include "divergence.hpp"

namespace distill {

template <class Real>
struct basic_jsd_options {
    Real temperature = 1;                     ///< T > 0 and finite
    reduction reduce = reduction::batchmean;  ///< batchmean, sum or none
    std::int64_t ignore_index = -100;         ///< rows whose label equals this get weight 0
    Real beta = Real(0.5);                    ///< weight of the teacher in the mixture, in (0, 1)
};
using jsd_options = basic_jsd_options<double>;
using jsd_float_options = basic_jsd_options<float>;

namespace detail {
template <class T>
struct generalized_js_terms {
    static constexpr bool uses_log_probabilities = false;  // reads ps, pt and ls - lt only
    static constexpr bool store_student_derivative = true;  // two log-space mixtures per class
    static constexpr bool next_row_scratch = true;          // a division and a log per class besides the exps
    T beta, one_minus_beta;          // mixture weights of teacher and student
    T minus_beta, minus_one_minus_beta;
    T min_weight;  // min(beta, 1 - beta): the least M / max(ps, pt)

    /// With M = beta pt + (1 - beta) ps, the term is
    ///   phi = beta pt (lt - lm) + (1 - beta) ps (ls - lm) = -beta pt (lm - lt) - (1 - beta) ps (lm - ls),
    /// with d phi / d ls = -(1 - beta) ps (lm - ls) (the mixture's own derivatives cancel) and
    /// d phi / d lt = -beta pt (lm - lt). The two log ratios differ by d = ls - lt, which the kernel
    /// forms accurately (ls and lt are of size log C):
    ///   lm - ls = log(M / ps),   lm - lt = log(M / pt) = (lm - ls) + d.
    /// The one of the distribution that is ahead is log(M / max(ps, pt)), whose argument lies in
    /// [min(beta, 1 - beta), 1]: no overflow, and an absolute error of about 1e-7 like the
    /// log-space form logaddexp(lt + log beta, ls + log(1 - beta)); the other is it minus or plus d.
    /// One division and one log per class. A term whose probability is 0 is 0 (never 0 * inf: a
    /// logit of -inf makes d infinite).
    /// M / max(ps, pt): the log's argument, which the kernel may compute in an earlier loop. It is
    /// taken at least min(beta, 1 - beta), its exact lower bound: where both probabilities are
    /// denormal (logits ~745 below the maximum, in double) beta pt + (1 - beta) ps underflows to
    /// 0, and log(0) times a probability > 0 would be an infinite term. (The maximum is taken at
    /// least min_normal, so that both zero make no 0 / 0.)
    template <class V>
    DISTILL_HD DISTILL_FORCE_INLINE V prepare(V ps, V pt) const noexcept {
        const V ratio = (V(beta) * pt + V(one_minus_beta) * ps) / max_of(max_of(ps, pt), V(min_normal_v<T>));
        return max_of(ratio, V(min_weight));
    }

    /// The same terms without ls - lt (linear_in_log_ratio): with L = lm - ls = log(M / ps),
    ///   d phi / d ls = -(1 - beta) ps L,   phi = -(1 - beta) ps L - beta pt L - beta pt (ls - lt),
    /// as lm - lt = L + (ls - lt). The kernel sums the last part, -beta sum_c pt (ls - lt), with
    /// the row's statistics, and uses this form where ps >= least_probability_v<T>: M / ps then
    /// lies in [1 - beta, 1 / least_probability_v<T>], a division and a log per class as before.
    /// Where the student is far behind (L large), -beta pt L and -beta pt (ls - lt) nearly cancel
    /// in the row's sum: the loss then carries an absolute error of about 1e-7 (float) times
    /// beta sum_c pt |ls - lt| (of the size of KL(pt || ps)), where the log-space form had 1e-7
    /// per class; d phi / d ls keeps its accuracy. (Classes whose student exp underflows, masked
    /// ones included, add beta pt |ls - lt| with the logits taken at least 88 below their shift
    /// (clamped_gap), which the loss pass subtracts again: 1e-7 of that too.)
    static constexpr bool linear_in_log_ratio = true;
    DISTILL_HD T log_ratio_weight() const noexcept { return minus_beta; }
    template <class V>
    DISTILL_HD DISTILL_FORCE_INLINE V prepare_without_log_ratio(V ps, V pt) const noexcept {
        return (V(beta) * pt + V(one_minus_beta) * ps) / max_of(ps, V(least_probability_v<T>));
    }
    template <class V>
    DISTILL_HD DISTILL_FORCE_INLINE divergence_term<V> without_log_ratio(V ps, V pt, V prepared) const noexcept {
        // Where ps >= least_probability_v<T>, L is finite (prepared lies in [1 - beta,
        // 1 / least_probability_v<T>]), so pt = 0 gives a teacher part of 0 without a select; both
        // parts together are -M L. (The kernel replaces the lanes of smaller ps.)
        const V mixture_minus_student = log_positive(prepared);
        const V student_half = V(minus_one_minus_beta) * ps * mixture_minus_student;
        const V value = -((V(beta) * pt + V(one_minus_beta) * ps) * mixture_minus_student);
        return {value, student_half, value - student_half};
    }

    template <class V>
    DISTILL_HD DISTILL_FORCE_INLINE divergence_term<V> operator()(V ls, V lt, V ps, V pt, V ls_minus_lt) const noexcept {
        return (*this)(ls, lt, ps, pt, ls_minus_lt, prepare(ps, pt));
    }
    template <class V>
    DISTILL_HD DISTILL_FORCE_INLINE divergence_term<V> operator()(V, V, V ps, V pt, V ls_minus_lt, V prepared) const noexcept {
        const auto student_ahead = ps >= pt;
        const V near = log_positive(prepared);
        const V mixture_minus_student = select(student_ahead, near, near - ls_minus_lt);
        const V mixture_minus_teacher = select(student_ahead, near + ls_minus_lt, near);
        const V teacher_half = select(pt > V(0), V(minus_beta) * pt * mixture_minus_teacher, V(0));
        const V student_half = select(ps > V(0), V(minus_one_minus_beta) * ps * mixture_minus_student, V(0));
        return {teacher_half + student_half, student_half, teacher_half};
    }
};

struct jsd_method {
    static constexpr const char* name = "jsd";
    template <class Options>
    static status check_extra(const Options& o) noexcept {
        return check_range(name, "beta", o.beta, 0.0, 1.0, true, true);
    }
    template <class T, class Options>
    static generalized_js_terms<T> terms(const Options& o) noexcept {
        const T beta = static_cast<T>(o.beta), one_minus_beta = static_cast<T>(1 - o.beta);
        return {beta, one_minus_beta, -beta, -one_minus_beta, beta < one_minus_beta ? beta : one_minus_beta};
    }
};
}  // namespace detail

template <class Real>
struct response_method<basic_jsd_options<Real>>
    : detail::divergence_method_base<basic_jsd_options<Real>, detail::jsd_method> {};

/// jsd(student, teacher[, labels[, weight]][, opts]): loss, d loss / d student and d loss / d T.
inline constexpr response_loss_fn<basic_jsd_options> jsd{};

}  // namespace distill
