// distill/losses/feature/cc.hpp: correlation congruence (the paper's Taylor-expanded Gaussian kernel).
//
// B. Peng, X. Jin, J. Liu, D. Li, Y. Wu, Y. Liu, S. Zhou, Z. Zhang, "Correlation Congruence for
// Knowledge Distillation", ICCV 2019 (reference code: Knowledge-Distillation-Zoo cc.py, which
// follows the paper; RepDistiller's `Correlation` is a different loss, see cc_repdistiller.hpp).
// Student and teacher need only the same N (rows of any rank, flattened); the paper applies its
// FC embedding before this loss.
//
//   u_n = normalize(f_n),  S = U U^T (the cosine matrix)
//   C = sum_{p=0}^{P} c_p S^{op p},  c_p = e^{-2 gamma} (2 gamma)^p / p!
//   L = (1/N^2) ||C^s - C^t||_F^2
//
// Gradient: dL/dS^s_ij = (2/N^2)(C^s_ij - C^t_ij) sum_{p>=1} p c_p (S^s_ij)^{p-1}, then the VJP of
// the cosine matrix (knowledge/kernels.hpp): dU = (dS + dS^T) U and normalize's VJP (its 1/eps
// branch for a zero row: a large but finite gradient).
//
// Cost: three N x N x D GEMMs (student and teacher Gram, the gradient product; Eigen on the CPU),
// O(N^2 P) for the series (which stops once c_p underflows to 0, so any order costs at most a few
// thousand terms), workspace 2 N^2 + 2 N values; nothing of size N x D is copied.
// N = 1: the loss is 0 unless one side is a zero row. P = 0: C is constant, loss and gradient 0.
// Knowledge outputs: C^s and C^t (N x N).
#pragma once

#include <cmath>
#include <cstddef>

#include "../../knowledge/kernels.hpp"
#include "common.hpp"
#include "driver.hpp"

namespace distill {

template <class Real>
struct basic_cc_options {
    Real gamma = Real(0.4);  ///< > 0: the Gaussian kernel's exp(-gamma ||u_i - u_j||^2)
    /// P, the order of the Taylor expansion: a finite integer >= 0. A real so that a non-integer
    /// value (1.5, NaN) read from a configuration is reported by the check step, not truncated.
    Real p_order = Real(2);
};
using cc_options = basic_cc_options<double>;
using cc_float_options = basic_cc_options<float>;

namespace detail {

/// (C^s - C^t)^2 at one entry, from the two cosine matrices.
template <class T>
struct cc_difference_kernel {
    const T* student;
    const T* teacher;
    taylor_series<T> series;
    DISTILL_HD T operator()(index_t i) const noexcept {
        const T d = series.value(student[i]) - series.value(teacher[i]);
        return d * d;
    }
};

/// dL/dS^s = scale (C^s - C^t) C'(S^s), written over S^t.
template <class T>
struct cc_upstream_kernel {
    const T* student;
    T* teacher_then_grad;
    taylor_series<T> series;
    T scale;
    DISTILL_HD void operator()(index_t i) const noexcept {
        const T s = student[i];
        teacher_then_grad[i] = scale * (series.value(s) - series.value(teacher_then_grad[i])) * series.derivative(s);
    }
};

/// The order as an index (valid options only). Past ~1e15 every further term is exactly 0 anyway
/// (the series stops when c_p underflows), so larger orders are capped there.
template <class Real>
index_t cc_order(Real p_order) noexcept {
    return p_order > Real(1e15) ? index_t(1000000000000000) : static_cast<index_t>(p_order);
}

}  // namespace detail

template <class Real>
struct feature_method<basic_cc_options<Real>> {
    using options = basic_cc_options<Real>;
    static constexpr const char* name = "cc";
    static constexpr feature_form form = feature_form::pair;

    template <class Backend, class T, class Space>
    static status check_inputs(const Backend&, const options& opts, const feature_args<T, Space>& a) noexcept {
        if (status s = detail::check_parameter(name, "gamma", opts.gamma, Real(0), true); !s) return s;
        if (status s = detail::check_parameter(name, "p_order", opts.p_order, Real(0)); !s) return s;
        if (std::floor(opts.p_order) != opts.p_order)
            return detail::method_error(errc::invalid_parameter, name, "p_order").text("p_order = ")
                .real(opts.p_order).text(" must be an integer");
        return detail::check_flattened_pair(name, a);
    }
    template <class T, class Space>
    static knowledge_shape knowledge(const options&, const feature_args<T, Space>& a, int) noexcept {
        return {2, {a.student.extent(0), a.student.extent(0)}};
    }
    template <class T, class Space>
    static std::size_t workspace_bytes(const options&, const feature_args<T, Space>& a) noexcept {
        const auto n = static_cast<std::size_t>(a.student.extent(0));
        return (2 * n * n + 2 * n) * sizeof(T);
    }

    template <class Backend, class T, class Space>
    static void run(const Backend& backend, const options& opts, const feature_args<T, Space>& a,
                    const feature_outputs<T, Space>& o, workspace ws) {
        detail::matrix_ref<const T> fs, ft;
        detail::flatten_rows(a.student, fs);
        detail::flatten_rows(a.teacher, ft);
        const index_t n = fs.rows;
        const auto series = detail::make_taylor_series(T(opts.gamma), detail::cc_order(opts.p_order));
        T* base = static_cast<T*>(ws.data);
        const auto ss = detail::dense_matrix(base, n, n), st = detail::dense_matrix(base + n * n, n, n);
        T* norm_s = base + 2 * n * n;
        T* norm_t = norm_s + n;
        detail::cosine_matrix_forward(backend, fs, ss, norm_s);
        detail::cosine_matrix_forward(backend, ft, st, norm_t);
        if (o.knowledge_student.bound())
            backend.for_each(n * n, detail::taylor_value_kernel<T>{detail::as_const(ss), detail::to_matrix_ref(o.knowledge_student), series});
        if (o.knowledge_teacher.bound())
            backend.for_each(n * n, detail::taylor_value_kernel<T>{detail::as_const(st), detail::to_matrix_ref(o.knowledge_teacher), series});

        const T inv_n2 = T(1) / (T(n) * T(n));
        const T loss = inv_n2 * detail::sum_over<T>(backend, n * n, detail::cc_difference_kernel<T>{ss.data, st.data, series});
        detail::store(backend, o.loss.data(), loss);
        if (o.grad_student.bound()) {
            backend.for_each(n * n, detail::cc_upstream_kernel<T>{ss.data, st.data, series, T(2) * inv_n2});
            detail::matrix_ref<T> grad;
            detail::flatten_rows(o.grad_student, grad);
            detail::cosine_matrix_backward(backend, fs, norm_s, st, grad);
        }
    }
};

/// cc(student, teacher[, opts]): correlation congruence loss and d loss / d student.
inline constexpr feature_loss_fn<basic_cc_options> cc{};

}  // namespace distill
