// tests/unit/kd_test.cpp: distill/losses/response/kd.hpp on the CPU backend.
//
// Values against an independent long-double reference, gradients against central
// finite differences, the properties of a KL divergence, layout independence, every
// error rule (code, kind, argument, message, nothing written), and the convenience layer.
#include "test_support.hpp"

#include <distill/eigen.hpp>

#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <vector>

using distill::errc;
using distill::error_kind;
using distill::index_t;
using distill::reduction;
using namespace distill_test;

namespace {

constexpr reduction all_reductions[] = {reduction::batchmean, reduction::sum, reduction::none};

reference_options reference_of(const distill::kd_options& o) {
    return {o.temperature, o.reduce, o.ignore_index, o.standardize};
}

/// Runs distill::run (kd) on the host problem and returns the outputs (requires success).
template <class T>
host_outputs<T> run_kd(const host_problem<T>& p, const distill::kd_options& opts, bool want_grad = true,
                       bool want_temperature = true) {
    host_outputs<T> out(opts.reduce, p.n, p.c);
    const distill::status s = distill::run(opts, p.args(), out.views(p.n, p.c, want_grad, want_temperature));
    INFO("message: ", s.message());
    REQUIRE(s.ok());
    return out;
}

}  // namespace

// The check and run steps on the CPU backend are noexcept (STYLE: validate, then run blindly).
static_assert(noexcept(distill::run(distill::kd_options{}, std::declval<const distill::response_args<float>&>(),
                                       std::declval<const distill::response_outputs<float>&>())));
static_assert(noexcept(distill::check(distill::kd_options{}, std::declval<const distill::response_args<double>&>(),
                                         std::declval<const distill::response_outputs<double>&>())));

// ------------------------------------------------------------------------------------------ values

TEST_CASE_TEMPLATE("kd: loss matches the long-double reference for every reduction and option", T, float, double) {
    for (bool standardize : {false, true})
        for (double temperature : {0.5, 1.0, 4.0, 20.0})
            for (reduction red : all_reductions)
                for (int extras = 0; extras < 2; ++extras) {
                    host_problem<T> p(6, 9, 11);
                    if (extras) p.with_labels({1, 4}).with_weight();
                    const distill::kd_options opts{temperature, red, -100, standardize};
                    CAPTURE(standardize);
                    CAPTURE(temperature);
                    INFO("reduction: ", std::string(distill::to_string(red)));
                    CAPTURE(extras);
                    const auto out = run_kd(p, opts);
                    const auto ref = p.reference(reference_of(opts));
                    // In float, log-probabilities of size ~log(C) carry absolute errors ~1e-7 while at
                    // T = 20 a row's KL is ~1e-3: the error of a row's T^2 KL grows like T^2, not like it.
                    const double row_atol = std::is_same_v<T, float> ? 4e-6 * temperature * temperature : 0.0;
                    if (red == reduction::none) {
                        REQUIRE(out.loss.size() == ref.rows.size());
                        for (std::size_t i = 0; i < ref.rows.size(); ++i)
                            DISTILL_CHECK_CLOSE(out.loss[i], static_cast<double>(ref.rows[i]), tolerance<T>(), row_atol);
                    } else {
                        DISTILL_CHECK_CLOSE(out.loss[0], static_cast<double>(ref.loss), tolerance<T>(),
                                            red == reduction::sum ? row_atol * static_cast<double>(p.n) : row_atol);
                    }
                    // Ignored rows contribute nothing, and are not NaN.
                    if (extras && red == reduction::none) {
                        CHECK(out.loss[1] == T(0));
                        CHECK(out.loss[4] == T(0));
                    }
                }
}

TEST_CASE_TEMPLATE("kd: large logits at a low temperature stay finite (log-space computation)", T, float, double) {
    host_problem<T> p(4, 7, 5, 1000.0);
    const distill::kd_options opts{0.5, reduction::none};
    const auto out = run_kd(p, opts);
    const auto ref = p.reference(reference_of(opts));
    for (std::size_t i = 0; i < out.loss.size(); ++i) {
        CHECK(std::isfinite(out.loss[i]));
        DISTILL_CHECK_CLOSE(out.loss[i], static_cast<double>(ref.rows[i]), tolerance<T>(), 0);
    }
    for (T g : out.grad) CHECK(std::isfinite(g));
    CHECK(std::isfinite(out.grad_temperature[0]));
}

TEST_CASE("kd: masked teacher entries (-inf) have probability 0 and add nothing") {
    // Teacher row [0, 1, -inf]: pt = softmax([0, 1]) on the first two entries, 0 on the third. With the
    // student [0, 1, -1], lt - ls = lse(student) - lse([0, 1]) on the first two entries.
    const std::vector<double> teacher = {0, 1, -std::numeric_limits<double>::infinity()};
    const std::vector<double> student = {0, 1, -1};
    double loss = -1, grad[3] = {-1, -1, -1}, grad_t = -1;
    const distill::status s = distill::run(
        distill::kd_options{}, distill::response_args<double>{distill::make_view(student.data(), 1, 3), distill::make_view(teacher.data(), 1, 3)},
        distill::response_outputs<double>{distill::make_view(&loss, 1), distill::make_view(grad, 1, 3), distill::make_view(&grad_t, 1)});
    REQUIRE(s.ok());
    const double e = std::exp(1.0);
    DISTILL_CHECK_CLOSE(loss, std::log1p(std::exp(-1.0) / (1.0 + e)), 1e-14, 0);
    // d/d student_c = ps_c - pt_c: the masked class gets the student's probability.
    const double z = 1.0 + e + std::exp(-1.0);
    DISTILL_CHECK_CLOSE(grad[0], 1.0 / z - 1.0 / (1.0 + e), 1e-13, 0);
    DISTILL_CHECK_CLOSE(grad[1], e / z - e / (1.0 + e), 1e-13, 0);
    DISTILL_CHECK_CLOSE(grad[2], std::exp(-1.0) / z, 1e-13, 0);
    CHECK(std::isfinite(grad_t));
}

// ------------------------------------------------------------------------------ finite differences

TEST_CASE("kd: gradients match central finite differences (double)") {
    // Every student logit and the temperature, for each reduction (none: of the sum), with weights,
    // ignored rows, and standardize on and off. Row 2 of the student and row 0 of the teacher are
    // nearly constant (std ~ 0.006), where the standardization's Jacobian is large.
    host_problem<double> base(4, 5, 21);
    base.with_labels({1}).with_weight();
    const auto near_constant = random_values<double>(5, 99, -0.01, 0.01);
    for (index_t k = 0; k < 5; ++k) {
        base.student[static_cast<std::size_t>(2 * 5 + k)] = 0.7 + near_constant[static_cast<std::size_t>(k)];
        base.teacher[static_cast<std::size_t>(k)] = -0.3 - near_constant[static_cast<std::size_t>(4 - k)];
    }

    auto objective = [](const host_problem<double>& p, const distill::kd_options& o) {
        host_outputs<double> out(o.reduce, p.n, p.c);
        const distill::status s = distill::run(o, p.args(), out.views(p.n, p.c, false, false));
        REQUIRE(s.ok());
        return out.total();
    };

    for (bool standardize : {false, true})
        for (double temperature : {0.5, 1.0, 4.0, 20.0})
            for (reduction red : all_reductions) {
                CAPTURE(standardize);
                CAPTURE(temperature);
                INFO("reduction: ", std::string(distill::to_string(red)));
                const distill::kd_options opts{temperature, red, -100, standardize};
                const auto analytic = run_kd(base, opts);

                // The loss itself carries rounding noise ~T^2 * 1e-16 (its log-probabilities cancel), which
                // the difference quotient divides by 2h ~ 2e-6: hence an absolute allowance growing like T^2.
                const double atol = 1e-8 + 1e-9 * temperature * temperature;
                host_problem<double> p = base;
                double largest_gradient = 0;
                for (std::size_t k = 0; k < p.student.size(); ++k) {
                    const double x = base.student[k];
                    const double h = 1e-6 * std::max(1.0, std::abs(x));
                    p.student[k] = x + h;
                    const double up = objective(p, opts);
                    p.student[k] = x - h;
                    const double down = objective(p, opts);
                    p.student[k] = x;
                    const double numeric = (up - down) / (2 * h);
                    CAPTURE(k);
                    DISTILL_CHECK_CLOSE(analytic.grad[k], numeric, 1e-5, atol);
                    largest_gradient = std::max(largest_gradient, std::abs(numeric));
                }
                // The comparison means something: the loss does depend on the student here.
                CHECK(largest_gradient > 1e-4);
                // Row 1 is ignored: its gradient is exactly zero.
                for (index_t k = 0; k < 5; ++k) CHECK(analytic.grad[static_cast<std::size_t>(5 + k)] == 0.0);

                const double h = 1e-6 * temperature;
                distill::kd_options up = opts, down = opts;
                up.temperature += h;
                down.temperature -= h;
                const double numeric_t = (objective(base, up) - objective(base, down)) / (2 * h);
                DISTILL_CHECK_CLOSE(analytic.grad_temperature[0], numeric_t, 1e-5, atol);
            }
}

// ------------------------------------------------------------------------------------- properties

TEST_CASE_TEMPLATE("kd: the divergence is positive for different distributions", T, float, double) {
    for (unsigned seed = 1; seed <= 20; ++seed)
        for (bool standardize : {false, true}) {
            host_problem<T> p(3, 4 + static_cast<index_t>(seed % 5), seed);
            const auto out = run_kd(p, {1.0 + seed % 4, reduction::none, -100, standardize});
            for (T row : out.loss) CHECK(row > T(0));
        }
}

TEST_CASE_TEMPLATE("kd: student equal to teacher gives zero loss and zero gradients", T, float, double) {
    for (bool standardize : {false, true})
        for (reduction red : all_reductions) {
            host_problem<T> p(5, 6, 3);
            p.teacher = p.student;
            p.with_weight();
            const auto out = run_kd(p, {4.0, red, -100, standardize});
            for (T v : out.loss) CHECK(std::abs(v) <= T(1e-6));
            for (T g : out.grad) CHECK(std::abs(g) <= T(1e-6));
            CHECK(std::abs(out.grad_temperature[0]) <= T(1e-6));
        }
}

TEST_CASE_TEMPLATE("kd: adding a constant to a row changes nothing", T, float, double) {
    for (bool standardize : {false, true}) {
        const distill::kd_options opts{2.0, reduction::none, -100, standardize};
        host_problem<T> p(4, 6, 8);
        const auto before = run_kd(p, opts);
        for (index_t k = 0; k < p.c; ++k) {
            p.student[static_cast<std::size_t>(1 * p.c + k)] += T(2.5);
            p.teacher[static_cast<std::size_t>(3 * p.c + k)] -= T(4);
        }
        const auto after = run_kd(p, opts);
        const double rtol = std::is_same_v<T, float> ? 1e-4 : 1e-10;
        for (std::size_t i = 0; i < before.loss.size(); ++i) DISTILL_CHECK_CLOSE(after.loss[i], before.loss[i], rtol, rtol);
        for (std::size_t i = 0; i < before.grad.size(); ++i) DISTILL_CHECK_CLOSE(after.grad[i], before.grad[i], rtol, rtol);
        DISTILL_CHECK_CLOSE(after.grad_temperature[0], before.grad_temperature[0], rtol, rtol);
    }
}

TEST_CASE_TEMPLATE("kd: batchmean with every row ignored is 0 with zero gradients, not NaN", T, float, double) {
    host_problem<T> p(3, 4, 9);
    p.with_labels({0, 1, 2}).with_weight();
    const auto out = run_kd(p, {1.5, reduction::batchmean});
    CHECK(out.loss[0] == T(0));
    for (T g : out.grad) CHECK(g == T(0));
    CHECK(out.grad_temperature[0] == T(0));

    SUBCASE("and with every weight zero") {
        host_problem<T> q(3, 4, 9);
        q.weight.assign(3, T(0));
        q.use_weight = true;
        const auto zero = run_kd(q, {1.5, reduction::batchmean});
        CHECK(zero.loss[0] == T(0));
        for (T g : zero.grad) CHECK(g == T(0));
        CHECK(zero.grad_temperature[0] == T(0));
    }
}

TEST_CASE_TEMPLATE("kd: reduction none sums to sum, and batchmean is sum over the total weight", T, float, double) {
    host_problem<T> p(7, 5, 13);
    p.with_labels({2}).with_weight();
    const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
    for (bool standardize : {false, true}) {
        const auto none = run_kd(p, {3.0, reduction::none, -100, standardize});
        const auto sum = run_kd(p, {3.0, reduction::sum, -100, standardize});
        const auto mean = run_kd(p, {3.0, reduction::batchmean, -100, standardize});
        DISTILL_CHECK_CLOSE(none.total(), sum.loss[0], rtol, 0);
        double total_weight = 0;
        for (index_t i = 0; i < p.n; ++i)
            if (i != 2) total_weight += p.weight[static_cast<std::size_t>(i)];
        DISTILL_CHECK_CLOSE(mean.loss[0] * total_weight, sum.loss[0], rtol, 0);
        // Gradients of the summed loss agree between none and sum, and scale by 1/sum(w) for batchmean.
        for (std::size_t k = 0; k < sum.grad.size(); ++k) {
            DISTILL_CHECK_CLOSE(none.grad[k], sum.grad[k], rtol, 1e-30);
            DISTILL_CHECK_CLOSE(mean.grad[k] * total_weight, sum.grad[k], rtol, 1e-6);
        }
        DISTILL_CHECK_CLOSE(none.grad_temperature[0], sum.grad_temperature[0], rtol, 0);
        DISTILL_CHECK_CLOSE(mean.grad_temperature[0] * total_weight, sum.grad_temperature[0], rtol, 0);
    }
}

TEST_CASE_TEMPLATE("kd: weights scale the loss and gradient of their row", T, float, double) {
    host_problem<T> plain(5, 4, 17);
    host_problem<T> weighted = plain;
    weighted.with_weight(5);
    weighted.weight[3] = T(0);  // zero is a valid weight
    const distill::kd_options opts{1.0, reduction::none};
    const auto a = run_kd(plain, opts), b = run_kd(weighted, opts);
    const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
    for (index_t i = 0; i < plain.n; ++i) {
        const double w = weighted.weight[static_cast<std::size_t>(i)];
        DISTILL_CHECK_CLOSE(b.loss[static_cast<std::size_t>(i)], w * a.loss[static_cast<std::size_t>(i)], rtol, 0);
        for (index_t k = 0; k < plain.c; ++k) {
            const auto at = static_cast<std::size_t>(i * plain.c + k);
            DISTILL_CHECK_CLOSE(b.grad[at], w * a.grad[at], rtol, 1e-30);
        }
    }
    CHECK(b.loss[3] == T(0));
}

TEST_CASE_TEMPLATE("kd: a custom ignore_index masks rows; other labels only have to be in range", T, float, double) {
    host_problem<T> p(4, 3, 31);
    p.with_labels({0, 3}, 7);
    const auto masked = run_kd(p, {1.0, reduction::none, 7});
    CHECK(masked.loss[0] == T(0));
    CHECK(masked.loss[3] == T(0));
    CHECK(masked.loss[1] > T(0));
    // With the default ignore_index, label 7 is out of range for C = 3.
    host_outputs<T> out(reduction::none, 4, 3);
    check_error(distill::run(distill::kd_options{1.0, reduction::none}, p.args(), out.views(4, 3)),
                errc::label_out_of_range, error_kind::value, "labels", {"labels[0] = 7", "[0, 3)"});
    CHECK(out.untouched());
}

TEST_CASE_TEMPLATE("kd: labels of any integer type (int32 through std::span)", T, float, double) {
    host_problem<T> p(3, 4, 41);
    p.with_labels({1});
    // Other values than p's labels, but the same ignored row: labels only mask rows in kd.
    const std::vector<int> labels32 = {2, -100, 3};
    const auto args = distill::make_response_args(distill::make_view(p.student.data(), 3, 4),
                                                  distill::make_view(p.teacher.data(), 3, 4),
                                                  std::span<const int>(labels32));
    static_assert(std::is_same_v<typename std::remove_cvref_t<decltype(args)>::label_type, int>);
    host_outputs<T> out(reduction::none, 3, 4);
    REQUIRE(distill::run(distill::kd_options{1.0, reduction::none}, args, out.views(3, 4)).ok());
    const auto expected = run_kd(p, {1.0, reduction::none});
    CHECK(out.loss == expected.loss);
    CHECK(out.grad == expected.grad);
}

TEST_CASE_TEMPLATE("kd: optional outputs can be left out and do not change the others", T, float, double) {
    host_problem<T> p(4, 5, 51);
    const distill::kd_options opts{2.0, reduction::sum, -100, true};
    const auto full = run_kd(p, opts);
    const auto loss_only = run_kd(p, opts, false, false);
    CHECK(loss_only.loss == full.loss);
    CHECK(loss_only.grad == std::vector<T>(full.grad.size(), host_outputs<T>::sentinel));
    CHECK(loss_only.grad_temperature[0] == host_outputs<T>::sentinel);
}

TEST_CASE("kd: kd_float_options gives the float results of kd_options") {
    host_problem<float> p(4, 6, 61);
    const distill::kd_float_options fopts{2.0f, reduction::sum, -100, true};
    host_outputs<float> out(reduction::sum, 4, 6);
    REQUIRE(distill::run(fopts, p.args(), out.views(4, 6)).ok());
    const auto expected = run_kd(p, {2.0, reduction::sum, -100, true});
    CHECK(out.loss == expected.loss);
    CHECK(out.grad == expected.grad);
    CHECK(out.grad_temperature == expected.grad_temperature);
}

// --------------------------------------------------------------------------------------- layouts

TEST_CASE_TEMPLATE("kd: column-major Eigen input gives the results of row-major input", T, float, double) {
    using row_major = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using col_major = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
    host_problem<T> p(6, 7, 71);
    p.labels = {0, 1, -100, 3, 4, 5};
    p.use_labels = true;
    const row_major rs = Eigen::Map<const row_major>(p.student.data(), 6, 7);
    const row_major rt = Eigen::Map<const row_major>(p.teacher.data(), 6, 7);
    const col_major cs = rs, ct = rt;
    const Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1> labels = Eigen::Map<const Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1>>(p.labels.data(), 6);
    const Eigen::Matrix<T, Eigen::Dynamic, 1> weight = Eigen::Matrix<T, Eigen::Dynamic, 1>::LinSpaced(6, T(0.5), T(2));
    p.weight.assign(weight.data(), weight.data() + 6);
    p.use_weight = true;

    for (bool standardize : {false, true})
        for (reduction red : all_reductions) {
            const distill::kd_options opts{2.0, red, -100, standardize};
            const auto a = distill::kd(rs, rt, labels, weight, opts);
            const auto b = distill::kd(cs, ct, labels, weight, opts);
            CHECK(same_value(a.loss, b.loss));
            CHECK(same_value(a.grad_temperature, b.grad_temperature));
            REQUIRE(a.grad_student.size() == 42);
            REQUIRE(b.grad_student.size() == 42);
            for (index_t i = 0; i < 6; ++i)
                for (index_t k = 0; k < 7; ++k) CHECK(same_value(a.grad_student(i, k), b.grad_student(i, k)));
            if (red == reduction::none)
                for (index_t i = 0; i < 6; ++i) CHECK(same_value(a.row_losses(i), b.row_losses(i)));
            // And the values are the reference's, not merely equal to each other.
            const auto ref = p.reference(reference_of(opts));
            DISTILL_CHECK_CLOSE(a.loss, static_cast<double>(ref.loss), tolerance<T>(), 0);
        }
}

TEST_CASE_TEMPLATE("kd: any strides work for inputs and outputs (negative, column-major, N x 1 loss)", T, float, double) {
    host_problem<T> p(4, 5, 81);
    const distill::kd_options opts{1.5, reduction::none, -100, true};
    const auto expected = run_kd(p, opts);

    // The student and teacher with their columns reversed through a negative stride, over reversed copies.
    std::vector<T> rs(p.student.size()), rt(p.teacher.size());
    for (index_t i = 0; i < 4; ++i)
        for (index_t k = 0; k < 5; ++k) {
            rs[static_cast<std::size_t>(i * 5 + (4 - k))] = p.student[static_cast<std::size_t>(i * 5 + k)];
            rt[static_cast<std::size_t>(i * 5 + (4 - k))] = p.teacher[static_cast<std::size_t>(i * 5 + k)];
        }
    const index_t ext[2] = {4, 5}, reversed[2] = {5, -1};
    distill::response_args<T> args{distill::any_view<const T>(rs.data() + 4, 2, ext, reversed),
                                   distill::any_view<const T>(rt.data() + 4, 2, ext, reversed)};

    // The gradient written column-major, the loss as an N x 1 matrix with a row stride of 3.
    std::vector<T> grad_cm(20, T(-1)), loss(12, T(-1));
    T grad_t = -1;
    const index_t col_major[2] = {1, 4}, loss_ext[2] = {4, 1}, loss_str[2] = {3, 1}, one = 1, unit = 1;
    const distill::response_outputs<T> outs{distill::any_view<T>(loss.data(), 2, loss_ext, loss_str),
                                            distill::any_view<T>(grad_cm.data(), 2, ext, col_major),
                                            distill::any_view<T>(&grad_t, 1, &one, &unit)};
    const distill::status s = distill::run(opts, args, outs);
    INFO(s.message());
    REQUIRE(s.ok());
    // Rounding-level agreement (layouts take different code paths, which FMA contraction may round
    // differently); gradient entries are compared at the scale of the largest one.
    const double rtol = std::is_same_v<T, float> ? 1e-6 : 1e-15;
    double grad_scale = 0;
    for (T g : expected.grad) grad_scale = std::max(grad_scale, std::abs(static_cast<double>(g)));
    for (index_t i = 0; i < 4; ++i) {
        DISTILL_CHECK_CLOSE(loss[static_cast<std::size_t>(3 * i)], expected.loss[static_cast<std::size_t>(i)], rtol, 0);
        for (index_t k = 0; k < 5; ++k)
            DISTILL_CHECK_CLOSE(grad_cm[static_cast<std::size_t>(k * 4 + i)], expected.grad[static_cast<std::size_t>(i * 5 + k)], rtol,
                                rtol * grad_scale);
    }
    // The gaps of the strided loss are not written.
    for (std::size_t j = 0; j < loss.size(); ++j)
        if (j % 3 != 0) CHECK(loss[j] == T(-1));
    // d/dT is a difference of sums whose terms are of order 1 here: in float the two layouts'
    // exps (the SIMD exp of the unit-stride path, 16 lanes with -march=native, against the strided
    // path's) may differ by an ulp, which that difference turns into a few 1e-7 absolute.
    DISTILL_CHECK_CLOSE(grad_t, expected.grad_temperature[0], 4 * rtol, 4 * rtol);
}

// ----------------------------------------------------------------------------------------- errors

namespace {

/// The input-side rule rejects these arguments: the check step, the run step (writing nothing) and
/// the convenience layer (throwing distill::error with the same status) all agree.
template <class T>
void check_rejected(const distill::kd_options& opts, const distill::response_args<T>& args, errc code,
                    error_kind kind, const char* argument, std::initializer_list<const char*> fragments) {
    host_outputs<T> out(3, 3, 5);
    const distill::response_outputs<T> views{distill::make_view(out.loss.data(), 1),
                                             distill::make_view(out.grad.data(), 3, 5),
                                             distill::make_view(out.grad_temperature.data(), 1)};
    const distill::status checked = distill::check(opts, args, views);
    check_error(checked, code, kind, argument, fragments);
    check_error(distill::check_args(distill::cpu_backend{}, opts, args), code, kind, argument, fragments);
    const distill::status ran = distill::run(opts, args, views);
    check_error(ran, code, kind, argument, fragments);
    CHECK(std::string(ran.message()) == checked.message());
    CHECK(out.untouched());

    bool thrown = false;
    try {
        (void)distill::kd(args.student, args.teacher, args.labels, args.weight, opts);
    } catch (const distill::error& e) {
        thrown = true;
        CHECK(static_cast<int>(e.status().code()) == static_cast<int>(code));
        CHECK(std::string(e.status().argument()) == argument);
        CHECK(std::string(e.what()) == ran.message());
    }
    CHECK_MESSAGE(thrown, "the convenience layer did not throw distill::error");
    CHECK_THROWS_AS((void)distill::kd(args.student, args.teacher, args.labels, args.weight, opts), std::invalid_argument);
}

/// An output rule rejects these outputs: check and run agree, and nothing is written.
template <class T>
void check_rejected_outputs(const distill::kd_options& opts, const distill::response_args<T>& args,
                            const distill::response_outputs<T>& views, const host_outputs<T>& out, errc code,
                            error_kind kind, const char* argument, std::initializer_list<const char*> fragments) {
    check_error(distill::check(opts, args, views), code, kind, argument, fragments);
    check_error(distill::run(opts, args, views), code, kind, argument, fragments);
    CHECK(out.untouched());
    // The same arguments are fine on their own.
    CHECK(distill::check_args(distill::cpu_backend{}, opts, args).ok());
}

}  // namespace

TEST_CASE_TEMPLATE("kd: shape errors name the argument and the sizes, and write nothing", T, float, double) {
    host_problem<T> p(3, 5, 91);
    p.with_labels().with_weight();
    const distill::kd_options opts{};
    auto args = p.args();

    SUBCASE("student of rank 1") {
        args.student = distill::make_view(p.student.data(), 15);
        check_rejected(opts, args, errc::bad_rank, error_kind::shape, "student", {"student", "2-D", "[15]"});
    }
    SUBCASE("student of rank 3") {
        args.student = distill::make_view(p.student.data(), 3, 5, 1);
        check_rejected(opts, args, errc::bad_rank, error_kind::shape, "student", {"student", "[3, 5, 1]"});
    }
    SUBCASE("student missing") {
        args.student = {};
        check_rejected(opts, args, errc::missing_argument, error_kind::shape, "student", {"student", "required"});
    }
    SUBCASE("teacher of another shape") {
        std::vector<T> wide(18, T(0));
        args.teacher = distill::make_view(wide.data(), 3, 6);
        check_rejected(opts, args, errc::shape_mismatch, error_kind::shape, "teacher", {"teacher", "[3, 6]", "[3, 5]"});
    }
    SUBCASE("teacher with another row count") {
        args.teacher = distill::make_view(p.teacher.data(), 2, 5);
        check_rejected(opts, args, errc::shape_mismatch, error_kind::shape, "teacher", {"teacher", "[2, 5]", "[3, 5]"});
    }
    SUBCASE("teacher of rank 1") {
        args.teacher = distill::make_view(p.teacher.data(), 15);
        check_rejected(opts, args, errc::shape_mismatch, error_kind::shape, "teacher", {"teacher", "[15]", "[3, 5]"});
    }
    SUBCASE("teacher missing") {
        args.teacher = {};
        check_rejected(opts, args, errc::missing_argument, error_kind::shape, "teacher", {"teacher", "required"});
    }
    SUBCASE("labels of the wrong length") {
        const std::vector<std::int64_t> four = {0, 1, 2, 3};
        args.labels = distill::make_view(four.data(), 4);
        check_rejected(opts, args, errc::shape_mismatch, error_kind::shape, "labels", {"labels", "[4]", "[3]"});
    }
    SUBCASE("labels as an N x 1 matrix") {
        args.labels = distill::make_view(p.labels.data(), 3, 1);
        check_rejected(opts, args, errc::shape_mismatch, error_kind::shape, "labels", {"labels", "[3, 1]", "[3]"});
    }
    SUBCASE("weight of the wrong length") {
        args.weight = distill::make_view(p.weight.data(), 2);
        check_rejected(opts, args, errc::shape_mismatch, error_kind::shape, "weight", {"weight", "[2]", "[3]"});
    }
    SUBCASE("no rows") {
        args.student = distill::make_view(p.student.data(), 0, 5);
        args.teacher = distill::make_view(p.teacher.data(), 0, 5);
        check_rejected(opts, args, errc::empty_input, error_kind::shape, "student", {"student", "[0, 5]"});
    }
    SUBCASE("no rows and no data") {
        args.student = distill::make_view(static_cast<const T*>(nullptr), 0, 5);
        args.teacher = distill::make_view(static_cast<const T*>(nullptr), 0, 5);
        check_rejected(opts, args, errc::empty_input, error_kind::shape, "student", {"student", "[0, 5]"});
    }
    SUBCASE("no classes") {
        args.student = distill::make_view(p.student.data(), 3, 0);
        args.teacher = distill::make_view(p.teacher.data(), 3, 0);
        check_rejected(opts, args, errc::empty_input, error_kind::shape, "student", {"student", "[3, 0]"});
    }
    SUBCASE("standardize with one class") {
        args.student = distill::make_view(p.student.data(), 3, 1);
        args.teacher = distill::make_view(p.teacher.data(), 3, 1);
        args.labels = {};
        distill::kd_options standardize = opts;
        standardize.standardize = true;
        check_rejected(standardize, args, errc::shape_mismatch, error_kind::shape, "student", {"student", "1", "2"});
        // Without standardize one class is fine (the loss is 0).
        host_outputs<T> out(1, 3, 1);
        CHECK(distill::run(opts, args, out.views(3, 1)).ok());
        CHECK(out.loss[0] == T(0));
    }
    SUBCASE("extents whose product overflows") {
        const index_t huge[2] = {index_t(1) << 40, index_t(1) << 40}, str[2] = {index_t(1) << 40, 1};
        args.student = distill::any_view<const T>(p.student.data(), 2, huge, str);
        check_rejected(opts, args, errc::size_overflow, error_kind::shape, "student", {"student", "[1099511627776, 1099511627776]"});
    }
}

TEST_CASE_TEMPLATE("kd: output errors name the output and the sizes, and write nothing", T, float, double) {
    host_problem<T> p(3, 5, 93);
    const auto args = p.args();

    SUBCASE("missing loss output") {
        host_outputs<T> out(reduction::batchmean, 3, 5);
        auto views = out.views(3, 5);
        views.loss = {};
        check_rejected_outputs(distill::kd_options{}, args, views, out, errc::missing_argument, error_kind::shape, "loss",
                               {"loss", "required"});
    }
    SUBCASE("loss of N values for batchmean") {
        host_outputs<T> out(3, 3, 5);
        check_rejected_outputs(distill::kd_options{}, args, out.views(3, 5), out, errc::shape_mismatch, error_kind::shape,
                               "loss", {"loss", "[3]", "1 value"});
    }
    SUBCASE("loss of one value for reduction none") {
        host_outputs<T> out(1, 3, 5);
        check_rejected_outputs(distill::kd_options{1.0, reduction::none}, args, out.views(3, 5), out, errc::shape_mismatch,
                               error_kind::shape, "loss", {"loss", "[1]", "3 values"});
    }
    SUBCASE("loss as a 3 x 3 matrix for reduction none") {
        host_outputs<T> out(9, 3, 5);
        auto views = out.views(3, 5);
        views.loss = distill::make_view(out.loss.data(), 3, 3);
        check_rejected_outputs(distill::kd_options{1.0, reduction::none}, args, views, out, errc::shape_mismatch,
                               error_kind::shape, "loss", {"loss", "[3, 3]", "3 values"});
    }
    SUBCASE("grad_student of the wrong shape") {
        host_outputs<T> out(reduction::batchmean, 3, 5);
        auto views = out.views(3, 5);
        views.grad_student = distill::make_view(out.grad.data(), 3, 4);
        check_rejected_outputs(distill::kd_options{}, args, views, out, errc::shape_mismatch, error_kind::shape,
                               "grad_student", {"grad_student", "[3, 4]", "[3, 5]"});
    }
    SUBCASE("grad_student with too few rows") {
        host_outputs<T> out(reduction::batchmean, 3, 5);
        auto views = out.views(3, 5);
        views.grad_student = distill::make_view(out.grad.data(), 2, 5);
        check_rejected_outputs(distill::kd_options{}, args, views, out, errc::shape_mismatch, error_kind::shape,
                               "grad_student", {"grad_student", "[2, 5]", "[3, 5]"});
    }
    SUBCASE("grad_student flat") {
        host_outputs<T> out(reduction::batchmean, 3, 5);
        auto views = out.views(3, 5);
        views.grad_student = distill::make_view(out.grad.data(), 15);
        check_rejected_outputs(distill::kd_options{}, args, views, out, errc::shape_mismatch, error_kind::shape,
                               "grad_student", {"grad_student", "[15]", "[3, 5]"});
    }
    SUBCASE("grad_temperature of two values") {
        host_outputs<T> out(reduction::batchmean, 3, 5);
        out.grad_temperature.assign(2, host_outputs<T>::sentinel);
        auto views = out.views(3, 5);
        views.grad_temperature = distill::make_view(out.grad_temperature.data(), 2);
        check_rejected_outputs(distill::kd_options{}, args, views, out, errc::shape_mismatch, error_kind::shape,
                               "grad_temperature", {"grad_temperature", "[2]", "1 value"});
    }
    SUBCASE("loss view with extents but no data") {
        host_outputs<T> out(reduction::batchmean, 3, 5);
        auto views = out.views(3, 5);
        views.loss = distill::make_view(static_cast<T*>(nullptr), 1);
        check_rejected_outputs(distill::kd_options{}, args, views, out, errc::missing_argument, error_kind::shape, "loss",
                               {"loss", "no data"});
    }
}

TEST_CASE_TEMPLATE("kd: value errors name the argument and the value, and write nothing", T, float, double) {
    host_problem<T> p(3, 5, 95);
    p.with_labels().with_weight();
    auto args = p.args();
    distill::kd_options opts{};

    SUBCASE("temperature 0") {
        opts.temperature = 0;
        check_rejected(opts, args, errc::invalid_parameter, error_kind::value, "temperature", {"temperature = 0"});
    }
    SUBCASE("negative temperature") {
        opts.temperature = -1;
        check_rejected(opts, args, errc::invalid_parameter, error_kind::value, "temperature", {"temperature = -1"});
    }
    SUBCASE("nan temperature") {
        opts.temperature = std::numeric_limits<double>::quiet_NaN();
        check_rejected(opts, args, errc::invalid_parameter, error_kind::value, "temperature", {"temperature = nan"});
    }
    SUBCASE("infinite temperature") {
        opts.temperature = std::numeric_limits<double>::infinity();
        check_rejected(opts, args, errc::invalid_parameter, error_kind::value, "temperature", {"temperature = inf"});
    }
    SUBCASE("unknown reduction enumerator") {
        opts.reduce = static_cast<reduction>(7);
        check_rejected(opts, args, errc::unknown_reduction, error_kind::value, "reduction", {"reduction", "7"});
    }
    SUBCASE("label equal to C") {
        p.labels[1] = 5;
        check_rejected(opts, args, errc::label_out_of_range, error_kind::value, "labels", {"labels[1] = 5", "[0, 5)"});
    }
    SUBCASE("negative label that is not ignore_index") {
        p.labels[2] = -1;
        check_rejected(opts, args, errc::label_out_of_range, error_kind::value, "labels", {"labels[2] = -1", "-100"});
    }
    SUBCASE("the first bad label is the one reported") {
        p.labels[0] = -7;
        p.labels[2] = 99;
        check_rejected(opts, args, errc::label_out_of_range, error_kind::value, "labels", {"labels[0] = -7"});
    }
    SUBCASE("negative weight") {
        p.weight[2] = T(-0.5);
        check_rejected(opts, args, errc::invalid_weight, error_kind::value, "weight", {"weight[2] = -5"});
    }
    SUBCASE("nan weight") {
        p.weight[1] = std::numeric_limits<T>::quiet_NaN();
        check_rejected(opts, args, errc::invalid_weight, error_kind::value, "weight", {"weight[1] = nan"});
    }
    SUBCASE("infinite weight") {
        p.weight[0] = std::numeric_limits<T>::infinity();
        check_rejected(opts, args, errc::invalid_weight, error_kind::value, "weight", {"weight[0] = inf"});
    }
}

TEST_CASE_TEMPLATE("kd: outputs that overlap an input or each other are usage errors", T, float, double) {
    host_problem<T> p(3, 5, 97);
    p.with_weight();
    const auto student_before = p.student;
    const auto weight_before = p.weight;
    const distill::kd_options opts{};

    SUBCASE("grad_student is the student") {
        host_outputs<T> out(reduction::batchmean, 3, 5);
        auto views = out.views(3, 5);
        views.grad_student = distill::make_view(p.student.data(), 3, 5);
        check_rejected_outputs(opts, p.args(), views, out, errc::aliasing, error_kind::usage, "grad_student",
                               {"grad_student", "student"});
        CHECK(p.student == student_before);
    }
    SUBCASE("loss inside the gradient") {
        host_outputs<T> out(reduction::batchmean, 3, 5);
        auto views = out.views(3, 5);
        views.loss = distill::make_view(out.grad.data() + 7, 1);
        check_rejected_outputs(opts, p.args(), views, out, errc::aliasing, error_kind::usage, "loss",
                               {"loss", "grad_student"});
    }
    SUBCASE("loss in the last element of the teacher") {
        host_outputs<T> out(reduction::batchmean, 3, 5);
        auto views = out.views(3, 5);
        views.loss = distill::make_view(p.teacher.data() + 14, 1);
        check_rejected_outputs(opts, p.args(), views, out, errc::aliasing, error_kind::usage, "loss", {"loss", "teacher"});
    }
    SUBCASE("grad_temperature on a weight") {
        host_outputs<T> out(reduction::batchmean, 3, 5);
        auto views = out.views(3, 5);
        views.grad_temperature = distill::make_view(p.weight.data() + 2, 1);
        check_rejected_outputs(opts, p.args(), views, out, errc::aliasing, error_kind::usage, "grad_temperature",
                               {"grad_temperature", "weight"});
        CHECK(p.weight == weight_before);
    }
    SUBCASE("gradient over a student read with a negative stride") {
        // Columns reversed: the student view starts at element 4 and walks left, so it covers
        // elements [0, 15) of the buffer; a gradient starting at element 14 overlaps it by one element.
        std::vector<T> shared(30, T(0));
        std::copy(p.student.begin(), p.student.end(), shared.begin());
        const index_t ext[2] = {3, 5}, reversed[2] = {5, -1};
        auto args = p.args();
        args.student = distill::any_view<const T>(shared.data() + 4, 2, ext, reversed);
        host_outputs<T> out(reduction::batchmean, 3, 5);
        auto views = out.views(3, 5);
        views.grad_student = distill::make_view(shared.data() + 14, 3, 5);
        check_rejected_outputs(opts, args, views, out, errc::aliasing, error_kind::usage, "grad_student",
                               {"grad_student", "student"});
        CHECK(std::equal(p.student.begin(), p.student.end(), shared.begin()));
        // One element further on, they are disjoint.
        views.grad_student = distill::make_view(shared.data() + 15, 3, 5);
        CHECK(distill::run(opts, args, views).ok());
    }
    SUBCASE("adjacent but disjoint buffers are not aliases") {
        std::vector<T> both(16 + 15, T(0));
        std::copy(p.student.begin(), p.student.end(), both.begin());
        auto args = p.args();
        args.student = distill::make_view(both.data(), 3, 5);
        distill::response_outputs<T> views{distill::make_view(both.data() + 15, 1), distill::make_view(both.data() + 16, 3, 5)};
        CHECK(distill::run(opts, args, views).ok());
    }
}

TEST_CASE("kd: the convenience layer returns what distill::run computes") {
    host_problem<double> p(5, 6, 101);
    p.with_labels({3}).with_weight();
    for (reduction red : all_reductions) {
        const distill::kd_options opts{2.0, red, -100, true};
        const auto expected = run_kd(p, opts);
        const auto r = distill::kd(distill::make_view(p.student.data(), 5, 6), distill::make_view(p.teacher.data(), 5, 6),
                                   std::span<const std::int64_t>(p.labels), std::span<const double>(p.weight), opts);
        CHECK(r.status.ok());
        CHECK(r.loss == doctest::Approx(expected.total()).epsilon(1e-14));
        CHECK(r.grad_temperature == expected.grad_temperature[0]);
        REQUIRE(r.grad_student.rank() == 2);
        CHECK(r.grad_student.extent(0) == 5);
        CHECK(r.grad_student.extent(1) == 6);
        CHECK(std::vector<double>(r.grad_student.data(), r.grad_student.data() + 30) == expected.grad);
        if (red == reduction::none) {
            REQUIRE(r.row_losses.size() == 5);
            CHECK(std::vector<double>(r.row_losses.data(), r.row_losses.data() + 5) == expected.loss);
        } else {
            CHECK(r.row_losses.size() == 0);
            CHECK(r.loss == expected.loss[0]);
        }
    }
    // The shorter overloads: (student, teacher, opts) and (student, teacher, labels, opts).
    const auto s = distill::make_view(p.student.data(), 5, 6), t = distill::make_view(p.teacher.data(), 5, 6);
    host_problem<double> plain = p;
    plain.use_labels = plain.use_weight = false;
    CHECK(distill::kd(s, t).loss == run_kd(plain, {}).loss[0]);
    host_problem<double> labelled = p;
    labelled.use_weight = false;
    CHECK(distill::kd(s, t, std::span<const std::int64_t>(p.labels), distill::kd_options{3.0}).loss ==
          run_kd(labelled, {3.0}).loss[0]);
}
