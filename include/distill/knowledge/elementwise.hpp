// distill/knowledge/elementwise.hpp: element-wise building blocks of the feature losses.
//
// * element_ref: the elements of a tensor of any rank and ANY strides, addressed by their
//   row-major logical index (element i of an N x C x H x W tensor is n = i / (C H W), ...).
//   Dimensions that can be walked with one stride are merged when the handle is built, so a
//   dense tensor (row-major, or an Eigen column-major matrix seen as one vector) costs one
//   multiply per access; other layouts cost one division per remaining dimension. Element-wise
//   losses (hint, ab, vid) take their inputs and outputs through it and so accept every layout.
// * Value / derivative pairs as DISTILL_HD functions (the same maths on the CPU and the device),
//   with the conventions of METHODS-feature.md: |x|' = 0 and relu' = 0 at 0; smooth-L1 with
//   beta = 0 is |x|; softplus evaluated without overflow, with derivative sigmoid.
#pragma once

#include "../core/backend.hpp"
#include "../core/view.hpp"
#include "../detail/math.hpp"

namespace distill {
namespace detail {

/// The elements of a view in row-major logical order, for kernels (host and device).
template <class T>
struct element_ref {
    static constexpr int capacity = max_dynamic_rank;
    T* data = nullptr;  ///< null: absent (an output that is not requested)
    int rank = 1;       ///< merged dimensions, outermost first (>= 1)
    index_t extent[capacity] = {1};
    index_t stride[capacity] = {1};

    DISTILL_HD constexpr bool present() const noexcept { return data != nullptr; }
    /// The element with row-major logical index i.
    DISTILL_HD constexpr T& operator[](index_t i) const noexcept {
        if (rank == 1) return data[i * stride[0]];
        index_t offset = 0;
        for (int r = rank - 1; r > 0; --r) {
            offset += (i % extent[r]) * stride[r];
            i /= extent[r];
        }
        return data[offset + i * stride[0]];
    }
};

/// The element handle of a view (unbound view: an absent handle). Extent-1 dimensions are
/// dropped and a dimension whose stride steps over the whole (merged) block inside it is merged
/// into that block.
template <class T, std::size_t R, class S>
constexpr element_ref<T> to_element_ref(const strided_view<T, R, S>& v) noexcept {
    element_ref<T> out;
    if (!v.bound() || v.data() == nullptr) return out;
    out.data = v.data();
    // Built innermost first, then reversed.
    index_t extent[element_ref<T>::capacity] = {}, stride[element_ref<T>::capacity] = {};
    int count = 0;
    for (int r = v.rank() - 1; r >= 0; --r) {
        if (v.extent(r) == 1) continue;
        if (count > 0 && v.stride(r) == stride[count - 1] * extent[count - 1]) {
            extent[count - 1] *= v.extent(r);
        } else {
            extent[count] = v.extent(r);
            stride[count] = v.stride(r);
            ++count;
        }
    }
    if (count == 0) return out;  // a single element: extent {1}, stride {1}
    out.rank = count;
    for (int r = 0; r < count; ++r) {
        out.extent[r] = extent[count - 1 - r];
        out.stride[r] = stride[count - 1 - r];
    }
    return out;
}

// ---------------------------------------------------------------- value / derivative pairs

/// sign(x) with sign(0) = 0: the derivative of |x| (0 at the kink).
template <class T>
DISTILL_HD constexpr T sign_or_zero(T x) noexcept {
    return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
}

template <class T>
DISTILL_HD constexpr T abs_value(T x) noexcept {
    return x < T(0) ? -x : x;
}

/// max(x, 0); its derivative is [x > 0] (0 at the kink).
template <class T>
DISTILL_HD constexpr T relu(T x) noexcept {
    return x > T(0) ? x : T(0);
}

/// Smooth-L1 (Huber) h_beta(d) = 0.5 d^2 / beta if |d| < beta, else |d| - beta / 2 (torch's
/// smooth_l1_loss). beta = 0 gives |d| (the first branch is never taken).
template <class T>
DISTILL_HD constexpr T smooth_l1_value(T d, T beta) noexcept {
    const T a = abs_value(d);
    return a < beta ? T(0.5) * d * d / beta : a - T(0.5) * beta;
}

/// h_beta'(d) = d / beta if |d| < beta, else sign(d) (0 at d = 0; continuous at |d| = beta).
template <class T>
DISTILL_HD constexpr T smooth_l1_derivative(T d, T beta) noexcept {
    return abs_value(d) < beta ? d / beta : sign_or_zero(d);
}

/// softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no overflow for large x and the exact
/// tail e^x for very negative x (log(1 + e^x) rounds 1 + e^x first).
template <class T>
DISTILL_HD inline T softplus(T x) noexcept {
    return relu(x) + detail::log1p(detail::exp(-abs_value(x)));
}

/// sigmoid(x) = softplus'(x), from e^-|x| so that neither branch overflows.
template <class T>
DISTILL_HD inline T sigmoid(T x) noexcept {
    const T e = detail::exp(-abs_value(x));
    return x >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
}

}  // namespace detail
}  // namespace distill
