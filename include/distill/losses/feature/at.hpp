// distill/losses/feature/at.hpp: attention transfer, and the normalised-map loss it shares with
// factor.
//
// S. Zagoruyko, N. Komodakis, "Paying More Attention to Attention: Improving the Performance of
// Convolutional Neural Networks via Attention Transfer", ICLR 2017 (reference code: RepDistiller
// AT.py, the authors' at / at_loss). Student and teacher are N x C x H x W maps; the channel
// counts may differ. When H x W differ, the map at least as large in both is adaptive-average-
// pooled to the other's size first (a map taller but narrower than the other: shape error).
//
//   A_n = vec_{h,w}((1/C) sum_c |f_{n,c,h,w}|^p),  a_n = normalize(A_n)   (K = H' W' cells)
//   L = (1/(N K)) sum_n ||a^s_n - a^t_n||^2
//   dL/da^s = (2/(N K))(a^s - a^t), then the VJP of the normalisation and of the map,
//   df = dA (p/C) |f|^(p-1) sign(f) (0 at f = 0), and of the pooling when the student was pooled.
//
// Cost: O(N C H W) time for each side (pooling, the map, its VJP); workspace 2 N K + 2 N values,
// plus N C K for the pooled side when one is pooled. The inputs may have any strides.
// Knowledge outputs: a^s and a^t (N x K).
//
// The engine below (normalized_map_loss) also serves factor: the same maps compared with
// (1/(N K)) sum |a^s - a^t|^p2, or a_n = normalize(f_n) over all C H' W' values (map = flat).
#pragma once

#include <cstddef>
#include <cstdint>

#include "../../knowledge/spatial.hpp"
#include "common.hpp"
#include "driver.hpp"

namespace distill {

/// at's parameter: the exponent p >= 1 of the attention map (2 in the paper and the code).
template <class Real>
struct basic_at_options {
    Real p = 2;
};
using at_options = basic_at_options<double>;
using at_float_options = basic_at_options<float>;

namespace detail {

/// The map a normalised-map loss compares.
enum class normalized_map_kind : std::uint8_t {
    attention,  ///< normalize(vec((1/C) sum_c |f_c|^p1)), K = H' W'
    flat,       ///< normalize(f_n) over C H' W' values (equal channel counts)
};

/// |a^s - a^t|^p summed (the loss terms).
template <class T>
struct map_distance_kernel {
    const T* student;
    const T* teacher;
    T p;
    DISTILL_HD T operator()(index_t i) const noexcept { return abs_power(student[i] - teacher[i], p); }
};
/// scale d|a^s - a^t|^p / da^s, written over a^t (the upstream of the normalisation's VJP).
template <class T>
struct map_distance_upstream_kernel {
    const T* student;
    T* teacher_then_grad;
    T p, scale;
    DISTILL_HD void operator()(index_t i) const noexcept {
        teacher_then_grad[i] = scale * abs_power_derivative(student[i] - teacher_then_grad[i], p);
    }
};

/// (1/(N K)) sum |a^s - a^t|^distance_p over normalised maps of student and teacher (at, factor).
struct normalized_map_loss {
    /// The common spatial size of a checked pair (never fails after the check step).
    template <class V>
    static spatial_match match(const V& student, const V& teacher) noexcept {
        spatial_match m;
        match_spatial(student.extent(2), student.extent(3), teacher.extent(2), teacher.extent(3), m);
        return m;
    }
    /// K, the length of a_n.
    template <class V>
    static index_t length(normalized_map_kind kind, const V& student, const V& teacher) noexcept {
        const spatial_match m = match(student, teacher);
        return kind == normalized_map_kind::attention ? m.h * m.w : student.extent(1) * m.h * m.w;
    }
    template <class V>
    static std::size_t workspace_values(normalized_map_kind kind, const V& student, const V& teacher) noexcept {
        const spatial_match m = match(student, teacher);
        const auto n = static_cast<std::size_t>(student.extent(0));
        const auto k = static_cast<std::size_t>(length(kind, student, teacher));
        std::size_t pooled = 0;
        if (kind == normalized_map_kind::attention && (m.pool_first || m.pool_second))
            pooled = n * static_cast<std::size_t>((m.pool_first ? student : teacher).extent(1) * m.h * m.w);
        return 2 * n * k + 2 * n + pooled;
    }

    template <class Backend, class T, class Space>
    static void run(const Backend& backend, normalized_map_kind kind, T map_p, T distance_p, const feature_args<T, Space>& a,
                    const feature_outputs<T, Space>& o, workspace ws) {
        const spatial_match m = match(a.student, a.teacher);
        const map_ref<const T> student = to_map_ref(a.student), teacher = to_map_ref(a.teacher);
        const index_t n = student.n, k = length(kind, a.student, a.teacher);
        T* base = static_cast<T*>(ws.data);
        const auto a_s = dense_matrix(base, n, k), a_t = dense_matrix(base + n * k, n, k);
        T* norm_s = base + 2 * n * k;
        T* norm_t = norm_s + n;
        T* pooled = norm_t + n;  // attention: the pooled side's N x C x H' x W' map

        map_ref<T> pooled_student{};
        if (kind == normalized_map_kind::attention) {
            map_ref<const T> src_s = student, src_t = teacher;
            if (m.pool_first) {
                pooled_student = dense_map(pooled, n, student.c, m.h, m.w);
                adaptive_pool_forward(backend, student, pooled_student);
                src_s = as_const(pooled_student);
            } else if (m.pool_second) {
                const auto pooled_teacher = dense_map(pooled, n, teacher.c, m.h, m.w);
                adaptive_pool_forward(backend, teacher, pooled_teacher);
                src_t = as_const(pooled_teacher);
            }
            attention_map_forward(backend, src_s, map_p, a_s, norm_s);
            attention_map_forward(backend, src_t, map_p, a_t, norm_t);
        } else {
            // The (pooled, or copied) map laid out densely is the row f_n; normalised in place.
            adaptive_pool_forward(backend, student, dense_map(a_s.data, n, student.c, m.h, m.w));
            adaptive_pool_forward(backend, teacher, dense_map(a_t.data, n, teacher.c, m.h, m.w));
            backend.for_each(n, normalize_rows_kernel<T>{as_const(a_s), a_s, norm_s, normalize_eps<T>});
            backend.for_each(n, normalize_rows_kernel<T>{as_const(a_t), a_t, norm_t, normalize_eps<T>});
        }
        if (o.knowledge_student.bound()) copy(backend, as_const(a_s), to_matrix_ref(o.knowledge_student));
        if (o.knowledge_teacher.bound()) copy(backend, as_const(a_t), to_matrix_ref(o.knowledge_teacher));

        const T inv_count = T(1) / (T(n) * T(k));
        const T loss = inv_count * sum_over<T>(backend, n * k, map_distance_kernel<T>{a_s.data, a_t.data, distance_p});
        store(backend, o.loss.data(), loss);
        if (!o.grad_student.bound()) return;

        backend.for_each(n * k, map_distance_upstream_kernel<T>{a_s.data, a_t.data, distance_p, inv_count});
        const map_ref<T> grad = to_map_ref(o.grad_student);
        if (kind == normalized_map_kind::attention) {
            // dA over the upstream, then through |f|^p (in place on the pooled map) and the pooling.
            if (m.pool_first) {
                attention_map_backward(backend, as_const(pooled_student), map_p, as_const(a_s), norm_s, a_t, pooled_student, false);
                adaptive_pool_backward(backend, as_const(pooled_student), grad, false);
            } else {
                attention_map_backward(backend, student, map_p, as_const(a_s), norm_s, a_t, grad, false);
            }
        } else {
            backend.for_each(n, normalize_rows_vjp_kernel<T>{as_const(a_s), norm_s, as_const(a_t), a_t, normalize_eps<T>});
            adaptive_pool_backward(backend, as_const(dense_map(a_t.data, n, student.c, m.h, m.w)), grad, false);
        }
    }
};

}  // namespace detail

template <class Real>
struct feature_method<basic_at_options<Real>> {
    using options = basic_at_options<Real>;
    static constexpr const char* name = "at";
    static constexpr feature_form form = feature_form::pair;

    template <class Backend, class T, class Space>
    static status check_inputs(const Backend&, const options& opts, const feature_args<T, Space>& a) noexcept {
        if (status s = detail::check_parameter(name, "p", opts.p, Real(1)); !s) return s;
        return detail::check_map_pair(name, a);
    }
    template <class T, class Space>
    static knowledge_shape knowledge(const options&, const feature_args<T, Space>& a, int) noexcept {
        return {2, {a.student.extent(0), detail::normalized_map_loss::length(detail::normalized_map_kind::attention, a.student, a.teacher)}};
    }
    template <class T, class Space>
    static std::size_t workspace_bytes(const options&, const feature_args<T, Space>& a) noexcept {
        return detail::normalized_map_loss::workspace_values(detail::normalized_map_kind::attention, a.student, a.teacher) * sizeof(T);
    }
    template <class Backend, class T, class Space>
    static void run(const Backend& backend, const options& opts, const feature_args<T, Space>& a,
                    const feature_outputs<T, Space>& o, workspace ws) {
        detail::normalized_map_loss::run(backend, detail::normalized_map_kind::attention, static_cast<T>(opts.p), T(2), a, o, ws);
    }
};

/// at(student, teacher[, opts]): attention-transfer loss and d loss / d student.
inline constexpr feature_loss_fn<basic_at_options> at{};

}  // namespace distill
