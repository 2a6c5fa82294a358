// tests/unit/lockstep_backend.hpp: the GPU's one-block-per-row path, run on the host.
//
// On a GPU the Thrust backend runs each cooperative row kernel (kd, dkd, the divergences) on one
// block per row, the block's 256 threads as the lanes of detail::block_lanes. That path's logic
// lives in the kernels (the plain strided form, the one-pass online statistics, no values kept in
// the gradient row between passes, the leader's single writes) and is shared with this emulation:
// lockstep_lanes<T, N> holds N lanes in one object with the same cooperative contract (lane_group),
// and lockstep_backend<N> runs the row kernels with it. The parity tests compare it with the CPU
// backend wherever they compare Thrust, so CI (no GPU) tests the GPU path's arithmetic; the CUDA
// specifics (block reductions, the launch) are tested by tests/cuda on a GPU.
//
// Include before any distill header other than detail/simd.hpp and core/backend.hpp: the kernels
// call detail::log1p on their value type by its qualified name.
#pragma once

#include <distill/core/backend.hpp>
#include <distill/detail/simd.hpp>

namespace distill::detail {

template <int N>
struct lockstep_mask {
    bool m[N];
    friend lockstep_mask operator&&(const lockstep_mask& a, const lockstep_mask& b) noexcept {
        lockstep_mask r;
        for (int k = 0; k < N; ++k) r.m[k] = a.m[k] && b.m[k];
        return r;
    }
    friend lockstep_mask operator||(const lockstep_mask& a, const lockstep_mask& b) noexcept {
        lockstep_mask r;
        for (int k = 0; k < N; ++k) r.m[k] = a.m[k] || b.m[k];
        return r;
    }
    friend lockstep_mask operator!(const lockstep_mask& a) noexcept {
        lockstep_mask r;
        for (int k = 0; k < N; ++k) r.m[k] = !a.m[k];
        return r;
    }
};

template <class T, int N>
struct lockstep_lanes {
    T v[N];

    lockstep_lanes() noexcept = default;
    lockstep_lanes(T x) noexcept {  // broadcast
        for (T& lane : v) lane = x;
    }
    static lockstep_lanes load(const T* p, index_t stride, int count, T fill) noexcept {
        lockstep_lanes r;
        for (int k = 0; k < N; ++k) r.v[k] = k < count ? p[k * stride] : fill;
        return r;
    }
    template <class F>
    static lockstep_lanes map(const lockstep_lanes& a, const lockstep_lanes& b, F f) noexcept {
        lockstep_lanes r;
        for (int k = 0; k < N; ++k) r.v[k] = f(a.v[k], b.v[k]);
        return r;
    }
    template <class F>
    static lockstep_mask<N> compare(const lockstep_lanes& a, const lockstep_lanes& b, F f) noexcept {
        lockstep_mask<N> r;
        for (int k = 0; k < N; ++k) r.m[k] = f(a.v[k], b.v[k]);
        return r;
    }
    friend lockstep_lanes operator+(const lockstep_lanes& a, const lockstep_lanes& b) noexcept { return map(a, b, [](T x, T y) { return x + y; }); }
    friend lockstep_lanes operator-(const lockstep_lanes& a, const lockstep_lanes& b) noexcept { return map(a, b, [](T x, T y) { return x - y; }); }
    friend lockstep_lanes operator*(const lockstep_lanes& a, const lockstep_lanes& b) noexcept { return map(a, b, [](T x, T y) { return x * y; }); }
    friend lockstep_lanes operator/(const lockstep_lanes& a, const lockstep_lanes& b) noexcept { return map(a, b, [](T x, T y) { return x / y; }); }
    friend lockstep_lanes operator-(const lockstep_lanes& a) noexcept { return map(a, a, [](T x, T) { return -x; }); }
    lockstep_lanes& operator+=(const lockstep_lanes& b) noexcept { return *this = *this + b; }
    lockstep_lanes& operator-=(const lockstep_lanes& b) noexcept { return *this = *this - b; }
    lockstep_lanes& operator*=(const lockstep_lanes& b) noexcept { return *this = *this * b; }
    friend lockstep_mask<N> operator<(const lockstep_lanes& a, const lockstep_lanes& b) noexcept { return compare(a, b, [](T x, T y) { return x < y; }); }
    friend lockstep_mask<N> operator>(const lockstep_lanes& a, const lockstep_lanes& b) noexcept { return compare(a, b, [](T x, T y) { return x > y; }); }
    friend lockstep_mask<N> operator<=(const lockstep_lanes& a, const lockstep_lanes& b) noexcept { return compare(a, b, [](T x, T y) { return x <= y; }); }
    friend lockstep_mask<N> operator>=(const lockstep_lanes& a, const lockstep_lanes& b) noexcept { return compare(a, b, [](T x, T y) { return x >= y; }); }
    friend lockstep_mask<N> operator==(const lockstep_lanes& a, const lockstep_lanes& b) noexcept { return compare(a, b, [](T x, T y) { return x == y; }); }
    friend lockstep_mask<N> operator!=(const lockstep_lanes& a, const lockstep_lanes& b) noexcept { return compare(a, b, [](T x, T y) { return x != y; }); }
};

template <class T, int N>
inline constexpr int lanes_v<lockstep_lanes<T, N>> = N;
template <class T, int N>
struct lane_group<lockstep_lanes<T, N>> {
    static constexpr bool cooperative = true;
    /// As the GPU's long-row blocks: the wide emulation runs the later passes backwards, so that the
    /// parity tests cover both orders.
    static constexpr bool later_passes_backwards = N >= 64;
    static constexpr void barrier() noexcept {}
    static constexpr bool leader() noexcept { return true; }  // one object holds every lane
};

template <class T, int N>
void store_lanes(T* p, index_t stride, int count, const lockstep_lanes<T, N>& x) noexcept {
    for (int k = 0; k < N && k < count; ++k) p[k * stride] = x.v[k];
}
template <class T, int N>
void set_lane(lockstep_lanes<T, N>& x, int k, T value) noexcept {
    x.v[k] = value;
}
template <class T, int N>
lockstep_lanes<T, N> select(const lockstep_mask<N>& m, const lockstep_lanes<T, N>& a, const lockstep_lanes<T, N>& b) noexcept {
    lockstep_lanes<T, N> r;
    for (int k = 0; k < N; ++k) r.v[k] = m.m[k] ? a.v[k] : b.v[k];
    return r;
}
template <int N>
bool any_lane(const lockstep_mask<N>& m) noexcept {
    for (bool b : m.m)
        if (b) return true;
    return false;
}
template <class T, int N, class F>
lockstep_lanes<T, N> map_lanes(const lockstep_lanes<T, N>& x, F f) noexcept {
    lockstep_lanes<T, N> r;
    for (int k = 0; k < N; ++k) r.v[k] = f(x.v[k]);
    return r;
}
template <class T, int N>
lockstep_lanes<T, N> max_of(const lockstep_lanes<T, N>& a, const lockstep_lanes<T, N>& b) noexcept {
    return select(a > b, a, b);
}
template <class T, int N>
lockstep_lanes<T, N> exp(const lockstep_lanes<T, N>& x) noexcept {
    return map_lanes(x, [](T y) { return detail::exp(y); });
}
template <class T, int N>
lockstep_lanes<T, N> exp_nonpositive(const lockstep_lanes<T, N>& x) noexcept {
    return exp(x);
}
template <class T, int N>
lockstep_lanes<T, N> log(const lockstep_lanes<T, N>& x) noexcept {
    return map_lanes(x, [](T y) { return detail::log(y); });
}
template <class T, int N>
lockstep_lanes<T, N> log_positive(const lockstep_lanes<T, N>& x) noexcept {
    return log(x);
}
template <class T, int N>
lockstep_lanes<T, N> log1p(const lockstep_lanes<T, N>& x) noexcept {
    return map_lanes(x, [](T y) { return detail::log1p(y); });
}
template <class T, int N>
lockstep_lanes<T, N> rounded_product(const lockstep_lanes<T, N>& a, const lockstep_lanes<T, N>& b) noexcept {
    return lockstep_lanes<T, N>::map(a, b, [](T x, T y) { return rounded_product(x, y); });
}
/// Pairwise over the lanes, as a block reduction adds pairs: every lane sees the same value.
template <class T, int N>
T lane_sum(const lockstep_lanes<T, N>& x) noexcept {
    T lanes[N];
    for (int k = 0; k < N; ++k) lanes[k] = x.v[k];
    for (int n = N / 2; n > 0; n /= 2)
        for (int k = 0; k < n; ++k) lanes[k] += lanes[k + n];
    return lanes[0];
}
template <class T, int N>
T lane_max(const lockstep_lanes<T, N>& x) noexcept {
    T m = x.v[0];
    for (int k = 1; k < N; ++k) m = x.v[k] > m ? x.v[k] : m;
    return m;
}

}  // namespace distill::detail

namespace distill_test {

/// The CPU backend, with the cooperative row kernels run on lockstep_lanes<T, Lanes> (the GPU's
/// block-per-row path) instead of the host's float_pack or scalars; other kernels as before.
template <int Lanes>
struct lockstep_backend : distill::cpu_backend {
    static_assert(Lanes > 0 && (Lanes & (Lanes - 1)) == 0, "a power of two, as lane_sum pairs lanes");
    template <class T, class Kernel>
    void run_rows(distill::index_t n, const Kernel& kernel, distill::reduction red, distill::detail::vector_ref<T> loss,
                  T* dtemperature, distill::workspace ws, bool accumulate = false) const noexcept {
        if constexpr (distill::detail::cooperative_row_kernel<Kernel>) {
            using lanes = distill::detail::lockstep_lanes<T, Lanes>;
            distill::row_result<T> total{};
            for (distill::index_t i = 0; i < n; ++i) {
                const distill::row_result<T> r = distill::detail::run_row_with<lanes>(kernel, i);
                if (red == distill::reduction::none) loss[i] = r.value;
                total = total + r;
            }
            if (red != distill::reduction::none) loss[0] = total.value;
            if (dtemperature) *dtemperature = accumulate ? *dtemperature + total.dtemperature : total.dtemperature;
        } else {
            distill::cpu_backend::run_rows(n, kernel, red, loss, dtemperature, ws, accumulate);
        }
    }
};

}  // namespace distill_test
