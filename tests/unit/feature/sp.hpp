// tests/unit/feature/sp.hpp: sp and the similarity extractor on the CPU backend; included by
// feature_methods_test.cpp.
#pragma once

#include "../feature_support.hpp"

TEST_CASE("sp: gradient matches finite differences (2-D, 4-D, different widths)") {
    using namespace feature_test;
    const distill::sp_options opts;
    check_gradient_fd(opts, {dense::random({5, 7}, 1), dense::random({5, 3}, 2)});
    check_gradient_fd(opts, {dense::random({4, 2, 3, 2}, 3), dense::random({4, 5}, 4)});
    check_gradient_fd(opts, {dense::random({2, 6}, 5), dense::random({2, 6}, 6)});
}

TEST_CASE("sp: N = 1 gives 0; a zero row gets a large finite gradient; duplicate rows are fine") {
    using namespace feature_test;
    const distill::sp_options opts;
    const auto one = run_feature<double>(opts, {dense::random({1, 4}, 7), dense::random({1, 3}, 8)});
    REQUIRE(one.status.ok());
    CHECK(one.loss == 0.0);
    for (double g : one.grads[0]) CHECK(g == 0.0);

    dense student = dense::random({4, 5}, 9);
    for (index_t j = 0; j < 5; ++j) student.at(2, j) = 0;
    const auto zero = run_feature<double>(opts, {student, dense::random({4, 6}, 10)});
    REQUIRE(zero.status.ok());
    CHECK(std::isfinite(zero.loss));
    for (double g : zero.grads[0]) CHECK(std::isfinite(g));

    dense dup = dense::random({4, 5}, 11);
    for (index_t j = 0; j < 5; ++j) dup.at(1, j) = dup.at(0, j);
    check_gradient_fd(opts, {dup, dense::random({4, 3}, 12)});
}

TEST_CASE_TEMPLATE("sp: errors name the argument and write nothing", T, float, double) {
    using namespace feature_test;
    using distill::errc;
    const distill::basic_sp_options<T> opts;
    check_feature_error<T>(opts, {dense::random({3, 4}, 1), dense::random({2, 4}, 2)}, errc::shape_mismatch, "teacher",
                           {"[2, 4]", "[3, 4]"});
    check_feature_error<T>(opts, {dense::random({3}, 1), dense::random({3, 4}, 2)}, errc::bad_rank, "student", {"[3]"});
    check_feature_error<T>(opts, {dense({0, 4}, {}), dense({0, 4}, {})}, errc::empty_input, "student", {"[0, 4]"});
    check_feature_error<T>(opts, {dense::random({3, 4}, 1), dense{}}, errc::missing_argument, "teacher", {"teacher"});
}

TEST_CASE("sp: aliasing outputs and non-dense samples are rejected; knowledge outputs") {
    using namespace feature_test;
    std::vector<double> s = distill_test::random_values<double>(12, 1), t = distill_test::random_values<double>(6, 2);
    const distill::sp_options opts;
    distill::feature_args<double> args{distill::make_view(s.data(), 3, 4), distill::make_view(t.data(), 3, 2)};
    std::vector<double> loss(1), grad(12), ks(9), kt(9);
    // The gradient written over the student.
    distill::feature_outputs<double> bad{distill::make_view(loss.data(), 1), distill::make_view(s.data(), 3, 4)};
    distill_test::check_method_error("sp", distill::run(opts, args, bad), distill::errc::aliasing, distill::error_kind::usage,
                                     "grad_student", {"student"});
    // A transposed (column) view of a 4 x 3 buffer is a 3 x 4 matrix with strides {1, 3}: fine.
    const distill::index_t ext[] = {3, 4}, str[] = {1, 3};
    distill::feature_args<double> transposed{distill::any_view<const double>(s.data(), 2, ext, str), args.teacher};
    distill::feature_outputs<double> good{distill::make_view(loss.data(), 1), distill::make_view(grad.data(), 3, 4),
                                          {}, {}, distill::make_view(ks.data(), 3, 3), distill::make_view(kt.data(), 3, 3)};
    REQUIRE(distill::run(opts, transposed, good).ok() == false);  // no workspace given
    std::vector<double> scratch(distill::workspace_bytes(opts, transposed, good) / sizeof(double));
    REQUIRE(distill::run(opts, transposed, good, {scratch.data(), scratch.size() * sizeof(double)}).ok());
    for (std::size_t i = 0; i < 3; ++i) {  // rows of the similarity have unit norm
        const double sq = ks[3 * i] * ks[3 * i] + ks[3 * i + 1] * ks[3 * i + 1] + ks[3 * i + 2] * ks[3 * i + 2];
        CHECK(sq == doctest::Approx(1.0));
    }
    // A 4-D sample whose channel stride does not follow its spatial block cannot be flattened.
    std::vector<double> big(2 * 3 * 4 * 4);
    const distill::index_t e4[] = {2, 3, 2, 2}, s4[] = {48, 16, 4, 1};
    distill::feature_args<double> strided{distill::any_view<const double>(big.data(), 4, e4, s4), args.teacher};
    strided.teacher = distill::make_view(t.data(), 2, 3);
    distill::feature_outputs<double> only_loss{distill::make_view(loss.data(), 1)};
    distill_test::check_method_error("sp", distill::check(opts, strided, only_loss), distill::errc::unsupported_layout,
                                     distill::error_kind::usage, "student", {"[2, 3, 2, 2]"});
}

TEST_CASE("similarity extractor: forward and VJP against finite differences") {
    using namespace feature_test;
    const dense f = dense::random({4, 3}, 21), upstream = dense::random({4, 4}, 22);
    buffer<double> features(f), out({4, 4}, 0.0), grad({4, 3}, 0.0);
    const buffer<double> up(upstream);
    REQUIRE(distill::knowledge::similarity(features.view(), out.view()).ok());
    for (int i = 0; i < 4; ++i) {
        double sq = 0;
        for (int j = 0; j < 4; ++j) sq += out.data[static_cast<std::size_t>(i * 4 + j)] * out.data[static_cast<std::size_t>(i * 4 + j)];
        CHECK(sq == doctest::Approx(1.0));
    }
    std::vector<double> scratch(distill::knowledge::similarity_vjp_workspace_bytes<double>(4) / sizeof(double));
    REQUIRE(distill::knowledge::similarity_vjp(std::as_const(features).view(), up.view(), grad.view(),
                                               {scratch.data(), scratch.size() * sizeof(double)}).ok());
    const auto numeric = distill_test::numeric_gradient(
        [&](const std::vector<double>& v) {
            buffer<double> x(dense(f.shape, v)), s({4, 4}, 0.0);
            (void)distill::knowledge::similarity(std::as_const(x).view(), s.view());
            double dot = 0;
            for (std::size_t i = 0; i < 16; ++i) dot += s.data[i] * upstream.values[i];
            return dot;
        },
        f.values);
    for (std::size_t i = 0; i < numeric.size(); ++i) CHECK(grad.data[i] == doctest::Approx(numeric[i]).epsilon(1e-6));
}
