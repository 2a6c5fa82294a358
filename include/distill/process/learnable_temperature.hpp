// distill/process/learnable_temperature.hpp: a temperature learned adversarially, with a
// curriculum on the adversary's strength.
//
// Z. Li, X. Li, L. Yang, B. Zhao, R. Song, L. Luo, J. Li, J. Yang, "Curriculum Temperature for
// Knowledge Distillation", AAAI 2023 (arXiv:2211.16231; code: github.com/zhengli97/CTKD).
//
// CTKD's global temperature (its Global_T module) is one trained scalar theta, mapped to
//
//     T(theta) = t_min + t_span * sigmoid(theta)          (CTKD: --t_start 1 --t_end 20)
//
// so T stays in (t_min, t_min + t_span) = (1, 21) without clipping; CTKD initialises theta = 1
// (T = 1 + 20 sigmoid(1) = 15.62). The student minimises the distillation loss L while theta
// *maximises* it: a gradient-reversal layer (Ganin & Lempitsky 2015) between theta and the loss
// multiplies the gradient reaching theta by -lambda, so an optimizer that descends gives theta
//
//     g = -lambda(e) * dL/dT * dT/dtheta,    dT/dtheta = t_span * sigmoid(theta) (1 - sigmoid(theta))
//
// (gradient ascent on L with rate lambda(e) * learning_rate). The adversary's strength follows a
// curriculum, easy to hard: lambda(e) rises from 0 to lambda_max along half a cosine over the
// first `epochs` epochs (CTKD's CosineDecay with --decay_max 0 --decay_min -1 --decay_loops 10:
// its value is the GRL factor -lambda), i.e. cosine_schedule<>{0, lambda_max, epochs}. Any
// schedule of process/schedule.hpp can replace it.
//
// dL/dT is what every tempered loss of distill already returns (loss_result::grad_temperature,
// response_outputs::grad_temperature); for a weighted sum of terms that share T (alpha * kd +
// beta * dkd, as CTKD does with --distill dkd), pass the same weighted sum of their d/dT.
//
// CTKD trains theta with the student's optimizer (SGD, momentum 0.9, weight decay 5e-4, the
// student's learning rate); apply_gradient() is that SGD step (momentum and weight decay are
// members, 0 by default), or reversed_gradient() hands g to your own optimizer. CTKD's
// instance-wise temperature (a small MLP predicting T per sample) is out of scope here: it needs
// per-row temperatures in the losses.
#pragma once

#include "../core/config.hpp"
#include "../core/status.hpp"
#include "../detail/math.hpp"
#include "schedule.hpp"

namespace distill {

/// CTKD's curriculum on the gradient-reversal strength: 0 -> lambda_max along half a cosine over
/// `epochs` (CTKD: lambda_max = 1, epochs = 10), then lambda_max.
template <class Real = double>
DISTILL_HD constexpr cosine_schedule<Real> ctkd_curriculum(Real lambda_max = Real(1), double epochs = 10) noexcept {
    return {Real(0), lambda_max, epochs};
}

namespace detail {
/// The curriculum a learnable temperature starts with: CTKD's for a cosine schedule, the
/// schedule's own default otherwise.
template <class Curriculum>
struct default_curriculum {
    static constexpr Curriculum make() noexcept { return Curriculum{}; }
};
template <class Real>
struct default_curriculum<cosine_schedule<Real>> {
    static constexpr cosine_schedule<Real> make() noexcept { return ctkd_curriculum<Real>(); }
};

/// sigmoid(x) and sigmoid(x) (1 - sigmoid(x)) from one exp(-|x|): neither overflows, and the
/// derivative keeps its relative accuracy where 1 - sigmoid(x) would cancel.
template <class Real>
struct sigmoid_pair {
    Real value, slope;
};
template <class Real>
DISTILL_HD inline sigmoid_pair<Real> sigmoid_with_slope(Real x) noexcept {
    const Real e = detail::exp(x < Real(0) ? x : -x);  // in (0, 1]
    const Real inv = Real(1) / (Real(1) + e);
    return {x < Real(0) ? e * inv : inv, e * inv * inv};
}
}  // namespace detail

/// A learnable (global) temperature trained with gradient reversal, as in CTKD. A small value
/// type: the parameter theta (`raw`), the mapping's range, the curriculum on lambda and the
/// state of its SGD step. Real is float or double; Curriculum is any schedule (operator()(double)).
///
///     distill::learnable_temperature temp;                    // CTKD's defaults: T in (1, 21), T0 = 15.62
///     for (int epoch = 0; epoch < epochs; ++epoch)
///         for (batch ...) {
///             const auto r = distill::kd(student, teacher, distill::kd_options{.temperature = temp.temperature()});
///             // ... student update from r.grad_student ...
///             temp.apply_gradient(r, epoch, learning_rate);  // ascends r.loss in T
///         }
template <class Real = double, class Curriculum = cosine_schedule<Real>>
struct basic_learnable_temperature {
    using real_type = Real;
    using curriculum_type = Curriculum;

    Real raw = 1;       ///< theta, the trained parameter (CTKD initialises it to 1)
    Real t_min = 1;     ///< lower end of T (CTKD --t_start), > 0
    Real t_span = 20;   ///< width of T's range (CTKD --t_end): T in (t_min, t_min + t_span)
    Curriculum curriculum = detail::default_curriculum<Curriculum>::make();  ///< lambda(step)
    Real momentum = 0;      ///< SGD momentum of apply_gradient, in [0, 1) (CTKD: 0.9, the student's)
    Real weight_decay = 0;  ///< L2 factor on theta in apply_gradient, >= 0 (CTKD: 5e-4)
    Real velocity = 0;      ///< apply_gradient's momentum buffer (state; starts at 0)

    /// The temperature to pass to a tempered loss: t_min + t_span * sigmoid(raw).
    DISTILL_HD Real temperature() const noexcept {
        return t_min + t_span * detail::sigmoid_with_slope(raw).value;
    }
    /// dT / d raw = t_span * sigmoid(raw) (1 - sigmoid(raw)) (> 0; 0 only where sigmoid saturates).
    DISTILL_HD Real dtemperature_draw() const noexcept { return t_span * detail::sigmoid_with_slope(raw).slope; }
    /// The gradient-reversal strength at a step or epoch: curriculum(step), >= 0 for CTKD's.
    DISTILL_HD constexpr Real lambda(double step) const noexcept { return static_cast<Real>(curriculum(step)); }

    /// d loss / d raw by the chain rule, without reversal (dloss_dtemperature: a loss's grad_temperature).
    DISTILL_HD Real raw_gradient(Real dloss_dtemperature) const noexcept {
        return dloss_dtemperature * dtemperature_draw();
    }
    /// What a descending optimizer must apply to raw: -lambda(step) * d loss / d raw (the
    /// gradient-reversal layer). Descending it ascends the loss in T.
    DISTILL_HD Real reversed_gradient(Real dloss_dtemperature, double step) const noexcept {
        return -lambda(step) * raw_gradient(dloss_dtemperature);
    }
    /// One SGD step on raw with the reversed gradient, as torch.optim.SGD does it:
    ///   g = reversed_gradient + weight_decay * raw;  velocity = momentum * velocity + g;  raw -= learning_rate * velocity.
    DISTILL_HD void apply_gradient(Real dloss_dtemperature, double step, Real learning_rate) noexcept {
        const Real g = reversed_gradient(dloss_dtemperature, step) + weight_decay * raw;
        velocity = momentum * velocity + g;
        raw -= learning_rate * velocity;
    }

    /// The same from a loss result (anything with a grad_temperature member, e.g. distill::kd's
    /// loss_result): `weight` is the loss's factor in the total objective (CTKD: alpha = 0.9).
    template <class Result>
        requires requires(const Result& r) { static_cast<Real>(r.grad_temperature); }
    DISTILL_HD Real reversed_gradient(const Result& result, double step, Real weight = Real(1)) const noexcept {
        return reversed_gradient(weight * static_cast<Real>(result.grad_temperature), step);
    }
    template <class Result>
        requires requires(const Result& r) { static_cast<Real>(r.grad_temperature); }
    DISTILL_HD void apply_gradient(const Result& result, double step, Real learning_rate, Real weight = Real(1)) noexcept {
        apply_gradient(weight * static_cast<Real>(result.grad_temperature), step, learning_rate);
    }

    /// Sets raw so that temperature() == t (inverse of the mapping), for a chosen starting
    /// temperature; t must lie strictly inside (t_min, t_min + t_span). Leaves raw unchanged on error.
    status set_temperature(Real t) noexcept {
        if (status s = check(); !s) return s;
        if (!(t > t_min && t < t_min + t_span))
            return status::error(errc::invalid_parameter, "temperature")
                .text("learnable_temperature: temperature = ").real(t)
                .text(" is outside (").real(t_min).text(", ")
                .real(t_min + t_span).text(")");
        const Real u = (t - t_min) / t_span;
        raw = detail::log(u) - detail::log1p(-u);  // logit(u)
        return {};
    }

    /// The parameters: t_min and t_span finite and > 0, raw and velocity finite, momentum in
    /// [0, 1), weight_decay finite and >= 0. The training loop can then run without checks.
    status check() const noexcept {
        const auto bad = [](const char* name, Real value, const char* rule) {
            return status::error(errc::invalid_parameter, name).text("learnable_temperature: ").text(name).text(" = ")
                .real(value).text(" must be ").text(rule);
        };
        if (!(t_min > Real(0)) || !detail::is_finite(t_min)) return bad("t_min", t_min, "finite and > 0");
        if (!(t_span > Real(0)) || !detail::is_finite(t_span)) return bad("t_span", t_span, "finite and > 0");
        if (!detail::is_finite(t_min + t_span)) return bad("t_span", t_span, "such that t_min + t_span is finite");
        if (!detail::is_finite(raw)) return bad("raw", raw, "finite");
        if (!(momentum >= Real(0) && momentum < Real(1))) return bad("momentum", momentum, "in [0, 1)");
        if (!(weight_decay >= Real(0)) || !detail::is_finite(weight_decay))
            return bad("weight_decay", weight_decay, "finite and >= 0");
        if (!detail::is_finite(velocity)) return bad("velocity", velocity, "finite");
        return {};
    }
};

/// CTKD's global learnable temperature in double / float, with its cosine curriculum on lambda.
using learnable_temperature = basic_learnable_temperature<double>;
using learnable_temperature_float = basic_learnable_temperature<float>;

}  // namespace distill
