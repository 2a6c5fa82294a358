// distill/detail/cuda_lanes.hpp: a CUDA block's threads as the lanes of one value (nvcc only;
// included by simd.hpp).
//
// block_lanes<T, Threads, PerThread> is the value type with which the Thrust CUDA backend runs a
// row kernel on one block per row: thread t holds lanes t * PerThread ... t * PerThread +
// PerThread - 1, so a pack covers Threads * PerThread consecutive elements, a thread's loads and
// stores of a contiguous row are single vector accesses (16 bytes for 4 floats) and the block's
// are coalesced, and lane_sum, lane_max and any_lane are block-wide collectives that give every
// thread the same bits. The row kernels are the same templates the CPU runs with float_pack (see
// lane_group in simd.hpp for what a kernel must respect); each row then moves through the memory
// system once per pass at the width of a block, instead of one thread walking a whole row.
#pragma once

#include <cstdint>

#include "../core/config.hpp"
#include "math.hpp"
#include "simd.hpp"  // lanes_v, lane_group, the scalar rounded_product (simd.hpp includes this file at its end)

namespace distill::detail {

/// This thread's index in its block (threadIdx.x; 0 in host code, which never runs these values).
DISTILL_HD inline int block_lane() noexcept {
#if defined(__CUDA_ARCH__)
    return static_cast<int>(threadIdx.x);
#else
    return 0;
#endif
}

/// A block_lanes comparison: this thread's flags.
template <int PerThread>
struct block_mask {
    bool m[PerThread];
    DISTILL_HD friend constexpr block_mask operator&&(block_mask a, block_mask b) noexcept {
        block_mask r{};
        for (int j = 0; j < PerThread; ++j) r.m[j] = a.m[j] && b.m[j];
        return r;
    }
    DISTILL_HD friend constexpr block_mask operator||(block_mask a, block_mask b) noexcept {
        block_mask r{};
        for (int j = 0; j < PerThread; ++j) r.m[j] = a.m[j] || b.m[j];
        return r;
    }
    DISTILL_HD friend constexpr block_mask operator!(block_mask a) noexcept {
        block_mask r{};
        for (int j = 0; j < PerThread; ++j) r.m[j] = !a.m[j];
        return r;
    }
};

template <class T, int Threads, int PerThread = 1>
struct block_lanes {
    static_assert(Threads % 32 == 0 && Threads <= 1024, "a whole number of warps per block");
    static_assert(PerThread >= 1 && (PerThread & (PerThread - 1)) == 0, "a power of two of lanes per thread");
    using mask = block_mask<PerThread>;
    T v[PerThread];

    block_lanes() noexcept = default;
    DISTILL_HD constexpr block_lanes(T x) noexcept : v{} {  // broadcast
        for (int j = 0; j < PerThread; ++j) v[j] = x;
    }

    /// The first lane of this thread.
    DISTILL_HD static int first_lane() noexcept { return block_lane() * PerThread; }
    /// Whether this thread's lanes of p (stride 1, all of them below `count`) make one aligned vector.
    DISTILL_HD static bool whole_vector(const T* p, index_t stride, int count) noexcept {
        return PerThread > 1 && stride == 1 && first_lane() + PerThread <= count &&
               reinterpret_cast<std::uintptr_t>(p + first_lane()) % (sizeof(T) * PerThread) == 0;
    }
    struct alignas(sizeof(T) * PerThread) vector {
        T v[PerThread];
    };

    /// load_lanes: lane k reads element k of the pack (`fill` past `count`).
    DISTILL_HD static block_lanes load(const T* p, index_t stride, int count, T fill) noexcept {
        block_lanes r;
        const int first = first_lane();
        if (whole_vector(p, stride, count)) {
            const vector x = *reinterpret_cast<const vector*>(p + first);
            for (int j = 0; j < PerThread; ++j) r.v[j] = x.v[j];
        } else {
            for (int j = 0; j < PerThread; ++j) r.v[j] = first + j < count ? p[(first + j) * stride] : fill;
        }
        return r;
    }
    /// store_lanes: lane k writes element k (k < count).
    DISTILL_HD void store(T* p, index_t stride, int count) const noexcept {
        const int first = first_lane();
        if (whole_vector(p, stride, count)) {
            vector x;
            for (int j = 0; j < PerThread; ++j) x.v[j] = v[j];
            *reinterpret_cast<vector*>(p + first) = x;
        } else {
            for (int j = 0; j < PerThread; ++j)
                if (first + j < count) p[(first + j) * stride] = v[j];
        }
    }
    /// gather_lanes: lane k reads the element at id k.
    template <class Index>
    DISTILL_HD static block_lanes gather(const T* base, index_t stride, const Index* ids, index_t id_stride, int count,
                                         T fill) noexcept {
        block_lanes r;
        const int first = first_lane();
        for (int j = 0; j < PerThread; ++j)
            r.v[j] = first + j < count ? base[static_cast<index_t>(ids[(first + j) * id_stride]) * stride] : fill;
        return r;
    }

    template <class F>
    DISTILL_HD static constexpr block_lanes map(const block_lanes& a, const block_lanes& b, F f) noexcept {
        block_lanes r;
        for (int j = 0; j < PerThread; ++j) r.v[j] = f(a.v[j], b.v[j]);
        return r;
    }
    template <class F>
    DISTILL_HD static constexpr mask compare(const block_lanes& a, const block_lanes& b, F f) noexcept {
        mask r{};
        for (int j = 0; j < PerThread; ++j) r.m[j] = f(a.v[j], b.v[j]);
        return r;
    }
    DISTILL_HD friend constexpr block_lanes operator+(block_lanes a, block_lanes b) noexcept { return map(a, b, [](T x, T y) { return x + y; }); }
    DISTILL_HD friend constexpr block_lanes operator-(block_lanes a, block_lanes b) noexcept { return map(a, b, [](T x, T y) { return x - y; }); }
    DISTILL_HD friend constexpr block_lanes operator*(block_lanes a, block_lanes b) noexcept { return map(a, b, [](T x, T y) { return x * y; }); }
    DISTILL_HD friend constexpr block_lanes operator/(block_lanes a, block_lanes b) noexcept { return map(a, b, [](T x, T y) { return x / y; }); }
    DISTILL_HD friend constexpr block_lanes operator-(block_lanes a) noexcept { return map(a, a, [](T x, T) { return -x; }); }
    DISTILL_HD constexpr block_lanes& operator+=(block_lanes b) noexcept { return *this = *this + b; }
    DISTILL_HD constexpr block_lanes& operator-=(block_lanes b) noexcept { return *this = *this - b; }
    DISTILL_HD constexpr block_lanes& operator*=(block_lanes b) noexcept { return *this = *this * b; }
    DISTILL_HD friend constexpr mask operator<(block_lanes a, block_lanes b) noexcept { return compare(a, b, [](T x, T y) { return x < y; }); }
    DISTILL_HD friend constexpr mask operator>(block_lanes a, block_lanes b) noexcept { return compare(a, b, [](T x, T y) { return x > y; }); }
    DISTILL_HD friend constexpr mask operator<=(block_lanes a, block_lanes b) noexcept { return compare(a, b, [](T x, T y) { return x <= y; }); }
    DISTILL_HD friend constexpr mask operator>=(block_lanes a, block_lanes b) noexcept { return compare(a, b, [](T x, T y) { return x >= y; }); }
    DISTILL_HD friend constexpr mask operator==(block_lanes a, block_lanes b) noexcept { return compare(a, b, [](T x, T y) { return x == y; }); }
    DISTILL_HD friend constexpr mask operator!=(block_lanes a, block_lanes b) noexcept { return compare(a, b, [](T x, T y) { return x != y; }); }
};

template <class T, int Threads, int PerThread>
inline constexpr int lanes_v<block_lanes<T, Threads, PerThread>> = Threads * PerThread;

#if defined(__CUDA_ARCH__)
/// op over the block's values, the same bits on every thread: a butterfly within each warp
/// (commutative steps, so every lane ends with the same value), then every thread combines the
/// warps' results in the same order.
template <int Threads, class T, class Op>
__device__ T block_reduce(T x, Op op) noexcept {
    for (int offset = 16; offset > 0; offset /= 2) x = op(x, __shfl_xor_sync(0xffffffffu, x, offset));
    __shared__ T partial[Threads / 32];
    __syncthreads();  // the previous reduction's readers are done with `partial`
    if ((threadIdx.x & 31u) == 0) partial[threadIdx.x / 32] = x;
    __syncthreads();
    x = partial[0];
    for (int w = 1; w < Threads / 32; ++w) x = op(x, partial[w]);
    return x;
}
#endif

template <class T, int Threads, int PerThread>
struct lane_group<block_lanes<T, Threads, PerThread>> {
    static constexpr bool cooperative = true;
    /// Blocks of 1024 threads run one per multiprocessor (2048 threads at most, 64 registers each):
    /// few rows are in flight, and the end of a row that a pass read last is still in L2 when the
    /// next pass starts there (H100, 4096 x 32000: jsd's DRAM reads 1.90 -> 1.31 GB). With more,
    /// smaller blocks per multiprocessor the L2 holds little of a row, and kd on 256-thread blocks
    /// was 8-19 % slower backwards.
    static constexpr bool later_passes_backwards = Threads >= 1024;
    DISTILL_HD static void barrier() noexcept {
#if defined(__CUDA_ARCH__)
        __syncthreads();
#endif
    }
    DISTILL_HD static bool leader() noexcept { return block_lane() == 0; }
};

template <class T, int Threads, int PerThread>
DISTILL_HD DISTILL_FORCE_INLINE void store_lanes(T* p, index_t stride, int count, block_lanes<T, Threads, PerThread> x) noexcept {
    x.store(p, stride, count);
}
template <class Index, class T, int Threads, int PerThread>
DISTILL_HD DISTILL_FORCE_INLINE void subtract_at_lanes(T* base, index_t stride, const Index* ids, index_t id_stride, int count,
                                                       block_lanes<T, Threads, PerThread> x) noexcept {
    const int first = x.first_lane();
    for (int j = 0; j < PerThread; ++j)
        if (first + j < count && x.v[j] != T(0)) base[static_cast<index_t>(ids[(first + j) * id_stride]) * stride] -= x.v[j];
}
template <class T, int Threads, int PerThread>
DISTILL_HD DISTILL_FORCE_INLINE void set_lane(block_lanes<T, Threads, PerThread>& x, int k, T value) noexcept {
    if (k / PerThread == block_lane()) x.v[k % PerThread] = value;
}

template <class T, int Threads, int PerThread>
DISTILL_HD DISTILL_FORCE_INLINE block_lanes<T, Threads, PerThread> select(block_mask<PerThread> m, block_lanes<T, Threads, PerThread> a,
                                                                          block_lanes<T, Threads, PerThread> b) noexcept {
    block_lanes<T, Threads, PerThread> r;
    for (int j = 0; j < PerThread; ++j) r.v[j] = m.m[j] ? a.v[j] : b.v[j];
    return r;
}
template <class T, int Threads, int PerThread, class F>
DISTILL_HD DISTILL_FORCE_INLINE block_lanes<T, Threads, PerThread> map_lanes(block_lanes<T, Threads, PerThread> x, F f) noexcept {
    block_lanes<T, Threads, PerThread> r;
    for (int j = 0; j < PerThread; ++j) r.v[j] = f(x.v[j]);
    return r;
}
template <class T, int Threads, int PerThread>
DISTILL_HD DISTILL_FORCE_INLINE block_lanes<T, Threads, PerThread> max_of(block_lanes<T, Threads, PerThread> a,
                                                                          block_lanes<T, Threads, PerThread> b) noexcept {
    return select(a > b, a, b);
}
template <class T, int Threads, int PerThread>
DISTILL_HD DISTILL_FORCE_INLINE block_lanes<T, Threads, PerThread> exp(block_lanes<T, Threads, PerThread> x) noexcept {
    return map_lanes(x, [](T y) { return detail::exp(y); });
}
template <class T, int Threads, int PerThread>
DISTILL_HD DISTILL_FORCE_INLINE block_lanes<T, Threads, PerThread> exp_nonpositive(block_lanes<T, Threads, PerThread> x) noexcept {
    return exp(x);
}
template <class T, int Threads, int PerThread>
DISTILL_HD DISTILL_FORCE_INLINE block_lanes<T, Threads, PerThread> log(block_lanes<T, Threads, PerThread> x) noexcept {
    return map_lanes(x, [](T y) { return detail::log(y); });
}
template <class T, int Threads, int PerThread>
DISTILL_HD DISTILL_FORCE_INLINE block_lanes<T, Threads, PerThread> log_positive(block_lanes<T, Threads, PerThread> x) noexcept {
    return log(x);
}
template <class T, int Threads, int PerThread>
DISTILL_HD DISTILL_FORCE_INLINE block_lanes<T, Threads, PerThread> log1p(block_lanes<T, Threads, PerThread> x) noexcept {
    return map_lanes(x, [](T y) { return detail::log1p(y); });
}
template <class T, int Threads, int PerThread>
DISTILL_HD DISTILL_FORCE_INLINE block_lanes<T, Threads, PerThread> rounded_product(block_lanes<T, Threads, PerThread> a,
                                                                                   block_lanes<T, Threads, PerThread> b) noexcept {
    return block_lanes<T, Threads, PerThread>::map(a, b, [](T x, T y) { return rounded_product(x, y); });
}

/// online_exp_sum's rescaling (divergence.hpp), taken only by the lanes whose maximum rises: one
/// exp where the select form takes two.
template <class T, int Threads, int PerThread, class F>
DISTILL_HD DISTILL_FORCE_INLINE void raise_running_max(block_lanes<T, Threads, PerThread>& max, block_lanes<T, Threads, PerThread>& sum,
                                                       block_lanes<T, Threads, PerThread>& lost, block_lanes<T, Threads, PerThread> x,
                                                       const F& f) noexcept {
    for (int j = 0; j < PerThread; ++j)
        if (x.v[j] > max.v[j]) {
            const T scale = detail::exp(f(max.v[j]) - f(x.v[j]));
            sum.v[j] *= scale;
            lost.v[j] *= scale;
            max.v[j] = x.v[j];
        }
}

/// Whether any lane's flag holds (a block-wide vote).
template <int PerThread>
DISTILL_HD inline bool any_lane(block_mask<PerThread> m) noexcept {
    bool any = false;
    for (int j = 0; j < PerThread; ++j) any = any || m.m[j];
#if defined(__CUDA_ARCH__)
    return __syncthreads_or(any) != 0;
#else
    return any;
#endif
}
/// The sum and the max over the block's lanes (a thread's own lanes pairwise first), the same on
/// every thread.
template <class T, int Threads, int PerThread>
DISTILL_HD T lane_sum(block_lanes<T, Threads, PerThread> x) noexcept {
    for (int n = PerThread / 2; n > 0; n /= 2)
        for (int j = 0; j < n; ++j) x.v[j] += x.v[j + n];
#if defined(__CUDA_ARCH__)
    return block_reduce<Threads>(x.v[0], [](T a, T b) { return a + b; });
#else
    return x.v[0];
#endif
}
template <class T, int Threads, int PerThread>
DISTILL_HD T lane_max(block_lanes<T, Threads, PerThread> x) noexcept {
    T m = x.v[0];
    for (int j = 1; j < PerThread; ++j) m = x.v[j] > m ? x.v[j] : m;
#if defined(__CUDA_ARCH__)
    return block_reduce<Threads>(m, [](T a, T b) { return a > b ? a : b; });
#else
    return m;
#endif
}

}  // namespace distill::detail
