// tests/unit/schemes/learnable_temperature.hpp: CTKD's learnable temperature
// (include/distill/process/learnable_temperature.hpp); included by schemes_test.cpp.
// The lambda curriculum against CTKD's CosineDecay written out here, the parameterisation and its
// inverse, the reversed gradient's sign and magnitude, the SGD step by hand, d loss / d raw through
// the parameterisation by finite differences (kd alone, and kd + dkd sharing T as CTKD runs it),
// and a few steps on a fixed pair that must ascend the KD loss and keep T in its range.
#pragma once

#include <distill/process/learnable_temperature.hpp>

#include <cmath>
#include <vector>

namespace learnable_temperature_test {

// Compile-time use: the curriculum and the defaults are constexpr.
constexpr distill::learnable_temperature ctkd_default{};
static_assert(ctkd_default.lambda(0.0) == 0.0);
static_assert(ctkd_default.lambda(-4.0) == 0.0);
static_assert(ctkd_default.lambda(5.0) > 0.5 - 1e-12 && ctkd_default.lambda(5.0) < 0.5 + 1e-12);
static_assert(ctkd_default.raw == 1.0 && ctkd_default.t_min == 1.0 && ctkd_default.t_span == 20.0);
static_assert(distill::ctkd_curriculum<float>(2.0f, 4.0)(4.0) > 1.99999f);

/// CTKD's CosineDecay(max_value, min_value, num_loops).get_value(i) (train_student.py), as written there.
inline double ctkd_cosine_decay(double max_value, double min_value, double num_loops, double i) {
    if (i < 0) i = 0;
    if (i >= num_loops) i = num_loops;
    const double value = (std::cos(i * 3.14159265358979323846 / num_loops) + 1.0) * 0.5;
    return value * (max_value - min_value) + min_value;
}

inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

/// A fixed 6 x 5 student/teacher pair (the student is not the teacher, so the KD loss moves with T).
struct pair {
    static constexpr distill::index_t n = 6, c = 5;
    std::vector<double> student = distill_test::random_values<double>(n * c, 4101, -2.0, 2.0);
    std::vector<double> teacher = distill_test::random_values<double>(n * c, 4102, -4.0, 4.0);
    std::vector<std::int64_t> labels = {0, 1, 2, 3, 4, 0};
    auto s() const { return distill::make_view(student.data(), n, c); }
    auto t() const { return distill::make_view(teacher.data(), n, c); }
    auto y() const { return distill::make_view(labels.data(), n); }
};

}  // namespace learnable_temperature_test

TEST_CASE("learnable_temperature: the lambda curriculum is CTKD's cosine, 0 -> lambda_max") {
    using learnable_temperature_test::ctkd_cosine_decay;
    const distill::learnable_temperature temp;  // CTKD: --decay_max 0 --decay_min -1 --decay_loops 10
    // CTKD's GRL multiplies the gradient by get_value(epoch) = -lambda(epoch).
    for (double epoch : {0.0, 1.0, 2.5, 5.0, 7.0, 9.5, 10.0, 11.0, 240.0})
        DISTILL_CHECK_CLOSE(temp.lambda(epoch), -ctkd_cosine_decay(0.0, -1.0, 10.0, epoch), 1e-13, 1e-15);
    CHECK(temp.lambda(0) == 0.0);
    DISTILL_CHECK_CLOSE(temp.lambda(1), (1 - std::cos(3.14159265358979323846 / 10)) / 2, 1e-13, 0);  // 0.02447
    DISTILL_CHECK_CLOSE(temp.lambda(5), 0.5, 1e-13, 0);
    DISTILL_CHECK_CLOSE(temp.lambda(10), 1.0, 1e-13, 0);
    CHECK(temp.lambda(30) == temp.lambda(10));
    // Increasing over the ramp (easy to hard).
    for (int e = 0; e < 10; ++e) CHECK(temp.lambda(e + 1) > temp.lambda(e));

    // Another maximum and length, in float.
    const distill::learnable_temperature_float f{.curriculum = distill::ctkd_curriculum<float>(2.0f, 20.0)};
    DISTILL_CHECK_CLOSE(f.lambda(10), 1.0, 1e-6, 0);
    DISTILL_CHECK_CLOSE(f.lambda(5), -ctkd_cosine_decay(0.0, -2.0, 20.0, 5.0), 1e-6, 0);
    DISTILL_CHECK_CLOSE(f.lambda(25), 2.0, 1e-6, 0);

    // Any schedule: a piecewise curriculum (0 for 2 epochs, then a linear ramp to 0.5 at epoch 6).
    const distill::basic_learnable_temperature<double, distill::piecewise_schedule<3>> p{
        .curriculum = {{0.0, 2.0, 6.0}, {0.0, 0.0, 0.5}}};
    CHECK(p.lambda(1) == 0.0);
    DISTILL_CHECK_CLOSE(p.lambda(4), 0.25, 1e-15, 0);
    CHECK(p.lambda(9) == 0.5);
    CHECK(p.temperature() == temp.temperature());
}

TEST_CASE_TEMPLATE("learnable_temperature: T = t_min + t_span sigmoid(raw), its inverse and its range", T, float, double) {
    using learnable_temperature_test::sigmoid;
    const double tol = std::is_same_v<T, float> ? 1e-6 : 1e-14;
    distill::basic_learnable_temperature<T> temp;
    CHECK(temp.check().ok());
    // CTKD's start: theta = 1, T = 1 + 20 sigmoid(1) = 15.62.
    DISTILL_CHECK_CLOSE(temp.temperature(), 1 + 20 * sigmoid(1), tol, 0);
    DISTILL_CHECK_CLOSE(temp.dtemperature_draw(), 20 * sigmoid(1) * (1 - sigmoid(1)), tol, 0);
    for (double raw : {-7.0, -1.5, 0.0, 0.3, 4.0}) {
        temp.raw = static_cast<T>(raw);
        DISTILL_CHECK_CLOSE(temp.temperature(), 1 + 20 * sigmoid(raw), tol, 0);
        DISTILL_CHECK_CLOSE(temp.dtemperature_draw(), 20 * sigmoid(raw) * (1 - sigmoid(raw)), tol, 0);
    }
    // The derivative far out keeps its relative accuracy (no 1 - sigmoid cancellation).
    temp.raw = T(30);
    DISTILL_CHECK_CLOSE(temp.dtemperature_draw(), 20 * std::exp(-30.0) / ((1 + std::exp(-30.0)) * (1 + std::exp(-30.0))),
                        tol, 0);
    // The range is [t_min, t_min + t_span] in floating point, whatever raw is (no overflow).
    for (double raw : {-1e30, -800.0, -50.0, 50.0, 800.0, 1e30}) {
        temp.raw = static_cast<T>(raw);
        const T t = temp.temperature();
        CHECK(t >= T(1));
        CHECK(t <= T(21));
        CHECK(std::isfinite(temp.dtemperature_draw()));
    }
    // set_temperature inverts the mapping.
    temp.t_min = T(0.5), temp.t_span = T(9.5);
    const double inverse_tol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
    for (double t0 : {0.6, 4.0, 9.9}) {
        REQUIRE(temp.set_temperature(static_cast<T>(t0)).ok());
        DISTILL_CHECK_CLOSE(temp.temperature(), t0, inverse_tol, 0);
    }
    const T before = temp.raw;
    for (double t0 : {0.5, 10.0, 12.0, 0.1}) {
        const distill::status s = temp.set_temperature(static_cast<T>(t0));
        distill_test::check_method_error("learnable_temperature", s, distill::errc::invalid_parameter,
                                         distill::error_kind::value, "temperature", {"temperature = ", "is outside ("});
        CHECK(temp.raw == before);
    }
}

TEST_CASE("learnable_temperature: check() names the bad parameter") {
    using distill::errc;
    const auto expect = [](distill::learnable_temperature temp, const char* argument, const char* fragment) {
        distill_test::check_method_error("learnable_temperature", temp.check(), errc::invalid_parameter,
                                         distill::error_kind::value, argument, {argument, fragment});
    };
    expect({.t_min = 0.0}, "t_min", "finite and > 0");
    expect({.t_min = -1.0}, "t_min", "finite and > 0");
    expect({.t_span = 0.0}, "t_span", "finite and > 0");
    expect({.t_span = std::nan("")}, "t_span", "finite and > 0");
    expect({.raw = INFINITY}, "raw", "finite");
    expect({.momentum = 1.0}, "momentum", "in [0, 1)");
    expect({.momentum = -0.1}, "momentum", "in [0, 1)");
    expect({.weight_decay = -1e-4}, "weight_decay", ">= 0");
    expect({.velocity = std::nan("")}, "velocity", "finite");
    CHECK(distill::learnable_temperature{.momentum = 0.9, .weight_decay = 5e-4}.check().ok());
}

TEST_CASE("learnable_temperature: the reversed gradient's sign and magnitude, and the SGD step") {
    distill::learnable_temperature temp{.raw = 0.4};
    const double slope = temp.dtemperature_draw();
    // The plain chain rule, then the reversal: -lambda(step) times it.
    CHECK(temp.raw_gradient(2.5) == 2.5 * slope);
    CHECK(temp.reversed_gradient(2.5, 0.0) == 0.0);  // lambda(0) = 0: no adversary yet
    DISTILL_CHECK_CLOSE(temp.reversed_gradient(2.5, 5.0), -0.5 * 2.5 * slope, 1e-14, 0);
    DISTILL_CHECK_CLOSE(temp.reversed_gradient(-3.0, 10.0), 3.0 * slope, 1e-14, 0);
    CHECK(temp.reversed_gradient(2.5, 7.0) < 0);  // dL/dT > 0: descending the reversed gradient raises T
    CHECK(temp.reversed_gradient(-2.5, 7.0) > 0);

    // From a loss result (any type with grad_temperature), with the loss's weight in the objective.
    struct fake_result {
        float grad_temperature;
    };
    DISTILL_CHECK_CLOSE(temp.reversed_gradient(fake_result{2.5f}, 5.0, 0.9), -0.5 * 0.9 * 2.5 * slope, 1e-14, 0);

    // Plain SGD: raw += learning_rate * lambda * dL/draw (ascent).
    const double raw0 = temp.raw;
    temp.apply_gradient(2.5, 5.0, 0.1);
    DISTILL_CHECK_CLOSE(temp.raw, raw0 + 0.1 * 0.5 * 2.5 * slope, 1e-14, 0);
    CHECK(temp.velocity == -0.5 * 2.5 * slope);
    // At lambda = 0 nothing moves.
    const double raw1 = temp.raw;
    temp.velocity = 0;
    temp.apply_gradient(100.0, 0.0, 0.1);
    CHECK(temp.raw == raw1);

    // Momentum and weight decay, as torch.optim.SGD: two steps by hand.
    distill::learnable_temperature sgd{.raw = 1.0, .momentum = 0.9, .weight_decay = 0.01};
    double raw = 1.0, v = 0.0;
    const double grads[2] = {1.5, -0.7};
    const double steps[2] = {3.0, 4.0};
    for (int k = 0; k < 2; ++k) {
        const double s = 20 * learnable_temperature_test::sigmoid(raw) * (1 - learnable_temperature_test::sigmoid(raw));
        const double lambda = (1 - std::cos(3.14159265358979323846 * steps[k] / 10)) / 2;
        const double g = -lambda * grads[k] * s + 0.01 * raw;
        v = 0.9 * v + g;
        raw -= 0.05 * v;
        sgd.apply_gradient(grads[k], steps[k], 0.05);
        DISTILL_CHECK_CLOSE(sgd.raw, raw, 1e-13, 0);
        DISTILL_CHECK_CLOSE(sgd.velocity, v, 1e-13, 0);
    }
}

TEST_CASE("learnable_temperature: d loss / d raw through the parameterisation, by finite differences") {
    const learnable_temperature_test::pair p;
    for (bool standardize : {false, true})
        for (distill::reduction red : {distill::reduction::batchmean, distill::reduction::sum})
            for (double raw : {-2.0, 0.0, 1.0, 2.5}) {
                CAPTURE(standardize);
                CAPTURE(raw);
                const auto kd_at = [&](double r) {
                    const distill::learnable_temperature temp{.raw = r, .t_span = 8.0};
                    return distill::kd(p.s(), p.t(), distill::kd_options{.temperature = temp.temperature(), .reduce = red,
                                                                           .standardize = standardize});
                };
                const distill::learnable_temperature temp{.raw = raw, .t_span = 8.0};
                const auto result = kd_at(raw);
                const double analytic = temp.raw_gradient(result.grad_temperature);
                const double numeric =
                    distill_test::numeric_gradient([&](const std::vector<double>& x) { return kd_at(x[0]).loss; },
                                                   std::vector<double>{raw}, 1e-5)[0];
                DISTILL_CHECK_CLOSE(analytic, numeric, 1e-5, 1e-9);
                // The reversed gradient is -lambda times it, through the result overload too.
                DISTILL_CHECK_CLOSE(temp.reversed_gradient(result, 6.0), -temp.lambda(6.0) * numeric, 1e-5, 1e-9);
            }
}

TEST_CASE("learnable_temperature: a composite objective sharing T (0.9 kd + dkd, CTKD's --distill dkd)") {
    const learnable_temperature_test::pair p;
    const double alpha = 0.9;
    const auto objective = [&](double raw, double* dobjective_draw) {
        const distill::learnable_temperature temp{.raw = raw};
        const double t = temp.temperature();
        const auto kd = distill::kd(p.s(), p.t(), distill::kd_options{.temperature = t});
        const auto dkd = distill::dkd(p.s(), p.t(), p.y(), distill::dkd_options{.temperature = t, .beta = 2.0});
        // The objective's d/dT is the weighted sum of the terms' grad_temperature.
        if (dobjective_draw) *dobjective_draw = temp.raw_gradient(alpha * kd.grad_temperature + dkd.grad_temperature);
        return alpha * kd.loss + dkd.loss;
    };
    for (double raw : {-1.0, 0.5, 1.0}) {
        CAPTURE(raw);
        double analytic = 0;
        (void)objective(raw, &analytic);
        const double numeric = distill_test::numeric_gradient(
            [&](const std::vector<double>& x) { return objective(x[0], nullptr); }, std::vector<double>{raw}, 1e-5)[0];
        DISTILL_CHECK_CLOSE(analytic, numeric, 1e-5, 1e-9);
        CHECK(analytic != 0.0);
    }
}

TEST_CASE_TEMPLATE("learnable_temperature: steps on a fixed pair ascend the KD loss and stay in range", T, float, double) {
    // The steps run in T (float or double); whether they ascended is judged on the loss in double,
    // whose rounding is far below a step's effect (the float loss at T = 15 is not).
    const learnable_temperature_test::pair p;
    const std::vector<T> student(p.student.begin(), p.student.end()), teacher(p.teacher.begin(), p.teacher.end());
    const auto s = distill::make_view(student.data(), p.n, p.c), t = distill::make_view(teacher.data(), p.n, p.c);
    const auto kd_at = [&](T temperature) {
        return distill::kd(s, t, distill::basic_kd_options<T>{.temperature = temperature});
    };
    const auto kd_double = [&](T temperature) {
        return distill::kd(p.s(), p.t(), distill::kd_options{.temperature = static_cast<double>(temperature)}).loss;
    };
    for (double t0 : {2.0, 6.0, 15.0}) {
        CAPTURE(t0);
        distill::basic_learnable_temperature<T> temp;
        REQUIRE(temp.set_temperature(static_cast<T>(t0)).ok());
        auto r = kd_at(temp.temperature());
        const T first_t = temp.temperature();
        const double first_loss = kd_double(first_t);
        for (int step = 0; step < 20; ++step) {
            const T before = temp.temperature();
            const double loss = kd_double(before);
            const bool rising = r.grad_temperature > T(0);
            temp.apply_gradient(r, 8.0, T(0.05));
            r = kd_at(temp.temperature());
            CHECK(temp.temperature() != before);
            CHECK((temp.temperature() > before) == rising);   // T moves along dL/dT's sign
            CHECK(kd_double(temp.temperature()) > loss);      // gradient ascent on the KD loss
        }
        CHECK(kd_double(temp.temperature()) > first_loss);
        CHECK(temp.temperature() != first_t);
    }
    // A huge learning rate cannot leave the documented range [t_min, t_min + t_span].
    distill::basic_learnable_temperature<T> wild{.t_min = T(2), .t_span = T(6)};
    for (int step = 0; step < 10; ++step) {
        const auto r = kd_at(wild.temperature());
        wild.apply_gradient(r, 20.0, T(1e6));
        CHECK(wild.temperature() >= T(2));
        CHECK(wild.temperature() <= T(8));
        CHECK(std::isfinite(wild.raw));
    }
}
