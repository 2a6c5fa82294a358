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

template <class T>
using eigen_strided_map = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, Eigen::Unaligned,
                                     Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;
template <class T>
using eigen_const_strided_map = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>,
                                           Eigen::Unaligned, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;

template <class T>
eigen_const_strided_map<T> eigen_map(const matrix_ref<const T>& m) noexcept {
    return {m.data, m.rows, m.cols, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(m.row_stride, m.col_stride)};
}
template <class T>
eigen_strided_map<T> eigen_map(const matrix_ref<T>& m) noexcept {
    return {m.data, m.rows, m.cols, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(m.row_stride, m.col_stride)};
}

/// The CPU backend: Eigen's blocked GEMM (vectorised; single-threaded unless the user enables
/// Eigen's own OpenMP). Eigen packs its operands in blocks on the stack for small products and
/// on the heap above EIGEN_STACK_ALLOCATION_LIMIT.
template <class T>
void gemm(const cpu_backend&, T alpha, matrix_ref<const T> a, matrix_ref<const T> b, T beta, matrix_ref<T> c) noexcept {
    auto out = eigen_map(c);
    if (a.cols == 0) {
        if (beta == T(0)) out.setZero();
        else out *= beta;
        return;
    }
    if (beta == T(0)) {
        out.noalias() = alpha * (eigen_map(a) * eigen_map(b));
    } else {
        out *= beta;
        out.noalias() += alpha * (eigen_map(a) * eigen_map(b));
    }
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

/// dst = src element by element (same logical shape; any strides).
template <class T>
struct copy_matrix_kernel {
    matrix_ref<const T> src;
    matrix_ref<T> dst;
    DISTILL_HD void operator()(index_t idx) const noexcept {
        const index_t i = idx / src.cols, j = idx % src.cols;
        entry(dst, i, j) = entry(src, i, j);
    }
};
template <class Backend, class T>
void copy(const Backend& backend, matrix_ref<const T> src, matrix_ref<T> dst) {
    backend.for_each(src.rows * src.cols, copy_matrix_kernel<T>{src, dst});
}

/// The sum of f(i) over [0, n) through the backend.
template <class T, class Backend, class F>
T sum_over(const Backend& backend, index_t n, const F& f) {
    return backend.transform_reduce(n, f, T(0), plus_op<T>{});
}

// ---------------------------------------------------------------- row L2 normalisation

/// y_i = x_i / max(||x_i||, eps) for every row i; norm[i] keeps ||x_i|| for the VJP.
/// x and y may be the same matrix (in place).
template <class T>
struct normalize_rows_kernel {
    matrix_ref<const T> x;
    matrix_ref<T> y;
    T* norm;  ///< may be null
    T eps;
    DISTILL_HD void operator()(index_t i) const noexcept {
        T sq = 0;
        for (index_t j = 0; j < x.cols; ++j) {
            const T v = entry(x, i, j);
            sq += v * v;
        }
        const T n = detail::sqrt(sq);
        const T inv = T(1) / (n > eps ? n : eps);
        for (index_t j = 0; j < x.cols; ++j) entry(y, i, j) = entry(x, i, j) * inv;
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
            for (index_t j = 0; j < y.cols; ++j) dot += entry(y, i, j) * entry(dy, i, j);
        }
        for (index_t j = 0; j < y.cols; ++j) {
            const T g = scale * (entry(dy, i, j) - entry(y, i, j) * dot) * inv;
            T& out = entry(dx, i, j);
            out = accumulate ? out + g : g;
        }
    }
};

/// a(i, j) and a(j, i) <- a(i, j) + a(j, i) (square matrix, in place): d(F F^T) needs dG + dG^T.
template <class T>
struct symmetrize_kernel {
    matrix_ref<T> a;
    DISTILL_HD void operator()(index_t idx) const noexcept {
        const index_t i = idx / a.cols, j = idx % a.cols;
        if (j < i) return;
        const T s = entry(a, i, j) + entry(a, j, i);
        entry(a, i, j) = s;
        entry(a, j, i) = s;
    }
};

}  // namespace detail
}  // namespace distill
