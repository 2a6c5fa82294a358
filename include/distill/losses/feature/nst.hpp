// distill/losses/feature/nst.hpp: neuron selectivity transfer (polynomial kernel, d = 2, c = 0).
//
// Z. Huang, N. Wang, "Like What You Like: Knowledge Distill via Neuron Selectivity Transfer",
// arXiv 1707.01219, 2017 (reference code: RepDistiller NST.py). Student and teacher are
// N x C x H x W maps (channel counts Cs, Ct may differ); when H x W differ, the map at least as
// large in both is adaptive-average-pooled to the other's size first (taller but narrower: shape
// error). Per sample the channels' K = H' W' vectors are normalised, x_i = normalize(F^s_{n,i,:}),
// y_j = normalize(F^t_{n,j,:}), and with k(a, b) = (a . b)^2
//
//   L = (1/N) sum_n [ (1/Ct^2) sum_{j,j'} k(y_j, y_j') + (1/Cs^2) sum_{i,i'} k(x_i, x_i')
//                     - (2/(Cs Ct)) sum_{i,j} k(x_i, y_j) ]
//
// (a squared MMD; the teacher-teacher term is a constant but part of the value). Per sample, with
// X (Cs x K) and Y (Ct x K) the normalised rows, the sums are Gram matrices:
//   sum k(x, x') = ||X X^T||_F^2,  sum k(x, y) = ||X Y^T||_F^2,  sum k(y, y') = ||Y Y^T||_F^2,
// and equivalently L_n = ||D_n||_F^2 with D_n = X^T X / Cs - Y^T Y / Ct (K x K). Gradient:
//   dL/dX_n = (4/N) [ (X X^T) X / Cs^2 - (X Y^T) Y / (Cs Ct) ] = (4/(N Cs)) X D_n,
// then the VJP of the row normalisation and of the pooling when the student was pooled.
//
// Cost: nothing of size N x C x C x K is formed. Each call takes the cheaper of two batched-GEMM
// forms (Eigen per sample on the CPU):
//   channel Grams: O(N K (2 Cs^2 + 2 Cs Ct + Ct^2)) time, N (max(Cs, Ct)^2 + Cs Ct) values;
//   spatial Gram D: O(N K^2 (2 Cs + Ct)) time, N K^2 values (no cancellation: the value is a
//   sum of squares).
// Plus N K (2 Cs + Ct) + N (Cs + Ct) values for the normalised maps, their gradient and norms.
// A zero channel gets the large but finite gradient of normalize's 1/eps branch (no NaN).
// Knowledge outputs: none.
#pragma once

#include <cstddef>

#include "../../knowledge/spatial.hpp"
#include "common.hpp"
#include "driver.hpp"

namespace distill {

/// nst has no parameters; Real only selects the options' family (nst_options / nst_float_options).
template <class Real>
struct basic_nst_options {};
using nst_options = basic_nst_options<double>;
using nst_float_options = basic_nst_options<float>;

namespace detail {

/// The shapes of a checked nst call and the form it runs in.
struct nst_plan {
    spatial_match match;
    index_t n = 0, cs = 0, ct = 0, k = 0;
    bool spatial_gram = false;  ///< the K x K form (cheaper when K is small next to the channels)

    template <class V>
    static nst_plan of(const V& student, const V& teacher) noexcept {
        nst_plan p;
        match_spatial(student.extent(2), student.extent(3), teacher.extent(2), teacher.extent(3), p.match);
        p.n = student.extent(0);
        p.cs = student.extent(1);
        p.ct = teacher.extent(1);
        p.k = p.match.h * p.match.w;
        // Multiply-adds of the forward and the gradient in each form (per sample, over K).
        const index_t channel = 2 * p.cs * p.cs + 2 * p.cs * p.ct + p.ct * p.ct;
        const index_t spatial = p.k * (2 * p.cs + p.ct);
        p.spatial_gram = spatial < channel;
        return p;
    }
    std::size_t gram_values() const noexcept {
        const auto c = static_cast<std::size_t>(cs > ct ? cs : ct);
        if (spatial_gram) return static_cast<std::size_t>(n) * static_cast<std::size_t>(k) * static_cast<std::size_t>(k);
        return static_cast<std::size_t>(n) * (c * c + static_cast<std::size_t>(cs) * static_cast<std::size_t>(ct));
    }
    std::size_t workspace_values() const noexcept {
        const auto nn = static_cast<std::size_t>(n), kk = static_cast<std::size_t>(k);
        return nn * kk * static_cast<std::size_t>(2 * cs + ct) + nn * static_cast<std::size_t>(cs + ct) + gram_values();
    }
};

/// The squares of a dense block, summed (the squared Frobenius norms).
template <class T>
struct sum_of_squares_kernel {
    const T* values;
    DISTILL_HD T operator()(index_t i) const noexcept { return values[i] * values[i]; }
};

/// The N x C x K maps of one side, pooled (or copied) densely and normalised per channel.
template <class Backend, class T>
batched_matrix<T> nst_normalized_channels(const Backend& backend, map_ref<const T> in, const spatial_match& m, T* data,
                                          T* norm) {
    const map_ref<T> dense = dense_map(data, in.n, in.c, m.h, m.w);
    adaptive_pool_forward(backend, in, dense);
    const auto rows = dense_matrix(data, in.n * in.c, m.h * m.w);
    backend.for_each(rows.rows, normalize_rows_kernel<T>{as_const(rows), rows, norm, normalize_eps<T>});
    return dense_batch(data, in.c, m.h * m.w);
}

}  // namespace detail

template <class Real>
struct feature_method<basic_nst_options<Real>> {
    using options = basic_nst_options<Real>;
    static constexpr const char* name = "nst";
    static constexpr feature_form form = feature_form::pair;

    template <class Backend, class T, class Space>
    static status check_inputs(const Backend&, const options&, const feature_args<T, Space>& a) noexcept {
        return detail::check_map_pair(name, a);
    }
    template <class T, class Space>
    static knowledge_shape knowledge(const options&, const feature_args<T, Space>&, int) noexcept {
        return {};
    }
    template <class T, class Space>
    static std::size_t workspace_bytes(const options&, const feature_args<T, Space>& a) noexcept {
        return detail::nst_plan::of(a.student, a.teacher).workspace_values() * sizeof(T);
    }

    template <class Backend, class T, class Space>
    static void run(const Backend& backend, const options&, const feature_args<T, Space>& a, const feature_outputs<T, Space>& o,
                    workspace ws) {
        using detail::as_const;
        using detail::transposed;
        const detail::nst_plan p = detail::nst_plan::of(a.student, a.teacher);
        const index_t n = p.n, cs = p.cs, ct = p.ct, k = p.k;
        T* x_data = static_cast<T*>(ws.data);
        T* y_data = x_data + n * cs * k;
        T* grad_data = y_data + n * ct * k;
        T* norm_x = grad_data + n * cs * k;
        T* norm_y = norm_x + n * cs;
        T* gram = norm_y + n * ct;
        const auto x = detail::nst_normalized_channels(backend, detail::to_map_ref(a.student), p.match, x_data, norm_x);
        const auto y = detail::nst_normalized_channels(backend, detail::to_map_ref(a.teacher), p.match, y_data, norm_y);
        const auto grad_x = detail::dense_batch(grad_data, cs, k);
        const bool want_grad = o.grad_student.bound();

        T loss = 0;
        if (p.spatial_gram) {
            // D_n = X^T X / Cs - Y^T Y / Ct, L = (1/N) sum ||D_n||^2, dX_n = (4/(N Cs)) X D_n.
            const auto d = detail::dense_batch(gram, k, k);
            detail::batched_gemm(backend, n, T(1) / T(cs), transposed(as_const(x)), as_const(x), T(0), d);
            detail::batched_gemm(backend, n, T(-1) / T(ct), transposed(as_const(y)), as_const(y), T(1), d);
            loss = detail::sum_over<T>(backend, n * k * k, detail::sum_of_squares_kernel<T>{gram}) / T(n);
            if (want_grad) detail::batched_gemm(backend, n, T(4) / (T(n) * T(cs)), as_const(x), as_const(d), T(0), grad_x);
        } else {
            // The channel Grams: Y Y^T (Ct x Ct) first, then X X^T (Cs x Cs) over it, and X Y^T.
            const auto yy = detail::dense_batch(gram, ct, ct), xx = detail::dense_batch(gram, cs, cs);
            const index_t c_max = cs > ct ? cs : ct;
            const auto xy = detail::dense_batch(gram + n * c_max * c_max, cs, ct);
            detail::batched_gemm(backend, n, T(1), as_const(y), transposed(as_const(y)), T(0), yy);
            const T teacher_term = detail::sum_over<T>(backend, n * ct * ct, detail::sum_of_squares_kernel<T>{gram});
            detail::batched_gemm(backend, n, T(1), as_const(x), transposed(as_const(x)), T(0), xx);
            const T student_term = detail::sum_over<T>(backend, n * cs * cs, detail::sum_of_squares_kernel<T>{gram});
            detail::batched_gemm(backend, n, T(1), as_const(x), transposed(as_const(y)), T(0), xy);
            const T cross_term = detail::sum_over<T>(backend, n * cs * ct, detail::sum_of_squares_kernel<T>{xy.m.data});
            loss = (teacher_term / (T(ct) * T(ct)) + student_term / (T(cs) * T(cs)) - T(2) * cross_term / (T(cs) * T(ct))) / T(n);
            if (want_grad) {
                detail::batched_gemm(backend, n, T(4) / (T(n) * T(cs) * T(cs)), as_const(xx), as_const(x), T(0), grad_x);
                detail::batched_gemm(backend, n, T(-4) / (T(n) * T(cs) * T(ct)), as_const(xy), as_const(y), T(1), grad_x);
            }
        }
        detail::store(backend, o.loss.data(), loss);
        if (!want_grad) return;
        // Through the normalisation (in place), then the pooling (a copy when the student was not pooled).
        const auto rows = detail::dense_matrix(grad_data, n * cs, k);
        backend.for_each(n * cs, detail::normalize_rows_vjp_kernel<T>{detail::dense_matrix<const T>(x_data, n * cs, k), norm_x,
                                                                      as_const(rows), rows, normalize_eps<T>});
        detail::adaptive_pool_backward(backend, as_const(detail::dense_map(grad_data, n, cs, p.match.h, p.match.w)),
                                       detail::to_map_ref(o.grad_student), false);
    }
};

/// nst(student, teacher[, opts]): neuron-selectivity-transfer loss and d loss / d student.
inline constexpr feature_loss_fn<basic_nst_options> nst{};

}  // namespace distill
