// distill/process/schedule.hpp: schedules for the temperature and the loss weights.
//
// The process side of distillation (Gou et al. 2021, section 5): a temperature or a loss weight
// that changes during training. A schedule is a small constexpr value type with
//
//     Real operator()(double step) const      // the value at a (fractional) step or epoch
//
// usable on the host and in device code (DISTILL_HD), and composable: warmup(steps, start, next)
// ramps linearly into another schedule, piecewise interpolates between knots. Steps before 0
// count as 0. Examples:
//
//   DKD's warm-up of the KD weight (mdistiller): min(epoch / 20, 1) * beta
//       distill::scaled(distill::linear_schedule<>{0.0, 1.0, 20.0}, beta)
//   annealing KD (a teacher temperature that decays from 8 to 1 over training):
//       distill::cosine_schedule<>{8.0, 1.0, total_epochs}
//   a warm-up, then a step decay:
//       distill::warmup(5.0, 0.0, distill::step_schedule<>{1.0, 0.1, 30.0})
// (The `<>` picks Real = double; clang 14 has no class template argument deduction for
// aggregates.)
//
// Only the schedules live here; the training loop asks them for the value of the current step.
#pragma once

#include <cstddef>

#include "../core/config.hpp"

namespace distill {

namespace detail {

inline constexpr double schedule_pi = 3.14159265358979323846;

/// cos(x) for the schedules, constexpr (std::cos is not before C++26): reduced to [-pi, pi], then a
/// Taylor series to 1e-16.
DISTILL_HD constexpr double schedule_cos(double x) noexcept {
    const double two_pi = 2 * schedule_pi;
    const long long turns = static_cast<long long>(x / two_pi);
    x -= static_cast<double>(turns) * two_pi;
    if (x > schedule_pi) x -= two_pi;
    if (x < -schedule_pi) x += two_pi;
    double term = 1, sum = 1;
    const double x2 = x * x;
    for (int k = 1; k < 30; ++k) {
        term *= -x2 / static_cast<double>((2 * k - 1) * (2 * k));
        sum += term;
    }
    return sum;
}

/// base^n for integer n >= 0 (constexpr; exact products).
DISTILL_HD constexpr double schedule_pow(double base, long long n) noexcept {
    double result = 1;
    while (n > 0) {
        if (n & 1) result *= base;
        base *= base;
        n >>= 1;
    }
    return result;
}

/// The fraction of a ramp of `steps` done at `step`, in [0, 1] (a ramp of 0 steps is done).
DISTILL_HD constexpr double ramp_fraction(double step, double steps) noexcept {
    if (!(steps > 0)) return 1;
    const double f = step / steps;
    return f < 0 ? 0 : (f > 1 ? 1 : f);
}

}  // namespace detail

/// The same value at every step.
template <class Real = double>
struct constant_schedule {
    Real value = 1;
    DISTILL_HD constexpr Real operator()(double) const noexcept { return value; }
};

/// From `start` to `end` linearly over `steps`, then `end`.
template <class Real = double>
struct linear_schedule {
    Real start = 0, end = 1;
    double steps = 1;
    DISTILL_HD constexpr Real operator()(double step) const noexcept {
        const double f = detail::ramp_fraction(step, steps);
        return static_cast<Real>(static_cast<double>(start) + (static_cast<double>(end) - static_cast<double>(start)) * f);
    }
};

/// From `start` to `end` along half a cosine over `steps` (SGDR / cosine decay), then `end`.
template <class Real = double>
struct cosine_schedule {
    Real start = 1, end = 0;
    double steps = 1;
    DISTILL_HD constexpr Real operator()(double step) const noexcept {
        const double f = detail::ramp_fraction(step, steps);
        const double s = static_cast<double>(start), e = static_cast<double>(end);
        return static_cast<Real>(e + (s - e) * 0.5 * (1 + detail::schedule_cos(detail::schedule_pi * f)));
    }
};

/// start * factor^floor(step / every): a step decay (every > 0).
template <class Real = double>
struct step_schedule {
    Real start = 1, factor = 0.1;
    double every = 1;
    DISTILL_HD constexpr Real operator()(double step) const noexcept {
        if (!(every > 0) || step < 0) return start;
        const auto k = static_cast<long long>(step / every);
        return static_cast<Real>(static_cast<double>(start) * detail::schedule_pow(static_cast<double>(factor), k));
    }
};

/// start * rate^floor(step): an exponential decay per whole step (rate in (0, 1] decays).
template <class Real = double>
struct exponential_schedule {
    Real start = 1, rate = 0.9;
    DISTILL_HD constexpr Real operator()(double step) const noexcept {
        if (step < 0) return start;
        return static_cast<Real>(static_cast<double>(start) *
                                 detail::schedule_pow(static_cast<double>(rate), static_cast<long long>(step)));
    }
};

/// Linear from `start` to next(0) over `steps`, then next(step - steps): a warm-up followed by
/// another schedule.
template <class Next>
struct warmup_schedule {
    double steps = 0;
    double start = 0;
    Next next{};
    DISTILL_HD constexpr auto operator()(double step) const noexcept {
        using R = decltype(next(0.0));
        if (step >= steps) return next(step - steps);
        const double f = detail::ramp_fraction(step, steps);
        return static_cast<R>(start + (static_cast<double>(next(0.0)) - start) * f);
    }
};
template <class Next>
DISTILL_HD constexpr warmup_schedule<Next> warmup(double steps, double start, Next next) noexcept {
    return {steps, start, next};
}

/// factor * inner(step): a schedule of a weight from a shape (e.g. DKD's min(epoch / w, 1) * beta).
template <class Inner, class Real = double>
struct scaled_schedule {
    Inner inner{};
    Real factor = 1;
    DISTILL_HD constexpr auto operator()(double step) const noexcept { return static_cast<Real>(inner(step) * factor); }
};
template <class Inner, class Real>
DISTILL_HD constexpr scaled_schedule<Inner, Real> scaled(Inner inner, Real factor) noexcept {
    return {inner, factor};
}

/// Linear interpolation between knots (step_i, value_i) with increasing steps; constant before the
/// first and after the last knot.
template <std::size_t Knots, class Real = double>
struct piecewise_schedule {
    static_assert(Knots >= 1, "a piecewise schedule needs a knot");
    double steps[Knots] = {};
    Real values[Knots] = {};
    DISTILL_HD constexpr Real operator()(double step) const noexcept {
        if (step <= steps[0]) return values[0];
        for (std::size_t i = 1; i < Knots; ++i)
            if (step < steps[i]) {
                const double f = (step - steps[i - 1]) / (steps[i] - steps[i - 1]);
                const double a = static_cast<double>(values[i - 1]), b = static_cast<double>(values[i]);
                return static_cast<Real>(a + (b - a) * f);
            }
        return values[Knots - 1];
    }
};

}  // namespace distill
