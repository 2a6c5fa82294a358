// distill/detail/math.hpp: host/device elementary functions for float and double.
#pragma once

#include <cmath>
#include <limits>

#include "../core/config.hpp"

namespace distill::detail {

template <class T>
DISTILL_HD inline T exp(T x) noexcept {
#if defined(__CUDA_ARCH__)
    return ::exp(x);
#else
    return std::exp(x);
#endif
}

template <class T>
DISTILL_HD inline T log(T x) noexcept {
#if defined(__CUDA_ARCH__)
    return ::log(x);
#else
    return std::log(x);
#endif
}

template <class T>
DISTILL_HD inline T sqrt(T x) noexcept {
#if defined(__CUDA_ARCH__)
    return ::sqrt(x);
#else
    return std::sqrt(x);
#endif
}

/// Finite test that survives -ffast-math style assumptions poorly; we never enable them.
template <class T>
DISTILL_HD constexpr bool is_finite(T x) noexcept {
    return x == x && x <= std::numeric_limits<T>::max() && x >= std::numeric_limits<T>::lowest();
}

template <class T>
DISTILL_HD constexpr T lowest() noexcept {
    return std::numeric_limits<T>::lowest();
}

}  // namespace distill::detail
