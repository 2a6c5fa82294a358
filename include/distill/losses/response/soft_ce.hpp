// distill/losses/response/soft_ce.hpp: cross-entropy against the teacher's soft targets.
//
// G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural Network", NIPS 2014
// Deep Learning Workshop (arXiv:1503.02531). DistiLLM's `forward_kl` is this loss.
//
//     L_i = -T^2 sum_c pt_c ls_c  =  kd_i + T^2 H(pt)
//     phi = -pt ls,  d phi / d ls = -pt,  d phi / d lt = -pt ls
//
// The teacher entropy does not depend on the student, so d L / d student is kd's; d L / d T
// is not (H(pt) moves with T).
//
// Cost: O(N C) time, three reads of each row, O(1) extra memory per row.
// Masked logits: a class with pt = 0 (a -inf teacher logit, or an underflow) contributes
// nothing; a -inf student entry where the teacher has mass makes the loss +inf (its
// student gradient stays finite, as kd's).
#pragma once

#include <cstdint>

#include "divergence.hpp"

namespace distill {

template <class Real>
struct basic_soft_ce_options {
    Real temperature = 1;                     ///< T > 0 and finite
    reduction reduce = reduction::batchmean;  ///< batchmean, sum or none
    std::int64_t ignore_index = -100;         ///< rows whose label equals this get weight 0
};
using soft_ce_options = basic_soft_ce_options<double>;
using soft_ce_float_options = basic_soft_ce_options<float>;

namespace detail {
template <class T>
struct soft_cross_entropy_terms {
    template <class V>
    DISTILL_HD DISTILL_FORCE_INLINE divergence_term<V> operator()(V ls, V, V, V pt, V /*ls_minus_lt*/) const noexcept {
        const V value = select(pt > V(0), -pt * ls, V(0));  // 0 * log(ps) is 0 even where ps = 0
        return {value, -pt, value};
    }
};

struct soft_ce_method {
    static constexpr const char* name = "soft_ce";
    template <class Options>
    static status check_extra(const Options&) noexcept {
        return {};
    }
    template <class T, class Options>
    static soft_cross_entropy_terms<T> terms(const Options&) noexcept {
        return {};
    }
};
}  // namespace detail

template <class Real>
struct response_method<basic_soft_ce_options<Real>>
    : detail::divergence_method_base<basic_soft_ce_options<Real>, detail::soft_ce_method> {};

/// soft_ce(student, teacher[, labels[, weight]][, opts]): loss, d loss / d student and d loss / d T.
inline constexpr response_loss_fn<basic_soft_ce_options> soft_ce{};

}  // namespace distill
