// distill/losses/response/logit_mse.hpp: logit regression, the mean squared difference of logits.
//
// L. J. Ba, R. Caruana, "Do Deep Nets Really Need to be Deep?", NeurIPS 2014;
// T. Kim, J. Oh, N. Kim, S. Cho, S.-Y. Yun, "Comparing Kullback-Leibler Divergence and Mean
// Squared Error Loss in Knowledge Distillation", IJCAI 2021 (mse_logit = nn.MSELoss()).
//
// No temperature: the student regresses the teacher's raw logits. For row i with C classes
//
//     L_i = (1/C) sum_c (s_c - t_c)^2,      dL/d s_c = 2 w_i (s_c - t_c) / C
//
// (s = student_i, t = teacher_i, w_i the row's weight scaled for the reduction). batchmean with
// no weights and no labels is F.mse_loss(student, teacher), the mean over all N C elements;
// Ba & Caruana's 1/(2N) sum_i ||s_i - t_i||^2 is C/2 times this loss.
//
// Cost: O(N C) time, one read of each row, O(1) extra memory per row.
// Masked logits: an entry that is -inf in both student and teacher (a vocabulary entry masked on
// both sides) contributes 0 to the loss and gets gradient 0 (C still counts it); an entry that is
// -inf on one side only is an infinite difference and makes the loss +inf.
#pragma once

#include <cstdint>

#include "driver.hpp"

namespace distill {

/// Parameters of logit_mse. Real is unused (there is no real parameter); it keeps the options a
/// template like those of the other response methods, so that response_loss_fn applies.
template <class Real>
struct basic_logit_mse_options {
    reduction reduce = reduction::batchmean;  ///< batchmean, sum or none
    std::int64_t ignore_index = -100;         ///< rows whose label equals this get weight 0
};
using logit_mse_options = basic_logit_mse_options<double>;
using logit_mse_float_options = basic_logit_mse_options<float>;

namespace detail {

/// The logit_mse row kernel: loss and gradient row of row i in one pass.
template <class T, class Label>
struct logit_mse_row_kernel {
    row_context<T, Label> ctx;

    DISTILL_HD row_result<T> operator()(index_t i) const noexcept {
        const T w = ctx.row_scale(i);
        if (w == T(0)) {
            ctx.zero_grad_row(i);
            return {};
        }
        const index_t cols = ctx.student.cols, cs = ctx.student.col_stride, ct = ctx.teacher.col_stride;
        const T* s = ctx.student.row(i);
        const T* t = ctx.teacher.row(i);
        T* g = ctx.grad.present() ? ctx.grad.row(i) : nullptr;
        const index_t cg = ctx.grad.col_stride;
        const T inv_cols = T(1) / T(cols);
        const T gscale = T(2) * w * inv_cols * ctx.grad_factor;
        T squares = 0;
        for (index_t c = 0; c < cols; ++c) {
            const T sc = s[c * cs], tc = t[c * ct];
            // Both masked: no difference (-inf - -inf would be NaN).
            const T d = sc == tc ? T(0) : sc - tc;
            squares += d * d;
            if (g) ctx.put_grad(g[c * cg], gscale * d);
        }
        row_result<T> r;
        r.value = w * squares * inv_cols;
        return r;
    }
};

}  // namespace detail

template <class Real>
struct response_method<basic_logit_mse_options<Real>> {
    using options = basic_logit_mse_options<Real>;
    static constexpr const char* name = "logit_mse";
    static constexpr bool has_temperature = false;
    static constexpr bool needs_teacher = true;
    static constexpr bool labels_required = false;
    static constexpr const char* min_classes_reason = "";
    static constexpr index_t min_classes(const options&) noexcept { return 1; }
    static status check_params(const options& o) noexcept { return detail::check_reduction(name, o.reduce); }
    template <class T, class Label>
    static detail::logit_mse_row_kernel<T, Label> kernel(const options&, const row_context<T, Label>& ctx) noexcept {
        return {ctx};
    }
};

/// logit_mse(student, teacher[, labels[, weight]][, opts]): loss and d loss / d student
/// (the result's grad_temperature stays 0: there is no temperature).
inline constexpr response_loss_fn<basic_logit_mse_options> logit_mse{};

}  // namespace distill
