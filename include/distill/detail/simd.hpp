// distill/detail/simd.hpp: a small float SIMD pack for the CPU row kernels.
//
// Why: the response losses are limited by exp/log throughput, not by memory, unless exp is
// vectorised; a header-only library cannot ask its users for -ffast-math (which is what lets
// compilers call vector expf), and -O2 does not auto-vectorise loops with calls. So the
// kernels are written once, as templates over a value type V that is either a scalar (T,
// on devices and in double) or float_pack (GCC/Clang vector extensions, the width of the
// widest vector unit the translation unit is compiled for: 16 lanes with AVX-512, 8 with
// AVX, 4 with SSE2/NEON). exp and log are Cephes-style polynomials accurate to about 2 ulp.
//
// DISTILL_SIMD is 1 when float_pack exists (host compilation by GCC or Clang with SSE2, AVX or
// NEON; not under nvcc, whose host pass keeps the scalar kernels); define DISTILL_NO_SIMD to force
// the scalar kernels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "../core/config.hpp"
#include "math.hpp"

#if !defined(DISTILL_NO_SIMD) && !defined(__CUDACC__) && (defined(__GNUC__) || defined(__clang__)) && \
    (defined(__SSE2__) || defined(__ARM_NEON))
#define DISTILL_SIMD 1
#if defined(__AVX512F__)
#define DISTILL_SIMD_BYTES 64
#elif defined(__AVX__)
#define DISTILL_SIMD_BYTES 32
#else
#define DISTILL_SIMD_BYTES 16
#endif
#else
#define DISTILL_SIMD 0
#endif

#if DISTILL_SIMD && (defined(__AVX512F__) || defined(__AVX__))
#include <immintrin.h>  // masked loads and stores of a row's last pack, lane reductions, mask tests
#endif

namespace distill::detail {

/// select(mask, a, b): a where mask holds, else b, for scalars (and packs below).
template <class T>
DISTILL_HD constexpr T select(bool mask, T a, T b) noexcept {
    return mask ? a : b;
}
template <class T>
DISTILL_HD constexpr T max_of(T a, T b) noexcept {
    return a > b ? a : b;
}
/// exp for arguments <= 0 (see the pack version); for scalars, exp itself.
template <class T>
DISTILL_HD T exp_nonpositive(T x) noexcept {
    return detail::exp(x);
}
/// log(x) for x > 0 and finite (see the pack version); for scalars, log itself.
template <class T>
DISTILL_HD T log_positive(T x) noexcept {
    return detail::log(x);
}
/// Whether a < b in any lane: any_lane(a < b), which packs may answer with fewer instructions.
template <class V>
DISTILL_HD DISTILL_FORCE_INLINE bool any_lane_less(V a, V b) noexcept {
    return any_lane(a < b);
}
/// Whether any lane of a mask holds (a scalar mask is a bool).
DISTILL_HD constexpr bool any_lane(bool m) noexcept { return m; }
/// The sum and the max of a value's lanes (a scalar is one lane).
template <class T>
DISTILL_HD constexpr T lane_sum(T x) noexcept {
    return x;
}
template <class T>
DISTILL_HD constexpr T lane_max(T x) noexcept {
    return x;
}

/// Lanes of a value type: 1 for a scalar.
template <class V>
inline constexpr int lanes_v = 1;

/// How the workers that hold a value type's lanes cooperate. A value type is held by one worker
/// (a scalar, float_pack) unless it says otherwise: then it is `cooperative` (a CUDA block whose
/// threads hold a few consecutive lanes each, cuda_lanes.hpp), and a row kernel written over V must
///   * touch element c + k of a pack only through lane k (load_lanes / store_lanes), which every
///     pass maps to the same worker, so that no worker reads what another wrote;
///   * call lane_sum, lane_max and any_lane (collective: every worker takes part) from code that
///     every worker runs alike;
///   * write elements outside that mapping only after barrier(): a single element from the
///     leader (dkd's target class), scattered ones through subtract_at_lanes (kd_topk's ids).
/// Cooperative value types take the plain strided form of the kernels (no prefetch, chunks, tiles
/// or next-row scratch: those are for one host core).
/// A cooperative type may also declare `later_passes_backwards = true`: a pass over a row that the
/// previous pass has just read then runs its packs last to first (for_each_pack_revisit).
template <class V>
struct lane_group {
    static constexpr bool cooperative = false;
    DISTILL_HD static constexpr void barrier() noexcept {}
    DISTILL_HD static constexpr bool leader() noexcept { return true; }
};
template <class V>
inline constexpr bool cooperative_v = lane_group<V>::cooperative;
template <class V>
inline constexpr bool later_passes_backwards_v = [] {
    if constexpr (requires { lane_group<V>::later_passes_backwards; }) return lane_group<V>::later_passes_backwards;
    else return false;
}();
/// Whether V is a pack held by one host core (float_pack): the kernels' unit-stride forms, with
/// prefetches, chunks and tiles, are for those.
template <class V>
inline constexpr bool host_simd_v = lanes_v<V> > 1 && !cooperative_v<V>;

/// One value's worth of elements from p (stride in elements): a scalar reads *p; a pack type
/// with a static load(p, stride, count, fill) reads through it.
template <class V, class T>
DISTILL_HD DISTILL_FORCE_INLINE V load_lanes(const T* p, index_t stride, int count, T fill) noexcept {
    if constexpr (requires { V::load(p, stride, count, fill); }) return V::load(p, stride, count, fill);
    else return *p;
}
template <class V, class T>
DISTILL_HD DISTILL_FORCE_INLINE void store_lanes(T* p, index_t, int, V v) noexcept {
    *p = v;
}

#if DISTILL_SIMD
struct float_pack;
struct float_mask {
    typedef std::int32_t native __attribute__((vector_size(DISTILL_SIMD_BYTES)));
    native m;
    DISTILL_FORCE_INLINE friend float_mask operator&&(float_mask a, float_mask b) noexcept { return {a.m & b.m}; }
    DISTILL_FORCE_INLINE friend float_mask operator||(float_mask a, float_mask b) noexcept { return {a.m | b.m}; }
    DISTILL_FORCE_INLINE friend float_mask operator!(float_mask a) noexcept { return {~a.m}; }
};

/// DISTILL_SIMD_BYTES / 4 floats with the arithmetic of a float.
struct float_pack {
    typedef float native __attribute__((vector_size(DISTILL_SIMD_BYTES)));
    static constexpr int width = DISTILL_SIMD_BYTES / 4;
    native v;

    float_pack() noexcept = default;
    constexpr float_pack(native x) noexcept : v(x) {}
    constexpr float_pack(float x) noexcept : v(x - native{}) {}  // broadcast (x - 0 is x, also for -0; 0 + x would cost an add)

    /// `count` (<= width) elements from p with the given stride; the other lanes hold `fill`.
    DISTILL_FORCE_INLINE static float_pack load(const float* p, std::int64_t stride, int count, float fill) noexcept {
        float_pack r(fill);
        if (stride == 1) {
            if (count == width) {
                std::memcpy(&r.v, p, sizeof r.v);
            } else {  // a row's last pack: a masked load where the ISA has one
#if defined(__AVX512F__)
                r.v = (native)_mm512_mask_loadu_ps((__m512)r.v, static_cast<__mmask16>((1u << count) - 1u), p);
#else
                std::memcpy(&r.v, p, static_cast<std::size_t>(count) * sizeof(float));
#endif
            }
        } else {
            for (int k = 0; k < count; ++k) r.v[k] = p[k * stride];
        }
        return r;
    }
    /// Writes the first `count` lanes to p with the given stride.
    DISTILL_FORCE_INLINE void store(float* p, std::int64_t stride, int count) const noexcept {
        if (stride == 1) {
            if (count == width) {
                std::memcpy(p, &v, sizeof v);
            } else {
#if defined(__AVX512F__)
                _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << count) - 1u), (__m512)v);
#else
                std::memcpy(p, &v, static_cast<std::size_t>(count) * sizeof(float));
#endif
            }
        } else {
            for (int k = 0; k < count; ++k) p[k * stride] = v[k];
        }
    }

    DISTILL_FORCE_INLINE friend float_pack operator+(float_pack a, float_pack b) noexcept { return a.v + b.v; }
    DISTILL_FORCE_INLINE friend float_pack operator-(float_pack a, float_pack b) noexcept { return a.v - b.v; }
    DISTILL_FORCE_INLINE friend float_pack operator*(float_pack a, float_pack b) noexcept { return a.v * b.v; }
    DISTILL_FORCE_INLINE friend float_pack operator/(float_pack a, float_pack b) noexcept { return a.v / b.v; }
    DISTILL_FORCE_INLINE friend float_pack operator-(float_pack a) noexcept { return -a.v; }
    DISTILL_FORCE_INLINE float_pack& operator+=(float_pack b) noexcept { return v += b.v, *this; }
    DISTILL_FORCE_INLINE float_pack& operator-=(float_pack b) noexcept { return v -= b.v, *this; }
    DISTILL_FORCE_INLINE friend float_mask operator<(float_pack a, float_pack b) noexcept { return {a.v < b.v}; }
    DISTILL_FORCE_INLINE friend float_mask operator>(float_pack a, float_pack b) noexcept { return {a.v > b.v}; }
    DISTILL_FORCE_INLINE friend float_mask operator<=(float_pack a, float_pack b) noexcept { return {a.v <= b.v}; }
    DISTILL_FORCE_INLINE friend float_mask operator>=(float_pack a, float_pack b) noexcept { return {a.v >= b.v}; }
    DISTILL_FORCE_INLINE friend float_mask operator==(float_pack a, float_pack b) noexcept { return {a.v == b.v}; }
    DISTILL_FORCE_INLINE friend float_mask operator!=(float_pack a, float_pack b) noexcept { return {a.v != b.v}; }
};

template <>
inline constexpr int lanes_v<float_pack> = float_pack::width;
template <>
DISTILL_FORCE_INLINE float_pack load_lanes<float_pack, float>(const float* p, index_t stride, int count, float fill) noexcept {
    return float_pack::load(p, stride, count, fill);
}
template <>
DISTILL_FORCE_INLINE void store_lanes<float_pack, float>(float* p, index_t stride, int count, float_pack v) noexcept {
    v.store(p, stride, count);
}

DISTILL_FORCE_INLINE float_pack select(float_mask m, float_pack a, float_pack b) noexcept { return m.m ? a.v : b.v; }
DISTILL_FORCE_INLINE bool any_lane(float_mask m) noexcept {
#if defined(__AVX512F__) && DISTILL_SIMD_BYTES == 64
    return _mm512_test_epi32_mask((__m512i)m.m, (__m512i)m.m) != 0;  // one test into a mask register
#elif defined(__AVX__) && DISTILL_SIMD_BYTES == 32
    return !_mm256_testz_si256((__m256i)m.m, (__m256i)m.m);
#else
    float_mask::native zero{};
    return std::memcmp(&m.m, &zero, sizeof zero) != 0;
#endif
}
#if defined(__AVX512F__) && DISTILL_SIMD_BYTES == 64
/// One compare into a mask register and its test (any_lane(a < b) would also widen the mask to a vector and test that).
template <>
DISTILL_FORCE_INLINE bool any_lane_less<float_pack>(float_pack a, float_pack b) noexcept {
    return _mm512_cmp_ps_mask((__m512)a.v, (__m512)b.v, _CMP_LT_OQ) != 0;
}
#endif
DISTILL_FORCE_INLINE float_pack max_of(float_pack a, float_pack b) noexcept { return a.v > b.v ? a.v : b.v; }
DISTILL_FORCE_INLINE float lane_sum(float_pack x) noexcept {
    // Pairwise: halves added until one lane is left (more accurate than a running sum).
#if defined(__AVX512F__)
    const __m512 v = (__m512)x.v;
    const __m256 h8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
    const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
    return _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
#else
    float lanes[float_pack::width];
    std::memcpy(lanes, &x.v, sizeof lanes);
    for (int n = float_pack::width / 2; n > 0; n /= 2)
        for (int k = 0; k < n; ++k) lanes[k] += lanes[k + n];
    return lanes[0];
#endif
}
DISTILL_FORCE_INLINE float lane_max(float_pack x) noexcept {
#if defined(__AVX512F__)
    const __m512 v = (__m512)x.v;
    const __m256 h8 = _mm256_max_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    const __m128 h4 = _mm_max_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
    const __m128 h2 = _mm_max_ps(h4, _mm_movehl_ps(h4, h4));
    return _mm_cvtss_f32(_mm_max_ss(h2, _mm_movehdup_ps(h2)));
#else
    float m = x.v[0];
    for (int k = 1; k < float_pack::width; ++k) m = x.v[k] > m ? x.v[k] : m;
    return m;
#endif
}

/// 2^n for integer-valued n in [-126, 127], by building the exponent bits.
DISTILL_FORCE_INLINE float_pack exp2_integer(float_pack n) noexcept {
    const float_mask::native bits = (__builtin_convertvector(n.v, float_mask::native) + 127) << 23;
    float_pack r;
    std::memcpy(&r.v, &bits, sizeof r.v);
    return r;
}

/// exp(x) for every lane: n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2], then
/// exp(r) by a degree-6 minimax polynomial (about 1 ulp) and 2^n from the exponent bits.
/// 0 below -87.3 (and for -inf), +inf above 88.7, nan for nan (nan flows through every step).
DISTILL_FORCE_INLINE float_pack exp(float_pack x) noexcept {
    const float_pack xc = max_of(float_pack(-87.3f), select(x > float_pack(88.7f), float_pack(88.7f), x));
    // round(x / ln 2) with the 1.5 * 2^23 trick (exact for |x / ln 2| < 2^22, no -ffast-math needed)
    const float_pack n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const float_pack r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
    float_pack p = 1.3819487067e-3f;  // 1 + r + r^2 p(r): minimax on [-ln2/2, ln2/2], 3e-9 relative
    p = p * r + 8.3687063307e-3f;
    p = p * r + 4.1668299586e-2f;
    p = p * r + 1.6666521132e-1f;
    p = p * r + 4.9999994040e-1f;
    const float_pack y = (p * (r * r) + r + 1.0f) * exp2_integer(n);
    return select(x < float_pack(-87.3f), float_pack(0.0f),
                  select(x > float_pack(88.7f), float_pack(std::numeric_limits<float>::infinity()), y));
}

/// exp(x) for x <= 0 (or -inf, or nan): the exp of the softmax passes, whose arguments are
/// logits minus their row maximum or log-probabilities. At most 1 ulp; skips exp's overflow
/// handling; results under 2^-126 (denormals) flush to 0, so exp(-inf) is exactly 0; nan stays nan.
DISTILL_FORCE_INLINE float_pack exp_nonpositive(float_pack x) noexcept {
#if defined(__AVX512F__) && DISTILL_SIMD_BYTES == 64
    // AVX-512: exp(x) = 2^(m / 32) exp(r), m = round(32 x / ln 2), r = x - m ln 2 / 32 in
    // [-ln2/64, ln2/64]. 2^((m mod 32) / 32) comes from a 32-entry table (one two-register permute
    // indexed by k's low bits), exp(r) - 1 from a degree-3 polynomial (error r^4 / 24 < 6e-10),
    // 2^floor(m / 32) from vscalefps; at most 1 ulp. Four FMAs fewer than the polynomial form
    // below, which matters because the softmax passes are bound by FMA throughput. Lanes below
    // ln(FLT_MIN) (and -inf) give 0 through the scale's zero mask; nan stays nan.
    alignas(64) static constexpr float two_to_j_over_32[32] = {
        0x1.0p+0f, 0x1.059b0ep+0f, 0x1.0b5586p+0f, 0x1.11301ep+0f, 0x1.172b84p+0f, 0x1.1d4874p+0f, 0x1.2387a6p+0f, 0x1.29e9ep+0f,
        0x1.306fep+0f, 0x1.371a74p+0f, 0x1.3dea64p+0f, 0x1.44e086p+0f, 0x1.4bfdaep+0f, 0x1.5342b6p+0f, 0x1.5ab07ep+0f, 0x1.6247ecp+0f,
        0x1.6a09e6p+0f, 0x1.71f75ep+0f, 0x1.7a1148p+0f, 0x1.82589ap+0f, 0x1.8ace54p+0f, 0x1.93737cp+0f, 0x1.9c4918p+0f, 0x1.a5503cp+0f,
        0x1.ae89fap+0f, 0x1.b7f77p+0f, 0x1.c199bep+0f, 0x1.cb720ep+0f, 0x1.d5818ep+0f, 0x1.dfc974p+0f, 0x1.ea4afap+0f, 0x1.f50766p+0f,
    };
    const __m512 v = (__m512)x.v;
    const __m512 shifter = _mm512_set1_ps(12582912.0f);  // 1.5 * 2^23: k's low bits hold m
    const __m512 k = _mm512_fmadd_ps(v, _mm512_set1_ps(46.16624130844683f), shifter);  // 32 / ln 2
    const __m512 m = _mm512_sub_ps(k, shifter);
    __m512 r = _mm512_fnmadd_ps(m, _mm512_set1_ps(0x1.62ep-6f), v);  // ln 2 / 32 in two parts: m * hi is exact
    r = _mm512_fnmadd_ps(m, _mm512_set1_ps(9.98318228e-07f), r);
    const __m512i k_bits = _mm512_castps_si512(k);
    const __m512 fraction = _mm512_permutex2var_ps(_mm512_load_ps(two_to_j_over_32), k_bits,
                                                   _mm512_load_ps(two_to_j_over_32 + 16));  // low 5 bits index
    const __m512 q = _mm512_fmadd_ps(_mm512_fmadd_ps(r, _mm512_set1_ps(1.0f / 6.0f), _mm512_set1_ps(0.5f)),
                                     _mm512_mul_ps(r, r), r);  // exp(r) - 1
    const __m512 mantissa = _mm512_fmadd_ps(fraction, q, fraction);
    const __m512 whole = _mm512_mul_ps(m, _mm512_set1_ps(1.0f / 32.0f));  // vscalefps takes floor(m / 32)
    const __mmask16 normal = _mm512_cmp_ps_mask(v, _mm512_set1_ps(-87.33654f), _CMP_NLT_UQ);
    return float_pack((float_pack::native)_mm512_maskz_scalef_ps(normal, mantissa, whole));
#else
    // Underflow costs no extra select: below -88, n = -127 builds the bit pattern 0, so the
    // result is exactly 0.
    // k = x / ln 2 + 1.5 * 2^23 + 127: its low mantissa bits hold round(x / ln 2) + 127, the
    // biased exponent of 2^n, which a shift by 23 moves into place (the higher bits fall off).
    constexpr float shifter = 12582912.0f + 127.0f;
    const float_pack xc = max_of(float_pack(-88.0f), x);
    const float_pack k = xc * 1.44269504088896341f + shifter;
    const float_pack n = k - shifter;
    const float_pack r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
    float_pack p = 1.3819487067e-3f;  // 1 + r + r^2 p(r): minimax on [-ln2/2, ln2/2], 3e-9 relative
    p = p * r + 8.3687063307e-3f;
    p = p * r + 4.1668299586e-2f;
    p = p * r + 1.6666521132e-1f;
    p = p * r + 4.9999994040e-1f;
    float_mask::native bits;
    std::memcpy(&bits, &k.v, sizeof bits);
    bits = bits << 23;
    float_pack two_n;
    std::memcpy(&two_n.v, &bits, sizeof bits);
    return (p * (r * r) + r + 1.0f) * two_n;
#endif
}

/// log(x) for x > 0 and finite, without the special cases: a table and a short polynomial on
/// AVX-512, the Cephes polynomial elsewhere.
DISTILL_FORCE_INLINE float_pack log_positive(float_pack x) noexcept {
#if defined(__AVX512F__) && DISTILL_SIMD_BYTES == 64
    // AVX-512: x = m 2^k with m in [0.75, 1.5) (vgetmantps; denormals too), and m = c (1 + r) with
    // c the centre of m's 1/32-wide (1/64 below 1) interval, which the top five mantissa bits of m
    // name: log x = k ln 2 + log c + log1p(r), |r| <= 1/64 (r in [0, 1/32) next to 1, where c = 1:
    // m - 1 is exact there). 1/c and -log(1/c) come from two 32-entry tables (one two-register
    // permute each; log c is that of the float 1/c, so r = m (1/c) - 1 needs no correction) and
    // log1p(r) from a degree-5 polynomial (error below r^6 / 6 < 2e-10). At most 1.4 ulp; half the
    // cost of the frexp + degree-8 form below, whose serial chain made the log the slowest step of
    // the jsd loss pass.
    alignas(64) static constexpr float inverse_centre[32] = {
        0x1p+0f, 0x1.e9131ap-1f, 0x1.dae608p-1f, 0x1.cd8568p-1f, 0x1.c0e07p-1f, 0x1.b4e81cp-1f, 0x1.a98ef6p-1f, 0x1.9ec8eap-1f,
        0x1.948b1p-1f, 0x1.8acb9p-1f, 0x1.818182p-1f, 0x1.78a4c8p-1f, 0x1.702e06p-1f, 0x1.681682p-1f, 0x1.605816p-1f, 0x1.58ed24p-1f,
        0x1.51d07ep+0f, 0x1.4afd6ap+0f, 0x1.446f86p+0f, 0x1.3e22ccp+0f, 0x1.381382p+0f, 0x1.323e34p+0f, 0x1.2c9fb4p+0f, 0x1.27350cp+0f,
        0x1.21fb78p+0f, 0x1.1cf06ap+0f, 0x1.181182p+0f, 0x1.135c82p+0f, 0x1.0ecf56p+0f, 0x1.0a681p+0f, 0x1.0624dep+0f, 0x1p+0f,
    };
    alignas(64) static constexpr float log_centre[32] = {  // -log(inverse_centre)
        0.0f, 0x1.77459cp-5f, 0x1.341d74p-4f, 0x1.a926d8p-4f, 0x1.0d77e8p-3f, 0x1.44d2b4p-3f, 0x1.7ab89p-3f, 0x1.af3c92p-3f,
        0x1.e27076p-3f, 0x1.0a325p-2f, 0x1.22941ep-2f, 0x1.3a64c6p-2f, 0x1.51aad8p-2f, 0x1.686c8p-2f, 0x1.7eaf84p-2f, 0x1.94793ep-2f,
        -0x1.1bf994p-2f, -0x1.071386p-2f, -0x1.e530eep-3f, -0x1.bd0874p-3f, -0x1.95a5b2p-3f, -0x1.6f0124p-3f, -0x1.4913d2p-3f, -0x1.23d716p-3f,
        -0x1.fe8912p-4f, -0x1.b6ac7cp-4f, -0x1.700d3ep-4f, -0x1.2aa058p-4f, -0x1.ccb726p-5f, -0x1.466adap-5f, -0x1.849286p-6f, 0.0f,
    };
    const __m512 v = (__m512)x.v;
    const __m512 m = _mm512_getmant_ps(v, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_zero);
    const __m512 k = _mm512_sub_ps(_mm512_getexp_ps(v), _mm512_getexp_ps(m));  // x = m 2^k
    const __m512i index = _mm512_srli_epi32(_mm512_castps_si512(m), 18);        // the permutes read its low 5 bits
    const __m512 inverse = _mm512_permutex2var_ps(_mm512_load_ps(inverse_centre), index, _mm512_load_ps(inverse_centre + 16));
    const __m512 log_c = _mm512_permutex2var_ps(_mm512_load_ps(log_centre), index, _mm512_load_ps(log_centre + 16));
    const __m512 r = _mm512_fmsub_ps(m, inverse, _mm512_set1_ps(1.0f));
    // q = (-1/2 + r/3) + r^2 (-1/4 + r/5): two levels of FMAs where Horner's form takes three
    // (the jsd loss pass waits on this chain: 1 % faster)
    const __m512 r2 = _mm512_mul_ps(r, r);
    const __m512 q = _mm512_fmadd_ps(r2, _mm512_fmadd_ps(r, _mm512_set1_ps(0.2f), _mm512_set1_ps(-0.25f)),
                                     _mm512_fmadd_ps(r, _mm512_set1_ps(1.0f / 3.0f), _mm512_set1_ps(-0.5f)));
    // k ln 2 in two parts (k * 0.693359375 is exact), the small one added to r first
    const __m512 p = _mm512_fmadd_ps(r2, q, _mm512_fmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r));
    return float_pack((float_pack::native)_mm512_add_ps(_mm512_fmadd_ps(k, _mm512_set1_ps(0.693359375f), log_c), p));
#else
    float_mask::native bits;
    std::memcpy(&bits, &x.v, sizeof bits);
    // x = m 2^e with m in [0.5, 1) (normal numbers; denormals are below every value we take logs of)
    float_pack e = __builtin_convertvector(((bits >> 23) & 0xff) - 126, float_pack::native);
    const float_mask::native mantissa_bits = (bits & 0x007fffff) | 0x3f000000;
    float_pack m;
    std::memcpy(&m.v, &mantissa_bits, sizeof m.v);
    const float_mask small = m < float_pack(0.707106781186547524f);
    e = select(small, e - 1.0f, e);
    const float_pack f = select(small, m + m - 1.0f, m - 1.0f);
    const float_pack z = f * f;
    float_pack y = 7.0376836292e-2f;
    y = y * f - 1.1514610310e-1f;
    y = y * f + 1.1676998740e-1f;
    y = y * f - 1.2420140846e-1f;
    y = y * f + 1.4249322787e-1f;
    y = y * f - 1.6668057665e-1f;
    y = y * f + 2.0000714765e-1f;
    y = y * f - 2.4999993993e-1f;
    y = y * f + 3.3333331174e-1f;
    y = y * f * z;
    y = y + e * -2.12194440e-4f;
    y = y - z * 0.5f;
    return (f + y) + e * 0.693359375f;
#endif
}

/// log(x) for every lane (Cephes logf: frexp, degree-8 polynomial): -inf at 0, nan below 0.
DISTILL_FORCE_INLINE float_pack log(float_pack x) noexcept {
    const float_pack result = log_positive(x);
    const float_pack inf = std::numeric_limits<float>::infinity();
    const float_pack nan = std::numeric_limits<float>::quiet_NaN();
    return select(x == float_pack(0.0f), -inf, select(x < float_pack(0.0f) || x != x, nan, select(x == inf, inf, result)));
}

/// log(1 + x) for x >= 0 (the log-space mixtures need it for x in [0, 1]). u = 1 + x rounds, and
/// log(u) x / (u - 1) corrects for that rounding (Goldberg 1991), so small x keep full precision.
DISTILL_FORCE_INLINE float_pack log1p(float_pack x) noexcept {
    const float_pack u = x + 1.0f;
    return select(u == float_pack(1.0f), x, log(u) * (x / (u - 1.0f)));
}
#endif

/// Sets lane k of x to value: for a scalar (one lane), x = value; for float_pack, x.v[k].
template <class T>
DISTILL_HD DISTILL_FORCE_INLINE void set_lane(T& x, int, T value) noexcept {
    x = value;
}
#if DISTILL_SIMD
DISTILL_FORCE_INLINE void set_lane(float_pack& x, int k, float value) noexcept { x.v[k] = value; }
#endif

/// load_lanes of the elements c, c + 1, ... of a row (stride in elements), with the element at
/// index `skip` read as `fill` where it falls in this pack (skip < 0: none). A row statistic that
/// must leave one column out (dkd's non-target classes) excludes it exactly this way, instead of
/// subtracting its contribution afterwards (which cancels when that column dominates).
template <class V, class T>
DISTILL_HD DISTILL_FORCE_INLINE V load_lanes_excluding(const T* row, index_t c, index_t stride, int count, T fill,
                                                       index_t skip) noexcept {
    V x = load_lanes<V>(row + c * stride, stride, count, fill);
    // skip in [c, c + count), one unsigned comparison (a negative skip - c wraps past count)
    if (static_cast<std::uint64_t>(skip - c) < static_cast<std::uint64_t>(count)) set_lane(x, static_cast<int>(skip - c), fill);
    return x;
}

/// The elements base[ids[q * id_stride] * stride] for the lanes q < count (`fill` past count): a
/// pack's worth of a row at scattered columns (kd_topk's teacher ids). A pack type with a static
/// gather(base, stride, ids, id_stride, count, fill) gathers through it.
template <class V, class T, class Index>
DISTILL_HD DISTILL_FORCE_INLINE V gather_lanes(const T* base, index_t stride, const Index* ids, index_t id_stride, int count,
                                               T fill) noexcept {
    if constexpr (requires { V::gather(base, stride, ids, id_stride, count, fill); }) {
        return V::gather(base, stride, ids, id_stride, count, fill);
    } else {
        constexpr int lanes = lanes_v<V>;
        T values[lanes];
        for (int q = 0; q < lanes; ++q) values[q] = q < count ? base[static_cast<index_t>(ids[q * id_stride]) * stride] : fill;
        return load_lanes<V>(values, 1, lanes, fill);
    }
}
/// base[ids[q * id_stride] * stride] -= x_q for the lanes q < count where x_q != 0 (the ids of a
/// pack distinct).
template <class V, class T, class Index>
DISTILL_HD DISTILL_FORCE_INLINE void subtract_at_lanes(T* base, index_t stride, const Index* ids, index_t id_stride, int count,
                                                       V x) noexcept {
    constexpr int lanes = lanes_v<V>;
    T values[lanes];
    store_lanes(values, 1, lanes, x);
    for (int q = 0; q < count; ++q)
        if (values[q] != T(0)) base[static_cast<index_t>(ids[q * id_stride]) * stride] -= values[q];
}

/// a * b rounded to T, never fused into a following addition (FMA contraction, on by default in
/// GCC with -march=native and in nvcc): for values that must compare bitwise equal when their
/// inputs are, such as ps and pt of equal rows where tvd's |pt - ps| has its tie.
template <class T>
DISTILL_HD DISTILL_FORCE_INLINE T rounded_product(T a, T b) noexcept {
#if defined(__CUDA_ARCH__)
    if constexpr (sizeof(T) == 4) return __fmul_rn(a, b);
    else return __dmul_rn(a, b);
#else
    T p = a * b;
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    __asm__("" : "+x"(p));  // the product leaves the optimiser's sight: it is rounded here
#elif (defined(__GNUC__) || defined(__clang__)) && defined(__aarch64__)
    __asm__("" : "+w"(p));
#endif
    return p;
#endif
}
#if DISTILL_SIMD
DISTILL_FORCE_INLINE float_pack rounded_product(float_pack a, float_pack b) noexcept {
    float_pack p = a * b;
#if defined(__x86_64__) || defined(__i386__)
    __asm__("" : "+v"(p.v));
#elif defined(__aarch64__)
    __asm__("" : "+w"(p.v));
#endif
    return p;
}
#endif

/// The value type a row kernel on T runs with on this compilation target: float_pack for float
/// where SIMD exists, else T itself.
template <class T>
struct row_value {
    using type = T;
};
#if DISTILL_SIMD
template <>
struct row_value<float> {
    using type = float_pack;
};
#endif
template <class T>
using row_value_t = typename row_value<T>::type;

/// Compensated (Kahan) running sum, lane-wise: sums of many exponentials in float stay accurate
/// to a few ulp (the log-sum-exp of a 100k-class row feeds every log-probability).
template <class V>
struct compensated_sum {
    V sum = V(0), lost = V(0);
    DISTILL_HD DISTILL_FORCE_INLINE void add(V x) noexcept {
        const V y = x - lost;
        const V t = sum + y;
        lost = (t - sum) - y;
        sum = t;
        // An infinite sum keeps no compensation (inf - inf would make it nan from then on); a nan
        // sum stays nan.
        lost = select(lost == lost, lost, V(0));
    }
};

/// What a prefetch asks for: the line for reading into every level (L1 too), for reading into L2
/// only (lines needed after the current row, whose own arrays fill L1), or into L2 for writing (a
/// line that will be stored to before it is read, so that the store does not wait on memory).
enum class prefetch_kind { read, read_l2, write_l2 };

/// Asks the cache for the line holding p (host SIMD builds; a no-op elsewhere). The row kernels
/// fetch the next row while they compute on the current one, which is then in cache: without it,
/// a row's first pass waits on memory while its compute-bound passes leave the memory bus idle.
template <prefetch_kind Kind = prefetch_kind::read, class T>
DISTILL_HD DISTILL_FORCE_INLINE void prefetch(const T* p) noexcept {
#if DISTILL_SIMD && !defined(__CUDA_ARCH__)
    if constexpr (Kind == prefetch_kind::read) __builtin_prefetch(p);
    else if constexpr (Kind == prefetch_kind::read_l2) __builtin_prefetch(p, 0, 2);
    else __builtin_prefetch(p, 1, 2);
#else
    (void)p;
#endif
}

/// body(c, count) for the packs of a row of `cols` elements: full packs (count == lanes, a
/// constant once inlined, so their loads and stores need no length) then one partial pack.
template <class V, class Body>
DISTILL_HD DISTILL_FORCE_INLINE void for_each_pack(index_t cols, Body&& body) noexcept {
    constexpr int lanes = lanes_v<V>;
    index_t c = 0;
    for (; c + lanes <= cols; c += lanes) body(c, lanes);
    if constexpr (lanes > 1)
        if (c < cols) body(c, static_cast<int>(cols - c));
}

/// Sum of many positive terms: plain sums over blocks of `block` values, each block added to a
/// compensated sum. Nearly the accuracy of compensating every addition (a block's plain sum of
/// 16 terms per lane loses ~4 ulp of the block), for a fraction of its cost.
template <class V, int block = 16>
struct blocked_sum {
    compensated_sum<V> total;
    V part = V(0);
    int filled = 0;
    DISTILL_HD DISTILL_FORCE_INLINE void add(V x) noexcept {
        part += x;
        if (++filled == block) {
            total.add(part);
            part = V(0);
            filled = 0;
        }
    }
    /// The same without the count, for loops that close the blocks themselves
    /// (for_each_pack_in_blocks): add_to_block(x) for each value, close_block() after each block.
    DISTILL_HD DISTILL_FORCE_INLINE void add_to_block(V x) noexcept { part += x; }
    DISTILL_HD DISTILL_FORCE_INLINE void close_block() noexcept {
        total.add(part);
        part = V(0);
    }
    /// Multiplies everything summed so far by f (a running shift of the terms moved).
    DISTILL_HD DISTILL_FORCE_INLINE void scale(V f) noexcept {
        total.sum = total.sum * f;
        total.lost = total.lost * f;
        part = part * f;
    }
    /// The sum of each lane, after the last close_block().
    DISTILL_HD DISTILL_FORCE_INLINE V lanes() const noexcept { return total.sum - total.lost; }
    /// The sum over every lane.
    DISTILL_HD DISTILL_FORCE_INLINE auto value() const noexcept {
        compensated_sum<V> t = total;
        t.add(part);
        return lane_sum(t.sum) - lane_sum(t.lost);
    }
};

/// for_each_pack in blocks of `block` full packs, with end_block() after each of them and after
/// the rest: several blocked_sum of one loop close their blocks together, without a count and a
/// branch per pack each.
template <class V, int block, class Body, class EndBlock>
DISTILL_HD DISTILL_FORCE_INLINE void for_each_pack_in_blocks(index_t cols, Body&& body, EndBlock&& end_block) noexcept {
    constexpr int lanes = lanes_v<V>;
    index_t c = 0;
    for (; c + block * lanes <= cols; c += block * lanes) {
        for (int k = 0; k < block; ++k) body(c + k * lanes, lanes);
        end_block();
    }
    for (; c + lanes <= cols; c += lanes) body(c, lanes);
    if constexpr (lanes > 1)
        if (c < cols) body(c, static_cast<int>(cols - c));
    end_block();
}

/// for_each_pack for a pass over a row that the previous pass has just read: where the value type
/// says so (later_passes_backwards: a GPU block per row with few rows in flight), its packs run
/// last to first, so that the pass starts with the lines the previous one read last, the likeliest
/// to be still in the cache; elsewhere first to last, as the host's prefetchers expect. Lane k of
/// each pack is the same worker's either way.
template <class V, class Body>
DISTILL_HD DISTILL_FORCE_INLINE void for_each_pack_revisit(index_t cols, Body&& body) noexcept {
    if constexpr (later_passes_backwards_v<V>) {
        constexpr int lanes = lanes_v<V>;
        const index_t full = cols / lanes * lanes;
        if (full < cols) body(full, static_cast<int>(cols - full));
        for (index_t c = full; c > 0;) {
            c -= lanes;
            body(c, lanes);
        }
    } else {
        for_each_pack<V>(cols, body);
    }
}
/// for_each_pack_in_blocks for such a pass (end_block() after every `block` packs and at the end).
template <class V, int block, class Body, class EndBlock>
DISTILL_HD DISTILL_FORCE_INLINE void for_each_pack_in_blocks_revisit(index_t cols, Body&& body, EndBlock&& end_block) noexcept {
    if constexpr (later_passes_backwards_v<V>) {
        int filled = 0;
        for_each_pack_revisit<V>(cols, [&](index_t c, int count) DISTILL_LAMBDA_INLINE {
            body(c, count);
            if (++filled == block) {
                end_block();
                filled = 0;
            }
        });
        end_block();
    } else {
        for_each_pack_in_blocks<V, block>(cols, body, end_block);
    }
}

}  // namespace distill::detail

#if defined(__CUDACC__)
#include "cuda_lanes.hpp"  // block_lanes: a CUDA block's threads as the lanes of one value
#endif
