// distill/knowledge/distance.hpp: the pairwise distances and the angle structure of a batch, and
// their VJPs (Park et al.'s relational knowledge, rkd; building blocks for new relation losses).
//
//   D_ij = sqrt(max(||e_j - e_i||^2, 1e-12)) for i != j,  D_ii = 0                     (N x N)
//   psi_A[i, j, k] = <u_ij, u_ik>,  u_ij = normalize(e_j - e_i)  (u_ii = 0; vertex i)   (N x N x N)
//
// e_i is row i of the N x D features (any rank >= 2, rows flattened).
//
// Distances. The squared distance of each pair is summed from the differences e_j - e_i, not
// from ||e_i||^2 + ||e_j||^2 - 2 <e_i, e_j> (a Gram matrix): only the direct form gives an exact 0
// for duplicate rows (whose D is then the clamp 1e-6 with no gradient) and no cancellation for
// close ones. One thread per pair i < j, O(D) each: O(N^2 D) time, nothing but the N x N output.
// VJP: dE_a = sum_b W_ab (e_a - e_b) with W_ab = (dD_ab + dD_ba) / D_ab where the clamp passes the
// gradient (else 0), one row per thread from the differences again: O(N^2 D), N^2 scratch.
//
// Angles. For a vertex i, the N x N slice psi_A[i] is the Gram matrix U_i U_i^T of the N x D
// normalised differences U_i (row j = u_ij). The slices are built one vertex at a time from an
// N x D scratch reused per vertex, so no N x N x D difference tensor is ever formed:
//   forward  per vertex: N x D differences and norms, one N x N x D product    -> O(N^3 D) total
//            (a GEMM; on the CPU backend Eigen's symmetric rank-D update: half the flops)
//   VJP      per vertex: dU_i = (G_i + G_i^T) U_i (one GEMM), normalize's VJP, then
//            dE_j += du_ij (j != i) and dE_i -= sum_{j != i} du_ij            -> O(N^3 D) total
// Scratch O(N D + N^2) (the VJP's symmetrised upstream slice); the N^3 array exists only as the
// caller's output (forward) or upstream (VJP). The rkd loss uses the same per-vertex steps and
// never stores more than one N x N slice per network.
//
// Zero differences (u_ii, and u_ij for duplicate rows) follow normalize's 1/eps branch: the
// gradient of a duplicate pair is large (about upstream / 1e-12) but finite; the vertex's own
// difference e_i - e_i is skipped (its two contributions cancel exactly).
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>

#include "../losses/feature/common.hpp"
#include "../losses/response/driver.hpp"
#include "primitives.hpp"

namespace distill {

/// The clamp of squared pairwise distances: D = sqrt(max(||e_j - e_i||^2, 1e-12)) >= 1e-6.
template <class T>
inline constexpr T distance_squared_floor = T(1e-12);

namespace detail {

/// max(sq, 1e-12) under the root; the clamp passes the gradient when sq >= 1e-12 (torch's rule).
template <class T>
DISTILL_HD inline T pair_clamped_distance(T sq) noexcept {
    const T floor = distance_squared_floor<T>;
    return detail::sqrt(sq >= floor ? sq : floor);
}

/// sq(i, j) = sq(j, i) = ||e_j - e_i||^2 summed from the differences; sq(i, i) = 0. One thread per
/// pair i <= j (the others return), so the matrix is exactly symmetric.
template <class T>
struct pair_squared_distance_kernel {
    matrix_ref<const T> e;
    matrix_ref<T> sq;
    DISTILL_HD void operator()(index_t idx) const noexcept {
        const index_t i = idx / sq.cols, j = idx % sq.cols;
        if (j < i) return;
        T sum = 0;
        if (j != i) {
            const T* a = e.row(i);
            const T* b = e.row(j);
            const index_t step = e.col_stride;
            for (index_t d = 0; d < e.cols; ++d) {
                const T v = b[d * step] - a[d * step];
                sum += v * v;
            }
        }
        entry(sq, i, j) = sum;
        entry(sq, j, i) = sum;
    }
};

/// out(i, j) = scale * D_ij from the squared distances (0 on the diagonal); out may be sq.
template <class T>
struct distance_from_squared_kernel {
    matrix_ref<const T> sq;
    matrix_ref<T> out;
    T scale;
    DISTILL_HD void operator()(index_t idx) const noexcept {
        const index_t i = idx / sq.cols, j = idx % sq.cols;
        entry(out, i, j) = i == j ? T(0) : scale * pair_clamped_distance(entry(sq, i, j));
    }
};

/// D_ij off the diagonal, for sums of distances.
template <class T>
struct distance_entry_kernel {
    matrix_ref<const T> sq;
    DISTILL_HD T operator()(index_t idx) const noexcept {
        const index_t i = idx / sq.cols, j = idx % sq.cols;
        return i == j ? T(0) : pair_clamped_distance(entry(sq, i, j));
    }
};

/// w(a, b) = (g(a, b) + g(b, a)) / D_ab for a != b where the clamp passes the gradient, else 0:
/// the weights of the differences in the VJP of D. w may be sq (each entry reads only itself).
template <class T>
struct distance_pair_weight_kernel {
    matrix_ref<const T> sq;
    matrix_ref<const T> grad_distance;
    matrix_ref<T> w;
    DISTILL_HD void operator()(index_t idx) const noexcept {
        const index_t a = idx / sq.cols, b = idx % sq.cols;
        const T s = entry(sq, a, b);
        T value = 0;
        if (a != b && s >= distance_squared_floor<T>)
            value = (entry(grad_distance, a, b) + entry(grad_distance, b, a)) / detail::sqrt(s);
        entry(w, a, b) = value;
    }
};

/// grad_a (+)= sum_b w(a, b) (e_a - e_b), one row a per thread (the differences formed directly,
/// so a heavy weight on a close pair does not cancel). Zero weights are skipped.
template <class T>
struct pair_difference_vjp_kernel {
    matrix_ref<const T> e;
    matrix_ref<const T> w;
    matrix_ref<T> grad;
    bool accumulate;
    DISTILL_HD void operator()(index_t a) const noexcept {
        if (!accumulate)
            for (index_t d = 0; d < grad.cols; ++d) entry(grad, a, d) = T(0);
        const T* ea = e.row(a);
        const index_t step = e.col_stride;
        for (index_t b = 0; b < w.cols; ++b) {
            const T weight = entry(w, a, b);
            if (weight == T(0)) continue;
            const T* eb = e.row(b);
            for (index_t d = 0; d < e.cols; ++d) entry(grad, a, d) += weight * (ea[d * step] - eb[d * step]);
        }
    }
};

/// Row j of U = normalize(e_j - e_vertex) (normalize's max(||.||, 1e-12)); norm[j] = ||e_j - e_vertex||.
template <class T>
struct vertex_direction_kernel {
    matrix_ref<const T> e;
    index_t vertex;
    matrix_ref<T> u;
    T* norm;
    DISTILL_HD void operator()(index_t j) const noexcept {
        const T* origin = e.row(vertex);
        const T* point = e.row(j);
        const index_t step = e.col_stride;
        const T eps = normalize_eps<T>;
        if (step == 1 && u.col_stride == 1) {
            // Contiguous: the differences into U's row, their norm, the scaling: three loops
            // the compiler vectorises (the same values as the strided loop below).
            T* out = u.row(j);
            contiguous_scaled_residual(out, point, origin, T(1), T(1), e.cols);  // point - origin
            const T n = detail::sqrt(contiguous_dot(out, out, e.cols));
            const T inv = T(1) / (n > eps ? n : eps);
            contiguous_scaled_residual(out, out, out, T(0), inv, e.cols);
            norm[j] = n;
            return;
        }
        T sq = 0;
        for (index_t d = 0; d < e.cols; ++d) {
            const T v = point[d * step] - origin[d * step];
            sq += v * v;
        }
        const T n = detail::sqrt(sq);
        const T inv = T(1) / (n > eps ? n : eps);
        for (index_t d = 0; d < e.cols; ++d) entry(u, j, d) = (point[d * step] - origin[d * step]) * inv;
        norm[j] = n;
    }
};

/// The VJP of the differences e_j - e_vertex, one column d per thread: grad_j += dd_j for j != vertex
/// and grad_vertex -= sum_{j != vertex} dd_j (the vertex's own zero difference contributes nothing).
template <class T>
struct vertex_scatter_kernel {
    matrix_ref<const T> dd;
    index_t vertex;
    matrix_ref<T> grad;
    DISTILL_HD void operator()(index_t d) const noexcept {
        T total = 0;
        for (index_t j = 0; j < dd.rows; ++j) {
            if (j == vertex) continue;
            const T v = entry(dd, j, d);
            entry(grad, j, d) += v;
            total += v;
        }
        entry(grad, vertex, d) -= total;
    }
};

/// Every entry of a matrix set to a value.
template <class T>
struct relation_fill_kernel {
    matrix_ref<T> m;
    T value;
    DISTILL_HD void operator()(index_t idx) const noexcept { entry(m, idx / m.cols, idx % m.cols) = value; }
};

/// dst(i, j) = src(i, j) + src(j, i) (square; dst must not be src).
template <class T>
struct angle_symmetric_part_kernel {
    matrix_ref<const T> src;
    matrix_ref<T> dst;
    DISTILL_HD void operator()(index_t idx) const noexcept {
        const index_t i = idx / src.cols, j = idx % src.cols;
        entry(dst, i, j) = entry(src, i, j) + entry(src, j, i);
    }
};

/// D (or D scaled) into `out` from the features: the squared distances are written into out, then
/// turned into distances in place.
template <class Backend, class T>
void pairwise_distance_forward(const Backend& backend, matrix_ref<const T> features, matrix_ref<T> out) {
    const index_t n = features.rows;
    backend.for_each(n * n, pair_squared_distance_kernel<T>{features, out});
    backend.for_each(n * n, distance_from_squared_kernel<T>{as_const(out), out, T(1)});
}

/// A = U U^T for one vertex's differences: a GEMM on any backend.
template <class Backend, class T>
void vertex_gram(const Backend& backend, matrix_ref<const T> directions, matrix_ref<T> slice) {
    gemm(backend, T(1), directions, transposed(directions), T(0), slice);
}

/// The CPU backend: detail::gram (Eigen's symmetric rank-k update for wide rows, mirrored tile by
/// tile, so the slice is exactly symmetric; the plain GEMM for narrow rows).
template <class T>
void vertex_gram(const cpu_backend& backend, matrix_ref<const T> directions, matrix_ref<T> slice) noexcept {
    gram(backend, directions, slice);
}

/// Vertex i's N x D normalised differences U (and their norms), and the slice A = U U^T.
template <class Backend, class T>
void angle_vertex_forward(const Backend& backend, matrix_ref<const T> features, index_t vertex, matrix_ref<T> directions,
                          T* norm, matrix_ref<T> slice) {
    backend.for_each(features.rows, vertex_direction_kernel<T>{features, vertex, directions, norm});
    vertex_gram(backend, as_const(directions), slice);
}

/// grad += the VJP of vertex i's slice given its symmetrised upstream (G + G^T), from the forward's
/// U and norms; grad_directions is an N x D scratch.
template <class Backend, class T>
void angle_vertex_backward(const Backend& backend, index_t vertex, matrix_ref<const T> directions, const T* norm,
                           matrix_ref<const T> symmetric_upstream, matrix_ref<T> grad_directions, matrix_ref<T> grad) {
    gemm(backend, T(1), symmetric_upstream, directions, T(0), grad_directions);
    backend.for_each(directions.rows, normalize_rows_vjp_kernel<T>{directions, norm, as_const(grad_directions),
                                                                   grad_directions, normalize_eps<T>});
    if constexpr (std::is_same_v<Backend, cpu_backend>) {
        // Row by row on the CPU (contiguous rows of dd and grad); one column per thread elsewhere.
        const matrix_ref<const T> dd = as_const(grad_directions);
        T* vertex_row = grad.row(vertex);
        for (index_t j = 0; j < dd.rows; ++j) {
            if (j == vertex) continue;
            const T* from = dd.row(j);
            T* to = grad.row(j);
            if (grad.col_stride == 1 && dd.col_stride == 1) {  // contiguous: SIMD packs
                contiguous_scaled_residual(to, to, from, T(-1), T(1), dd.cols);                  // to + from
                contiguous_scaled_residual(vertex_row, vertex_row, from, T(1), T(1), dd.cols);  // vertex - from
                continue;
            }
            for (index_t d = 0; d < dd.cols; ++d) {
                to[d * grad.col_stride] += from[d * dd.col_stride];
                vertex_row[d * grad.col_stride] -= from[d * dd.col_stride];
            }
        }
    } else {
        backend.for_each(directions.cols, vertex_scatter_kernel<T>{as_const(grad_directions), vertex, grad});
    }
}

/// The N x N slice [i, :, :] of an N x N x N view.
template <class T, class Space>
matrix_ref<T> angle_slice(const any_view<T, Space>& cube, index_t i) noexcept {
    return {cube.data() + i * cube.stride(0), cube.extent(1), cube.extent(2), cube.stride(1), cube.stride(2)};
}

/// Shared checks of the extractors: the features (rank >= 2, flattenable) and an output or
/// upstream of N x N (rank 2) or N x N x N (rank 3).
template <class T, class Space>
status check_relation_features(const char* name, const any_view<const T, Space>& features, matrix_ref<const T>& f) noexcept {
    if (status s = check_feature_tensor(name, "features", features, 2, max_dynamic_rank); !s) return s;
    return flatten_input(name, "features", features, f);
}
template <class V>
status check_relation_square(const char* name, const char* argument, const V& v, int rank, index_t n) noexcept {
    bool ok = v.bound() && v.rank() == rank;
    for (int r = 0; ok && r < rank; ++r) ok = v.extent(r) == n;
    if (ok) return {};
    status s = method_error(errc::shape_mismatch, name, argument).text(argument).text(" must be ").number(n);
    for (int r = 1; r < rank; ++r) s.text(" x ").number(n);
    if (v.bound()) s.text(", got shape ").shape(v.extents(), v.rank());
    return s;
}
/// The gradient output of an extractor's VJP: the features' shape, dense per sample, no overlap.
template <class T, class Space>
status check_relation_grad(const char* name, const any_view<T, Space>& grad_features, const any_view<const T, Space>& features,
                           const any_view<const T, Space>& grad_out, matrix_ref<T>& g) noexcept {
    if (!grad_features.bound()) return method_error(errc::missing_argument, name, "grad_features").text("grad_features is required");
    if (status s = check_output_shape(name, "grad_features", grad_features, features); !s) return s;
    if (!flatten_rows(grad_features, g))
        return method_error(errc::unsupported_layout, name, "grad_features").text("grad_features must be dense per sample");
    if (range_of(grad_features).overlaps(range_of(features)) || range_of(grad_features).overlaps(range_of(grad_out)))
        return method_error(errc::aliasing, name, "grad_features").text("grad_features overlaps an input");
    return {};
}

}  // namespace detail

namespace knowledge {

/// Scratch of pairwise_distance_vjp: one N x N matrix, in T.
template <class T>
constexpr std::size_t pairwise_distance_vjp_workspace_bytes(index_t n) noexcept {
    return static_cast<std::size_t>(n) * static_cast<std::size_t>(n) * sizeof(T);
}
/// Scratch of angle_structure: the N x D differences of one vertex and N norms, in T.
template <class T>
constexpr std::size_t angle_structure_workspace_bytes(index_t n, index_t d) noexcept {
    return (static_cast<std::size_t>(n) * static_cast<std::size_t>(d) + static_cast<std::size_t>(n)) * sizeof(T);
}
/// Scratch of angle_structure_vjp: two N x D matrices, one N x N matrix and N norms, in T.
template <class T>
constexpr std::size_t angle_structure_vjp_workspace_bytes(index_t n, index_t d) noexcept {
    const auto nn = static_cast<std::size_t>(n);
    return (2 * nn * static_cast<std::size_t>(d) + nn * nn + nn) * sizeof(T);
}

/// out = the N x N pairwise distances D of the rows of `features` (any rank >= 2). No scratch.
template <backend_object Backend, real_tensor F, class O>
status pairwise_distance(const Backend& backend, const F& features_tensor, O&& out_tensor) {
    using T = value_type_t<F>;
    using Space = memory_space_t<F>;
    constexpr const char* name = "pairwise_distance";
    const any_view<const T, Space> features(as_view(features_tensor));
    const any_view<T, Space> out(as_view(out_tensor));
    detail::matrix_ref<const T> f;
    if (status s = detail::check_relation_features(name, features, f); !s) return s;
    if (status s = detail::check_relation_square(name, "out", out, 2, f.rows); !s) return s;
    if (detail::range_of(out).overlaps(detail::range_of(features)))
        return detail::method_error(errc::aliasing, name, "out").text("out overlaps features");
    detail::pairwise_distance_forward(backend, f, detail::to_matrix_ref(out));
    return {};
}

/// grad_features = d <grad_out, D(features)> / d features (grad_out: N x N, any values).
/// Workspace: pairwise_distance_vjp_workspace_bytes<T>(N).
template <backend_object Backend, real_tensor F, real_tensor G, class O>
status pairwise_distance_vjp(const Backend& backend, const F& features_tensor, const G& grad_out_tensor,
                             O&& grad_features_tensor, workspace ws) {
    using T = value_type_t<F>;
    using Space = memory_space_t<F>;
    constexpr const char* name = "pairwise_distance_vjp";
    const any_view<const T, Space> features(as_view(features_tensor)), grad_out(as_view(grad_out_tensor));
    const any_view<T, Space> grad_features(as_view(grad_features_tensor));
    detail::matrix_ref<const T> f;
    if (status s = detail::check_relation_features(name, features, f); !s) return s;
    const index_t n = f.rows;
    if (status s = detail::check_relation_square(name, "grad_out", grad_out, 2, n); !s) return s;
    detail::matrix_ref<T> g;
    if (status s = detail::check_relation_grad(name, grad_features, features, grad_out, g); !s) return s;
    if (status s = detail::check_workspace(name, ws, pairwise_distance_vjp_workspace_bytes<T>(n)); !s) return s;
    const auto w = detail::dense_matrix(static_cast<T*>(ws.data), n, n);
    backend.for_each(n * n, detail::pair_squared_distance_kernel<T>{f, w});
    backend.for_each(n * n, detail::distance_pair_weight_kernel<T>{detail::as_const(w), detail::to_matrix_ref(grad_out), w});
    backend.for_each(n, detail::pair_difference_vjp_kernel<T>{f, detail::as_const(w), g, false});
    return {};
}

/// out[i, j, k] = <u_ij, u_ik>, u_ij = normalize(e_j - e_i): the N x N x N angle structure of the
/// rows of `features`, one vertex (slice) at a time. Workspace: angle_structure_workspace_bytes<T>(N, D).
template <backend_object Backend, real_tensor F, class O>
status angle_structure(const Backend& backend, const F& features_tensor, O&& out_tensor, workspace ws) {
    using T = value_type_t<F>;
    using Space = memory_space_t<F>;
    constexpr const char* name = "angle_structure";
    const any_view<const T, Space> features(as_view(features_tensor));
    const any_view<T, Space> out(as_view(out_tensor));
    detail::matrix_ref<const T> f;
    if (status s = detail::check_relation_features(name, features, f); !s) return s;
    const index_t n = f.rows, d = f.cols;
    if (status s = detail::check_relation_square(name, "out", out, 3, n); !s) return s;
    if (detail::range_of(out).overlaps(detail::range_of(features)))
        return detail::method_error(errc::aliasing, name, "out").text("out overlaps features");
    if (status s = detail::check_workspace(name, ws, angle_structure_workspace_bytes<T>(n, d)); !s) return s;
    T* base = static_cast<T*>(ws.data);
    const auto u = detail::dense_matrix(base, n, d);
    T* norm = base + n * d;
    for (index_t i = 0; i < n; ++i) detail::angle_vertex_forward(backend, f, i, u, norm, detail::angle_slice(out, i));
    return {};
}

/// grad_features = d <grad_out, psi_A(features)> / d features (grad_out: N x N x N).
/// Workspace: angle_structure_vjp_workspace_bytes<T>(N, D).
template <backend_object Backend, real_tensor F, real_tensor G, class O>
status angle_structure_vjp(const Backend& backend, const F& features_tensor, const G& grad_out_tensor,
                           O&& grad_features_tensor, workspace ws) {
    using T = value_type_t<F>;
    using Space = memory_space_t<F>;
    constexpr const char* name = "angle_structure_vjp";
    const any_view<const T, Space> features(as_view(features_tensor)), grad_out(as_view(grad_out_tensor));
    const any_view<T, Space> grad_features(as_view(grad_features_tensor));
    detail::matrix_ref<const T> f;
    if (status s = detail::check_relation_features(name, features, f); !s) return s;
    const index_t n = f.rows, d = f.cols;
    if (status s = detail::check_relation_square(name, "grad_out", grad_out, 3, n); !s) return s;
    detail::matrix_ref<T> g;
    if (status s = detail::check_relation_grad(name, grad_features, features, grad_out, g); !s) return s;
    if (status s = detail::check_workspace(name, ws, angle_structure_vjp_workspace_bytes<T>(n, d)); !s) return s;
    T* base = static_cast<T*>(ws.data);
    const auto u = detail::dense_matrix(base, n, d), du = detail::dense_matrix(base + n * d, n, d);
    const auto upstream = detail::dense_matrix(base + 2 * n * d, n, n);
    T* norm = base + 2 * n * d + n * n;
    backend.for_each(n * d, detail::relation_fill_kernel<T>{g, T(0)});
    for (index_t i = 0; i < n; ++i) {
        backend.for_each(n, detail::vertex_direction_kernel<T>{f, i, u, norm});
        backend.for_each(n * n, detail::angle_symmetric_part_kernel<T>{detail::angle_slice(grad_out, i), upstream});
        detail::angle_vertex_backward(backend, i, detail::as_const(u), norm, detail::as_const(upstream), du, g);
    }
    return {};
}

template <real_tensor F, class O>
status pairwise_distance(const F& features, O&& out) {
    return pairwise_distance(default_backend_t<memory_space_t<F>>{}, features, std::forward<O>(out));
}
template <real_tensor F, real_tensor G, class O>
status pairwise_distance_vjp(const F& features, const G& grad_out, O&& grad_features, workspace ws) {
    return pairwise_distance_vjp(default_backend_t<memory_space_t<F>>{}, features, grad_out, std::forward<O>(grad_features), ws);
}
template <real_tensor F, class O>
status angle_structure(const F& features, O&& out, workspace ws) {
    return angle_structure(default_backend_t<memory_space_t<F>>{}, features, std::forward<O>(out), ws);
}
template <real_tensor F, real_tensor G, class O>
status angle_structure_vjp(const F& features, const G& grad_out, O&& grad_features, workspace ws) {
    return angle_structure_vjp(default_backend_t<memory_space_t<F>>{}, features, grad_out, std::forward<O>(grad_features), ws);
}

}  // namespace knowledge
}  // namespace distill
