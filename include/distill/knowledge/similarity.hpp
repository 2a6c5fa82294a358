// distill/knowledge/similarity.hpp: the row-normalised Gram (similarity) matrix and its VJP.
//
//   G = F F^T (N x N, F the N x D rows of a batch),  S_i = normalize(G_i) = G_i / max(||G_i||, 1e-12)
//
// Tung & Mori's similarity-preserving knowledge (sp); also a building block for new relation
// losses. Cost: one N x N x D GEMM forward (Eigen on the CPU), one more for the VJP
// (dF = (dG + dG^T) F), O(N^2) memory; the N x D features are never copied.
#pragma once

#include <utility>

#include "../losses/feature/common.hpp"
#include "../losses/response/driver.hpp"
#include "../losses/response/result.hpp"
#include "primitives.hpp"

namespace distill {
namespace detail {

/// S = normalize_rows(F F^T) into the dense N x N `similarity`; norm[i] = ||G_i|| for the VJP.
template <class Backend, class T>
void similarity_forward(const Backend& backend, matrix_ref<const T> features, matrix_ref<T> similarity, T* norm) {
    gram(backend, features, similarity);
    backend.for_each(similarity.rows, normalize_rows_kernel<T>{as_const(similarity), similarity, norm, normalize_eps<T>});
}

/// dF (+)= d loss / d F given d loss / d S in `grad_similarity` (N x N, overwritten with dG + dG^T),
/// the forward's S and norms.
template <class Backend, class T>
void similarity_backward(const Backend& backend, matrix_ref<const T> features, matrix_ref<const T> similarity,
                         const T* norm, matrix_ref<T> grad_similarity, matrix_ref<T> grad_features, bool accumulate) {
    backend.for_each(similarity.rows, normalize_rows_vjp_kernel<T>{similarity, norm, as_const(grad_similarity),
                                                                   grad_similarity, normalize_eps<T>});
    symmetrize(backend, grad_similarity);
    gemm(backend, T(1), as_const(grad_similarity), features, accumulate ? T(1) : T(0), grad_features);
}

}  // namespace detail

namespace knowledge {

/// Scratch of similarity_vjp: the N x N matrix and N norms, in T.
template <class T>
constexpr std::size_t similarity_vjp_workspace_bytes(index_t n) noexcept {
    return (static_cast<std::size_t>(n) * static_cast<std::size_t>(n) + static_cast<std::size_t>(n)) * sizeof(T);
}

/// similarity = normalize_rows(F F^T) for features of any rank >= 2 (rows flattened), N x N out.
/// Any tensor types (as_view); the backend is the memory space's default unless given first.
template <backend_object Backend, real_tensor F, class O>
status similarity(const Backend& backend, const F& features_tensor, O&& out_tensor) {
    using T = value_type_t<F>;
    using Space = memory_space_t<F>;
    constexpr const char* name = "similarity";
    const any_view<const T, Space> features(as_view(features_tensor));
    const any_view<T, Space> out(as_view(out_tensor));
    if (status s = detail::check_feature_tensor(name, "features", features, 2, max_dynamic_rank); !s) return s;
    detail::matrix_ref<const T> f;
    if (status s = detail::flatten_input(name, "features", features, f); !s) return s;
    const index_t n = f.rows;
    if (!out.bound() || out.rank() != 2 || out.extent(0) != n || out.extent(1) != n)
        return detail::method_error(errc::shape_mismatch, name, "out").text("out must be ").number(n).text(" x ").number(n);
    if (detail::range_of(out).overlaps(detail::range_of(features)))
        return detail::method_error(errc::aliasing, name, "out").text("out overlaps features");
    detail::similarity_forward(backend, f, detail::to_matrix_ref(out), static_cast<T*>(nullptr));
    return {};
}

/// grad_features = d <grad_out, similarity(F)> / d F (the vector-Jacobian product).
/// Workspace: similarity_vjp_workspace_bytes<T>(N), in the tensors' memory space.
template <backend_object Backend, real_tensor F, real_tensor G, class O>
status similarity_vjp(const Backend& backend, const F& features_tensor, const G& grad_out_tensor, O&& grad_features_tensor,
                      workspace ws) {
    using T = value_type_t<F>;
    using Space = memory_space_t<F>;
    constexpr const char* name = "similarity_vjp";
    const any_view<const T, Space> features(as_view(features_tensor)), grad_out(as_view(grad_out_tensor));
    const any_view<T, Space> grad_features(as_view(grad_features_tensor));
    if (status s = detail::check_feature_tensor(name, "features", features, 2, max_dynamic_rank); !s) return s;
    detail::matrix_ref<const T> f;
    if (status s = detail::flatten_input(name, "features", features, f); !s) return s;
    const index_t n = f.rows;
    if (!grad_out.bound() || grad_out.rank() != 2 || grad_out.extent(0) != n || grad_out.extent(1) != n)
        return detail::method_error(errc::shape_mismatch, name, "grad_out").text("grad_out must be ").number(n).text(" x ").number(n);
    if (status s = detail::check_output_shape(name, "grad_features", grad_features, features); !s) return s;
    detail::matrix_ref<T> g;
    if (!detail::flatten_rows(grad_features, g))
        return detail::method_error(errc::unsupported_layout, name, "grad_features").text("grad_features must be dense per sample");
    if (detail::range_of(grad_features).overlaps(detail::range_of(features)) ||
        detail::range_of(grad_features).overlaps(detail::range_of(grad_out)))
        return detail::method_error(errc::aliasing, name, "grad_features").text("grad_features overlaps an input");
    if (status s = detail::check_workspace(name, ws, similarity_vjp_workspace_bytes<T>(n)); !s) return s;
    T* base = static_cast<T*>(ws.data);
    const auto s_matrix = detail::dense_matrix(base, n, n);
    T* norm = base + n * n;
    detail::similarity_forward(backend, f, s_matrix, norm);
    // The normalisation's VJP reads row i of S and of grad_out and writes dG_i over S_i (each
    // element is read before it is written), so one N x N scratch serves both.
    const detail::matrix_ref<T> dg = s_matrix;
    backend.for_each(n, detail::normalize_rows_vjp_kernel<T>{detail::as_const(s_matrix), norm,
                                                             detail::to_matrix_ref(grad_out), dg, normalize_eps<T>});
    detail::symmetrize(backend, dg);
    detail::gemm(backend, T(1), detail::as_const(dg), f, T(0), g);
    return {};
}

template <real_tensor F, class O>
status similarity(const F& features, O&& out) {
    return similarity(default_backend_t<memory_space_t<F>>{}, features, std::forward<O>(out));
}
template <real_tensor F, real_tensor G, class O>
status similarity_vjp(const F& features, const G& grad_out, O&& grad_features, workspace ws) {
    return similarity_vjp(default_backend_t<memory_space_t<F>>{}, features, grad_out, std::forward<O>(grad_features), ws);
}

}  // namespace knowledge
}  // namespace distill
