// distill/core/tensor.hpp: the one customisation point for user tensor types.
//
// A type X becomes usable with every loss by specialising
//
//     template <> struct distill::tensor_adapter<X> {
//         static distill::strided_view<float, 2> view(X& x);              // mutable (outputs)
//         static distill::strided_view<const float, 2> view(const X& x);  // read-only (inputs)
//     };
//
// (a single template `static auto view(auto& x)` works too). This is the
// fmt::formatter pattern: a trait, not an ADL hook, so that third-party types
// (Eigen, xtensor, Thrust) are adapted without touching their namespaces.
// distill::as_view(x) is the only function that consults the trait.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

#include "view.hpp"

namespace distill {

/// Specialise for a tensor type to make it usable by distill (see header comment).
template <class T, class Enable = void>
struct tensor_adapter;

/// Views adapt to themselves.
template <class T, std::size_t R, class S>
struct tensor_adapter<strided_view<T, R, S>> {
    static constexpr strided_view<T, R, S> view(const strided_view<T, R, S>& v) noexcept { return v; }
};

/// std::span adapts to a rank-1 host view.
template <class T, std::size_t E>
struct tensor_adapter<std::span<T, E>> {
    static strided_view<T, 1> view(const std::span<T, E>& s) noexcept {
        const index_t ext = static_cast<index_t>(s.size()), str = 1;
        return strided_view<T, 1>(s.data(), 1, &ext, &str);
    }
};

/// Tag for an optional argument that is left out (labels, weight, outputs).
struct none_t {
    explicit constexpr none_t(int) noexcept {}
};
inline constexpr none_t none{0};

/// Any type with a tensor_adapter whose view() returns a strided_view.
template <class X>
concept tensor_like = requires(X& x) {
    { tensor_adapter<std::remove_cvref_t<X>>::view(x) };
    requires detail::is_strided_view<
        std::remove_cvref_t<decltype(tensor_adapter<std::remove_cvref_t<X>>::view(x))>>::value;
};

/// The view of a tensor: the customisation point's single entry.
template <tensor_like X>
constexpr auto as_view(X&& x) noexcept(noexcept(tensor_adapter<std::remove_cvref_t<X>>::view(x))) {
    return tensor_adapter<std::remove_cvref_t<X>>::view(x);
}

template <class X>
using view_type_t = decltype(as_view(std::declval<X&>()));
template <class X>
using element_type_t = typename view_type_t<X>::element_type;
template <class X>
using value_type_t = typename view_type_t<X>::value_type;
template <class X>
using memory_space_t = typename view_type_t<X>::memory_space;

/// A tensor of real numbers (float or double) in host memory, and in device memory.
template <class X>
concept real_tensor = tensor_like<X> && std::floating_point<value_type_t<X>>;
template <class X>
concept host_tensor = tensor_like<X> && std::same_as<memory_space_t<X>, host_space>;
template <class X>
concept device_tensor = tensor_like<X> && std::same_as<memory_space_t<X>, device_space>;
/// A tensor whose elements can be written (an output).
template <class X>
concept writable_tensor = tensor_like<X> && !std::is_const_v<element_type_t<X>>;
/// A tensor of integers (labels, indices).
template <class X>
concept integer_tensor = tensor_like<X> && std::integral<value_type_t<X>>;

/// An optional argument: a tensor, or distill::none.
template <class X>
concept optional_tensor = tensor_like<X> || std::same_as<std::remove_cvref_t<X>, none_t>;

namespace detail {
/// The dynamic-rank view of an optional argument (unbound for none).
template <class T, class Space, class X>
constexpr any_view<T, Space> optional_view(X&& x) noexcept {
    if constexpr (std::same_as<std::remove_cvref_t<X>, none_t>) {
        return {};
    } else {
        return any_view<T, Space>(as_view(x));
    }
}
}  // namespace detail

/// A contiguous tensor seen as a rows x cols matrix (e.g. a flat std::vector or thrust::device_vector).
/// Returns an unbound view (reported as a missing argument by the losses) when the tensor is
/// not contiguous or its size is not rows * cols.
template <tensor_like X>
constexpr auto as_matrix(X&& x, index_t rows, index_t cols) noexcept {
    const auto v = as_view(x);
    using V = std::remove_cvref_t<decltype(v)>;
    using result = any_view<typename V::element_type, typename V::memory_space>;
    if (!v.bound() || !v.is_row_major_contiguous() || rows < 0 || cols < 0) return result();
    if (cols != 0 && rows > INT64_MAX / cols) return result();  // rows * cols would overflow
    index_t size = 0;
    if (!v.checked_size(size) || size != rows * cols) return result();
    const index_t ext[2] = {rows, cols};
    const index_t str[2] = {cols, 1};
    return result(v.data(), 2, ext, str);
}

}  // namespace distill
