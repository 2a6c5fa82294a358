// distill/losses/feature/pkt.hpp: probabilistic knowledge transfer.
//
// N. Passalis, A. Tefas, "Learning Deep Representations with Probabilistic Knowledge Transfer",
// ECCV 2018 (reference code: RepDistiller PKT.py, the same as the authors' passalis/probabilistic_kt).
// Student and teacher need only the same N: each batch is compared through the conditional
// probabilities of its cosine kernel (rows of any rank, flattened).
//
//   u_n = f_n / (||f_n|| + eps)  (eps added, not a max),  K = (U U^T + 1) / 2,  P_ij = K_ij / sum_k K_ik
//   L = (1/N^2) sum_{i,j} P^t_ij log((P^t_ij + eps) / (P^s_ij + eps))      (the i = j terms included)
//
// Gradient: dL/dP^s_ij = -(1/N^2) P^t_ij / (P^s_ij + eps), then the VJP of P
// (knowledge/kernels.hpp): dK_ij = (a_ij - sum_k a_ik P_ik) / r_i, dU = (dK/2 + dK^T/2) U, and the
// row scaling's VJP. The norm's gradient is taken as 0 at 0, so an all-zero student row gets the
// finite gradient upstream / eps (RepDistiller's sqrt gives NaN there).
//
// Cost: three N x N x D GEMMs (student and teacher Gram, the gradient product; Eigen on the CPU)
// and O(N (Ds + Dt) + N^2) element work; workspace 2 N^2 + 4 N values; nothing of size N x D is
// copied. N = 1: P = [1], so the loss is 0.
// Knowledge outputs: P^s and P^t (N x N).
#pragma once

#include <cstddef>

#include "../../knowledge/kernels.hpp"
#include "common.hpp"
#include "driver.hpp"

namespace distill {

template <class Real>
struct basic_pkt_options {
    Real eps = Real(1e-7);  ///< > 0: added to the row norms and to both probabilities in the log
};
using pkt_options = basic_pkt_options<double>;
using pkt_float_options = basic_pkt_options<float>;

namespace detail {

/// P^t log((P^t + eps) / (P^s + eps)) at one entry.
template <class T>
struct pkt_divergence_kernel {
    const T* student;
    const T* teacher;
    T eps;
    DISTILL_HD T operator()(index_t i) const noexcept {
        const T pt = teacher[i];
        return pt * detail::log((pt + eps) / (student[i] + eps));
    }
};

/// dL/dP^s = scale P^t / (P^s + eps), written over P^t.
template <class T>
struct pkt_upstream_kernel {
    const T* student;
    T* teacher_then_grad;
    T eps, scale;
    DISTILL_HD void operator()(index_t i) const noexcept {
        teacher_then_grad[i] = scale * teacher_then_grad[i] / (student[i] + eps);
    }
};

}  // namespace detail

template <class Real>
struct feature_method<basic_pkt_options<Real>> {
    using options = basic_pkt_options<Real>;
    static constexpr const char* name = "pkt";
    static constexpr feature_form form = feature_form::pair;

    template <class Backend, class T, class Space>
    static status check_inputs(const Backend&, const options& opts, const feature_args<T, Space>& a) noexcept {
        if (status s = detail::check_parameter(name, "eps", opts.eps, Real(0), true); !s) return s;
        return detail::check_flattened_pair(name, a);
    }
    template <class T, class Space>
    static knowledge_shape knowledge(const options&, const feature_args<T, Space>& a, int) noexcept {
        return {2, {a.student.extent(0), a.student.extent(0)}};
    }
    template <class T, class Space>
    static std::size_t workspace_bytes(const options&, const feature_args<T, Space>& a) noexcept {
        const auto n = static_cast<std::size_t>(a.student.extent(0));
        return (2 * n * n + 4 * n) * sizeof(T);
    }

    template <class Backend, class T, class Space>
    static void run(const Backend& backend, const options& opts, const feature_args<T, Space>& a,
                    const feature_outputs<T, Space>& o, workspace ws) {
        detail::matrix_ref<const T> fs, ft;
        detail::flatten_rows(a.student, fs);
        detail::flatten_rows(a.teacher, ft);
        const index_t n = fs.rows;
        const T eps = T(opts.eps);
        T* base = static_cast<T*>(ws.data);
        const auto ps = detail::dense_matrix(base, n, n), pt = detail::dense_matrix(base + n * n, n, n);
        T* norm_s = base + 2 * n * n;
        T* norm_t = norm_s + n;
        T* row_sum_s = norm_t + n;
        T* row_sum_t = row_sum_s + n;
        detail::cosine_probabilities_forward(backend, fs, ps, norm_s, row_sum_s, eps);
        detail::cosine_probabilities_forward(backend, ft, pt, norm_t, row_sum_t, eps);
        if (o.knowledge_student.bound()) detail::copy(backend, detail::as_const(ps), detail::to_matrix_ref(o.knowledge_student));
        if (o.knowledge_teacher.bound()) detail::copy(backend, detail::as_const(pt), detail::to_matrix_ref(o.knowledge_teacher));

        const T inv_n2 = T(1) / (T(n) * T(n));
        const T loss = inv_n2 * detail::sum_over<T>(backend, n * n, detail::pkt_divergence_kernel<T>{ps.data, pt.data, eps});
        detail::store(backend, o.loss.data(), loss);
        if (o.grad_student.bound()) {
            backend.for_each(n * n, detail::pkt_upstream_kernel<T>{ps.data, pt.data, eps, -inv_n2});
            detail::matrix_ref<T> grad;
            detail::flatten_rows(o.grad_student, grad);
            detail::cosine_probabilities_backward(backend, fs, detail::as_const(ps), norm_s, row_sum_s, eps, detail::as_const(pt),
                                                  pt, grad);
        }
    }
};

/// pkt(student, teacher[, opts]): probabilistic knowledge transfer loss and d loss / d student.
inline constexpr feature_loss_fn<basic_pkt_options> pkt{};

}  // namespace distill
