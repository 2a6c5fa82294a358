// distill/losses/response/skew_kd.hpp: skew KL and skew reverse KL (DistiLLM).
//
// J. Ko, S. Kim, T. Chen, S.-Y. Yun, "DistiLLM: Towards Streamlined Distillation for Large
// Language Models", ICML 2024 (official code: distillm/losses.py, skewed_forward_kl and
// skewed_reverse_kl). Mixing a little of the other distribution into the target of a KL
// bounds its log ratio (by -log alpha), which keeps the gradient finite where one side has
// (almost) no mass and makes training more stable than plain kd / reverse_kd.
//
// skew_kd, KL(pt || m) with m = alpha pt + (1 - alpha) ps:
//     lm  = log m = logaddexp(lt + log alpha, ls + log(1 - alpha))
//     L_i = T^2 sum_c pt (lt - lm)
//     d phi / d ls = -(1 - alpha) pt ps / m
//     d phi / d lt = pt (lt + 1 - lm) - alpha pt^2 / m
// skew_reverse_kd, KL(ps || m) with m = (1 - alpha) pt + alpha ps:
//     L_i = T^2 sum_c ps (ls - lm)
//     d phi / d ls = ps (ls + 1 - lm) - alpha ps^2 / m
//     d phi / d lt = -(1 - alpha) ps pt / m
// alpha in [0, 1]; a zero weight drops its term from m. alpha = 0 gives kd (reverse_kd);
// alpha = 1 gives m = pt (ps), a loss identically 0 with zero gradients.
// Unlike the official skewed_forward_kl (a cross-entropy), skew_kd is the true KL: it adds
// the teacher entropy, which changes the loss value but not d L / d student.
//
// Ratios such as ps / m are formed as exp(ls - lm), bounded by 1 / (1 - alpha), so no
// probability is divided by an underflowed m and no 0 * inf arises; ls - lm and lt - lm are
// log-mixtures of ls - lt alone, so they carry no rounding at the scale of log C.
//
// Cost: O(N C) time, three reads of each row, O(1) extra memory per row.
// Masked logits: a class where the weighting probability (pt for skew_kd, ps for
// skew_reverse_kd) is 0 contributes nothing. For 0 < alpha < 1, m > 0 wherever that
// probability is, so every result is finite for any mask. At alpha = 0 the method is kd
// (reverse_kd), whose loss is +inf where the other side is masked but has mass here.
#pragma once

#include <cstdint>

#include "divergence.hpp"

namespace distill {

template <class Real>
struct basic_skew_kd_options {
    Real temperature = 1;                     ///< T > 0 and finite
    reduction reduce = reduction::batchmean;  ///< batchmean, sum or none
    std::int64_t ignore_index = -100;         ///< rows whose label equals this get weight 0
    Real alpha = Real(0.1);                   ///< weight of the teacher in m, in [0, 1] (DistiLLM's default)
};
using skew_kd_options = basic_skew_kd_options<double>;
using skew_kd_float_options = basic_skew_kd_options<float>;

template <class Real>
struct basic_skew_reverse_kd_options {
    Real temperature = 1;                     ///< T > 0 and finite
    reduction reduce = reduction::batchmean;  ///< batchmean, sum or none
    std::int64_t ignore_index = -100;         ///< rows whose label equals this get weight 0
    Real alpha = Real(0.1);                   ///< weight of the student in m, in [0, 1] (DistiLLM's default)
};
using skew_reverse_kd_options = basic_skew_reverse_kd_options<double>;
using skew_reverse_kd_float_options = basic_skew_reverse_kd_options<float>;

namespace detail {

/// KL(p || m) with m = alpha p + (1 - alpha) q, for the weighting distribution p and the other
/// one q: the term with its derivatives d / d lp and d / d lq, from pp and lp - lq alone.
template <class T>
struct skewed_kl {
    T alpha, one_minus_alpha;          // weights of p and q in m
    T log_alpha, log_one_minus_alpha;  // their logs, computed once on the host

    template <class V>
    struct term {
        V value, d_log_p, d_log_q;
    };
    template <class V>
    DISTILL_HD DISTILL_FORCE_INLINE term<V> operator()(V lp_minus_lq, V pp) const noexcept {
        if (one_minus_alpha == T(0)) return {V(0), V(0), V(0)};  // m = p at alpha = 1
        const auto mass = pp > V(0);                               // p-weighted: 0 where p = 0
        // m = q at alpha = 0: the plain KL (kd or reverse_kd), whose d / d lq = -p stays finite where q = 0.
        if (alpha == T(0))
            return {select(mass, pp * lp_minus_lq, V(0)), select(mass, pp * (lp_minus_lq + V(1)), V(0)), -pp};
        // lp - lm = -log(alpha + (1 - alpha) e^(lq - lp)) <= -log alpha
        // lq - lm = -log(alpha e^(lp - lq) + 1 - alpha)   <= -log(1 - alpha)
        const V lp_minus_lm = -log_mix(V(0), log_alpha, -lp_minus_lq, log_one_minus_alpha);
        const V lq_minus_lm = -log_mix(lp_minus_lq, log_alpha, V(0), log_one_minus_alpha);
        return {select(mass, pp * lp_minus_lm, V(0)),
                select(mass, pp * (lp_minus_lm + V(1)) - V(alpha) * pp * detail::exp(lp_minus_lm), V(0)),
                select(mass, V(-one_minus_alpha) * pp * detail::exp(lq_minus_lm), V(0))};
    }
};

/// skew_kd: p = teacher, q = student. ls_minus_lt as in generalized_js_terms.
template <class T>
struct skew_forward_terms {
    static constexpr bool uses_log_probabilities = false;  // reads ps, pt and ls - lt only
    static constexpr bool store_student_derivative = true;  // log-space mixtures per class
    skewed_kl<T> kl;
    template <class V>
    DISTILL_HD DISTILL_FORCE_INLINE divergence_term<V> operator()(V, V, V, V pt, V ls_minus_lt) const noexcept {
        const auto r = kl(-ls_minus_lt, pt);
        return {r.value, r.d_log_q, r.d_log_p};
    }
};

/// skew_reverse_kd: p = student, q = teacher.
template <class T>
struct skew_reverse_terms {
    static constexpr bool uses_log_probabilities = false;  // reads ps, pt and ls - lt only
    static constexpr bool store_student_derivative = true;  // log-space mixtures per class
    skewed_kl<T> kl;
    template <class V>
    DISTILL_HD DISTILL_FORCE_INLINE divergence_term<V> operator()(V, V, V ps, V, V ls_minus_lt) const noexcept {
        const auto r = kl(ls_minus_lt, ps);
        return {r.value, r.d_log_p, r.d_log_q};
    }
};

template <class T, class Real>
skewed_kl<T> make_skewed_kl(Real alpha) noexcept {
    // alpha = 0 or 1 makes a log -inf; the kernel then takes its exact branch and never reads it.
    return {static_cast<T>(alpha), static_cast<T>(1 - alpha), static_cast<T>(detail::log(alpha)),
            static_cast<T>(detail::log1p(-alpha))};
}

template <class Options>
status check_skew_alpha(const char* method, const Options& o) noexcept {
    return check_range(method, "alpha", o.alpha, 0.0, 1.0);
}

struct skew_kd_method {
    static constexpr const char* name = "skew_kd";
    template <class Options>
    static status check_extra(const Options& o) noexcept {
        return check_skew_alpha(name, o);
    }
    template <class T, class Options>
    static skew_forward_terms<T> terms(const Options& o) noexcept {
        return {make_skewed_kl<T>(o.alpha)};
    }
};

struct skew_reverse_kd_method {
    static constexpr const char* name = "skew_reverse_kd";
    template <class Options>
    static status check_extra(const Options& o) noexcept {
        return check_skew_alpha(name, o);
    }
    template <class T, class Options>
    static skew_reverse_terms<T> terms(const Options& o) noexcept {
        return {make_skewed_kl<T>(o.alpha)};
    }
};

}  // namespace detail

template <class Real>
struct response_method<basic_skew_kd_options<Real>>
    : detail::divergence_method_base<basic_skew_kd_options<Real>, detail::skew_kd_method> {};

template <class Real>
struct response_method<basic_skew_reverse_kd_options<Real>>
    : detail::divergence_method_base<basic_skew_reverse_kd_options<Real>, detail::skew_reverse_kd_method> {};

/// skew_kd(student, teacher[, labels[, weight]][, opts]): loss, d loss / d student and d loss / d T.
inline constexpr response_loss_fn<basic_skew_kd_options> skew_kd{};
/// skew_reverse_kd(student, teacher[, labels[, weight]][, opts]): as skew_kd, with the roles swapped.
inline constexpr response_loss_fn<basic_skew_reverse_kd_options> skew_reverse_kd{};

}  // namespace distill
