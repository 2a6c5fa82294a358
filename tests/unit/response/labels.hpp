// tests/unit/response/labels.hpp: logit_mse, ce and dkd on the CPU backend (included by
// response_methods_test.cpp, after test_support.hpp).
//
// Values against long-double references written from METHODS-response.md, gradients (and d/dT
// for dkd) against central finite differences for every reduction with weights and ignored
// rows, properties tying the methods to others (ce at eps 0 and 1 is kd against a one-hot or a
// uniform teacher; KD = TCKD + (1 - p^t_y) NCKD; at C = 2, NCKD = 0 and dkd is kd), masked
// (-inf) entries, and every error rule with nothing written.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace labels_methods_test {

using namespace distill_test;
using distill::errc;
using distill::error_kind;
using distill::index_t;
using distill::reduction;
using real = long double;

constexpr reduction label_reductions[] = {reduction::batchmean, reduction::sum, reduction::none};
constexpr double neg_inf = -std::numeric_limits<double>::infinity();

template <class Options>
using method_of = distill::response_method<Options>;

/// The problem's arguments as the method takes them (no teacher for ce).
template <class Options, class T>
distill::response_args<T> args_for(const host_problem<T>& p) {
    distill::response_args<T> a = p.args();
    if constexpr (!method_of<Options>::needs_teacher) a.teacher = {};
    return a;
}

/// distill::run on the problem, every output the method has; requires success.
template <class T, class Options>
host_outputs<T> run_ok(const host_problem<T>& p, const Options& opts, bool want_grad = true) {
    host_outputs<T> out(opts.reduce, p.n, p.c);
    const distill::status s =
        distill::run(opts, args_for<Options>(p), out.views(p.n, p.c, want_grad, method_of<Options>::has_temperature));
    INFO("message: ", s.message());
    REQUIRE(s.ok());
    return out;
}

// ------------------------------------------------------------------ long-double references

template <class T>
std::vector<real> row_of(const std::vector<T>& m, index_t c, index_t i) {
    return std::vector<real>(m.begin() + i * c, m.begin() + (i + 1) * c);
}

/// log-sum-exp of z over the classes where keep(c), max-shifted.
template <class Keep>
real logsumexp(const std::vector<real>& z, Keep keep) {
    real mx = -std::numeric_limits<real>::infinity();
    for (std::size_t c = 0; c < z.size(); ++c)
        if (keep(c)) mx = std::max(mx, z[c]);
    real sum = 0;
    for (std::size_t c = 0; c < z.size(); ++c)
        if (keep(c)) sum += std::exp(z[c] - mx);
    return mx + std::log(sum);
}
inline real logsumexp(const std::vector<real>& z) {
    return logsumexp(z, [](std::size_t) { return true; });
}

template <class T>
std::vector<real> logit_mse_rows(const host_problem<T>& p) {
    std::vector<real> rows;
    for (index_t i = 0; i < p.n; ++i) {
        const auto s = row_of(p.student, p.c, i), t = row_of(p.teacher, p.c, i);
        real sum = 0;
        for (index_t k = 0; k < p.c; ++k) sum += (s[k] - t[k]) * (s[k] - t[k]);
        rows.push_back(sum / static_cast<real>(p.c));
    }
    return rows;
}

template <class T>
std::vector<real> ce_rows(const host_problem<T>& p, double eps) {
    std::vector<real> rows;
    for (index_t i = 0; i < p.n; ++i) {
        const auto s = row_of(p.student, p.c, i);
        const real lse = logsumexp(s);
        const auto y = p.labels[static_cast<std::size_t>(i)];
        if (y < 0 || y >= p.c) {  // ignored row; its value is multiplied by 0
            rows.push_back(0);
            continue;
        }
        real smooth = 0;
        for (index_t k = 0; k < p.c; ++k) smooth += lse - s[k];
        rows.push_back((1 - real(eps)) * (lse - s[y]) + real(eps) / static_cast<real>(p.c) * smooth);
    }
    return rows;
}

/// One row of dkd from the definition: TCKD, NCKD and the teacher's target probability.
struct dkd_parts {
    real tckd = 0, nckd = 0, teacher_target = 0;
};

template <class T>
dkd_parts dkd_row(const host_problem<T>& p, index_t i, double temperature) {
    auto s = row_of(p.student, p.c, i), t = row_of(p.teacher, p.c, i);
    for (auto& v : s) v /= real(temperature);
    for (auto& v : t) v /= real(temperature);
    const auto y = static_cast<std::size_t>(p.labels[static_cast<std::size_t>(i)]);
    auto other = [&](std::size_t c) { return c != y; };
    const real lse_s = logsumexp(s), lse_t = logsumexp(t);
    const real lse_so = logsumexp(s, other), lse_to = logsumexp(t, other);
    const real lbs[2] = {s[y] - lse_s, lse_so - lse_s}, lbt[2] = {t[y] - lse_t, lse_to - lse_t};
    dkd_parts r;
    for (int j = 0; j < 2; ++j) r.tckd += std::exp(lbt[j]) * (lbt[j] - lbs[j]);
    for (std::size_t c = 0; c < s.size(); ++c) {
        if (c == y) continue;
        const real lqs = s[c] - lse_so, lqt = t[c] - lse_to;
        r.nckd += std::exp(lqt) * (lqt - lqs);
    }
    r.teacher_target = std::exp(lbt[0]);
    return r;
}

template <class T>
std::vector<real> dkd_rows(const host_problem<T>& p, const distill::dkd_options& o) {
    std::vector<real> rows;
    const real tau = o.temperature;
    for (index_t i = 0; i < p.n; ++i) {
        const auto y = p.labels[static_cast<std::size_t>(i)];
        if (y < 0 || y >= p.c) {
            rows.push_back(0);
            continue;
        }
        const dkd_parts d = dkd_row(p, i, o.temperature);
        rows.push_back(tau * tau * (real(o.alpha) * d.tckd + real(o.beta) * d.nckd));
    }
    return rows;
}

/// The reduced loss of per-row losses (1 value, or N for none) under the problem's row weights.
template <class T>
std::vector<real> reduce_rows(const std::vector<real>& rows, const host_problem<T>& p, reduction red,
                              std::int64_t ignore_index = -100) {
    std::vector<real> weighted;
    real total = 0, total_weight = 0;
    for (index_t i = 0; i < p.n; ++i) {
        real w = p.use_weight ? real(p.weight[static_cast<std::size_t>(i)]) : real(1);
        if (p.use_labels && p.labels[static_cast<std::size_t>(i)] == ignore_index) w = 0;
        weighted.push_back(w * rows[static_cast<std::size_t>(i)]);
        total += weighted.back();
        total_weight += w;
    }
    if (red == reduction::none) return weighted;
    if (red == reduction::sum) return {total};
    return {total_weight > 0 ? total / total_weight : real(0)};
}

/// The outputs' loss matches the expected values to rtol (and atol, for values near 0).
template <class T>
void check_loss(const host_outputs<T>& out, const std::vector<real>& want, double rtol, double atol) {
    REQUIRE(out.loss.size() == want.size());
    for (std::size_t i = 0; i < want.size(); ++i) {
        CAPTURE(i);
        DISTILL_CHECK_CLOSE(out.loss[i], static_cast<double>(want[i]), rtol, atol);
    }
}

/// A problem with labels i % c, the listed rows ignored, and optionally weights (one of them 0).
template <class T>
host_problem<T> labelled(index_t n, index_t c, unsigned seed, bool extras, double scale = 3.0) {
    host_problem<T> p(n, c, seed, scale);
    if (extras) {
        p.with_labels({1}).with_weight();
        p.weight[static_cast<std::size_t>(n - 1)] = T(0);
    } else {
        p.with_labels();
    }
    return p;
}

/// Central differences of the summed loss with respect to every student logit (and to the
/// temperature when the method has one) against the analytic gradients, for this problem.
template <class Options>
void check_finite_differences(const host_problem<double>& base, const Options& opts, double atol) {
    const auto analytic = run_ok(base, opts);
    auto objective = [&](const host_problem<double>& p, const Options& o) {
        host_outputs<double> out(o.reduce, p.n, p.c);
        REQUIRE(distill::run(o, args_for<Options>(p), out.views(p.n, p.c, false, false)).ok());
        return out.total();
    };
    host_problem<double> p = base;
    const auto numeric = numeric_gradient(
        [&](const std::vector<double>& x) {
            p.student = x;
            return objective(p, opts);
        },
        base.student);
    double largest = 0;
    for (std::size_t k = 0; k < numeric.size(); ++k) {
        CAPTURE(k);
        DISTILL_CHECK_CLOSE(analytic.grad[k], numeric[k], 1e-5, atol);
        largest = std::max(largest, std::abs(numeric[k]));
    }
    CHECK(largest > 1e-4);  // the comparison means something
    if constexpr (method_of<Options>::has_temperature) {
        const double h = 1e-6 * opts.temperature;
        Options up = opts, down = opts;
        up.temperature += h;
        down.temperature -= h;
        const double numeric_t = (objective(base, up) - objective(base, down)) / (2 * h);
        DISTILL_CHECK_CLOSE(analytic.grad_temperature[0], numeric_t, 1e-5, atol);
        CHECK(std::abs(numeric_t) > 1e-6);
    }
}

/// Rows with weight 0 (ignored row 1, zero weight in the last row) have exactly zero gradient rows.
template <class T>
void check_zero_rows(const host_outputs<T>& out, index_t n, index_t c) {
    for (index_t i : {index_t(1), n - 1})
        for (index_t k = 0; k < c; ++k) CHECK(out.grad[static_cast<std::size_t>(i * c + k)] == T(0));
}

// ------------------------------------------------------------------------------ logit_mse

TEST_CASE_TEMPLATE("logit_mse: loss and gradient match the definition for every reduction", T, float, double) {
    for (reduction red : label_reductions)
        for (bool extras : {false, true}) {
            INFO("reduction: ", std::string(distill::to_string(red)));
            CAPTURE(extras);
            host_problem<T> p(5, 7, 201);
            if (extras) p.with_labels({2}).with_weight();
            const distill::logit_mse_options opts{red};
            const auto out = run_ok(p, opts);
            check_loss(out, reduce_rows(logit_mse_rows(p), p, red), tolerance<T>(), 0);
            // dL/ds = 2 w (s - t) / C, with w the weight over the total weight for batchmean.
            real total_weight = 0;
            for (index_t i = 0; i < p.n; ++i)
                total_weight += (p.use_labels && i == 2) ? 0 : (p.use_weight ? p.weight[static_cast<std::size_t>(i)] : 1);
            for (index_t i = 0; i < p.n; ++i) {
                real w = (p.use_labels && i == 2) ? 0 : (p.use_weight ? p.weight[static_cast<std::size_t>(i)] : 1);
                if (red == reduction::batchmean) w /= total_weight;
                for (index_t k = 0; k < p.c; ++k) {
                    const auto at = static_cast<std::size_t>(i * p.c + k);
                    const real want = 2 * w * (real(p.student[at]) - real(p.teacher[at])) / real(p.c);
                    DISTILL_CHECK_CLOSE(out.grad[at], static_cast<double>(want), tolerance<T>(), 1e-30);
                }
            }
        }
}

TEST_CASE_TEMPLATE("logit_mse: batchmean without weights or labels is the mean over all N x C elements", T, float,
                   double) {
    host_problem<T> p(6, 11, 202);
    const auto out = run_ok(p, distill::logit_mse_options{});
    real sum = 0;
    for (std::size_t k = 0; k < p.student.size(); ++k)
        sum += (real(p.student[k]) - real(p.teacher[k])) * (real(p.student[k]) - real(p.teacher[k]));
    DISTILL_CHECK_CLOSE(out.loss[0], static_cast<double>(sum / static_cast<real>(p.student.size())), tolerance<T>(), 0);
    // And the gradient is that of F.mse_loss: 2 (s - t) / (N C).
    for (std::size_t k = 0; k < p.student.size(); ++k)
        DISTILL_CHECK_CLOSE(out.grad[k], 2.0 * (double(p.student[k]) - double(p.teacher[k])) / 66.0, tolerance<T>(), 1e-30);
}

TEST_CASE("logit_mse: gradients match central finite differences for every reduction (double)") {
    for (reduction red : label_reductions) {
        INFO("reduction: ", std::string(distill::to_string(red)));
        check_finite_differences(labelled<double>(4, 5, 203, true), distill::logit_mse_options{red}, 1e-8);
        const auto out = run_ok(labelled<double>(4, 5, 203, true), distill::logit_mse_options{red});
        check_zero_rows(out, 4, 5);
    }
}

TEST_CASE_TEMPLATE("logit_mse: logits of 1e3 are exact, and equal rows give zero", T, float, double) {
    host_problem<T> p(3, 6, 204, 1000.0);
    std::copy(p.student.begin() + p.c, p.student.begin() + 2 * p.c, p.teacher.begin() + p.c);  // row 1 agrees
    const auto out = run_ok(p, distill::logit_mse_options{reduction::none});
    check_loss(out, reduce_rows(logit_mse_rows(p), p, reduction::none), tolerance<T>(), 0);
    CHECK(out.loss[1] == T(0));
    for (index_t k = 0; k < p.c; ++k) CHECK(out.grad[static_cast<std::size_t>(p.c + k)] == T(0));
}

TEST_CASE("logit_mse: entries masked (-inf) on both sides add nothing; on one side the loss is +inf") {
    // Row [1, -inf, 2] against [0.5, -inf, 3]: (0.25 + 0 + 1) / 3, gradient 0 at the masked entry.
    std::vector<double> student = {1, neg_inf, 2}, teacher = {0.5, neg_inf, 3};
    double loss = -1, grad[3] = {-1, -1, -1};
    distill::response_args<double> args{distill::make_view(student.data(), 1, 3), distill::make_view(teacher.data(), 1, 3)};
    REQUIRE(distill::run(distill::logit_mse_options{}, args,
                         distill::response_outputs<double>{distill::make_view(&loss, 1), distill::make_view(grad, 1, 3)})
                .ok());
    DISTILL_CHECK_CLOSE(loss, 1.25 / 3, 1e-15, 0);
    CHECK(grad[0] == doctest::Approx(2 * 0.5 / 3));
    CHECK(grad[1] == 0.0);
    CHECK(grad[2] == doctest::Approx(2 * -1.0 / 3));
    teacher[1] = 0;
    REQUIRE(distill::run(distill::logit_mse_options{}, args,
                         distill::response_outputs<double>{distill::make_view(&loss, 1), distill::make_view(grad, 1, 3)})
                .ok());
    CHECK(loss == std::numeric_limits<double>::infinity());
}

// ------------------------------------------------------------------------------------- ce

TEST_CASE_TEMPLATE("ce: loss matches the definition for every reduction and smoothing", T, float, double) {
    for (double eps : {0.0, 0.1, 0.5, 1.0})
        for (reduction red : label_reductions)
            for (bool extras : {false, true}) {
                CAPTURE(eps);
                INFO("reduction: ", std::string(distill::to_string(red)));
                CAPTURE(extras);
                const auto p = labelled<T>(6, 9, 210, extras);
                const auto out = run_ok(p, distill::ce_options{red, -100, eps});
                check_loss(out, reduce_rows(ce_rows(p, eps), p, red), tolerance<T>(), 0);
                if (extras) check_zero_rows(out, p.n, p.c);
            }
}

TEST_CASE("ce: gradients match central finite differences for every reduction and smoothing (double)") {
    for (double eps : {0.0, 0.3, 1.0})
        for (reduction red : label_reductions) {
            CAPTURE(eps);
            INFO("reduction: ", std::string(distill::to_string(red)));
            check_finite_differences(labelled<double>(4, 5, 211, true), distill::ce_options{red, -100, eps}, 1e-8);
        }
}

TEST_CASE_TEMPLATE("ce: without smoothing it is kd against a one-hot teacher, with eps 1 kd against a uniform one + log C",
                   T, float, double) {
    // A one-hot teacher as logits: 0 at the label, -inf (probability 0) elsewhere. kd at T = 1 is then
    // sum_c pt (lt - ls) = -ls_y, the unsmoothed cross-entropy, with the same gradient ps - onehot.
    auto p = labelled<T>(5, 7, 212, false);
    host_problem<T> onehot = p, uniform = p;
    for (index_t i = 0; i < p.n; ++i)
        for (index_t k = 0; k < p.c; ++k) {
            const auto at = static_cast<std::size_t>(i * p.c + k);
            onehot.teacher[at] = k == p.labels[static_cast<std::size_t>(i)] ? T(0) : -std::numeric_limits<T>::infinity();
            uniform.teacher[at] = T(0);
        }
    const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
    const auto hard = run_ok(p, distill::ce_options{reduction::none});
    const auto kd_hard = run_ok(onehot, distill::kd_options{1.0, reduction::none});
    check_all_close(hard.loss, kd_hard.loss, rtol, 1e-30);
    check_all_close(hard.grad, kd_hard.grad, rtol, 1e-7);
    // Against the definition: -log softmax(s)_y.
    for (index_t i = 0; i < p.n; ++i) {
        const auto s = row_of(p.student, p.c, i);
        const auto y = static_cast<std::size_t>(p.labels[static_cast<std::size_t>(i)]);
        DISTILL_CHECK_CLOSE(hard.loss[static_cast<std::size_t>(i)], static_cast<double>(logsumexp(s) - s[y]), rtol, 0);
    }
    // eps = 1: (1/C) sum_c -ls_c = KL(uniform || ps) + log C, the label only selects the row.
    const auto smooth = run_ok(p, distill::ce_options{reduction::none, -100, 1.0});
    const auto kd_uniform = run_ok(uniform, distill::kd_options{1.0, reduction::none});
    for (std::size_t i = 0; i < smooth.loss.size(); ++i)
        DISTILL_CHECK_CLOSE(smooth.loss[i], kd_uniform.loss[i] + std::log(7.0), rtol, 0);
    check_all_close(smooth.grad, kd_uniform.grad, rtol, 1e-7);
}

TEST_CASE_TEMPLATE("ce: every row ignored gives 0 and zero gradients for every reduction, not NaN", T, float, double) {
    for (reduction red : label_reductions) {
        INFO("reduction: ", std::string(distill::to_string(red)));
        host_problem<T> p(3, 4, 213);
        p.with_labels({0, 1, 2}).with_weight();
        const auto out = run_ok(p, distill::ce_options{red, -100, 0.2});
        for (T v : out.loss) CHECK(v == T(0));
        for (T g : out.grad) CHECK(g == T(0));
        CHECK(out.grad_temperature[0] == host_outputs<T>::sentinel);  // no temperature: never written
    }
}

TEST_CASE_TEMPLATE("ce: ignore_index may be a valid class", T, float, double) {
    host_problem<T> p(4, 3, 214);
    p.labels = {1, 0, 2, 1};
    p.use_labels = true;
    const auto out = run_ok(p, distill::ce_options{reduction::none, 1});
    CHECK(out.loss[0] == T(0));
    CHECK(out.loss[3] == T(0));
    check_loss(out, reduce_rows(ce_rows(p, 0.0), p, reduction::none, 1), tolerance<T>(), 0);
}

TEST_CASE_TEMPLATE("ce: logits of 1e3 stay finite and exact", T, float, double) {
    host_problem<T> p(4, 6, 215, 1000.0);
    p.with_labels();
    for (double eps : {0.0, 0.3}) {
        const auto out = run_ok(p, distill::ce_options{reduction::none, -100, eps});
        check_loss(out, reduce_rows(ce_rows(p, eps), p, reduction::none), tolerance<T>(), 0);
        for (T g : out.grad) CHECK(std::isfinite(g));
    }
}

TEST_CASE("ce: masked (-inf) entries have probability 0; with smoothing they make the loss +inf") {
    // Row [2, -inf, 0, 1], label 0: without smoothing the masked entry is as if the class did not exist.
    const std::vector<double> masked = {2, neg_inf, 0, 1}, kept = {2, 0, 1};
    const std::vector<std::int64_t> label = {0};
    const auto a = distill::ce(distill::make_view(masked.data(), 1, 4), std::span<const std::int64_t>(label));
    const auto b = distill::ce(distill::make_view(kept.data(), 1, 3), std::span<const std::int64_t>(label));
    DISTILL_CHECK_CLOSE(a.loss, b.loss, 1e-15, 0);
    CHECK(a.grad_student.data()[1] == 0.0);
    DISTILL_CHECK_CLOSE(a.grad_student.data()[0], b.grad_student.data()[0], 1e-15, 0);
    DISTILL_CHECK_CLOSE(a.grad_student.data()[3], b.grad_student.data()[2], 1e-15, 0);
    const auto s = distill::ce(distill::make_view(masked.data(), 1, 4), std::span<const std::int64_t>(label),
                               distill::ce_options{reduction::sum, -100, 0.1});
    CHECK(s.loss == std::numeric_limits<double>::infinity());
    for (index_t k = 0; k < 4; ++k) CHECK(std::isfinite(s.grad_student.data()[k]));
    CHECK(s.grad_student.data()[1] == doctest::Approx(-0.1 / 4));
}

TEST_CASE("ce: the convenience object returns what distill::run computes, without a teacher") {
    auto p = labelled<double>(5, 6, 216, true);
    const auto student = distill::make_view(p.student.data(), 5, 6);
    const std::span<const std::int64_t> labels(p.labels);
    for (reduction red : label_reductions) {
        const distill::ce_options opts{red, -100, 0.1};
        const auto expected = run_ok(p, opts);
        const auto r = distill::ce(student, labels, std::span<const double>(p.weight), opts);
        REQUIRE(r.status.ok());
        CHECK(r.loss == doctest::Approx(expected.total()).epsilon(1e-14));
        CHECK(r.grad_temperature == 0.0);
        CHECK(std::vector<double>(r.grad_student.data(), r.grad_student.data() + 30) == expected.grad);
        CHECK(r.row_losses.size() == (red == reduction::none ? 5u : 0u));
        const auto on_backend = distill::ce(distill::cpu_backend{}, student, labels, std::span<const double>(p.weight), opts);
        CHECK(on_backend.loss == r.loss);
    }
    // (student, labels) and (student, labels, opts): no weights.
    host_problem<double> unweighted = p;
    unweighted.use_weight = false;
    CHECK(distill::ce(student, labels).loss == run_ok(unweighted, distill::ce_options{}).loss[0]);
    CHECK(distill::ce(student, labels, distill::ce_options{reduction::sum, -100, 0.5}).loss ==
          run_ok(unweighted, distill::ce_options{reduction::sum, -100, 0.5}).loss[0]);
}

// ------------------------------------------------------------------------------------- dkd

TEST_CASE_TEMPLATE("dkd: loss matches the definition for every reduction, temperature and weighting", T, float, double) {
    for (double temperature : {0.5, 1.0, 4.0, 20.0})
        for (reduction red : label_reductions)
            for (bool extras : {false, true}) {
                CAPTURE(temperature);
                INFO("reduction: ", std::string(distill::to_string(red)));
                CAPTURE(extras);
                const auto p = labelled<T>(6, 9, 220, extras);
                const distill::dkd_options opts{temperature, red, -100, 0.75, 3.0};
                const auto out = run_ok(p, opts);
                // As for kd: in float a row's error grows like T^2 (log-probabilities ~log C, KL ~1/T^2).
                const double rows = red == reduction::sum ? 6 : 1;
                const double atol = std::is_same_v<T, float> ? 4e-6 * temperature * temperature * rows : 0.0;
                check_loss(out, reduce_rows(dkd_rows(p, opts), p, red), tolerance<T>(), atol);
                if (extras) check_zero_rows(out, p.n, p.c);
            }
}

TEST_CASE("dkd: gradients and d/dT match central finite differences for every reduction (double)") {
    for (double temperature : {0.5, 1.0, 4.0, 20.0})
        for (reduction red : label_reductions)
            for (auto ab : {std::pair{1.0, 8.0}, std::pair{2.0, 0.0}, std::pair{0.0, 1.5}}) {
                CAPTURE(temperature);
                INFO("reduction: ", std::string(distill::to_string(red)));
                CAPTURE(ab.first);
                CAPTURE(ab.second);
                const distill::dkd_options opts{temperature, red, -100, ab.first, ab.second};
                check_finite_differences(labelled<double>(4, 6, 221, true), opts, 1e-8 + 1e-9 * temperature * temperature);
            }
}

TEST_CASE_TEMPLATE("dkd: KD = TCKD + (1 - p^t_y) NCKD at the same temperature, loss and gradient", T, float, double) {
    for (double temperature : {1.0, 2.5, 4.0}) {
        CAPTURE(temperature);
        const auto p = labelled<T>(7, 8, 222, false);
        const auto kd = run_ok(p, distill::kd_options{temperature, reduction::none});
        const auto tckd = run_ok(p, distill::dkd_options{temperature, reduction::none, -100, 1.0, 0.0});
        const auto nckd = run_ok(p, distill::dkd_options{temperature, reduction::none, -100, 0.0, 1.0});
        const double rtol = std::is_same_v<T, float> ? 1e-4 : 1e-11;
        for (index_t i = 0; i < p.n; ++i) {
            CAPTURE(i);
            const auto at = static_cast<std::size_t>(i);
            const double rest = 1.0 - static_cast<double>(dkd_row(p, i, temperature).teacher_target);
            DISTILL_CHECK_CLOSE(kd.loss[at], tckd.loss[at] + rest * nckd.loss[at], rtol, 0);
            CHECK(nckd.loss[at] > T(0));  // both parts take part in the identity
            CHECK(tckd.loss[at] > T(0));
            // p^t_y does not depend on the student, so the gradients decompose the same way.
            for (index_t k = 0; k < p.c; ++k) {
                const auto g = static_cast<std::size_t>(i * p.c + k);
                DISTILL_CHECK_CLOSE(kd.grad[g], tckd.grad[g] + rest * nckd.grad[g], rtol, rtol * 1e-2);
            }
        }
    }
}

TEST_CASE_TEMPLATE("dkd: at C = 2 NCKD is 0 and dkd (alpha 1) is kd", T, float, double) {
    const auto p = labelled<T>(5, 2, 223, false);
    const auto nckd = run_ok(p, distill::dkd_options{3.0, reduction::none, -100, 0.0, 1.0});
    // Exactly 0 without FMA contraction; rounding-level with it (s/T - max fused into one FMA).
    const T zero_tol = 64 * std::numeric_limits<T>::epsilon();
    for (T v : nckd.loss) CHECK(std::abs(v) <= zero_tol);
    for (T g : nckd.grad) CHECK(std::abs(g) <= zero_tol);
    CHECK(std::abs(nckd.grad_temperature[0]) <= zero_tol);
    const auto dkd = run_ok(p, distill::dkd_options{3.0, reduction::none});  // beta 8 changes nothing
    const auto kd = run_ok(p, distill::kd_options{3.0, reduction::none});
    const double rtol = std::is_same_v<T, float> ? 1e-4 : 1e-12;
    check_all_close(dkd.loss, kd.loss, rtol, 0);
    check_all_close(dkd.grad, kd.grad, rtol, 1e-30);
    DISTILL_CHECK_CLOSE(dkd.grad_temperature[0], kd.grad_temperature[0], rtol, 0);
}

TEST_CASE_TEMPLATE("dkd: every row ignored gives 0 and zero gradients for every reduction, not NaN", T, float, double) {
    for (reduction red : label_reductions) {
        INFO("reduction: ", std::string(distill::to_string(red)));
        host_problem<T> p(3, 4, 224);
        p.with_labels({0, 1, 2});
        const auto out = run_ok(p, distill::dkd_options{2.0, red});
        for (T v : out.loss) CHECK(v == T(0));
        for (T g : out.grad) CHECK(g == T(0));
        CHECK(out.grad_temperature[0] == T(0));
    }
}

TEST_CASE_TEMPLATE("dkd: logits of 1e3 at T = 0.5 stay finite and exact (the target is excluded exactly)", T, float, double) {
    host_problem<T> p(4, 6, 225, 1000.0);
    p.with_labels();
    // Row 0: the label is the teacher's argmax by a gap of ~1900 after tempering, beyond a -1000 mask.
    p.teacher[0] = T(1000);
    for (index_t k = 1; k < p.c; ++k) {
        T& x = p.teacher[static_cast<std::size_t>(k)];
        x = std::min(x, T(20));
    }
    const distill::dkd_options opts{0.5, reduction::none};
    const auto out = run_ok(p, opts);
    // Some rows agree so closely that their loss is ~1e-60 (0 in float): an absolute allowance far
    // below the losses of order 1e3 of the others.
    check_loss(out, reduce_rows(dkd_rows(p, opts), p, reduction::none), tolerance<T>(),
               std::is_same_v<T, float> ? 1e-4 : 1e-12);
    for (T g : out.grad) CHECK(std::isfinite(g));
    CHECK(std::isfinite(out.grad_temperature[0]));
}

TEST_CASE("dkd: entries masked (-inf) in student and teacher are as if the class did not exist") {
    // 2 rows of 5 classes with labels 0 and 4; row 0 masks classes 3 and 4, row 1 classes 1 and 3.
    host_problem<double> full(2, 5, 226), kept(2, 3, 226);
    full.labels = {0, 4};
    full.use_labels = true;
    const index_t keep[2][3] = {{0, 1, 2}, {0, 2, 4}}, masked[2][2] = {{3, 4}, {1, 3}};
    for (index_t i = 0; i < 2; ++i) {
        for (index_t k = 0; k < 3; ++k) {
            kept.student[static_cast<std::size_t>(i * 3 + k)] = full.student[static_cast<std::size_t>(i * 5 + keep[i][k])];
            kept.teacher[static_cast<std::size_t>(i * 3 + k)] = full.teacher[static_cast<std::size_t>(i * 5 + keep[i][k])];
        }
        for (index_t k : masked[i]) {
            full.student[static_cast<std::size_t>(i * 5 + k)] = neg_inf;
            full.teacher[static_cast<std::size_t>(i * 5 + k)] = neg_inf;
        }
    }
    kept.labels = {0, 2};
    kept.use_labels = true;
    const distill::dkd_options opts{2.0, reduction::none, -100, 1.0, 8.0};
    const auto a = run_ok(full, opts), b = run_ok(kept, opts);
    check_all_close(a.loss, b.loss, 1e-13, 0);
    DISTILL_CHECK_CLOSE(a.grad_temperature[0], b.grad_temperature[0], 1e-12, 0);
    for (index_t i = 0; i < 2; ++i) {
        for (index_t k = 0; k < 3; ++k)
            DISTILL_CHECK_CLOSE(a.grad[static_cast<std::size_t>(i * 5 + keep[i][k])],
                                b.grad[static_cast<std::size_t>(i * 3 + k)], 1e-13, 1e-300);
        CHECK(a.grad[static_cast<std::size_t>(i * 5 + 3)] == 0.0);
    }
    // Masked in the student only, where the teacher has mass: the divergence is +inf.
    full.teacher[3] = 0.5;
    CHECK(run_ok(full, opts).loss[0] == std::numeric_limits<double>::infinity());
}

TEST_CASE("dkd: the convenience object and the float options") {
    auto p = labelled<double>(4, 5, 227, true);
    const auto r = distill::dkd(distill::make_view(p.student.data(), 4, 5), distill::make_view(p.teacher.data(), 4, 5),
                                std::span<const std::int64_t>(p.labels), std::span<const double>(p.weight));
    const auto expected = run_ok(p, distill::dkd_options{});
    REQUIRE(r.status.ok());
    CHECK(r.loss == expected.loss[0]);
    CHECK(r.grad_temperature == expected.grad_temperature[0]);
    host_problem<float> f(4, 5, 227);
    f.with_labels();
    host_outputs<float> out(reduction::sum, 4, 5);
    const distill::dkd_float_options float_opts{2.0f, reduction::sum, -100, 0.5f, 2.0f};
    REQUIRE(distill::run(float_opts, f.args(), out.views(4, 5)).ok());
    const auto same = run_ok(f, distill::dkd_options{2.0, reduction::sum, -100, 0.5, 2.0});
    CHECK(out.loss == same.loss);
    CHECK(out.grad == same.grad);
}

TEST_CASE("dkd: a dominant target, and the target in a partial pack or a pack's first lane (float against long double)") {
    // 37 classes: packs of 16, 16 and 5 (AVX-512), 8 x 4 and 5 (AVX), 9 x 4 and 1 (SSE2). Targets in the
    // first lane of the first pack (0), on the row's last element (36: in the partial pack of every
    // width), on the first lane of the last partial pack of 16 or 8 (32) and inside it (33).
    constexpr index_t n = 6, c = 37;
    host_problem<float> p(n, c, 228);
    p.labels = {0, 36, 32, 33, 0, 36};
    p.use_labels = true;
    // Rows 0 and 1: the target 30 above every other logit in student and teacher, so that at T = 1 the
    // non-target mass is ~C e^-30 ~ 4e-12 of the total: a non-target sum formed by subtracting the
    // target's exp from the all-class one would be rounding noise, and NCKD with it. Row 4: only the
    // teacher's target dominates; row 5: only the student's.
    const auto dominate = [&](std::vector<float>& m, index_t i) {
        const auto y = static_cast<index_t>(p.labels[static_cast<std::size_t>(i)]);
        float top = -std::numeric_limits<float>::infinity();
        for (index_t k = 0; k < c; ++k)
            if (k != y) top = std::max(top, m[static_cast<std::size_t>(i * c + k)]);
        m[static_cast<std::size_t>(i * c + y)] = top + 30.0f;
    };
    dominate(p.student, 0);
    dominate(p.teacher, 0);
    dominate(p.student, 1);
    dominate(p.teacher, 1);
    dominate(p.teacher, 4);
    dominate(p.student, 5);
    // The same float inputs in double: the reference for the gradients and d/dT.
    host_problem<double> d(n, c, 228);
    d.student.assign(p.student.begin(), p.student.end());
    d.teacher.assign(p.teacher.begin(), p.teacher.end());
    d.labels = p.labels;
    d.use_labels = true;
    for (double temperature : {1.0, 4.0})
        for (auto ab : {std::pair{0.0, 1.0}, std::pair{1.0, 8.0}}) {
            CAPTURE(temperature);
            CAPTURE(ab.first);
            CAPTURE(ab.second);
            const distill::dkd_options opts{temperature, reduction::none, -100, ab.first, ab.second};
            const auto out = run_ok(p, opts);
            const auto ref = run_ok(d, opts);
            for (index_t i = 0; i < n; ++i) {
                CAPTURE(i);
                const dkd_parts parts = dkd_row(p, i, temperature);
                CHECK(parts.nckd > real(0.01));  // NCKD is a sizeable part of every row's loss
                const real expected = real(temperature * temperature) * (real(ab.first) * parts.tckd + real(ab.second) * parts.nckd);
                DISTILL_CHECK_CLOSE(out.loss[static_cast<std::size_t>(i)], expected, 1e-4, 0);
                double row_scale = 0;
                for (index_t k = 0; k < c; ++k)
                    row_scale = std::max(row_scale, std::abs(ref.grad[static_cast<std::size_t>(i * c + k)]));
                for (index_t k = 0; k < c; ++k) {
                    CAPTURE(k);
                    const auto e = static_cast<std::size_t>(i * c + k);
                    DISTILL_CHECK_CLOSE(out.grad[e], ref.grad[e], 1e-4, 1e-6 * row_scale);
                }
            }
            DISTILL_CHECK_CLOSE(out.grad_temperature[0], ref.grad_temperature[0], 1e-4, 1e-6);
        }
}

TEST_CASE_TEMPLATE("dkd: strided (column-major) rows and accumulated, scaled gradients agree with the plain call", T, float,
                   double) {
    constexpr index_t n = 5, c = 37;
    host_problem<T> p(n, c, 229);
    p.labels = {0, 36, 32, 17, 5};
    p.use_labels = true;
    const distill::dkd_options opts{2.0, reduction::sum, -100, 1.0, 8.0};
    const auto plain = run_ok(p, opts);
    const double rtol = std::is_same_v<T, float> ? 1e-6 : 1e-14;

    // Column-major student, teacher and gradient: every row has stride n.
    std::vector<T> s(p.student.size()), t(p.teacher.size()), g(p.student.size(), T(-7));
    for (index_t i = 0; i < n; ++i)
        for (index_t k = 0; k < c; ++k) {
            s[static_cast<std::size_t>(k * n + i)] = p.student[static_cast<std::size_t>(i * c + k)];
            t[static_cast<std::size_t>(k * n + i)] = p.teacher[static_cast<std::size_t>(i * c + k)];
        }
    const index_t extents[2] = {n, c}, strides[2] = {1, n};
    T loss = 0, dtemperature = 0;
    distill::response_args<T> a{distill::any_view<const T>(s.data(), 2, extents, strides),
                                distill::any_view<const T>(t.data(), 2, extents, strides)};
    a.labels = distill::make_view(p.labels.data(), n);
    distill::response_outputs<T> o{distill::make_view(&loss, 1)};
    o.grad_student = distill::any_view<T>(g.data(), 2, extents, strides);
    o.grad_temperature = distill::make_view(&dtemperature, 1);
    REQUIRE(distill::run(opts, a, o).ok());
    DISTILL_CHECK_CLOSE(loss, plain.loss[0], rtol, 0);
    DISTILL_CHECK_CLOSE(dtemperature, plain.grad_temperature[0], rtol, 0);
    for (index_t i = 0; i < n; ++i)
        for (index_t k = 0; k < c; ++k)
            DISTILL_CHECK_CLOSE(g[static_cast<std::size_t>(k * n + i)], plain.grad[static_cast<std::size_t>(i * c + k)], rtol, 1e-30);

    // Accumulating with grad_scale 0.5 into earlier values (-0 at one target among them).
    host_outputs<T> acc(reduction::sum, n, c);
    for (std::size_t e = 0; e < acc.grad.size(); ++e) acc.grad[e] = T(0.25) * static_cast<T>(e % 11) - T(1);
    acc.grad[static_cast<std::size_t>(0 * c + 0)] = -T(0);
    const std::vector<T> earlier = acc.grad;
    acc.grad_temperature[0] = T(3);
    distill::response_outputs<T> views = acc.views(n, c);
    views.grad_scale = T(0.5);
    views.accumulate = true;
    REQUIRE(distill::run(opts, p.args(), views).ok());
    DISTILL_CHECK_CLOSE(acc.loss[0], plain.loss[0], rtol, 0);
    DISTILL_CHECK_CLOSE(acc.grad_temperature[0], T(3) + T(0.5) * plain.grad_temperature[0], rtol, 0);
    for (std::size_t e = 0; e < acc.grad.size(); ++e) {
        CAPTURE(e);
        DISTILL_CHECK_CLOSE(acc.grad[e], earlier[e] + T(0.5) * plain.grad[e], rtol, 1e-30);
    }
}

// ------------------------------------------------------------------------------------ errors

/// The convenience object of the method, on the same arguments.
template <class T>
auto convenience(const distill::logit_mse_options& o, const distill::response_args<T>& a) {
    return distill::logit_mse(a.student, a.teacher, a.labels, a.weight, o);
}
template <class T>
auto convenience(const distill::ce_options& o, const distill::response_args<T>& a) {
    return distill::ce(a.student, a.labels, a.weight, o);
}
template <class T>
auto convenience(const distill::dkd_options& o, const distill::response_args<T>& a) {
    return distill::dkd(a.student, a.teacher, a.labels, a.weight, o);
}

/// check_args, check and run reject the arguments with this error and write nothing; the
/// convenience object throws it (unless the arguments cannot be expressed there).
template <class Options, class T>
void check_rejected(const Options& opts, const distill::response_args<T>& args, index_t n, index_t c, errc code,
                    error_kind kind, const char* argument, std::initializer_list<const char*> fragments,
                    bool through_convenience = true) {
    const char* name = method_of<Options>::name;
    host_outputs<T> out(opts.reduce == reduction::none ? n : 1, n, c);
    const auto views = out.views(n, c, true, method_of<Options>::has_temperature);
    check_method_error(name, distill::check_args(distill::cpu_backend{}, opts, args), code, kind, argument, fragments);
    check_method_error(name, distill::check(opts, args, views), code, kind, argument, fragments);
    check_method_error(name, distill::run(opts, args, views), code, kind, argument, fragments);
    CHECK(out.untouched());
    if (!through_convenience) return;
    bool thrown = false;
    try {
        (void)convenience(opts, args);
    } catch (const distill::error& e) {
        thrown = true;
        check_method_error(name, e.status(), code, kind, argument, fragments);
    }
    CHECK_MESSAGE(thrown, "the convenience object did not throw distill::error");
}

/// The rules every row-wise method shares, for one method (args: a valid N = 3, C = 5 problem).
template <class Options, class T>
void check_shared_rules(const Options& opts, const host_problem<T>& p) {
    const auto valid = args_for<Options>(p);
    REQUIRE(distill::check_args(distill::cpu_backend{}, opts, valid).ok());
    const std::vector<std::int64_t> long_labels = {0, 1, 2, 3};
    const std::vector<T> short_weight = {T(1), T(1)};
    SUBCASE("student of rank 1") {
        auto a = valid;
        a.student = distill::make_view(p.student.data(), 15);
        check_rejected(opts, a, 3, 5, errc::bad_rank, error_kind::shape, "student", {"2-D", "[15]"});
    }
    SUBCASE("no student") {
        auto a = valid;
        a.student = {};
        check_rejected(opts, a, 3, 5, errc::missing_argument, error_kind::shape, "student", {"student", "required"});
    }
    SUBCASE("N = 0") {
        auto a = valid;
        a.student = distill::make_view(p.student.data(), 0, 5);
        if (a.teacher.bound()) a.teacher = distill::make_view(p.teacher.data(), 0, 5);
        check_rejected(opts, a, 3, 5, errc::empty_input, error_kind::shape, "student", {"[0, 5]"});
    }
    SUBCASE("labels of length N + 1") {
        auto a = valid;
        a.labels = distill::make_view(long_labels.data(), 4);
        check_rejected(opts, a, 3, 5, errc::shape_mismatch, error_kind::shape, "labels", {"labels", "[4]", "[3]"});
    }
    SUBCASE("weight of length N - 1") {
        auto a = valid;
        a.weight = distill::make_view(short_weight.data(), 2);
        check_rejected(opts, a, 3, 5, errc::shape_mismatch, error_kind::shape, "weight", {"weight", "[2]", "[3]"});
    }
    SUBCASE("a label >= C") {
        host_problem<T> q = p;
        q.labels[1] = 5;
        check_rejected(opts, args_for<Options>(q), 3, 5, errc::label_out_of_range, error_kind::value, "labels",
                       {"labels[1] = 5", "[0, 5)"});
    }
    SUBCASE("a negative label that is not ignore_index") {
        host_problem<T> q = p;
        q.labels[2] = -1;
        check_rejected(opts, args_for<Options>(q), 3, 5, errc::label_out_of_range, error_kind::value, "labels",
                       {"labels[2] = -1", "-100"});
    }
    SUBCASE("a negative weight") {
        host_problem<T> q = p;
        q.weight[0] = T(-0.5);
        check_rejected(opts, args_for<Options>(q), 3, 5, errc::invalid_weight, error_kind::value, "weight",
                       {"weight[0] = -5", "finite and >= 0"});
    }
    SUBCASE("a nan weight") {
        host_problem<T> q = p;
        q.weight[2] = std::numeric_limits<T>::quiet_NaN();
        check_rejected(opts, args_for<Options>(q), 3, 5, errc::invalid_weight, error_kind::value, "weight",
                       {"weight[2] = nan"});
    }
    SUBCASE("an unknown reduction") {
        Options o = opts;
        o.reduce = static_cast<reduction>(7);
        check_rejected(o, valid, 3, 5, errc::unknown_reduction, error_kind::value, "reduction", {"reduction", "7"});
    }
    if constexpr (method_of<Options>::needs_teacher) {
        SUBCASE("teacher of another shape") {
            auto a = valid;
            a.teacher = distill::make_view(p.teacher.data(), 3, 4);
            check_rejected(opts, a, 3, 5, errc::shape_mismatch, error_kind::shape, "teacher", {"teacher", "[3, 4]", "[3, 5]"});
        }
        SUBCASE("no teacher") {
            auto a = valid;
            a.teacher = {};
            check_rejected(opts, a, 3, 5, errc::missing_argument, error_kind::shape, "teacher", {"teacher", "required"});
        }
    }
    if constexpr (!method_of<Options>::has_temperature) {
        SUBCASE("a grad_temperature output for a method without temperature") {
            host_outputs<T> out(opts.reduce == reduction::none ? 3 : 1, 3, 5);
            check_method_error(method_of<Options>::name, distill::run(opts, valid, out.views(3, 5, true, true)),
                               errc::invalid_parameter, error_kind::value, "grad_temperature", {"grad_temperature"});
            CHECK(out.untouched());
        }
    }
}

template <class T>
host_problem<T> error_problem() {
    host_problem<T> p(3, 5, 230);
    p.with_labels().with_weight();
    return p;
}

TEST_CASE_TEMPLATE("logit_mse: every error rule names the argument and writes nothing", T, float, double) {
    check_shared_rules(distill::logit_mse_options{}, error_problem<T>());
}

TEST_CASE_TEMPLATE("ce: every error rule names the argument and writes nothing", T, float, double) {
    const auto p = error_problem<T>();
    const distill::ce_options opts{};
    check_shared_rules(opts, p);
    const auto valid = args_for<distill::ce_options>(p);
    SUBCASE("a teacher") {
        check_rejected(opts, p.args(), 3, 5, errc::shape_mismatch, error_kind::shape, "teacher", {"no teacher"}, false);
    }
    SUBCASE("no labels") {
        auto a = valid;
        a.labels = {};
        check_rejected(opts, a, 3, 5, errc::missing_argument, error_kind::shape, "labels", {"labels", "required"});
    }
    SUBCASE("label_smoothing outside [0, 1]") {
        for (double eps : {-0.1, 1.5, std::nan(""), std::numeric_limits<double>::infinity()}) {
            CAPTURE(eps);
            check_rejected(distill::ce_options{reduction::batchmean, -100, eps}, valid, 3, 5, errc::invalid_parameter,
                           error_kind::value, "label_smoothing", {"label_smoothing = ", "is outside [0"});
        }
    }
    SUBCASE("a label equal to the default ignore_index when another is set") {
        host_problem<T> q = p;
        q.labels[0] = -100;
        check_rejected(distill::ce_options{reduction::sum, 2}, args_for<distill::ce_options>(q), 3, 5,
                       errc::label_out_of_range, error_kind::value, "labels", {"labels[0] = -100", "(2)"});
    }
}

TEST_CASE_TEMPLATE("dkd: every error rule names the argument and writes nothing", T, float, double) {
    const auto p = error_problem<T>();
    const distill::dkd_options opts{};
    check_shared_rules(opts, p);
    const auto valid = p.args();
    SUBCASE("no labels") {
        auto a = valid;
        a.labels = {};
        check_rejected(opts, a, 3, 5, errc::missing_argument, error_kind::shape, "labels", {"labels", "required"});
    }
    SUBCASE("C = 1") {
        host_problem<T> q(3, 1, 231);
        q.with_labels();
        check_rejected(opts, q.args(), 3, 1, errc::shape_mismatch, error_kind::shape, "student",
                       {"[3, 1]", "dkd", "at least 2 classes"});
    }
    SUBCASE("alpha or beta negative, nan or infinite") {
        for (double bad : {-1.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
            CAPTURE(bad);
            check_rejected(distill::dkd_options{4.0, reduction::batchmean, -100, bad, 8.0}, valid, 3, 5,
                           errc::invalid_parameter, error_kind::value, "alpha", {"alpha = ", "finite and >= 0"});
            check_rejected(distill::dkd_options{4.0, reduction::batchmean, -100, 1.0, bad}, valid, 3, 5,
                           errc::invalid_parameter, error_kind::value, "beta", {"beta = ", "finite and >= 0"});
        }
    }
    SUBCASE("temperature <= 0 or not finite") {
        for (double bad : {0.0, -4.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
            CAPTURE(bad);
            check_rejected(distill::dkd_options{bad}, valid, 3, 5, errc::invalid_parameter, error_kind::value,
                           "temperature", {"temperature = "});
        }
    }
}

}  // namespace labels_methods_test
