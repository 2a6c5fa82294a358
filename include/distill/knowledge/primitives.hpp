// distill/knowledge/primitives.hpp: the linear algebra the knowledge extractors are built from.
//
// Feature and relation methods work on two shapes of data:
//   * rows: a batch of N samples, each flattened in row-major order over every dimension after the
//     first (an N x D matrix_ref; a 4-D N x C x H x W tensor is N x (C H W));
//   * maps: 4-D N x C x H x W feature maps (map_ref), for the spatial methods (at, nst, factor, fsp).
// Everything here runs on any backend: element and row kernels through backend.for_each (one
// DISTILL_HD function object, the same maths on the CPU and under Thrust), reductions through
// backend.transform_reduce, and matrix products through gemm(), which is Eigen's GEMM on the CPU
// backend and a generic entry-per-thread kernel on every other backend.
//
// These are the detail-level building blocks; the public extractors (knowledge/*.hpp) wrap them
// with shape checks.
#pragma once

#include <cstddef>
#include <type_traits>

#include <Eigen/Core>

#include "../core/backend.hpp"
#include "../core/status.hpp"
#include "../core/view.hpp"
#include "../detail/math.hpp"
#include "../detail/simd.hpp"

namespace distill {

/// The eps of every L2 normalisation, v / max(||v||, eps) (F.normalize's default).
template <class T>
inline constexpr T normalize_eps = T(1e-12);

namespace detail {

/// A trivially copyable handle on N x C x H x W maps with arbitrary strides (host and device).
template <class T>
struct map_ref {
    T* data = nullptr;
    index_t n = 0, c = 0, h = 0, w = 0;
    index_t sn = 0, sc = 0, sh = 0, sw = 0;
    DISTILL_HD constexpr T& at(index_t i, index_t ch, index_t y, index_t x) const noexcept {
        return data[i * sn + ch * sc + y * sh + x * sw];
    }
    DISTILL_HD constexpr index_t spatial() const noexcept { return h * w; }
};

template <class T, std::size_t R, class S>
constexpr map_ref<T> to_map_ref(const strided_view<T, R, S>& v) noexcept {
    if (!v.bound() || v.rank() != 4) return {};
    return {v.data(), v.extent(0), v.extent(1), v.extent(2), v.extent(3), v.stride(0), v.stride(1), v.stride(2), v.stride(3)};
}

/// The rows of a rank >= 2 view as an N x D matrix (D = the product of the other extents), when
/// the dimensions after the first can be walked with one stride (any dense layout, and Eigen's
/// column-major matrices). Returns false otherwise.
template <class T, std::size_t R, class S>
constexpr bool flatten_rows(const strided_view<T, R, S>& v, matrix_ref<T>& out) noexcept {
    if (!v.bound() || v.rank() < 2) return false;
    index_t cols = 1, col_stride = 0;
    bool have_stride = false;
    // Walk the trailing dimensions from the innermost: each must step by the size of the
    // block inside it. Extent-1 dimensions are skipped (their stride is never used).
    for (int r = v.rank() - 1; r >= 1; --r) {
        if (v.extent(r) == 1) continue;
        if (!have_stride) {
            col_stride = v.stride(r);
            have_stride = true;
        } else if (v.stride(r) != col_stride * cols) {
            return false;
        }
        cols *= v.extent(r);
    }
    if (!have_stride) col_stride = 1;
    out = {v.data(), v.extent(0), cols, v.stride(0), col_stride};
    return true;
}

template <class T>
DISTILL_HD constexpr matrix_ref<T> transposed(const matrix_ref<T>& m) noexcept {
    return {m.data, m.cols, m.rows, m.col_stride, m.row_stride};
}
template <class T>
DISTILL_HD constexpr matrix_ref<const T> as_const(const matrix_ref<T>& m) noexcept {
    return {m.data, m.rows, m.cols, m.row_stride, m.col_stride};
}
/// A dense row-major rows x cols matrix in workspace memory.
template <class T>
DISTILL_HD constexpr matrix_ref<T> dense_matrix(T* data, index_t rows, index_t cols) noexcept {
    return {data, rows, cols, cols, 1};
}
template <class T>
DISTILL_HD constexpr T& entry(const matrix_ref<T>& m, index_t i, index_t j) noexcept {
    return m.data[i * m.row_stride + j * m.col_stride];
}

// ---------------------------------------------------------------- symmetric passes

/// The square tiles a symmetric N x N pass is cut into: a tile and its mirror fit in L1, so the
/// transposed accesses do not miss the cache on every element.
inline constexpr index_t symmetric_tile = 8;  // 32 rows of a power-of-two stride share too few L1 sets
DISTILL_HD constexpr index_t symmetric_tiles(index_t n) noexcept {
    const index_t t = (n + symmetric_tile - 1) / symmetric_tile;
    return t * t;
}

/// a(i, j) and a(j, i) <- a(i, j) + a(j, i) (square matrix, in place): d(F F^T) needs dG + dG^T.
/// One call per tile (run it over symmetric_tiles(n)); tile (bi, bj) with bj >= bi owns its
/// entries with j >= i, so calls never touch the same entry.
/// With `mirror_only`, a(i, j) <- a(j, i) for j > i instead (fill the upper triangle from the lower).
template <class T>
struct symmetrize_kernel {
    matrix_ref<T> a;
    bool mirror_only = false;
    DISTILL_HD void operator()(index_t tile) const noexcept {
        const index_t per_side = (a.rows + symmetric_tile - 1) / symmetric_tile;
        const index_t bi = tile / per_side, bj = tile % per_side;
        if (bj < bi) return;
        const index_t i_end = (bi + 1) * symmetric_tile < a.rows ? (bi + 1) * symmetric_tile : a.rows;
        const index_t j_end = (bj + 1) * symmetric_tile < a.rows ? (bj + 1) * symmetric_tile : a.rows;
        for (index_t i = bi * symmetric_tile; i < i_end; ++i)
            for (index_t j = bi == bj ? i : bj * symmetric_tile; j < j_end; ++j) {
                if (mirror_only) {
                    if (j > i) entry(a, i, j) = entry(a, j, i);
                    continue;
                }
                const T s = entry(a, i, j) + entry(a, j, i);
                entry(a, i, j) = s;
                entry(a, j, i) = s;
            }
    }
};
template <class Backend, class T>
void symmetrize(const Backend& backend, matrix_ref<T> a) {
    backend.for_each(symmetric_tiles(a.rows), symmetrize_kernel<T>{a, false});
}

// ---------------------------------------------------------------- matrix products

/// c(i, j) = alpha * sum_k a(i, k) b(k, j) + beta * c(i, j), one output entry per call.
/// beta == 0 overwrites c (which may hold NaN sentinels), as BLAS does.
template <class T>
struct gemm_entry_kernel {
    matrix_ref<const T> a, b;
    matrix_ref<T> c;
    T alpha, beta;
    DISTILL_HD void operator()(index_t idx) const noexcept {
        const index_t i = idx / c.cols, j = idx % c.cols;
        T sum = 0;
        for (index_t k = 0; k < a.cols; ++k) sum += entry(a, i, k) * entry(b, k, j);
        T& out = entry(c, i, j);
        out = beta == T(0) ? alpha * sum : alpha * sum + beta * out;
    }
};

/// C = alpha A B + beta C on any backend: one thread per entry (a GPU fallback that is exact but
/// not a tuned GEMM; the CPU backend takes the Eigen overload below).
template <class Backend, class T>
void gemm(const Backend& backend, T alpha, matrix_ref<const T> a, matrix_ref<const T> b, T beta, matrix_ref<T> c) {
    backend.for_each(c.rows * c.cols, gemm_entry_kernel<T>{a, b, c, alpha, beta});
}

/// Eigen maps with a unit inner stride known at compile time: only those reach Eigen's GEMM
/// kernels directly (a dynamic inner stride makes Eigen copy the operand into a heap temporary).
template <class T>
using eigen_row_major_map = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, Eigen::Unaligned,
                                       Eigen::OuterStride<Eigen::Dynamic>>;
template <class T>
using eigen_col_major_map = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>, Eigen::Unaligned,
                                       Eigen::OuterStride<Eigen::Dynamic>>;

/// Calls f with an Eigen map of m (row- or column-contiguous); returns false when m has neither
/// unit column nor unit row stride (then the caller takes the generic kernel).
template <class T, class F>
bool with_eigen_map(const matrix_ref<T>& m, F&& f) {
    using U = std::remove_const_t<T>;
    auto* p = const_cast<U*>(m.data);
    if (m.col_stride == 1 || m.cols == 1) {
        f(eigen_row_major_map<U>(p, m.rows, m.cols, Eigen::OuterStride<Eigen::Dynamic>(m.rows == 1 ? m.cols : m.row_stride)));
        return true;
    }
    if (m.row_stride == 1 || m.rows == 1) {
        f(eigen_col_major_map<U>(p, m.rows, m.cols, Eigen::OuterStride<Eigen::Dynamic>(m.cols == 1 ? m.rows : m.col_stride)));
        return true;
    }
    return false;
}

/// Why the CPU products below are tiled: Eigen packs each GEMM operand block (mc x kc of A,
/// kc x nc of B; also the gathered vector of a matrix-vector product) into a buffer it puts on
/// the stack when it takes at most EIGEN_STACK_ALLOCATION_LIMIT bytes (128 KiB by default) and on
/// the heap otherwise, and its block sizes grow with the operands up to the cache sizes (kc about
/// 500, mc and nc into the hundreds). Eigen never makes a block larger than the product, so a
/// product whose depth times its larger side fits in the limit runs as one Eigen call, and a larger
/// one is cut into tiles that fit: the run steps then never touch the heap, at any size. Tiles are
/// gemm_tile_depth deep and gemm_tile_side<T> wide (256 floats, 128 doubles with the default
/// limit); re-packing each tile's operands costs 1/depth + 2/side of the flops (under 3%).
template <class T>
inline constexpr index_t eigen_stack_elements = static_cast<index_t>(EIGEN_STACK_ALLOCATION_LIMIT / sizeof(T));
inline constexpr index_t gemm_tile_depth = 128;
/// Tiles narrower than this are not worth Eigen's call overhead: the generic kernel runs instead
/// (only with an EIGEN_STACK_ALLOCATION_LIMIT below 16 x 128 x sizeof(T) bytes, 0 included).
inline constexpr index_t gemm_min_tile_side = 16;

/// The tile of a rows x cols x depth product: one Eigen call per tile, none of which allocates.
struct gemm_tiling {
    index_t depth = 0, side = 0;
    bool usable = false;  ///< false: the stack limit is too small for any tile (take the generic kernel)
};
template <class T>
constexpr gemm_tiling gemm_tiles(index_t rows, index_t cols, index_t depth) noexcept {
    const index_t limit = eigen_stack_elements<T>;
    const index_t larger = rows > cols ? rows : cols;
    if (depth <= 0 || larger <= 0) return {depth, larger, true};
    if (larger <= limit / depth) return {depth, larger, true};  // the whole product fits
    const index_t kb = depth < gemm_tile_depth ? depth : gemm_tile_depth;
    const index_t side = limit / kb;
    return {kb, side, side >= gemm_min_tile_side};
}

/// The CPU backend: Eigen's blocked GEMM (vectorised; single-threaded unless the user enables
/// Eigen's own OpenMP) when every operand is row- or column-contiguous, the generic kernel
/// otherwise. Large products run tile by tile (gemm_tiles) so that Eigen's packing buffers stay on
/// the stack: no heap allocation.
template <class T>
void gemm(const cpu_backend& backend, T alpha, matrix_ref<const T> a, matrix_ref<const T> b, T beta, matrix_ref<T> c) noexcept {
    if (c.rows == 0 || c.cols == 0) return;
    const index_t m = c.rows, n = c.cols, k = a.cols;
    const gemm_tiling tiles = gemm_tiles<T>(m, n, k);
    bool done = false;
    if (tiles.usable) with_eigen_map(c, [&](auto out) {
        if (k == 0) {
            if (beta == T(0)) out.setZero();
            else out *= beta;
            done = true;
            return;
        }
        with_eigen_map(a, [&](const auto& lhs) {
            with_eigen_map(b, [&](const auto& rhs) {
                for (index_t i0 = 0; i0 < m; i0 += tiles.side) {
                    const index_t mb = tiles.side < m - i0 ? tiles.side : m - i0;
                    for (index_t j0 = 0; j0 < n; j0 += tiles.side) {
                        const index_t nb = tiles.side < n - j0 ? tiles.side : n - j0;
                        auto out_tile = out.block(i0, j0, mb, nb);
                        for (index_t k0 = 0; k0 < k; k0 += tiles.depth) {
                            const index_t kb = tiles.depth < k - k0 ? tiles.depth : k - k0;
                            const auto lhs_tile = lhs.block(i0, k0, mb, kb);
                            const auto rhs_tile = rhs.block(k0, j0, kb, nb);
                            if (k0 == 0) {
                                if (beta == T(0)) out_tile.setZero();
                                else out_tile *= beta;
                            }
                            // alpha goes with the operand Eigen keeps whole: a row-vector result
                            // reads the left operand's row, and Eigen would copy a row of
                            // (alpha * lhs) into a heap vector (so would a column of alpha * rhs).
                            if (mb == 1) out_tile.noalias() += lhs_tile * (alpha * rhs_tile);
                            else out_tile.noalias() += (alpha * lhs_tile) * rhs_tile;
                        }
                    }
                }
                done = true;
            });
        });
    });
    if (!done) backend.for_each(c.rows * c.cols, gemm_entry_kernel<T>{a, b, c, alpha, beta});
}

/// G = F F^T (N x N): the Gram matrix of the rows. Generic: a GEMM with the transposed view.
template <class Backend, class T>
void gram(const Backend& backend, matrix_ref<const T> f, matrix_ref<T> g) {
    gemm(backend, T(1), f, transposed(f), T(0), g);
}

/// The CPU backend: for wide rows, Eigen's symmetric rank-k update (half the flops of the GEMM)
/// into the lower triangle, mirrored into the upper one; for narrow rows (D < 256) the plain GEMM,
/// which is faster there. g must be a dense row-major N x N matrix. Large products run tile by
/// tile as in gemm (rank updates on the diagonal tiles, products below them): no heap allocation.
template <class T>
void gram(const cpu_backend& backend, matrix_ref<const T> f, matrix_ref<T> g) noexcept {
    const index_t n = f.rows, d = f.cols;
    const gemm_tiling tiles = gemm_tiles<T>(n, n, d);
    if (g.col_stride != 1 || g.row_stride != n || n == 0 || d < 256 || !tiles.usable) {
        gemm(backend, T(1), f, transposed(f), T(0), g);
        return;
    }
    eigen_row_major_map<T> out(g.data, n, n, Eigen::OuterStride<Eigen::Dynamic>(n));
    const bool done = with_eigen_map(f, [&](const auto& rows) {
        out.setZero();
        for (index_t i0 = 0; i0 < n; i0 += tiles.side) {
            const index_t mi = tiles.side < n - i0 ? tiles.side : n - i0;
            for (index_t j0 = 0; j0 <= i0; j0 += tiles.side) {
                const index_t mj = tiles.side < n - j0 ? tiles.side : n - j0;
                auto out_tile = out.block(i0, j0, mi, mj);
                for (index_t k0 = 0; k0 < d; k0 += tiles.depth) {
                    const index_t kb = tiles.depth < d - k0 ? tiles.depth : d - k0;
                    const auto fi = rows.block(i0, k0, mi, kb);
                    if (j0 == i0) out_tile.template selfadjointView<Eigen::Lower>().rankUpdate(fi);
                    else out_tile.noalias() += fi * rows.block(j0, k0, mj, kb).transpose();
                }
            }
        }
    });
    if (!done) {
        gemm(backend, T(1), f, transposed(f), T(0), g);
        return;
    }
    backend.for_each(symmetric_tiles(n), symmetrize_kernel<T>{g, true});
}

// ---------------------------------------------------------------- small kernels

/// Writes one value into (possibly device) memory.
template <class T>
struct store_scalar {
    T* target;
    T value;
    DISTILL_HD void operator()(index_t) const noexcept { *target = value; }
};
template <class Backend, class T>
void store(const Backend& backend, T* target, T value) {
    backend.for_each(1, store_scalar<T>{target, value});
}

/// dst = src element by element (same logical shape; any strides), one call per row.
template <class T>
struct copy_matrix_kernel {
    matrix_ref<const T> src;
    matrix_ref<T> dst;
    DISTILL_HD void operator()(index_t i) const noexcept {
        for (index_t j = 0; j < src.cols; ++j) entry(dst, i, j) = entry(src, i, j);
    }
};
template <class Backend, class T>
void copy(const Backend& backend, matrix_ref<const T> src, matrix_ref<T> dst) {
    backend.for_each(src.rows, copy_matrix_kernel<T>{src, dst});
}

/// The sum of f(i) over [0, n) through the backend.
template <class T, class Backend, class F>
T sum_over(const Backend& backend, index_t n, const F& f) {
    return backend.transform_reduce(n, f, T(0), plus_op<T>{});
}

// ---------------------------------------------------------------- row L2 normalisation

/// Contiguous row loops on row_value_t<T>: float_pack lanes for float on SIMD hosts (GCC's -O2
/// vectoriser leaves loops with a remainder scalar), T itself elsewhere (double, nvcc, MCUs).
/// sum_j a_j b_j.
template <class T>
DISTILL_HD inline T contiguous_dot(const T* a, const T* b, index_t n) noexcept {
    using V = row_value_t<T>;
    constexpr int w = lanes_v<V>;
    V s0(T(0)), s1(T(0));
    index_t j = 0;
    for (; j + 2 * w <= n; j += 2 * w) {
        s0 += load_lanes<V>(a + j, 1, w, T(0)) * load_lanes<V>(b + j, 1, w, T(0));
        s1 += load_lanes<V>(a + j + w, 1, w, T(0)) * load_lanes<V>(b + j + w, 1, w, T(0));
    }
    for (; j + w <= n; j += w) s0 += load_lanes<V>(a + j, 1, w, T(0)) * load_lanes<V>(b + j, 1, w, T(0));
    T sum = lane_sum(V(s0 + s1));
    for (; j < n; ++j) sum += a[j] * b[j];
    return sum;
}
/// out_j = factor (x_j - y_j c) (c = 0: a scaled copy); out may be x or y (each element is read
/// before it is written).
template <class T>
DISTILL_HD inline void contiguous_scaled_residual(T* out, const T* x, const T* y, T c, T factor, index_t n) noexcept {
    using V = row_value_t<T>;
    constexpr int w = lanes_v<V>;
    const V vc(c), vf(factor);
    index_t j = 0;
    for (; j + w <= n; j += w)
        store_lanes<V>(out + j, 1, w, V(vf * (load_lanes<V>(x + j, 1, w, T(0)) - load_lanes<V>(y + j, 1, w, T(0)) * vc)));
    for (; j < n; ++j) out[j] = factor * (x[j] - y[j] * c);
}
/// sum_j (a_j - b_j)^2.
template <class T>
DISTILL_HD inline T contiguous_squared_distance(const T* a, const T* b, index_t n) noexcept {
    using V = row_value_t<T>;
    constexpr int w = lanes_v<V>;
    V s0(T(0));
    index_t j = 0;
    for (; j + w <= n; j += w) {
        const V d = load_lanes<V>(a + j, 1, w, T(0)) - load_lanes<V>(b + j, 1, w, T(0));
        s0 += d * d;
    }
    T sum = lane_sum(s0);
    for (; j < n; ++j) sum += (a[j] - b[j]) * (a[j] - b[j]);
    return sum;
}

/// sum_j a_j b_j over strided vectors, with four partial sums: a scalar chain of dependent adds
/// runs at the adder's latency, four chains at its throughput (and the order is fixed, so every
/// backend sums alike).
template <class T>
DISTILL_HD inline T strided_dot(const T* a, index_t stride_a, const T* b, index_t stride_b, index_t n) noexcept {
    T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    index_t j = 0;
    if (stride_a == 1 && stride_b == 1) return contiguous_dot(a, b, n);
    for (; j + 4 <= n; j += 4) {
        s0 += a[j * stride_a] * b[j * stride_b];
        s1 += a[(j + 1) * stride_a] * b[(j + 1) * stride_b];
        s2 += a[(j + 2) * stride_a] * b[(j + 2) * stride_b];
        s3 += a[(j + 3) * stride_a] * b[(j + 3) * stride_b];
    }
    for (; j < n; ++j) s0 += a[j * stride_a] * b[j * stride_b];
    return (s0 + s1) + (s2 + s3);
}


/// y_i = x_i / max(||x_i||, eps) for every row i; norm[i] keeps ||x_i|| for the VJP.
/// x and y may be the same matrix (in place).
template <class T>
struct normalize_rows_kernel {
    matrix_ref<const T> x;
    matrix_ref<T> y;
    T* norm;  ///< may be null
    T eps;
    DISTILL_HD void operator()(index_t i) const noexcept {
        const T* row = x.row(i);
        const T n = detail::sqrt(strided_dot(row, x.col_stride, row, x.col_stride, x.cols));
        const T inv = T(1) / (n > eps ? n : eps);
        if (x.col_stride == 1 && y.col_stride == 1) {  // contiguous: SIMD packs
            contiguous_scaled_residual(y.row(i), row, row, T(0), inv, x.cols);
        } else {
            for (index_t j = 0; j < x.cols; ++j) entry(y, i, j) = entry(x, i, j) * inv;
        }
        if (norm) norm[i] = n;
    }
};

/// The VJP of y = x / max(||x||, eps) for one row, given y, ||x|| and the upstream dy:
///   ||x|| >= eps: dx = (dy - y <y, dy>) / ||x||   (the clamp passes the norm's gradient)
///   ||x|| <  eps: dx = dy / eps                    (the clamp picks the constant)
/// dx may alias dy (in place), and is scaled by `scale` and added to dx when accumulate is set.
template <class T>
struct normalize_rows_vjp_kernel {
    matrix_ref<const T> y;
    const T* norm;
    matrix_ref<const T> dy;
    matrix_ref<T> dx;
    T eps;
    T scale = T(1);
    bool accumulate = false;
    DISTILL_HD void operator()(index_t i) const noexcept {
        const T n = norm[i];
        T inv = T(1) / eps, dot = 0;
        if (n >= eps) {
            inv = T(1) / n;
            dot = strided_dot(y.row(i), y.col_stride, dy.row(i), dy.col_stride, y.cols);
        }
        const T* yr = y.row(i);
        const T* dyr = dy.row(i);
        T* dxr = dx.row(i);
        if (y.col_stride == 1 && dy.col_stride == 1 && dx.col_stride == 1 && !accumulate) {
            contiguous_scaled_residual(dxr, dyr, yr, dot, scale * inv, y.cols);  // contiguous: SIMD packs
            return;
        }
        for (index_t j = 0; j < y.cols; ++j) {
            const T g = scale * (dyr[j * dy.col_stride] - yr[j * y.col_stride] * dot) * inv;
            T& out = dxr[j * dx.col_stride];
            out = accumulate ? out + g : g;
        }
    }
};

}  // namespace detail
}  // namespace distill
