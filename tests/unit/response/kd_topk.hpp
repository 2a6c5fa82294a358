// tests/unit/response/kd_topk.hpp: kd_topk on the CPU backend (included by response_methods_test.cpp).
//
// Values against a long-double reference written from the definition, gradients (student and
// temperature) against central finite differences, the identities with kd (k = V; renormalize
// = kd against a teacher masked to its top k), KL >= 0 when renormalized, independence of the
// order of the ids, masked entries, ids of other integer types, every error rule with nothing
// written, and the convenience object.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../test_support.hpp"

namespace kd_topk_tests {

using distill::errc;
using distill::error_kind;
using distill::index_t;
using distill::reduction;
using namespace distill_test;

constexpr reduction topk_reductions[] = {reduction::batchmean, reduction::sum, reduction::none};
constexpr double minus_infinity = -std::numeric_limits<double>::infinity();

inline std::size_t at(index_t i) { return static_cast<std::size_t>(i); }

/// A kd_topk problem on the host: N x V student logits, and a teacher given by its top-k ids
/// (shuffled within each row) and its full-vocabulary log-probabilities there, taken from random
/// teacher logits. `teacher_log_softmax` keeps the teacher's dense N x V log-probabilities.
template <class T, class Index = std::int64_t>
struct topk_problem {
    index_t n = 0, v = 0, k = 0;
    std::vector<T> student, logprob, weight;
    std::vector<Index> ids;
    std::vector<std::int64_t> labels;
    std::vector<double> teacher_log_softmax;
    bool use_labels = false, use_weight = false;

    topk_problem(index_t rows, index_t vocabulary, index_t top, unsigned seed, double scale = 3.0)
        : n(rows), v(vocabulary), k(top),
          student(random_values<T>(at(rows * vocabulary), seed, -scale, scale)),
          teacher_log_softmax(random_values<double>(at(rows * vocabulary), seed + 1000, -scale, scale)) {
        std::mt19937_64 gen(seed + 2000);
        for (index_t i = 0; i < n; ++i) {
            double* t = teacher_log_softmax.data() + i * v;
            const double mx = *std::max_element(t, t + v);
            long double sum = 0;
            for (index_t c = 0; c < v; ++c) sum += std::exp(static_cast<long double>(t[c] - mx));
            const double lse = mx + static_cast<double>(std::log(sum));
            for (index_t c = 0; c < v; ++c) t[c] -= lse;
            std::vector<index_t> order(at(v));
            std::iota(order.begin(), order.end(), index_t(0));
            std::partial_sort(order.begin(), order.begin() + k, order.end(),
                              [&](index_t a, index_t b) { return t[a] > t[b]; });
            for (index_t j = k - 1; j > 0; --j)  // Fisher-Yates with our own draws: any order is valid
                std::swap(order[at(j)], order[at(static_cast<index_t>(gen() % static_cast<std::uint64_t>(j + 1)))]);
            for (index_t j = 0; j < k; ++j) {
                ids.push_back(static_cast<Index>(order[at(j)]));
                logprob.push_back(static_cast<T>(t[order[at(j)]]));
            }
        }
    }

    topk_problem& with_labels(std::initializer_list<index_t> ignored = {}, std::int64_t ignore_index = -100) {
        labels.resize(at(n));
        for (index_t i = 0; i < n; ++i) labels[at(i)] = i % v;
        for (index_t i : ignored) labels[at(i)] = ignore_index;
        use_labels = true;
        return *this;
    }
    topk_problem& with_weight(unsigned seed = 77) {
        weight = random_values<T>(at(n), seed, 0.25, 2.0);
        use_weight = true;
        return *this;
    }

    distill::topk_args<T, distill::host_space, Index> args() const {
        distill::topk_args<T, distill::host_space, Index> a{distill::make_view(student.data(), n, v),
                                                           distill::make_view(ids.data(), n, k),
                                                           distill::make_view(logprob.data(), n, k)};
        if (use_labels) a.labels = distill::make_view(labels.data(), n);
        if (use_weight) a.weight = distill::make_view(weight.data(), n);
        return a;
    }
};

/// kd_topk from its definition in long double. The temperature is free in both variants (the
/// library insists on T = 1 without renormalize; the reference lets finite differences move it).
template <class T, class Index>
reference_result topk_reference(const topk_problem<T, Index>& p, double temperature, bool renormalize,
                                reduction reduce, std::int64_t ignore_index = -100) {
    using real = long double;
    const real tau = temperature;
    reference_result r;
    real total = 0, total_weight = 0;
    for (index_t i = 0; i < p.n; ++i) {
        real w = p.use_weight ? static_cast<real>(p.weight[at(i)]) : real(1);
        if (p.use_labels && p.labels[at(i)] == ignore_index) w = 0;
        const T* z = p.student.data() + i * p.v;
        real mx = -std::numeric_limits<real>::infinity();
        for (index_t c = 0; c < p.v; ++c) mx = std::max(mx, static_cast<real>(z[c]) / tau);
        real sum = 0;
        for (index_t c = 0; c < p.v; ++c) sum += std::exp(static_cast<real>(z[c]) / tau - mx);
        const real lse_s = mx + std::log(sum);
        real lse_t = 0;
        if (renormalize) {
            real mt = -std::numeric_limits<real>::infinity();
            for (index_t j = 0; j < p.k; ++j) mt = std::max(mt, static_cast<real>(p.logprob[at(i * p.k + j)]) / tau);
            real st = 0;
            for (index_t j = 0; j < p.k; ++j) st += std::exp(static_cast<real>(p.logprob[at(i * p.k + j)]) / tau - mt);
            lse_t = mt + std::log(st);
        }
        real divergence = 0;
        for (index_t j = 0; j < p.k; ++j) {
            const real l = p.logprob[at(i * p.k + j)];
            const real log_p = renormalize ? l / tau - lse_t : l;
            if (!std::isfinite(log_p)) continue;
            const real log_q = static_cast<real>(z[static_cast<index_t>(p.ids[at(i * p.k + j)])]) / tau - lse_s;
            divergence += std::exp(log_p) * (log_p - log_q);
        }
        const real row = w * tau * tau * divergence;
        r.rows.push_back(row);
        total += row;
        total_weight += w;
    }
    if (reduce == reduction::batchmean) {
        r.loss = total_weight > 0 ? total / total_weight : real(0);
        for (auto& x : r.rows) x = total_weight > 0 ? x / total_weight : real(0);
    } else {
        r.loss = total;
    }
    return r;
}

/// Runs distill::run (kd_topk) and returns the outputs (requires success).
template <class T, class Index>
host_outputs<T> run_topk(const topk_problem<T, Index>& p, const distill::kd_topk_options& opts, bool want_grad = true,
                         bool want_temperature = true) {
    host_outputs<T> out(opts.reduce, p.n, p.v);
    const distill::status s = distill::run(opts, p.args(), out.views(p.n, p.v, want_grad, want_temperature));
    INFO("message: ", s.message());
    REQUIRE(s.ok());
    return out;
}

/// check_args, check and run all reject the call with this error, and run writes nothing.
template <class T, class Index, class Label>
void check_topk_rejected(const distill::kd_topk_options& opts, const distill::topk_args<T, distill::host_space, Index, Label>& args,
                         index_t n, index_t v, errc code, error_kind kind, const char* argument,
                         std::initializer_list<const char*> fragments) {
    check_method_error("kd_topk", distill::check_args(opts, args), code, kind, argument, fragments);
    host_outputs<T> out(opts.reduce == reduction::none ? n : 1, n, v);
    const auto outs = out.views(n, v);
    check_method_error("kd_topk", distill::check(opts, args, outs), code, kind, argument, fragments);
    check_method_error("kd_topk", distill::run(opts, args, outs), code, kind, argument, fragments);
    CHECK(out.untouched());
}

}  // namespace kd_topk_tests

// The check and run steps on the CPU backend are noexcept (validate, then run blindly).
static_assert(noexcept(distill::run(distill::kd_topk_options{}, std::declval<const distill::topk_args<float>&>(),
                                       std::declval<const distill::response_outputs<float>&>())));
static_assert(noexcept(distill::check_args(distill::kd_topk_float_options{},
                                              std::declval<const distill::topk_args<double, distill::host_space, int>&>())));

// ------------------------------------------------------------------------------------------ values

TEST_CASE_TEMPLATE("kd_topk: loss matches the long-double reference for every reduction and variant", T, float, double) {
    using namespace kd_topk_tests;
    struct variant {
        bool renormalize;
        double temperature;
    };
    for (variant var : {variant{false, 1.0}, variant{true, 0.5}, variant{true, 1.0}, variant{true, 4.0}, variant{true, 20.0}})
        for (reduction red : topk_reductions)
            for (int extras = 0; extras < 2; ++extras) {
                topk_problem<T> p(5, 40, 7, 11);
                if (extras) p.with_labels({1, 3}).with_weight();
                const distill::kd_topk_options opts{var.temperature, red, -100, var.renormalize};
                CAPTURE(var.renormalize);
                CAPTURE(var.temperature);
                INFO("reduction: ", std::string(distill::to_string(red)));
                CAPTURE(extras);
                const auto out = run_topk(p, opts);
                const auto ref = topk_reference(p, var.temperature, var.renormalize, red);
                // Float: per-entry log-probabilities carry ~1e-7 absolute error, scaled by T^2.
                const double row_atol = std::is_same_v<T, float> ? 4e-6 * var.temperature * var.temperature : 0.0;
                if (red == reduction::none) {
                    REQUIRE(out.loss.size() == ref.rows.size());
                    for (std::size_t i = 0; i < ref.rows.size(); ++i)
                        DISTILL_CHECK_CLOSE(out.loss[i], static_cast<double>(ref.rows[i]), tolerance<T>(), row_atol);
                    if (extras) CHECK(out.loss[1] == T(0));
                } else {
                    DISTILL_CHECK_CLOSE(out.loss[0], static_cast<double>(ref.loss), tolerance<T>(),
                                        red == reduction::sum ? row_atol * static_cast<double>(p.n) : row_atol);
                }
                if (extras)  // an ignored row gets a zero gradient
                    for (index_t c = 0; c < p.v; ++c) CHECK(out.grad[at(p.v + c)] == T(0));
            }
}

TEST_CASE_TEMPLATE("kd_topk: large logits at a low temperature stay finite (log-space computation)", T, float, double) {
    using namespace kd_topk_tests;
    for (bool renormalize : {false, true}) {
        topk_problem<T> p(3, 50, 8, 13, 1000.0);
        const double temperature = renormalize ? 0.5 : 1.0;
        const auto out = run_topk(p, {temperature, reduction::none, -100, renormalize});
        const auto ref = topk_reference(p, temperature, renormalize, reduction::none);
        CAPTURE(renormalize);
        const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
        for (std::size_t i = 0; i < out.loss.size(); ++i) {
            CHECK(std::isfinite(out.loss[i]));
            DISTILL_CHECK_CLOSE(out.loss[i], static_cast<double>(ref.rows[i]), rtol, 0);
        }
        CHECK(std::all_of(out.grad.begin(), out.grad.end(), [](T g) { return std::isfinite(g); }));
        CHECK(std::isfinite(out.grad_temperature[0]));
    }
}

// ------------------------------------------------------------------------------ finite differences

TEST_CASE("kd_topk: gradients match central finite differences (double)") {
    using namespace kd_topk_tests;
    topk_problem<double> base(4, 12, 5, 21);
    base.with_labels({1}).with_weight();

    auto objective = [](const topk_problem<double>& p, const distill::kd_topk_options& o) {
        host_outputs<double> out(o.reduce, p.n, p.v);
        const distill::status s = distill::run(o, p.args(), out.views(p.n, p.v, false, false));
        REQUIRE(s.ok());
        return out.total();
    };

    struct variant {
        bool renormalize;
        double temperature;
    };
    for (variant var : {variant{false, 1.0}, variant{true, 0.5}, variant{true, 1.0}, variant{true, 4.0}, variant{true, 20.0}})
        for (reduction red : topk_reductions) {
            CAPTURE(var.renormalize);
            CAPTURE(var.temperature);
            INFO("reduction: ", std::string(distill::to_string(red)));
            const distill::kd_topk_options opts{var.temperature, red, -100, var.renormalize};
            const auto analytic = run_topk(base, opts);
            const double atol = 1e-8 + 1e-9 * var.temperature * var.temperature;

            topk_problem<double> p = base;
            double largest_gradient = 0;
            for (std::size_t c = 0; c < p.student.size(); ++c) {
                const double x = base.student[c];
                const double h = 1e-6 * std::max(1.0, std::abs(x));
                p.student[c] = x + h;
                const double up = objective(p, opts);
                p.student[c] = x - h;
                const double down = objective(p, opts);
                p.student[c] = x;
                const double numeric = (up - down) / (2 * h);
                CAPTURE(c);
                DISTILL_CHECK_CLOSE(analytic.grad[c], numeric, 1e-5, atol);
                largest_gradient = std::max(largest_gradient, std::abs(numeric));
            }
            CHECK(largest_gradient > 1e-4);  // the comparison means something
            for (index_t c = 0; c < p.v; ++c) CHECK(analytic.grad[at(p.v + c)] == 0.0);  // row 1 is ignored

            // d/dT: of the library's own loss with renormalize; of the reference with T free without
            // it (the stored log-probabilities are constants; the library only accepts T = 1 there).
            const double h = 1e-6 * var.temperature;
            double numeric_t = 0;
            if (var.renormalize) {
                distill::kd_topk_options up = opts, down = opts;
                up.temperature += h;
                down.temperature -= h;
                numeric_t = (objective(base, up) - objective(base, down)) / (2 * h);
            } else {
                numeric_t = static_cast<double>(topk_reference(base, 1 + h, false, red).loss -
                                                topk_reference(base, 1 - h, false, red).loss) /
                            (2 * h);
            }
            CHECK(std::abs(numeric_t) > 1e-3);
            DISTILL_CHECK_CLOSE(analytic.grad_temperature[0], numeric_t, 1e-5, atol);
        }
}

// ------------------------------------------------------------------------------------- properties

TEST_CASE_TEMPLATE("kd_topk: with k = V and no renormalize at T = 1 it is kd", T, float, double) {
    using namespace kd_topk_tests;
    topk_problem<T> p(4, 9, 9, 31);
    p.with_labels({2}).with_weight();
    // kd's teacher: the dense log-probabilities (log_softmax leaves them as they are).
    std::vector<T> teacher(at(p.n * p.v));
    for (index_t i = 0; i < p.n; ++i)
        for (index_t j = 0; j < p.k; ++j)
            teacher[at(i * p.v + static_cast<index_t>(p.ids[at(i * p.k + j)]))] = p.logprob[at(i * p.k + j)];
    for (reduction red : topk_reductions) {
        INFO("reduction: ", std::string(distill::to_string(red)));
        const auto topk = run_topk(p, {1.0, red, -100, false});
        host_outputs<T> kd(red, p.n, p.v);
        distill::response_args<T> kd_args{distill::make_view(p.student.data(), p.n, p.v), distill::make_view(teacher.data(), p.n, p.v),
                                          distill::make_view(p.labels.data(), p.n), distill::make_view(p.weight.data(), p.n)};
        REQUIRE(distill::run(distill::kd_options{1.0, red}, kd_args, kd.views(p.n, p.v)).ok());
        const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
        check_all_close(topk.loss, kd.loss, rtol, std::is_same_v<T, float> ? 1e-6 : 1e-15);
        check_all_close(topk.grad, kd.grad, rtol, std::is_same_v<T, float> ? 1e-6 : 1e-15);
        // d/dT differs on purpose: kd re-tempers the teacher, kd_topk's stored log-probabilities are fixed.
    }
}

TEST_CASE_TEMPLATE("kd_topk: renormalize is kd against the teacher masked to its top k (-inf elsewhere)", T, float, double) {
    using namespace kd_topk_tests;
    topk_problem<T> p(4, 30, 6, 41);
    p.with_labels({0}).with_weight();
    std::vector<T> masked(at(p.n * p.v), -std::numeric_limits<T>::infinity());
    for (index_t i = 0; i < p.n; ++i)
        for (index_t j = 0; j < p.k; ++j)
            masked[at(i * p.v + static_cast<index_t>(p.ids[at(i * p.k + j)]))] = p.logprob[at(i * p.k + j)];
    for (double temperature : {0.5, 1.0, 2.5, 20.0})
        for (reduction red : topk_reductions) {
            CAPTURE(temperature);
            INFO("reduction: ", std::string(distill::to_string(red)));
            const auto topk = run_topk(p, {temperature, red, -100, true});
            host_outputs<T> kd(red, p.n, p.v);
            distill::response_args<T> kd_args{distill::make_view(p.student.data(), p.n, p.v), distill::make_view(masked.data(), p.n, p.v),
                                              distill::make_view(p.labels.data(), p.n), distill::make_view(p.weight.data(), p.n)};
            REQUIRE(distill::run(distill::kd_options{temperature, red}, kd_args, kd.views(p.n, p.v)).ok());
            const double rtol = std::is_same_v<T, float> ? 2e-5 : 1e-12;
            const double atol = (std::is_same_v<T, float> ? 4e-6 : 1e-14) * temperature * temperature;
            check_all_close(topk.loss, kd.loss, rtol, atol);
            check_all_close(topk.grad, kd.grad, rtol, atol);
            // The same d/dT too: kd re-tempers the masked teacher exactly as renormalize does.
            DISTILL_CHECK_CLOSE(topk.grad_temperature[0], kd.grad_temperature[0], rtol, atol * 10);
        }
}

TEST_CASE_TEMPLATE("kd_topk: renormalized, the loss is a KL divergence (>= 0, 0 when the student agrees)", T, float, double) {
    using namespace kd_topk_tests;
    for (unsigned seed = 0; seed < 20; ++seed)
        for (double temperature : {0.5, 1.0, 4.0}) {
            topk_problem<T> p(3, 25, 1 + static_cast<index_t>(seed), 500 + seed);
            const auto out = run_topk(p, {temperature, reduction::none, -100, true});
            for (T row : out.loss) CHECK(row >= T(0));
        }
    // A student whose logits are the teacher's top-k log-probabilities (and very low elsewhere)
    // matches the renormalized teacher: loss ~ 0.
    topk_problem<T> p(2, 20, 5, 61);
    std::fill(p.student.begin(), p.student.end(), T(-60));
    for (index_t i = 0; i < p.n; ++i)
        for (index_t j = 0; j < p.k; ++j)
            p.student[at(i * p.v + static_cast<index_t>(p.ids[at(i * p.k + j)]))] = p.logprob[at(i * p.k + j)];
    const auto out = run_topk(p, {1.0, reduction::sum, -100, true});
    const double agreement_atol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
    CHECK(std::abs(out.loss[0]) < agreement_atol);
    // Without renormalize the same student is scored against unnormalised targets: not a KL, and
    // here negative (sum_j p_j < 1 while q sums to ~1 on the k ids).
    const auto plain = run_topk(p, {1.0, reduction::sum, -100, false});
    CHECK(plain.loss[0] < T(0));
}

TEST_CASE_TEMPLATE("kd_topk: the order of the ids within a row does not matter", T, float, double) {
    using namespace kd_topk_tests;
    topk_problem<T> p(3, 40, 9, 71);
    p.with_weight();
    topk_problem<T> reversed = p;
    for (index_t i = 0; i < p.n; ++i) {
        std::reverse(reversed.ids.begin() + i * p.k, reversed.ids.begin() + (i + 1) * p.k);
        std::reverse(reversed.logprob.begin() + i * p.k, reversed.logprob.begin() + (i + 1) * p.k);
    }
    REQUIRE(reversed.ids != p.ids);
    for (bool renormalize : {false, true}) {
        const distill::kd_topk_options opts{renormalize ? 3.0 : 1.0, reduction::none, -100, renormalize};
        const auto a = run_topk(p, opts), b = run_topk(reversed, opts);
        const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
        check_all_close(a.loss, b.loss, rtol, 0);
        check_all_close(a.grad, b.grad, rtol, std::is_same_v<T, float> ? 1e-7 : 1e-16);
        DISTILL_CHECK_CLOSE(a.grad_temperature[0], b.grad_temperature[0], rtol, 1e-6);
    }
}

TEST_CASE_TEMPLATE("kd_topk: masked entries (-inf) have probability 0 and add nothing", T, float, double) {
    using namespace kd_topk_tests;
    const T inf = std::numeric_limits<T>::infinity();
    for (bool renormalize : {false, true}) {
        CAPTURE(renormalize);
        const distill::kd_topk_options opts{renormalize ? 2.0 : 1.0, reduction::none, -100, renormalize};
        // A masked student logit outside the top k: finite loss, zero gradient there, and the same
        // result as a logit so low that its probability underflows.
        topk_problem<T> p(2, 16, 4, 81);
        index_t free_id = 0;
        while (std::find(p.ids.begin(), p.ids.begin() + p.k, static_cast<std::int64_t>(free_id)) != p.ids.begin() + p.k) ++free_id;
        topk_problem<T> masked = p, tiny = p;
        masked.student[at(free_id)] = -inf;
        tiny.student[at(free_id)] = T(-1e4);
        const auto a = run_topk(masked, opts), b = run_topk(tiny, opts);
        CHECK(std::all_of(a.loss.begin(), a.loss.end(), [](T x) { return std::isfinite(x); }));
        CHECK(a.grad[at(free_id)] == T(0));
        CHECK(a.loss == b.loss);
        CHECK(a.grad == b.grad);
        CHECK(std::isfinite(a.grad_temperature[0]));

        // A -inf stored teacher log-probability: as if the entry were absent (k - 1 entries).
        topk_problem<T> dropped = p;
        dropped.k = p.k - 1;
        dropped.ids.clear();
        dropped.logprob.clear();
        topk_problem<T> with_inf = p;
        for (index_t i = 0; i < p.n; ++i) {
            with_inf.logprob[at(i * p.k + 1)] = -inf;
            for (index_t j = 0; j < p.k; ++j)
                if (j != 1) {
                    dropped.ids.push_back(p.ids[at(i * p.k + j)]);
                    dropped.logprob.push_back(p.logprob[at(i * p.k + j)]);
                }
        }
        const auto c = run_topk(with_inf, opts), d = run_topk(dropped, opts);
        const double rtol = std::is_same_v<T, float> ? 1e-6 : 1e-14;
        check_all_close(c.loss, d.loss, rtol, 0);
        check_all_close(c.grad, d.grad, rtol, 1e-30);
        DISTILL_CHECK_CLOSE(c.grad_temperature[0], d.grad_temperature[0], rtol, 1e-12);

        // Every stored entry -inf: no teacher mass, the row adds 0 with a zero gradient.
        topk_problem<T> empty = p;
        std::fill(empty.logprob.begin(), empty.logprob.begin() + p.k, -inf);
        const auto e = run_topk(empty, opts);
        CHECK(e.loss[0] == T(0));
        for (index_t col = 0; col < p.v; ++col) CHECK(e.grad[at(col)] == T(0));
        CHECK(std::isfinite(e.grad_temperature[0]));
    }
}

TEST_CASE_TEMPLATE("kd_topk: every row ignored gives 0 and zero gradients, not NaN", T, float, double) {
    using namespace kd_topk_tests;
    topk_problem<T> p(3, 10, 4, 91);
    p.with_labels({0, 1, 2});
    for (bool renormalize : {false, true}) {
        const auto out = run_topk(p, {renormalize ? 2.0 : 1.0, reduction::batchmean, -100, renormalize});
        CHECK(out.loss[0] == T(0));
        CHECK(out.grad_temperature[0] == T(0));
        CHECK(std::all_of(out.grad.begin(), out.grad.end(), [](T g) { return g == T(0); }));
    }
}

TEST_CASE_TEMPLATE("kd_topk: ids of other integer types and strided views give the same results", T, float, double) {
    using namespace kd_topk_tests;
    topk_problem<T> p(3, 20, 5, 101);
    p.with_labels({1}).with_weight();
    const distill::kd_topk_options opts{2.0, reduction::none, -100, true};
    const auto expected = run_topk(p, opts);

    std::vector<std::int32_t> ids32(p.ids.begin(), p.ids.end());
    std::vector<std::uint16_t> ids16(p.ids.begin(), p.ids.end());
    auto run_with = [&](auto index_view) {
        using Index = typename decltype(index_view)::value_type;
        distill::topk_args<T, distill::host_space, Index> args{distill::make_view(p.student.data(), p.n, p.v), index_view,
                                                              distill::make_view(p.logprob.data(), p.n, p.k),
                                                              distill::make_view(p.labels.data(), p.n),
                                                              distill::make_view(p.weight.data(), p.n)};
        host_outputs<T> out(opts.reduce, p.n, p.v);
        REQUIRE(distill::run(opts, args, out.views(p.n, p.v)).ok());
        CHECK(out.loss == expected.loss);
        CHECK(out.grad == expected.grad);
        CHECK(out.grad_temperature == expected.grad_temperature);
    };
    run_with(distill::make_view(static_cast<const std::int32_t*>(ids32.data()), p.n, p.k));
    run_with(distill::make_view(static_cast<const std::uint16_t*>(ids16.data()), p.n, p.k));

    // Column-major ids and log-probabilities (stride k along columns, 1 along rows), and a
    // gradient written through a transposed view.
    std::vector<std::int64_t> ids_cm(p.ids.size());
    std::vector<T> logprob_cm(p.logprob.size());
    for (index_t i = 0; i < p.n; ++i)
        for (index_t j = 0; j < p.k; ++j) {
            ids_cm[at(j * p.n + i)] = p.ids[at(i * p.k + j)];
            logprob_cm[at(j * p.n + i)] = p.logprob[at(i * p.k + j)];
        }
    const index_t ext[2] = {p.n, p.k}, col_major[2] = {1, p.n};
    const index_t grad_ext[2] = {p.n, p.v}, grad_cm[2] = {1, p.n};
    distill::topk_args<T> args{distill::make_view(p.student.data(), p.n, p.v),
                               distill::any_view<const std::int64_t>(ids_cm.data(), 2, ext, col_major),
                               distill::any_view<const T>(logprob_cm.data(), 2, ext, col_major),
                               distill::make_view(p.labels.data(), p.n), distill::make_view(p.weight.data(), p.n)};
    host_outputs<T> out(opts.reduce, p.n, p.v);
    auto views = out.views(p.n, p.v);
    views.grad_student = distill::any_view<T>(out.grad.data(), 2, grad_ext, grad_cm);
    REQUIRE(distill::run(opts, args, views).ok());
    check_all_close(out.loss, expected.loss, std::is_same_v<T, float> ? 1e-6 : 1e-14, 0);
    for (index_t i = 0; i < p.n; ++i)
        for (index_t c = 0; c < p.v; ++c)
            DISTILL_CHECK_CLOSE(out.grad[at(c * p.n + i)], expected.grad[at(i * p.v + c)], 1e-6, 1e-30);
}

TEST_CASE_TEMPLATE("kd_topk: optional outputs can be left out and do not change the others", T, float, double) {
    using namespace kd_topk_tests;
    topk_problem<T> p(3, 15, 4, 111);
    const distill::kd_topk_options opts{1.5, reduction::sum, -100, true};
    const auto all = run_topk(p, opts);
    CHECK(run_topk(p, opts, false, false).loss == all.loss);
    CHECK(run_topk(p, opts, true, false).grad == all.grad);
    CHECK(run_topk(p, opts, false, true).grad_temperature == all.grad_temperature);
    CHECK(distill::workspace_bytes(opts, p.args(), host_outputs<T>(1, 3, 15).views(3, 15)) == 0);
}

// ------------------------------------------------------------------------------------------ errors

TEST_CASE_TEMPLATE("kd_topk: shape errors name the argument and the sizes, and write nothing", T, float, double) {
    using namespace kd_topk_tests;
    topk_problem<T> p(3, 10, 4, 121);
    p.with_labels().with_weight();
    const distill::kd_topk_options opts{};
    auto args = p.args();
    auto rejected = [&](errc code, const char* argument, std::initializer_list<const char*> fragments) {
        check_topk_rejected(opts, args, p.n, p.v, code, error_kind::shape, argument, fragments);
    };

    SUBCASE("student of rank 1") {
        args.student = distill::make_view(p.student.data(), 30);
        rejected(errc::bad_rank, "student", {"student", "2-D", "[30]"});
    }
    SUBCASE("student missing") {
        args.student = {};
        rejected(errc::missing_argument, "student", {"student", "required"});
    }
    SUBCASE("no rows") {
        args.student = distill::make_view(p.student.data(), 0, 10);
        rejected(errc::empty_input, "student", {"student", "[0, 10]"});
    }
    SUBCASE("teacher.index of rank 1") {
        args.teacher_index = distill::make_view(p.ids.data(), 12);
        rejected(errc::bad_rank, "teacher.index", {"teacher.index", "2-D", "[12]"});
    }
    SUBCASE("teacher.index missing") {
        args.teacher_index = {};
        rejected(errc::missing_argument, "teacher.index", {"teacher.index", "required"});
    }
    SUBCASE("teacher.logprob missing") {
        args.teacher_logprob = {};
        rejected(errc::missing_argument, "teacher.logprob", {"teacher.logprob", "required"});
    }
    SUBCASE("teacher.logprob of another shape than teacher.index") {
        args.teacher_logprob = distill::make_view(p.logprob.data(), 3, 3);
        rejected(errc::shape_mismatch, "teacher.logprob", {"teacher.logprob", "[3, 3]", "teacher.index", "[3, 4]"});
    }
    SUBCASE("teacher.logprob of rank 1") {
        args.teacher_logprob = distill::make_view(p.logprob.data(), 12);
        rejected(errc::shape_mismatch, "teacher.logprob", {"teacher.logprob", "[12]", "[3, 4]"});
    }
    SUBCASE("teacher rows differ from the student's") {
        args.teacher_index = distill::make_view(p.ids.data(), 2, 4);
        args.teacher_logprob = distill::make_view(p.logprob.data(), 2, 4);
        rejected(errc::shape_mismatch, "teacher.index", {"teacher.index", "[2, 4]", "3 rows", "[3, 10]"});
    }
    SUBCASE("k = 0") {
        args.teacher_index = distill::make_view(p.ids.data(), 3, 0);
        args.teacher_logprob = distill::make_view(p.logprob.data(), 3, 0);
        rejected(errc::shape_mismatch, "teacher.index", {"teacher.index", "[3, 0]", "k = 0", "[1, 10]"});
    }
    SUBCASE("k > V") {
        args.student = distill::make_view(p.student.data(), 3, 3);
        rejected(errc::shape_mismatch, "teacher.index", {"teacher.index", "k = 4", "[1, 3]"});
    }
    SUBCASE("labels of the wrong length") {
        args.labels = distill::make_view(p.labels.data(), 2);
        rejected(errc::shape_mismatch, "labels", {"labels", "[2]", "[3]"});
    }
    SUBCASE("weight of the wrong length") {
        std::vector<T> four(4, T(1));
        args.weight = distill::make_view(four.data(), 4);
        rejected(errc::shape_mismatch, "weight", {"weight", "[4]", "[3]"});
    }
    SUBCASE("shapes are checked before the ids' values") {
        p.ids[0] = 99;  // out of range, but the labels' shape is the first problem
        args.labels = distill::make_view(p.labels.data(), 2);
        rejected(errc::shape_mismatch, "labels", {"labels"});
    }
}

TEST_CASE("kd_topk: repeated ids are found at every k (bitmap up to V = 4096; hash set up to 256 ids, pairwise above)") {
    using namespace kd_topk_tests;
    for (index_t vocabulary : {1000, 4096, 5000})
    for (index_t k : {1, 2, 17, 64, 200, 256, 257, 400}) {
        CAPTURE(vocabulary);
        CAPTURE(k);
        topk_problem<double> p(3, vocabulary, k, 211);
        distill::kd_topk_options opts{};
        {  // distinct ids (1000 values, many hash collisions in a small table) pass
            host_outputs<double> out(1, p.n, p.v);
            CHECK(distill::run(opts, p.args(), out.views(p.n, p.v)).ok());
        }
        if (k < 2) continue;
        // A repeat in row 1 only, at the last position, of the id at position (k - 1) / 2.
        const index_t j = k - 1, first = (k - 1) / 2;
        p.ids[at(1 * k + j)] = p.ids[at(1 * k + first)];
        const std::string value = "teacher.index[1][" + std::to_string(j) + "] = " + std::to_string(p.ids[at(1 * k + first)]);
        const std::string earlier = "teacher.index[1][" + std::to_string(first) + "]";
        check_topk_rejected(opts, p.args(), p.n, p.v, errc::repeated_index, error_kind::value, "teacher.index",
                            {value.c_str(), "appears twice in row 1", earlier.c_str()});
        // With a repeat in row 2 as well, row 1 (the first) is named.
        p.ids[at(2 * k + 1)] = p.ids[at(2 * k + 0)];
        check_topk_rejected(opts, p.args(), p.n, p.v, errc::repeated_index, error_kind::value, "teacher.index",
                            {"appears twice in row 1"});
    }
}

TEST_CASE("kd_topk: the bitmap's word boundaries (ids 0, 63, 64, V - 1 at V = 4096)") {
    using namespace kd_topk_tests;
    topk_problem<double> p(1, 4096, 4, 5);
    distill::kd_topk_options opts{};
    p.ids = {0, 63, 64, 4095};
    {
        host_outputs<double> out(1, p.n, p.v);
        CHECK(distill::run(opts, p.args(), out.views(p.n, p.v)).ok());
    }
    for (const std::int64_t repeat : {0, 63, 64, 4095}) {
        CAPTURE(repeat);
        p.ids = {0, 63, 64, 4095};
        p.ids[repeat == 4095 ? 0 : 3] = repeat;  // the repeated id at a different position
        check_topk_rejected(opts, p.args(), p.n, p.v, errc::repeated_index, error_kind::value, "teacher.index",
                            {"appears twice in row 0"});
    }
}

TEST_CASE_TEMPLATE("kd_topk: value errors name the argument, the position and the value, and write nothing", T, float,
                   double) {
    using namespace kd_topk_tests;
    topk_problem<T> p(3, 10, 4, 131);
    p.with_labels().with_weight();
    distill::kd_topk_options opts{};
    auto rejected = [&](errc code, const char* argument, std::initializer_list<const char*> fragments) {
        check_topk_rejected(opts, p.args(), p.n, p.v, code, error_kind::value, argument, fragments);
    };

    SUBCASE("an id equal to V") {
        p.ids[at(1 * 4 + 2)] = 10;
        rejected(errc::index_out_of_range, "teacher.index", {"teacher.index[1][2] = 10", "[0, 10)"});
    }
    SUBCASE("a negative id") {
        p.ids[at(2 * 4 + 0)] = -1;
        rejected(errc::index_out_of_range, "teacher.index", {"teacher.index[2][0] = -1", "[0, 10)"});
    }
    SUBCASE("an id repeated within a row") {
        p.ids[at(2 * 4 + 3)] = p.ids[at(2 * 4 + 1)];
        const std::string value = "teacher.index[2][3] = " + std::to_string(p.ids[at(2 * 4 + 1)]);
        rejected(errc::repeated_index, "teacher.index",
                 {value.c_str(), "appears twice in row 2", "teacher.index[2][1]"});
    }
    SUBCASE("the same id in two rows is fine") {
        for (index_t i = 0; i < p.n; ++i)
            for (index_t j = 0; j < p.k; ++j) p.ids[at(i * p.k + j)] = j;
        host_outputs<T> out(1, p.n, p.v);
        CHECK(distill::run(opts, p.args(), out.views(p.n, p.v)).ok());
    }
    SUBCASE("temperature other than 1 without renormalize") {
        opts.temperature = 2;
        rejected(errc::invalid_parameter, "temperature", {"temperature = 2", "renormalize"});
        opts.temperature = 0.5;
        rejected(errc::invalid_parameter, "temperature", {"temperature = 5.00000e-1", "renormalize"});
        opts.renormalize = true;  // and with renormalize the same temperatures are fine
        host_outputs<T> out(1, p.n, p.v);
        CHECK(distill::run(opts, p.args(), out.views(p.n, p.v)).ok());
    }
    SUBCASE("temperature <= 0 or not finite") {
        opts.renormalize = true;
        for (double t : {0.0, -1.0, std::numeric_limits<double>::infinity(), std::nan("")}) {
            opts.temperature = t;
            rejected(errc::invalid_parameter, "temperature", {"temperature"});
        }
    }
    SUBCASE("unknown reduction") {
        opts.reduce = static_cast<reduction>(7);
        rejected(errc::unknown_reduction, "reduction", {"reduction = 7"});
    }
    SUBCASE("a label out of range") {
        p.labels[1] = 10;
        rejected(errc::label_out_of_range, "labels", {"labels[1] = 10", "[0, 10)"});
    }
    SUBCASE("a negative weight") {
        p.weight[2] = T(-0.5);
        rejected(errc::invalid_weight, "weight", {"weight[2] = -5.00000e-1"});
    }
}

TEST_CASE_TEMPLATE("kd_topk: output errors and aliasing are reported, and nothing is written", T, float, double) {
    using namespace kd_topk_tests;
    topk_problem<T> p(3, 10, 4, 141);
    const distill::kd_topk_options opts{};
    const auto args = p.args();
    host_outputs<T> out(reduction::batchmean, p.n, p.v);
    auto outs = out.views(p.n, p.v);

    SUBCASE("grad_student of the teacher's shape") {
        outs.grad_student = distill::make_view(out.grad.data(), p.n, p.k);
        check_method_error("kd_topk", distill::run(opts, args, outs), errc::shape_mismatch, error_kind::shape, "grad_student",
                           {"grad_student", "[3, 4]", "[3, 10]"});
    }
    SUBCASE("loss of N values with batchmean") {
        outs.loss = distill::make_view(out.grad.data(), p.n);
        outs.grad_student = {};
        check_method_error("kd_topk", distill::run(opts, args, outs), errc::shape_mismatch, error_kind::shape, "loss",
                           {"loss", "[3]"});
    }
    SUBCASE("an output over teacher.logprob") {
        std::vector<T> shared = p.logprob;
        auto aliased = args;
        aliased.teacher_logprob = distill::make_view(shared.data(), p.n, p.k);
        outs.grad_temperature = distill::make_view(shared.data() + 5, 1);
        check_method_error("kd_topk", distill::run(opts, aliased, outs), errc::aliasing, error_kind::usage,
                           "grad_temperature", {"grad_temperature", "teacher.logprob"});
        CHECK(shared == p.logprob);
    }
    SUBCASE("an output over teacher.index") {
        // Reals written over the ids' bytes: the check compares addresses, whatever the types.
        auto aliased = args;
        std::vector<std::int64_t> bytes(64, 0);
        for (index_t j = 0; j < 12; ++j) bytes[at(j)] = p.ids[at(j)];
        aliased.teacher_index = distill::make_view(static_cast<const std::int64_t*>(bytes.data()), p.n, p.k);
        outs.loss = distill::make_view(reinterpret_cast<T*>(bytes.data() + 2), 1);
        check_method_error("kd_topk", distill::run(opts, aliased, outs), errc::aliasing, error_kind::usage, "loss",
                           {"loss", "teacher.index"});
    }
    SUBCASE("an output over the student") {
        std::vector<T> shared = p.student;
        auto aliased = args;
        aliased.student = distill::make_view(shared.data(), p.n, p.v);
        outs.grad_student = distill::make_view(shared.data(), p.n, p.v);
        check_method_error("kd_topk", distill::run(opts, aliased, outs), errc::aliasing, error_kind::usage, "grad_student",
                           {"grad_student", "student"});
        CHECK(shared == p.student);
    }
    CHECK(out.untouched());
}

// --------------------------------------------------------------------------------- convenience

TEST_CASE("kd_topk: the convenience object returns what distill::run computes, and throws on bad input") {
    using namespace kd_topk_tests;
    topk_problem<double> p(4, 12, 3, 151);
    p.with_labels({2}).with_weight();
    const auto student = distill::make_view(p.student.data(), p.n, p.v);
    const auto ids = distill::make_view(p.ids.data(), p.n, p.k);
    const auto logprob = distill::make_view(p.logprob.data(), p.n, p.k);
    for (reduction red : topk_reductions)
        for (bool renormalize : {false, true}) {
            const distill::kd_topk_options opts{renormalize ? 2.0 : 1.0, red, -100, renormalize};
            const auto expected = run_topk(p, opts);
            const auto r = distill::kd_topk(student, ids, logprob, std::span<const std::int64_t>(p.labels),
                                            std::span<const double>(p.weight), opts);
            CHECK(r.status.ok());
            CHECK(r.loss == doctest::Approx(expected.total()).epsilon(1e-14));
            CHECK(r.grad_temperature == expected.grad_temperature[0]);
            REQUIRE(r.grad_student.rank() == 2);
            CHECK(r.grad_student.extent(0) == p.n);
            CHECK(r.grad_student.extent(1) == p.v);
            CHECK(std::vector<double>(r.grad_student.data(), r.grad_student.data() + p.n * p.v) == expected.grad);
            CHECK(r.row_losses.size() == (red == reduction::none ? p.n : 0));
        }
    // The shorter overloads, designated options, and the backend-first form.
    topk_problem<double> plain = p;
    plain.use_labels = plain.use_weight = false;
    CHECK(distill::kd_topk(student, ids, logprob).loss == run_topk(plain, {}).loss[0]);
    CHECK(distill::kd_topk(student, ids, logprob, {.temperature = 3, .renormalize = true}).loss ==
          run_topk(plain, {3.0, reduction::batchmean, -100, true}).loss[0]);
    topk_problem<double> labelled = p;
    labelled.use_weight = false;
    CHECK(distill::kd_topk(student, ids, logprob, std::span<const std::int64_t>(p.labels)).loss ==
          run_topk(labelled, {}).loss[0]);
    CHECK(distill::kd_topk(distill::cpu_backend{}, student, ids, logprob, distill::none, distill::none).loss ==
          run_topk(plain, {}).loss[0]);

    p.ids[at(1 * p.k + 2)] = p.ids[at(1 * p.k)];
#if DISTILL_HAS_EXCEPTIONS
    try {
        (void)distill::kd_topk(student, ids, logprob);
        FAIL("kd_topk accepted a repeated id");
    } catch (const distill::error& e) {
        CHECK(e.status().kind() == error_kind::value);
        CHECK(contains(e.what(), "appears twice in row 1"));
    }
    CHECK_THROWS_AS((void)distill::kd_topk(student, ids, logprob, {.temperature = 2}), distill::error);
#endif
}
