// distill/losses/response/tvd.hpp: total variation distance between the tempered distributions.
//
// Y. Wen, Z. Li, W. Du, L. Mou, "f-Divergence Minimization for Sequence-Level Knowledge
// Distillation", ACL 2023; J. Ko et al., "DistiLLM", ICML 2024. Bounded (0 <= TVD <= 1 per
// row) and symmetric, so a few badly matched classes cannot dominate the loss as they can
// in a KL; its gradient has constant magnitude per class, which makes it a robust but
// slower-converging objective.
//
//     L_i = T^2 * 1/2 sum_c |pt_c - ps_c|
//     phi = |pt - ps| / 2,  d phi / d ls = -ps sign(pt - ps) / 2,  d phi / d lt = pt sign(pt - ps) / 2
//
// sign(0) = 0: the subgradient of |x| at 0 is 0, as torch's abs backward takes it. Identical
// student and teacher rows give bitwise identical probabilities here (the same operations on
// the same numbers), so such ties are exact.
//
// Cost: O(N C) time, four passes over a row (maxima; sums of exp, leaving the student's in the
// gradient row; the loss, which reads the teacher and leaves d phi / d ls there; the gradient,
// which recovers ps from it), three exp per class, O(1) extra memory per row.
// Masked logits: a -inf entry has probability 0; every term is a product with a probability,
// so the loss and gradients stay finite for any mask (disjoint supports give TVD 1).
#pragma once

#include <cstdint>

#include "divergence.hpp"

namespace distill {

template <class Real>
struct basic_tvd_options {
    Real temperature = 1;                     ///< T > 0 and finite
    reduction reduce = reduction::batchmean;  ///< batchmean, sum or none
    std::int64_t ignore_index = -100;         ///< rows whose label equals this get weight 0
};
using tvd_options = basic_tvd_options<double>;
using tvd_float_options = basic_tvd_options<float>;

namespace detail {
template <class T>
struct total_variation_terms {
    static constexpr bool uses_log_probabilities = false;  // reads ps and pt only
    static constexpr bool uses_log_ratio = false;
    static constexpr bool store_student_derivative = true;  // the gradient pass recomputes ps only
    static constexpr bool exact_ties = true;  // |pt - ps| has subgradient 0 at a tie (torch's abs)
    template <class V>
    DISTILL_HD DISTILL_FORCE_INLINE divergence_term<V> operator()(V, V, V ps, V pt, V /*ls_minus_lt*/) const noexcept {
        // The sign from comparing ps and pt themselves (pt - ps could be fused with pt's product).
        const V half_sign = select(pt > ps, V(T(0.5)), select(pt < ps, V(T(-0.5)), V(0)));
        return {half_sign * (pt - ps), -half_sign * ps, half_sign * pt};
    }
    /// ps from the stored d phi / d ls = -sign(pt - ps) ps / 2 (exact: a power-of-two scale), where
    /// it is not 0; the kernel recomputes ps at the lanes where it is (ties, ps = 0).
    template <class V>
    DISTILL_HD DISTILL_FORCE_INLINE static V student_probability(V d_log_student) noexcept {
        return select(d_log_student < V(0), V(T(-2)) * d_log_student, V(T(2)) * d_log_student);
    }
};

struct tvd_method {
    static constexpr const char* name = "tvd";
    template <class Options>
    static status check_extra(const Options&) noexcept {
        return {};
    }
    template <class T, class Options>
    static total_variation_terms<T> terms(const Options&) noexcept {
        return {};
    }
};
}  // namespace detail

template <class Real>
struct response_method<basic_tvd_options<Real>>
    : detail::divergence_method_base<basic_tvd_options<Real>, detail::tvd_method> {};

/// tvd(student, teacher[, labels[, weight]][, opts]): loss, d loss / d student and d loss / d T.
inline constexpr response_loss_fn<basic_tvd_options> tvd{};

}  // namespace distill
