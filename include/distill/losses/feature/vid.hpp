// distill/losses/feature/vid.hpp: variational information distillation.
//
// S. Ahn, S. X. Hu, A. Damianou, N. D. Lawrence, Z. Dai, "Variational Information Distillation for
// Knowledge Transfer", CVPR 2019 (reference code: RepDistiller VID.py; ZOO vid.py). The student
// input is the regressed mean mu (the user's regressor output), the teacher t has the same shape
// (any rank >= 2, C = dim 1), and alpha (length C, RepDistiller's log_scale) parameterises the
// per-channel variance:
//
//   sigma^2_c = softplus(alpha_c) + eps,  softplus(x) = max(x, 0) + log1p(e^-|x|)  (no overflow)
//   L = (1/M) sum 0.5 ((mu - t)^2 / sigma^2_c + log sigma^2_c)          (M elements, c = channel)
//   dL/dmu = (1/M) (mu - t) / sigma^2_c
//   dL/dalpha_c = (0.5/M) sigmoid(alpha_c) (K / sigma^2_c - S_c / sigma^4_c),
//     S_c = sum over channel c of (mu - t)^2,  K = M / C elements per channel.
//
// To match RepDistiller's initial variance v0 use alpha = log(e^(v0 - eps) - 1) (v0 = 5 there).
// RepDistiller writes log(1 + exp(alpha)), which overflows for alpha >~ 709 and loses the tail
// for alpha <~ -37; this is the exact value.
//
// Cost: one pass over the 2 M input elements (one kernel call per (sample, channel) slab,
// writing d/dmu in the same pass and the slab's S in the workspace), then one call per channel
// that sums its N slab sums, writes d/dalpha_c and returns the channel's loss term: no atomics,
// so the result is deterministic on every backend. Workspace: C + N C values. Any strides.
// Knowledge outputs: none.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../../knowledge/elementwise.hpp"
#include "common.hpp"
#include "driver.hpp"

namespace distill {

/// Options of vid; Real is the parameters' type (vid_options: double, vid_float_options: float).
template <class Real>
struct basic_vid_options {
    Real eps = Real(1e-5);  ///< added to softplus(alpha), >= 0
};
using vid_options = basic_vid_options<double>;
using vid_float_options = basic_vid_options<float>;

namespace detail {

/// sigma^2_c = softplus(alpha_c) + eps.
template <class T>
DISTILL_HD inline T vid_variance(T alpha, T eps) noexcept {
    return softplus(alpha) + eps;
}

/// coef[c] = scale / sigma^2_c, the factor of d loss / d mu in channel c.
template <class T>
struct vid_coefficient_kernel {
    vector_ref<const T> alpha;
    T* coef;
    T eps, scale;
    DISTILL_HD void operator()(index_t c) const noexcept { coef[c] = scale / vid_variance(alpha[c], eps); }
};

/// a % b for non-negative a, b; 32-bit when both fit (several times faster than a 64-bit division
/// on the CPU, which matters when a slab is one element).
DISTILL_HD constexpr index_t nonnegative_remainder(index_t a, index_t b) noexcept {
    if (((a | b) >> 32) == 0) return static_cast<index_t>(static_cast<std::uint32_t>(a) % static_cast<std::uint32_t>(b));
    return a % b;
}

/// One (sample n, channel c) slab of `inner` elements (the dimensions after dim 1):
/// slab_sum[n C + c] = sum (mu - t)^2, and d/dmu = (mu - t) scale / sigma^2_c when requested.
template <class T, class In, class Out>
struct vid_slab_kernel {
    In student, teacher;  ///< element_ref<const T>, or vector_ref<const T> for dense tensors
    Out grad;
    const T* coef;
    T* slab_sum;
    index_t channels, inner;
    DISTILL_HD void operator()(index_t slab) const noexcept {
        const T c = coef[nonnegative_remainder(slab, channels)];
        const index_t first = slab * inner, last = first + inner;
        T sum = 0;
        for (index_t i = first; i < last; ++i) {
            const T d = student[i] - teacher[i];
            sum += d * d;
            if (grad.present()) grad[i] = c * d;
        }
        slab_sum[slab] = sum;
    }
};

/// One channel: S_c from its N slab sums; writes d/dalpha_c when requested and returns
/// 0.5 (S_c / sigma^2_c + K log sigma^2_c) (the loss is this summed over c, times 1/M).
template <class T>
struct vid_channel_kernel {
    vector_ref<const T> alpha;
    vector_ref<T> grad_alpha;
    const T* slab_sum;
    index_t rows, channels;
    T eps;
    T per_channel;  ///< K = M / C
    T scale;        ///< 1 / M
    DISTILL_HD T operator()(index_t c) const noexcept {
        T sum = 0;
        for (index_t n = 0; n < rows; ++n) sum += slab_sum[n * channels + c];
        const T v = vid_variance(alpha[c], eps);
        const T weighted = sum / v;
        if (grad_alpha.present())
            grad_alpha[c] = T(0.5) * scale * sigmoid(alpha[c]) * ((per_channel - weighted) / v);
        return T(0.5) * (weighted + per_channel * detail::log(v));
    }
};

}  // namespace detail

template <class Real>
struct feature_method<basic_vid_options<Real>> {
    using options = basic_vid_options<Real>;
    static constexpr const char* name = "vid";
    static constexpr feature_form form = feature_form::pair_with_alpha;

    template <class Backend, class T, class Space>
    static status check_inputs(const Backend&, const options& opts, const feature_args<T, Space>& a) noexcept {
        if (status s = detail::check_parameter(name, "eps", opts.eps, Real(0)); !s) return s;
        if (status s = detail::check_feature_pair(name, a, 2, max_dynamic_rank, true); !s) return s;
        if (status s = detail::check_same_shape(name, a.student, a.teacher); !s) return s;
        if (status s = detail::check_feature_tensor(name, "alpha", a.alpha, 1, 1); !s) return s;
        if (a.alpha.extent(0) != a.student.extent(1))
            return detail::method_error(errc::shape_mismatch, name, "alpha").text("alpha has shape ")
                .shape(a.alpha.extents(), 1).text(" but must have shape [").number(a.student.extent(1))
                .text("] (C = dim 1 of student ").shape(a.student.extents(), a.student.rank()).text(")");
        return {};
    }
    template <class T, class Space>
    static knowledge_shape knowledge(const options&, const feature_args<T, Space>&, int) noexcept {
        return {};
    }
    template <class T, class Space>
    static std::size_t workspace_bytes(const options&, const feature_args<T, Space>& a) noexcept {
        const auto n = static_cast<std::size_t>(a.student.extent(0)), c = static_cast<std::size_t>(a.student.extent(1));
        return (c + n * c) * sizeof(T);
    }

    template <class Backend, class T, class Space>
    static void run(const Backend& backend, const options& opts, const feature_args<T, Space>& a,
                    const feature_outputs<T, Space>& o, workspace ws) {
        const index_t rows = a.student.extent(0), channels = a.student.extent(1), count = a.student.size();
        const index_t inner = count / (rows * channels);
        T* coef = static_cast<T*>(ws.data);
        T* slab_sum = coef + channels;
        const T scale = T(1) / static_cast<T>(count), eps = static_cast<T>(opts.eps);
        const auto alpha = detail::to_vector_ref(a.alpha);
        backend.for_each(channels, detail::vid_coefficient_kernel<T>{alpha, coef, eps, scale});
        detail::with_element_access(
            [&](auto s, auto t, auto g) {
                backend.for_each(rows * channels,
                                 detail::vid_slab_kernel<T, decltype(s), decltype(g)>{s, t, g, coef, slab_sum, channels, inner});
            },
            detail::to_element_ref(a.student), detail::to_element_ref(a.teacher), detail::to_element_ref(o.grad_student));
        const detail::vid_channel_kernel<T> channel{alpha,    detail::to_vector_ref(o.grad_alpha),
                                                    slab_sum, rows,
                                                    channels, eps,
                                                    static_cast<T>(rows * inner), scale};
        detail::store(backend, o.loss.data(), scale * detail::sum_over<T>(backend, channels, channel));
    }
};

/// vid(student, teacher, alpha[, opts]): VID loss, d loss / d student and d loss / d alpha.
inline constexpr feature_loss_fn<basic_vid_options> vid{};

}  // namespace distill
