// distill/losses/feature/cc_repdistiller.hpp: RepDistiller's `Correlation` loss (CC.py).
//
// RepDistiller describes it as the correlation-congruence authors' code restructured; it is not
// the paper's formula (that is cc.hpp). Student and teacher are N x D with identical shapes,
// N >= 2 (with N = 1 RepDistiller averages an empty set and returns NaN).
//
//   delta = |s - t|,  L = (1/(N-1)) sum_{n=0}^{N-2} sum_d delta_{n,d} delta_{n+1,d}
//   dL/ds_{n,d} = sign(s - t)_{n,d} (delta_{n-1,d} + delta_{n+1,d}) / (N - 1)
//                 (missing neighbours count 0; |x|' = 0 at 0)
//
// The loss depends on the order of the rows in the batch. Cost: O(N D), two passes (loss,
// gradient), no workspace. No knowledge outputs.
#pragma once

#include <cstddef>

#include "common.hpp"
#include "driver.hpp"

namespace distill {

/// cc_repdistiller has no parameters; Real only selects the options' family.
template <class Real>
struct basic_cc_repdistiller_options {};
using cc_repdistiller_options = basic_cc_repdistiller_options<double>;
using cc_repdistiller_float_options = basic_cc_repdistiller_options<float>;

namespace detail {

template <class T>
DISTILL_HD inline T cc_repdistiller_gap(const matrix_ref<const T>& s, const matrix_ref<const T>& t, index_t n, index_t d) noexcept {
    const T v = entry(s, n, d) - entry(t, n, d);
    return v < T(0) ? -v : v;
}

/// delta_{n,d} delta_{n+1,d} for one (n, d), n < N - 1.
template <class T>
struct cc_repdistiller_loss_kernel {
    matrix_ref<const T> student, teacher;
    DISTILL_HD T operator()(index_t idx) const noexcept {
        const index_t n = idx / student.cols, d = idx % student.cols;
        return cc_repdistiller_gap(student, teacher, n, d) * cc_repdistiller_gap(student, teacher, n + 1, d);
    }
};

template <class T>
struct cc_repdistiller_grad_kernel {
    matrix_ref<const T> student, teacher;
    matrix_ref<T> grad;
    T scale;
    DISTILL_HD void operator()(index_t idx) const noexcept {
        const index_t n = idx / student.cols, d = idx % student.cols;
        const T v = entry(student, n, d) - entry(teacher, n, d);
        T neighbours = 0;
        if (n > 0) neighbours += cc_repdistiller_gap(student, teacher, n - 1, d);
        if (n + 1 < student.rows) neighbours += cc_repdistiller_gap(student, teacher, n + 1, d);
        const T sign = v > T(0) ? T(1) : (v < T(0) ? T(-1) : T(0));
        entry(grad, n, d) = scale * sign * neighbours;
    }
};

}  // namespace detail

template <class Real>
struct feature_method<basic_cc_repdistiller_options<Real>> {
    using options = basic_cc_repdistiller_options<Real>;
    static constexpr const char* name = "cc_repdistiller";
    static constexpr feature_form form = feature_form::pair;

    template <class Backend, class T, class Space>
    static status check_inputs(const Backend&, const options&, const feature_args<T, Space>& a) noexcept {
        if (status s = detail::check_feature_pair(name, a, 2, 2); !s) return s;
        if (status s = detail::check_same_shape(name, a.student, a.teacher); !s) return s;
        if (a.student.extent(0) < 2)
            return detail::method_error(errc::shape_mismatch, name, "student").text("student has shape ")
                .shape(a.student.extents(), a.student.rank())
                .text(": cc_repdistiller needs N >= 2 (it averages over the N - 1 pairs of neighbouring rows)");
        return {};
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
    static void run(const Backend& backend, const options&, const feature_args<T, Space>& a,
                    const feature_outputs<T, Space>& o, workspace) {
        const auto s = detail::to_matrix_ref(a.student), t = detail::to_matrix_ref(a.teacher);
        const index_t n = s.rows, d = s.cols;
        const T scale = T(1) / T(n - 1);
        const T loss = scale * detail::sum_over<T>(backend, (n - 1) * d, detail::cc_repdistiller_loss_kernel<T>{s, t});
        detail::store(backend, o.loss.data(), loss);
        if (o.grad_student.bound())
            backend.for_each(n * d, detail::cc_repdistiller_grad_kernel<T>{s, t, detail::to_matrix_ref(o.grad_student), scale});
    }
};

/// cc_repdistiller(student, teacher[, opts]): RepDistiller's Correlation loss and d loss / d student.
inline constexpr feature_loss_fn<basic_cc_repdistiller_options> cc_repdistiller{};

}  // namespace distill
