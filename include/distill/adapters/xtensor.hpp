// distill/adapters/xtensor.hpp: xtensor containers and adaptors as distill views.
//
// Any xtensor expression with direct memory access (xt::xtensor, xt::xarray,
// xt::xtensor_fixed, the adaptors made by xt::adapt, strided views that expose
// data()/strides()). A container whose rank is fixed at compile time gives a view of
// that rank; xt::xarray gives a dynamic-rank view whose rank the losses check.
// Lazy expressions (a + b) have no memory to view: evaluate them first.
#pragma once

#include <xtensor/xexpression.hpp>
#include <xtensor/xutils.hpp>

#include <cstddef>
#include <tuple>
#include <type_traits>

#include "../core/tensor.hpp"

namespace distill {

namespace detail {
template <class X>
concept xtensor_direct_access = xt::is_xexpression<X>::value && requires(const X& x) {
    x.data();
    x.data_offset();
    x.shape();
    x.strides();
    x.dimension();
};

template <class Shape, class = void>
struct static_rank_of : std::integral_constant<std::size_t, dynamic_rank> {};
template <class Shape>
struct static_rank_of<Shape, std::void_t<decltype(std::tuple_size<Shape>::value)>>
    : std::integral_constant<std::size_t, std::tuple_size<Shape>::value> {};
}  // namespace detail

template <detail::xtensor_direct_access X>
struct tensor_adapter<X> {
    template <class Self>
    static auto view(Self& x) noexcept {
        using element = std::remove_pointer_t<decltype(x.data())>;
        constexpr std::size_t rank = detail::static_rank_of<std::remove_cvref_t<decltype(x.shape())>>::value;
        using result = strided_view<element, rank>;
        const auto dims = static_cast<int>(x.dimension());
        if (dims > max_dynamic_rank) return result();
        index_t ext[max_dynamic_rank] = {}, str[max_dynamic_rank] = {};
        for (int r = 0; r < dims; ++r) {
            ext[r] = static_cast<index_t>(x.shape()[static_cast<std::size_t>(r)]);
            str[r] = static_cast<index_t>(x.strides()[static_cast<std::size_t>(r)]);
        }
        return result(x.data() + x.data_offset(), dims, ext, str);
    }
};

}  // namespace distill
