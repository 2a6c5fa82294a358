// tests/unit/schemes/objective.hpp: objective composition (include/distill/process/objective.hpp)
// and the grad_scale / accumulate outputs it rests on; included by schemes_test.cpp.
// Weighted sums against separate calls, finite differences of the composite loss, a scheduled
// weight, the first-writer rule (no zeroing needed, mixed new and seen buffers), feature terms
// accumulating through workspace, and failures that write nothing.
#pragma once

#include <distill/feature.hpp>
#include <distill/process/objective.hpp>

#include <cmath>
#include <vector>

namespace objective_test {

using distill::index_t;
using distill_test::random_values;

template <class T>
distill::any_view<T> matrix(std::vector<T>& v, index_t n, index_t c) {
    return distill::make_view(v.data(), n, c);
}
template <class T>
distill::any_view<const T> cmatrix(const std::vector<T>& v, index_t n, index_t c) {
    return distill::make_view(v.data(), n, c);
}

/// distill::run with the workspace the call asks for.
template <class Options, class Args, class Outs>
distill::status run_sized(const Options& opts, const Args& args, const Outs& outs) {
    std::vector<std::byte> scratch(distill::workspace_bytes(opts, args, outs));
    return distill::run(opts, args, outs, distill::workspace{scratch.data(), scratch.size()});
}

/// The gradient of one loss alone (fresh buffer), for comparisons.
template <class Options, class T>
std::vector<T> gradient_of(const Options& opts, const distill::response_args<T>& args, index_t n, index_t c,
                           T* dtemperature = nullptr) {
    std::vector<T> g(static_cast<std::size_t>(n * c)), loss(1);
    distill::response_outputs<T> outs{distill::make_view(loss.data(), 1), matrix(g, n, c)};
    if (dtemperature) outs.grad_temperature = distill::make_view(dtemperature, 1);
    REQUIRE(run_sized(opts, args, outs));
    return g;
}

}  // namespace objective_test

TEST_CASE_TEMPLATE("response outputs: grad_scale scales the gradients, accumulate adds them", T, float, double) {
    using namespace objective_test;
    const index_t n = 5, c = 7;
    const auto s = random_values<T>(n * c, 11), t = random_values<T>(n * c, 12);
    std::vector<std::int64_t> labels = {0, 3, 6, -100, 2};
    const auto args = distill::make_response_args(cmatrix(s, n, c), cmatrix(t, n, c), distill::make_view(labels.data(), n));
    const double rtol = distill_test::tolerance<T>();

    const auto unlabelled = distill::make_response_args(cmatrix(s, n, c), cmatrix(t, n, c));
    const auto check_method = [&](const auto& opts, bool tempered, bool labelled = true, bool with_teacher = true) {
        auto args = labelled ? distill::make_response_args(cmatrix(s, n, c), cmatrix(t, n, c), distill::make_view(labels.data(), n))
                             : unlabelled;
        if (!with_teacher) args.teacher = {};
        T dt_plain = 0;
        const std::vector<T> plain = gradient_of(opts, args, n, c, tempered ? &dt_plain : nullptr);
        std::vector<T> g(static_cast<std::size_t>(n * c)), loss(1), base(g.size());
        for (std::size_t k = 0; k < g.size(); ++k) base[k] = g[k] = T(0.25) * T(k % 5) - T(0.5);
        T dt = T(1.5);
        distill::response_outputs<T> outs{distill::make_view(loss.data(), 1), matrix(g, n, c)};
        if (tempered) outs.grad_temperature = distill::make_view(&dt, 1);
        outs.grad_scale = T(-0.75);
        outs.accumulate = true;
        REQUIRE(run_sized(opts, args, outs));
        std::vector<T> expected(g.size());
        for (std::size_t k = 0; k < g.size(); ++k) expected[k] = base[k] + T(-0.75) * plain[k];
        distill_test::check_all_close(g, expected, rtol * 10, rtol);
        if (tempered) DISTILL_CHECK_CLOSE(dt, T(1.5) + T(-0.75) * dt_plain, rtol * 10, rtol);
        // The loss itself is not scaled.
        std::vector<T> loss_plain(1);
        REQUIRE(run_sized(opts, args, distill::response_outputs<T>{distill::make_view(loss_plain.data(), 1)}));
        DISTILL_CHECK_CLOSE(loss[0], loss_plain[0], rtol, 0);
        // Scale without accumulate overwrites.
        outs.accumulate = false;
        outs.grad_scale = T(2);
        REQUIRE(run_sized(opts, args, outs));
        for (std::size_t k = 0; k < g.size(); ++k) expected[k] = T(2) * plain[k];
        distill_test::check_all_close(g, expected, rtol * 10, rtol);
    };
    SUBCASE("kd") { check_method(distill::kd_options{.temperature = 2.0}, true); }
    SUBCASE("kd standardize") { check_method(distill::kd_options{.temperature = 2.0, .standardize = true}, true); }
    SUBCASE("reverse_kd") { check_method(distill::reverse_kd_options{.temperature = 1.5}, true); }
    SUBCASE("jsd") { check_method(distill::jsd_options{.temperature = 3.0}, true); }
    SUBCASE("tvd") { check_method(distill::tvd_options{.temperature = 1.0}, true); }
    SUBCASE("ce") { check_method(distill::ce_options{.label_smoothing = 0.1}, false, true, false); }
    SUBCASE("dkd") { check_method(distill::dkd_options{.temperature = 4.0}, true); }
    SUBCASE("logit_mse") { check_method(distill::logit_mse_options{}, false); }
    SUBCASE("dist") { check_method(distill::dist_options{.temperature = 2.0}, true, false); }

    SUBCASE("a non-finite grad_scale is an error and writes nothing") {
        std::vector<T> g(static_cast<std::size_t>(n * c), T(9)), loss(1, T(9));
        distill::response_outputs<T> outs{distill::make_view(loss.data(), 1), matrix(g, n, c)};
        outs.grad_scale = std::numeric_limits<T>::quiet_NaN();
        const distill::status st = distill::run(distill::kd_options{}, args, outs);
        distill_test::check_method_error("kd", st, distill::errc::invalid_parameter, distill::error_kind::value, "grad_scale", {});
        CHECK(loss[0] == T(9));
        for (T v : g) CHECK(v == T(9));
    }
}

TEST_CASE("kd_topk accumulates: the vocabulary part and the teacher's entries") {
    using namespace objective_test;
    const index_t n = 3, v = 9, k = 3;
    const auto s = random_values<double>(n * v, 21);
    std::vector<std::int64_t> ids = {0, 4, 8, 1, 2, 3, 7, 6, 5};
    const std::vector<double> logprob = {-0.5, -1.5, -2.5, -0.2, -2.0, -3.0, -1.0, -1.1, -1.2};
    const distill::topk_args<double> args{cmatrix(s, n, v), distill::make_view(ids.data(), n, k), cmatrix(logprob, n, k)};
    for (bool renormalize : {false, true}) {
        const distill::kd_topk_options opts{.temperature = renormalize ? 1.5 : 1.0, .renormalize = renormalize};
        std::vector<double> plain(static_cast<std::size_t>(n * v)), loss(1);
        REQUIRE(distill::run(opts, args, distill::response_outputs<double>{distill::make_view(loss.data(), 1), matrix(plain, n, v)}));
        std::vector<double> g(plain.size(), 0.5);
        distill::response_outputs<double> outs{distill::make_view(loss.data(), 1), matrix(g, n, v)};
        outs.grad_scale = 3.0;
        outs.accumulate = true;
        REQUIRE(distill::run(opts, args, outs));
        std::vector<double> expected(g.size());
        for (std::size_t q = 0; q < g.size(); ++q) expected[q] = 0.5 + 3.0 * plain[q];
        distill_test::check_all_close(g, expected, 1e-12, 1e-14);
    }
}

TEST_CASE("objective: ce + scheduled dkd + kd on one logit buffer equals the weighted sum, by finite differences too") {
    using namespace objective_test;
    const index_t n = 4, c = 6;
    const auto s = random_values<double>(n * c, 31), t = random_values<double>(n * c, 32);
    std::vector<std::int64_t> labels = {1, 5, 0, 3};
    const distill::ce_options ce_opts{};
    const distill::dkd_options dkd_opts{.temperature = 4.0, .beta = 8.0};
    const distill::kd_options kd_opts{.temperature = 2.0};
    // DKD's warm-up: beta * min(epoch / 20, 1), here at epoch 5 -> weight 0.25.
    const auto dkd_weight = distill::linear_schedule<>{0.0, 1.0, 20.0};
    const double step = 5.0;

    const auto total_at = [&](const std::vector<double>& x, std::vector<double>* grad) {
        const auto args = distill::make_response_args(cmatrix(x, n, c), cmatrix(t, n, c), distill::make_view(labels.data(), n));
        const auto ce_args = distill::response_args<double>{cmatrix(x, n, c), {}, distill::make_view(labels.data(), n)};
        std::vector<double> scratch(static_cast<std::size_t>(n * c), -123.0);  // no zeroing needed
        distill::objective<double> objective(step);
        CHECK(objective.add(1.0, ce_opts, ce_args, distill::response_outputs<double>{{}, matrix(scratch, n, c)}));
        CHECK(objective.add(dkd_weight, dkd_opts, args, distill::response_outputs<double>{{}, matrix(scratch, n, c)}));
        CHECK(objective.add(0.5, kd_opts, args, distill::response_outputs<double>{{}, matrix(scratch, n, c)}));
        CHECK(objective.ok());
        CHECK(objective.terms() == 3);
        CHECK(objective.term_weight(1) == doctest::Approx(0.25));
        if (grad) *grad = scratch;
        return objective.total();
    };
    std::vector<double> grad;
    const double total = total_at(s, &grad);

    // The same from separate calls.
    const auto args = distill::make_response_args(cmatrix(s, n, c), cmatrix(t, n, c), distill::make_view(labels.data(), n));
    const auto ce_args = distill::response_args<double>{cmatrix(s, n, c), {}, distill::make_view(labels.data(), n)};
    const auto ce = distill::ce(cmatrix(s, n, c), distill::make_view(labels.data(), n), ce_opts);
    const auto dkd = distill::dkd(cmatrix(s, n, c), cmatrix(t, n, c), distill::make_view(labels.data(), n), dkd_opts);
    const auto kd = distill::kd(cmatrix(s, n, c), cmatrix(t, n, c), kd_opts);
    DISTILL_CHECK_CLOSE(total, ce.loss + 0.25 * dkd.loss + 0.5 * kd.loss, 1e-13, 0);
    std::vector<double> expected(grad.size());
    const std::vector<double> g_ce = gradient_of(ce_opts, ce_args, n, c), g_dkd = gradient_of(dkd_opts, args, n, c),
                              g_kd = gradient_of(kd_opts, args, n, c);
    for (std::size_t k = 0; k < grad.size(); ++k) expected[k] = g_ce[k] + 0.25 * g_dkd[k] + 0.5 * g_kd[k];
    distill_test::check_all_close(grad, expected, 1e-12, 1e-14);
    // Finite differences of the total.
    const auto numeric = distill_test::numeric_gradient([&](const std::vector<double>& x) { return total_at(x, nullptr); }, s);
    distill_test::check_all_close(grad, numeric, 1e-6, 1e-8);
}

TEST_CASE("objective: a term writing a new buffer and a seen one (ce, then kd with d/dT) zeroes the new one") {
    using namespace objective_test;
    const index_t n = 3, c = 5;
    const auto s = random_values<double>(n * c, 41), t = random_values<double>(n * c, 42);
    std::vector<std::int64_t> labels = {1, 4, 0};
    const auto args = distill::make_response_args(cmatrix(s, n, c), cmatrix(t, n, c), distill::make_view(labels.data(), n));
    const auto ce_args = distill::response_args<double>{cmatrix(s, n, c), {}, distill::make_view(labels.data(), n)};
    std::vector<double> grad(static_cast<std::size_t>(n * c), 7.0);
    double dtemperature = 99.0;  // garbage the objective must not add to
    distill::objective<double> objective(0.0);
    REQUIRE(objective.add(2.0, distill::ce_options{}, ce_args, distill::response_outputs<double>{{}, matrix(grad, n, c)}));
    distill::response_outputs<double> kd_outs{{}, matrix(grad, n, c), distill::make_view(&dtemperature, 1)};
    REQUIRE(objective.add(0.5, distill::kd_options{.temperature = 3.0}, args, kd_outs));
    const auto kd = distill::kd(cmatrix(s, n, c), cmatrix(t, n, c), distill::kd_options{.temperature = 3.0});
    DISTILL_CHECK_CLOSE(dtemperature, 0.5 * kd.grad_temperature, 1e-13, 1e-15);
    const auto ce = distill::ce(cmatrix(s, n, c), distill::make_view(labels.data(), n));
    for (index_t i = 0; i < n; ++i)
        for (index_t k = 0; k < c; ++k)
            DISTILL_CHECK_CLOSE(grad[static_cast<std::size_t>(i * c + k)], 2.0 * ce.grad_student(i, k) + 0.5 * kd.grad_student(i, k),
                                1e-12, 1e-14);
}

TEST_CASE("objective: feature terms accumulate through workspace (hint mse + hint l1 + at on one feature map)") {
    using namespace objective_test;
    const index_t n = 2, ch = 3, h = 4, w = 4;
    const std::size_t size = static_cast<std::size_t>(n * ch * h * w);
    const auto fs = random_values<double>(size, 51), ft = random_values<double>(size, 52);
    const auto student = distill::any_view<const double>(distill::make_view(fs.data(), n, ch, h, w));
    const auto teacher = distill::any_view<const double>(distill::make_view(ft.data(), n, ch, h, w));
    const distill::hint_options mse{};
    const distill::hint_options l1{.distance = distill::hint_distance::l1};
    const distill::at_options at{};

    const auto total_at = [&](const std::vector<double>& x, std::vector<double>* grad) {
        const distill::feature_args<double> a{distill::make_view(x.data(), n, ch, h, w), teacher};
        std::vector<double> g(size, 5.0);
        const auto gv = distill::any_view<double>(distill::make_view(g.data(), n, ch, h, w));
        distill::feature_outputs<double> probe{{}, gv};
        probe.accumulate = true;
        std::size_t bytes = 0;
        double slot = 0;
        probe.loss = distill::make_view(&slot, 1);
        bytes = std::max({distill::workspace_bytes(mse, a, probe), distill::workspace_bytes(l1, a, probe),
                          distill::workspace_bytes(at, a, probe)});
        std::vector<std::byte> scratch(bytes);
        distill::objective<double> objective(0.0, distill::workspace{scratch.data(), scratch.size()});
        CHECK(objective.add(1.0, mse, a, distill::feature_outputs<double>{{}, gv}));
        CHECK(objective.add(0.3, l1, a, distill::feature_outputs<double>{{}, gv}));
        CHECK(objective.add(50.0, at, a, distill::feature_outputs<double>{{}, gv}));
        CHECK(objective.ok());
        if (grad) *grad = g;
        return objective.total();
    };
    std::vector<double> grad;
    const double total = total_at(fs, &grad);
    const auto r_mse = distill::hint(student, teacher, mse), r_l1 = distill::hint(student, teacher, l1);
    const auto r_at = distill::at(student, teacher, at);
    DISTILL_CHECK_CLOSE(total, r_mse.loss + 0.3 * r_l1.loss + 50.0 * r_at.loss, 1e-13, 0);
    std::vector<double> expected(size);
    for (std::size_t k = 0; k < size; ++k)
        expected[k] = r_mse.grad_student.data()[k] + 0.3 * r_l1.grad_student.data()[k] + 50.0 * r_at.grad_student.data()[k];
    distill_test::check_all_close(grad, expected, 1e-12, 1e-14);
    const auto numeric = distill_test::numeric_gradient([&](const std::vector<double>& x) { return total_at(x, nullptr); }, fs);
    distill_test::check_all_close(grad, numeric, 1e-5, 1e-7);
}

TEST_CASE("objective: a failing term writes nothing, keeps the first status, and the total leaves it out") {
    using namespace objective_test;
    const index_t n = 2, c = 3;
    const auto s = random_values<double>(n * c, 61), t = random_values<double>(n * c, 62);
    const auto wrong = random_values<double>(n * (c + 1), 63);
    std::vector<double> grad(static_cast<std::size_t>(n * c), 4.0);
    distill::objective<double> objective(0.0);
    const auto good = distill::make_response_args(cmatrix(s, n, c), cmatrix(t, n, c));
    const auto bad = distill::make_response_args(cmatrix(s, n, c), cmatrix(wrong, n, c + 1));
    const distill::status st = objective.add(1.0, distill::kd_options{}, bad, distill::response_outputs<double>{{}, matrix(grad, n, c)});
    CHECK(st.code() == distill::errc::shape_mismatch);
    for (double v : grad) CHECK(v == 4.0);
    CHECK(objective.total() == 0.0);
    CHECK(!objective.ok());
    // A non-finite weight: an error naming the weight, nothing written.
    const distill::status nan_weight = objective.add(std::nan(""), distill::kd_options{}, good,
                                                     distill::response_outputs<double>{{}, matrix(grad, n, c)});
    distill_test::check_method_error("objective", nan_weight, distill::errc::invalid_parameter, distill::error_kind::value,
                                     "weight", {"term 1"});
    for (double v : grad) CHECK(v == 4.0);
    // The good term still runs and overwrites (the buffer was never written).
    REQUIRE(objective.add(1.0, distill::kd_options{}, good, distill::response_outputs<double>{{}, matrix(grad, n, c)}));
    const auto kd = distill::kd(cmatrix(s, n, c), cmatrix(t, n, c));
    DISTILL_CHECK_CLOSE(objective.total(), kd.loss, 1e-14, 0);
    DISTILL_CHECK_CLOSE(grad[0], kd.grad_student(0, 0), 1e-14, 0);
    CHECK(objective.status().code() == distill::errc::shape_mismatch);  // the first failure is kept
    // A feature term whose accumulation needs workspace the objective lacks.
    std::vector<double> f(static_cast<std::size_t>(n * 8), 1.0), ft(f.size(), 0.5), gf(f.size(), 3.0);
    const distill::feature_args<double> fa{cmatrix(f, n, 8), cmatrix(ft, n, 8)};
    REQUIRE(objective.add(1.0, distill::hint_options{}, fa, distill::feature_outputs<double>{{}, matrix(gf, n, 8)}));
    const distill::status ws = objective.add(1.0, distill::hint_options{}, fa, distill::feature_outputs<double>{{}, matrix(gf, n, 8)});
    CHECK(ws.code() == distill::errc::workspace_too_small);
}
