// distill/core/view.hpp: the non-owning strided view every loss computes on.
//
// A view is a pointer, extents, strides (in elements) and a memory space, in
// the spirit of std::mdspan with a layout_stride mapping. The memory space
// (host_space or device_space) is part of the type, so that the backend that
// runs a loss is chosen at compile time from the types of its arguments.
//
// Rank is either static (strided_view<float, 2>) or dynamic_rank: the runtime
// rank of a dynamic view is checked by the losses, which is how a loss reports
// "student must be 2-D" for a tensor whose rank is only known at run time
// (an xt::xarray, a tensor read from a file). A default-constructed dynamic
// view is *unbound*: it stands for an optional input or output left out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "config.hpp"

namespace distill {

/// Memory that host code can dereference (the CPU / Eigen path).
struct host_space {};
/// Memory that belongs to a Thrust device system (CUDA, or OMP/CPP on the CPU).
struct device_space {};

template <class S>
inline constexpr bool is_memory_space_v = std::is_same_v<S, host_space> || std::is_same_v<S, device_space>;

inline constexpr std::size_t dynamic_rank = static_cast<std::size_t>(-1);
/// Largest rank a dynamic view can hold.
inline constexpr int max_dynamic_rank = 8;

template <class T, std::size_t Rank = dynamic_rank, class Space = host_space>
class strided_view {
    static_assert(is_memory_space_v<Space>, "Space must be distill::host_space or distill::device_space");
    static_assert(Rank == dynamic_rank || Rank <= static_cast<std::size_t>(max_dynamic_rank), "rank too large");

public:
    using element_type = T;
    using value_type = std::remove_cv_t<T>;
    using memory_space = Space;
    static constexpr std::size_t static_rank = Rank;
    static constexpr bool is_dynamic = Rank == dynamic_rank;
    static constexpr int capacity = is_dynamic ? max_dynamic_rank : static_cast<int>(Rank);

    /// Unbound (dynamic rank) or null (static rank) view.
    DISTILL_HD constexpr strided_view() noexcept : rank_(is_dynamic ? -1 : static_cast<int>(Rank)) {
        for (int r = 0; r < (capacity > 0 ? capacity : 1); ++r) {
            if (r < capacity) extents_[r] = strides_[r] = 0;
        }
    }

    /// View of `rank` dimensions; `extents` and `strides` point to `rank` values each.
    DISTILL_HD constexpr strided_view(T* data, int rank, const index_t* extents, const index_t* strides) noexcept
        : data_(data), rank_(rank) {
        for (int r = 0; r < capacity; ++r) {
            extents_[r] = r < rank ? extents[r] : 0;
            strides_[r] = r < rank ? strides[r] : 0;
        }
    }

    /// Conversions: to const elements, and from static to dynamic rank.
    template <class U, std::size_t R2>
        requires((std::is_same_v<U, T> || std::is_same_v<const U, T>) &&
                 (R2 == Rank || (is_dynamic && R2 != dynamic_rank)))
    DISTILL_HD constexpr strided_view(const strided_view<U, R2, Space>& other) noexcept
        : data_(other.data()), rank_(other.bound() ? other.rank() : -1) {
        constexpr int other_capacity = strided_view<U, R2, Space>::capacity;
        for (int r = 0; r < capacity; ++r) {
            const bool copied = r < other_capacity && r < other.rank();  // first test: a bound the compiler sees
            extents_[r] = copied ? other.extent(r) : 0;
            strides_[r] = copied ? other.stride(r) : 0;
        }
    }

    DISTILL_HD constexpr T* data() const noexcept { return data_; }
    /// Number of dimensions (-1 for an unbound dynamic view).
    DISTILL_HD constexpr int rank() const noexcept { return rank_; }
    /// False only for a default-constructed dynamic view (an omitted optional argument).
    DISTILL_HD constexpr bool bound() const noexcept { return rank_ >= 0; }
    DISTILL_HD constexpr index_t extent(int r) const noexcept { return extents_[r]; }
    DISTILL_HD constexpr index_t stride(int r) const noexcept { return strides_[r]; }
    DISTILL_HD constexpr const index_t* extents() const noexcept { return extents_; }
    DISTILL_HD constexpr const index_t* strides() const noexcept { return strides_; }

    /// Number of elements (1 for rank 0). Use checked_size when extents are untrusted.
    DISTILL_HD constexpr index_t size() const noexcept {
        index_t n = 1;
        for (int r = 0; r < rank_; ++r) n *= extents_[r];
        return rank_ < 0 ? 0 : n;
    }

    /// Number of elements, or false when an extent is negative, the product overflows 63 bits, or
    /// (for a non-empty view) the element offsets it spans, sum of |(extent - 1) * stride|, do:
    /// after this check, size(), offsets and address ranges are computed without overflow.
    DISTILL_HD constexpr bool checked_size(index_t& out) const noexcept {
        index_t n = 1;
        for (int r = 0; r < rank_; ++r) {
            if (extents_[r] < 0) return false;
            if (extents_[r] != 0 && n > INT64_MAX / extents_[r]) return false;
            n *= extents_[r];
        }
        if (n != 0) {
            index_t span = 0;
            for (int r = 0; r < rank_; ++r) {
                if (extents_[r] == 1) continue;
                if (strides_[r] == INT64_MIN) return false;
                const index_t step = strides_[r] < 0 ? -strides_[r] : strides_[r];
                if (step != 0 && extents_[r] - 1 > INT64_MAX / step) return false;
                const index_t part = (extents_[r] - 1) * step;
                if (part >= INT64_MAX - span) return false;  // hi + 1 must fit too (range_of)
                span += part;
            }
        }
        out = rank_ < 0 ? 0 : n;
        return true;
    }

    DISTILL_HD constexpr bool empty() const noexcept { return size() == 0; }

    /// Element access by rank-many indices (no bounds checks).
    template <class... I>
    DISTILL_HD constexpr T& operator()(I... i) const noexcept {
        static_assert(is_dynamic || sizeof...(I) == Rank, "wrong number of indices");
        const index_t idx[] = {static_cast<index_t>(i)...};
        index_t off = 0;
        for (int r = 0; r < static_cast<int>(sizeof...(I)); ++r) off += idx[r] * strides_[r];
        return data_[off];
    }

    /// True when the elements are laid out densely in row-major (C) order.
    DISTILL_HD constexpr bool is_row_major_contiguous() const noexcept {
        index_t expect = 1;
        for (int r = rank_ - 1; r >= 0; --r) {
            if (extents_[r] != 1 && strides_[r] != expect) return false;
            expect *= extents_[r];
        }
        return true;
    }

private:
    T* data_ = nullptr;
    int rank_ = 0;
    index_t extents_[capacity > 0 ? capacity : 1];
    index_t strides_[capacity > 0 ? capacity : 1];
};

template <class T, class Space = host_space>
using matrix_view = strided_view<T, 2, Space>;
template <class T, class Space = host_space>
using vector_view = strided_view<T, 1, Space>;
/// A view whose rank is checked at run time; the type losses take their arguments as.
template <class T, class Space = host_space>
using any_view = strided_view<T, dynamic_rank, Space>;

namespace detail {

template <class V>
struct is_strided_view : std::false_type {};
template <class T, std::size_t R, class S>
struct is_strided_view<strided_view<T, R, S>> : std::true_type {};

/// Row-major strides for the given extents.
template <int N>
DISTILL_HD constexpr void row_major_strides(const index_t* extents, index_t* strides) noexcept {
    index_t s = 1;
    for (int r = N - 1; r >= 0; --r) {
        strides[r] = s;
        s *= extents[r];
    }
}

/// [first, last) byte addresses touched by a view (empty range for an unbound or empty view).
struct address_range {
    std::uintptr_t first = 0, last = 0;
    DISTILL_HD constexpr bool overlaps(const address_range& o) const noexcept {
        return first < last && o.first < o.last && first < o.last && o.first < last;
    }
};

template <class T, std::size_t R, class S>
address_range range_of(const strided_view<T, R, S>& v) noexcept {
    if (!v.bound() || v.data() == nullptr || v.size() == 0) return {};
    // Views that passed checked_size span at most 2^63 - 1 elements, so lo and hi cannot overflow.
    index_t lo = 0, hi = 0;
    for (int r = 0; r < v.rank(); ++r) {
        const index_t span = (v.extent(r) - 1) * v.stride(r);
        (span < 0 ? lo : hi) += span;
    }
    const auto base = reinterpret_cast<std::uintptr_t>(v.data());
    const auto elem = static_cast<std::uintptr_t>(sizeof(T));
    return {base + static_cast<std::uintptr_t>(lo) * elem, base + static_cast<std::uintptr_t>(hi + 1) * elem};
}

}  // namespace detail

/// A rank-N view of contiguous row-major memory: make_view(ptr, rows, cols).
template <class T, class... E>
    requires(sizeof...(E) >= 1 && (std::is_integral_v<E> && ...))
constexpr strided_view<T, sizeof...(E), host_space> make_view(T* data, E... extents) noexcept {
    const index_t ext[] = {static_cast<index_t>(extents)...};
    index_t str[sizeof...(E)];
    detail::row_major_strides<sizeof...(E)>(ext, str);
    return strided_view<T, sizeof...(E), host_space>(data, sizeof...(E), ext, str);
}

}  // namespace distill
