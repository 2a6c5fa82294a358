// distill/core/config.hpp: configuration macros shared by every header.
//
// DISTILL_HD            marks a function callable from host and device code
//                       (__host__ __device__ under nvcc, nothing elsewhere).
// DISTILL_HAS_EXCEPTIONS 1 when the translation unit is compiled with
//                       exceptions enabled (overridable by defining it to 0).
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define DISTILL_HD __host__ __device__
#define DISTILL_DEVICE_COMPILER 1
#else
#define DISTILL_HD
#define DISTILL_DEVICE_COMPILER 0
#endif

#ifndef DISTILL_HAS_EXCEPTIONS
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || (defined(_MSC_VER) && defined(_CPPUNWIND))
#define DISTILL_HAS_EXCEPTIONS 1
#else
#define DISTILL_HAS_EXCEPTIONS 0
#endif
#endif

/// Forces inlining of the small functions the SIMD row kernels are built from (a call per block
/// that returns a struct of packs through memory costs more than the block's arithmetic).
#if defined(__GNUC__) || defined(__clang__)
#define DISTILL_FORCE_INLINE __attribute__((always_inline)) inline
#define DISTILL_LAMBDA_INLINE __attribute__((always_inline))
#else
#define DISTILL_FORCE_INLINE inline
#define DISTILL_LAMBDA_INLINE
#endif

/// Marks pointers that do not alias within a loop. GCC's -O2 vectoriser (its "very cheap" cost
/// model) does not version loops for possible aliasing, so a loop over two plain pointers stays
/// scalar; kernels use restricted pointers on paths where the operands are known to be distinct.
#if defined(__GNUC__) || defined(__clang__) || defined(__CUDACC__)
#define DISTILL_RESTRICT __restrict__
#elif defined(_MSC_VER)
#define DISTILL_RESTRICT __restrict
#else
#define DISTILL_RESTRICT
#endif

#define DISTILL_VERSION_MAJOR 0
#define DISTILL_VERSION_MINOR 1
#define DISTILL_VERSION_PATCH 0

#include <cstdint>

namespace distill {

/// Signed index type used for every extent, stride and element offset.
/// Products of extents are always formed in this 64-bit type.
using index_t = std::int64_t;

}  // namespace distill
