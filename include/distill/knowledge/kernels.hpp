// distill/knowledge/kernels.hpp: kernel (similarity) matrices of a batch built on the cosine
// similarity, and their VJPs.
//
// Cosine-kernel conditional probabilities (Passalis & Tefas's PKT):
//   u_n = f_n / (||f_n|| + eps)   (eps added, not a max; the norm's gradient is 0 at 0)
//   K = (U U^T + 1) / 2,  P_ij = K_ij / sum_k K_ik                                   (N x N)
// Taylor-expanded Gaussian kernel (Peng et al.'s correlation congruence, cc):
//   u_n = normalize(f_n) = f_n / max(||f_n||, 1e-12),  S = U U^T
//   C = sum_{p=0}^{P} c_p S^{op p},  c_p = e^{-2 gamma} (2 gamma)^p / p!                 (N x N)
//   (S^{op p} the element-wise power; for unit rows the order-P expansion of exp(-gamma ||u_i - u_j||^2))
//
// Both are functions of Q = U U^T with U = diag(s) F, s_n = s(||f_n||) a per-row scale. Neither
// materialises U: Q = diag(s) (F F^T) diag(s) from one N x N x D GEMM and the N row norms, and
// the VJP is dF = diag(s) M - (the norm's share), M = ((dQ + dQ^T) diag(s)) F, one more GEMM
// written straight into the gradient:
//   dF_n = s_n M_n - t_n <f^_n, M_n> f^_n,  f^_n = f_n / ||f_n||,
//   t_n = ||f_n|| / (||f_n|| + eps)^2 (pkt; 0 at a zero row)  or  1 / ||f_n|| if ||f_n|| >= 1e-12,
//   else 0 (normalize's clamp picks the constant).
// Cost: O(N^2 D) (two GEMMs, Eigen on the CPU) plus O(N^2) element work (O(N^2 P) for the
// Taylor series); scratch O(N^2 + N); the N x D features are never copied.
//
// The Taylor series runs with the reference's running coefficient c_p = c_{p-1} (2 gamma) / p and
// power S^p = S^{p-1} S, and stops once c_p underflows to 0 (every later term is then exactly 0),
// so a huge order costs at most a few thousand terms.
#pragma once

#include <cstddef>
#include <utility>

#include "../losses/feature/common.hpp"
#include "../losses/response/driver.hpp"
#include "distance.hpp"
#include "primitives.hpp"

namespace distill {
namespace detail {

/// How a row's L2 norm n turns into its scale s(n).
enum class cosine_scale_rule {
    add_eps,    ///< s = 1 / (n + eps), the norm's gradient 0 at n = 0 (pkt)
    clamp_eps,  ///< s = 1 / max(n, eps), normalize (cc)
};

template <class T>
DISTILL_HD inline T cosine_row_scale(T n, T eps, cosine_scale_rule rule) noexcept {
    if (rule == cosine_scale_rule::add_eps) return T(1) / (n + eps);
    return T(1) / (n > eps ? n : eps);
}

/// The coefficient t(n) of the norm's share of the VJP: d(s(||f||) f) = s dM - t <f^, dM> f^.
template <class T>
DISTILL_HD inline T cosine_norm_coefficient(T n, T eps, cosine_scale_rule rule) noexcept {
    if (rule == cosine_scale_rule::add_eps) return n > T(0) ? n / ((n + eps) * (n + eps)) : T(0);
    return n >= eps ? T(1) / n : T(0);
}

/// norm[i] = ||f_i||.
template <class T>
struct cosine_row_norm_kernel {
    matrix_ref<const T> f;
    T* norm;
    DISTILL_HD void operator()(index_t i) const noexcept {
        const T* row = f.row(i);
        T sq = 0;
        for (index_t d = 0; d < f.cols; ++d) {
            const T v = row[d * f.col_stride];
            sq += v * v;
        }
        norm[i] = detail::sqrt(sq);
    }
};

/// In place over the Gram matrix F F^T: q_ij = s_i s_j G_ij.
template <class T>
struct cosine_scaled_gram_kernel {
    matrix_ref<T> q;
    const T* norm;
    T eps;
    cosine_scale_rule rule;
    DISTILL_HD void operator()(index_t idx) const noexcept {
        const index_t i = idx / q.cols, j = idx % q.cols;
        T& v = entry(q, i, j);
        v = v * cosine_row_scale(norm[i], eps, rule) * cosine_row_scale(norm[j], eps, rule);
    }
};

/// In place: a_ij <- (a_ij + a_ji) s_j and a_ji <- (a_ij + a_ji) s_i, i.e. (dQ + dQ^T) diag(s).
template <class T>
struct cosine_symmetrize_scale_kernel {
    matrix_ref<T> a;
    const T* norm;
    T eps;
    cosine_scale_rule rule;
    DISTILL_HD void operator()(index_t idx) const noexcept {
        const index_t i = idx / a.cols, j = idx % a.cols;
        if (j < i) return;
        const T sum = entry(a, i, j) + entry(a, j, i);
        entry(a, i, j) = sum * cosine_row_scale(norm[j], eps, rule);
        if (j != i) entry(a, j, i) = sum * cosine_row_scale(norm[i], eps, rule);
    }
};

/// In place over grad (holding M = dU): grad_i = s_i M_i - t_i <f^_i, M_i> f^_i.
template <class T>
struct cosine_scaled_rows_vjp_kernel {
    matrix_ref<const T> f;
    const T* norm;
    matrix_ref<T> grad;
    T eps;
    cosine_scale_rule rule;
    DISTILL_HD void operator()(index_t i) const noexcept {
        const T n = norm[i];
        const T s = cosine_row_scale(n, eps, rule), t = cosine_norm_coefficient(n, eps, rule);
        const T* row = f.row(i);
        T dot = 0;
        if (t != T(0))
            for (index_t d = 0; d < f.cols; ++d) dot += row[d * f.col_stride] / n * entry(grad, i, d);
        const T along = t * dot;
        for (index_t d = 0; d < f.cols; ++d) {
            T& g = entry(grad, i, d);
            g = along == T(0) ? s * g : s * g - along * (row[d * f.col_stride] / n);
        }
    }
};

/// Q = diag(s) F F^T diag(s) into q (N x N); norm[i] = ||f_i||.
template <class Backend, class T>
void cosine_scaled_gram_forward(const Backend& backend, matrix_ref<const T> f, matrix_ref<T> q, T* norm, T eps, cosine_scale_rule rule) {
    const index_t n = f.rows;
    backend.for_each(n, cosine_row_norm_kernel<T>{f, norm});
    gemm(backend, T(1), f, transposed(f), T(0), q);
    backend.for_each(n * n, cosine_scaled_gram_kernel<T>{q, norm, eps, rule});
}

/// grad_f = the VJP of Q given dQ in grad_q (overwritten), from the forward's norms.
template <class Backend, class T>
void cosine_scaled_gram_backward(const Backend& backend, matrix_ref<const T> f, const T* norm, T eps, cosine_scale_rule rule,
                          matrix_ref<T> grad_q, matrix_ref<T> grad_f) {
    const index_t n = f.rows;
    backend.for_each(n * n, cosine_symmetrize_scale_kernel<T>{grad_q, norm, eps, rule});
    gemm(backend, T(1), as_const(grad_q), f, T(0), grad_f);
    backend.for_each(n, cosine_scaled_rows_vjp_kernel<T>{f, norm, grad_f, eps, rule});
}

// ---------------------------------------------------------------- cosine probabilities (pkt)

/// In place over Q, row i: K_ij = (Q_ij + 1) / 2, r_i = sum_j K_ij, P_ij = K_ij / r_i.
template <class T>
struct cosine_probability_rows_kernel {
    matrix_ref<T> p;
    T* row_sum;  ///< may be null
    DISTILL_HD void operator()(index_t i) const noexcept {
        T r = 0;
        for (index_t j = 0; j < p.cols; ++j) {
            T& v = entry(p, i, j);
            v = (v + T(1)) / T(2);
            r += v;
        }
        for (index_t j = 0; j < p.cols; ++j) entry(p, i, j) = entry(p, i, j) / r;
        if (row_sum) row_sum[i] = r;
    }
};

/// Row i of dQ from dP: dQ_ij = (a_ij - sum_k a_ik P_ik) / (2 r_i). grad_q may be grad_p (each row
/// is read before it is written).
template <class T>
struct cosine_probability_vjp_rows_kernel {
    matrix_ref<const T> p;
    const T* row_sum;
    matrix_ref<const T> grad_p;
    matrix_ref<T> grad_q;
    DISTILL_HD void operator()(index_t i) const noexcept {
        T dot = 0;
        for (index_t k = 0; k < p.cols; ++k) dot += entry(grad_p, i, k) * entry(p, i, k);
        const T scale = T(1) / (T(2) * row_sum[i]);
        for (index_t j = 0; j < p.cols; ++j) entry(grad_q, i, j) = (entry(grad_p, i, j) - dot) * scale;
    }
};

template <class Backend, class T>
void cosine_probabilities_forward(const Backend& backend, matrix_ref<const T> f, matrix_ref<T> p, T* norm, T* row_sum, T eps) {
    cosine_scaled_gram_forward(backend, f, p, norm, eps, cosine_scale_rule::add_eps);
    backend.for_each(f.rows, cosine_probability_rows_kernel<T>{p, row_sum});
}

/// grad_f = the VJP of P given dP (grad_p), from the forward's P, norms and row sums; grad_q is an
/// N x N scratch that may be grad_p itself.
template <class Backend, class T>
void cosine_probabilities_backward(const Backend& backend, matrix_ref<const T> f, matrix_ref<const T> p, const T* norm,
                                   const T* row_sum, T eps, matrix_ref<const T> grad_p, matrix_ref<T> grad_q,
                                   matrix_ref<T> grad_f) {
    backend.for_each(f.rows, cosine_probability_vjp_rows_kernel<T>{p, row_sum, grad_p, grad_q});
    cosine_scaled_gram_backward(backend, f, norm, eps, cosine_scale_rule::add_eps, grad_q, grad_f);
}

// ---------------------------------------------------------------- Taylor-expanded Gaussian (cc)

/// C(s) = sum_{p=0}^{P} c_p s^p and C'(s), c_p = e^{-2 gamma} (2 gamma)^p / p!.
template <class T>
struct taylor_series {
    T c0;         ///< e^{-2 gamma}
    T two_gamma;  ///< 2 gamma
    index_t order;
    DISTILL_HD T value(T s) const noexcept {
        T out = c0, coef = c0, power = T(1);
        for (index_t p = 1; p <= order; ++p) {
            coef = coef * two_gamma / T(p);
            if (coef == T(0)) break;
            power = power * s;
            out = out + coef * power;
        }
        return out;
    }
    DISTILL_HD T derivative(T s) const noexcept {
        T out = 0, coef = c0, power = T(1);  // power = s^(p-1)
        for (index_t p = 1; p <= order; ++p) {
            coef = coef * two_gamma / T(p);
            if (coef == T(0)) break;
            out = out + coef * T(p) * power;
            power = power * s;
        }
        return out;
    }
};

template <class T>
taylor_series<T> make_taylor_series(T gamma, index_t order) noexcept {
    return {detail::exp(T(-2) * gamma), T(2) * gamma, order};
}

/// out_ij = C(S_ij); out may be s.
template <class T>
struct taylor_value_kernel {
    matrix_ref<const T> s;
    matrix_ref<T> out;
    taylor_series<T> series;
    DISTILL_HD void operator()(index_t idx) const noexcept {
        const index_t i = idx / s.cols, j = idx % s.cols;
        entry(out, i, j) = series.value(entry(s, i, j));
    }
};

/// grad_s_ij = grad_c_ij C'(S_ij); grad_s may be s.
template <class T>
struct taylor_vjp_kernel {
    matrix_ref<const T> s;
    matrix_ref<const T> grad_c;
    matrix_ref<T> grad_s;
    taylor_series<T> series;
    DISTILL_HD void operator()(index_t idx) const noexcept {
        const index_t i = idx / s.cols, j = idx % s.cols;
        entry(grad_s, i, j) = entry(grad_c, i, j) * series.derivative(entry(s, i, j));
    }
};

/// The cosine matrix S = U U^T of normalize(F) into s; norm[i] = ||f_i||.
template <class Backend, class T>
void cosine_matrix_forward(const Backend& backend, matrix_ref<const T> f, matrix_ref<T> s, T* norm) {
    cosine_scaled_gram_forward(backend, f, s, norm, normalize_eps<T>, cosine_scale_rule::clamp_eps);
}

/// grad_f = the VJP of S given dS in grad_s (overwritten).
template <class Backend, class T>
void cosine_matrix_backward(const Backend& backend, matrix_ref<const T> f, const T* norm, matrix_ref<T> grad_s,
                            matrix_ref<T> grad_f) {
    cosine_scaled_gram_backward(backend, f, norm, normalize_eps<T>, cosine_scale_rule::clamp_eps, grad_s, grad_f);
}

template <class T>
status check_probability_eps(const char* name, T eps) noexcept {
    return check_parameter(name, "eps", eps, T(0), true);
}
template <class T>
status check_taylor_parameters(const char* name, T gamma, index_t order) noexcept {
    if (status s = check_parameter(name, "gamma", gamma, T(0), true); !s) return s;
    if (order < 0)
        return method_error(errc::invalid_parameter, name, "order").text("order = ").number(order).text(" must be >= 0");
    return {};
}

}  // namespace detail

namespace knowledge {

/// Scratch of cosine_probabilities and taylor_gaussian_kernel: N norms, in T.
template <class T>
constexpr std::size_t cosine_probabilities_workspace_bytes(index_t n) noexcept {
    return static_cast<std::size_t>(n) * sizeof(T);
}
/// Scratch of cosine_probabilities_vjp: one N x N matrix, N norms and N row sums, in T.
template <class T>
constexpr std::size_t cosine_probabilities_vjp_workspace_bytes(index_t n) noexcept {
    const auto nn = static_cast<std::size_t>(n);
    return (nn * nn + 2 * nn) * sizeof(T);
}
template <class T>
constexpr std::size_t taylor_gaussian_kernel_workspace_bytes(index_t n) noexcept {
    return static_cast<std::size_t>(n) * sizeof(T);
}
/// Scratch of taylor_gaussian_kernel_vjp: one N x N matrix and N norms, in T.
template <class T>
constexpr std::size_t taylor_gaussian_kernel_vjp_workspace_bytes(index_t n) noexcept {
    const auto nn = static_cast<std::size_t>(n);
    return (nn * nn + nn) * sizeof(T);
}

/// out = P, the cosine-kernel conditional probabilities of the rows of `features` (any rank >= 2),
/// N x N, for eps > 0. Workspace: cosine_probabilities_workspace_bytes<T>(N).
template <backend_object Backend, real_tensor F, class O>
status cosine_probabilities(const Backend& backend, const F& features_tensor, O&& out_tensor, value_type_t<F> eps,
                            workspace ws) {
    using T = value_type_t<F>;
    using Space = memory_space_t<F>;
    constexpr const char* name = "cosine_probabilities";
    const any_view<const T, Space> features(as_view(features_tensor));
    const any_view<T, Space> out(as_view(out_tensor));
    if (status s = detail::check_probability_eps(name, eps); !s) return s;
    detail::matrix_ref<const T> f;
    if (status s = detail::check_relation_features(name, features, f); !s) return s;
    const index_t n = f.rows;
    if (status s = detail::check_relation_square(name, "out", out, 2, n); !s) return s;
    if (detail::range_of(out).overlaps(detail::range_of(features)))
        return detail::method_error(errc::aliasing, name, "out").text("out overlaps features");
    if (status s = detail::check_workspace(name, ws, cosine_probabilities_workspace_bytes<T>(n)); !s) return s;
    detail::cosine_probabilities_forward(backend, f, detail::to_matrix_ref(out), static_cast<T*>(ws.data),
                                         static_cast<T*>(nullptr), eps);
    return {};
}

/// grad_features = d <grad_out, P(features)> / d features. Workspace:
/// cosine_probabilities_vjp_workspace_bytes<T>(N).
template <backend_object Backend, real_tensor F, real_tensor G, class O>
status cosine_probabilities_vjp(const Backend& backend, const F& features_tensor, const G& grad_out_tensor,
                                O&& grad_features_tensor, value_type_t<F> eps, workspace ws) {
    using T = value_type_t<F>;
    using Space = memory_space_t<F>;
    constexpr const char* name = "cosine_probabilities_vjp";
    const any_view<const T, Space> features(as_view(features_tensor)), grad_out(as_view(grad_out_tensor));
    const any_view<T, Space> grad_features(as_view(grad_features_tensor));
    if (status s = detail::check_probability_eps(name, eps); !s) return s;
    detail::matrix_ref<const T> f;
    if (status s = detail::check_relation_features(name, features, f); !s) return s;
    const index_t n = f.rows;
    if (status s = detail::check_relation_square(name, "grad_out", grad_out, 2, n); !s) return s;
    detail::matrix_ref<T> g;
    if (status s = detail::check_relation_grad(name, grad_features, features, grad_out, g); !s) return s;
    if (status s = detail::check_workspace(name, ws, cosine_probabilities_vjp_workspace_bytes<T>(n)); !s) return s;
    T* base = static_cast<T*>(ws.data);
    const auto p = detail::dense_matrix(base, n, n);
    T* norm = base + n * n;
    T* row_sum = norm + n;
    detail::cosine_probabilities_forward(backend, f, p, norm, row_sum, eps);
    // The rows kernel reads row i of P and of grad_out and writes dQ_i over P_i.
    detail::cosine_probabilities_backward(backend, f, detail::as_const(p), norm, row_sum, eps, detail::to_matrix_ref(grad_out), p,
                                          g);
    return {};
}

/// out = C, the order-`order` Taylor expansion of the Gaussian kernel of the normalised rows of
/// `features` (any rank >= 2), N x N, for gamma > 0 and order >= 0.
/// Workspace: taylor_gaussian_kernel_workspace_bytes<T>(N).
template <backend_object Backend, real_tensor F, class O>
status taylor_gaussian_kernel(const Backend& backend, const F& features_tensor, O&& out_tensor, value_type_t<F> gamma,
                              index_t order, workspace ws) {
    using T = value_type_t<F>;
    using Space = memory_space_t<F>;
    constexpr const char* name = "taylor_gaussian_kernel";
    const any_view<const T, Space> features(as_view(features_tensor));
    const any_view<T, Space> out(as_view(out_tensor));
    if (status s = detail::check_taylor_parameters(name, gamma, order); !s) return s;
    detail::matrix_ref<const T> f;
    if (status s = detail::check_relation_features(name, features, f); !s) return s;
    const index_t n = f.rows;
    if (status s = detail::check_relation_square(name, "out", out, 2, n); !s) return s;
    if (detail::range_of(out).overlaps(detail::range_of(features)))
        return detail::method_error(errc::aliasing, name, "out").text("out overlaps features");
    if (status s = detail::check_workspace(name, ws, taylor_gaussian_kernel_workspace_bytes<T>(n)); !s) return s;
    const auto c = detail::to_matrix_ref(out);
    detail::cosine_matrix_forward(backend, f, c, static_cast<T*>(ws.data));
    backend.for_each(n * n, detail::taylor_value_kernel<T>{detail::as_const(c), c, detail::make_taylor_series(gamma, order)});
    return {};
}

/// grad_features = d <grad_out, C(features)> / d features.
/// Workspace: taylor_gaussian_kernel_vjp_workspace_bytes<T>(N).
template <backend_object Backend, real_tensor F, real_tensor G, class O>
status taylor_gaussian_kernel_vjp(const Backend& backend, const F& features_tensor, const G& grad_out_tensor,
                                  O&& grad_features_tensor, value_type_t<F> gamma, index_t order, workspace ws) {
    using T = value_type_t<F>;
    using Space = memory_space_t<F>;
    constexpr const char* name = "taylor_gaussian_kernel_vjp";
    const any_view<const T, Space> features(as_view(features_tensor)), grad_out(as_view(grad_out_tensor));
    const any_view<T, Space> grad_features(as_view(grad_features_tensor));
    if (status s = detail::check_taylor_parameters(name, gamma, order); !s) return s;
    detail::matrix_ref<const T> f;
    if (status s = detail::check_relation_features(name, features, f); !s) return s;
    const index_t n = f.rows;
    if (status s = detail::check_relation_square(name, "grad_out", grad_out, 2, n); !s) return s;
    detail::matrix_ref<T> g;
    if (status s = detail::check_relation_grad(name, grad_features, features, grad_out, g); !s) return s;
    if (status s = detail::check_workspace(name, ws, taylor_gaussian_kernel_vjp_workspace_bytes<T>(n)); !s) return s;
    T* base = static_cast<T*>(ws.data);
    const auto s_matrix = detail::dense_matrix(base, n, n);
    T* norm = base + n * n;
    detail::cosine_matrix_forward(backend, f, s_matrix, norm);
    backend.for_each(n * n, detail::taylor_vjp_kernel<T>{detail::as_const(s_matrix), detail::to_matrix_ref(grad_out), s_matrix,
                                                         detail::make_taylor_series(gamma, order)});
    detail::cosine_matrix_backward(backend, f, norm, s_matrix, g);
    return {};
}

template <real_tensor F, class O>
status cosine_probabilities(const F& features, O&& out, value_type_t<F> eps, workspace ws) {
    return cosine_probabilities(default_backend_t<memory_space_t<F>>{}, features, std::forward<O>(out), eps, ws);
}
template <real_tensor F, real_tensor G, class O>
status cosine_probabilities_vjp(const F& features, const G& grad_out, O&& grad_features, value_type_t<F> eps, workspace ws) {
    return cosine_probabilities_vjp(default_backend_t<memory_space_t<F>>{}, features, grad_out, std::forward<O>(grad_features),
                                    eps, ws);
}
template <real_tensor F, class O>
status taylor_gaussian_kernel(const F& features, O&& out, value_type_t<F> gamma, index_t order, workspace ws) {
    return taylor_gaussian_kernel(default_backend_t<memory_space_t<F>>{}, features, std::forward<O>(out), gamma, order, ws);
}
template <real_tensor F, real_tensor G, class O>
status taylor_gaussian_kernel_vjp(const F& features, const G& grad_out, O&& grad_features, value_type_t<F> gamma,
                                  index_t order, workspace ws) {
    return taylor_gaussian_kernel_vjp(default_backend_t<memory_space_t<F>>{}, features, grad_out,
                                      std::forward<O>(grad_features), gamma, order, ws);
}

}  // namespace knowledge
}  // namespace distill
