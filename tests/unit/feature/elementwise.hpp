// tests/unit/feature/elementwise.hpp: the element-wise family (hint, ab, vid) and the element-wise
// building blocks (element_ref, smooth-L1, softplus / sigmoid) on the CPU backend; included by
// feature_methods_test.cpp.
#pragma once

#include "../feature_support.hpp"

#include <array>

namespace elementwise_test {

using feature_test::dense;
using feature_test::feature_inputs;
using distill::index_t;

/// The loss of hint from its definition, in long double.
inline long double hint_reference(distill::hint_distance distance, double beta, const dense& s, const dense& t) {
    const index_t n = s.rows(), d = s.row_size();
    long double total = 0;
    if (distance == distill::hint_distance::cosine) {
        for (index_t i = 0; i < n; ++i) {
            long double ss = 0, tt = 0, st = 0;
            for (index_t j = 0; j < d; ++j) {
                const long double a = s.values[static_cast<std::size_t>(i * d + j)], b = t.values[static_cast<std::size_t>(i * d + j)];
                ss += a * a;
                tt += b * b;
                st += a * b;
            }
            total += 1 - st / std::max(std::sqrt(ss), 1e-8L) / std::max(std::sqrt(tt), 1e-8L);
        }
        return total / n;
    }
    for (std::size_t i = 0; i < s.values.size(); ++i) {
        const long double x = static_cast<long double>(s.values[i]) - t.values[i], a = std::abs(x);
        switch (distance) {
            case distill::hint_distance::mse: total += x * x; break;
            case distill::hint_distance::l1: total += a; break;
            default: total += a < beta ? 0.5L * x * x / beta : a - 0.5L * beta; break;
        }
    }
    return total / static_cast<long double>(s.values.size());
}

/// The loss of ab from its definition, in long double.
inline long double ab_reference(double margin, const std::vector<dense>& s, const std::vector<dense>& t) {
    const std::size_t layers = s.size();
    long double total = 0;
    for (std::size_t i = 0; i < layers; ++i) {
        long double sum = 0;
        for (std::size_t k = 0; k < s[i].values.size(); ++k) {
            const long double x = s[i].values[k];
            const long double gap = t[i].values[k] > 0 ? margin - x : margin + x;
            if (gap > 0) sum += gap * gap;
        }
        total += std::ldexp(1.0L, static_cast<int>(i) - static_cast<int>(layers) + 1) * 3.0L / 1000.0L * sum / s[i].rows();
    }
    return total;
}

/// The loss of vid from its definition, in long double (C = dim 1).
inline long double vid_reference(double eps, const dense& s, const dense& t, const dense& alpha) {
    const index_t c = s.shape[1], inner = s.size() / (s.rows() * c);
    long double total = 0;
    for (index_t i = 0; i < s.size(); ++i) {
        const long double a = alpha.values[static_cast<std::size_t>((i / inner) % c)];
        const long double var = std::log1p(std::exp(a)) + eps;
        const long double d = static_cast<long double>(s.values[static_cast<std::size_t>(i)]) - t.values[static_cast<std::size_t>(i)];
        total += 0.5L * (d * d / var + std::log(var));
    }
    return total / s.size();
}

inline bool close_to(double got, long double want, double rtol) {
    return std::abs(static_cast<long double>(got) - want) <= rtol * std::max(1.0L, std::abs(want));
}

}  // namespace elementwise_test

// ---------------------------------------------------------------- building blocks

TEST_CASE("element-wise helpers: smooth-L1, softplus and sigmoid values and derivatives") {
    using namespace distill::detail;
    for (double beta : {0.0, 0.5, 1.0, 2.0}) {
        CAPTURE(beta);
        for (double d : {-3.0, -1.2, -0.7, -0.3, -1e-3, 0.2, 0.45, 0.8, 1.7, 4.0}) {
            CAPTURE(d);
            const double a = std::abs(d);
            CHECK(smooth_l1_value(d, beta) == doctest::Approx(a < beta ? 0.5 * d * d / beta : a - 0.5 * beta));
            const double h = 1e-6;
            const double numeric = (smooth_l1_value(d + h, beta) - smooth_l1_value(d - h, beta)) / (2 * h);
            CHECK(smooth_l1_derivative(d, beta) == doctest::Approx(numeric).epsilon(1e-6));
        }
        // The kink at 0 has derivative 0; at |d| = beta the two branches meet (value and slope).
        CHECK(smooth_l1_derivative(0.0, beta) == 0.0);
        CHECK(smooth_l1_value(0.0, beta) == 0.0);
        if (beta > 0) {
            CHECK(smooth_l1_value(beta, beta) == doctest::Approx(0.5 * beta));
            CHECK(smooth_l1_derivative(beta, beta) == 1.0);
            CHECK(smooth_l1_derivative(std::nextafter(beta, 0.0), beta) == doctest::Approx(1.0));
        }
    }
    CHECK(sign_or_zero(0.0) == 0.0);
    CHECK(sign_or_zero(-2.0f) == -1.0f);
    CHECK(relu(-0.0) == 0.0);

    for (double x : {-40.0, -30.0, -9.0, -1.0, 0.0, 0.5, 3.0, 30.0}) {
        CAPTURE(x);
        const long double exact = std::log1p(std::exp(static_cast<long double>(x)));
        CHECK(std::abs(softplus(x) - exact) <= 1e-15L * exact);
        const double h = 1e-5 * std::max(1.0, std::abs(x));
        CHECK(sigmoid(x) == doctest::Approx((softplus(x + h) - softplus(x - h)) / (2 * h)).epsilon(1e-7));
        CHECK(sigmoid(x) == doctest::Approx(1.0 / (1.0 + std::exp(-x))).epsilon(1e-14));
    }
    // No overflow at either end, in both precisions.
    CHECK(softplus(800.0) == 800.0);
    CHECK(softplus(-800.0) == 0.0);
    CHECK(sigmoid(800.0) == 1.0);
    CHECK(sigmoid(-800.0) == 0.0);
    CHECK(softplus(100.0f) == 100.0f);
    CHECK(softplus(-30.0f) == doctest::Approx(9.357622968840175e-14).epsilon(1e-6));
    CHECK(std::isfinite(sigmoid(-200.0f)));
    CHECK(sigmoid(-30.0f) == doctest::Approx(9.357622968840175e-14).epsilon(1e-6));
}

TEST_CASE("element_ref: row-major logical order for every layout") {
    using distill::index_t;
    std::vector<double> storage(400);
    for (std::size_t i = 0; i < storage.size(); ++i) storage[i] = static_cast<double>(i);
    // (extents, strides) -> element i must be the element at the row-major multi-index of i.
    auto check_layout = [&](std::vector<index_t> extents, std::vector<index_t> strides, int merged_rank) {
        CAPTURE(merged_rank);
        const distill::any_view<const double> view(storage.data(), static_cast<int>(extents.size()), extents.data(), strides.data());
        const auto ref = distill::detail::to_element_ref(view);
        CHECK(ref.rank == merged_rank);
        index_t count = 1;
        for (index_t e : extents) count *= e;
        for (index_t i = 0; i < count; ++i) {
            index_t rest = i, offset = 0;
            for (std::size_t r = extents.size(); r-- > 0;) {
                offset += (rest % extents[r]) * strides[r];
                rest /= extents[r];
            }
            CHECK(&ref[i] == storage.data() + offset);
        }
    };
    check_layout({2, 3, 4, 5}, {60, 20, 5, 1}, 1);     // dense row-major: one stride
    check_layout({4, 6}, {1, 4}, 2);                   // column-major (Eigen default)
    check_layout({2, 3, 2, 2}, {48, 16, 4, 1}, 3);     // gaps after each spatial row and each channel
    check_layout({3, 1, 4, 1}, {4, 99, 1, 77}, 1);     // extent-1 dimensions are ignored
    check_layout({2, 3, 4}, {1, 2, 6}, 3);             // fully transposed 3-D
    check_layout({1, 1}, {5, 5}, 1);                   // one element
    check_layout({3, 4}, {8, 2}, 1);                   // every other element, one stride
    CHECK_FALSE(distill::detail::to_element_ref(distill::any_view<double>{}).present());
}

// ---------------------------------------------------------------- hint

TEST_CASE("hint: gradients match finite differences for every distance (2-D, 3-D, 4-D)") {
    using namespace feature_test;
    for (auto distance : {distill::hint_distance::mse, distill::hint_distance::l1, distill::hint_distance::smooth_l1,
                          distill::hint_distance::cosine}) {
        for (double beta : {1.0, 0.0, 0.5, 2.5}) {
            if (distance != distill::hint_distance::smooth_l1 && beta != 1.0) continue;
            CAPTURE(distill::to_string(distance));
            CAPTURE(beta);
            const distill::hint_options opts{distance, beta};
            check_gradient_fd(opts, {dense::random({4, 7}, 1), dense::random({4, 7}, 2)});
            check_gradient_fd(opts, {dense::random({2, 3, 5}, 3), dense::random({2, 3, 5}, 4)});
            check_gradient_fd(opts, {dense::random({3, 2, 3, 2}, 5), dense::random({3, 2, 3, 2}, 6)});
            check_gradient_fd(opts, {dense::random({1, 6}, 7), dense::random({1, 6}, 8)});  // N = 1
        }
    }
}

TEST_CASE_TEMPLATE("hint: the loss matches its definition", T, float, double) {
    using namespace feature_test;
    using namespace elementwise_test;
    const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
    const dense s = dense::random({5, 2, 3, 3}, 11), t = dense::random({5, 2, 3, 3}, 12);
    for (auto distance : {distill::hint_distance::mse, distill::hint_distance::l1, distill::hint_distance::smooth_l1,
                          distill::hint_distance::cosine}) {
        for (double beta : {0.0, 0.7, 1.0}) {
            CAPTURE(distill::to_string(distance));
            CAPTURE(beta);
            const distill::basic_hint_options<T> opts{distance, static_cast<T>(beta)};
            const auto r = run_feature<T>(opts, {s, t});
            REQUIRE(r.status.ok());
            CHECK(close_to(r.loss, hint_reference(distance, static_cast<T>(beta), s, t), rtol));
        }
    }
}

TEST_CASE("hint: ties, zero rows and equal inputs") {
    using namespace feature_test;
    // l1 and smooth_l1 with beta = 0 at d = 0: the subgradient 0.
    dense s = dense::random({2, 4}, 21), t = s;
    t.values[1] += 0.5;
    t.values[6] -= 0.25;
    for (auto opts : {distill::hint_options{distill::hint_distance::l1, 1.0}, distill::hint_options{distill::hint_distance::smooth_l1, 0.0}}) {
        const auto r = run_feature<double>(opts, {s, t});
        REQUIRE(r.status.ok());
        CHECK(r.loss == doctest::Approx(0.75 / 8));
        for (std::size_t i = 0; i < 8; ++i)
            CHECK(r.grads[0][i] == (i == 1 ? -1.0 / 8 : i == 6 ? 1.0 / 8 : 0.0));  // d = s - t
    }
    // Equal inputs: loss 0 and gradient 0 for the element distances, ~0 for cosine.
    for (auto distance : {distill::hint_distance::mse, distill::hint_distance::l1, distill::hint_distance::smooth_l1}) {
        const auto r = run_feature<double>(distill::hint_options{distance, 1.0}, {s, s});
        CHECK(r.loss == 0.0);
        for (double g : r.grads[0]) CHECK(g == 0.0);
    }
    const auto same = run_feature<double>(distill::hint_options{distill::hint_distance::cosine, 1.0}, {s, s});
    CHECK(std::abs(same.loss) < 1e-15);
    for (double g : same.grads[0]) CHECK(std::abs(g) < 1e-15);

    // cosine with a zero student row: the clamp is active, gradient -v / (N 1e-8), finite.
    dense zs = dense::random({3, 5}, 22);
    const dense zt = dense::random({3, 5}, 23);
    for (index_t j = 0; j < 5; ++j) zs.at(1, j) = 0;
    const distill::hint_options cosine{distill::hint_distance::cosine, 1.0};
    const auto zero = run_feature<double>(cosine, {zs, zt});
    REQUIRE(zero.status.ok());
    CHECK(zero.loss == doctest::Approx(static_cast<double>(elementwise_test::hint_reference(cosine.distance, 1.0, zs, zt))));
    double norm_t = 0;
    for (index_t j = 0; j < 5; ++j) norm_t += zt.values[static_cast<std::size_t>(5 + j)] * zt.values[static_cast<std::size_t>(5 + j)];
    norm_t = std::sqrt(norm_t);
    for (index_t j = 0; j < 5; ++j)
        CHECK(zero.grads[0][static_cast<std::size_t>(5 + j)] ==
              doctest::Approx(-zt.values[static_cast<std::size_t>(5 + j)] / norm_t / (3 * 1e-8)));
    // a zero teacher row: its term is 1 and its gradient 0.
    dense tz = zt;
    for (index_t j = 0; j < 5; ++j) tz.at(2, j) = 0;
    const auto zero_teacher = run_feature<double>(cosine, {dense::random({3, 5}, 24), tz});
    for (index_t j = 0; j < 5; ++j) CHECK(zero_teacher.grads[0][static_cast<std::size_t>(10 + j)] == 0.0);
    // duplicate rows are independent rows: the finite differences still agree.
    dense dup = dense::random({3, 4}, 25);
    for (index_t j = 0; j < 4; ++j) dup.at(2, j) = dup.at(0, j);
    check_gradient_fd(cosine, {dup, dense::random({3, 4}, 26)});
    check_gradient_fd(distill::hint_options{}, {dup, dup});
}

TEST_CASE("hint: parse_hint_distance") {
    for (auto d : {distill::hint_distance::mse, distill::hint_distance::l1, distill::hint_distance::smooth_l1,
                   distill::hint_distance::cosine}) {
        distill::hint_distance parsed = distill::hint_distance::mse;
        CHECK(distill::parse_hint_distance(distill::to_string(d), parsed).ok());
        CHECK(parsed == d);
    }
    distill::hint_distance untouched = distill::hint_distance::l1;
    for (const char* word : {"huber", "MSE", "", "cosine ", static_cast<const char*>(nullptr)}) {
        const distill::status s = distill::parse_hint_distance(word, untouched);
        distill_test::check_method_error("hint", s, distill::errc::invalid_parameter, distill::error_kind::value, "distance",
                                         {"distance", "smooth_l1"});
        CHECK(untouched == distill::hint_distance::l1);
    }
}

TEST_CASE_TEMPLATE("hint: errors name the argument and write nothing", T, float, double) {
    using namespace feature_test;
    using distill::errc;
    using O = distill::basic_hint_options<T>;
    const dense s = dense::random({3, 4}, 1), t = dense::random({3, 4}, 2);
    const T inf = std::numeric_limits<T>::infinity(), nan = std::numeric_limits<T>::quiet_NaN();
    check_feature_error<T>(O{static_cast<distill::hint_distance>(7), 1}, {s, t}, errc::invalid_parameter, "distance", {"7"});
    check_feature_error<T>(O{distill::hint_distance::mse, -0.5}, {s, t}, errc::invalid_parameter, "beta", {"beta = -5.00000e-1", ">= 0"});
    check_feature_error<T>(O{distill::hint_distance::smooth_l1, inf}, {s, t}, errc::invalid_parameter, "beta", {"inf"});
    check_feature_error<T>(O{distill::hint_distance::cosine, nan}, {s, t}, errc::invalid_parameter, "beta", {"nan"});
    check_feature_error<T>(O{}, {s, dense::random({3, 5}, 3)}, errc::shape_mismatch, "teacher", {"[3, 5]", "[3, 4]"});
    check_feature_error<T>(O{}, {dense::random({3, 2, 2}, 4), s}, errc::shape_mismatch, "teacher", {"[3, 2, 2]", "[3, 4]"});
    check_feature_error<T>(O{}, {s, dense::random({2, 4}, 3)}, errc::shape_mismatch, "teacher", {"[2, 4]"});
    check_feature_error<T>(O{}, {dense::random({4}, 5), dense::random({4}, 6)}, errc::bad_rank, "student", {"[4]"});
    check_feature_error<T>(O{}, {dense({0, 4}, {}), dense({0, 4}, {})}, errc::empty_input, "student", {"[0, 4]"});
    check_feature_error<T>(O{}, {s, dense{}}, errc::missing_argument, "teacher", {"teacher"});
    check_feature_error<T>(O{}, {s, t, dense::random({4}, 7)}, errc::shape_mismatch, "alpha", {"alpha"});
    check_feature_error<T>(O{}, feature_inputs::layers({s}, {t}), errc::shape_mismatch, "student_layers", {"layers"});
}

TEST_CASE("hint, ab, vid: any strides give the layout-independent result") {
    using namespace feature_test;
    // A 2 x 3 x 2 x 2 sample set stored with gaps between channels (strides 48, 16, 4, 1; not
    // flattenable to rows), a column-major student for 2-D, and a gapped gradient output.
    const dense s = dense::random({2, 3, 2, 2}, 31), t = dense::random({2, 3, 2, 2}, 32);
    const std::vector<index_t> extents = {2, 3, 2, 2}, gapped = {48, 16, 4, 1};
    auto scatter = [&](const dense& d) {
        std::vector<double> out(96, std::numeric_limits<double>::quiet_NaN());
        for (index_t i = 0; i < 24; ++i) {
            const index_t n = i / 12, c = (i / 4) % 3, y = (i / 2) % 2, x = i % 2;
            out[static_cast<std::size_t>(n * 48 + c * 16 + y * 4 + x)] = d.values[static_cast<std::size_t>(i)];
        }
        return out;
    };
    auto gather = [&](const std::vector<double>& g) {
        std::vector<double> out(24);
        for (index_t i = 0; i < 24; ++i) {
            const index_t n = i / 12, c = (i / 4) % 3, y = (i / 2) % 2, x = i % 2;
            out[static_cast<std::size_t>(i)] = g[static_cast<std::size_t>(n * 48 + c * 16 + y * 4 + x)];
        }
        return out;
    };
    const std::vector<double> ss = scatter(s), ts = scatter(t);
    const distill::any_view<const double> sv(ss.data(), 4, extents.data(), gapped.data()), tv(ts.data(), 4, extents.data(), gapped.data());
    std::vector<double> loss(1), grad(96, std::numeric_limits<double>::quiet_NaN()), grad_alpha(3);

    for (auto distance : {distill::hint_distance::mse, distill::hint_distance::smooth_l1, distill::hint_distance::cosine}) {
        const distill::hint_options opts{distance, 0.5};
        const auto dense_result = run_feature<double>(opts, {s, t});
        distill::feature_args<double> args{sv, tv};
        // hint's grad_student must be flattenable (the pair driver's rule): a dense one here.
        std::vector<double> g(24);
        distill::feature_outputs<double> outs{distill::make_view(loss.data(), 1),
                                              distill::any_view<double>(g.data(), 4, extents.data(), strides_of(extents).data())};
        REQUIRE(distill::run(opts, args, outs).ok());
        CHECK(distill_test::same_value(loss[0], dense_result.loss));
        for (std::size_t i = 0; i < 24; ++i) CHECK(distill_test::same_value(g[i], dense_result.grads[0][i], 1.0));
    }
    {
        const distill::vid_options opts;
        const dense alpha = dense::random({3}, 33);
        const auto dense_result = run_feature<double>(opts, {s, t, alpha});
        std::vector<double> scratch(100);
        distill::feature_args<double> args{sv, tv};
        args.alpha = distill::make_view(alpha.values.data(), 3);
        std::vector<double> g(24);
        distill::feature_outputs<double> outs{distill::make_view(loss.data(), 1),
                                              distill::any_view<double>(g.data(), 4, extents.data(), strides_of(extents).data())};
        outs.grad_alpha = distill::make_view(grad_alpha.data(), 3);
        REQUIRE(distill::run(opts, args, outs, {scratch.data(), scratch.size() * sizeof(double)}).ok());
        CHECK(distill_test::same_value(loss[0], dense_result.loss));
        for (std::size_t i = 0; i < 24; ++i) CHECK(distill_test::same_value(g[i], dense_result.grads[0][i], 1e-3));
        for (std::size_t c = 0; c < 3; ++c) CHECK(distill_test::same_value(grad_alpha[c], dense_result.grads[1][c], 1e-3));
    }
    {
        // ab: gapped inputs AND a gapped gradient output (the layers form accepts any strides).
        const distill::ab_options opts{0.5};
        const auto dense_result = run_feature<double>(opts, feature_inputs::layers({s}, {t}));
        const distill::any_view<const double> students[] = {sv}, teachers[] = {tv};
        distill::feature_args<double> args;
        args.student_layers = students;
        args.teacher_layers = teachers;
        const distill::any_view<double> grads[] = {distill::any_view<double>(grad.data(), 4, extents.data(), gapped.data())};
        distill::feature_outputs<double> outs{distill::make_view(loss.data(), 1)};
        outs.grad_student_layers = grads;
        REQUIRE(distill::run(opts, args, outs).ok());
        CHECK(distill_test::same_value(loss[0], dense_result.loss));
        const std::vector<double> g = gather(grad);
        for (std::size_t i = 0; i < 24; ++i) CHECK(distill_test::same_value(g[i], dense_result.grads[0][i], 1e-3));
        std::size_t gaps_untouched = 0;
        for (double x : grad) gaps_untouched += std::isnan(x);
        CHECK(gaps_untouched == 96 - 24);
    }
    {
        // A column-major (Eigen default) 2-D student against a row-major teacher.
        const dense s2 = dense::random({4, 6}, 34), t2 = dense::random({4, 6}, 35);
        std::vector<double> col(24);
        for (index_t i = 0; i < 4; ++i)
            for (index_t j = 0; j < 6; ++j) col[static_cast<std::size_t>(j * 4 + i)] = s2.values[static_cast<std::size_t>(i * 6 + j)];
        const index_t ext[] = {4, 6}, str[] = {1, 4};
        const distill::hint_options opts{distill::hint_distance::l1, 1.0};
        const auto dense_result = run_feature<double>(opts, {s2, t2});
        distill::feature_args<double> args{distill::any_view<const double>(col.data(), 2, ext, str),
                                           distill::make_view(t2.values.data(), 4, 6)};
        std::vector<double> g(24);
        distill::feature_outputs<double> outs{distill::make_view(loss.data(), 1), distill::any_view<double>(g.data(), 2, ext, str)};
        REQUIRE(distill::run(opts, args, outs).ok());
        CHECK(loss[0] == doctest::Approx(dense_result.loss).epsilon(1e-15));
        for (index_t i = 0; i < 4; ++i)
            for (index_t j = 0; j < 6; ++j)
                CHECK(g[static_cast<std::size_t>(j * 4 + i)] == dense_result.grads[0][static_cast<std::size_t>(i * 6 + j)]);
    }
}

// ---------------------------------------------------------------- ab

TEST_CASE("ab: gradients match finite differences (1 to 3 layers, 2-D to 4-D, every margin)") {
    using namespace feature_test;
    for (double margin : {1.0, 0.0, 0.5, 2.0}) {
        CAPTURE(margin);
        const distill::ab_options opts{margin};
        check_gradient_fd(opts, feature_inputs::layers({dense::random({4, 6}, 1)}, {dense::random({4, 6}, 2)}));
        check_gradient_fd(opts, feature_inputs::layers({dense::random({2, 2, 2, 3}, 3), dense::random({2, 5}, 4)},
                                                       {dense::random({2, 2, 2, 3}, 5), dense::random({2, 5}, 6)}));
        check_gradient_fd(opts, feature_inputs::layers(
                                    {dense::random({1, 3, 2, 2}, 7), dense::random({1, 2, 3}, 8), dense::random({1, 4}, 9)},
                                    {dense::random({1, 3, 2, 2}, 10), dense::random({1, 2, 3}, 11), dense::random({1, 4}, 12)}));
    }
}

TEST_CASE_TEMPLATE("ab: the loss and its layer weights match the definition", T, float, double) {
    using namespace feature_test;
    using namespace elementwise_test;
    const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
    const std::vector<dense> s = {dense::random({3, 2, 4}, 41), dense::random({3, 5}, 42), dense::random({3, 2, 2, 2}, 43)};
    const std::vector<dense> t = {dense::random({3, 2, 4}, 44), dense::random({3, 5}, 45), dense::random({3, 2, 2, 2}, 46)};
    for (double margin : {0.0, 1.0, 3.0}) {
        const distill::basic_ab_options<T> opts{static_cast<T>(margin)};
        const auto r = run_feature<T>(opts, feature_inputs::layers(s, t));
        REQUIRE(r.status.ok());
        CHECK(close_to(r.loss, ab_reference(margin, s, t), rtol));
        // Each layer alone: the last layer weighs 3 / (1000 N).
        const auto last = run_feature<T>(opts, feature_inputs::layers({s[2]}, {t[2]}));
        CHECK(close_to(last.loss, ab_reference(margin, {s[2]}, {t[2]}), rtol));
    }
}

TEST_CASE("ab: the teacher's sign picks the branch; t = 0 is inactive; s = +-m has gradient 0") {
    using namespace feature_test;
    const double m = 0.5;
    // teacher > 0: e = relu(m - s)^2; teacher <= 0 (including 0): e = relu(m + s)^2.
    const dense s({1, 6}, {0.5, 0.1, 2.0, -0.5, 0.3, -2.0});
    const dense t({1, 6}, {1.0, 1.0, 1.0, 0.0, -1.0, 0.0});
    const auto r = run_feature<double>(distill::ab_options{m}, feature_inputs::layers({s}, {t}));
    REQUIRE(r.status.ok());
    const double w = 3.0 / 1000.0;
    const std::array<double, 6> gaps = {0.0, 0.4, 0.0, 0.0, 0.8, 0.0};
    const std::array<double, 6> signs = {-1, -1, -1, 1, 1, 1};
    double loss = 0;
    for (double g : gaps) loss += g * g;
    CHECK(r.loss == doctest::Approx(w * loss));
    for (std::size_t i = 0; i < 6; ++i) CHECK(r.grads[0][i] == doctest::Approx(w * 2 * signs[i] * gaps[i]));
    CHECK(r.grads[0][0] == 0.0);  // s = m with an active teacher
    CHECK(r.grads[0][3] == 0.0);  // s = -m with an inactive (zero) teacher
}

TEST_CASE("ab: unbound gradient entries are skipped") {
    using namespace feature_test;
    const dense s0 = dense::random({2, 3}, 51), s1 = dense::random({2, 4}, 52), t0 = dense::random({2, 3}, 53), t1 = dense::random({2, 4}, 54);
    const auto full = run_feature<double>(distill::ab_options{}, feature_inputs::layers({s0, s1}, {t0, t1}));
    buffer<double> b0(s0), b1(s1), c0(t0), c1(t1), g1({2, 4}, std::numeric_limits<double>::quiet_NaN());
    const distill::any_view<const double> students[] = {std::as_const(b0).view(), std::as_const(b1).view()};
    const distill::any_view<const double> teachers[] = {std::as_const(c0).view(), std::as_const(c1).view()};
    distill::feature_args<double> args;
    args.student_layers = students;
    args.teacher_layers = teachers;
    std::vector<double> loss(1);
    const distill::any_view<double> grads[] = {distill::any_view<double>{}, g1.view()};
    distill::feature_outputs<double> outs{distill::make_view(loss.data(), 1)};
    outs.grad_student_layers = grads;
    REQUIRE(distill::run(distill::ab_options{}, args, outs).ok());
    CHECK(loss[0] == full.loss);
    for (std::size_t i = 0; i < 8; ++i) CHECK(g1.data[i] == full.grads[1][i]);
}

TEST_CASE_TEMPLATE("ab: errors name the argument and write nothing", T, float, double) {
    using namespace feature_test;
    using distill::errc;
    using O = distill::basic_ab_options<T>;
    const dense s = dense::random({3, 4}, 1), t = dense::random({3, 4}, 2);
    check_feature_error<T>(O{T(-1)}, feature_inputs::layers({s}, {t}), errc::invalid_parameter, "margin", {"margin = -1.00000", ">= 0"});
    check_feature_error<T>(O{std::numeric_limits<T>::infinity()}, feature_inputs::layers({s}, {t}), errc::invalid_parameter,
                           "margin", {"inf"});
    check_feature_error<T>(O{}, {s, t}, errc::shape_mismatch, "student", {"layers"});
    check_feature_error<T>(O{}, feature_inputs::layers({}, {}), errc::missing_argument, "student_layers", {"layer"});
    check_feature_error<T>(O{}, feature_inputs::layers({s, s}, {t}), errc::shape_mismatch, "teacher_layers", {"1 layers", "2"});
    check_feature_error<T>(O{}, feature_inputs::layers({s, dense::random({3}, 3)}, {t, dense::random({3}, 4)}), errc::bad_rank,
                           "student_layers", {"student_layers[1]", "[3]"});
    check_feature_error<T>(O{}, feature_inputs::layers({s}, {dense::random({3, 2, 2}, 5)}), errc::shape_mismatch,
                           "teacher_layers", {"teacher_layers[0]", "[3, 2, 2]", "[3, 4]"});
    check_feature_error<T>(O{}, feature_inputs::layers({s, dense::random({2, 4}, 6)}, {t, dense::random({2, 4}, 7)}),
                           errc::shape_mismatch, "student_layers", {"student_layers[1]", "[2, 4]", "N = 3"});
    check_feature_error<T>(O{}, feature_inputs::layers({dense({0, 4}, {})}, {dense({0, 4}, {})}), errc::empty_input,
                           "student_layers", {"[0, 4]"});
    check_feature_error<T>(O{}, feature_inputs::layers({s}, {dense{}}), errc::missing_argument, "teacher_layers",
                           {"teacher_layers[0]"});
}

// ---------------------------------------------------------------- vid

TEST_CASE("vid: gradients (student and alpha) match finite differences") {
    using namespace feature_test;
    for (double eps : {1e-5, 0.0, 1e-3, 0.5}) {
        CAPTURE(eps);
        const distill::vid_options opts{eps};
        check_gradient_fd(opts, {dense::random({4, 3}, 1), dense::random({4, 3}, 2), dense::random({3}, 3)});
        check_gradient_fd(opts, {dense::random({2, 3, 4}, 4), dense::random({2, 3, 4}, 5), dense::random({3}, 6)});
        check_gradient_fd(opts, {dense::random({2, 2, 3, 2}, 7), dense::random({2, 2, 3, 2}, 8), dense::random({2}, 9)});
        check_gradient_fd(opts, {dense::random({1, 5}, 10), dense::random({1, 5}, 11), dense::random({5}, 12)});  // N = 1
        check_gradient_fd(opts, {dense::random({3, 1, 2}, 13), dense::random({3, 1, 2}, 14), dense::random({1}, 15)});  // C = 1
    }
    // Large and very negative alpha (the stable softplus); RepDistiller's default initial variance 5.
    const double init = std::log(std::exp(5.0 - 1e-5) - 1.0);
    check_gradient_fd(distill::vid_options{}, {dense::random({2, 4}, 16), dense::random({2, 4}, 17),
                                               dense({4}, {-12.0, 25.0, init, 0.0})},
                      1e-6, 1e-9, 1e-7);
}

TEST_CASE_TEMPLATE("vid: the loss matches its definition", T, float, double) {
    using namespace feature_test;
    using namespace elementwise_test;
    const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
    const dense s = dense::random({3, 4, 2, 3}, 61), t = dense::random({3, 4, 2, 3}, 62), alpha = dense::random({4}, 63);
    for (double eps : {0.0, 1e-5, 0.1}) {
        const auto r = run_feature<T>(distill::basic_vid_options<T>{static_cast<T>(eps)}, {s, t, alpha});
        REQUIRE(r.status.ok());
        CHECK(close_to(r.loss, vid_reference(static_cast<T>(eps), s, t, alpha), rtol));
    }
}

TEST_CASE_TEMPLATE("vid: extreme alpha stays finite and exact", T, float, double) {
    using namespace feature_test;
    const dense s = dense::random({2, 4}, 71), t = dense::random({2, 4}, 72);
    // softplus(800) = 800 (log(1 + e^800) overflows); softplus(-30) ~ 9.36e-14 with eps = 0.
    const auto r = run_feature<T>(distill::basic_vid_options<T>{0}, {s, t, dense({4}, {-30.0, 30.0, 80.0, 0.0})});
    REQUIRE(r.status.ok());
    CHECK(std::isfinite(r.loss));
    for (const auto& g : r.grads)
        for (double x : g) CHECK(std::isfinite(x));
    // d/dmu = (mu - t) / (M sigma^2): channel 0's variance is softplus(-30).
    const double var0 = std::exp(-30.0);
    CHECK(r.grads[0][0] == doctest::Approx((s.values[0] - t.values[0]) / (8 * var0)).epsilon(1e-5));
    // Equal inputs: only the log term is left, and d/dalpha = (0.5 / C) sigmoid(alpha) / sigma^2.
    const auto same = run_feature<T>(distill::basic_vid_options<T>{0}, {s, s, dense({4}, {-2.0, 0.0, 1.0, 3.0})});
    for (double g : same.grads[0]) CHECK(g == 0.0);
    for (std::size_t c = 0; c < 4; ++c) {
        const double a = std::array<double, 4>{-2.0, 0.0, 1.0, 3.0}[c];
        CHECK(same.grads[1][c] == doctest::Approx(0.5 / 4 / (1 + std::exp(-a)) / std::log1p(std::exp(a))).epsilon(1e-5));
    }
}

TEST_CASE_TEMPLATE("vid: errors name the argument and write nothing", T, float, double) {
    using namespace feature_test;
    using distill::errc;
    using O = distill::basic_vid_options<T>;
    const dense s = dense::random({2, 4}, 1), t = dense::random({2, 4}, 2), alpha = dense::random({4}, 3);
    check_feature_error<T>(O{T(-1e-3)}, {s, t, alpha}, errc::invalid_parameter, "eps", {"eps = -1.00000e-3", ">= 0"});
    check_feature_error<T>(O{std::numeric_limits<T>::quiet_NaN()}, {s, t, alpha}, errc::invalid_parameter, "eps", {"nan"});
    check_feature_error<T>(O{}, {s, t, dense::random({1, 4}, 4)}, errc::bad_rank, "alpha", {"alpha", "[1, 4]"});
    check_feature_error<T>(O{}, {s, t, dense::random({3}, 5)}, errc::shape_mismatch, "alpha", {"[3]", "[4]", "[2, 4]"});
    check_feature_error<T>(O{}, {s, t}, errc::missing_argument, "alpha", {"alpha"});
    check_feature_error<T>(O{}, {s, dense{}, alpha}, errc::missing_argument, "teacher", {"teacher"});
    check_feature_error<T>(O{}, {s, dense::random({2, 2, 2}, 6), alpha}, errc::shape_mismatch, "teacher", {"[2, 2, 2]", "[2, 4]"});
    check_feature_error<T>(O{}, {dense::random({4}, 7), dense::random({4}, 8), alpha}, errc::bad_rank, "student", {"[4]"});
    check_feature_error<T>(O{}, {dense({0, 4}, {}), dense({0, 4}, {}), alpha}, errc::empty_input, "student", {"[0, 4]"});
}

// ---------------------------------------------------------------- convenience objects

TEST_CASE("hint, ab, vid: the convenience objects allocate and agree with run") {
    using namespace feature_test;
    const dense s = dense::random({3, 5}, 81), t = dense::random({3, 5}, 82), alpha = dense::random({5}, 83);
    const Eigen::MatrixXd es = Eigen::Map<const Eigen::Matrix<double, 3, 5, Eigen::RowMajor>>(s.values.data());
    const Eigen::MatrixXd et = Eigen::Map<const Eigen::Matrix<double, 3, 5, Eigen::RowMajor>>(t.values.data());
    const Eigen::VectorXd ea = Eigen::Map<const Eigen::VectorXd>(alpha.values.data(), 5);

    const distill::hint_options cosine{distill::hint_distance::cosine, 1.0};
    const auto h = distill::hint(es, et, cosine);
    const auto hr = run_feature<double>(cosine, {s, t});
    CHECK(h.loss == doctest::Approx(hr.loss).epsilon(1e-15));
    CHECK(h.grad_student.extent(0) == 3);

    const auto v = distill::vid(es, et, ea);
    const auto vr = run_feature<double>(distill::vid_options{}, {s, t, alpha});
    CHECK(v.loss == doctest::Approx(vr.loss).epsilon(1e-15));
    CHECK(v.grad_alpha.extent(0) == 5);

    const std::vector<Eigen::MatrixXd> students = {es, es.leftCols(2)}, teachers = {et, et.leftCols(2)};
    const auto a = distill::ab(students, teachers, distill::ab_options{0.5});
    CHECK(a.grad_student_layers.size() == 2);
    CHECK(std::isfinite(a.loss));
#if DISTILL_HAS_EXCEPTIONS
    CHECK_THROWS_AS(distill::vid(es, et, Eigen::VectorXd(Eigen::VectorXd::Zero(4))), distill::error);
    CHECK_THROWS_AS(distill::ab(students, std::vector<Eigen::MatrixXd>{et}), distill::error);
#endif
}
