// distill/losses/response/common.hpp: what every response-based (logit) loss shares.
//
// Arguments and outputs of the check and run steps, the checks themselves
// (shapes, row weights, labels, outputs, aliasing), and the row weighting
// w_i = weight_i * [labels_i != ignore_index] used by every reduction.
#pragma once

#include <cstdint>
#include <type_traits>

#include "../../core/backend.hpp"
#include "../../core/reduction.hpp"
#include "../../core/status.hpp"
#include "../../core/tensor.hpp"
#include "../../detail/math.hpp"

namespace distill {

/// Inputs of a response loss: N x C student and teacher logits, and optional
/// labels (length N, any integer type) and row weights (length N).
template <class T, class Space = host_space, class Label = std::int64_t>
struct response_args {
    using real_type = T;
    using label_type = Label;
    using memory_space = Space;
    any_view<const T, Space> student;
    any_view<const T, Space> teacher;
    any_view<const Label, Space> labels{};  ///< optional; rows with labels_i == ignore_index get weight 0
    any_view<const T, Space> weight{};      ///< optional; per-row weights >= 0
};

/// Outputs of a response loss, written only when the call succeeds.
template <class T, class Space = host_space>
struct response_outputs {
    any_view<T, Space> loss;                ///< 1 value (batchmean, sum) or N (none)
    any_view<T, Space> grad_student{};      ///< optional, N x C: d(sum of loss)/d student
    any_view<T, Space> grad_temperature{};  ///< optional, 1 value: d(sum of loss)/d temperature
    /// The gradients written are those of grad_scale * loss (a term's weight in an objective); the
    /// loss output itself is not scaled. Finite.
    T grad_scale = T(1);
    /// Add the gradients into grad_student and grad_temperature instead of overwriting them, so
    /// that the terms of an objective accumulate into one buffer with no copy.
    bool accumulate = false;
};

namespace detail {
/// The element type of optional labels (int64 when they are left out).
template <class L>
struct label_type {
    using type = value_type_t<L>;
};
template <>
struct label_type<none_t> {
    using type = std::int64_t;
};
template <class L>
using label_type_t = typename label_type<L>::type;

/// Compile-time rules for the optional per-row inputs of a call on T logits in Space.
template <class T, class Space, class L, class W>
constexpr void check_row_input_types() noexcept {
    if constexpr (!std::is_same_v<L, none_t>) {
        static_assert(std::is_integral_v<label_type_t<L>>, "labels must hold integers");
        static_assert(std::is_same_v<memory_space_t<L>, Space>, "labels must live in the memory space of the logits");
    }
    if constexpr (!std::is_same_v<W, none_t>) {
        static_assert(std::is_same_v<value_type_t<W>, T>, "weight must have the element type of the logits");
        static_assert(std::is_same_v<memory_space_t<W>, Space>, "weight must live in the memory space of the logits");
    }
}
}  // namespace detail

/// Builds response_args from any tensors (labels and weight may be distill::none).
template <real_tensor S, real_tensor Tt, optional_tensor L = none_t, optional_tensor W = none_t>
constexpr auto make_response_args(const S& student, const Tt& teacher, const L& labels = none, const W& weight = none) {
    using T = value_type_t<S>;
    using Space = memory_space_t<S>;
    static_assert(std::is_same_v<value_type_t<Tt>, T>, "student and teacher must have the same element type");
    static_assert(std::is_same_v<memory_space_t<Tt>, Space>, "student and teacher must live in the same memory space");
    using Label = detail::label_type_t<L>;
    detail::check_row_input_types<T, Space, L, W>();
    return response_args<T, Space, Label>{any_view<const T, Space>(as_view(student)),
                                          any_view<const T, Space>(as_view(teacher)),
                                          detail::optional_view<const Label, Space>(labels),
                                          detail::optional_view<const T, Space>(weight)};
}

namespace detail {

/// w_i: the row weight (1 when absent) times 0 for rows whose label is ignore_index.
template <class T, class Label>
struct row_weighting {
    vector_ref<const Label> labels;
    vector_ref<const T> weight;
    std::int64_t ignore_index;
    DISTILL_HD constexpr T operator()(index_t i) const noexcept {
        if (labels.present() && static_cast<std::int64_t>(labels[i]) == ignore_index) return T(0);
        return weight.present() ? weight[i] : T(1);
    }
};

template <class Label>
struct label_is_invalid {
    vector_ref<const Label> labels;
    std::int64_t ignore_index;
    index_t classes;
    DISTILL_HD constexpr bool operator()(index_t i) const noexcept {
        const auto y = static_cast<std::int64_t>(labels[i]);
        return y != ignore_index && (y < 0 || static_cast<index_t>(y) >= classes);
    }
};

template <class T>
struct weight_is_invalid {
    vector_ref<const T> weight;
    DISTILL_HD constexpr bool operator()(index_t i) const noexcept {
        const T w = weight[i];
        return !(w >= T(0)) || !is_finite(w);
    }
};

/// "kd: " prefix for messages.
inline status method_error(errc code, const char* method, const char* argument) noexcept {
    return status::error(code, argument).text(method).text(": ");
}

template <class V>
status check_present(const char* method, const char* name, const V& v) noexcept {
    if (!v.bound()) return method_error(errc::missing_argument, method, name).text(name).text(" is required");
    index_t n = 0;
    if (!v.checked_size(n))
        return method_error(errc::size_overflow, method, name).text(name).text(" has shape ").shape(v.extents(), v.rank())
            .text(" whose element count or address span overflows 63 bits");
    if (v.data() == nullptr && n != 0) return method_error(errc::missing_argument, method, name).text(name).text(" has no data");
    return {};
}

/// student and teacher: both present, 2-D, the same shape, N >= 1, C >= min_classes.
/// min_classes > 1 is a method or option rule; `why` names it for the message (e.g. "standardize").
template <class T, class Space, class Label>
status check_logits(const char* method, const response_args<T, Space, Label>& a, index_t min_classes = 1,
                    const char* why = "") noexcept {
    if (status s = check_present(method, "student", a.student); !s) return s;
    if (a.student.rank() != 2)
        return method_error(errc::bad_rank, method, "student").text("student must be 2-D (N x C), got shape ")
            .shape(a.student.extents(), a.student.rank());
    const index_t n = a.student.extent(0), c = a.student.extent(1);
    if (n < 1 || c < 1)
        return method_error(errc::empty_input, method, "student").text("student has shape ")
            .shape(a.student.extents(), 2).text(": N and C must be >= 1");
    if (c < min_classes)
        return method_error(errc::shape_mismatch, method, "student").text("student has shape ")
            .shape(a.student.extents(), 2).text(" but ").text(why).text(" needs at least ").number(min_classes)
            .text(" classes");
    if (status s = check_present(method, "teacher", a.teacher); !s) return s;
    if (a.teacher.rank() != 2 || a.teacher.extent(0) != n || a.teacher.extent(1) != c)
        return method_error(errc::shape_mismatch, method, "teacher").text("teacher has shape ")
            .shape(a.teacher.extents(), a.teacher.rank()).text(" but student has shape ").shape(a.student.extents(), 2);
    return {};
}

template <class V>
status check_row_vector(const char* method, const char* name, const V& v, index_t n) noexcept {
    if (!v.bound()) return {};
    if (status s = check_present(method, name, v); !s) return s;
    if (v.rank() != 1 || v.extent(0) != n)
        return method_error(errc::shape_mismatch, method, name).text(name).text(" has shape ").shape(v.extents(), v.rank())
            .text(" but must have shape [").number(n).text("] (one value per row)");
    return {};
}

/// labels and weight: shapes, then values (read through the backend, so device memory works).
template <class Backend, class T, class Space, class Label>
status check_rows(const Backend& backend, const char* method, const response_args<T, Space, Label>& a,
                  std::int64_t ignore_index, bool labels_required) noexcept(Backend::is_nothrow) {
    const index_t n = a.student.extent(0), c = a.student.extent(1);
    if (labels_required && !a.labels.bound())
        return method_error(errc::missing_argument, method, "labels").text("labels are required");
    if (status s = check_row_vector(method, "labels", a.labels, n); !s) return s;
    if (status s = check_row_vector(method, "weight", a.weight, n); !s) return s;
    if (a.labels.bound()) {
        const auto labels = to_vector_ref(a.labels);
        const index_t bad = backend.transform_reduce(
            n, first_where<label_is_invalid<Label>>{{labels, ignore_index, c}, n}, n, min_op<index_t>{});
        if (bad < n)
            return method_error(errc::label_out_of_range, method, "labels").text("labels[").number(bad).text("] = ")
                .number(static_cast<std::int64_t>(Backend::load(&labels[bad]))).text(" is outside [0, ").number(c)
                .text(") and is not ignore_index (").number(ignore_index).text(")");
    }
    if (a.weight.bound()) {
        const auto weight = to_vector_ref(a.weight);
        const index_t bad = backend.transform_reduce(n, first_where<weight_is_invalid<T>>{{weight}, n}, n, min_op<index_t>{});
        if (bad < n)
            return method_error(errc::invalid_weight, method, "weight").text("weight[").number(bad).text("] = ")
                .real(Backend::load(&weight[bad])).text(" must be finite and >= 0");
    }
    return {};
}

template <class R>
status check_temperature(const char* method, R temperature) noexcept {
    if (!(temperature > R(0)) || !is_finite(temperature))
        return method_error(errc::invalid_parameter, method, "temperature").text("temperature = ")
            .real(temperature).text(" must be finite and > 0");
    return {};
}

inline status check_reduction(const char* method, reduction r) noexcept {
    if (!is_valid(r))
        return method_error(errc::unknown_reduction, method, "reduction").text("reduction = ")
            .number(static_cast<int>(r)).text(" is not batchmean, sum or none");
    return {};
}

template <class V>
status check_output_size(const char* method, const char* name, const V& v, index_t want, bool required) noexcept {
    if (!v.bound()) {
        if (required) return method_error(errc::missing_argument, method, name).text("output ").text(name).text(" is required");
        return {};
    }
    if (status s = check_present(method, name, v); !s) return s;
    if (v.size() != want || !is_vector_like(v))
        return method_error(errc::shape_mismatch, method, name).text("output ").text(name).text(" has shape ")
            .shape(v.extents(), v.rank()).text(" but must hold ").number(want).text(want == 1 ? " value" : " values (one per row)");
    return {};
}

/// Outputs: loss (1 or N values), optional N x C student gradient and 1-value temperature gradient;
/// no output may overlap an input or another output.
template <class T, class Space, class Label>
status check_outputs(const char* method, const response_args<T, Space, Label>& a, const response_outputs<T, Space>& o,
                     reduction red) noexcept {
    const index_t n = a.student.extent(0), c = a.student.extent(1);
    if (status s = check_output_size(method, "loss", o.loss, red == reduction::none ? n : 1, true); !s) return s;
    if (o.grad_student.bound()) {
        if (status s = check_present(method, "grad_student", o.grad_student); !s) return s;
        if (o.grad_student.rank() != 2 || o.grad_student.extent(0) != n || o.grad_student.extent(1) != c)
            return method_error(errc::shape_mismatch, method, "grad_student").text("output grad_student has shape ")
                .shape(o.grad_student.extents(), o.grad_student.rank()).text(" but student has shape ")
                .shape(a.student.extents(), 2);
    }
    if (status s = check_output_size(method, "grad_temperature", o.grad_temperature, 1, false); !s) return s;
    if (!is_finite(o.grad_scale))
        return method_error(errc::invalid_parameter, method, "grad_scale").text("grad_scale = ").real(o.grad_scale)
            .text(" is not finite");

    const address_range outs[] = {range_of(o.loss), range_of(o.grad_student), range_of(o.grad_temperature)};
    const char* out_names[] = {"loss", "grad_student", "grad_temperature"};
    const address_range ins[] = {range_of(a.student), range_of(a.teacher), range_of(a.labels), range_of(a.weight)};
    const char* in_names[] = {"student", "teacher", "labels", "weight"};
    for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < 4; ++j)
            if (outs[i].overlaps(ins[j]))
                return method_error(errc::aliasing, method, out_names[i]).text("output ").text(out_names[i])
                    .text(" overlaps input ").text(in_names[j]);
        for (int j = i + 1; j < 3; ++j)
            if (outs[i].overlaps(outs[j]))
                return method_error(errc::aliasing, method, out_names[i]).text("output ").text(out_names[i])
                    .text(" overlaps output ").text(out_names[j]);
    }
    return {};
}

}  // namespace detail
}  // namespace distill
