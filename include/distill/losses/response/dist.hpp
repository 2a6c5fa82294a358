// distill/losses/response/dist.hpp: DIST, distillation by Pearson correlation of the predictions.
//
// T. Huang, S. You, F. Wang, C. Qian, C. Xu, "Knowledge Distillation from A Stronger Teacher",
// NeurIPS 2022 (reference code: hunto/DIST_KD, DIST(beta, gamma, tau)). Instead of matching the
// teacher's probabilities exactly (KL), the student only has to rank them alike: per sample
// (inter-class relation, across the classes of a row) and per class (intra-class relation,
// across the samples of a column). This tolerates the large gap to a much stronger teacher.
//
// With Y^s = softmax(student / T) and Y^t = softmax(teacher / T) row-wise (N x C),
//
//     rho(a, b) = <a - mean(a), b - mean(b)> / (||a - mean(a)|| ||b - mean(b)|| + 1e-8)
//     inter     = 1 - (1/N) sum_i rho(Y^s_i, Y^t_i)        (rows)
//     intra     = 1 - (1/C) sum_c rho(Y^s_:c, Y^t_:c)      (columns)
//     loss      = T^2 (beta inter + gamma intra)           (a scalar: only batchmean exists)
//
// A vector with zero variance has rho = 0, and the derivative of its norm is taken as 0 (as
// torch's norm does); with N = 1 every column is constant, so intra = 1 with zero gradient.
//
// Gradient. A row of Y sums to 1, so its mean is exactly 1/C: a_i = Y^s_i - 1/C, b_i = Y^t_i - 1/C,
// and the column-centred u_:c = Y^s_:c - mean, v_:c = Y^t_:c - mean. For rho = cov / D with
// D = |a| |b| + eps, d rho / d a = (b - rho (|b| / |a|) a) / D; the centring's Jacobian drops out
// because that vector already sums to 0 (a and b are centred). With r_c the correlation of column c
// and G = d loss / d Y^s,
//
//     G_ic = -[alpha_i b_ic - kappa_i a_ic + alpha'_c v_ic - kappa'_c u_ic]
//     alpha_i = beta T^2 / (N D_i),  kappa_i = alpha_i rho_i |b_i| / |a_i|   (0 when |a_i| = 0)
//     alpha'_c = gamma T^2 / (C D'_c), kappa'_c = alpha'_c r_c |v_c| / |u_c|  (0 when |u_c| = 0)
//
// and through the softmax Jacobian  d loss / d student_ic = Y^s_ic (G_ic - sum_j Y^s_ij G_ij) / T.
// The temperature gradient adds the teacher's side (H = d loss / d Y^t, the same formula with the
// roles of student and teacher swapped) with z' = logits / T shifted by the row max:
//
//     d loss / d T = 2 loss / T - (1/T) sum_ic [Y^s_ic (G_ic - <Y^s_i, G_i>) s'_ic + Y^t_ic (H_ic - <Y^t_i, H_i>) t'_ic]
//
// Passes (no N x C temporary; probabilities are recomputed from per-row statistics):
//   1. rows:    max and 1 / sum exp of each row (one read), then the row correlation (a second read)
//   2. columns: column means of Y^s and Y^t                     (skipped when gamma = 0)
//   3. columns: centred column covariance and norms -> r_c       (skipped when gamma = 0)
//   4. rows:    G, its softmax projection, d loss / d T           (only when a gradient is requested)
// Cost: O(N C) time, up to 6 reads of each logit and 12 exp per student/teacher pair of entries
// (the price of recomputing instead of storing N x C), (8 N + 6 C) values of caller workspace; the CPU
// backend runs the column passes row by row (contiguous reads), the Thrust backend runs one thread
// per column walking down it (coalesced across threads on a GPU, but only C-way parallel).
//
// Masked logits: a -inf entry has probability 0, enters the correlations as Y = 0 and gets gradient 0.
// A row whose logits are all -inf has no distribution: its loss and gradient are NaN.
#pragma once

#include <cstddef>
#include <limits>
#include <type_traits>

#include "../../detail/math.hpp"
#include "common.hpp"
#include "driver.hpp"
#include "result.hpp"

namespace distill {

/// Parameters of dist. Real is the type the parameters are stored in (dist_options: double,
/// dist_float_options: float for float-only builds).
template <class Real>
struct basic_dist_options {
    Real temperature = 1;                     ///< T > 0 and finite
    Real beta = 1;                            ///< weight of the inter-class (row) relation, >= 0 and finite
    Real gamma = 1;                           ///< weight of the intra-class (column) relation, >= 0 and finite
    reduction reduce = reduction::batchmean;  ///< batchmean only: the loss couples the rows of the batch
};
using dist_options = basic_dist_options<double>;
using dist_float_options = basic_dist_options<float>;

namespace detail {

inline constexpr const char* dist_name = "dist";

/// The 1e-8 added to the product of the norms (the reference code's value).
template <class T>
inline constexpr T dist_eps = T(1e-8);

/// The caller's workspace, carved into per-row and per-column arrays of T.
template <class T>
struct dist_scratch {
    static constexpr std::size_t row_arrays = 8, column_arrays = 6;

    // Per row: softmax statistics of the raw logits, the correlation's gradient coefficients, and
    // one value per row (rho_i, later d loss / d T of the row) for the backend's reductions.
    T *student_max, *student_inv_sum, *teacher_max, *teacher_inv_sum;
    T *row_scale, *row_kappa_student, *row_kappa_teacher, *row_value;
    // Per column: means, gradient coefficients (accumulators of the centred moments before), r_c.
    T *student_mean, *teacher_mean, *column_scale, *column_kappa_student, *column_kappa_teacher, *column_value;

    static constexpr std::size_t bytes(index_t rows, index_t cols) noexcept {
        return (row_arrays * static_cast<std::size_t>(rows) + column_arrays * static_cast<std::size_t>(cols)) * sizeof(T);
    }
    static dist_scratch carve(void* data, index_t rows, index_t cols) noexcept {
        T* p = static_cast<T*>(data);
        auto take = [&p](index_t count) {
            T* block = p;
            p += count;
            return block;
        };
        dist_scratch s;
        s.student_max = take(rows), s.student_inv_sum = take(rows), s.teacher_max = take(rows), s.teacher_inv_sum = take(rows);
        s.row_scale = take(rows), s.row_kappa_student = take(rows), s.row_kappa_teacher = take(rows), s.row_value = take(rows);
        s.student_mean = take(cols), s.teacher_mean = take(cols), s.column_scale = take(cols);
        s.column_kappa_student = take(cols), s.column_kappa_teacher = take(cols), s.column_value = take(cols);
        return s;
    }
};

/// Online max and sum of exp((x - max) / T) over the raw logits x. Shifting before dividing keeps
/// a constant row exactly uniform (x - max = 0), whatever the compiler contracts into an FMA.
template <class T>
struct tempered_logsumexp {
    T inv_tau;
    T max = lowest<T>();
    T sum = 0;
    DISTILL_HD void add(T x) noexcept {
        if (x > max) {
            sum = sum * detail::exp((max - x) * inv_tau) + T(1);
            max = x;
        } else {
            sum += detail::exp((x - max) * inv_tau);
        }
    }
};

/// One row of the batch with its softmax statistics: tempered, max-shifted logits and probabilities.
template <class T>
struct dist_row {
    const T *student, *teacher;
    index_t student_stride, teacher_stride;
    T student_max, student_inv_sum, teacher_max, teacher_inv_sum, inv_tau;

    DISTILL_HD T student_shifted(index_t c) const noexcept { return (student[c * student_stride] - student_max) * inv_tau; }
    DISTILL_HD T teacher_shifted(index_t c) const noexcept { return (teacher[c * teacher_stride] - teacher_max) * inv_tau; }
    /// exp(z' - max) / sum: a constant row gives exactly 1 * (1 / C), the value of its mean.
    DISTILL_HD T student_probability(index_t c) const noexcept { return detail::exp(student_shifted(c)) * student_inv_sum; }
    DISTILL_HD T teacher_probability(index_t c) const noexcept { return detail::exp(teacher_shifted(c)) * teacher_inv_sum; }
};

/// Centred cross and squared sums of one student/teacher vector pair.
template <class T>
struct centred_moments {
    T cross = 0, student_sq = 0, teacher_sq = 0;
    DISTILL_HD void add(T a, T b) noexcept {
        cross += a * b;
        student_sq += a * a;
        teacher_sq += b * b;
    }
};

/// rho and the coefficients of its gradient (see the header comment): d(scale * rho) / d a =
/// scale (b / D) - kappa_student a, and d / d b = scale (a / D) - kappa_teacher b.
template <class T>
struct correlation {
    T rho, gradient_scale, kappa_student, kappa_teacher;
};

/// scale is beta T^2 / N (rows) or gamma T^2 / C (columns). cross / |a| <= |b|, so no ratio overflows,
/// and a zero norm (a constant vector) contributes no norm derivative.
template <class T>
DISTILL_HD inline correlation<T> correlate(const centred_moments<T>& m, T scale) noexcept {
    const T norm_student = detail::sqrt(m.student_sq), norm_teacher = detail::sqrt(m.teacher_sq);
    const T d = norm_student * norm_teacher + dist_eps<T>;
    correlation<T> r;
    r.rho = m.cross / d;
    r.gradient_scale = scale / d;
    r.kappa_student = norm_student > T(0) ? r.gradient_scale * (m.cross / norm_student) * norm_teacher / d : T(0);
    r.kappa_teacher = norm_teacher > T(0) ? r.gradient_scale * (m.cross / norm_teacher) * norm_student / d : T(0);
    return r;
}

/// Everything the kernels share: the inputs, the workspace and the constants.
template <class T>
struct dist_state {
    matrix_ref<const T> student, teacher;
    dist_scratch<T> scratch;
    T inv_tau;
    T inv_classes;  ///< 1 / C: the mean of every probability row
    T inter_scale;  ///< beta T^2 / N
    T intra_scale;  ///< gamma T^2 / C

    DISTILL_HD dist_row<T> row(index_t i) const noexcept {
        return {student.row(i), teacher.row(i), student.col_stride, teacher.col_stride,
                scratch.student_max[i], scratch.student_inv_sum[i], scratch.teacher_max[i], scratch.teacher_inv_sum[i],
                inv_tau};
    }
    /// Pass 3's last step: column c's correlation from its centred moments; returns r_c.
    DISTILL_HD T finish_column(index_t c, const centred_moments<T>& m) const noexcept {
        const correlation<T> r = correlate(m, intra_scale);
        scratch.column_scale[c] = r.gradient_scale;
        scratch.column_kappa_student[c] = r.kappa_student;
        scratch.column_kappa_teacher[c] = r.kappa_teacher;
        return r.rho;
    }
};

/// Pass 1, per row: softmax statistics, then the row's correlation; returns rho_i.
template <class T>
struct dist_row_kernel {
    dist_state<T> st;
    DISTILL_HD row_result<T> operator()(index_t i) const noexcept {
        const index_t cols = st.student.cols, cs = st.student.col_stride, ct = st.teacher.col_stride;
        const T* s = st.student.row(i);
        const T* t = st.teacher.row(i);
        tempered_logsumexp<T> student_lse{st.inv_tau}, teacher_lse{st.inv_tau};
        for (index_t c = 0; c < cols; ++c) {
            student_lse.add(s[c * cs]);
            teacher_lse.add(t[c * ct]);
        }
        st.scratch.student_max[i] = student_lse.max;
        st.scratch.student_inv_sum[i] = T(1) / student_lse.sum;
        st.scratch.teacher_max[i] = teacher_lse.max;
        st.scratch.teacher_inv_sum[i] = T(1) / teacher_lse.sum;

        const dist_row<T> row = st.row(i);
        centred_moments<T> m;
        for (index_t c = 0; c < cols; ++c)
            m.add(row.student_probability(c) - st.inv_classes, row.teacher_probability(c) - st.inv_classes);
        const correlation<T> r = correlate(m, st.inter_scale);
        st.scratch.row_scale[i] = r.gradient_scale;
        st.scratch.row_kappa_student[i] = r.kappa_student;
        st.scratch.row_kappa_teacher[i] = r.kappa_teacher;
        return {r.rho, T(0)};
    }
};

/// Pass 2, per column (parallel backends): the column means of Y^s and Y^t.
template <class T>
struct dist_column_mean_kernel {
    dist_state<T> st;
    DISTILL_HD row_result<T> operator()(index_t c) const noexcept {
        T student_sum = 0, teacher_sum = 0;
        for (index_t i = 0; i < st.student.rows; ++i) {
            const dist_row<T> row = st.row(i);
            student_sum += row.student_probability(c);
            teacher_sum += row.teacher_probability(c);
        }
        st.scratch.student_mean[c] = student_sum / T(st.student.rows);
        st.scratch.teacher_mean[c] = teacher_sum / T(st.student.rows);
        return {};
    }
};

/// Pass 3, per column (parallel backends): centred moments and the column's correlation; returns r_c.
template <class T>
struct dist_column_kernel {
    dist_state<T> st;
    DISTILL_HD row_result<T> operator()(index_t c) const noexcept {
        const T student_mean = st.scratch.student_mean[c], teacher_mean = st.scratch.teacher_mean[c];
        centred_moments<T> m;
        for (index_t i = 0; i < st.student.rows; ++i) {
            const dist_row<T> row = st.row(i);
            m.add(row.student_probability(c) - student_mean, row.teacher_probability(c) - teacher_mean);
        }
        return {st.finish_column(c, m), T(0)};
    }
};

/// Pass 4, per row: the student gradient row and the row's share of d loss / d T (returned).
template <class T>
struct dist_gradient_kernel {
    dist_state<T> st;
    matrix_ref<T> grad;  ///< absent when only d loss / d T is requested
    bool with_intra;     ///< gamma != 0: the column passes ran
    bool want_dtemperature;
    T grad_factor = T(1);     ///< response_outputs::grad_scale
    bool accumulate = false;  ///< add the gradient row to grad

    /// d loss / d Y^s_ic (G) and, when wanted, d loss / d Y^t_ic (H) at probabilities p, q.
    DISTILL_HD void partials(index_t i, index_t c, T p, T q, T& g, T& h) const noexcept {
        const T a = p - st.inv_classes, b = q - st.inv_classes;
        const T row_scale = st.scratch.row_scale[i];
        g = -(row_scale * b - st.scratch.row_kappa_student[i] * a);
        if (want_dtemperature) h = -(row_scale * a - st.scratch.row_kappa_teacher[i] * b);
        if (with_intra) {
            const T u = p - st.scratch.student_mean[c], v = q - st.scratch.teacher_mean[c];
            const T column_scale = st.scratch.column_scale[c];
            g -= column_scale * v - st.scratch.column_kappa_student[c] * u;
            if (want_dtemperature) h -= column_scale * u - st.scratch.column_kappa_teacher[c] * v;
        }
    }

    DISTILL_HD row_result<T> operator()(index_t i) const noexcept {
        const index_t cols = st.student.cols;
        const dist_row<T> row = st.row(i);
        // <Y^s_i, G_i>, and for d/dT the same for the teacher plus the sums over z' (Y (G - <Y, G>) z'
        // expands into them). A probability of 0 skips its z' (which may be -inf).
        T student_dot = 0, teacher_dot = 0, student_gz = 0, student_z = 0, teacher_hz = 0, teacher_z = 0;
        for (index_t c = 0; c < cols; ++c) {
            const T p = row.student_probability(c), q = row.teacher_probability(c);
            T g, h = 0;
            partials(i, c, p, q, g, h);
            student_dot += p * g;
            if (want_dtemperature) {
                teacher_dot += q * h;
                if (p > T(0)) {
                    const T z = row.student_shifted(c);
                    student_gz += p * g * z;
                    student_z += p * z;
                }
                if (q > T(0)) {
                    const T z = row.teacher_shifted(c);
                    teacher_hz += q * h * z;
                    teacher_z += q * z;
                }
            }
        }
        if (grad.present()) {
            T* out = grad.row(i);
            for (index_t c = 0; c < cols; ++c) {
                const T p = row.student_probability(c), q = row.teacher_probability(c);
                T g, h = 0;
                partials(i, c, p, q, g, h);
                const T value = p * (g - student_dot) * (st.inv_tau * grad_factor);
                T& o = out[c * grad.col_stride];
                o = accumulate ? o + value : value;
            }
        }
        if (!want_dtemperature) return {};
        return {-st.inv_tau * ((student_gz - student_dot * student_z) + (teacher_hz - teacher_dot * teacher_z)), T(0)};
    }
};

/// Writes the loss (returned: the backend stores it) and d loss / d T into device or host memory.
template <class T>
struct dist_result_writer {
    T loss, dtemperature;
    T* dtemperature_out;  ///< null when not requested
    bool accumulate;      ///< add d/dT to *dtemperature_out
    DISTILL_HD row_result<T> operator()(index_t) const noexcept {
        if (dtemperature_out) *dtemperature_out = accumulate ? *dtemperature_out + dtemperature : dtemperature;
        return {loss, T(0)};
    }
};

/// for_each body storing kernel(k).value in values[k].
template <class T, class Kernel>
struct store_value {
    Kernel kernel;
    T* values;
    DISTILL_HD void operator()(index_t k) const noexcept { values[k] = kernel(k).value; }
};

/// kernel(k) for k in [0, count) on the backend, each kernel(k).value stored in values[k].
template <class Backend, class T, class Kernel>
void dist_launch(const Backend& backend, index_t count, const Kernel& kernel, T* values) noexcept(Backend::is_nothrow) {
    backend.for_each(count, store_value<T, Kernel>{kernel, values});
}

template <class Backend, class T>
T dist_sum(const Backend& backend, index_t count, const T* values) noexcept(Backend::is_nothrow) {
    return backend.transform_reduce(count, element_of<T>{vector_ref<const T>{values, count, 1}}, T(0), plus_op<T>{});
}

/// Passes 2 and 3 on the CPU: row by row, so that the logits are read contiguously; the same
/// per-element maths and the same summation order (rows ascending) as the column kernels.
template <class T>
void dist_columns_on_cpu(const dist_state<T>& st) noexcept {
    const index_t rows = st.student.rows, cols = st.student.cols;
    const dist_scratch<T>& sc = st.scratch;
    for (index_t c = 0; c < cols; ++c) sc.student_mean[c] = sc.teacher_mean[c] = T(0);
    for (index_t i = 0; i < rows; ++i) {
        const dist_row<T> row = st.row(i);
        for (index_t c = 0; c < cols; ++c) {
            sc.student_mean[c] += row.student_probability(c);
            sc.teacher_mean[c] += row.teacher_probability(c);
        }
    }
    for (index_t c = 0; c < cols; ++c) {
        sc.student_mean[c] /= T(rows);
        sc.teacher_mean[c] /= T(rows);
    }
    // The coefficient arrays hold the centred moments until finish_column replaces them.
    for (index_t c = 0; c < cols; ++c) sc.column_scale[c] = sc.column_kappa_student[c] = sc.column_kappa_teacher[c] = T(0);
    for (index_t i = 0; i < rows; ++i) {
        const dist_row<T> row = st.row(i);
        for (index_t c = 0; c < cols; ++c) {
            const T u = row.student_probability(c) - sc.student_mean[c], v = row.teacher_probability(c) - sc.teacher_mean[c];
            sc.column_scale[c] += u * v;
            sc.column_kappa_student[c] += u * u;
            sc.column_kappa_teacher[c] += v * v;
        }
    }
    for (index_t c = 0; c < cols; ++c) {
        const centred_moments<T> m{sc.column_scale[c], sc.column_kappa_student[c], sc.column_kappa_teacher[c]};
        sc.column_value[c] = st.finish_column(c, m);
    }
}

template <class Real>
status check_dist_params(const basic_dist_options<Real>& o) noexcept {
    if (status s = check_temperature(dist_name, o.temperature); !s) return s;
    if (status s = check_reduction(dist_name, o.reduce); !s) return s;
    if (o.reduce != reduction::batchmean)
        return method_error(errc::invalid_parameter, dist_name, "reduction").text("reduction = ").text(to_string(o.reduce))
            .text(" is not supported: the loss correlates the rows of the batch, so only batchmean is defined");
    constexpr double unbounded = std::numeric_limits<double>::infinity();
    if (status s = check_range(dist_name, "beta", o.beta, 0.0, unbounded, false, true); !s) return s;
    return check_range(dist_name, "gamma", o.gamma, 0.0, unbounded, false, true);
}

}  // namespace detail

// ------------------------------------------------------------------------------------------------
// The check / workspace / run steps (the row-wise driver does not apply: the loss couples rows).

/// Parameters and inputs: student and teacher N x C with N, C >= 1; no labels and no weight (a
/// row weighting has no meaning for a loss over the whole batch; the reference rejects them).
template <class Backend, class Real, class T, class Space, class Label>
status check_args(const Backend&, const basic_dist_options<Real>& opts, const response_args<T, Space, Label>& args) noexcept {
    static_assert(backend_for<Backend, Space>, "this backend cannot run on the memory space of the arguments");
    using detail::dist_name;
    if (status s = detail::check_dist_params(opts); !s) return s;
    if (status s = detail::check_logits(dist_name, args); !s) return s;
    if (args.labels.bound())
        return detail::method_error(errc::shape_mismatch, dist_name, "labels").text("labels of shape ")
            .shape(args.labels.extents(), args.labels.rank()).text(" given, but dist takes no labels (it has no per-row weighting)");
    if (args.weight.bound())
        return detail::method_error(errc::shape_mismatch, dist_name, "weight").text("weight of shape ")
            .shape(args.weight.extents(), args.weight.rank()).text(" given, but dist takes no weight (it has no per-row weighting)");
    return {};
}

/// check_args, then the outputs: loss (1 value), optional N x C grad_student and 1-value
/// grad_temperature, none overlapping an input or another output.
template <class Backend, class Real, class T, class Space, class Label>
status check(const Backend& backend, const basic_dist_options<Real>& opts, const response_args<T, Space, Label>& args,
             const response_outputs<T, Space>& outs) noexcept {
    if (status s = check_args(backend, opts, args); !s) return s;
    return detail::check_outputs(detail::dist_name, args, outs, reduction::batchmean);
}

/// (8 N + 6 C) * sizeof(T) bytes, aligned for T, in the memory space of the arguments (every backend).
template <class Backend, class Real, class T, class Space, class Label>
std::size_t workspace_bytes(const Backend&, const basic_dist_options<Real>&, const response_args<T, Space, Label>& args,
                            const response_outputs<T, Space>&) noexcept {
    if (!args.student.bound() || args.student.rank() != 2) return 0;
    return detail::dist_scratch<T>::bytes(args.student.extent(0), args.student.extent(1));
}

/// Run step: checks, then the loss and the requested gradients into the caller's outputs.
/// noexcept and allocation-free on the CPU backend; on error nothing is written.
template <class Backend, class Real, class T, class Space, class Label>
status run(const Backend& backend, const basic_dist_options<Real>& opts, const response_args<T, Space, Label>& args,
           const response_outputs<T, Space>& outs, workspace ws = {}) noexcept(Backend::is_nothrow) {
    using detail::dist_name;
    if (status s = check(backend, opts, args, outs); !s) return s;
    const std::size_t need = workspace_bytes(backend, opts, args, outs);
    if (status s = detail::check_workspace(dist_name, ws, need); !s) return s;

    const index_t n = args.student.extent(0), c = args.student.extent(1);
    const T tau = static_cast<T>(opts.temperature), beta = static_cast<T>(opts.beta), gamma = static_cast<T>(opts.gamma);
    const bool with_intra = gamma != T(0);
    const detail::dist_state<T> st{detail::to_matrix_ref(args.student),
                                   detail::to_matrix_ref(args.teacher),
                                   detail::dist_scratch<T>::carve(ws.data, n, c),
                                   T(1) / tau,
                                   T(1) / T(c),
                                   beta * tau * tau / T(n),
                                   gamma * tau * tau / T(c)};

    detail::dist_launch(backend, n, detail::dist_row_kernel<T>{st}, st.scratch.row_value);
    const T inter = T(1) - detail::dist_sum(backend, n, st.scratch.row_value) / T(n);
    T intra = T(1);
    if (with_intra) {
        if constexpr (std::is_same_v<Backend, cpu_backend>) {
            detail::dist_columns_on_cpu(st);
        } else {
            detail::dist_launch(backend, c, detail::dist_column_mean_kernel<T>{st}, st.scratch.column_value);
            detail::dist_launch(backend, c, detail::dist_column_kernel<T>{st}, st.scratch.column_value);
        }
        intra -= detail::dist_sum(backend, c, st.scratch.column_value) / T(c);
    }
    const T loss = tau * tau * (beta * inter + gamma * intra);

    const bool want_dtemperature = outs.grad_temperature.bound();
    T dtemperature = T(0);
    if (outs.grad_student.bound() || want_dtemperature) {
        detail::dist_launch(backend, n,
                            detail::dist_gradient_kernel<T>{st, detail::to_matrix_ref(outs.grad_student), with_intra,
                                                            want_dtemperature, outs.grad_scale, outs.accumulate},
                            st.scratch.row_value);
        if (want_dtemperature)
            dtemperature = outs.grad_scale * (T(2) * loss / tau + detail::dist_sum(backend, n, st.scratch.row_value));
    }
    detail::dist_launch(backend, index_t{1},
                        detail::dist_result_writer<T>{loss, dtemperature,
                                                      want_dtemperature ? outs.grad_temperature.data() : nullptr,
                                                      outs.accumulate},
                        outs.loss.data());
    return {};
}

// The same steps on the default backend of the arguments' memory space.
template <class Real, class T, class Space, class Label>
status check_args(const basic_dist_options<Real>& opts, const response_args<T, Space, Label>& args) noexcept {
    return check_args(default_backend_t<Space>{}, opts, args);
}
template <class Real, class T, class Space, class Label>
status check(const basic_dist_options<Real>& opts, const response_args<T, Space, Label>& args,
             const response_outputs<T, Space>& outs) noexcept {
    return check(default_backend_t<Space>{}, opts, args, outs);
}
template <class Real, class T, class Space, class Label>
std::size_t workspace_bytes(const basic_dist_options<Real>& opts, const response_args<T, Space, Label>& args,
                            const response_outputs<T, Space>& outs) noexcept {
    return workspace_bytes(default_backend_t<Space>{}, opts, args, outs);
}
template <class Real, class T, class Space, class Label>
status run(const basic_dist_options<Real>& opts, const response_args<T, Space, Label>& args,
           const response_outputs<T, Space>& outs, workspace ws = {}) noexcept(default_backend_t<Space>::is_nothrow) {
    return run(default_backend_t<Space>{}, opts, args, outs, ws);
}

/// The convenience function object: dist(student, teacher[, opts]) and dist(backend, student, teacher[, opts]).
/// Returns a loss_result (loss, grad_student, grad_temperature); throws distill::error on bad input
/// (with exceptions disabled, returns the status in the result instead).
struct dist_loss_fn {
    template <backend_object Backend, real_tensor S, real_tensor Tt, class Real = double>
    auto operator()(const Backend& backend, const S& student, const Tt& teacher,
                    const basic_dist_options<Real>& opts = {}) const {
        const auto args = make_response_args(student, teacher);
        return detail::run_owning(
            backend, args, reduction::batchmean, true, [&] { return check_args(backend, opts, args); },
            [&](const auto& outs) { return workspace_bytes(backend, opts, args, outs); },
            [&](const auto& outs, workspace ws) { return run(backend, opts, args, outs, ws); });
    }
    template <real_tensor S, real_tensor Tt, class Real = double>
    auto operator()(const S& student, const Tt& teacher, const basic_dist_options<Real>& opts = {}) const {
        return (*this)(default_backend_t<memory_space_t<S>>{}, student, teacher, opts);
    }
};

/// dist(student, teacher[, opts]): DIST loss, d loss / d student and d loss / d T.
inline constexpr dist_loss_fn dist{};

}  // namespace distill
