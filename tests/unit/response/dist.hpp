// tests/unit/response/dist.hpp: dist (DIST, Huang et al. 2022) on the CPU backend; included by
// response_methods_test.cpp.
//
// Values against an independent long-double reference written from the definition (two-pass
// means, centred sums), gradients (student and temperature) against central finite differences,
// the properties of a correlation loss, masked and large logits, every error rule (code, kind,
// argument, message, nothing written), the workspace, and the convenience layer.
#pragma once

#include "../test_support.hpp"

#include <distill/eigen.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace dist_unit {

using distill::errc;
using distill::error_kind;
using distill::index_t;
using distill::reduction;
using namespace distill_test;

/// dist from its definition in long double: softmax by a max-shifted exp, Pearson correlation with
/// two-pass means, eps 1e-8 added to the product of the norms, inter over rows, intra over columns.
template <class T>
long double reference_loss(const std::vector<T>& student, const std::vector<T>& teacher, index_t n, index_t c,
                           double temperature, double beta, double gamma) {
    using real = long double;
    const real tau = temperature;
    auto softmax = [&](const std::vector<T>& x) {
        std::vector<real> y(x.size());
        for (index_t i = 0; i < n; ++i) {
            real mx = -std::numeric_limits<real>::infinity();
            for (index_t k = 0; k < c; ++k) mx = std::max(mx, static_cast<real>(x[static_cast<std::size_t>(i * c + k)]) / tau);
            real sum = 0;
            for (index_t k = 0; k < c; ++k) sum += std::exp(static_cast<real>(x[static_cast<std::size_t>(i * c + k)]) / tau - mx);
            for (index_t k = 0; k < c; ++k)
                y[static_cast<std::size_t>(i * c + k)] =
                    std::exp(static_cast<real>(x[static_cast<std::size_t>(i * c + k)]) / tau - mx) / sum;
        }
        return y;
    };
    const auto ys = softmax(student), yt = softmax(teacher);
    // rho over `count` elements starting at `first`, `step` apart.
    auto rho = [&](index_t first, index_t step, index_t count) {
        real ma = 0, mb = 0;
        for (index_t k = 0; k < count; ++k) {
            ma += ys[static_cast<std::size_t>(first + k * step)];
            mb += yt[static_cast<std::size_t>(first + k * step)];
        }
        ma /= static_cast<real>(count);
        mb /= static_cast<real>(count);
        real cross = 0, aa = 0, bb = 0;
        for (index_t k = 0; k < count; ++k) {
            const real a = ys[static_cast<std::size_t>(first + k * step)] - ma, b = yt[static_cast<std::size_t>(first + k * step)] - mb;
            cross += a * b;
            aa += a * a;
            bb += b * b;
        }
        return cross / (std::sqrt(aa) * std::sqrt(bb) + real(1e-8));
    };
    real inter = 0, intra = 0;
    for (index_t i = 0; i < n; ++i) inter += rho(i * c, 1, c);
    for (index_t k = 0; k < c; ++k) intra += rho(k, c, n);
    inter = 1 - inter / static_cast<real>(n);
    intra = 1 - intra / static_cast<real>(c);
    return tau * tau * (static_cast<real>(beta) * inter + static_cast<real>(gamma) * intra);
}

/// Caller-owned workspace sized by the query (aligned for T).
template <class T>
struct scratch {
    std::vector<T> storage;
    distill::workspace ws(std::size_t bytes) {
        storage.assign((bytes + sizeof(T) - 1) / sizeof(T), T(0));
        return {storage.data(), bytes};
    }
};

template <class T>
distill::status run_dist(const distill::basic_dist_options<double>& opts, const distill::response_args<T>& args,
                         const distill::response_outputs<T>& outs) {
    scratch<T> s;
    return distill::run(opts, args, outs, s.ws(distill::workspace_bytes(opts, args, outs)));
}

/// Runs dist on the host problem (student and teacher only) and returns the outputs (requires success).
template <class T>
host_outputs<T> dist_outputs(const host_problem<T>& p, const distill::dist_options& opts, bool want_grad = true,
                             bool want_temperature = true) {
    host_outputs<T> out(reduction::batchmean, p.n, p.c);
    const distill::status s = run_dist(opts, p.args(), out.views(p.n, p.c, want_grad, want_temperature));
    INFO("message: ", s.message());
    REQUIRE(s.ok());
    return out;
}

/// Rejected by check and run with the expected status, nothing written; check_args agrees unless
/// only the outputs are wrong.
template <class T>
void check_dist_rejected(const distill::dist_options& opts, const distill::response_args<T>& args, errc code,
                         error_kind kind, const char* argument, std::initializer_list<const char*> fragments,
                         index_t n = 3, index_t c = 5) {
    host_outputs<T> out(reduction::batchmean, n, c);
    const auto views = out.views(n, c);
    check_method_error("dist", distill::check_args(opts, args), code, kind, argument, fragments);
    check_method_error("dist", distill::check(opts, args, views), code, kind, argument, fragments);
    std::vector<T> big(64, T(0));
    check_method_error("dist", distill::run(opts, args, views, distill::workspace{big.data(), big.size() * sizeof(T)}), code,
                       kind, argument, fragments);
    CHECK(out.untouched());
}

template <class T>
void check_dist_rejected_outputs(const distill::response_args<T>& args, const distill::response_outputs<T>& views,
                                 const host_outputs<T>& out, errc code, error_kind kind, const char* argument,
                                 std::initializer_list<const char*> fragments) {
    const distill::dist_options opts{};
    check_method_error("dist", distill::check(opts, args, views), code, kind, argument, fragments);
    scratch<T> s;
    check_method_error("dist", distill::run(opts, args, views, s.ws(distill::workspace_bytes(opts, args, views))), code, kind,
                       argument, fragments);
    CHECK(out.untouched());
    CHECK(distill::check_args(opts, args).ok());
}

struct dist_setting {
    double temperature, beta, gamma;
};
inline constexpr dist_setting dist_settings[] = {
    {1.0, 1.0, 1.0}, {0.5, 1.0, 1.0}, {4.0, 2.0, 0.5}, {20.0, 1.0, 1.0}, {2.0, 0.0, 1.5}, {2.0, 3.0, 0.0},
};

}  // namespace dist_unit

// The dist overloads are picked, not the row driver's (which would need response_method<dist>), and
// the check and run steps on the CPU backend are noexcept.
static_assert(!distill::row_response_options<distill::dist_options>);
static_assert(noexcept(distill::run(distill::dist_options{}, std::declval<const distill::response_args<float>&>(),
                                       std::declval<const distill::response_outputs<float>&>(), distill::workspace{})));
static_assert(noexcept(distill::check(distill::dist_float_options{}, std::declval<const distill::response_args<double>&>(),
                                         std::declval<const distill::response_outputs<double>&>())));

// ------------------------------------------------------------------------------------------ values

TEST_CASE_TEMPLATE("dist: the loss matches the long-double reference", T, float, double) {
    using namespace dist_unit;
    constexpr index_t shapes[][2] = {{1, 6}, {5, 2}, {8, 10}, {3, 1}, {16, 5}, {4, 300}};
    for (const auto& shape : shapes)
        for (const dist_setting& s : dist_settings) {
            const index_t n = shape[0], c = shape[1];
            CAPTURE(n);
            CAPTURE(c);
            CAPTURE(s.temperature);
            CAPTURE(s.beta);
            CAPTURE(s.gamma);
            host_problem<T> p(n, c, static_cast<unsigned>(17 + n * c));
            const auto out = dist_outputs(p, {s.temperature, s.beta, s.gamma});
            const double want = static_cast<double>(reference_loss(p.student, p.teacher, n, c, s.temperature, s.beta, s.gamma));
            // Float: the correlations carry errors ~1e-6, scaled by T^2 in the loss.
            const double atol = std::is_same_v<T, float> ? 2e-6 * s.temperature * s.temperature * (s.beta + s.gamma) : 1e-13;
            DISTILL_CHECK_CLOSE(out.loss[0], want, tolerance<T>(), atol);
            for (T g : out.grad) CHECK(std::isfinite(g));
            CHECK(std::isfinite(out.grad_temperature[0]));
        }
}

TEST_CASE_TEMPLATE("dist: logits of magnitude 1e3 at T = 0.5 give finite, exact results", T, float, double) {
    using namespace dist_unit;
    host_problem<T> p(6, 9, 5, 1000.0);
    const distill::dist_options opts{0.5, 1.0, 1.0};
    const auto out = dist_outputs(p, opts);
    REQUIRE(std::isfinite(out.loss[0]));
    DISTILL_CHECK_CLOSE(out.loss[0], static_cast<double>(reference_loss(p.student, p.teacher, 6, 9, 0.5, 1.0, 1.0)),
                        tolerance<T>(), 0);
    for (T g : out.grad) CHECK(std::isfinite(g));
    CHECK(std::isfinite(out.grad_temperature[0]));
}

TEST_CASE_TEMPLATE("dist: masked (-inf) logits have probability 0 and gradient 0", T, float, double) {
    using namespace dist_unit;
    host_problem<T> p(4, 6, 31);
    const T minus_inf = -std::numeric_limits<T>::infinity();
    for (index_t i = 0; i < 4; ++i) p.student[static_cast<std::size_t>(i * 6 + 2)] = p.teacher[static_cast<std::size_t>(i * 6 + 2)] = minus_inf;
    p.teacher[1 * 6 + 4] = minus_inf;  // a teacher-only mask
    const auto out = dist_outputs(p, {2.0, 1.0, 1.0});
    DISTILL_CHECK_CLOSE(out.loss[0], static_cast<double>(reference_loss(p.student, p.teacher, 4, 6, 2.0, 1.0, 1.0)),
                        tolerance<T>(), (std::is_same_v<T, float> ? 1e-5 : 0.0));
    for (index_t i = 0; i < 4; ++i) CHECK(out.grad[static_cast<std::size_t>(i * 6 + 2)] == T(0));
    for (T g : out.grad) CHECK(std::isfinite(g));
    CHECK(std::isfinite(out.grad_temperature[0]));
}

// ------------------------------------------------------------------------------ finite differences

TEST_CASE("dist: gradients match central finite differences (double)") {
    using namespace dist_unit;
    constexpr index_t shapes[][2] = {{1, 5}, {4, 2}, {5, 6}};
    auto objective = [](const host_problem<double>& p, const distill::dist_options& o) {
        host_outputs<double> out(reduction::batchmean, p.n, p.c);
        REQUIRE(run_dist(o, p.args(), out.views(p.n, p.c, false, false)).ok());
        return out.total();
    };
    for (const auto& shape : shapes)
        for (const dist_setting& s : dist_settings) {
            const index_t n = shape[0], c = shape[1];
            CAPTURE(n);
            CAPTURE(c);
            CAPTURE(s.temperature);
            CAPTURE(s.beta);
            CAPTURE(s.gamma);
            // Logits grow with large temperatures, so that the distributions are not uniform to 1e-3.
            const host_problem<double> base(n, c, static_cast<unsigned>(40 + n + c), 3.0 * std::max(1.0, s.temperature / 4));
            const distill::dist_options opts{s.temperature, s.beta, s.gamma};
            const auto analytic = dist_outputs(base, opts);
            // The loss's rounding noise (~T^2 1e-16) divided by 2h: an absolute allowance growing like T^2.
            const double atol = 1e-8 + 1e-9 * s.temperature * s.temperature;
            host_problem<double> p = base;
            double largest = 0;
            for (std::size_t k = 0; k < p.student.size(); ++k) {
                const double x = base.student[k], h = 1e-6 * std::max(1.0, std::abs(x));
                p.student[k] = x + h;
                const double up = objective(p, opts);
                p.student[k] = x - h;
                const double down = objective(p, opts);
                p.student[k] = x;
                CAPTURE(k);
                const double numeric = (up - down) / (2 * h);
                DISTILL_CHECK_CLOSE(analytic.grad[k], numeric, 1e-5, atol);
                largest = std::max(largest, std::abs(numeric));
            }
            // The comparison means something: the loss depends on the student, except that with N = 1
            // and beta = 0 only intra is left, which is constant (1) there.
            if (n == 1 && s.beta == 0) CHECK(largest == 0.0);
            else CHECK(largest > 100 * atol);

            const double h = 1e-6 * s.temperature;
            distill::dist_options up = opts, down = opts;
            up.temperature += h;
            down.temperature -= h;
            DISTILL_CHECK_CLOSE(analytic.grad_temperature[0], (objective(base, up) - objective(base, down)) / (2 * h), 1e-5,
                                atol);
        }
}

// ------------------------------------------------------------------------------------- properties

TEST_CASE_TEMPLATE("dist: the loss lies in [0, 2 T^2 (beta + gamma)]", T, float, double) {
    using namespace dist_unit;
    for (unsigned seed = 1; seed <= 12; ++seed) {
        const dist_setting& s = dist_settings[seed % 6];
        host_problem<T> p(2 + static_cast<index_t>(seed % 5), 2 + static_cast<index_t>(seed % 7), seed, 1.0 + seed);
        // Anti-correlated teacher for half the seeds: the loss is then above T^2 (beta + gamma).
        if (seed % 2)
            for (std::size_t k = 0; k < p.teacher.size(); ++k) p.teacher[k] = -p.student[k];
        const auto out = dist_outputs(p, {s.temperature, s.beta, s.gamma});
        CAPTURE(seed);
        const double bound = 2 * s.temperature * s.temperature * (s.beta + s.gamma);
        CHECK(out.loss[0] >= T(0));
        CHECK(static_cast<double>(out.loss[0]) <= bound * (1 + 1e-6));
        if (seed % 2 && s.beta > 0) CHECK(static_cast<double>(out.loss[0]) > bound / 2);
    }
}

TEST_CASE_TEMPLATE("dist: a student equal to the teacher gives a zero loss and zero gradients", T, float, double) {
    using namespace dist_unit;
    for (const dist_setting& s : dist_settings) {
        // Logits scaled with T: the same distributions at every temperature.
        host_problem<T> p(5, 6, 3, 3.0 * s.temperature);
        p.teacher = p.student;
        const auto out = dist_outputs(p, {s.temperature, s.beta, s.gamma});
        CAPTURE(s.temperature);
        // rho = |a|^2 / (|a|^2 + eps) is 1 up to eps / |a|^2 (~1e-7 here) and float rounding.
        const double scale = s.temperature * s.temperature * (s.beta + s.gamma);
        CHECK(std::abs(static_cast<double>(out.loss[0])) <= 1e-5 * scale);
        for (T g : out.grad) CHECK(std::abs(static_cast<double>(g)) <= 1e-5 * scale);
    }
}

TEST_CASE_TEMPLATE("dist: with one row, intra is 1 with no gradient", T, float, double) {
    using namespace dist_unit;
    host_problem<T> p(1, 7, 9);
    // beta = 0: the loss is gamma T^2 exactly, the student gradient exactly 0 and d/dT = 2 gamma T.
    const auto intra_only = dist_outputs(p, {3.0, 0.0, 0.5});
    CHECK(intra_only.loss[0] == T(4.5));
    for (T g : intra_only.grad) CHECK(g == T(0));
    DISTILL_CHECK_CLOSE(intra_only.grad_temperature[0], 3.0, tolerance<T>(), 0);
    // With beta the row term adds to it: loss = T^2 (beta inter + gamma).
    const auto both = dist_outputs(p, {3.0, 1.0, 0.5});
    const auto inter_only = dist_outputs(p, {3.0, 1.0, 0.0});
    DISTILL_CHECK_CLOSE(both.loss[0], static_cast<double>(inter_only.loss[0]) + 4.5, tolerance<T>(), 0);
    check_all_close(both.grad, inter_only.grad, tolerance<T>(), 0);
}

TEST_CASE_TEMPLATE("dist: adding a constant to a row of the student or the teacher changes nothing", T, float, double) {
    using namespace dist_unit;
    host_problem<T> p(4, 5, 13);
    const distill::dist_options opts{2.0, 1.0, 1.0};
    const auto before = dist_outputs(p, opts);
    const T shifts[4] = {T(3.5), T(-2.25), T(0.5), T(10)};
    for (index_t i = 0; i < 4; ++i)
        for (index_t k = 0; k < 5; ++k) {
            p.student[static_cast<std::size_t>(i * 5 + k)] += shifts[i];
            p.teacher[static_cast<std::size_t>(i * 5 + k)] -= shifts[3 - i];
        }
    const auto after = dist_outputs(p, opts);
    // Shifted inputs are rounded in float, so the comparison allows a few ulps of the logits.
    const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
    DISTILL_CHECK_CLOSE(after.loss[0], before.loss[0], rtol, 0);
    check_all_close(after.grad, before.grad, rtol, rtol * 1e-2);
    DISTILL_CHECK_CLOSE(after.grad_temperature[0], before.grad_temperature[0], rtol, rtol * 1e-2);
}

TEST_CASE_TEMPLATE("dist: a constant student row has zero variance: rho = 0, no norm derivative", T, float, double) {
    using namespace dist_unit;
    // Row 1 of the student is constant: its probabilities are exactly 1 / C, so its correlation is 0
    // and its gradient is the covariance's alone, (b / eps) projected by the softmax Jacobian.
    host_problem<T> p(3, 4, 23);
    for (index_t k = 0; k < 4; ++k) p.student[static_cast<std::size_t>(4 + k)] = T(0.75);
    const auto out = dist_outputs(p, {1.0, 1.0, 0.0});
    DISTILL_CHECK_CLOSE(out.loss[0], static_cast<double>(reference_loss(p.student, p.teacher, 3, 4, 1.0, 1.0, 0.0)),
                        tolerance<T>(), 0);
    // d loss / d student_1c = -(beta / N) (1 / C) (b_c - mean b) / eps with b = teacher probabilities - 1 / C.
    std::vector<double> q(4);
    double sum = 0, mx = -1e300;
    for (index_t k = 0; k < 4; ++k) mx = std::max(mx, static_cast<double>(p.teacher[static_cast<std::size_t>(4 + k)]));
    for (index_t k = 0; k < 4; ++k) sum += q[static_cast<std::size_t>(k)] = std::exp(static_cast<double>(p.teacher[static_cast<std::size_t>(4 + k)]) - mx);
    for (index_t k = 0; k < 4; ++k) {
        const double b = q[static_cast<std::size_t>(k)] / sum - 0.25;
        DISTILL_CHECK_CLOSE(out.grad[static_cast<std::size_t>(4 + k)], -(1.0 / 3.0) * 0.25 * b / 1e-8, 1e-5, 0);
    }
}

TEST_CASE_TEMPLATE("dist: optional outputs can be left out and do not change the others", T, float, double) {
    using namespace dist_unit;
    host_problem<T> p(6, 7, 41);
    const distill::dist_options opts{1.5, 2.0, 0.5};
    const auto all = dist_outputs(p, opts);
    const auto loss_only = dist_outputs(p, opts, false, false);
    const auto no_temperature = dist_outputs(p, opts, true, false);
    const auto temperature_only = dist_outputs(p, opts, false, true);
    CHECK(loss_only.loss[0] == all.loss[0]);
    CHECK(no_temperature.grad == all.grad);
    CHECK(temperature_only.grad_temperature[0] == all.grad_temperature[0]);
    CHECK(loss_only.grad_temperature[0] == host_outputs<T>::sentinel);
    CHECK(temperature_only.grad[0] == host_outputs<T>::sentinel);
}

TEST_CASE_TEMPLATE("dist: column-major and strided inputs give the results of row-major input", T, float, double) {
    using namespace dist_unit;
    using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;  // column-major
    host_problem<T> p(5, 8, 43);
    const distill::dist_options opts{2.0, 1.0, 1.0};
    const auto row_major = dist_outputs(p, opts);
    matrix s(5, 8), t(5, 8);
    for (index_t i = 0; i < 5; ++i)
        for (index_t k = 0; k < 8; ++k) {
            s(i, k) = p.student[static_cast<std::size_t>(i * 8 + k)];
            t(i, k) = p.teacher[static_cast<std::size_t>(i * 8 + k)];
        }
    const auto r = distill::dist(s, t, opts);
    REQUIRE(r.status.ok());
    CHECK(r.loss == row_major.loss[0]);
    CHECK(r.grad_temperature == row_major.grad_temperature[0]);
    for (index_t i = 0; i < 5; ++i)
        for (index_t k = 0; k < 8; ++k) CHECK(r.grad_student.data()[i * 8 + k] == row_major.grad[static_cast<std::size_t>(i * 8 + k)]);
}

// ------------------------------------------------------------------------------------------ errors

TEST_CASE_TEMPLATE("dist: value errors name the parameter and its value, and write nothing", T, float, double) {
    using namespace dist_unit;
    host_problem<T> p(3, 5, 51);
    const auto args = p.args();
    distill::dist_options opts{};
    const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();

    SUBCASE("reduction none") {
        opts.reduce = reduction::none;
        check_dist_rejected(opts, args, errc::invalid_parameter, error_kind::value, "reduction", {"reduction = none", "batchmean"});
    }
    SUBCASE("reduction sum") {
        opts.reduce = reduction::sum;
        check_dist_rejected(opts, args, errc::invalid_parameter, error_kind::value, "reduction", {"reduction = sum"});
    }
    SUBCASE("unknown reduction enumerator") {
        opts.reduce = static_cast<reduction>(9);
        check_dist_rejected(opts, args, errc::unknown_reduction, error_kind::value, "reduction", {"reduction = 9"});
    }
    SUBCASE("temperature 0, negative, nan, inf") {
        for (double tau : {0.0, -1.0, nan, inf}) {
            opts.temperature = tau;
            check_dist_rejected(opts, args, errc::invalid_parameter, error_kind::value, "temperature", {"temperature = "});
        }
    }
    SUBCASE("beta negative, nan or infinite") {
        opts.beta = -0.5;
        check_dist_rejected(opts, args, errc::invalid_parameter, error_kind::value, "beta", {"beta = -5", "inf)"});
        opts.beta = nan;
        check_dist_rejected(opts, args, errc::invalid_parameter, error_kind::value, "beta", {"beta = nan"});
        opts.beta = inf;
        check_dist_rejected(opts, args, errc::invalid_parameter, error_kind::value, "beta", {"beta = inf"});
    }
    SUBCASE("gamma negative or nan") {
        opts.gamma = -2;
        check_dist_rejected(opts, args, errc::invalid_parameter, error_kind::value, "gamma", {"gamma = -2", "inf)"});
        opts.gamma = nan;
        check_dist_rejected(opts, args, errc::invalid_parameter, error_kind::value, "gamma", {"gamma = nan"});
    }
    SUBCASE("zero weights are valid") {
        opts.beta = 0;
        opts.gamma = 0;
        const auto out = dist_outputs(p, opts);
        CHECK(out.loss[0] == T(0));
        for (T g : out.grad) CHECK(g == T(0));
    }
}

TEST_CASE_TEMPLATE("dist: shape errors name the argument and the sizes, and write nothing", T, float, double) {
    using namespace dist_unit;
    host_problem<T> p(3, 5, 53);
    p.with_labels().with_weight();
    const distill::dist_options opts{};
    auto args = p.args();
    args.labels = {};
    args.weight = {};

    SUBCASE("labels given") {
        args.labels = distill::make_view(p.labels.data(), 3);
        check_dist_rejected(opts, args, errc::shape_mismatch, error_kind::shape, "labels", {"labels", "[3]", "no labels"});
    }
    SUBCASE("weight given") {
        args.weight = distill::make_view(p.weight.data(), 3);
        check_dist_rejected(opts, args, errc::shape_mismatch, error_kind::shape, "weight", {"weight", "[3]", "no weight"});
    }
    SUBCASE("teacher of another shape") {
        std::vector<T> wide(18, T(0));
        args.teacher = distill::make_view(wide.data(), 3, 6);
        check_dist_rejected(opts, args, errc::shape_mismatch, error_kind::shape, "teacher", {"teacher", "[3, 6]", "[3, 5]"});
    }
    SUBCASE("student of rank 1") {
        args.student = distill::make_view(p.student.data(), 15);
        check_dist_rejected(opts, args, errc::bad_rank, error_kind::shape, "student", {"student", "2-D", "[15]"});
    }
    SUBCASE("teacher missing") {
        args.teacher = {};
        check_dist_rejected(opts, args, errc::missing_argument, error_kind::shape, "teacher", {"teacher", "required"});
    }
    SUBCASE("no rows") {
        args.student = distill::make_view(p.student.data(), 0, 5);
        args.teacher = distill::make_view(p.teacher.data(), 0, 5);
        check_dist_rejected(opts, args, errc::empty_input, error_kind::shape, "student", {"student", "[0, 5]"});
    }
}

TEST_CASE_TEMPLATE("dist: output and workspace errors, and nothing written", T, float, double) {
    using namespace dist_unit;
    host_problem<T> p(3, 5, 55);
    const auto args = p.args();

    SUBCASE("loss of N values") {
        host_outputs<T> out(3, 3, 5);
        check_dist_rejected_outputs(args, out.views(3, 5), out, errc::shape_mismatch, error_kind::shape, "loss",
                                    {"loss", "[3]", "1 value"});
    }
    SUBCASE("grad_student of the wrong shape") {
        host_outputs<T> out(reduction::batchmean, 3, 5);
        auto views = out.views(3, 5);
        views.grad_student = distill::make_view(out.grad.data(), 5, 3);
        check_dist_rejected_outputs(args, views, out, errc::shape_mismatch, error_kind::shape, "grad_student",
                                    {"grad_student", "[5, 3]", "[3, 5]"});
    }
    SUBCASE("grad_student is the student") {
        host_outputs<T> out(reduction::batchmean, 3, 5);
        auto views = out.views(3, 5);
        views.grad_student = distill::make_view(p.student.data(), 3, 5);
        const auto student_before = p.student;
        check_dist_rejected_outputs(args, views, out, errc::aliasing, error_kind::usage, "grad_student",
                                    {"grad_student", "student"});
        CHECK(p.student == student_before);
    }
    SUBCASE("workspace: the query, then one byte short, then none at all") {
        host_outputs<T> out(reduction::batchmean, 3, 5);
        const auto views = out.views(3, 5);
        const distill::dist_options opts{};
        const std::size_t need = distill::workspace_bytes(opts, args, views);
        CHECK(need == (8 * 3 + 6 * 5) * sizeof(T));
        CHECK(distill::workspace_bytes(distill::cpu_backend{}, opts, args, views) == need);
        std::vector<T> block(need / sizeof(T));
        const std::string needed = std::to_string(need), given = std::to_string(need - 1);
        check_method_error("dist", distill::run(opts, args, views, distill::workspace{block.data(), need - 1}),
                           errc::workspace_too_small, error_kind::usage, "workspace", {needed.c_str(), given.c_str()});
        check_method_error("dist", distill::run(opts, args, views), errc::workspace_too_small, error_kind::usage, "workspace",
                           {needed.c_str()});
        CHECK(out.untouched());
        CHECK(distill::run(opts, args, views, distill::workspace{block.data(), need}).ok());
        CHECK(!out.untouched());
    }
}

TEST_CASE("dist: the convenience layer returns what distill::run computes, and throws on bad input") {
    using namespace dist_unit;
    host_problem<double> p(5, 6, 57);
    const distill::dist_options opts{2.0, 1.5, 0.5};
    const auto out = dist_outputs(p, opts);
    const auto a = p.args();
    const auto r = distill::dist(a.student, a.teacher, opts);
    static_assert(std::is_same_v<decltype(r), const distill::loss_result<double>>);
    REQUIRE(r.status.ok());
    CHECK(r.loss == out.loss[0]);
    CHECK(r.grad_temperature == out.grad_temperature[0]);
    CHECK(r.row_losses.size() == 0);
    REQUIRE(r.grad_student.size() == 30);
    for (std::size_t k = 0; k < 30; ++k) CHECK(r.grad_student.data()[k] == out.grad[k]);
    // An explicit backend, and the default options.
    CHECK(distill::dist(distill::cpu_backend{}, a.student, a.teacher, opts).loss == r.loss);
    const auto defaults = distill::dist(a.student, a.teacher);
    CHECK(defaults.loss == dist_outputs(p, {}).loss[0]);
    // Float options on float tensors.
    host_problem<float> pf(5, 6, 57);
    const auto af = pf.args();
    const auto rf = distill::dist(af.student, af.teacher, distill::dist_float_options{2.0f, 1.5f, 0.5f});
    static_assert(std::is_same_v<decltype(rf), const distill::loss_result<float>>);
    DISTILL_CHECK_CLOSE(rf.loss, r.loss, 1e-5, 0);
    bool thrown = false;
    try {
        (void)distill::dist(a.student, a.teacher, distill::dist_options{1.0, -1.0});
    } catch (const distill::error& e) {
        thrown = true;
        CHECK(e.status().code() == distill::errc::invalid_parameter);
        CHECK(contains(e.what(), "dist: beta = -1"));
    }
    CHECK(thrown);
}
