// distill/losses/feature/common.hpp: what every feature- and relation-based loss shares.
//
// Arguments and outputs of the check and run steps, and the shape checks. One argument struct
// serves every method: single-layer methods read `student` / `teacher`, multi-layer methods
// (ab, fsp) read `student_layers` / `teacher_layers`, and vid also reads `alpha`. A method
// rejects an argument it does not take (with `error shape`), so a call cannot silently ignore one.
#pragma once

#include <cstddef>
#include <span>

#include "../../core/backend.hpp"
#include "../../core/status.hpp"
#include "../../core/tensor.hpp"
#include "../../knowledge/primitives.hpp"
#include "../response/common.hpp"

namespace distill {

/// Inputs of a feature or relation loss (N first in every tensor; the teacher gets no gradient).
template <class T, class Space = host_space>
struct feature_args {
    using real_type = T;
    using memory_space = Space;
    any_view<const T, Space> student{};  ///< single-layer methods
    any_view<const T, Space> teacher{};
    std::span<const any_view<const T, Space>> student_layers{};  ///< ab, fsp: layer i of the student
    std::span<const any_view<const T, Space>> teacher_layers{};
    any_view<const T, Space> alpha{};  ///< vid: the pre-softplus variance parameter (length C)
};

/// Outputs of a feature or relation loss, written only when the call succeeds. Every output but
/// `loss` is optional (unbound / empty span: not computed).
template <class T, class Space = host_space>
struct feature_outputs {
    any_view<T, Space> loss;              ///< 1 value
    any_view<T, Space> grad_student{};    ///< shape of student
    std::span<const any_view<T, Space>> grad_student_layers{};  ///< ab, fsp: one per layer (unbound entries skipped)
    any_view<T, Space> grad_alpha{};      ///< vid: shape of alpha
    any_view<T, Space> knowledge_student{};  ///< the method's knowledge of the student (see its header)
    any_view<T, Space> knowledge_teacher{};
    std::span<const any_view<T, Space>> knowledge_student_layers{};  ///< fsp: one per layer pair
    std::span<const any_view<T, Space>> knowledge_teacher_layers{};
    /// The gradients written (grad_student, grad_student_layers, grad_alpha) are those of
    /// grad_scale * loss; the loss output is not scaled. Finite.
    T grad_scale = T(1);
    /// Add the gradients into their outputs instead of overwriting them (objective terms sharing
    /// an input). The method then computes them in workspace first (workspace_bytes grows by their
    /// size) and adds them in one pass.
    bool accumulate = false;
};

/// The extents of one knowledge output (at most 4-D).
struct knowledge_shape {
    int rank = -1;  ///< -1: the method has no such output
    index_t extents[4] = {};
};

namespace detail {

/// Rank, emptiness and size overflow of one input tensor.
template <class V>
status check_feature_tensor(const char* method, const char* name, const V& v, int min_rank, int max_rank) noexcept {
    if (status s = check_present(method, name, v); !s) return s;
    if (v.rank() < min_rank || v.rank() > max_rank) {
        status s = method_error(errc::bad_rank, method, name).text(name).text(" must be ");
        if (min_rank == max_rank) s.number(min_rank).text("-D");
        else s.text("at least ").number(min_rank).text("-D");
        return s.text(", got shape ").shape(v.extents(), v.rank());
    }
    for (int r = 0; r < v.rank(); ++r)
        if (v.extent(r) < 1)
            return method_error(errc::empty_input, method, name).text(name).text(" has shape ").shape(v.extents(), v.rank())
                .text(": every dimension must be >= 1");
    return {};
}

/// student and teacher present, of rank in [min_rank, max_rank], non-empty, the same N; the
/// layered and vid arguments absent.
template <class T, class Space>
status check_feature_pair(const char* method, const feature_args<T, Space>& a, int min_rank, int max_rank,
                          bool takes_alpha = false) noexcept {
    if (!a.student_layers.empty() || !a.teacher_layers.empty())
        return method_error(errc::shape_mismatch, method, "student_layers")
            .text("takes one student and one teacher tensor, not layers");
    if (!takes_alpha && a.alpha.bound())
        return method_error(errc::shape_mismatch, method, "alpha").text("takes no alpha input");
    if (status s = check_feature_tensor(method, "student", a.student, min_rank, max_rank); !s) return s;
    if (status s = check_feature_tensor(method, "teacher", a.teacher, min_rank, max_rank); !s) return s;
    if (a.teacher.extent(0) != a.student.extent(0))
        return method_error(errc::shape_mismatch, method, "teacher").text("teacher has shape ")
            .shape(a.teacher.extents(), a.teacher.rank()).text(" but student has shape ")
            .shape(a.student.extents(), a.student.rank()).text(" (N must match)");
    return {};
}

template <class V>
bool same_shape(const V& a, const V& b) noexcept {
    if (a.rank() != b.rank()) return false;
    for (int r = 0; r < a.rank(); ++r)
        if (a.extent(r) != b.extent(r)) return false;
    return true;
}

template <class T, class Space>
status check_same_shape(const char* method, const any_view<const T, Space>& student,
                        const any_view<const T, Space>& teacher, const char* teacher_name = "teacher",
                        const char* student_name = "student") noexcept {
    if (!same_shape(student, teacher))
        return method_error(errc::shape_mismatch, method, teacher_name).text(teacher_name).text(" has shape ")
            .shape(teacher.extents(), teacher.rank()).text(" but ").text(student_name).text(" has shape ")
            .shape(student.extents(), student.rank()).text(" (they must be equal)");
    return {};
}

/// The rows of an input as N x D (see flatten_rows); unsupported_layout when its strides cannot.
template <class T, class Space>
status flatten_input(const char* method, const char* name, const any_view<const T, Space>& v,
                     matrix_ref<const T>& out) noexcept {
    if (!flatten_rows(v, out))
        return method_error(errc::unsupported_layout, method, name).text(name).text(" with shape ")
            .shape(v.extents(), v.rank())
            .text(" has strides that do not walk each sample with one stride; pass a dense copy");
    return {};
}

/// student and teacher of any rank >= 2 whose samples flatten to rows (check_feature_pair, then
/// flatten_input on both): the input rule of the methods that compare batch relations.
template <class T, class Space>
status check_flattened_pair(const char* method, const feature_args<T, Space>& a) noexcept {
    if (status s = check_feature_pair(method, a, 2, max_dynamic_rank); !s) return s;
    matrix_ref<const T> rows;
    if (status s = flatten_input(method, "student", a.student, rows); !s) return s;
    return flatten_input(method, "teacher", a.teacher, rows);
}

/// A real parameter that must be finite and >= lower (or > lower when strict).
template <class R>
status check_parameter(const char* method, const char* name, R value, R lower, bool strict = false) noexcept {
    if (!is_finite(value) || (strict ? !(value > lower) : !(value >= lower)))
        return method_error(errc::invalid_parameter, method, name).text(name).text(" = ").real(value)
            .text(strict ? " must be finite and > " : " must be finite and >= ").real(lower);
    return {};
}

/// An output that must have exactly `want`'s shape.
template <class T, class Space, class V>
status check_output_shape(const char* method, const char* name, const any_view<T, Space>& out, const V& want) noexcept {
    if (!out.bound()) return {};
    if (status s = check_present(method, name, out); !s) return s;
    if (!same_shape(any_view<const T, Space>(out), any_view<const T, Space>(want)))
        return method_error(errc::shape_mismatch, method, name).text("output ").text(name).text(" has shape ")
            .shape(out.extents(), out.rank()).text(" but must have shape ").shape(want.extents(), want.rank());
    return {};
}

/// An output that must have the extents of a knowledge_shape.
template <class T, class Space>
status check_output_shape(const char* method, const char* name, const any_view<T, Space>& out,
                          const knowledge_shape& want) noexcept {
    if (!out.bound()) return {};
    if (want.rank < 0)
        return method_error(errc::shape_mismatch, method, name).text("has no output ").text(name);
    if (status s = check_present(method, name, out); !s) return s;
    bool ok = out.rank() == want.rank;
    for (int r = 0; ok && r < want.rank; ++r) ok = out.extent(r) == want.extents[r];
    if (!ok)
        return method_error(errc::shape_mismatch, method, name).text("output ").text(name).text(" has shape ")
            .shape(out.extents(), out.rank()).text(" but must have shape ").shape(want.extents, want.rank);
    return {};
}

/// The most tensors a call takes on each side (inputs; outputs).
inline constexpr int max_feature_tensors = 64;

/// Every input range and every output range, for the aliasing check.
template <class T, class Space>
struct feature_ranges {
    static constexpr int capacity = max_feature_tensors;
    address_range ranges[capacity];
    const char* names[capacity];
    int count = 0;
    bool overflow = false;
    void add(const char* name, address_range r) noexcept {
        if (count == capacity) {
            overflow = true;
            return;
        }
        names[count] = name;
        ranges[count++] = r;
    }
};

/// Outputs may not overlap any input or each other.
template <class T, class Space>
status check_feature_aliasing(const char* method, const feature_args<T, Space>& a, const feature_outputs<T, Space>& o) noexcept {
    feature_ranges<T, Space> ins, outs;
    ins.add("student", range_of(a.student));
    ins.add("teacher", range_of(a.teacher));
    ins.add("alpha", range_of(a.alpha));
    for (const auto& v : a.student_layers) ins.add("student_layers", range_of(v));
    for (const auto& v : a.teacher_layers) ins.add("teacher_layers", range_of(v));
    outs.add("loss", range_of(o.loss));
    outs.add("grad_student", range_of(o.grad_student));
    outs.add("grad_alpha", range_of(o.grad_alpha));
    outs.add("knowledge_student", range_of(o.knowledge_student));
    outs.add("knowledge_teacher", range_of(o.knowledge_teacher));
    for (const auto& v : o.grad_student_layers) outs.add("grad_student_layers", range_of(v));
    for (const auto& v : o.knowledge_student_layers) outs.add("knowledge_student_layers", range_of(v));
    for (const auto& v : o.knowledge_teacher_layers) outs.add("knowledge_teacher_layers", range_of(v));
    if (ins.overflow || outs.overflow)
        return method_error(errc::shape_mismatch, method, "layers")
            .text("too many layers: a call takes at most 64 input and 64 output tensors (about 20 layers with every output)");
    for (int i = 0; i < outs.count; ++i) {
        for (int j = 0; j < ins.count; ++j)
            if (outs.ranges[i].overlaps(ins.ranges[j]))
                return method_error(errc::aliasing, method, outs.names[i]).text("output ").text(outs.names[i])
                    .text(" overlaps input ").text(ins.names[j]);
        for (int j = i + 1; j < outs.count; ++j)
            if (outs.ranges[i].overlaps(outs.ranges[j]))
                return method_error(errc::aliasing, method, outs.names[i]).text("output ").text(outs.names[i])
                    .text(" overlaps output ").text(outs.names[j]);
    }
    return {};
}

}  // namespace detail
}  // namespace distill
