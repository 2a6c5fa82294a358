// distill/losses/response/driver.hpp: the check / run / convenience steps every row-wise
// response loss shares, written once.
//
// A row-wise method (kd, reverse_kd, jsd, ...) is described by a specialisation of
// response_method<Options> for its options type:
//
//   template <class Real> struct response_method<basic_reverse_kd_options<Real>> {
//       static constexpr const char* name = "reverse_kd";
//       static constexpr bool has_temperature = true;     // may report d loss / d T
//       static constexpr bool needs_teacher = true;       // false for ce
//       static constexpr bool labels_required = false;    // true for ce, dkd
//       static status check_params(const Options&);       // temperature, reduction, method ranges
//       static constexpr index_t min_classes(const Options&);  static constexpr const char* min_classes_reason;
//       template <class T, class Label> static auto kernel(const Options&, const row_context<T, Label>&);
//   };
//
// and gets, through the generic functions below,
//   check_args(opts, args)            parameters and inputs (before anything is allocated)
//   check(opts, args, outs)           + outputs and aliasing
//   workspace_bytes(opts, args, outs) scratch the run step needs on the backend
//   run(opts, args, outs, workspace)  check, then the row kernel on every row
// each also with a backend as first argument, and the convenience function object
// (distill::kd, distill::reverse_kd, ...) built by response_loss_fn.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "../../detail/simd.hpp"
#include "common.hpp"
#include "result.hpp"

namespace distill {

/// Specialised by each row-wise response method for its options type (see the header comment).
template <class Options>
struct response_method;

template <class Options>
concept row_response_options = requires { response_method<Options>::name; };

/// What a method's row kernel receives: its inputs as kernel handles, the row weighting and the
/// reduction's scale. kernel(i) returns the row's weighted contribution and writes gradient row i.
template <class T, class Label>
struct row_context {
    detail::matrix_ref<const T> student, teacher;
    detail::matrix_ref<T> grad;  ///< absent when no gradient is requested
    detail::vector_ref<const Label> labels;
    detail::row_weighting<T, Label> weighting;
    T inv_total;  ///< 1 / sum of row weights for batchmean (0 if that sum is 0), else 1
    bool want_dtemperature;
    T grad_factor = T(1);     ///< response_outputs::grad_scale: gradients are those of grad_factor * loss
    bool accumulate = false;  ///< response_outputs::accumulate: gradients are added to the outputs

    /// w_i scaled for the reduction: the factor of row i's loss in the returned loss.
    DISTILL_HD constexpr T row_scale(index_t i) const noexcept { return weighting(i) * inv_total; }
    /// The factor of row i's gradient: row_scale(i) * grad_factor.
    DISTILL_HD constexpr T grad_scale(index_t i) const noexcept { return row_scale(i) * grad_factor; }
    /// Writes (or, accumulating, adds) `count` gradient values v at p with the given stride.
    template <class V>
    DISTILL_HD DISTILL_FORCE_INLINE void put_grad(T* p, index_t stride, int count, V v) const noexcept {
        if (accumulate) v = v + detail::load_lanes<V>(p, stride, count, T(0));
        detail::store_lanes(p, stride, count, v);
    }
    /// One gradient value: g = v, or g += v when accumulating.
    DISTILL_HD DISTILL_FORCE_INLINE void put_grad(T& g, T v) const noexcept { g = accumulate ? g + v : v; }
    /// Writes a zero gradient row (rows with weight 0); leaves it alone when accumulating.
    DISTILL_HD void zero_grad_row(index_t i) const noexcept {
        if (!grad.present() || accumulate) return;
        T* g = grad.row(i);
        for (index_t c = 0; c < grad.cols; ++c) g[c * grad.col_stride] = T(0);
    }
};

namespace detail {

/// Checks shared by the divergence family: temperature > 0 and finite, a known reduction.
template <class Options>
status check_tempered(const char* method, const Options& opts) noexcept {
    if (status s = check_temperature(method, opts.temperature); !s) return s;
    return check_reduction(method, opts.reduce);
}

/// A parameter in [lo, hi] (open ends when the flags say so), with its name and the range in the message.
/// The bounds take the parameter's type, so float parameters are checked with float arithmetic.
template <class R>
status check_range(const char* method, const char* name, R value, std::type_identity_t<R> lo, std::type_identity_t<R> hi,
                   bool open_lo = false, bool open_hi = false) noexcept {
    const bool ok = is_finite(value) && (open_lo ? value > lo : value >= lo) && (open_hi ? value < hi : value <= hi);
    if (ok) return {};
    status s = method_error(errc::invalid_parameter, method, name);
    s.text(name).text(" = ").real(value).text(" is outside ").text(open_lo ? "(" : "[");
    if (is_finite(lo)) s.real(lo); else s.text("-inf");
    s.text(", ");
    if (is_finite(hi)) s.real(hi); else s.text("inf");
    return s.text(open_hi ? ")" : "]");
}

/// The caller's workspace holds at least `need` bytes.
inline status check_workspace(const char* method, workspace ws, std::size_t need) noexcept {
    if (ws.bytes >= need && (need == 0 || ws.data != nullptr)) return {};
    return method_error(errc::workspace_too_small, method, "workspace").text("workspace has ")
        .number(static_cast<std::int64_t>(ws.bytes)).text(" bytes but this call needs ")
        .number(static_cast<std::int64_t>(need));
}

/// The row context of a checked call: kernel handles of the student, of the teacher (any N-row
/// matrix the kernel reads alongside), of labels and of the gradient output, and the row
/// weighting scaled for the reduction (1 / sum of weights for batchmean, via the backend).
template <class Backend, class T, class Space, class Label>
row_context<T, Label> make_row_context(const Backend& backend, const any_view<const T, Space>& student,
                                       const any_view<const T, Space>& teacher, const any_view<const Label, Space>& labels,
                                       const any_view<const T, Space>& weight, std::int64_t ignore_index, reduction red,
                                       const response_outputs<T, Space>& outs) noexcept(Backend::is_nothrow) {
    const row_weighting<T, Label> weighting{to_vector_ref(labels), to_vector_ref(weight), ignore_index};
    T inv_total = T(1);
    if (red == reduction::batchmean) {
        const T total = backend.transform_reduce(student.extent(0), weighting, T(0), plus_op<T>{});
        inv_total = total > T(0) ? T(1) / total : T(0);
    }
    return {to_matrix_ref(student), to_matrix_ref(teacher), to_matrix_ref(outs.grad_student), to_vector_ref(labels),
            weighting,              inv_total,              outs.grad_temperature.bound(), outs.grad_scale, outs.accumulate};
}

/// Runs a row kernel over the N rows of a checked call into its outputs.
template <class Backend, class T, class Space, class Kernel>
void run_rows_into(const Backend& backend, index_t n, const Kernel& kernel, reduction red,
                   const response_outputs<T, Space>& outs, workspace ws) noexcept(Backend::is_nothrow) {
    backend.run_rows(n, kernel, red, to_vector_ref(outs.loss),
                     outs.grad_temperature.bound() ? outs.grad_temperature.data() : nullptr, ws, outs.accumulate);
}

}  // namespace detail

template <class Backend, row_response_options Options, class T, class Space, class Label>
status check_args(const Backend& backend, const Options& opts,
                  const response_args<T, Space, Label>& args) noexcept(Backend::is_nothrow) {
    static_assert(backend_for<Backend, Space>, "this backend cannot run on the memory space of the arguments");
    using method = response_method<Options>;
    if (status s = method::check_params(opts); !s) return s;
    if (!method::needs_teacher && args.teacher.bound())
        return detail::method_error(errc::shape_mismatch, method::name, "teacher").text("takes no teacher");
    const response_args<T, Space, Label> checked =
        method::needs_teacher ? args : response_args<T, Space, Label>{args.student, args.student, args.labels, args.weight};
    if (status s = detail::check_logits(method::name, checked, method::min_classes(opts), method::min_classes_reason); !s)
        return s;
    return detail::check_rows(backend, method::name, args, static_cast<std::int64_t>(opts.ignore_index),
                              method::labels_required);
}

template <class Backend, row_response_options Options, class T, class Space, class Label>
status check(const Backend& backend, const Options& opts, const response_args<T, Space, Label>& args,
             const response_outputs<T, Space>& outs) noexcept(Backend::is_nothrow) {
    using method = response_method<Options>;
    if (status s = check_args(backend, opts, args); !s) return s;
    if (!method::has_temperature && outs.grad_temperature.bound())
        return detail::method_error(errc::invalid_parameter, method::name, "grad_temperature")
            .text("has no temperature, so grad_temperature must be left unbound");
    return detail::check_outputs(method::name, args, outs, opts.reduce);
}

template <class Backend, row_response_options Options, class T, class Space, class Label>
std::size_t workspace_bytes(const Backend&, const Options& opts, const response_args<T, Space, Label>& args,
                            const response_outputs<T, Space>& outs) noexcept {
    const index_t n = args.student.bound() && args.student.rank() == 2 ? args.student.extent(0) : 0;
    return Backend::template rows_workspace_bytes<T>(n, opts.reduce, outs.grad_temperature.bound());
}

/// Run step: checks (O(N)), then computes the loss and the requested gradients into the caller's
/// outputs. noexcept and allocation-free on the CPU backend; on error nothing is written.
template <class Backend, row_response_options Options, class T, class Space, class Label>
status run(const Backend& backend, const Options& opts, const response_args<T, Space, Label>& args,
           const response_outputs<T, Space>& outs, workspace ws = {}) noexcept(Backend::is_nothrow) {
    using method = response_method<Options>;
    if (status s = check(backend, opts, args, outs); !s) return s;
    if (status s = detail::check_workspace(method::name, ws, workspace_bytes(backend, opts, args, outs)); !s) return s;
    const row_context<T, Label> context = detail::make_row_context(
        backend, args.student, args.teacher, args.labels, args.weight, static_cast<std::int64_t>(opts.ignore_index),
        opts.reduce, outs);
    detail::run_rows_into(backend, args.student.extent(0), method::template kernel<T, Label>(opts, context), opts.reduce,
                          outs, ws);
    return {};
}

// The same steps on the default backend of the arguments' memory space.
template <row_response_options Options, class T, class Space, class Label>
status check_args(const Options& opts, const response_args<T, Space, Label>& args) noexcept(
    default_backend_t<Space>::is_nothrow) {
    return check_args(default_backend_t<Space>{}, opts, args);
}
template <row_response_options Options, class T, class Space, class Label>
status check(const Options& opts, const response_args<T, Space, Label>& args,
             const response_outputs<T, Space>& outs) noexcept(default_backend_t<Space>::is_nothrow) {
    return check(default_backend_t<Space>{}, opts, args, outs);
}
template <row_response_options Options, class T, class Space, class Label>
std::size_t workspace_bytes(const Options& opts, const response_args<T, Space, Label>& args,
                            const response_outputs<T, Space>& outs) noexcept {
    return workspace_bytes(default_backend_t<Space>{}, opts, args, outs);
}
template <row_response_options Options, class T, class Space, class Label>
status run(const Options& opts, const response_args<T, Space, Label>& args, const response_outputs<T, Space>& outs,
           workspace ws = {}) noexcept(default_backend_t<Space>::is_nothrow) {
    return run(default_backend_t<Space>{}, opts, args, outs, ws);
}

/// The convenience function object of a row-wise method whose options template is BasicOptions:
///   loss(student, teacher[, labels[, weight]][, opts])   and   loss(backend, student, teacher, labels, weight[, opts])
/// labels and weight may be distill::none. Returns a loss_result; throws distill::error on bad input
/// (with exceptions disabled, returns the status in the result instead).
template <template <class> class BasicOptions>
struct response_loss_fn {
    template <backend_object Backend, real_tensor S, real_tensor Tt, optional_tensor L, optional_tensor W,
              class Real = double>
    auto operator()(const Backend& backend, const S& student, const Tt& teacher, const L& labels, const W& weight,
                    const BasicOptions<Real>& opts = {}) const {
        const auto args = make_response_args(student, teacher, labels, weight);
        return detail::run_owning(
            backend, args, opts.reduce, response_method<BasicOptions<Real>>::has_temperature,
            [&] { return check_args(backend, opts, args); },
            [&](const auto& outs) { return workspace_bytes(backend, opts, args, outs); },
            [&](const auto& outs, workspace ws) { return run(backend, opts, args, outs, ws); });
    }
    template <real_tensor S, real_tensor Tt, optional_tensor L, optional_tensor W, class Real = double>
    auto operator()(const S& student, const Tt& teacher, const L& labels, const W& weight,
                    const BasicOptions<Real>& opts = {}) const {
        return (*this)(default_backend_t<memory_space_t<S>>{}, student, teacher, labels, weight, opts);
    }
    template <real_tensor S, real_tensor Tt, optional_tensor L, class Real = double>
    auto operator()(const S& student, const Tt& teacher, const L& labels, const BasicOptions<Real>& opts = {}) const {
        return (*this)(student, teacher, labels, none, opts);
    }
    template <real_tensor S, real_tensor Tt, class Real = double>
    auto operator()(const S& student, const Tt& teacher, const BasicOptions<Real>& opts = {}) const {
        return (*this)(student, teacher, none, none, opts);
    }
};

}  // namespace distill
