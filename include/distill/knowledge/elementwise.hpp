// distill/knowledge/elementwise.hpp: element-wise building blocks of the feature losses.
//
// * element_ref: the elements of a tensor of any rank and ANY strides, addressed by their
//   row-major logical index (element i of an N x C x H x W tensor is n = i / (C H W), ...).
//   Dimensions that can be walked with one stride are merged when the handle is built, so a
//   dense row-major tensor (any tensor whose elements form one strided run) costs one multiply
//   per access; other layouts (an Eigen column-major matrix, a map with gaps between channels)
//   cost a division and a multiply per remaining dimension. Element-wise
//   losses (hint, ab, vid) take their inputs and outputs through it and so accept every layout;
//   with_element_access() hands their kernels plain strided handles when every tensor is one run.
// * Value / derivative pairs as DISTILL_HD functions (the same maths on the CPU and the device),
//   with the conventions of METHODS-feature.md: |x|' = 0 and relu' = 0 at 0; smooth-L1 with
//   beta = 0 is |x|; softplus evaluated without overflow, with derivative sigmoid.
#pragma once

#include "../core/backend.hpp"
#include "../core/view.hpp"
#include "../detail/math.hpp"

#include <cmath>

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

/// The handle of a tensor whose elements form one strided run (every dense layout, after merging).
template <class T>
constexpr vector_ref<T> as_strided_run(const element_ref<T>& e) noexcept {
    return {e.data, 0, e.stride[0]};
}

/// Calls f(handles...) with vector_ref handles when every element_ref is one strided run (the
/// common dense case: one multiply per access and no rank test in the kernel's loop), and with the
/// element_refs themselves otherwise. f is a generic callable; absent handles (null data) are
/// single runs and stay absent. Returns what f returns (the same type for both instantiations).
template <class F, class... Handles>
decltype(auto) with_element_access(F&& f, const Handles&... handles) {
    if ((... && (handles.rank == 1))) return f(as_strided_run(handles)...);
    return f(handles...);
}

// ---------------------------------------------------------------- value / derivative pairs

// The selects below are written so that compilers emit no data-dependent branch (max / blend /
// bit operations): element-wise losses see random signs, where a branch mispredicts half the time.

/// |x| (fabs: also clears the sign of -0).
template <class T>
DISTILL_HD inline T abs_value(T x) noexcept {
#if defined(__CUDA_ARCH__)
    return ::fabs(x);
#else
    return std::fabs(x);
#endif
}

/// sign(x) with sign(0) = 0: the derivative of |x| (0 at the kink).
template <class T>
DISTILL_HD constexpr T sign_or_zero(T x) noexcept {
    return static_cast<T>(static_cast<int>(x > T(0)) - static_cast<int>(x < T(0)));
}

/// max(x, 0); its derivative is [x > 0] (0 at the kink).
template <class T>
DISTILL_HD constexpr T relu(T x) noexcept {
    return x > T(0) ? x : T(0);
}

/// Smooth-L1 (Huber) h_beta(d) = 0.5 d^2 / beta if |d| < beta, else |d| - beta / 2 (torch's
/// smooth_l1_loss); beta = 0 gives |d|. Written with c = min(|d|, beta) as c (|d| - c / 2) / beta,
/// which is both branches at once (exact for |d| < beta, within an ulp or two above).
template <class T>
DISTILL_HD inline T smooth_l1_value(T d, T beta) noexcept {
    const T a = abs_value(d);
    const T c = a < beta ? a : beta;
    return beta > T(0) ? c * (a - T(0.5) * c) / beta : a;
}

/// h_beta'(d) = d / beta if |d| < beta, else sign(d), i.e. sign(d) min(|d|, beta) / beta (0 at
/// d = 0; continuous at |d| = beta); sign(d) when beta = 0.
template <class T>
DISTILL_HD inline T smooth_l1_derivative(T d, T beta) noexcept {
    const T a = abs_value(d), sign = sign_or_zero(d);
    const T c = a < beta ? a : beta;
    return beta > T(0) ? sign * c / beta : sign;
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
