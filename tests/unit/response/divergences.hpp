// tests/unit/response/divergences.hpp: reverse_kd, jsd, skew_kd, skew_reverse_kd, tvd and soft_ce
// on the CPU backend (included by response_methods_test.cpp, after test_support.hpp).
//
// Values against a long-double reference written from METHODS-response.md in probability space
// (no log-space tricks, so it cannot share the kernel's), gradients with respect to the student
// and the temperature against central finite differences for every reduction with weights and
// ignored rows, the properties that tie the methods together (KL >= 0, JSD <= log 2 T^2,
// TVD <= T^2, soft_ce = kd + T^2 H(pt), skew at alpha 0 and 1, the symmetry of jsd), logits of
// 1e3, masked (-inf) entries, and every error rule with nothing written.
#pragma once

#include <distill/eigen.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace divergences_test {

using namespace distill_test;
using distill::errc;
using distill::error_kind;
using distill::index_t;
using distill::reduction;
using real = long double;

constexpr reduction divergence_reductions[] = {reduction::batchmean, reduction::sum, reduction::none};
constexpr double temperatures[] = {0.5, 1.0, 4.0, 20.0};
constexpr double neg_inf = -std::numeric_limits<double>::infinity();

// ------------------------------------------------------------------------------ the methods

enum class method_id { kd, reverse_kd, jsd, skew_kd, skew_reverse_kd, tvd, soft_ce };

/// A method and its own parameter (beta for jsd, alpha for the skew methods; unused otherwise).
struct method_spec {
    method_id id;
    double param = 0;

    const char* name() const {
        switch (id) {
            case method_id::kd: return "kd";
            case method_id::reverse_kd: return "reverse_kd";
            case method_id::jsd: return "jsd";
            case method_id::skew_kd: return "skew_kd";
            case method_id::skew_reverse_kd: return "skew_reverse_kd";
            case method_id::tvd: return "tvd";
            case method_id::soft_ce: return "soft_ce";
        }
        return "?";
    }
    std::string describe() const {
        std::string s = name();
        if (id == method_id::jsd) s += " beta " + std::to_string(param);
        if (id == method_id::skew_kd || id == method_id::skew_reverse_kd) s += " alpha " + std::to_string(param);
        return s;
    }
};

const method_spec reverse_kd_spec{method_id::reverse_kd}, tvd_spec{method_id::tvd}, soft_ce_spec{method_id::soft_ce},
    kd_spec{method_id::kd};
inline method_spec jsd_spec(double beta) { return {method_id::jsd, beta}; }
inline method_spec skew_kd_spec(double alpha) { return {method_id::skew_kd, alpha}; }
inline method_spec skew_reverse_kd_spec(double alpha) { return {method_id::skew_reverse_kd, alpha}; }

/// The methods under test with representative parameters (every one of them has a gradient).
inline std::vector<method_spec> tested_methods() {
    return {reverse_kd_spec,        jsd_spec(0.5),           jsd_spec(0.2),           skew_kd_spec(0.1),
            skew_kd_spec(0.7),      skew_kd_spec(0.0),       skew_reverse_kd_spec(0.1), skew_reverse_kd_spec(0.7),
            skew_reverse_kd_spec(0.0), tvd_spec,             soft_ce_spec};
}

/// Calls fn with the method's options (the public option types, double parameters).
template <class Fn>
decltype(auto) with_options(const method_spec& m, double temperature, reduction red, std::int64_t ignore_index,
                            Fn&& fn) {
    switch (m.id) {
        case method_id::kd: return fn(distill::kd_options{temperature, red, ignore_index, false});
        case method_id::reverse_kd: return fn(distill::reverse_kd_options{temperature, red, ignore_index});
        case method_id::jsd:
            return fn(distill::jsd_options{.temperature = temperature, .reduce = red, .ignore_index = ignore_index,
                                           .beta = m.param});
        case method_id::skew_kd:
            return fn(distill::skew_kd_options{.temperature = temperature, .reduce = red, .ignore_index = ignore_index,
                                               .alpha = m.param});
        case method_id::skew_reverse_kd:
            return fn(distill::skew_reverse_kd_options{
                .temperature = temperature, .reduce = red, .ignore_index = ignore_index, .alpha = m.param});
        case method_id::tvd: return fn(distill::tvd_options{temperature, red, ignore_index});
        case method_id::soft_ce: break;
    }
    return fn(distill::soft_ce_options{temperature, red, ignore_index});
}

/// distill::run of the method on the problem into fresh sentinel-filled outputs; requires success.
template <class T>
host_outputs<T> run_ok(const method_spec& m, const host_problem<T>& p, double temperature, reduction red,
                       std::int64_t ignore_index = -100, bool want_grad = true, bool want_temperature = true) {
    host_outputs<T> out(red, p.n, p.c);
    const distill::status s = with_options(m, temperature, red, ignore_index, [&](const auto& opts) {
        return distill::run(opts, p.args(), out.views(p.n, p.c, want_grad, want_temperature));
    });
    INFO(m.describe(), ": ", s.message());
    REQUIRE(s.ok());
    return out;
}

/// The summed loss of the method (the objective of the finite differences).
inline double summed_loss(const method_spec& m, const host_problem<double>& p, double temperature, reduction red) {
    return run_ok(m, p, temperature, red, -100, false, false).total();
}

// ---------------------------------------------------------------- long-double reference

/// One class's term from the definition, in probability space: p log(p / q) is 0 where p = 0.
inline real class_term(const method_spec& m, real ls, real lt) {
    const real ps = std::exp(ls), pt = std::exp(lt), w = m.param;
    auto weighted_log_ratio = [](real p, real lp, real lq) { return p > 0 ? p * (lp - lq) : real(0); };
    switch (m.id) {
        case method_id::kd: return weighted_log_ratio(pt, lt, ls);
        case method_id::reverse_kd: return weighted_log_ratio(ps, ls, lt);
        case method_id::jsd: {
            const real mix = w * pt + (1 - w) * ps;
            if (mix == 0) return 0;
            return w * weighted_log_ratio(pt, lt, std::log(mix)) + (1 - w) * weighted_log_ratio(ps, ls, std::log(mix));
        }
        case method_id::skew_kd: return weighted_log_ratio(pt, lt, std::log(w * pt + (1 - w) * ps));
        case method_id::skew_reverse_kd: return weighted_log_ratio(ps, ls, std::log((1 - w) * pt + w * ps));
        case method_id::tvd: return std::fabs(pt - ps) / 2;
        case method_id::soft_ce: return pt > 0 ? -pt * ls : real(0);
    }
    return 0;
}

template <class T>
std::vector<real> log_softmax_row(const std::vector<T>& m, index_t c, index_t i, real temperature) {
    std::vector<real> z(m.begin() + i * c, m.begin() + (i + 1) * c);
    real mx = -std::numeric_limits<real>::infinity();
    for (real& v : z) mx = std::max(mx, v /= temperature);
    real sum = 0;
    for (real v : z) sum += std::exp(v - mx);
    for (real& v : z) v -= mx + std::log(sum);
    return z;
}

/// The per-row losses T^2 sum_c phi_c, before weighting.
template <class T>
std::vector<real> reference_rows(const method_spec& m, const host_problem<T>& p, double temperature) {
    std::vector<real> rows;
    const real tau = temperature;
    for (index_t i = 0; i < p.n; ++i) {
        const auto ls = log_softmax_row(p.student, p.c, i, tau), lt = log_softmax_row(p.teacher, p.c, i, tau);
        real sum = 0;
        for (index_t k = 0; k < p.c; ++k) sum += class_term(m, ls[k], lt[k]);
        rows.push_back(tau * tau * sum);
    }
    return rows;
}

/// The teacher's entropy per row at temperature T.
template <class T>
std::vector<real> teacher_entropy(const host_problem<T>& p, double temperature) {
    std::vector<real> h;
    for (index_t i = 0; i < p.n; ++i) {
        real e = 0;
        for (real l : log_softmax_row(p.teacher, p.c, i, temperature)) e -= std::exp(l) * l;
        h.push_back(e);
    }
    return h;
}

/// The reduced loss (1 value, or N for none) of per-row losses under the problem's row weights.
template <class T>
std::vector<real> reduce_rows(const std::vector<real>& rows, const host_problem<T>& p, reduction red,
                              std::int64_t ignore_index = -100) {
    std::vector<real> weighted;
    real total = 0, total_weight = 0;
    for (index_t i = 0; i < p.n; ++i) {
        real w = p.use_weight ? real(p.weight[static_cast<std::size_t>(i)]) : real(1);
        if (p.use_labels && p.labels[static_cast<std::size_t>(i)] == ignore_index) w = 0;
        weighted.push_back(w == 0 ? real(0) : w * rows[static_cast<std::size_t>(i)]);
        total += weighted.back();
        total_weight += w;
    }
    if (red == reduction::none) return weighted;
    if (red == reduction::sum) return {total};
    return {total_weight > 0 ? total / total_weight : real(0)};
}

template <class T>
double value_rtol() {
    return std::is_same_v<T, float> ? 5e-5 : 1e-12;
}

/// The loss matches the expected values: rtol, plus in float an absolute allowance of per-row
/// rounding that grows like T^2 (log-probabilities of size log C carry ~1e-7 each).
template <class T>
void check_loss(const host_outputs<T>& out, const std::vector<real>& want, double temperature, double rows = 1) {
    REQUIRE(out.loss.size() == want.size());
    const double atol = std::is_same_v<T, float> ? 4e-6 * temperature * temperature * rows : 1e-15;
    for (std::size_t i = 0; i < want.size(); ++i) {
        CAPTURE(i);
        DISTILL_CHECK_CLOSE(out.loss[i], static_cast<double>(want[i]), value_rtol<T>(), atol);
    }
}

/// Central differences of the summed loss with respect to every student logit that is finite and
/// to the temperature, against the analytic gradients, for this problem (double).
inline void check_finite_differences(const method_spec& m, const host_problem<double>& base, double temperature,
                                     reduction red, bool expect_dependence = true) {
    INFO(m.describe(), " T = ", temperature, " reduction ", std::string(distill::to_string(red)));
    const auto analytic = run_ok(m, base, temperature, red);
    // The loss carries rounding noise ~T^2 1e-16 (its log-probabilities cancel), which the quotient
    // divides by 2h ~ 2e-6: hence an absolute allowance growing like T^2.
    const double atol = 1e-8 + 1e-9 * temperature * temperature;
    host_problem<double> p = base;
    double largest = 0;
    for (std::size_t k = 0; k < p.student.size(); ++k) {
        const double x = base.student[k];
        if (!std::isfinite(x)) continue;
        const double h = 1e-6 * std::max(1.0, std::abs(x));
        p.student[k] = x + h;
        const double up = summed_loss(m, p, temperature, red);
        p.student[k] = x - h;
        const double down = summed_loss(m, p, temperature, red);
        p.student[k] = x;
        const double numeric = (up - down) / (2 * h);
        CAPTURE(k);
        DISTILL_CHECK_CLOSE(analytic.grad[k], numeric, 1e-5, atol);
        largest = std::max(largest, std::abs(numeric));
    }
    // The comparison means something: the loss does depend on the student here.
    if (expect_dependence) CHECK(largest > 1e-4);
    const double h = 1e-6 * temperature;
    const double numeric_t =
        (summed_loss(m, base, temperature + h, red) - summed_loss(m, base, temperature - h, red)) / (2 * h);
    DISTILL_CHECK_CLOSE(analytic.grad_temperature[0], numeric_t, 1e-5, atol);
}

// ------------------------------------------------------------------------------------ values

TEST_CASE_TEMPLATE("divergences: values match the long-double reference for every reduction and temperature", T,
                   float, double) {
    for (const method_spec& m : tested_methods())
        for (double temperature : temperatures)
            for (reduction red : divergence_reductions)
                for (int extras = 0; extras < 2; ++extras) {
                    INFO(m.describe(), " T = ", temperature, " reduction ", std::string(distill::to_string(red)),
                         " extras ", extras);
                    host_problem<T> p(6, 9, 11);
                    if (extras) p.with_labels({1, 4}).with_weight();
                    const auto out = run_ok(m, p, temperature, red);
                    check_loss(out, reduce_rows(reference_rows(m, p, temperature), p, red), temperature,
                               red == reduction::sum ? 6.0 : 1.0);
                    if (extras && red == reduction::none) {  // ignored rows: exactly 0, not NaN
                        CHECK(out.loss[1] == T(0));
                        CHECK(out.loss[4] == T(0));
                    }
                }
}

TEST_CASE_TEMPLATE("divergences: logits of 1e3 at T = 0.5 stay finite and match the reference", T, float, double) {
    for (const method_spec& m : tested_methods()) {
        INFO(m.describe());
        host_problem<T> p(4, 7, 5, 1000.0);
        for (index_t k = 0; k < 7; ++k)  // row 2: the same logits on both sides
            p.teacher[static_cast<std::size_t>(2 * 7 + k)] = p.student[static_cast<std::size_t>(2 * 7 + k)];
        const auto out = run_ok(m, p, 0.5, reduction::none);
        const auto want = reference_rows(m, p, 0.5);
        for (std::size_t i = 0; i < out.loss.size(); ++i) {
            CAPTURE(i);
            CHECK(std::isfinite(out.loss[i]));
            // |z / T| ~ 2e3: a log-probability carries 2e3 eps of rounding, so the allowance is absolute.
            const double atol = std::is_same_v<T, float> ? 2e-4 : 1e-9;
            DISTILL_CHECK_CLOSE(out.loss[i], static_cast<double>(want[i]), value_rtol<T>(), atol);
        }
        for (T g : out.grad) CHECK(std::isfinite(g));
        CHECK(std::isfinite(out.grad_temperature[0]));
    }
}

// ------------------------------------------------------------------------ finite differences

TEST_CASE("divergences: gradients (student and temperature) match central finite differences (double)") {
    // Weights and an ignored row, for every reduction (none: of the sum) and temperature.
    host_problem<double> base(4, 5, 21);
    base.with_labels({1}).with_weight();
    for (const method_spec& m : tested_methods())
        for (double temperature : temperatures)
            for (reduction red : divergence_reductions) {
                check_finite_differences(m, base, temperature, red);
                // Row 1 is ignored: its gradient is exactly zero.
                const auto out = run_ok(m, base, temperature, red);
                for (index_t k = 0; k < 5; ++k) CHECK(out.grad[static_cast<std::size_t>(5 + k)] == 0.0);
            }
}

TEST_CASE("divergences: gradients near the extremes of the parameters (double)") {
    host_problem<double> base(3, 6, 23);
    base.with_weight();
    for (const method_spec& m : {jsd_spec(1e-3), jsd_spec(0.999), skew_kd_spec(1e-3), skew_kd_spec(0.999),
                                 skew_reverse_kd_spec(1e-3), skew_reverse_kd_spec(0.999)})
        for (double temperature : {0.5, 4.0})  // near alpha = 1 the loss is small: no lower bound on the gradient
            check_finite_differences(m, base, temperature, reduction::sum, m.param < 0.5);
}

// ------------------------------------------------------------------------------ properties

TEST_CASE_TEMPLATE("divergences: KL-type divergences and tvd are > 0 for different distributions", T, float,
                   double) {
    for (const method_spec& m : tested_methods()) {
        if (m.id == method_id::soft_ce) continue;  // a cross-entropy, not a divergence
        INFO(m.describe());
        for (unsigned seed = 1; seed <= 10; ++seed) {
            host_problem<T> p(3, 2 + static_cast<index_t>(seed % 6), seed);
            const auto out = run_ok(m, p, 1.0 + seed % 4, reduction::none);
            for (T row : out.loss) CHECK(row > T(0));
        }
    }
}

TEST_CASE_TEMPLATE("divergences: student equal to teacher gives zero loss and zero gradients", T, float, double) {
    for (const method_spec& m : tested_methods()) {
        if (m.id == method_id::soft_ce) continue;  // T^2 H(pt) there; see the soft_ce test
        INFO(m.describe());
        for (reduction red : divergence_reductions) {
            host_problem<T> p(5, 6, 3);
            p.teacher = p.student;
            p.with_weight();
            const auto out = run_ok(m, p, 4.0, red);
            for (T v : out.loss) CHECK(std::abs(v) <= T(1e-5));
            for (T g : out.grad) CHECK(std::abs(g) <= T(1e-6));
            CHECK(std::abs(out.grad_temperature[0]) <= T(1e-5));
            if (m.id == method_id::tvd) {  // exact ties: sign(0) = 0, so everything is exactly 0
                for (T g : out.grad) CHECK(g == T(0));
                for (T v : out.loss) CHECK(v == T(0));
            }
        }
    }
}

TEST_CASE_TEMPLATE("tvd: ties are exact on long rows, with and without d/dT", T, float, double) {
    // The student's probabilities come from the statistics pass and the teacher's from the loss pass:
    // equal logits must still give bitwise equal ps and pt (sign(0) = 0, as torch's abs backward).
    const method_spec m = [] {
        for (const method_spec& x : tested_methods())
            if (x.id == method_id::tvd) return x;
        return tested_methods()[0];
    }();
    REQUIRE(m.id == method_id::tvd);
    for (index_t cols : {17, 100, 1000}) {
        for (double temperature : {1.0, 3.0, 7.5}) {
            for (bool want_temperature : {false, true}) {
                INFO("C = ", cols, ", T = ", temperature, ", d/dT ", want_temperature);
                host_problem<T> p(4, cols, 11);
                p.teacher = p.student;
                const auto out = run_ok(m, p, temperature, reduction::none, -100, true, want_temperature);
                for (T g : out.grad) CHECK(g == T(0));
                for (T v : out.loss) CHECK(v == T(0));
            }
        }
    }
}

/// Float (the host SIMD path) against double on the float inputs: losses and gradients, with and
/// without d/dT (the float path takes its statistics in chunks without d/dT, in two passes with it).
/// grad_floor: an absolute allowance for rows whose gradient cancels (a dominant class with ps and pt
/// near 1: a - ps A of terms of size T leaves 1e-8 to 1e-3, which float gets to about 1e-6 T, on
/// both float paths alike).
inline void check_float_against_double(const method_spec& m, const host_problem<float>& f, double temperature,
                                       double grad_floor = 0) {
    host_problem<double> rounded(f.n, f.c, 1);
    for (std::size_t k = 0; k < f.student.size(); ++k) {
        rounded.student[k] = f.student[k];
        rounded.teacher[k] = f.teacher[k];
    }
    const auto want = run_ok(m, rounded, temperature, reduction::none, -100, true, true);
    double largest = 0;
    for (double g : want.grad) largest = std::max(largest, std::abs(g));
    const double t2 = temperature * temperature;
    for (bool want_temperature : {false, true}) {
        INFO("d/dT ", want_temperature);
        const auto got = run_ok(m, f, temperature, reduction::none, -100, true, want_temperature);
        for (std::size_t i = 0; i < want.loss.size(); ++i) {
            CAPTURE(i);
            DISTILL_CHECK_CLOSE(got.loss[i], want.loss[i], 5e-5, 1.6e-5 * t2);
        }
        for (std::size_t k = 0; k < want.grad.size(); ++k) {
            CAPTURE(k);
            DISTILL_CHECK_CLOSE(got.grad[k], want.grad[k], 1e-4, std::max(1e-5 * largest, grad_floor));
        }
        if (want_temperature) DISTILL_CHECK_CLOSE(got.grad_temperature[0], want.grad_temperature[0], 1e-4, 1e-5 * t2);
    }
}

TEST_CASE("divergences: float on rows of several tiles matches double, with and without d/dT") {
    // The float host path runs the loss pass in tiles of 32 packs in two loops each (without d/dT)
    // or in one loop (with d/dT); double takes the scalar form of the same terms. Rows shorter
    // than a pack, at a tile's edges and of several tiles, with a partial last pack.
    for (const method_spec& m : tested_methods()) {
        for (index_t cols : {5, 17, 511, 512, 513, 1000, 1537}) {
            INFO(m.describe(), ", C = ", cols);
            check_float_against_double(m, host_problem<float>(3, cols, 29), 2.0);
        }
    }
}

TEST_CASE("divergences: the chunked statistics (several chunks, the maximum early, late or far above the rest)") {
    // Without d/dT, jsd, tvd and the skew methods take the maxima and sums of a row longer than
    // 87381 floats (1 MiB of student, teacher and gradient) in one pass of chunks of 64 KiB of
    // each row (more when a row has over 256 of them), each chunk's exps against the running maxima,
    // rescaled afterwards. Rows that rise (the maximum in the last chunk: every earlier chunk is
    // rescaled, some to 0), fall, and a spike in a middle chunk; shorter rows for comparison.
    const std::vector<method_spec> methods = {jsd_spec(0.5), jsd_spec(0.2), tvd_spec, skew_kd_spec(0.1),
                                              skew_reverse_kd_spec(0.7), soft_ce_spec, reverse_kd_spec};
    for (const method_spec& m : methods) {
        for (index_t cols : {4500, 87382, 100003}) {
            for (int shape = 0; shape < 4; ++shape) {
                INFO(m.describe(), ", C = ", cols, ", shape ", shape);
                host_problem<float> f(2, cols, 41);
                for (index_t i = 0; i < f.n; ++i)
                    for (index_t k = 0; k < cols; ++k) {
                        const double x = static_cast<double>(k) / static_cast<double>(cols - 1);  // 0 .. 1
                        const std::size_t e = static_cast<std::size_t>(i * cols + k);
                        double ramp = 0;
                        if (shape == 1) ramp = 120 * x - 100;  // rising: from -100 to 20
                        if (shape == 2) ramp = 20 - 120 * x;   // falling
                        if (shape == 3 && k == cols / 2 + 7) ramp = 60;  // one spike in a middle chunk
                        f.student[e] = static_cast<float>(f.student[e] + ramp);
                        f.teacher[e] = static_cast<float>(f.teacher[e] + (shape == 3 ? ramp / 2 : ramp));
                    }
                check_float_against_double(m, f, 2.0, shape == 3 ? 2e-5 : 0.0);
            }
        }
    }
}

TEST_CASE("divergences: the chunked statistics with over 256 chunks, and exact ties across chunks") {
    // Over 256 chunks of 64 KiB (16384 floats), so the chunks grow.
    host_problem<float> wide(1, 256 * static_cast<index_t>(distill::detail::chunk_statistics_bytes / sizeof(float)) + 4000, 43);
    for (std::size_t k = 0; k < wide.student.size(); ++k) {
        wide.student[k] += static_cast<float>(k) * 4e-5f;  // rising: every chunk raises the maxima
        wide.teacher[k] += static_cast<float>(k) * 4e-5f;
    }
    check_float_against_double(jsd_spec(0.5), wide, 1.0);
    check_float_against_double(tvd_spec, wide, 1.0);
    // tvd: equal rows of several chunks give exactly 0 (equal shifts and scales on both sides).
    for (index_t cols : {4500, 100003}) {
        host_problem<float> p(3, cols, 45);
        for (std::size_t k = 0; k < p.student.size(); ++k) p.student[k] += static_cast<float>(k % static_cast<std::size_t>(cols)) * 0.01f;
        p.teacher = p.student;
        for (double temperature : {1.0, 3.0}) {
            INFO("C = ", cols, ", T = ", temperature);
            const auto out = run_ok(tvd_spec, p, temperature, reduction::none, -100, true, false);
            for (float g : out.grad) CHECK(g == 0.0f);
            for (float v : out.loss) CHECK(v == 0.0f);
        }
    }
}

TEST_CASE("divergences: jsd keeps its teacher's exps in the next row's gradient (ignored, padded and chunked rows)") {
    // Run in order on one worker, a jsd row stores its teacher's exps, then d phi / d ls, in the
    // next row's gradient, which that row then overwrites (the last row computes them again).
    // Float (the SIMD path) against double, with ignored rows before, after and between such rows,
    // into gradient rows padded to a longer stride (the padding untouched), and on rows long enough
    // for the chunked statistics.
    const method_spec m = jsd_spec(0.3);
    for (index_t cols : {700, 90000}) {
        const bool chunked = cols > 87381;
        host_problem<float> f(chunked ? 4 : 9, cols, 53);
        host_problem<double> d(f.n, cols, 1);
        for (std::size_t k = 0; k < f.student.size(); ++k) {
            d.student[k] = f.student[k];
            d.teacher[k] = f.teacher[k];
        }
        if (chunked) {
            f.with_labels({2});
            d.with_labels({2});
        } else {
            f.with_labels({0, 3, 4, 8});
            d.with_labels({0, 3, 4, 8});
        }
        const auto want = run_ok(m, d, 2.0, reduction::none, -100, true, false);
        double largest = 0;
        for (double g : want.grad) largest = std::max(largest, std::abs(g));
        for (index_t pad : {0, 16}) {
            INFO("C = ", cols, ", row padding ", pad);
            const index_t stride = cols + pad;
            std::vector<float> loss(static_cast<std::size_t>(f.n), -1.0f);
            std::vector<float> grad(static_cast<std::size_t>(f.n * stride), host_outputs<float>::sentinel);
            const index_t extents[2] = {f.n, cols}, strides[2] = {stride, 1};
            distill::response_outputs<float> outs{distill::make_view(loss.data(), f.n)};
            outs.grad_student = distill::strided_view<float, 2>(grad.data(), 2, extents, strides);
            distill::jsd_float_options opts;
            opts.temperature = 2.0f;
            opts.beta = 0.3f;
            opts.reduce = reduction::none;
            REQUIRE(distill::run(opts, f.args(), outs).ok());
            for (index_t i = 0; i < f.n; ++i) {
                CAPTURE(i);
                DISTILL_CHECK_CLOSE(loss[static_cast<std::size_t>(i)], want.loss[static_cast<std::size_t>(i)], 5e-5, 6.4e-5);
                for (index_t k = 0; k < stride; ++k) {
                    const float got = grad[static_cast<std::size_t>(i * stride + k)];
                    if (k >= cols) {
                        REQUIRE(got == host_outputs<float>::sentinel);
                        continue;
                    }
                    CAPTURE(k);
                    DISTILL_CHECK_CLOSE(got, want.grad[static_cast<std::size_t>(i * cols + k)], 1e-4, 1e-5 * largest);
                }
            }
        }
    }
}

TEST_CASE("jsd without ls - lt on the scratch path: masked, far-behind and very different students") {
    // On the scratch path the loss pass reads neither logit row: it sums the terms without
    // ls - lt and adds -beta sum_c pt (ls - lt) from the statistics, and takes the full terms
    // only for packs holding a ps below least_probability_v (a masked student class, or one so far
    // behind that ps underflows). Float and double without d/dT (that path) against the long-double
    // loss and against double with d/dT (the four-exp path) for the gradient, on rows with: student
    // classes masked, teacher classes masked and both masked; students 200 (in units of T) behind
    // the rest (an exp of 0 in float, not in double); a student opposite to a sharp teacher (the
    // two sums cancel the most); and equal rows. Long rows put the far-behind classes in early
    // chunks whose own shift is low, so that their stored exps are > 0 while ps underflows.
    const method_spec m = jsd_spec(0.3);
    const double temperature = 2;
    for (index_t cols : {700, 90000}) {
        host_problem<double> d(6, cols, 71);
        const auto at = [&](std::vector<double>& v, index_t i, index_t k) -> double& {
            return v[static_cast<std::size_t>(i * cols + k)];
        };
        const auto set_row = [&](std::vector<double>& v, index_t i, index_t from, index_t to, auto value) {
            for (index_t k = from; k < to; ++k) at(v, i, k) = value(k);
        };
        // Row 1: masked classes.
        set_row(d.student, 1, 5, 20, [](index_t) { return neg_inf; });
        set_row(d.teacher, 1, 30, 40, [](index_t) { return neg_inf; });
        set_row(d.student, 1, 35, 45, [](index_t) { return neg_inf; });
        // Row 2: students far behind (tempered logits 200 and, on long rows, 85, 75 and 70 below),
        // on long rows one float chunk of the statistics each.
        constexpr index_t chunk = static_cast<index_t>(distill::detail::chunk_statistics_bytes / sizeof(float));
        if (cols < 4 * chunk) {
            set_row(d.student, 2, 0, 100, [&](index_t k) { return at(d.student, 2, k) - 400; });
        } else {
            const double behind[] = {400, 170, 150, 140};
            for (int j = 0; j < 4; ++j)
                set_row(d.student, 2, chunk * j, chunk * (j + 1), [&](index_t k) { return at(d.student, 2, k) - behind[j]; });
        }
        // Row 3: a sharp teacher, the student its opposite. Row 4: equal rows.
        set_row(d.teacher, 3, 0, cols, [&](index_t k) { return 4 * at(d.teacher, 3, k); });
        set_row(d.student, 3, 0, cols, [&](index_t k) { return -at(d.teacher, 3, k); });
        set_row(d.student, 4, 0, cols, [&](index_t k) { return at(d.teacher, 4, k); });
        host_problem<float> f(d.n, cols, 1);
        for (std::size_t k = 0; k < d.student.size(); ++k) {
            f.student[k] = static_cast<float>(d.student[k]);
            f.teacher[k] = static_cast<float>(d.teacher[k]);
            d.student[k] = f.student[k];  // the same inputs in both precisions
            d.teacher[k] = f.teacher[k];
        }
        const auto want_loss = reference_rows(m, d, temperature);
        const auto four_exp = run_ok(m, d, temperature, reduction::none, -100, true, true);
        double largest = 0;
        for (double g : four_exp.grad) largest = std::max(largest, std::abs(g));
        for (std::size_t i = 0; i < want_loss.size(); ++i) {
            CAPTURE(i);
            DISTILL_CHECK_CLOSE(four_exp.loss[i], static_cast<double>(want_loss[i]), 1e-11, 1e-13);
        }
        const auto check = [&](const auto& got, double loss_rtol, double loss_atol, double grad_rtol, double grad_atol) {
            for (std::size_t i = 0; i < want_loss.size(); ++i) {
                CAPTURE(i);
                DISTILL_CHECK_CLOSE(got.loss[i], static_cast<double>(want_loss[i]), loss_rtol, loss_atol);
            }
            for (std::size_t k = 0; k < four_exp.grad.size(); ++k) {
                CAPTURE(k);
                REQUIRE(std::isfinite(got.grad[k]));
                DISTILL_CHECK_CLOSE(got.grad[k], four_exp.grad[k], grad_rtol, grad_atol);
            }
        };
        INFO("C = ", cols);
        check(run_ok(m, d, temperature, reduction::none, -100, true, false), 1e-11, 1e-13, 1e-10, 1e-14 * largest);
        check(run_ok(m, f, temperature, reduction::none, -100, true, false), 5e-5, 1.6e-5 * temperature * temperature, 1e-4,
              1e-5 * largest);
    }
}

TEST_CASE_TEMPLATE("divergences: batchmean with every row ignored (or every weight 0) is 0 with zero gradients", T,
                   float, double) {
    for (const method_spec& m : tested_methods()) {
        INFO(m.describe());
        host_problem<T> p(3, 4, 9);
        p.with_labels({0, 1, 2}).with_weight();
        const auto out = run_ok(m, p, 1.5, reduction::batchmean);
        CHECK(out.loss[0] == T(0));
        for (T g : out.grad) CHECK(g == T(0));
        CHECK(out.grad_temperature[0] == T(0));

        host_problem<T> q(3, 4, 9);
        q.weight.assign(3, T(0));
        q.use_weight = true;
        const auto zero = run_ok(m, q, 1.5, reduction::batchmean);
        CHECK(zero.loss[0] == T(0));
        for (T g : zero.grad) CHECK(g == T(0));
        CHECK(zero.grad_temperature[0] == T(0));
    }
}

TEST_CASE_TEMPLATE("divergences: C = 1 gives loss 0 (soft_ce too) and zero gradients", T, float, double) {
    for (const method_spec& m : tested_methods()) {
        INFO(m.describe());
        host_problem<T> p(4, 1, 19);
        p.with_weight();
        const auto out = run_ok(m, p, 2.0, reduction::sum);
        // jsd and the skew methods form log(beta + (1 - beta)) = 0 from two logs: rounding only.
        const T eps = std::is_same_v<T, float> ? T(1e-6) : T(1e-14);
        CHECK(std::abs(out.loss[0]) <= eps);
        for (T g : out.grad) CHECK(g == T(0));  // a - ps A with ps = 1 and A = a
        CHECK(std::abs(out.grad_temperature[0]) <= eps);
    }
}

TEST_CASE_TEMPLATE("jsd: at most log(2) T^2 per row (H(beta) T^2 in general), attained by disjoint supports", T, float,
                   double) {
    const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
    for (double beta : {0.5, 0.2, 0.9}) {
        const double binary_entropy = -beta * std::log(beta) - (1 - beta) * std::log1p(-beta);
        for (double temperature : {0.5, 1.0, 4.0}) {
            CAPTURE(beta);
            CAPTURE(temperature);
            host_problem<T> p(8, 7, 33, 6.0);
            const auto out = run_ok(jsd_spec(beta), p, temperature, reduction::none);
            for (T row : out.loss) CHECK(row <= T(binary_entropy * temperature * temperature * (1 + rtol)));
            // Disjoint supports: each side puts all its mass where the other has (almost) none.
            host_problem<T> d(1, 3, 1);
            d.student = {T(0), T(-60 * temperature), T(-60 * temperature)};
            d.teacher = {T(-60 * temperature), T(0), T(-60 * temperature)};
            const auto extreme = run_ok(jsd_spec(beta), d, temperature, reduction::none);
            DISTILL_CHECK_CLOSE(extreme.loss[0], binary_entropy * temperature * temperature, rtol, 0);
        }
    }
}

TEST_CASE_TEMPLATE("jsd: swapping student and teacher is swapping beta and 1 - beta (symmetric at 0.5)", T, float,
                   double) {
    host_problem<T> p(5, 8, 41);
    host_problem<T> swapped = p;
    std::swap(swapped.student, swapped.teacher);
    const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
    for (double beta : {0.5, 0.3}) {
        const auto a = run_ok(jsd_spec(beta), p, 2.0, reduction::none);
        const auto b = run_ok(jsd_spec(1 - beta), swapped, 2.0, reduction::none);
        for (std::size_t i = 0; i < a.loss.size(); ++i) DISTILL_CHECK_CLOSE(a.loss[i], b.loss[i], rtol, 1e-7);
    }
    // And not symmetric for beta != 0.5 without the swap of beta (the test above can fail).
    const auto c = run_ok(jsd_spec(0.3), p, 2.0, reduction::sum);
    const auto d = run_ok(jsd_spec(0.3), swapped, 2.0, reduction::sum);
    CHECK_FALSE(close(c.loss[0], d.loss[0], 1e-3));
}

TEST_CASE_TEMPLATE("tvd: at most T^2 per row, attained by disjoint supports", T, float, double) {
    for (double temperature : {0.5, 1.0, 4.0, 20.0}) {
        CAPTURE(temperature);
        host_problem<T> p(8, 7, 35, 6.0);
        const auto out = run_ok(tvd_spec, p, temperature, reduction::none);
        for (T row : out.loss) CHECK(row <= T(temperature * temperature * (1 + 1e-6)));
        host_problem<T> d(1, 4, 1);
        d.student = {T(0), T(0), T(-80 * temperature), T(-80 * temperature)};
        d.teacher = {T(-80 * temperature), T(-80 * temperature), T(0), T(0)};
        const auto extreme = run_ok(tvd_spec, d, temperature, reduction::none);
        DISTILL_CHECK_CLOSE(extreme.loss[0], temperature * temperature, 1e-6, 0);
    }
}

TEST_CASE_TEMPLATE("soft_ce: kd plus T^2 H(pt) per row, with the student gradient of kd", T, float, double) {
    for (double temperature : temperatures) {
        CAPTURE(temperature);
        host_problem<T> p(6, 9, 45);
        p.with_labels({2}).with_weight();
        const auto ce = run_ok(soft_ce_spec, p, temperature, reduction::none);
        const auto kl = run_ok(kd_spec, p, temperature, reduction::none);
        const auto entropy = teacher_entropy(p, temperature);
        for (std::size_t i = 0; i < ce.loss.size(); ++i) {
            const real w = i == 2 ? real(0) : real(p.weight[i]);
            const real expected = kl.loss[i] + w * real(temperature * temperature) * entropy[i];
            DISTILL_CHECK_CLOSE(ce.loss[i], static_cast<double>(expected), value_rtol<T>(), 0);
        }
        const double atol = std::is_same_v<T, float> ? 1e-6 * temperature : 1e-14;
        check_all_close(ce.grad, kl.grad, value_rtol<T>(), atol);
    }
}

TEST_CASE_TEMPLATE("skew_kd and skew_reverse_kd: alpha 0 is kd and reverse_kd, alpha 1 is 0 with zero gradients", T,
                   float, double) {
    host_problem<T> p(5, 7, 51);
    p.with_labels({3}).with_weight();
    const double rtol = std::is_same_v<T, float> ? 2e-5 : 1e-12;
    for (double temperature : {0.5, 2.0, 20.0})
        for (reduction red : divergence_reductions) {
            CAPTURE(temperature);
            // Not a structured binding: INFO's lambda captures `skewed`, and clang 14 cannot
            // capture structured bindings (the sanitizer stage builds with clang).
            for (const auto& pair : {std::pair{skew_kd_spec(0), kd_spec},
                                     std::pair{skew_reverse_kd_spec(0), reverse_kd_spec}}) {
                const auto& skewed = pair.first;
                const auto& plain = pair.second;
                INFO(skewed.describe());
                const auto a = run_ok(skewed, p, temperature, red), b = run_ok(plain, p, temperature, red);
                const double atol = std::is_same_v<T, float> ? 4e-6 * temperature * temperature : 1e-13;
                check_all_close(a.loss, b.loss, rtol, atol);
                check_all_close(a.grad, b.grad, rtol, atol / temperature);
                DISTILL_CHECK_CLOSE(a.grad_temperature[0], b.grad_temperature[0], rtol, atol * 10 / temperature);
            }
            for (const method_spec& m : {skew_kd_spec(1), skew_reverse_kd_spec(1)}) {
                INFO(m.describe());
                const auto z = run_ok(m, p, temperature, red);
                for (T v : z.loss) CHECK(v == T(0));
                for (T g : z.grad) CHECK(g == T(0));
                CHECK(z.grad_temperature[0] == T(0));
            }
        }
}

TEST_CASE_TEMPLATE("skew_kd and skew_reverse_kd: at most (1 - alpha) times the plain KL (convexity), decreasing in alpha",
                   T, float, double) {
    host_problem<T> p(6, 8, 53, 4.0);
    const double slack = std::is_same_v<T, float> ? 1e-5 : 1e-12;
    for (const auto& [id, plain] : {std::pair{method_id::skew_kd, kd_spec}, std::pair{method_id::skew_reverse_kd,
                                                                                       reverse_kd_spec}}) {
        const auto kl = run_ok(plain, p, 1.5, reduction::none);
        std::vector<T> previous = kl.loss;
        for (double alpha : {0.05, 0.3, 0.6, 0.95}) {
            const method_spec m{id, alpha};
            INFO(m.describe());
            const auto out = run_ok(m, p, 1.5, reduction::none);
            for (std::size_t i = 0; i < out.loss.size(); ++i) {
                CHECK(out.loss[i] <= T((1 - alpha) * kl.loss[i] * (1 + slack)));
                CHECK(out.loss[i] < previous[i]);
            }
            previous = out.loss;
        }
    }
}

// ---------------------------------------------------------------------------- masked entries

TEST_CASE("divergences: masked (-inf) entries are probability 0; finite wherever the definition is") {
    // Row 0: class 2 masked on both sides (as if it did not exist). Row 1: class 0 masked in the
    // teacher only (pt = 0 < ps). Row 2: class 3 masked in the student only (ps = 0 < pt).
    host_problem<double> p(3, 5, 61);
    p.student[2] = p.teacher[2] = neg_inf;
    p.teacher[5] = neg_inf;
    p.student[13] = neg_inf;
    p.with_weight();

    struct expectation {
        method_spec m;
        bool finite_teacher_masked, finite_student_masked;
    };
    const expectation table[] = {
        {reverse_kd_spec, false, true},           {jsd_spec(0.5), true, true},
        {jsd_spec(0.2), true, true},              {skew_kd_spec(0.1), true, true},
        {skew_kd_spec(0), true, false},           {skew_reverse_kd_spec(0.1), true, true},
        {skew_reverse_kd_spec(0), false, true},   {tvd_spec, true, true},
        {soft_ce_spec, true, false},
    };
    for (const expectation& e : table) {
        INFO(e.m.describe());
        const auto out = run_ok(e.m, p, 2.0, reduction::none);
        const auto want = reduce_rows(reference_rows(e.m, p, 2.0), p, reduction::none);
        // Row 0 is the row without class 2 (an independent check of the reference's 0 log 0 = 0).
        host_problem<double> without(1, 4, 1);
        without.student = {p.student[0], p.student[1], p.student[3], p.student[4]};
        without.teacher = {p.teacher[0], p.teacher[1], p.teacher[3], p.teacher[4]};
        const auto reduced = run_ok(e.m, without, 2.0, reduction::none);
        DISTILL_CHECK_CLOSE(out.loss[0], p.weight[0] * reduced.loss[0], 1e-13, 0);
        DISTILL_CHECK_CLOSE(out.loss[0], static_cast<double>(want[0]), 1e-12, 0);
        CHECK(out.grad[2] == 0.0);

        const bool finite[3] = {true, e.finite_teacher_masked, e.finite_student_masked};
        for (std::size_t i = 1; i < 3; ++i) {
            CAPTURE(i);
            if (finite[i]) {
                DISTILL_CHECK_CLOSE(out.loss[i], static_cast<double>(want[i]), 1e-12, 0);
            } else {
                CHECK(std::isinf(out.loss[i]));
                CHECK(out.loss[i] > 0);
            }
        }
        if (finite[1] && finite[2]) {
            for (double g : out.grad) CHECK(std::isfinite(g));
            CHECK(out.grad[13] == 0.0);  // ps = 0: nothing moves the loss through this logit
            CHECK(std::isfinite(out.grad_temperature[0]));
            check_finite_differences(e.m, p, 2.0, reduction::sum);
        }
    }
}

// ------------------------------------------------------------------------------------ errors

/// The rule rejects these arguments: check, check_args and run agree (run writes nothing), and the
/// convenience object throws distill::error with the same status.
template <class T, class Options, class Loss>
void check_rejected(const Loss& loss, const Options& opts, const distill::response_args<T>& args,
                    host_outputs<T>& out, const distill::response_outputs<T>& views, errc code, error_kind kind,
                    const char* argument, std::initializer_list<const char*> fragments, bool input_rule = true) {
    const char* method = distill::response_method<Options>::name;
    const distill::status checked = distill::check(opts, args, views);
    check_method_error(method, checked, code, kind, argument, fragments);
    const distill::status ran = distill::run(opts, args, views);
    check_method_error(method, ran, code, kind, argument, fragments);
    CHECK(std::string(ran.message()) == checked.message());
    CHECK(out.untouched());
    if (!input_rule) return;
    check_method_error(method, distill::check_args(distill::cpu_backend{}, opts, args), code, kind, argument,
                       fragments);
    bool thrown = false;
    try {
        (void)loss(args.student, args.teacher, args.labels, args.weight, opts);
    } catch (const distill::error& e) {
        thrown = true;
        CHECK(std::string(e.what()) == ran.message());
    }
    CHECK_MESSAGE(thrown, "the convenience object did not throw distill::error");
}

/// Every error rule of one method (opts: valid options), on a 3 x 5 problem with labels and weights.
template <class T, class Options, class Loss>
void check_error_rules(const Loss& loss, const Options& opts) {
    host_problem<T> p(3, 5, 91);
    p.with_labels().with_weight();
    auto rejected = [&](const Options& o, const distill::response_args<T>& args, errc code, error_kind kind,
                        const char* argument, std::initializer_list<const char*> fragments) {
        host_outputs<T> out(o.reduce, 3, 5);
        check_rejected(loss, o, args, out, out.views(3, 5), code, kind, argument, fragments);
    };
    const auto good = p.args();
    {
        host_outputs<T> out(opts.reduce, 3, 5);
        REQUIRE(distill::run(opts, good, out.views(3, 5)).ok());
    }
    for (double bad : {0.0, -1.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
        Options o = opts;
        o.temperature = static_cast<decltype(o.temperature)>(bad);
        rejected(o, good, errc::invalid_parameter, error_kind::value, "temperature", {"temperature = ", "> 0"});
    }
    {
        Options o = opts;
        o.reduce = static_cast<reduction>(7);
        rejected(o, good, errc::unknown_reduction, error_kind::value, "reduction", {"reduction = 7"});
    }
    auto args = good;
    args.teacher = distill::make_view(p.teacher.data(), 3, 4);
    rejected(opts, args, errc::shape_mismatch, error_kind::shape, "teacher", {"teacher", "[3, 4]", "[3, 5]"});
    args = good;
    args.teacher = distill::make_view(p.teacher.data(), 2, 5);
    rejected(opts, args, errc::shape_mismatch, error_kind::shape, "teacher", {"[2, 5]", "[3, 5]"});
    args = good;
    args.teacher = {};
    rejected(opts, args, errc::missing_argument, error_kind::shape, "teacher", {"teacher", "required"});
    args = good;
    args.student = distill::make_view(p.student.data(), 15);
    args.teacher = distill::make_view(p.teacher.data(), 15);
    rejected(opts, args, errc::bad_rank, error_kind::shape, "student", {"2-D", "[15]"});
    args = good;
    args.labels = distill::make_view(p.labels.data(), 2);
    rejected(opts, args, errc::shape_mismatch, error_kind::shape, "labels", {"labels", "[2]", "[3]"});
    args = good;
    args.weight = distill::make_view(p.weight.data(), 2);
    rejected(opts, args, errc::shape_mismatch, error_kind::shape, "weight", {"weight", "[2]", "[3]"});

    host_problem<T> q = p;
    q.weight[1] = T(-0.5);
    rejected(opts, q.args(), errc::invalid_weight, error_kind::value, "weight", {"weight[1]", ">= 0"});
    q = p;
    q.labels[2] = 5;
    rejected(opts, q.args(), errc::label_out_of_range, error_kind::value, "labels", {"labels[2] = 5", "[0, 5)"});

    // Output rules: the arguments alone are fine.
    host_outputs<T> out(opts.reduce, 3, 5);
    auto views = out.views(3, 5);
    views.grad_student = distill::make_view(out.grad.data(), 5, 3);
    check_rejected(loss, opts, good, out, views, errc::shape_mismatch, error_kind::shape, "grad_student",
                   {"grad_student", "[5, 3]"}, false);
    views = out.views(3, 5);
    views.grad_student = distill::make_view(p.student.data(), 3, 5);
    check_rejected(loss, opts, good, out, views, errc::aliasing, error_kind::usage, "grad_student",
                   {"grad_student", "student"}, false);
    CHECK(p.student == host_problem<T>(3, 5, 91).student);  // the aliased input was not written either
}

TEST_CASE_TEMPLATE("divergences: every error rule names the argument and writes nothing", T, float, double) {
    SUBCASE("reverse_kd") { check_error_rules<T>(distill::reverse_kd, distill::reverse_kd_options{}); }
    SUBCASE("jsd") { check_error_rules<T>(distill::jsd, distill::jsd_options{}); }
    SUBCASE("skew_kd") { check_error_rules<T>(distill::skew_kd, distill::skew_kd_options{}); }
    SUBCASE("skew_reverse_kd") { check_error_rules<T>(distill::skew_reverse_kd, distill::skew_reverse_kd_options{}); }
    SUBCASE("tvd") { check_error_rules<T>(distill::tvd, distill::tvd_options{}); }
    SUBCASE("soft_ce") { check_error_rules<T>(distill::soft_ce, distill::soft_ce_options{}); }
}

TEST_CASE_TEMPLATE("jsd: beta outside the open interval (0, 1) is a value error; inside it is fine", T, float, double) {
    host_problem<T> p(3, 5, 93);
    for (double beta : {0.0, 1.0, -0.25, 1.5, std::nan(""), std::numeric_limits<double>::infinity()}) {
        CAPTURE(beta);
        distill::jsd_options o;
        o.beta = beta;
        host_outputs<T> out(o.reduce, 3, 5);
        check_rejected(distill::jsd, o, p.args(), out, out.views(3, 5), errc::invalid_parameter, error_kind::value,
                       "beta", {"beta = ", "is outside (0.00000, 1.00000)"});
    }
    for (double beta : {1e-9, 0.5, 1 - 1e-9}) {
        host_outputs<T> out(reduction::batchmean, 3, 5);
        CHECK(distill::run(distill::jsd_options{.beta = beta}, p.args(), out.views(3, 5)).ok());
        CHECK(std::isfinite(out.loss[0]));
    }
}

TEST_CASE_TEMPLATE("skew_kd and skew_reverse_kd: alpha outside [0, 1] is a value error; 0 and 1 are fine", T, float,
                   double) {
    host_problem<T> p(3, 5, 95);
    for (double alpha : {-0.1, 1.25, std::nan(""), -std::numeric_limits<double>::infinity()}) {
        CAPTURE(alpha);
        host_outputs<T> a(reduction::batchmean, 3, 5), b(reduction::batchmean, 3, 5);
        check_rejected(distill::skew_kd, distill::skew_kd_options{.alpha = alpha}, p.args(), a, a.views(3, 5),
                       errc::invalid_parameter, error_kind::value, "alpha", {"alpha = ", "is outside [0.00000, 1.00000]"});
        check_rejected(distill::skew_reverse_kd, distill::skew_reverse_kd_options{.alpha = alpha}, p.args(), b,
                       b.views(3, 5), errc::invalid_parameter, error_kind::value, "alpha",
                       {"alpha = ", "is outside [0.00000, 1.00000]"});
    }
    for (double alpha : {0.0, 1.0}) {
        host_outputs<T> a(reduction::batchmean, 3, 5), b(reduction::batchmean, 3, 5);
        CHECK(distill::run(distill::skew_kd_options{.alpha = alpha}, p.args(), a.views(3, 5)).ok());
        CHECK(distill::run(distill::skew_reverse_kd_options{.alpha = alpha}, p.args(), b.views(3, 5)).ok());
    }
}

// ----------------------------------------------------------------------- convenience objects

TEST_CASE_TEMPLATE("divergences: the function objects on Eigen matrices give what distill::run computes", T, float,
                   double) {
    using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    host_problem<T> p(4, 6, 97);
    p.with_labels({2}).with_weight();
    const matrix student = Eigen::Map<const matrix>(p.student.data(), 4, 6);
    const matrix teacher = Eigen::Map<const matrix>(p.teacher.data(), 4, 6);
    const Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1> labels =
        Eigen::Map<const Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1>>(p.labels.data(), 4);
    const Eigen::Matrix<T, Eigen::Dynamic, 1> weight = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(p.weight.data(), 4);

    auto same = [&](const auto& result, const method_spec& m, reduction red) {
        INFO(m.describe());
        const auto out = run_ok(m, p, 3.0, red);
        REQUIRE(result.status.ok());
        CHECK(result.grad_temperature == out.grad_temperature[0]);
        for (index_t i = 0; i < 4; ++i)
            for (index_t k = 0; k < 6; ++k)
                CHECK(result.grad_student(i, k) == out.grad[static_cast<std::size_t>(i * 6 + k)]);
        if (red == reduction::none) {
            for (index_t i = 0; i < 4; ++i) CHECK(result.row_losses(i) == out.loss[static_cast<std::size_t>(i)]);
        } else {
            CHECK(result.loss == out.loss[0]);
        }
    };
    for (reduction red : {reduction::sum, reduction::none}) {
        same(distill::reverse_kd(student, teacher, labels, weight, {3.0, red}), reverse_kd_spec, red);
        same(distill::jsd(student, teacher, labels, weight, {.temperature = 3.0, .reduce = red, .beta = 0.2}),
             jsd_spec(0.2), red);
        same(distill::skew_kd(student, teacher, labels, weight, {.temperature = 3.0, .reduce = red, .alpha = 0.3}),
             skew_kd_spec(0.3), red);
        same(distill::skew_reverse_kd(student, teacher, labels, weight,
                                      {.temperature = 3.0, .reduce = red, .alpha = 0.3}),
             skew_reverse_kd_spec(0.3), red);
        same(distill::tvd(student, teacher, labels, weight, {3.0, red}), tvd_spec, red);
        same(distill::soft_ce(student, teacher, labels, weight, {3.0, red}), soft_ce_spec, red);
    }
    // The default options are the definition's: T = 1, batchmean, beta 0.5, alpha 0.1.
    const auto defaults = distill::jsd(student, teacher);
    DISTILL_CHECK_CLOSE(defaults.loss, run_ok(jsd_spec(0.5), host_problem<T>(p.n, p.c, 97), 1.0, reduction::batchmean).loss[0],
                        1e-15, 0);
    CHECK(distill::skew_kd_options{}.alpha == 0.1);
    CHECK(distill::skew_reverse_kd_options{}.alpha == 0.1);
    CHECK(distill::jsd_options{}.beta == 0.5);
}

TEST_CASE("divergences: the float options give the float results of the double options") {
    host_problem<float> p(3, 7, 99);
    host_outputs<float> a(reduction::sum, 3, 7), b(reduction::sum, 3, 7);
    REQUIRE(distill::run(distill::jsd_float_options{2.0f, reduction::sum, -100, 0.25f}, p.args(), a.views(3, 7)).ok());
    REQUIRE(distill::run(distill::jsd_options{2.0, reduction::sum, -100, 0.25}, p.args(), b.views(3, 7)).ok());
    CHECK(a.loss == b.loss);
    CHECK(a.grad == b.grad);
    host_outputs<float> c(reduction::sum, 3, 7), d(reduction::sum, 3, 7);
    REQUIRE(distill::run(distill::skew_reverse_kd_float_options{2.0f, reduction::sum, -100, 0.5f}, p.args(),
                         c.views(3, 7))
                .ok());
    REQUIRE(distill::run(distill::skew_reverse_kd_options{2.0, reduction::sum, -100, 0.5}, p.args(), d.views(3, 7)).ok());
    CHECK(c.loss == d.loss);
    CHECK(c.grad == d.grad);
}

// The run steps on the CPU backend are noexcept (validate, then run blindly).
static_assert(noexcept(distill::run(distill::jsd_options{}, std::declval<const distill::response_args<float>&>(),
                                       std::declval<const distill::response_outputs<float>&>())));
static_assert(noexcept(distill::run(distill::skew_kd_options{}, std::declval<const distill::response_args<double>&>(),
                                       std::declval<const distill::response_outputs<double>&>())));

}  // namespace divergences_test
