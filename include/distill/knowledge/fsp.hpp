// distill/knowledge/fsp.hpp: FSP ("flow of solution procedure") matrices and their VJP.
//
//   G_n = (1/K) U_n B_n^T   (C_top x C_bottom per sample, K = H W)
//
// for a bottom map B (N x C_bottom x H x W) and a top map U (N x C_top x H x W) of the same
// spatial size, each sample read as a C x K matrix. Yim, Joo, Bae, Kim, "A Gift from Knowledge
// Distillation", CVPR 2017. VJP, with dG the upstream:
//   dB_n = (1/K) dG_n^T U_n,   dU_n = (1/K) dG_n B_n.
// Cost: one batched N x C_top x C_bottom x K GEMM forward, two for the VJP (Eigen per sample on
// the CPU); no workspace: the maps are read in place, so each sample's H and W dimensions must be
// walkable with one stride (any dense layout; otherwise errc::unsupported_layout). Maps of
// different sizes: pool one with knowledge::adaptive_avg_pool first (the fsp loss does this).
#pragma once

#include <utility>

#include "spatial.hpp"

namespace distill {
namespace detail {

/// G = (1/K) U B^T for every sample (G dense or strided, N x C_top x C_bottom).
template <class Backend, class T>
void fsp_forward(const Backend& backend, index_t n, batched_matrix<const T> bottom, batched_matrix<const T> top,
                 batched_matrix<T> g) {
    batched_gemm(backend, n, T(1) / T(bottom.m.cols), top, transposed(bottom), T(0), g);
}

/// grad_bottom (+)= (1/K) dG^T U and grad_top (+)= (1/K) dG B (either may be skipped: m.data null).
template <class Backend, class T>
void fsp_backward(const Backend& backend, index_t n, batched_matrix<const T> bottom, batched_matrix<const T> top,
                  batched_matrix<const T> grad_g, batched_matrix<T> grad_bottom, bool accumulate_bottom,
                  batched_matrix<T> grad_top, bool accumulate_top) {
    const T inv_k = T(1) / T(bottom.m.cols);
    if (grad_bottom.m.data)
        batched_gemm(backend, n, inv_k, transposed(grad_g), top, accumulate_bottom ? T(1) : T(0), grad_bottom);
    if (grad_top.m.data) batched_gemm(backend, n, inv_k, grad_g, bottom, accumulate_top ? T(1) : T(0), grad_top);
}

/// A rank-3 N x R x C view as a batch of R x C matrices.
template <class T, std::size_t R, class S>
constexpr batched_matrix<T> to_batched_matrix(const strided_view<T, R, S>& v) noexcept {
    if (!v.bound() || v.rank() != 3) return {};
    return {{v.data(), v.extent(1), v.extent(2), v.stride(1), v.stride(2)}, v.stride(0)};
}

/// A 4-D map whose samples are read in place as C x (H W) matrices.
template <class V>
status check_walkable_map(const char* method, const char* name, const V& v) noexcept {
    using T = std::remove_reference_t<decltype(*v.data())>;
    matrix_ref<T> m;
    if (sample_matrix(to_map_ref(v), m)) return {};
    return method_error(errc::unsupported_layout, method, name).text(name).text(" with shape ").shape(v.extents(), 4)
        .text(" has H and W strides that cannot be walked with one stride; pass a dense copy");
}

}  // namespace detail

namespace knowledge {

/// out = the FSP matrices of bottom (N x Cb x H x W) and top (N x Cu x H x W): N x Cu x Cb, with
/// out(n, a, b) = (1/(H W)) sum_k top(n, a, k) bottom(n, b, k). out may have any strides.
template <backend_object Backend, real_tensor B, real_tensor U, class O>
status fsp_matrix(const Backend& backend, const B& bottom_tensor, const U& top_tensor, O&& out_tensor) {
    using T = value_type_t<B>;
    using Space = memory_space_t<B>;
    constexpr const char* name = "fsp_matrix";
    const any_view<const T, Space> bottom(as_view(bottom_tensor)), top(as_view(top_tensor));
    const any_view<T, Space> out(as_view(out_tensor));
    if (status s = detail::check_map_tensor(name, "bottom", bottom); !s) return s;
    if (status s = detail::check_map_tensor(name, "top", top); !s) return s;
    if (top.extent(0) != bottom.extent(0) || top.extent(2) != bottom.extent(2) || top.extent(3) != bottom.extent(3))
        return detail::method_error(errc::shape_mismatch, name, "top").text("top has shape ").shape(top.extents(), 4)
            .text(" but bottom has shape ").shape(bottom.extents(), 4).text(" (N, H and W must match; pool one first)");
    if (status s = detail::check_walkable_map(name, "bottom", bottom); !s) return s;
    if (status s = detail::check_walkable_map(name, "top", top); !s) return s;
    if (status s = detail::check_extents(name, "out", out, {bottom.extent(0), top.extent(1), bottom.extent(1)}); !s) return s;
    if (detail::range_of(out).overlaps(detail::range_of(bottom)) || detail::range_of(out).overlaps(detail::range_of(top)))
        return detail::method_error(errc::aliasing, name, "out").text("out overlaps an input");
    detail::fsp_forward(backend, bottom.extent(0), detail::sample_matrices(detail::to_map_ref(bottom)),
                        detail::sample_matrices(detail::to_map_ref(top)), detail::to_batched_matrix(out));
    return {};
}

/// grad_bottom = d <grad_out, fsp_matrix(bottom, top)> / d bottom and grad_top = ... / d top
/// (grad_out N x Cu x Cb; each gradient has its input's shape, dense per sample, and may be
/// distill::none to skip it). No workspace.
template <backend_object Backend, real_tensor B, real_tensor U, real_tensor G, class OB, class OU>
status fsp_matrix_vjp(const Backend& backend, const B& bottom_tensor, const U& top_tensor, const G& grad_out_tensor,
                      OB&& grad_bottom_tensor, OU&& grad_top_tensor) {
    using T = value_type_t<B>;
    using Space = memory_space_t<B>;
    constexpr const char* name = "fsp_matrix_vjp";
    const any_view<const T, Space> bottom(as_view(bottom_tensor)), top(as_view(top_tensor)), grad_out(as_view(grad_out_tensor));
    const any_view<T, Space> grad_bottom = detail::optional_view<T, Space>(grad_bottom_tensor),
                            grad_top = detail::optional_view<T, Space>(grad_top_tensor);
    if (status s = detail::check_map_tensor(name, "bottom", bottom); !s) return s;
    if (status s = detail::check_map_tensor(name, "top", top); !s) return s;
    if (top.extent(0) != bottom.extent(0) || top.extent(2) != bottom.extent(2) || top.extent(3) != bottom.extent(3))
        return detail::method_error(errc::shape_mismatch, name, "top").text("top has shape ").shape(top.extents(), 4)
            .text(" but bottom has shape ").shape(bottom.extents(), 4).text(" (N, H and W must match; pool one first)");
    if (status s = detail::check_walkable_map(name, "bottom", bottom); !s) return s;
    if (status s = detail::check_walkable_map(name, "top", top); !s) return s;
    if (status s = detail::check_extents(name, "grad_out", grad_out, {bottom.extent(0), top.extent(1), bottom.extent(1)}); !s)
        return s;
    const any_view<T, Space> grads[2] = {grad_bottom, grad_top};
    const any_view<const T, Space> inputs[3] = {bottom, top, grad_out};
    const char* names[2] = {"grad_bottom", "grad_top"};
    for (int i = 0; i < 2; ++i) {
        if (!grads[i].bound()) continue;
        if (status s = detail::check_output_shape(name, names[i], grads[i], inputs[i]); !s) return s;
        if (status s = detail::check_walkable_map(name, names[i], grads[i]); !s) return s;
        for (const auto& in : inputs)
            if (detail::range_of(grads[i]).overlaps(detail::range_of(in)))
                return detail::method_error(errc::aliasing, name, names[i]).text(names[i]).text(" overlaps an input");
    }
    if (detail::range_of(grad_bottom).overlaps(detail::range_of(grad_top)))
        return detail::method_error(errc::aliasing, name, "grad_top").text("grad_top overlaps grad_bottom");
    detail::batched_matrix<T> gb{}, gu{};
    if (grad_bottom.bound()) gb = detail::sample_matrices(detail::to_map_ref(grad_bottom));
    if (grad_top.bound()) gu = detail::sample_matrices(detail::to_map_ref(grad_top));
    detail::fsp_backward(backend, bottom.extent(0), detail::sample_matrices(detail::to_map_ref(bottom)),
                         detail::sample_matrices(detail::to_map_ref(top)), detail::to_batched_matrix(grad_out), gb, false, gu,
                         false);
    return {};
}

template <real_tensor B, real_tensor U, class O>
status fsp_matrix(const B& bottom, const U& top, O&& out) {
    return fsp_matrix(default_backend_t<memory_space_t<B>>{}, bottom, top, std::forward<O>(out));
}
template <real_tensor B, real_tensor U, real_tensor G, class OB, class OU>
status fsp_matrix_vjp(const B& bottom, const U& top, const G& grad_out, OB&& grad_bottom, OU&& grad_top) {
    return fsp_matrix_vjp(default_backend_t<memory_space_t<B>>{}, bottom, top, grad_out, std::forward<OB>(grad_bottom),
                          std::forward<OU>(grad_top));
}

}  // namespace knowledge
}  // namespace distill
