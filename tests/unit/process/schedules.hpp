// tests/unit/process/schedules.hpp: the temperature and weight schedules (include/distill/process/
// schedule.hpp); included by core_test.cpp. Values at chosen steps, computed by hand; the
// constexpr ones are also checked at compile time.
#pragma once

#include <distill/process/schedule.hpp>

#include <cmath>

namespace schedule_test {

// Compile-time use (the schedules are constexpr).
static_assert(distill::linear_schedule<>{0.0, 1.0, 20.0}(10.0) == 0.5);
static_assert(distill::constant_schedule<float>{4.0f}(123.0) == 4.0f);
static_assert(distill::step_schedule<>{1.0, 0.5, 10.0}(25.0) == 0.25);
static_assert(distill::cosine_schedule<>{8.0, 1.0, 100.0}(0.0) == 8.0);

}  // namespace schedule_test

TEST_CASE("schedules: values at chosen steps") {
    using doctest::Approx;
    // Linear ramp, clamped at both ends.
    const distill::linear_schedule<> ramp{0.0, 1.0, 20.0};
    CHECK(ramp(-3) == 0.0);
    CHECK(ramp(5) == Approx(0.25));
    CHECK(ramp(20) == 1.0);
    CHECK(ramp(400) == 1.0);
    // Cosine from 8 to 1 over 100 steps: half way is the mean, a quarter is 1 + 7 (1 + cos(pi/4)) / 2.
    const distill::cosine_schedule<> anneal{8.0, 1.0, 100.0};
    CHECK(anneal(50) == Approx(4.5).epsilon(1e-14));
    CHECK(anneal(25) == Approx(1.0 + 3.5 * (1.0 + std::cos(3.14159265358979323846 / 4))).epsilon(1e-14));
    CHECK(anneal(100) == Approx(1.0).epsilon(1e-14));
    CHECK(anneal(1000) == Approx(1.0).epsilon(1e-14));
    for (int k = -20; k <= 20; ++k)  // the constexpr cosine against std::cos over several turns
        CHECK(distill::detail::schedule_cos(0.37 * k) == Approx(std::cos(0.37 * k)).epsilon(1e-13));
    // Step decay: x0.1 every 30 steps.
    const distill::step_schedule<> steps{1.0, 0.1, 30.0};
    CHECK(steps(29.9) == 1.0);
    CHECK(steps(30) == Approx(0.1));
    CHECK(steps(95) == Approx(0.001));
    // Exponential per whole step.
    const distill::exponential_schedule<> decay{2.0, 0.5};
    CHECK(decay(0) == 2.0);
    CHECK(decay(3.7) == Approx(0.25));
    // A warm-up from 0 into the step decay: linear for 5 steps, then the decay shifted by 5.
    const auto warm = distill::warmup(5.0, 0.0, steps);
    CHECK(warm(0) == 0.0);
    CHECK(warm(2.5) == Approx(0.5));
    CHECK(warm(5) == 1.0);
    CHECK(warm(35) == Approx(0.1));
    // Piecewise linear between knots, constant outside.
    const distill::piecewise_schedule<3> knots{{0.0, 10.0, 20.0}, {1.0, 3.0, 2.0}};
    CHECK(knots(-1) == 1.0);
    CHECK(knots(5) == Approx(2.0));
    CHECK(knots(15) == Approx(2.5));
    CHECK(knots(25) == 2.0);
}

TEST_CASE("schedules: the process recipes of DKD and annealing KD") {
    using doctest::Approx;
    // DKD (mdistiller): the KD weight beta * min(epoch / warmup, 1), warmup = 20, beta = 8.
    const auto dkd_weight = distill::scaled(distill::linear_schedule<>{0.0, 1.0, 20.0}, 8.0);
    CHECK(dkd_weight(0) == 0.0);
    CHECK(dkd_weight(5) == Approx(2.0));
    CHECK(dkd_weight(20) == 8.0);
    CHECK(dkd_weight(240) == 8.0);
    // Annealing KD: a float temperature decaying linearly from 8 to 1 over 10 epochs feeds the
    // float options of a loss.
    const distill::linear_schedule<float> temperature{8.0f, 1.0f, 10.0};
    distill::kd_float_options opts;
    opts.temperature = temperature(4);
    CHECK(opts.temperature == Approx(5.2f));
    opts.temperature = temperature(12);
    CHECK(opts.temperature == 1.0f);
}
