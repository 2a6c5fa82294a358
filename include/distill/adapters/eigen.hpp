// distill/adapters/eigen.hpp: Eigen dense objects with direct access as distill views.
//
// Matrix, Array, Map (with any Stride), Ref and blocks of these, row-major and
// column-major. Vectors (IsVectorAtCompileTime) become rank-1 views, everything
// else rank-2 views whose strides follow the storage order, so a column-major
// N x C matrix gives the same results as a row-major one. Lazy expressions
// (a + b, a * b) have no memory to view: evaluate them first.
#pragma once

#include <Eigen/Core>

#include <type_traits>

#include "../core/tensor.hpp"

namespace distill {

namespace detail {
template <class X>
concept eigen_direct_access = std::is_base_of_v<Eigen::DenseBase<X>, X> && requires(const X& x) {
    x.data();
    x.innerStride();
    x.outerStride();
} && ((Eigen::internal::traits<X>::Flags & Eigen::DirectAccessBit) != 0);
}  // namespace detail

template <detail::eigen_direct_access X>
struct tensor_adapter<X> {
    template <class Self>
    static auto view(Self& x) noexcept {
        using element = std::remove_pointer_t<decltype(x.data())>;
        if constexpr (X::IsVectorAtCompileTime) {
            const index_t ext = static_cast<index_t>(x.size()), str = static_cast<index_t>(x.innerStride());
            return strided_view<element, 1>(x.data(), 1, &ext, &str);
        } else {
            const index_t ext[2] = {static_cast<index_t>(x.rows()), static_cast<index_t>(x.cols())};
            const index_t inner = x.innerStride(), outer = x.outerStride();
            const index_t str[2] = {X::IsRowMajor ? outer : inner, X::IsRowMajor ? inner : outer};
            return strided_view<element, 2>(x.data(), 2, ext, str);
        }
    }
};

}  // namespace distill
