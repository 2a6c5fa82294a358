// distill/core/finite.hpp: the opt-in check for non-finite values (docs/reliability.md).
//
// The losses do not inspect the values of real inputs: a nan or inf in logits or features runs
// to completion (every output is written, nothing is read or written out of bounds) but the
// values of the outputs are then unspecified. A caller who wants a clear error instead checks
// the inputs first:
//
//   if (distill::status s = distill::check_finite("student", student); !s) ...   // value error
//
// One pass over the tensor on the backend of its memory space (or the backend given first).
#pragma once

#include <cstddef>
#include <type_traits>

#include "../detail/math.hpp"
#include "backend.hpp"
#include "config.hpp"
#include "status.hpp"
#include "tensor.hpp"
#include "view.hpp"

namespace distill {

namespace detail {
/// 1 when the element at row-major flat index i of the view is nan or inf, else 0.
template <class T, std::size_t R, class Space>
struct non_finite_at {
    strided_view<const T, R, Space> v;
    DISTILL_HD index_t operator()(index_t flat) const noexcept {
        index_t offset = 0;
        for (int r = v.rank() - 1; r >= 0; --r) {
            const index_t e = v.extent(r);
            offset += (flat % e) * v.stride(r);
            flat /= e;
        }
        return is_finite(v.data()[offset]) ? index_t{0} : index_t{1};
    }
};
}  // namespace detail

/// A value error (errc::non_finite_input) naming `name` and counting its nan and inf elements;
/// success for an unbound or empty view; a shape error for a view whose size overflows.
template <class Backend, class T, std::size_t R, class Space>
    requires std::is_floating_point_v<std::remove_const_t<T>>
status check_finite(const Backend& backend, const char* name, const strided_view<T, R, Space>& v) noexcept(
    Backend::is_nothrow) {
    if (!v.bound()) return {};
    index_t n = 0;
    if (!v.checked_size(n))
        return status::error(errc::size_overflow, name).text("check_finite: ").text(name).text(" has shape ")
            .shape(v.extents(), v.rank()).text(" whose element count or address span overflows 63 bits");
    if (n == 0) return {};
    using E = std::remove_const_t<T>;
    const index_t bad = backend.transform_reduce(
        n, detail::non_finite_at<E, R, Space>{strided_view<const E, R, Space>(v)}, index_t{0}, detail::plus_op<index_t>{});
    if (bad == 0) return {};
    return status::error(errc::non_finite_input, name).text("check_finite: ").text(name).text(" has ").number(bad)
        .text(" non-finite value").text(bad == 1 ? "" : "s").text(" (nan or inf) among ").number(n);
}

/// The same on the default backend of the view's memory space.
template <class T, std::size_t R, class Space>
    requires std::is_floating_point_v<std::remove_const_t<T>>
status check_finite(const char* name, const strided_view<T, R, Space>& v) noexcept(default_backend_t<Space>::is_nothrow) {
    return check_finite(default_backend_t<Space>{}, name, v);
}

/// Any real tensor a loss accepts (Eigen, xtensor, Thrust vectors, spans, user types).
template <real_tensor X>
status check_finite(const char* name, const X& x) {
    return check_finite(name, as_view(x));
}

}  // namespace distill
