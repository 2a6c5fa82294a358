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
DISTILL_HD inline T log1p(T x) noexcept {
#if defined(__CUDA_ARCH__)
    return ::log1p(x);
#else
    return std::log1p(x);
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

/// Limits as constexpr variables: usable in device code without --expt-relaxed-constexpr
/// (calling std::numeric_limits<T>::max() from a __host__ __device__ function is not).
template <class T>
inline constexpr T max_finite_v = std::numeric_limits<T>::max();
template <class T>
inline constexpr T lowest_finite_v = std::numeric_limits<T>::lowest();
template <class T>
inline constexpr T infinity_v = std::numeric_limits<T>::infinity();
template <class T>
inline constexpr T min_normal_v = std::numeric_limits<T>::min();  ///< the smallest positive normal value

template <class T>
DISTILL_HD constexpr bool is_finite(T x) noexcept {
    return x == x && x <= max_finite_v<T> && x >= lowest_finite_v<T>;
}

template <class T>
DISTILL_HD constexpr T lowest() noexcept {
    return lowest_finite_v<T>;
}

}  // namespace distill::detail
