// distill/process/objective.hpp: a training objective as a weighted sum of loss terms whose
// weights follow schedules, with every term's gradient accumulated into the caller's buffers.
//
//     L = sum_k w_k(step) L_k,     dL/dx = sum_k w_k(step) dL_k/dx   for each student input x
//
// A term is any loss's run step (response, top-k, dist, feature and relation methods): its
// options, its arguments, and outputs naming where its gradients go. The objective sets the
// outputs' grad_scale to the term's weight and, for a gradient buffer an earlier term of the same
// step has written, accumulate: the first term that writes a buffer overwrites it and later terms
// add into it, so the buffers need no zeroing and no term's gradient is copied (response losses
// add in their own gradient pass; feature losses compute theirs in workspace and add it in one
// pass, see feature_outputs::accumulate).
//
//     distill::objective<float> objective(epoch, distill::workspace{scratch, scratch_bytes});
//     objective.add(1.0, distill::ce_float_options{}, ce_args, {.grad_student = grad_logits});
//     objective.add(dkd_weight, dkd_opts, dkd_args, {.grad_student = grad_logits});   // a schedule
//     objective.add(0.5, hint_opts, hint_args, {.grad_student = grad_features});
//     if (!objective.ok()) report(objective.status());
//     const float total = objective.total();
//
// A weight is a number or any schedule (process/schedule.hpp), called with the step. A term that
// fails its checks writes nothing and leaves the total alone; the objective keeps the first such
// status (ok(), status()) and its add() returns it too. Terms whose loss output is left unbound
// report into the objective's own slot (host memory only; on a device pass a 1-value loss view).
// The workspace given at construction serves every term in turn: size it as the largest
// distill::workspace_bytes of a term with accumulate = true.
//
// Allocation-free: the objective tracks at most max_buffers gradient buffers per step. check, run
// and workspace_bytes are found by argument-dependent lookup when a term is added, so the
// objective works with the losses of any header included before or after this one.
#pragma once

#include <cstddef>
#include <span>
#include <type_traits>

#include "../core/backend.hpp"
#include "../core/status.hpp"
#include "../core/view.hpp"
#include "../detail/math.hpp"
#include "../knowledge/elementwise.hpp"
#include "../losses/response/common.hpp"  // detail::method_error

namespace distill {

namespace detail {
/// for_each body: element i of a view set to 0.
template <class T>
struct zero_elements {
    element_ref<T> out;
    DISTILL_HD void operator()(index_t i) const noexcept { out[i] = T(0); }
};
}  // namespace detail

template <class T, class Space = host_space>
class objective {
public:
    /// The most distinct gradient buffers (student inputs, temperatures, layers) one step tracks.
    static constexpr int max_buffers = 32;
    /// The most terms whose values are kept for term_loss().
    static constexpr int max_terms = 32;

    /// An objective at `step` (an epoch or an iteration: what the weight schedules take), with
    /// `ws` as the terms' workspace.
    explicit objective(double step, workspace ws = {}) noexcept : step_(step), workspace_(ws) {}

    double step() const noexcept { return step_; }
    /// Sum of the weighted losses of the terms that ran.
    T total() const noexcept { return total_; }
    /// Unweighted loss of term k (in the order added; 0 for a term that failed).
    T term_loss(int k) const noexcept { return k >= 0 && k < terms_ && k < max_terms ? term_losses_[k] : T(0); }
    /// Weight of term k at this step.
    T term_weight(int k) const noexcept { return k >= 0 && k < terms_ && k < max_terms ? term_weights_[k] : T(0); }
    int terms() const noexcept { return terms_; }
    bool ok() const noexcept { return status_.ok(); }
    /// The first failure of this step (ok when every term ran).
    const distill::status& status() const noexcept { return status_; }

    /// The weight of a term at this step: a number, or a schedule's value.
    template <class Weight>
    T weight_at(const Weight& weight) const noexcept {
        if constexpr (std::is_arithmetic_v<Weight>) return static_cast<T>(weight);
        else return static_cast<T>(weight(step_));
    }

    /// Runs one term: weight(step) * loss, its gradients added into `outs`' buffers.
    template <class Backend, class Weight, class Options, class Args, class Outs>
    distill::status add(const Backend& backend, const Weight& weight, const Options& opts, const Args& args,
                        Outs outs) noexcept(Backend::is_nothrow) {
        const T w = weight_at(weight);
        const int index = terms_++;
        if (index < max_terms) {
            term_losses_[index] = T(0);
            term_weights_[index] = w;
        }
        if (!detail::is_finite(w)) {
            return remember(detail::method_error(errc::invalid_parameter, "objective", "weight")
                                .text("weight of term ").number(index).text(" is ").real(w)
                                .text(" at step ").real(step_));
        }
        const bool own_loss = !outs.loss.bound();
        if (own_loss) {
            if constexpr (std::is_same_v<Space, host_space>) {
                outs.loss = any_view<T, Space>(make_view(&loss_slot_, 1));
            } else {
                return remember(detail::method_error(errc::missing_argument, "objective", "loss")
                                    .text("a term on device memory needs a 1-value loss output"));
            }
        }
        outs.grad_scale = w;
        // The first term to write a buffer overwrites it, later ones add. A call that writes some
        // buffers for the first time and adds to others (ce on the logits, then kd on the logits and
        // the temperature) has its new buffers zeroed once it has passed its checks.
        int fresh = 0, old = 0;
        for_each_gradient(outs, [&](const void* p) { (seen(p) ? old : fresh) += 1; });
        if (buffers_ + fresh > max_buffers)
            return remember(detail::method_error(errc::invalid_parameter, "objective", "outputs")
                                .text("more than ").number(max_buffers).text(" gradient buffers in one step"));
        outs.accumulate = old > 0;
        if (distill::status s = check(backend, opts, args, outs); !s) return remember(s);
        if (const std::size_t need = workspace_bytes(backend, opts, args, outs); need > workspace_.bytes)
            return remember(detail::method_error(errc::workspace_too_small, "objective", "workspace")
                                .text("term ").number(index).text(" needs ").number(static_cast<std::int64_t>(need))
                                .text(" bytes of workspace but the objective has ")
                                .number(static_cast<std::int64_t>(workspace_.bytes)));
        if (outs.accumulate && fresh > 0)
            for_each_gradient_view(outs, [&](const any_view<T, Space>& v) {
                if (!seen(v.data())) backend.for_each(v.size(), detail::zero_elements<T>{detail::to_element_ref(v)});
            });
        if (distill::status s = run(backend, opts, args, outs, workspace_); !s) return remember(s);
        for_each_gradient(outs, [&](const void* p) {
            if (!seen(p)) buffers_seen_[buffers_++] = p;
        });
        const T value = Backend::load(outs.loss.data());
        if (index < max_terms) term_losses_[index] = value;
        total_ += w * value;
        return {};
    }

    /// The same on the default backend of the arguments' memory space.
    template <class Weight, class Options, class Args, class Outs>
    distill::status add(const Weight& weight, const Options& opts, const Args& args, Outs outs) noexcept(
        default_backend_t<Space>::is_nothrow) {
        return add(default_backend_t<Space>{}, weight, opts, args, outs);
    }

private:
    bool seen(const void* p) const noexcept {
        for (int k = 0; k < buffers_; ++k)
            if (buffers_seen_[k] == p) return true;
        return false;
    }
    distill::status remember(distill::status s) noexcept {
        if (status_.ok()) status_ = s;
        return s;
    }
    /// f(address) for every bound gradient output of a term (response or feature outputs).
    template <class Outs, class F>
    static void for_each_gradient(const Outs& outs, F&& f) noexcept {
        for_each_gradient_view(outs, [&](const any_view<T, Space>& v) { f(static_cast<const void*>(v.data())); });
    }
    /// f(view) for every bound gradient output of a term.
    template <class Outs, class F>
    static void for_each_gradient_view(const Outs& outs, F&& f) noexcept {
        const auto visit = [&](const any_view<T, Space>& v) {
            if (v.bound() && v.data() != nullptr) f(v);
        };
        visit(outs.grad_student);
        if constexpr (requires { outs.grad_temperature; }) visit(outs.grad_temperature);
        if constexpr (requires { outs.grad_alpha; }) visit(outs.grad_alpha);
        if constexpr (requires { outs.grad_student_layers; })
            for (const auto& v : outs.grad_student_layers) visit(v);
    }

    double step_;
    workspace workspace_;
    T total_ = T(0);
    T loss_slot_ = T(0);
    int terms_ = 0;
    int buffers_ = 0;
    const void* buffers_seen_[max_buffers] = {};
    T term_losses_[max_terms] = {};
    T term_weights_[max_terms] = {};
    distill::status status_{};
};

}  // namespace distill
