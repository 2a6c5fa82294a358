// distill/losses/feature/ab.hpp: activation-boundary transfer (the alternative L2 criterion).
//
// B. Heo, M. Lee, S. Yun, J. Y. Choi, "Knowledge Transfer via Distillation of Activation
// Boundaries Formed by Hidden Neurons", AAAI 2019 (reference code: RepDistiller AB.py, the same
// as bhheo/AB_distillation's criterion_alternative_L2 with its layer weights and 3/1000 factor).
// Layers i = 0 .. L-1 (L >= 1) of pre-activation features; the student is assumed to be already
// passed through its connector, so student.i and teacher.i have identical shapes (any rank >= 2),
// and every layer has the same N. With margin m >= 0, element-wise
//
//   e = [t > 0] relu(m - s)^2 + [t <= 0] relu(m + s)^2            (t = 0 counts as inactive)
//   L = sum_i w_i sum e_i,   w_i = 2^(i - L + 1) (3/1000) (1/N)    (the last layer weighs 3/(1000 N))
//   dL/ds = w_i (-2 relu(m - s)) where t > 0, w_i (2 relu(m + s)) elsewhere (continuous at s = +-m).
//
// RepDistiller returns the per-layer terms; this is their sum, as its training loop uses.
// Cost: one pass over the 2 M_i input elements of each layer, writing the gradient in the same
// pass (one element per kernel call, summed by the backend's reduction). No workspace; any strides.
// Knowledge outputs: none.
#pragma once

#include <cstddef>

#include "../../knowledge/elementwise.hpp"
#include "common.hpp"
#include "driver.hpp"

namespace distill {

/// Options of ab; Real is the parameters' type (ab_options: double, ab_float_options: float).
template <class Real>
struct basic_ab_options {
    Real margin = Real(1);  ///< m >= 0
};
using ab_options = basic_ab_options<double>;
using ab_float_options = basic_ab_options<float>;

namespace detail {

/// One element of one layer: returns e and writes weight * de/ds to the gradient (when
/// requested; the write depends only on i, so the kernel may run as the transform of a reduction).
template <class T, class In, class Out>
struct ab_element_kernel {
    In student, teacher;  ///< element_ref<const T>, or vector_ref<const T> for dense tensors
    Out grad;
    T margin, weight;
    DISTILL_HD T operator()(index_t i) const noexcept {
        // direction = -1 where the teacher is active (t > 0), +1 elsewhere: e = relu(m + direction s)^2.
        const T direction = T(1) - T(2) * static_cast<T>(teacher[i] > T(0));
        const T gap = relu(margin + direction * student[i]);
        if (grad.present()) grad[i] = weight * T(2) * direction * gap;
        return gap * gap;
    }
};

/// One layer tensor: present, rank >= 2, non-empty; the message names the layer.
template <class V>
status check_layer_tensor(const char* method, const char* name, std::size_t layer, const V& v) noexcept {
    auto error = [&](errc code) {
        return method_error(code, method, name).text(name).text("[").number(static_cast<std::int64_t>(layer)).text("]");
    };
    if (!v.bound()) return error(errc::missing_argument).text(" is required");
    index_t count = 0;
    if (!v.checked_size(count))
        return error(errc::size_overflow).text(" has shape ").shape(v.extents(), v.rank()).text(" whose element count or address span overflows 63 bits");
    if (v.data() == nullptr && count != 0) return error(errc::missing_argument).text(" has no data");
    if (v.rank() < 2) return error(errc::bad_rank).text(" must be at least 2-D, got shape ").shape(v.extents(), v.rank());
    for (int r = 0; r < v.rank(); ++r)
        if (v.extent(r) < 1)
            return error(errc::empty_input).text(" has shape ").shape(v.extents(), v.rank()).text(": every dimension must be >= 1");
    return {};
}

}  // namespace detail

template <class Real>
struct feature_method<basic_ab_options<Real>> {
    using options = basic_ab_options<Real>;
    static constexpr const char* name = "ab";
    static constexpr feature_form form = feature_form::layers;

    template <class Backend, class T, class Space>
    static status check_inputs(const Backend&, const options& opts, const feature_args<T, Space>& a) noexcept {
        if (status s = detail::check_parameter(name, "margin", opts.margin, Real(0)); !s) return s;
        if (a.student.bound() || a.teacher.bound())
            return detail::method_error(errc::shape_mismatch, name, a.student.bound() ? "student" : "teacher")
                .text("takes layers (student_layers / teacher_layers), not a single student or teacher tensor");
        if (a.alpha.bound()) return detail::method_error(errc::shape_mismatch, name, "alpha").text("takes no alpha input");
        const std::size_t layers = a.student_layers.size();
        if (layers == 0)
            return detail::method_error(errc::missing_argument, name, "student_layers").text("needs at least one student layer");
        if (a.teacher_layers.size() != layers)
            return detail::method_error(errc::shape_mismatch, name, "teacher_layers").text("teacher_layers has ")
                .number(static_cast<std::int64_t>(a.teacher_layers.size())).text(" layers but student_layers has ")
                .number(static_cast<std::int64_t>(layers));
        for (std::size_t i = 0; i < layers; ++i) {
            const auto& s = a.student_layers[i];
            const auto& t = a.teacher_layers[i];
            if (status st = detail::check_layer_tensor(name, "student_layers", i, s); !st) return st;
            if (status st = detail::check_layer_tensor(name, "teacher_layers", i, t); !st) return st;
            if (!detail::same_shape(s, t))
                return detail::method_error(errc::shape_mismatch, name, "teacher_layers").text("teacher_layers[")
                    .number(static_cast<std::int64_t>(i)).text("] has shape ").shape(t.extents(), t.rank())
                    .text(" but student_layers[").number(static_cast<std::int64_t>(i)).text("] has shape ")
                    .shape(s.extents(), s.rank()).text(" (they must be equal)");
            if (s.extent(0) != a.student_layers[0].extent(0))
                return detail::method_error(errc::shape_mismatch, name, "student_layers").text("student_layers[")
                    .number(static_cast<std::int64_t>(i)).text("] has shape ").shape(s.extents(), s.rank())
                    .text(" but student_layers[0] has N = ").number(a.student_layers[0].extent(0)).text(" (N must match)");
        }
        return {};
    }
    template <class T, class Space>
    static knowledge_shape knowledge(const options&, const feature_args<T, Space>&, int) noexcept {
        return {};
    }
    template <class T, class Space>
    static int knowledge_layers(const options&, const feature_args<T, Space>&) noexcept {
        return 0;
    }
    template <class T, class Space>
    static std::size_t workspace_bytes(const options&, const feature_args<T, Space>&) noexcept {
        return 0;
    }

    template <class Backend, class T, class Space>
    static void run(const Backend& backend, const options& opts, const feature_args<T, Space>& a,
                    const feature_outputs<T, Space>& o, workspace) {
        const std::size_t layers = a.student_layers.size();
        const T margin = static_cast<T>(opts.margin);
        // w_i = 2^(i - L + 1) (3/1000) / N: the last layer's weight, halved per layer below it.
        const T last_weight = T(3) / T(1000) / static_cast<T>(a.student_layers[0].extent(0));
        T loss = 0;
        for (std::size_t i = 0; i < layers; ++i) {
            T weight = last_weight;
            for (std::size_t k = i + 1; k < layers; ++k) weight *= T(0.5);
            const auto grad = o.grad_student_layers.empty() ? detail::element_ref<T>{}
                                                             : detail::to_element_ref(o.grad_student_layers[i]);
            const index_t count = a.student_layers[i].size();
            loss += weight * detail::with_element_access(
                                 [&](auto s, auto t, auto g) {
                                     return detail::sum_over<T>(
                                         backend, count, detail::ab_element_kernel<T, decltype(s), decltype(g)>{s, t, g, margin, weight});
                                 },
                                 detail::to_element_ref(a.student_layers[i]), detail::to_element_ref(a.teacher_layers[i]), grad);
        }
        detail::store(backend, o.loss.data(), loss);
    }
};

/// ab(student_layers, teacher_layers[, opts]): activation-boundary loss and d loss / d student.i.
inline constexpr feature_loss_fn<basic_ab_options> ab{};

}  // namespace distill
