// distill/losses/feature/driver.hpp: the check / run / convenience layers of the feature and
// relation losses, written once for every method.
//
// A method is a specialisation of feature_method<Options> (see sp.hpp for a complete one):
//
//   static constexpr const char* name;            "sp"
//   static constexpr feature_form form;           pair, pair_with_alpha (vid) or layers (ab, fsp)
//   check_inputs(backend, opts, args) -> status   parameters and the method's shape rules
//   knowledge(opts, args, layer) -> knowledge_shape   shape of knowledge outputs (rank -1: none)
//   knowledge_layers(opts, args) -> int           layers form only: layered knowledge outputs (fsp: L - 1, ab: 0)
//   workspace_bytes(opts, args) -> size_t         scratch of the run step
//   run(backend, opts, args, outs, ws)            the computation, on checked arguments
//
// The driver provides distill::check_args / check / workspace_bytes / run for the method's
// options type (the same names and shapes as the response losses) and feature_loss_fn, the
// allocating convenience object (distill::sp(student, teacher[, opts])).
#pragma once

#include <cstddef>
#include <ranges>
#include <type_traits>
#include <utility>
#include <vector>

#include "../../core/dense_tensor.hpp"
#include "../../core/error.hpp"
#include "../response/driver.hpp"
#include "../response/result.hpp"
#include "../../knowledge/elementwise.hpp"
#include "common.hpp"

namespace distill {

enum class feature_form {
    pair,             ///< student, teacher
    pair_with_alpha,  ///< student, teacher, alpha (vid)
    layers,           ///< student_layers, teacher_layers (ab, fsp)
};

/// Specialised by every feature or relation method for its options type.
template <class Options>
struct feature_method;

/// An options type of a feature or relation method.
template <class O>
concept feature_options = requires { feature_method<O>::name; };

namespace detail {

template <class M, class Backend, class O, class T, class Space>
status check_feature_outputs(const Backend&, const O& opts, const feature_args<T, Space>& a,
                             const feature_outputs<T, Space>& o) noexcept {
    const char* method = M::name;
    if (status s = check_output_size(method, "loss", o.loss, 1, true); !s) return s;
    if constexpr (M::form == feature_form::layers) {
        if (o.grad_student.bound())
            return method_error(errc::shape_mismatch, method, "grad_student")
                .text("takes layers: use grad_student_layers, not grad_student");
        if (!o.grad_student_layers.empty() && o.grad_student_layers.size() != a.student_layers.size())
            return method_error(errc::shape_mismatch, method, "grad_student_layers").text("grad_student_layers has ")
                .number(static_cast<std::int64_t>(o.grad_student_layers.size())).text(" entries but there are ")
                .number(static_cast<std::int64_t>(a.student_layers.size())).text(" student layers");
        for (std::size_t i = 0; i < o.grad_student_layers.size(); ++i)
            if (status s = check_output_shape(method, "grad_student_layers", o.grad_student_layers[i], a.student_layers[i]); !s)
                return s;
        const std::size_t kl = static_cast<std::size_t>(M::knowledge_layers(opts, a));
        const std::span<const any_view<T, Space>> spans[2] = {o.knowledge_student_layers, o.knowledge_teacher_layers};
        const char* names[2] = {"knowledge_student_layers", "knowledge_teacher_layers"};
        for (int side = 0; side < 2; ++side) {
            if (!spans[side].empty() && spans[side].size() != kl)
                return method_error(errc::shape_mismatch, method, names[side]).text(names[side]).text(" has ")
                    .number(static_cast<std::int64_t>(spans[side].size())).text(" entries but the method has ")
                    .number(static_cast<std::int64_t>(kl));
            for (std::size_t i = 0; i < spans[side].size(); ++i)
                if (status s = check_output_shape(method, names[side], spans[side][i], M::knowledge(opts, a, static_cast<int>(i)));
                    !s)
                    return s;
        }
        if (o.knowledge_student.bound() || o.knowledge_teacher.bound())
            return method_error(errc::shape_mismatch, method, "knowledge_student")
                .text("takes layers: use knowledge_*_layers");
    } else {
        if (!o.grad_student_layers.empty() || !o.knowledge_student_layers.empty() || !o.knowledge_teacher_layers.empty())
            return method_error(errc::shape_mismatch, method, "grad_student_layers")
                .text("takes one student tensor: use grad_student / knowledge_student, not the *_layers outputs");
        if (status s = check_output_shape(method, "grad_student", o.grad_student, a.student); !s) return s;
        if (matrix_ref<T> rows; o.grad_student.bound() && !flatten_rows(o.grad_student, rows))
            return method_error(errc::unsupported_layout, method, "grad_student").text("output grad_student with shape ")
                .shape(o.grad_student.extents(), o.grad_student.rank())
                .text(" has strides that do not walk each sample with one stride; pass a dense tensor");
        if (status s = check_output_shape(method, "knowledge_student", o.knowledge_student, M::knowledge(opts, a, 0)); !s) return s;
        if (status s = check_output_shape(method, "knowledge_teacher", o.knowledge_teacher, M::knowledge(opts, a, 0)); !s) return s;
    }
    if constexpr (M::form == feature_form::pair_with_alpha) {
        if (status s = check_output_shape(method, "grad_alpha", o.grad_alpha, a.alpha); !s) return s;
    } else if (o.grad_alpha.bound()) {
        return method_error(errc::shape_mismatch, method, "grad_alpha").text("has no alpha input");
    }
    return check_feature_aliasing(method, a, o);
}

/// out = scale * computed (or out += ... when accumulating), element by element; `computed` is
/// row-major contiguous with out's extents.
template <class T>
struct scaled_gradient_writer {
    element_ref<T> out;
    const T* computed;
    T scale;
    bool accumulate;
    DISTILL_HD void operator()(index_t i) const noexcept {
        const T v = scale * computed[i];
        T& o = out[i];
        o = accumulate ? o + v : v;
    }
};

/// Whether a call writes its gradients through workspace (grad_scale != 1 or accumulate).
template <class T, class Space>
constexpr bool gradients_through_workspace(const feature_outputs<T, Space>& o) noexcept {
    return o.accumulate || o.grad_scale != T(1);
}

/// Bytes of one gradient output's contiguous copy in workspace (aligned to 64 bytes), 0 if unbound.
template <class T, class Space>
constexpr std::size_t gradient_copy_bytes(const any_view<T, Space>& v) noexcept {
    if (!v.bound() || v.data() == nullptr) return 0;
    return (static_cast<std::size_t>(v.size()) * sizeof(T) + 63) / 64 * 64;
}

/// Workspace for the gradient copies of a scaled or accumulating call.
template <class T, class Space>
constexpr std::size_t gradient_copies_bytes(const feature_outputs<T, Space>& o) noexcept {
    if (!gradients_through_workspace(o)) return 0;
    std::size_t bytes = gradient_copy_bytes(o.grad_student) + gradient_copy_bytes(o.grad_alpha);
    for (const auto& v : o.grad_student_layers) bytes += gradient_copy_bytes(v);
    return bytes;
}

/// The method's own workspace rounded up to 64 bytes, so that the gradient copies after it are aligned.
inline constexpr std::size_t align64(std::size_t bytes) noexcept { return (bytes + 63) / 64 * 64; }

}  // namespace detail

/// Check step, inputs only: parameters and shapes (nothing is allocated for absurd shapes).
template <class Backend, feature_options O, class T, class Space>
status check_args(const Backend& backend, const O& opts, const feature_args<T, Space>& args) noexcept(Backend::is_nothrow) {
    return feature_method<O>::check_inputs(backend, opts, args);
}

/// Check step: inputs and outputs (shapes, aliasing).
template <class Backend, feature_options O, class T, class Space>
status check(const Backend& backend, const O& opts, const feature_args<T, Space>& args,
             const feature_outputs<T, Space>& outs) noexcept(Backend::is_nothrow) {
    if (status s = check_args(backend, opts, args); !s) return s;
    return detail::check_feature_outputs<feature_method<O>>(backend, opts, args, outs);
}

/// Scratch the run step needs, in bytes of the arguments' memory space (0 on invalid arguments).
template <class Backend, feature_options O, class T, class Space>
std::size_t workspace_bytes(const Backend& backend, const O& opts, const feature_args<T, Space>& args,
                            const feature_outputs<T, Space>& outs) noexcept {
    if (!check_args(backend, opts, args)) return 0;
    const std::size_t own = feature_method<O>::workspace_bytes(opts, args);
    const std::size_t copies = detail::gradient_copies_bytes(outs);
    return copies == 0 ? own : detail::align64(own) + copies;
}

/// Run step: checks, then the loss and the requested outputs. Allocation-free at any size on the
/// CPU backend (Eigen's products run in tiles whose packing buffers stay on the stack, see
/// detail::gemm_tiles; tests/noheap); on error nothing is written.
template <class Backend, feature_options O, class T, class Space>
status run(const Backend& backend, const O& opts, const feature_args<T, Space>& args, const feature_outputs<T, Space>& outs,
           workspace ws = {}) noexcept(Backend::is_nothrow) {
    using M = feature_method<O>;
    if (status s = check(backend, opts, args, outs); !s) return s;
    if (!detail::is_finite(outs.grad_scale))
        return detail::method_error(errc::invalid_parameter, M::name, "grad_scale").text("grad_scale = ")
            .real(outs.grad_scale).text(" is not finite");
    if (status s = detail::check_workspace(M::name, ws, workspace_bytes(backend, opts, args, outs)); !s) return s;
    if (!detail::gradients_through_workspace(outs)) {
        M::run(backend, opts, args, outs, ws);
        return {};
    }
    // Scaled or accumulating: the method writes each gradient into a contiguous copy after its own
    // workspace, then one pass scales it into (or adds it to) the caller's output.
    std::byte* next = static_cast<std::byte*>(ws.data) + detail::align64(M::workspace_bytes(opts, args));
    const auto copy_of = [&](const any_view<T, Space>& v) {
        if (!v.bound() || v.data() == nullptr) return v;
        index_t strides[max_dynamic_rank];
        index_t step = 1;
        for (int r = v.rank() - 1; r >= 0; --r) {
            strides[r] = step;
            step *= v.extent(r);
        }
        const any_view<T, Space> copy(reinterpret_cast<T*>(next), v.rank(), v.extents(), strides);
        next += detail::gradient_copy_bytes(v);
        return copy;
    };
    feature_outputs<T, Space> redirected = outs;
    redirected.grad_student = copy_of(outs.grad_student);
    redirected.grad_alpha = copy_of(outs.grad_alpha);
    any_view<T, Space> layer_copies[detail::max_feature_tensors];
    for (std::size_t k = 0; k < outs.grad_student_layers.size(); ++k) layer_copies[k] = copy_of(outs.grad_student_layers[k]);
    redirected.grad_student_layers = std::span<const any_view<T, Space>>(layer_copies, outs.grad_student_layers.size());
    M::run(backend, opts, args, redirected, workspace{ws.data, detail::align64(M::workspace_bytes(opts, args))});
    const auto write = [&](const any_view<T, Space>& out, const any_view<T, Space>& copy) {
        if (!out.bound() || out.data() == nullptr) return;
        backend.for_each(out.size(), detail::scaled_gradient_writer<T>{detail::to_element_ref(out), copy.data(),
                                                                        outs.grad_scale, outs.accumulate});
    };
    write(outs.grad_student, redirected.grad_student);
    write(outs.grad_alpha, redirected.grad_alpha);
    for (std::size_t k = 0; k < outs.grad_student_layers.size(); ++k) write(outs.grad_student_layers[k], layer_copies[k]);
    return {};
}

// The same steps on the default backend of the arguments' memory space.
template <feature_options O, class T, class Space>
status check_args(const O& opts, const feature_args<T, Space>& args) noexcept {
    return check_args(default_backend_t<Space>{}, opts, args);
}
template <feature_options O, class T, class Space>
status check(const O& opts, const feature_args<T, Space>& args, const feature_outputs<T, Space>& outs) noexcept {
    return check(default_backend_t<Space>{}, opts, args, outs);
}
template <feature_options O, class T, class Space>
std::size_t workspace_bytes(const O& opts, const feature_args<T, Space>& args, const feature_outputs<T, Space>& outs) noexcept {
    return workspace_bytes(default_backend_t<Space>{}, opts, args, outs);
}
template <feature_options O, class T, class Space>
status run(const O& opts, const feature_args<T, Space>& args, const feature_outputs<T, Space>& outs,
           workspace ws = {}) noexcept(default_backend_t<Space>::is_nothrow) {
    return run(default_backend_t<Space>{}, opts, args, outs, ws);
}

/// What the convenience objects return.
template <class T, class Space = host_space>
struct feature_result {
    ::distill::status status{};                        ///< ok, or why nothing was computed (no-exception builds)
    T loss{};                                          ///< the loss
    tensor<T, Space> grad_student{};                   ///< d loss / d student (single-tensor methods)
    std::vector<tensor<T, Space>> grad_student_layers{};  ///< d loss / d student layer i (ab, fsp)
    tensor<T, Space> grad_alpha{};                     ///< vid: d loss / d alpha
};

namespace detail {

template <class T, class Space, class V>
tensor<T, Space> tensor_like_view(const V& v) {
    return tensor<T, Space>(v.extents(), v.rank());
}

/// Allocates the outputs, runs, and fills a feature_result.
template <class Backend, class O, class T, class Space>
feature_result<T, Space> run_feature_owning(const Backend& backend, const O& opts, const feature_args<T, Space>& args) {
    using M = feature_method<O>;
    feature_result<T, Space> result;
    if (status s = check_args(backend, opts, args); !s) {
        result.status = raise(s);
        return result;
    }
    const index_t one = 1;
    tensor<T, Space> loss(&one, 1), scratch;
    feature_outputs<T, Space> outs{loss.view()};
    std::vector<any_view<T, Space>> layer_views;
    if constexpr (M::form == feature_form::layers) {
        for (const auto& v : args.student_layers) result.grad_student_layers.push_back(tensor_like_view<T, Space>(v));
        for (auto& t : result.grad_student_layers) layer_views.push_back(t.view());
        outs.grad_student_layers = layer_views;
    } else {
        result.grad_student = tensor_like_view<T, Space>(args.student);
        outs.grad_student = result.grad_student.view();
    }
    if constexpr (M::form == feature_form::pair_with_alpha) {
        result.grad_alpha = tensor_like_view<T, Space>(args.alpha);
        outs.grad_alpha = result.grad_alpha.view();
    }
    const std::size_t bytes = workspace_bytes(backend, opts, args, outs);
    const index_t scratch_extent = static_cast<index_t>((bytes + sizeof(T) - 1) / sizeof(T));
    scratch.reshape(&scratch_extent, 1);
    if (status s = run(backend, opts, args, outs, workspace{scratch.data(), bytes}); !s) {
        result = {};
        result.status = raise(s);
        return result;
    }
    result.loss = Backend::load(loss.data());
    return result;
}

template <class Space, class T, class R>
std::vector<any_view<const T, Space>> layer_views_of(const R& tensors) {
    std::vector<any_view<const T, Space>> views;
    for (const auto& t : tensors) views.push_back(any_view<const T, Space>(as_view(t)));
    return views;
}

}  // namespace detail

/// The convenience object of a feature method whose options template is BasicOptions:
///   pair form:        fn([backend,] student, teacher[, opts])
///   pair_with_alpha:  fn([backend,] student, teacher, alpha[, opts])
///   layers form:      fn([backend,] student_layers, teacher_layers[, opts])   (ranges of tensors)
/// Returns a feature_result; throws distill::error on bad input (without exceptions: the status
/// is in the result).
template <template <class> class BasicOptions>
struct feature_loss_fn {
    template <class Real>
    static constexpr feature_form form = feature_method<BasicOptions<Real>>::form;

    template <backend_object Backend, real_tensor S, real_tensor Tt, class Real = double>
        requires(form<Real> == feature_form::pair)
    auto operator()(const Backend& backend, const S& student, const Tt& teacher, const BasicOptions<Real>& opts = {}) const {
        using T = value_type_t<S>;
        using Space = memory_space_t<S>;
        static_assert(std::is_same_v<value_type_t<Tt>, T> && std::is_same_v<memory_space_t<Tt>, Space>,
                      "student and teacher must have the same element type and memory space");
        feature_args<T, Space> args;
        args.student = as_view(student);
        args.teacher = as_view(teacher);
        return detail::run_feature_owning(backend, opts, args);
    }
    template <real_tensor S, real_tensor Tt, class Real = double>
        requires(form<Real> == feature_form::pair)
    auto operator()(const S& student, const Tt& teacher, const BasicOptions<Real>& opts = {}) const {
        return (*this)(default_backend_t<memory_space_t<S>>{}, student, teacher, opts);
    }

    template <backend_object Backend, real_tensor S, real_tensor Tt, real_tensor A, class Real = double>
        requires(form<Real> == feature_form::pair_with_alpha)
    auto operator()(const Backend& backend, const S& student, const Tt& teacher, const A& alpha,
                    const BasicOptions<Real>& opts = {}) const {
        using T = value_type_t<S>;
        using Space = memory_space_t<S>;
        static_assert(std::is_same_v<value_type_t<Tt>, T> && std::is_same_v<memory_space_t<Tt>, Space> &&
                          std::is_same_v<value_type_t<A>, T> && std::is_same_v<memory_space_t<A>, Space>,
                      "student, teacher and alpha must have the same element type and memory space");
        feature_args<T, Space> args;
        args.student = as_view(student);
        args.teacher = as_view(teacher);
        args.alpha = as_view(alpha);
        return detail::run_feature_owning(backend, opts, args);
    }
    template <real_tensor S, real_tensor Tt, real_tensor A, class Real = double>
        requires(form<Real> == feature_form::pair_with_alpha)
    auto operator()(const S& student, const Tt& teacher, const A& alpha, const BasicOptions<Real>& opts = {}) const {
        return (*this)(default_backend_t<memory_space_t<S>>{}, student, teacher, alpha, opts);
    }

    template <backend_object Backend, std::ranges::forward_range RS, std::ranges::forward_range RT, class Real = double>
        requires(form<Real> == feature_form::layers && real_tensor<std::ranges::range_value_t<RS>> &&
                 real_tensor<std::ranges::range_value_t<RT>>)
    auto operator()(const Backend& backend, const RS& student_layers, const RT& teacher_layers,
                    const BasicOptions<Real>& opts = {}) const {
        using S = std::ranges::range_value_t<RS>;
        using T = value_type_t<S>;
        using Space = memory_space_t<S>;
        const auto students = detail::layer_views_of<Space, T>(student_layers);
        const auto teachers = detail::layer_views_of<Space, T>(teacher_layers);
        feature_args<T, Space> args;
        args.student_layers = students;
        args.teacher_layers = teachers;
        return detail::run_feature_owning(backend, opts, args);
    }
    template <std::ranges::forward_range RS, std::ranges::forward_range RT, class Real = double>
        requires(form<Real> == feature_form::layers && real_tensor<std::ranges::range_value_t<RS>> &&
                 real_tensor<std::ranges::range_value_t<RT>>)
    auto operator()(const RS& student_layers, const RT& teacher_layers, const BasicOptions<Real>& opts = {}) const {
        using S = std::ranges::range_value_t<RS>;
        return (*this)(default_backend_t<memory_space_t<S>>{}, student_layers, teacher_layers, opts);
    }
};

}  // namespace distill
