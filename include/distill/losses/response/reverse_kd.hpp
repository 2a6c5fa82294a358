// distill/losses/response/reverse_kd.hpp: reverse KL, KL(p_s || p_t).
//
// Y. Gu, L. Dong, F. Wei, M. Huang, "MiniLLM: Knowledge Distillation of Large Language
// Models", ICLR 2024. Mode-seeking: the student is penalised for mass where the teacher
// has little, which suits generative students that cannot cover every teacher mode.
//
//     L_i = T^2 sum_c ps_c (ls_c - lt_c)
//     phi = ps (ls - lt),  d phi / d ls = ps (ls - lt + 1),  d phi / d lt = -ps
//
// Cost: O(N C) time, three reads of each row, O(1) extra memory per row.
// Masked logits: a -inf student entry has ps = 0 and contributes nothing; a -inf teacher
// entry where the student has mass makes the loss +inf.
#pragma once

#include <cstdint>

#include "divergence.hpp"

namespace distill {

template <class Real>
struct basic_reverse_kd_options {
    Real temperature = 1;                     ///< T > 0 and finite
    reduction reduce = reduction::batchmean;  ///< batchmean, sum or none
    std::int64_t ignore_index = -100;         ///< rows whose label equals this get weight 0
};
using reverse_kd_options = basic_reverse_kd_options<double>;
using reverse_kd_float_options = basic_reverse_kd_options<float>;

namespace detail {
template <class T>
struct reverse_kl_terms {
    static constexpr bool reverse_kl = true;  // the loss follows from the statistics pass
    static constexpr bool uses_log_probabilities = false;  // reads ps, pt and ls - lt only
    template <class V>
    DISTILL_HD DISTILL_FORCE_INLINE divergence_term<V> operator()(V, V, V ps, V, V ls_minus_lt) const noexcept {
        const auto mass = ps > V(0);  // 0 * log(0 / pt) is 0
        return {select(mass, ps * ls_minus_lt, V(0)), select(mass, ps * (ls_minus_lt + V(1)), V(0)), -ps};
    }
};

struct reverse_kd_method {
    static constexpr const char* name = "reverse_kd";
    template <class Options>
    static status check_extra(const Options&) noexcept {
        return {};
    }
    template <class T, class Options>
    static reverse_kl_terms<T> terms(const Options&) noexcept {
        return {};
    }
};
}  // namespace detail

template <class Real>
struct response_method<basic_reverse_kd_options<Real>>
    : detail::divergence_method_base<basic_reverse_kd_options<Real>, detail::reverse_kd_method> {};

/// reverse_kd(student, teacher[, labels[, weight]][, opts]): loss, d loss / d student and d loss / d T.
inline constexpr response_loss_fn<basic_reverse_kd_options> reverse_kd{};

}  // namespace distill
