// distill/knowledge/spatial.hpp: what the spatial (4-D map) methods share: adaptive average
// pooling, the spatial matching rule, attention maps, and batched per-sample matrix products.
//
// Adaptive average pooling (F.adaptive_avg_pool2d): output cell i along an axis of input length S
// and output length O averages the inputs floor(i S / O) .. ceil((i + 1) S / O) - 1, each window
// divided by its own cell count (windows of neighbouring cells may overlap when S / O is not an
// integer). O may exceed S (then windows repeat inputs); O == S copies. The VJP spreads each
// output gradient over its window with the same 1 / count; each call owns one input row and adds
// the output rows whose windows contain it (no atomics). Window bounds are walked along a row
// without a division per cell. Cost O(N C H W) both ways (O(N C O_H O_W) when upsampling).
//
// Spatial matching (at, nst, factor, the layer pairs of fsp): when two maps differ in H x W, the
// one that is at least as large in both H and W is pooled to the other's size; a map that is
// taller but narrower than the other is a shape error.
//
// Attention map (Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017):
//   A_n = vec_{h,w}( (1/C) sum_c |f_{n,c,h,w}|^p )  (length K = H W),  a_n = normalize(A_n)
// with normalize(v) = v / max(||v||, 1e-12). VJP: the normalisation's VJP gives dA, then
//   df_{n,c,h,w} = dA_{n,hw} (p / C) |f|^(p-1) sign(f)   (0 at f = 0; sign(f) for p = 1).
// Cost O(N C K) both ways; the VJP needs N K + N values of scratch.
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>

#include "../losses/feature/common.hpp"
#include "../losses/response/driver.hpp"
#include "../losses/response/result.hpp"
#include "primitives.hpp"

namespace distill {
namespace detail {

// ---------------------------------------------------------------- maps

/// A dense row-major N x C x H x W map in workspace memory.
template <class T>
DISTILL_HD constexpr map_ref<T> dense_map(T* data, index_t n, index_t c, index_t h, index_t w) noexcept {
    return {data, n, c, h, w, c * h * w, h * w, w, 1};
}
template <class T>
DISTILL_HD constexpr map_ref<const T> as_const(const map_ref<T>& m) noexcept {
    return {m.data, m.n, m.c, m.h, m.w, m.sn, m.sc, m.sh, m.sw};
}

/// Sample 0 of a map as a C x (H W) matrix (sample n starts m.sn elements further), when its
/// H and W dimensions can be walked with one stride (any dense layout). Returns false otherwise.
template <class T>
constexpr bool sample_matrix(const map_ref<T>& m, matrix_ref<T>& out) noexcept {
    index_t col_stride = 1;
    if (m.h == 1) col_stride = m.w == 1 ? 1 : m.sw;
    else if (m.w == 1) col_stride = m.sh;
    else if (m.sh == m.w * m.sw) col_stride = m.sw;
    else return false;
    out = {m.data, m.c, m.h * m.w, m.sc, col_stride};
    return true;
}

// ---------------------------------------------------------------- |x|^p

/// pow on the host and the device.
template <class T>
DISTILL_HD inline T spatial_pow(T x, T y) noexcept {
#if defined(__CUDA_ARCH__)
    return ::pow(x, y);
#else
    return std::pow(x, y);
#endif
}

/// |x|^p for p >= 1 (exact products for p = 1 and 2, the common cases).
template <class T>
DISTILL_HD inline T abs_power(T x, T p) noexcept {
    const T a = x < T(0) ? -x : x;
    if (p == T(2)) return a * a;
    if (p == T(1) || a == T(0)) return a;
    return spatial_pow(a, p);
}

/// d|x|^p / dx = p |x|^(p-1) sign(x), 0 at x = 0 (for every p >= 1, p = 1 included).
template <class T>
DISTILL_HD inline T abs_power_derivative(T x, T p) noexcept {
    if (x == T(0)) return T(0);
    if (p == T(2)) return T(2) * x;
    const T sign = x < T(0) ? T(-1) : T(1);
    if (p == T(1)) return sign;
    return p * spatial_pow(x * sign, p - T(1)) * sign;
}

/// A rank-3 view (N x R x C) as a map with one channel (the 3-D knowledge outputs of fsp).
template <class T, std::size_t R, class S>
constexpr map_ref<T> to_map_ref_3d(const strided_view<T, R, S>& v) noexcept {
    if (!v.bound() || v.rank() != 3) return {};
    return {v.data(), v.extent(0), 1, v.extent(1), v.extent(2), v.stride(0), 0, v.stride(1), v.stride(2)};
}

/// dst = src element by element (the same extents; any strides), one (n, c, y) row per call.
template <class T>
struct copy_map_kernel {
    map_ref<const T> src;
    map_ref<T> dst;
    DISTILL_HD void operator()(index_t row) const noexcept {
        const index_t y = row % src.h, ch = (row / src.h) % src.c, n = row / (src.h * src.c);
        for (index_t x = 0; x < src.w; ++x) dst.at(n, ch, y, x) = src.at(n, ch, y, x);
    }
};
template <class Backend, class T>
void copy(const Backend& backend, map_ref<const T> src, map_ref<T> dst) {
    backend.for_each(src.n * src.c * src.h, copy_map_kernel<T>{src, dst});
}

// ---------------------------------------------------------------- adaptive average pooling

/// The window [begin, end) of output cell i along an axis of input length s and output length o.
DISTILL_HD constexpr index_t pool_window_begin(index_t i, index_t s, index_t o) noexcept { return (i * s) / o; }
DISTILL_HD constexpr index_t pool_window_end(index_t i, index_t s, index_t o) noexcept { return ((i + 1) * s + o - 1) / o; }

/// The windows of the cells j = 0, 1, ... of one axis in order, without a division per cell:
/// cell j covers [first, last()) with first = floor(j s / o) and last() = ceil((j + 1) s / o),
/// from (j + 1) s = next_q o + next_r kept up to date by subtraction.
struct pool_axis_walk {
    index_t s, o;
    index_t first = 0, next_q = 0, next_r = 0;
    DISTILL_HD pool_axis_walk(index_t input, index_t output) noexcept : s(input), o(output) { step_next(); }
    DISTILL_HD index_t last() const noexcept { return next_q + (next_r > 0 ? 1 : 0); }
    DISTILL_HD void advance() noexcept {
        first = next_q;
        step_next();
    }

private:
    DISTILL_HD void step_next() noexcept {
        next_r += s;
        while (next_r >= o) {
            next_r -= o;
            ++next_q;
        }
    }
};

/// out(n, c, i, :) = the means of in over the windows of output row i, one (n, c, i) row per
/// call; with equal sizes a copy. out's h and w are the output size.
template <class T>
struct adaptive_pool_kernel {
    map_ref<const T> in;
    map_ref<T> out;
    DISTILL_HD void operator()(index_t row) const noexcept {
        const index_t i = row % out.h, ch = (row / out.h) % out.c, n = row / (out.h * out.c);
        if (in.h == out.h && in.w == out.w) {
            for (index_t x = 0; x < in.w; ++x) out.at(n, ch, i, x) = in.at(n, ch, i, x);
            return;
        }
        const index_t y0 = pool_window_begin(i, in.h, out.h), y1 = pool_window_end(i, in.h, out.h);
        pool_axis_walk cols(in.w, out.w);
        for (index_t j = 0; j < out.w; ++j, cols.advance()) {
            const index_t x0 = cols.first, x1 = cols.last();
            T sum = 0;
            for (index_t y = y0; y < y1; ++y)
                for (index_t x = x0; x < x1; ++x) sum += in.at(n, ch, y, x);
            out.at(n, ch, i, j) = sum / T((y1 - y0) * (x1 - x0));
        }
    }
};

/// grad_in (+)= scale * d <grad_out, pool(in)> / d in, one input row (n, c, y) per call: the
/// output rows whose windows contain y spread grad_out / count over their column windows (the
/// row belongs to this call, so there is no race). With equal sizes a (scaled) copy.
template <class T>
struct adaptive_pool_vjp_kernel {
    map_ref<const T> grad_out;
    map_ref<T> grad_in;
    T scale = T(1);
    bool accumulate = false;
    DISTILL_HD void operator()(index_t row) const noexcept {
        const index_t y = row % grad_in.h, ch = (row / grad_in.h) % grad_in.c, n = row / (grad_in.h * grad_in.c);
        const index_t h = grad_in.h, w = grad_in.w, oh = grad_out.h, ow = grad_out.w;
        if (h == oh && w == ow) {
            for (index_t x = 0; x < w; ++x) {
                T& out = grad_in.at(n, ch, y, x);
                const T g = scale * grad_out.at(n, ch, y, x);
                out = accumulate ? out + g : g;
            }
            return;
        }
        if (!accumulate)
            for (index_t x = 0; x < w; ++x) grad_in.at(n, ch, y, x) = T(0);
        // The first output row containing y is floor(y O / S); later rows contain y while their
        // window starts at or before y (window ends only grow).
        for (index_t i = (y * oh) / h; i < oh && pool_window_begin(i, h, oh) <= y; ++i) {
            const T row_scale = scale / T(pool_window_end(i, h, oh) - pool_window_begin(i, h, oh));
            pool_axis_walk cols(w, ow);
            for (index_t j = 0; j < ow; ++j, cols.advance()) {
                const index_t x0 = cols.first, x1 = cols.last();
                const T g = row_scale * grad_out.at(n, ch, i, j) / T(x1 - x0);
                for (index_t x = x0; x < x1; ++x) grad_in.at(n, ch, y, x) += g;
            }
        }
    }
};

/// out = adaptive_avg_pool(in) to out's spatial size (a copy when the sizes are equal).
template <class Backend, class T>
void adaptive_pool_forward(const Backend& backend, map_ref<const T> in, map_ref<T> out) {
    backend.for_each(out.n * out.c * out.h, adaptive_pool_kernel<T>{in, out});
}
/// grad_in (+)= VJP of the pooling from grad_in's size to grad_out's.
template <class Backend, class T>
void adaptive_pool_backward(const Backend& backend, map_ref<const T> grad_out, map_ref<T> grad_in, bool accumulate) {
    backend.for_each(grad_in.n * grad_in.c * grad_in.h, adaptive_pool_vjp_kernel<T>{grad_out, grad_in, T(1), accumulate});
}

// ---------------------------------------------------------------- spatial matching

/// The common H x W of two maps and which of them is pooled to it.
struct spatial_match {
    index_t h = 0, w = 0;
    bool pool_first = false, pool_second = false;
};

/// The spatial matching rule: equal sizes match as they are; otherwise the map at least as
/// large in both H and W is pooled to the other's size. False when one is taller but narrower.
constexpr bool match_spatial(index_t h1, index_t w1, index_t h2, index_t w2, spatial_match& out) noexcept {
    if (h1 >= h2 && w1 >= w2) {
        out = {h2, w2, h1 != h2 || w1 != w2, false};
        return true;
    }
    if (h1 <= h2 && w1 <= w2) {
        out = {h1, w1, false, true};
        return true;
    }
    return false;
}

/// The shape error of two maps that cannot be matched ("a is 5x7 and b is 7x5 (H x W): ...").
inline status spatial_mismatch_error(const char* method, const char* argument, const char* first_name, index_t first_index,
                                     index_t h1, index_t w1, const char* second_name, index_t second_index, index_t h2,
                                     index_t w2) noexcept {
    status s = method_error(errc::shape_mismatch, method, argument).text(first_name);
    if (first_index >= 0) s.text("[").number(first_index).text("]");
    s.text(" is ").number(h1).text("x").number(w1).text(" and ").text(second_name);
    if (second_index >= 0) s.text("[").number(second_index).text("]");
    return s.text(" is ").number(h2).text("x").number(w2)
        .text(" (H x W): neither is at least as large in both, so neither can be pooled to the other");
}

/// Spatial matching of two checked 4-D views; the error names the second.
template <class V>
status match_map_pair(const char* method, const char* first_name, const V& first, const char* second_name, const V& second,
                      spatial_match& out) noexcept {
    if (match_spatial(first.extent(2), first.extent(3), second.extent(2), second.extent(3), out)) return {};
    return spatial_mismatch_error(method, second_name, first_name, -1, first.extent(2), first.extent(3), second_name, -1,
                                  second.extent(2), second.extent(3));
}

/// The inputs of a pair method on maps (at, nst, factor): both 4-D maps with the same N whose H x W can be matched.
template <class T, class Space>
status check_map_pair(const char* method, const feature_args<T, Space>& a) noexcept {
    if (status s = check_feature_pair(method, a, 4, 4); !s) return s;
    spatial_match m;
    return match_map_pair(method, "student", a.student, "teacher", a.teacher, m);
}

// ---------------------------------------------------------------- attention maps

/// A(n, y W + x) = (1/C) sum_c |f(n, c, y, x)|^p, one (n, y) row of the map per call: the channel
/// loop is outside the loop over x, so the CPU reads W contiguous values per channel (p = 2 and
/// p = 1 take loops without a pow). Every cell sums its channels in order, as a per-cell loop would.
template <class T>
struct attention_map_kernel {
    map_ref<const T> f;
    matrix_ref<T> a;
    T p;
    DISTILL_HD void operator()(index_t row) const noexcept {
        const index_t n = row / f.h, y = row % f.h, k0 = y * f.w;
        T* out = a.row(n) + k0 * a.col_stride;
        const index_t step = a.col_stride;
        for (index_t x = 0; x < f.w; ++x) out[x * step] = T(0);
        for (index_t ch = 0; ch < f.c; ++ch) {
            const T* in = &f.at(n, ch, y, 0);
            const index_t sw = f.sw;
            if (p == T(2) && step == 1 && sw == 1) {  // dense rows: a loop the compiler vectorises
                for (index_t x = 0; x < f.w; ++x) out[x] += in[x] * in[x];
            } else if (p == T(2)) {
                for (index_t x = 0; x < f.w; ++x) out[x * step] += in[x * sw] * in[x * sw];
            } else {
                for (index_t x = 0; x < f.w; ++x) out[x * step] += abs_power(in[x * sw], p);
            }
        }
        const T inv_c = T(1) / T(f.c);
        for (index_t x = 0; x < f.w; ++x) out[x * step] = out[x * step] * inv_c;
    }
};

/// df(n, c, y, :) (+)= dA(n, y W + :) (1/C) d|f|^p/df, one (n, c, y) row per call; df may be f
/// itself (in place: each element is read before it is written).
template <class T>
struct attention_map_vjp_kernel {
    map_ref<const T> f;
    matrix_ref<const T> grad_a;
    map_ref<T> grad_f;
    T p;
    bool accumulate = false;
    /// One (n, c) plane per call: H rows of W contiguous values on dense maps.
    DISTILL_HD void operator()(index_t plane) const noexcept {
        const index_t n = plane / f.c, ch = plane % f.c;
        for (index_t y = 0; y < f.h; ++y) row(n, ch, y);
    }
    DISTILL_HD void row(index_t n, index_t ch, index_t y) const noexcept {
        const index_t k0 = y * f.w;
        const T inv_c = T(1) / T(f.c);
        if (p == T(2) && !accumulate) {  // the common case without a per-element branch on p
            const T* g_row = grad_a.row(n) + k0 * grad_a.col_stride;
            const T* in = &f.at(n, ch, y, 0);
            T* out = &grad_f.at(n, ch, y, 0);
            if (grad_f.sw == 1 && grad_a.col_stride == 1 && f.sw == 1 && out != in) {  // dense, distinct: vectorised
                const T* DISTILL_RESTRICT g = g_row;
                const T* DISTILL_RESTRICT x_in = in;
                T* DISTILL_RESTRICT x_out = out;
                for (index_t x = 0; x < f.w; ++x) x_out[x] = g[x] * (T(2) * x_in[x]) * inv_c;
                return;
            }
            for (index_t x = 0; x < f.w; ++x)
                out[x * grad_f.sw] = g_row[x * grad_a.col_stride] * (T(2) * in[x * f.sw]) * inv_c;
            return;
        }
        for (index_t x = 0; x < f.w; ++x) {
            const T g = entry(grad_a, n, k0 + x) * abs_power_derivative(f.at(n, ch, y, x), p) * inv_c;
            T& out = grad_f.at(n, ch, y, x);
            out = accumulate ? out + g : g;
        }
    }
};

/// a = normalize_rows(attention map of f) into the dense N x K `a`; norm[n] = ||A_n|| (may be null).
template <class Backend, class T>
void attention_map_forward(const Backend& backend, map_ref<const T> f, T p, matrix_ref<T> a, T* norm) {
    if constexpr (std::is_same_v<Backend, cpu_backend>) {
        // The CPU walks one sample's rows in memory order (channel by channel), which the
        // hardware prefetcher follows; one (n, y) row per thread suits a GPU.
        backend.for_each(f.n, [&](index_t n) {
            const bool dense = a.col_stride == 1 && f.sw == 1 && f.sh == f.w;
            if (!dense || p != T(2)) {
                const attention_map_kernel<T> k{f, a, p};
                for (index_t y = 0; y < f.h; ++y) k(n * f.h + y);
                return;
            }
            // Dense planes, p = 2: each channel's K values in one contiguous pass (the same
            // per-cell order of channels as the kernel).
            // Eigen's packet math vectorises these (GCC's -O2 vectoriser leaves loops with a
            // remainder scalar).
            using array_map = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
            using const_array_map = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
            const index_t k_cells = f.h * f.w;
            array_map out(a.row(n), k_cells);
            out.setZero();
            for (index_t ch = 0; ch < f.c; ++ch) out += const_array_map(&f.at(n, ch, 0, 0), k_cells).square();
            out *= T(1) / T(f.c);
        });
    } else {
        backend.for_each(f.n * f.h, attention_map_kernel<T>{f, a, p});
    }
    backend.for_each(a.rows, normalize_rows_kernel<T>{as_const(a), a, norm, normalize_eps<T>});
}

/// grad_f (+)= d <grad_a, a(f)> / d f, given the forward's a and norms; grad_a is overwritten
/// with dA (the gradient before the normalisation). grad_f may be f (in place).
template <class Backend, class T>
void attention_map_backward(const Backend& backend, map_ref<const T> f, T p, matrix_ref<const T> a, const T* norm,
                            matrix_ref<T> grad_a, map_ref<T> grad_f, bool accumulate) {
    backend.for_each(a.rows, normalize_rows_vjp_kernel<T>{a, norm, as_const(grad_a), grad_a, normalize_eps<T>});
    if constexpr (std::is_same_v<Backend, cpu_backend>) {
        // Dense planes, p = 2, distinct input and output: each (n, c) plane as one Eigen array
        // expression (vectorised); the same products, in the same order, as the kernel.
        const index_t k_cells = f.h * f.w;
        const bool dense = p == T(2) && !accumulate && f.sw == 1 && f.sh == f.w && grad_f.sw == 1 && grad_f.sh == f.w &&
                           grad_a.col_stride == 1 && static_cast<const T*>(grad_f.data) != f.data;
        if (dense) {
            using array_map = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
            using const_array_map = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
            const T inv_c = T(1) / T(f.c);
            backend.for_each(f.n * f.c, [&](index_t plane) {
                const index_t n = plane / f.c, ch = plane % f.c;
                const_array_map g(grad_a.row(n), k_cells), in(&f.at(n, ch, 0, 0), k_cells);
                array_map(&grad_f.at(n, ch, 0, 0), k_cells) = g * (T(2) * in) * inv_c;
            });
            return;
        }
    }
    backend.for_each(f.n * f.c, attention_map_vjp_kernel<T>{f, as_const(grad_a), grad_f, p, accumulate});
}

// ---------------------------------------------------------------- batched matrix products

/// A batch of equally shaped matrices: matrix b starts b * batch_stride elements after m.data.
template <class T>
struct batched_matrix {
    matrix_ref<T> m;
    index_t batch_stride = 0;
    DISTILL_HD constexpr matrix_ref<T> at(index_t b) const noexcept {
        return {m.data + b * batch_stride, m.rows, m.cols, m.row_stride, m.col_stride};
    }
};
template <class T>
DISTILL_HD constexpr batched_matrix<const T> as_const(const batched_matrix<T>& b) noexcept {
    return {as_const(b.m), b.batch_stride};
}
template <class T>
DISTILL_HD constexpr batched_matrix<T> transposed(const batched_matrix<T>& b) noexcept {
    return {transposed(b.m), b.batch_stride};
}
/// The samples of a map that sample_matrix accepted, as a batch of C x (H W) matrices.
template <class T>
constexpr batched_matrix<T> sample_matrices(const map_ref<T>& m) noexcept {
    batched_matrix<T> out{{}, m.sn};
    sample_matrix(m, out.m);
    return out;
}
/// The samples of a dense N x rows x cols block.
template <class T>
DISTILL_HD constexpr batched_matrix<T> dense_batch(T* data, index_t rows, index_t cols) noexcept {
    return {dense_matrix(data, rows, cols), rows * cols};
}

/// c_b = alpha a_b b_b + beta c_b for every b in [0, batch): one entry of one product per call.
template <class T>
struct batched_gemm_kernel {
    batched_matrix<const T> a, b;
    batched_matrix<T> c;
    T alpha, beta;
    DISTILL_HD void operator()(index_t idx) const noexcept {
        const index_t per = c.m.rows * c.m.cols, batch = idx / per, r = idx % per;
        gemm_entry_kernel<T>{a.at(batch), b.at(batch), c.at(batch), alpha, beta}(r);
    }
};

/// The batched product on any backend: one thread per output entry (the generic kernel).
template <class Backend, class T>
void batched_gemm(const Backend& backend, index_t batch, T alpha, batched_matrix<const T> a, batched_matrix<const T> b, T beta,
                  batched_matrix<T> c) {
    backend.for_each(batch * c.m.rows * c.m.cols, batched_gemm_kernel<T>{a, b, c, alpha, beta});
}

/// The CPU backend: Eigen's GEMM per sample, samples split over the backend's threads.
template <class T>
void batched_gemm(const cpu_backend& backend, index_t batch, T alpha, batched_matrix<const T> a, batched_matrix<const T> b,
                  T beta, batched_matrix<T> c) noexcept {
    backend.for_each(batch, [&](index_t i) { gemm(backend, alpha, a.at(i), b.at(i), beta, c.at(i)); });
}

// ---------------------------------------------------------------- checks of the extractors

template <class V>
status check_map_tensor(const char* method, const char* name, const V& v) noexcept {
    return check_feature_tensor(method, name, v, 4, 4);
}

/// An output that must be a tensor with exactly the given extents.
template <class V>
status check_extents(const char* method, const char* name, const V& v, std::initializer_list<index_t> want) noexcept {
    bool ok = v.bound() && v.rank() == static_cast<int>(want.size());
    int r = 0;
    for (index_t e : want) {
        if (ok && v.extent(r) != e) ok = false;
        ++r;
    }
    if (ok) return check_present(method, name, v);
    index_t extents[4] = {};
    r = 0;
    for (index_t e : want) extents[r++] = e;
    status s = method_error(v.bound() ? errc::shape_mismatch : errc::missing_argument, method, name).text(name);
    if (v.bound()) s.text(" has shape ").shape(v.extents(), v.rank()).text(" but");
    return s.text(" must have shape ").shape(extents, static_cast<int>(want.size()));
}

}  // namespace detail

namespace knowledge {

/// Scratch of attention_map_vjp for N maps of H x W = K cells: N K + N values of T.
template <class T>
constexpr std::size_t attention_map_vjp_workspace_bytes(index_t n, index_t k) noexcept {
    return (static_cast<std::size_t>(n) * static_cast<std::size_t>(k) + static_cast<std::size_t>(n)) * sizeof(T);
}

/// out = adaptive_avg_pool2d(input) to out's H x W: input N x C x H x W, out N x C x H' x W'
/// (any strides; H', W' >= 1, larger than H, W too). No workspace.
template <backend_object Backend, real_tensor I, class O>
status adaptive_avg_pool(const Backend& backend, const I& input_tensor, O&& out_tensor) {
    using T = value_type_t<I>;
    using Space = memory_space_t<I>;
    constexpr const char* name = "adaptive_avg_pool";
    const any_view<const T, Space> input(as_view(input_tensor));
    const any_view<T, Space> out(as_view(out_tensor));
    if (status s = detail::check_map_tensor(name, "input", input); !s) return s;
    if (status s = detail::check_map_tensor(name, "out", out); !s) return s;
    if (out.extent(0) != input.extent(0) || out.extent(1) != input.extent(1))
        return detail::method_error(errc::shape_mismatch, name, "out").text("out has shape ").shape(out.extents(), 4)
            .text(" but input has shape ").shape(input.extents(), 4).text(" (N and C must match)");
    if (detail::range_of(out).overlaps(detail::range_of(input)))
        return detail::method_error(errc::aliasing, name, "out").text("out overlaps input");
    detail::adaptive_pool_forward(backend, detail::to_map_ref(input), detail::to_map_ref(out));
    return {};
}

/// grad_input = d <grad_out, adaptive_avg_pool(input)> / d input, where grad_input has the
/// input's shape N x C x H x W and grad_out the pooled N x C x H' x W' (the pooling is linear:
/// the input itself is not needed). No workspace.
template <backend_object Backend, real_tensor G, class O>
status adaptive_avg_pool_vjp(const Backend& backend, const G& grad_out_tensor, O&& grad_input_tensor) {
    using T = value_type_t<G>;
    using Space = memory_space_t<G>;
    constexpr const char* name = "adaptive_avg_pool_vjp";
    const any_view<const T, Space> grad_out(as_view(grad_out_tensor));
    const any_view<T, Space> grad_input(as_view(grad_input_tensor));
    if (status s = detail::check_map_tensor(name, "grad_out", grad_out); !s) return s;
    if (status s = detail::check_map_tensor(name, "grad_input", grad_input); !s) return s;
    if (grad_out.extent(0) != grad_input.extent(0) || grad_out.extent(1) != grad_input.extent(1))
        return detail::method_error(errc::shape_mismatch, name, "grad_input").text("grad_input has shape ")
            .shape(grad_input.extents(), 4).text(" but grad_out has shape ").shape(grad_out.extents(), 4)
            .text(" (N and C must match)");
    if (detail::range_of(grad_input).overlaps(detail::range_of(grad_out)))
        return detail::method_error(errc::aliasing, name, "grad_input").text("grad_input overlaps grad_out");
    detail::adaptive_pool_backward(backend, detail::to_map_ref(grad_out), detail::to_map_ref(grad_input), false);
    return {};
}

/// out = the normalised attention maps of N x C x H x W features: N x (H W), row n being
/// normalize(vec((1/C) sum_c |f_c|^p)); p >= 1 and finite. Any strides; no workspace.
template <backend_object Backend, real_tensor F, class O>
status attention_map(const Backend& backend, const F& features_tensor, O&& out_tensor, value_type_t<F> p) {
    using T = value_type_t<F>;
    using Space = memory_space_t<F>;
    constexpr const char* name = "attention_map";
    const any_view<const T, Space> features(as_view(features_tensor));
    const any_view<T, Space> out(as_view(out_tensor));
    if (status s = detail::check_parameter(name, "p", p, T(1)); !s) return s;
    if (status s = detail::check_map_tensor(name, "features", features); !s) return s;
    const index_t n = features.extent(0), k = features.extent(2) * features.extent(3);
    if (status s = detail::check_extents(name, "out", out, {n, k}); !s) return s;
    if (detail::range_of(out).overlaps(detail::range_of(features)))
        return detail::method_error(errc::aliasing, name, "out").text("out overlaps features");
    detail::attention_map_forward(backend, detail::to_map_ref(features), p, detail::to_matrix_ref(out), static_cast<T*>(nullptr));
    return {};
}

/// grad_features = d <grad_out, attention_map(features, p)> / d features (grad_out N x (H W),
/// grad_features the features' shape, any strides). Workspace: attention_map_vjp_workspace_bytes.
template <backend_object Backend, real_tensor F, real_tensor G, class O>
status attention_map_vjp(const Backend& backend, const F& features_tensor, const G& grad_out_tensor, O&& grad_features_tensor,
                         value_type_t<F> p, workspace ws) {
    using T = value_type_t<F>;
    using Space = memory_space_t<F>;
    constexpr const char* name = "attention_map_vjp";
    const any_view<const T, Space> features(as_view(features_tensor)), grad_out(as_view(grad_out_tensor));
    const any_view<T, Space> grad_features(as_view(grad_features_tensor));
    if (status s = detail::check_parameter(name, "p", p, T(1)); !s) return s;
    if (status s = detail::check_map_tensor(name, "features", features); !s) return s;
    const index_t n = features.extent(0), k = features.extent(2) * features.extent(3);
    if (status s = detail::check_extents(name, "grad_out", grad_out, {n, k}); !s) return s;
    if (!grad_features.bound()) return detail::method_error(errc::missing_argument, name, "grad_features").text("grad_features is required");
    if (status s = detail::check_output_shape(name, "grad_features", grad_features, features); !s) return s;
    if (detail::range_of(grad_features).overlaps(detail::range_of(features)) ||
        detail::range_of(grad_features).overlaps(detail::range_of(grad_out)))
        return detail::method_error(errc::aliasing, name, "grad_features").text("grad_features overlaps an input");
    if (status s = detail::check_workspace(name, ws, attention_map_vjp_workspace_bytes<T>(n, k)); !s) return s;
    T* base = static_cast<T*>(ws.data);
    const auto a = detail::dense_matrix(base, n, k);
    T* norm = base + n * k;
    const detail::map_ref<const T> f = detail::to_map_ref(features);
    detail::attention_map_forward(backend, f, p, a, norm);
    // The normalisation's VJP reads row n of a and of grad_out and writes dA_n over a_n.
    backend.for_each(n, detail::normalize_rows_vjp_kernel<T>{detail::as_const(a), norm, detail::to_matrix_ref(grad_out), a,
                                                             normalize_eps<T>});
    backend.for_each(f.n * f.c,
                     detail::attention_map_vjp_kernel<T>{f, detail::as_const(a), detail::to_map_ref(grad_features), p});
    return {};
}

template <real_tensor I, class O>
status adaptive_avg_pool(const I& input, O&& out) {
    return adaptive_avg_pool(default_backend_t<memory_space_t<I>>{}, input, std::forward<O>(out));
}
template <real_tensor G, class O>
status adaptive_avg_pool_vjp(const G& grad_out, O&& grad_input) {
    return adaptive_avg_pool_vjp(default_backend_t<memory_space_t<G>>{}, grad_out, std::forward<O>(grad_input));
}
template <real_tensor F, class O>
status attention_map(const F& features, O&& out, value_type_t<F> p) {
    return attention_map(default_backend_t<memory_space_t<F>>{}, features, std::forward<O>(out), p);
}
template <real_tensor F, real_tensor G, class O>
status attention_map_vjp(const F& features, const G& grad_out, O&& grad_features, value_type_t<F> p, workspace ws) {
    return attention_map_vjp(default_backend_t<memory_space_t<F>>{}, features, grad_out, std::forward<O>(grad_features), p, ws);
}

}  // namespace knowledge
}  // namespace distill
