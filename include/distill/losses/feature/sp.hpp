// distill/losses/feature/sp.hpp: similarity-preserving knowledge distillation.
//
// F. Tung, G. Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019 (reference code:
// RepDistiller SP.py). Student and teacher need not have the same width: each batch is
// compared through its N x N similarity structure.
//
//   G = F F^T,  S_i = normalize(G_i)  (rows flattened; normalize(v) = v / max(||v||, 1e-12))
//   L = (1/N^2) ||S^t - S^s||_F^2
//   dL/dS^s = (2/N^2)(S^s - S^t), then the VJP of the row normalisation and dF = (dG + dG^T) F.
//
// Cost: three N x N x D GEMMs (student and teacher Gram, the gradient product; Eigen on the CPU),
// O(N^2) elementwise work, workspace 2 N^2 + 2 N values; nothing of size N x D is copied.
// N = 1: S = [1] (or [0] for a zero row), so the loss is 0. A zero row gets the large but finite
// gradient of the 1/eps branch of normalize (no NaN).
// Knowledge outputs: S^s and S^t (N x N).
#pragma once

#include <cstddef>

#include "../../knowledge/primitives.hpp"
#include "../../knowledge/similarity.hpp"
#include "common.hpp"
#include "driver.hpp"

namespace distill {

/// sp has no parameters; Real only selects the options' family (sp_options / sp_float_options).
template <class Real>
struct basic_sp_options {};
using sp_options = basic_sp_options<double>;
using sp_float_options = basic_sp_options<float>;

namespace detail {

/// Row i: stores sum_j (S^s_ij - S^t_ij)^2 in row_loss[i] and, when the gradient is wanted, writes d loss / d G^s_i
/// over S^t_i: the upstream (2/N^2)(S^s_i - S^t_i) through the row normalisation's VJP. One row
/// in L1 for three passes.
template <class T>
struct sp_row_kernel {
    matrix_ref<const T> student;  ///< S^s
    matrix_ref<T> teacher;        ///< S^t, then dG^s
    const T* student_norm;
    T* row_loss;
    T upstream_scale;  ///< 2 / N^2
    bool want_grad;
    DISTILL_HD void operator()(index_t i) const noexcept {
        const T* s = student.row(i);  // rows of the dense workspace matrices: contiguous
        T* t = teacher.row(i);
        const T sum = contiguous_squared_distance(s, t, student.cols);  // SIMD packs for float
        if (want_grad) contiguous_scaled_residual(t, s, t, T(1), upstream_scale, student.cols);
        if (want_grad)
            normalize_rows_vjp_kernel<T>{student, student_norm, as_const(teacher), teacher, normalize_eps<T>}(i);
        row_loss[i] = sum;
    }
};

}  // namespace detail

template <class Real>
struct feature_method<basic_sp_options<Real>> {
    using options = basic_sp_options<Real>;
    static constexpr const char* name = "sp";
    static constexpr feature_form form = feature_form::pair;

    template <class Backend, class T, class Space>
    static status check_inputs(const Backend&, const options&, const feature_args<T, Space>& a) noexcept {
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
    static void run(const Backend& backend, const options&, const feature_args<T, Space>& a,
                    const feature_outputs<T, Space>& o, workspace ws) {
        detail::matrix_ref<const T> fs, ft;
        detail::flatten_rows(a.student, fs);
        detail::flatten_rows(a.teacher, ft);
        const index_t n = fs.rows;
        T* base = static_cast<T*>(ws.data);
        const auto ss = detail::dense_matrix(base, n, n), st = detail::dense_matrix(base + n * n, n, n);
        T* norm_s = base + 2 * n * n;
        T* norm_t = norm_s + n;
        detail::similarity_forward(backend, fs, ss, norm_s);
        detail::similarity_forward(backend, ft, st, norm_t);
        if (o.knowledge_student.bound()) detail::copy(backend, detail::as_const(ss), detail::to_matrix_ref(o.knowledge_student));
        if (o.knowledge_teacher.bound()) detail::copy(backend, detail::as_const(st), detail::to_matrix_ref(o.knowledge_teacher));

        const T inv_n2 = T(1) / (T(n) * T(n));
        const bool want_grad = o.grad_student.bound();
        // The teacher's norms are not needed any more: their slots take the row losses (a kernel
        // with side effects runs under for_each, never inside a reduction).
        T* row_loss = norm_t;
        backend.for_each(n, detail::sp_row_kernel<T>{detail::as_const(ss), st, norm_s, row_loss, T(2) * inv_n2, want_grad});
        const T sum = detail::sum_over<T>(backend, n, detail::element_of<T>{{row_loss, n, 1}});
        detail::store(backend, o.loss.data(), inv_n2 * sum);
        if (want_grad) {
            detail::matrix_ref<T> grad;
            detail::flatten_rows(o.grad_student, grad);
            detail::symmetrize(backend, st);
            detail::gemm(backend, T(1), detail::as_const(st), fs, T(0), grad);
        }
    }
};

/// sp(student, teacher[, opts]): similarity-preserving loss and d loss / d student.
inline constexpr feature_loss_fn<basic_sp_options> sp{};

}  // namespace distill
