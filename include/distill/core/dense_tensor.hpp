// distill/core/dense_tensor.hpp: the owning tensor the convenience layer returns.
//
// distill::tensor<T, Space> is a dense row-major array with a runtime shape. Host
// storage is a std::vector; device storage (thrust::device_vector) is provided by
// <distill/thrust.hpp>. It is itself a tensor_like type, so its view can be passed
// back to any loss, and its data() can be wrapped by Eigen::Map, xt::adapt, ...
#pragma once

#include <cstddef>
#include <initializer_list>
#include <vector>

#include "tensor.hpp"

namespace distill {

namespace detail {
/// Owning storage for a memory space: host uses std::vector.
template <class T, class Space>
struct storage_for;
template <class T>
struct storage_for<T, host_space> {
    using type = std::vector<T>;
    static T* data(type& v) noexcept { return v.data(); }
    static const T* data(const type& v) noexcept { return v.data(); }
};
}  // namespace detail

template <class T, class Space = host_space>
class tensor {
    using storage = detail::storage_for<T, Space>;

public:
    using value_type = T;
    using memory_space = Space;

    tensor() = default;
    /// Zero-initialised tensor of the given extents (at most max_dynamic_rank of them).
    explicit tensor(std::initializer_list<index_t> extents) { reshape(extents.begin(), static_cast<int>(extents.size())); }
    tensor(const index_t* extents, int rank) { reshape(extents, rank); }

    void reshape(const index_t* extents, int rank) {
        rank_ = rank < 0 ? 0 : (rank > max_dynamic_rank ? max_dynamic_rank : rank);
        index_t n = 1;
        for (int r = 0; r < rank_; ++r) {
            extents_[r] = extents[r];
            n *= extents[r];
        }
        index_t s = 1;
        for (int r = rank_ - 1; r >= 0; --r) {
            strides_[r] = s;
            s *= extents_[r];
        }
        data_ = typename storage::type(static_cast<std::size_t>(n));
    }

    int rank() const noexcept { return rank_; }
    index_t extent(int r) const noexcept { return extents_[r]; }
    index_t size() const noexcept { return static_cast<index_t>(data_.size()); }
    T* data() noexcept { return storage::data(data_); }
    const T* data() const noexcept { return storage::data(data_); }
    /// The underlying std::vector or thrust::device_vector.
    typename storage::type& storage_object() noexcept { return data_; }
    const typename storage::type& storage_object() const noexcept { return data_; }

    any_view<T, Space> view() noexcept { return any_view<T, Space>(data(), rank_, extents_, strides_); }
    any_view<const T, Space> view() const noexcept {
        return any_view<const T, Space>(data(), rank_, extents_, strides_);
    }

    /// Element access (host memory only).
    template <class... I>
    T& operator()(I... i) noexcept
        requires std::is_same_v<Space, host_space>
    {
        return view()(i...);
    }
    template <class... I>
    const T& operator()(I... i) const noexcept
        requires std::is_same_v<Space, host_space>
    {
        return view()(i...);
    }

private:
    typename storage::type data_{};
    int rank_ = 0;
    index_t extents_[max_dynamic_rank] = {};
    index_t strides_[max_dynamic_rank] = {};
};

template <class T, class Space>
struct tensor_adapter<tensor<T, Space>> {
    static any_view<T, Space> view(tensor<T, Space>& t) noexcept { return t.view(); }
    static any_view<const T, Space> view(const tensor<T, Space>& t) noexcept { return t.view(); }
};

}  // namespace distill
