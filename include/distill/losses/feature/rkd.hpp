// distill/losses/feature/rkd.hpp: relational knowledge distillation (distance and angle terms).
//
// W. Park, D. Kim, Y. Lu, M. Cho, "Relational Knowledge Distillation", CVPR 2019 (reference code:
// RepDistiller RKD.py, from the authors' lenscloth/RKD). Student and teacher need only the same N
// (N >= 2): each batch is compared through the structure of its rows e_i (any rank, flattened).
//
//   D_ij = sqrt(max(||e_j - e_i||^2, 1e-12)) (i != j), D_ii = 0
//   mu = sum_{i != j} D_ij / (N (N - 1)),  psi_D = D / mu            (the gradient flows through mu)
//   psi_A[i, j, k] = <u_ij, u_ik>,  u_ij = normalize(e_j - e_i)
//   L = w_d (1/N^2) sum_{i,j} h(psi_D^s - psi_D^t) + w_a (1/N^3) sum_{i,j,k} h(psi_A^s - psi_A^t)
//   h = smooth-L1 with beta 1: 0.5 d^2 if |d| < 1, else |d| - 0.5;  h'(d) = d or sign(d).
//
// Gradient, distance term: with g_ij = (w_d/N^2) h'(psi_ij^s - psi_ij^t) and
// c = sum_ij g_ij psi_ij^s / (N (N - 1)), dL/dD_ij = (g_ij - c) / mu^s (i != j), then the VJP of the
// pairwise distances (knowledge/distance.hpp): dE_a = sum_b W_ab (e_a - e_b),
// W_ab = 2 (g_ab - c) / (mu^s D_ab) where the clamp passes the gradient. Angle term, per vertex i:
// G_i = (w_a/N^3) h'(A_i^s - A_i^t), dU_i = (G_i + G_i^T) U_i, normalize's VJP, then the
// differences' VJP (dE_j += du_ij, dE_i -= sum_j du_ij).
//
// Duplicate rows: the squared distances and the differences are formed directly from e_j - e_i
// (not from Gram matrices), so a duplicate pair has exactly D = 1e-6 (no gradient) and u = 0, whose
// gradient follows normalize's 1/eps branch: large (about 1e11 in the cases) but finite.
//
// Cost (Ds, Dt the student's and teacher's widths):
//   distance term: O(N^2 (Ds + Dt)) pair kernels (forward) + O(N^2 Ds) (gradient);
//   angle term: per vertex i, the N x D normalised differences, the N x N slices A_i^s = U_i^s U_i^s^T
//   and A_i^t and the gradient GEMM (G_i + G_i^T) U_i^s: N^3 (2 Ds + Dt) multiply-adds with the
//   gradient, N^3 (Ds + Dt) without (on the CPU the slices are Eigen symmetric rank-D updates, half
//   of that: N^3 (1.5 Ds + 0.5 Dt) with the gradient), plus O(N^2 (Ds + Dt)) element work; nothing
//   of size N x N x D or N^3 is stored. A weight of 0 skips its term (w_a = 0 leaves O(N^2 D)).
//   Workspace: 2 N^2 + 3 N values, plus N (Ds + max(Ds, Dt)) when w_a > 0 (one vertex's differences
//   of each network, the student's gradient reusing the teacher's block).
// Knowledge outputs: psi_D^s and psi_D^t (N x N).
#pragma once

#include <cstddef>

#include "../../knowledge/distance.hpp"
#include "common.hpp"
#include "driver.hpp"

namespace distill {

template <class Real>
struct basic_rkd_options {
    Real distance_weight = Real(25);  ///< w_d >= 0 (RepDistiller's default; the paper's metric-learning value is 1)
    Real angle_weight = Real(50);     ///< w_a >= 0 (RepDistiller's default; the paper's value is 2)
};
using rkd_options = basic_rkd_options<double>;
using rkd_float_options = basic_rkd_options<float>;

namespace detail {

/// Smooth-L1 with beta 1 and its derivative (torch's branches: |d| < 1 is quadratic).
template <class T>
DISTILL_HD inline T rkd_smooth_l1(T d) noexcept {
    const T a = d < T(0) ? -d : d;
    return a < T(1) ? T(0.5) * d * d : a - T(0.5);
}
template <class T>
DISTILL_HD inline T rkd_smooth_l1_derivative(T d) noexcept {
    const T a = d < T(0) ? -d : d;
    if (a < T(1)) return d;
    return d > T(0) ? T(1) : T(-1);
}

/// h(psi^s - psi^t) at one entry of the distance structures (psi = D / mu from squared distances).
template <class T>
struct rkd_distance_loss_kernel {
    matrix_ref<const T> sq_s, sq_t;
    T mu_s, mu_t;
    DISTILL_HD T operator()(index_t idx) const noexcept {
        const index_t i = idx / sq_s.cols, j = idx % sq_s.cols;
        if (i == j) return T(0);
        return rkd_smooth_l1(pair_clamped_distance(entry(sq_s, i, j)) / mu_s - pair_clamped_distance(entry(sq_t, i, j)) / mu_t);
    }
};

/// g_ij psi^s_ij, g_ij = scale h'(psi^s - psi^t): the sum gives the share of mu's gradient.
template <class T>
struct rkd_distance_centre_kernel {
    matrix_ref<const T> sq_s, sq_t;
    T mu_s, mu_t, scale;
    DISTILL_HD T operator()(index_t idx) const noexcept {
        const index_t i = idx / sq_s.cols, j = idx % sq_s.cols;
        if (i == j) return T(0);
        const T psi_s = pair_clamped_distance(entry(sq_s, i, j)) / mu_s;
        return scale * rkd_smooth_l1_derivative(psi_s - pair_clamped_distance(entry(sq_t, i, j)) / mu_t) * psi_s;
    }
};

/// W_ab = 2 (g_ab - c) / (mu^s D_ab) where the clamp passes the gradient (else 0), written over the
/// teacher's squared distances (each entry reads only itself; the structures are exactly symmetric).
template <class T>
struct rkd_distance_weight_kernel {
    matrix_ref<const T> sq_s;
    matrix_ref<T> sq_t_then_weight;
    T mu_s, mu_t, scale, centre;
    DISTILL_HD void operator()(index_t idx) const noexcept {
        const index_t i = idx / sq_s.cols, j = idx % sq_s.cols;
        T& out = entry(sq_t_then_weight, i, j);
        const T sq = entry(sq_s, i, j);
        if (i == j || !(sq >= distance_squared_floor<T>)) {
            out = T(0);
            return;
        }
        const T d_s = detail::sqrt(sq);
        const T g = scale * rkd_smooth_l1_derivative(d_s / mu_s - pair_clamped_distance(out) / mu_t);
        out = T(2) * (g - centre) / (mu_s * d_s);
    }
};

/// Row j of one vertex's slices: loss_rows[j] += sum_k h(A^s_jk - A^t_jk), and (with a gradient)
/// A^s_jk <- scale h'(A^s_jk - A^t_jk).
template <class T>
struct rkd_angle_rows_kernel {
    matrix_ref<T> student_then_grad;
    matrix_ref<const T> teacher;
    T* loss_rows;
    T scale;
    bool want_grad;
    DISTILL_HD void operator()(index_t j) const noexcept {
        T sum = 0;
        if (student_then_grad.col_stride == 1 && teacher.col_stride == 1) {
            // Contiguous rows (the workspace slices): branch-free selects the compiler vectorises.
            T* a = student_then_grad.row(j);
            const T* b = teacher.row(j);
            using V = row_value_t<T>;  // SIMD packs for float on the host
            constexpr int w = lanes_v<V>;
            V partial(T(0));
            index_t k = 0;
            for (; k + w <= teacher.cols; k += w) {
                const V d = load_lanes<V>(a + k, 1, w, T(0)) - load_lanes<V>(b + k, 1, w, T(0));
                const V abs_d = select(d < V(T(0)), V(-d), d);
                const auto inner = abs_d < V(T(1));
                partial += select(inner, V(V(T(0.5)) * d * d), V(abs_d - V(T(0.5))));
                if (want_grad)
                    store_lanes<V>(a + k, 1, w,
                                   V(V(scale) * select(inner, d, select(d > V(T(0)), V(T(1)), V(T(-1))))));
            }
            sum = lane_sum(partial);
            for (; k < teacher.cols; ++k) {
                const T d = a[k] - b[k];
                const T abs_d = d < T(0) ? -d : d;
                const bool inner = abs_d < T(1);
                sum += inner ? T(0.5) * d * d : abs_d - T(0.5);
                if (want_grad) a[k] = scale * (inner ? d : (d > T(0) ? T(1) : T(-1)));
            }
            loss_rows[j] += sum;
            return;
        }
        for (index_t k = 0; k < teacher.cols; ++k) {
            T& a = entry(student_then_grad, j, k);
            const T d = a - entry(teacher, j, k);
            sum += rkd_smooth_l1(d);
            if (want_grad) a = scale * rkd_smooth_l1_derivative(d);
        }
        loss_rows[j] += sum;
    }
};

template <class T>
struct rkd_vector_entry_kernel {
    const T* v;
    DISTILL_HD T operator()(index_t i) const noexcept { return v[i]; }
};
template <class T>
struct rkd_vector_fill_kernel {
    T* v;
    DISTILL_HD void operator()(index_t i) const noexcept { v[i] = T(0); }
};

}  // namespace detail

template <class Real>
struct feature_method<basic_rkd_options<Real>> {
    using options = basic_rkd_options<Real>;
    static constexpr const char* name = "rkd";
    static constexpr feature_form form = feature_form::pair;

    template <class Backend, class T, class Space>
    static status check_inputs(const Backend&, const options& opts, const feature_args<T, Space>& a) noexcept {
        if (status s = detail::check_parameter(name, "distance_weight", opts.distance_weight, Real(0)); !s) return s;
        if (status s = detail::check_parameter(name, "angle_weight", opts.angle_weight, Real(0)); !s) return s;
        if (status s = detail::check_feature_pair(name, a, 2, max_dynamic_rank); !s) return s;
        if (a.student.extent(0) < 2)
            return detail::method_error(errc::shape_mismatch, name, "student").text("student has shape ")
                .shape(a.student.extents(), a.student.rank())
                .text(": rkd needs N >= 2 (the mean distance of one sample is 0/0)");
        detail::matrix_ref<const T> f;
        if (status s = detail::flatten_input(name, "student", a.student, f); !s) return s;
        return detail::flatten_input(name, "teacher", a.teacher, f);
    }
    template <class T, class Space>
    static knowledge_shape knowledge(const options&, const feature_args<T, Space>& a, int) noexcept {
        return {2, {a.student.extent(0), a.student.extent(0)}};
    }
    template <class T, class Space>
    static std::size_t workspace_bytes(const options& opts, const feature_args<T, Space>& a) noexcept {
        detail::matrix_ref<const T> fs, ft;
        detail::flatten_rows(a.student, fs);
        detail::flatten_rows(a.teacher, ft);
        const auto n = static_cast<std::size_t>(fs.rows);
        std::size_t values = 2 * n * n + 3 * n;
        if (opts.angle_weight != Real(0)) {
            const auto ds = static_cast<std::size_t>(fs.cols), dt = static_cast<std::size_t>(ft.cols);
            values += n * (ds + (ds > dt ? ds : dt));
        }
        return values * sizeof(T);
    }

    template <class Backend, class T, class Space>
    static void run(const Backend& backend, const options& opts, const feature_args<T, Space>& a,
                    const feature_outputs<T, Space>& o, workspace ws) {
        detail::matrix_ref<const T> fs, ft;
        detail::flatten_rows(a.student, fs);
        detail::flatten_rows(a.teacher, ft);
        const index_t n = fs.rows, ds = fs.cols, dt = ft.cols;
        const T distance_weight = T(opts.distance_weight), angle_weight = T(opts.angle_weight);
        const bool want_grad = o.grad_student.bound();
        detail::matrix_ref<T> grad;
        if (want_grad) detail::flatten_rows(o.grad_student, grad);

        T* base = static_cast<T*>(ws.data);
        const auto first = detail::dense_matrix(base, n, n), second = detail::dense_matrix(base + n * n, n, n);
        T* norm_s = base + 2 * n * n;
        T* norm_t = norm_s + n;
        T* loss_rows = norm_t + n;

        // Distance structures (the squared distances of each network, exact for duplicates).
        backend.for_each(n * n, detail::pair_squared_distance_kernel<T>{fs, first});
        backend.for_each(n * n, detail::pair_squared_distance_kernel<T>{ft, second});
        const T pairs = T(n) * T(n - 1);
        const T mu_s = detail::sum_over<T>(backend, n * n, detail::distance_entry_kernel<T>{detail::as_const(first)}) / pairs;
        const T mu_t = detail::sum_over<T>(backend, n * n, detail::distance_entry_kernel<T>{detail::as_const(second)}) / pairs;
        if (o.knowledge_student.bound())
            backend.for_each(n * n, detail::distance_from_squared_kernel<T>{detail::as_const(first),
                                                                           detail::to_matrix_ref(o.knowledge_student), T(1) / mu_s});
        if (o.knowledge_teacher.bound())
            backend.for_each(n * n, detail::distance_from_squared_kernel<T>{detail::as_const(second),
                                                                           detail::to_matrix_ref(o.knowledge_teacher), T(1) / mu_t});

        T loss = 0;
        if (distance_weight != T(0)) {
            const T scale = distance_weight / (T(n) * T(n));
            loss = scale * detail::sum_over<T>(backend, n * n,
                                               detail::rkd_distance_loss_kernel<T>{detail::as_const(first), detail::as_const(second),
                                                                                   mu_s, mu_t});
            if (want_grad) {
                const T centre = detail::sum_over<T>(backend, n * n,
                                                     detail::rkd_distance_centre_kernel<T>{detail::as_const(first),
                                                                                           detail::as_const(second), mu_s,
                                                                                           mu_t, scale}) /
                                 pairs;
                backend.for_each(n * n, detail::rkd_distance_weight_kernel<T>{detail::as_const(first), second, mu_s, mu_t,
                                                                             scale, centre});
                backend.for_each(n, detail::pair_difference_vjp_kernel<T>{fs, detail::as_const(second), grad, false});
            }
        } else if (want_grad) {
            backend.for_each(n * ds, detail::relation_fill_kernel<T>{grad, T(0)});
        }

        if (angle_weight != T(0)) {
            // One vertex at a time: its normalised differences (N x D), the N x N slices in the two
            // matrices of the distance term (no longer needed), the student's gradient GEMM into
            // the block that held the teacher's differences.
            T* directions = loss_rows + n;
            const auto u_s = detail::dense_matrix(directions, n, ds);
            const auto u_t = detail::dense_matrix(directions + n * ds, n, dt);
            const auto du_s = detail::dense_matrix(directions + n * ds, n, ds);
            const T scale = angle_weight / (T(n) * T(n) * T(n));
            backend.for_each(n, detail::rkd_vector_fill_kernel<T>{loss_rows});
            for (index_t i = 0; i < n; ++i) {
                detail::angle_vertex_forward(backend, fs, i, u_s, norm_s, first);
                detail::angle_vertex_forward(backend, ft, i, u_t, norm_t, second);
                backend.for_each(n, detail::rkd_angle_rows_kernel<T>{first, detail::as_const(second), loss_rows, scale, want_grad});
                if (want_grad) {
                    detail::symmetrize(backend, first);
                    detail::angle_vertex_backward(backend, i, detail::as_const(u_s), norm_s, detail::as_const(first), du_s, grad);
                }
            }
            loss += scale * detail::sum_over<T>(backend, n, detail::rkd_vector_entry_kernel<T>{loss_rows});
        }
        detail::store(backend, o.loss.data(), loss);
    }
};

/// rkd(student, teacher[, opts]): relational KD (distance and angle) and d loss / d student.
inline constexpr feature_loss_fn<basic_rkd_options> rkd{};

}  // namespace distill
