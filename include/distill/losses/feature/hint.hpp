// distill/losses/feature/hint.hpp: the FitNets hint loss (and its l1 / smooth-L1 / cosine variants).
//
// A. Romero, N. Ballas, S. E. Kahou, A. Chassang, C. Gatta, Y. Bengio, "FitNets: Hints for Thin
// Deep Nets", ICLR 2015 (reference code: RepDistiller FitNet.py, nn.MSELoss). The student is
// assumed to be already mapped by the user's regressor, so student and teacher have identical
// shapes (any rank >= 2). With d = s - t and M the number of elements:
//
//   mse:        L = (1/M) sum d^2                    dL/ds = (2/M) d
//   l1:         L = (1/M) sum |d|                    dL/ds = (1/M) sign(d)       (0 at d = 0)
//   smooth_l1:  L = (1/M) sum h_beta(d)              dL/ds = (1/M) h_beta'(d)    (beta = 0: l1)
//   cosine:     L = (1/N) sum_n (1 - <u_n, v_n>),  u_n = s_n / max(||s_n||, 1e-8), v_n likewise
//               dL/ds_n = -(1/N) (v_n - <u_n, v_n> u_n) / ||s_n||   when ||s_n|| >= 1e-8
//               dL/ds_n = -(1/N) v_n / 1e-8                         otherwise (the clamp is active)
//
// cosine is F.cosine_similarity's per-vector clamp (eps 1e-8) on the flattened rows; a zero
// student row gets the large but finite gradient -v_n / (N 1e-8), a zero teacher row the loss
// term 1 and no gradient. beta (default 1) is only used by smooth_l1 but always validated.
//
// Cost: one pass over the 2 M input elements, writing the M gradient elements in the same pass
// (mse / l1 / smooth_l1: one element per kernel call, summed by the backend's reduction;
// cosine: one row per call, two passes over the row). No workspace; any strides.
// Knowledge outputs: none.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "../../knowledge/elementwise.hpp"
#include "common.hpp"
#include "driver.hpp"

namespace distill {

/// The distance of the hint loss.
enum class hint_distance : std::uint8_t { mse, l1, smooth_l1, cosine };

constexpr bool is_valid(hint_distance d) noexcept {
    return d == hint_distance::mse || d == hint_distance::l1 || d == hint_distance::smooth_l1 ||
           d == hint_distance::cosine;
}

constexpr const char* to_string(hint_distance d) noexcept {
    switch (d) {
        case hint_distance::mse: return "mse";
        case hint_distance::l1: return "l1";
        case hint_distance::smooth_l1: return "smooth_l1";
        case hint_distance::cosine: return "cosine";
    }
    return "?";
}

/// Parses "mse", "l1", "smooth_l1" or "cosine"; any other word is errc::invalid_parameter.
constexpr status parse_hint_distance(const char* word, hint_distance& out) noexcept {
    auto equal = [](const char* a, const char* b) {
        while (*a && *a == *b) ++a, ++b;
        return *a == *b;
    };
    for (hint_distance d : {hint_distance::mse, hint_distance::l1, hint_distance::smooth_l1, hint_distance::cosine}) {
        if (word && equal(word, to_string(d))) {
            out = d;
            return {};
        }
    }
    return status::error(errc::invalid_parameter, "distance")
        .text("hint: unknown distance '").text(word ? word : "").text("' (expected mse, l1, smooth_l1 or cosine)");
}

/// Options of hint; Real is the parameters' type (hint_options: double, hint_float_options: float).
template <class Real>
struct basic_hint_options {
    hint_distance distance = hint_distance::mse;
    Real beta = Real(1);  ///< smooth_l1's beta, >= 0 (validated for every distance)
};
using hint_options = basic_hint_options<double>;
using hint_float_options = basic_hint_options<float>;

/// The eps of the cosine distance's per-vector clamp (F.cosine_similarity's default).
template <class T>
inline constexpr T hint_cosine_eps = T(1e-8);

namespace detail {

/// One element of mse / l1 / smooth_l1: returns its loss term and writes scale * its derivative
/// to the gradient (when requested). The write depends only on i, so the kernel may run as the
/// transform of a reduction.
template <class T, hint_distance Distance, class In, class Out>
struct hint_element_kernel {
    In student, teacher;  ///< element_ref<const T>, or vector_ref<const T> for dense tensors
    Out grad;
    T beta, scale;
    DISTILL_HD T operator()(index_t i) const noexcept {
        const T d = student[i] - teacher[i];
        T value, slope;
        if constexpr (Distance == hint_distance::mse) {
            value = d * d;
            slope = T(2) * d;
        } else if constexpr (Distance == hint_distance::l1) {
            value = abs_value(d);
            slope = sign_or_zero(d);
        } else {
            value = smooth_l1_value(d, beta);
            slope = smooth_l1_derivative(d, beta);
        }
        if (grad.present()) grad[i] = scale * slope;
        return value;
    }
};

/// One row of the cosine distance: returns 1 - <u_n, v_n> and writes the row's gradient (scaled
/// by `scale` = 1/N) when requested.
template <class T, class In, class Out>
struct hint_cosine_row_kernel {
    In student, teacher;  ///< element_ref<const T>, or vector_ref<const T> for dense tensors
    Out grad;
    index_t cols;
    T scale;
    DISTILL_HD T operator()(index_t row) const noexcept {
        const index_t first = row * cols, last = first + cols;
        T ss = 0, tt = 0, st = 0;
        for (index_t i = first; i < last; ++i) {
            const T s = student[i], t = teacher[i];
            ss += s * s;
            tt += t * t;
            st += s * t;
        }
        const T eps = hint_cosine_eps<T>;
        const T norm_s = detail::sqrt(ss), norm_t = detail::sqrt(tt);
        const T clamped_s = norm_s > eps ? norm_s : eps, clamped_t = norm_t > eps ? norm_t : eps;
        const T cosine = st / clamped_s / clamped_t;
        if (grad.present()) {
            // -(1/N) (t / clamped_t - [||s|| >= eps] cosine s / ||s||) / clamped_s
            const T teacher_coef = -scale / clamped_t / clamped_s;
            const T student_coef = norm_s >= eps ? scale * cosine / clamped_s / clamped_s : T(0);
            for (index_t i = first; i < last; ++i) grad[i] = teacher_coef * teacher[i] + student_coef * student[i];
        }
        return T(1) - cosine;
    }
};

/// The loss of an element distance (the gradient written on the way).
template <class T, hint_distance Distance, class Backend>
T hint_elements(const Backend& backend, index_t count, const element_ref<const T>& student,
                const element_ref<const T>& teacher, const element_ref<T>& grad, T beta) {
    const T scale = T(1) / static_cast<T>(count);
    return scale * with_element_access(
                       [&](auto s, auto t, auto g) {
                           return sum_over<T>(backend, count,
                                              hint_element_kernel<T, Distance, decltype(s), decltype(g)>{s, t, g, beta, scale});
                       },
                       student, teacher, grad);
}

/// The loss of the cosine distance (the gradient written on the way).
template <class T, class Backend>
T hint_cosine(const Backend& backend, index_t rows, index_t cols, const element_ref<const T>& student,
              const element_ref<const T>& teacher, const element_ref<T>& grad) {
    const T scale = T(1) / static_cast<T>(rows);
    return scale * with_element_access(
                       [&](auto s, auto t, auto g) {
                           return sum_over<T>(backend, rows, hint_cosine_row_kernel<T, decltype(s), decltype(g)>{s, t, g, cols, scale});
                       },
                       student, teacher, grad);
}

}  // namespace detail

template <class Real>
struct feature_method<basic_hint_options<Real>> {
    using options = basic_hint_options<Real>;
    static constexpr const char* name = "hint";
    static constexpr feature_form form = feature_form::pair;

    template <class Backend, class T, class Space>
    static status check_inputs(const Backend&, const options& opts, const feature_args<T, Space>& a) noexcept {
        if (!is_valid(opts.distance))
            return detail::method_error(errc::invalid_parameter, name, "distance").text("distance = ")
                .number(static_cast<int>(opts.distance)).text(" is not mse, l1, smooth_l1 or cosine");
        if (status s = detail::check_parameter(name, "beta", opts.beta, Real(0)); !s) return s;
        if (status s = detail::check_feature_pair(name, a, 2, max_dynamic_rank); !s) return s;
        return detail::check_same_shape(name, a.student, a.teacher);
    }
    template <class T, class Space>
    static knowledge_shape knowledge(const options&, const feature_args<T, Space>&, int) noexcept {
        return {};
    }
    template <class T, class Space>
    static std::size_t workspace_bytes(const options&, const feature_args<T, Space>&) noexcept {
        return 0;
    }

    template <class Backend, class T, class Space>
    static void run(const Backend& backend, const options& opts, const feature_args<T, Space>& a,
                    const feature_outputs<T, Space>& o, workspace) {
        const auto student = detail::to_element_ref(a.student), teacher = detail::to_element_ref(a.teacher);
        const auto grad = detail::to_element_ref(o.grad_student);
        const index_t count = a.student.size(), rows = a.student.extent(0);
        const T beta = static_cast<T>(opts.beta);
        T loss = 0;
        switch (opts.distance) {
            case hint_distance::mse:
                loss = detail::hint_elements<T, hint_distance::mse>(backend, count, student, teacher, grad, beta);
                break;
            case hint_distance::l1:
                loss = detail::hint_elements<T, hint_distance::l1>(backend, count, student, teacher, grad, beta);
                break;
            case hint_distance::smooth_l1:
                loss = detail::hint_elements<T, hint_distance::smooth_l1>(backend, count, student, teacher, grad, beta);
                break;
            case hint_distance::cosine:
                loss = detail::hint_cosine(backend, rows, count / rows, student, teacher, grad);
                break;
        }
        detail::store(backend, o.loss.data(), loss);
    }
};

/// hint(student, teacher[, opts]): FitNets hint loss and d loss / d student.
inline constexpr feature_loss_fn<basic_hint_options> hint{};

}  // namespace distill
