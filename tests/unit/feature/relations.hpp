// tests/unit/feature/relations.hpp: the relation methods rkd, pkt, cc, cc_repdistiller and the
// distance / angle / cosine-kernel extractors on the CPU backend; included by
// feature_methods_test.cpp.
//
// Values are checked against plain loops written here from METHODS-feature.md (independent of
// the library's GEMM-based paths), gradients against central finite differences.
#pragma once

#include "../feature_support.hpp"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

namespace relations_test {

using feature_test::dense;
using feature_test::feature_inputs;
using distill::index_t;

/// Rows of a dense tensor as vectors (row-major flattening).
inline std::vector<std::vector<double>> rows_of(const dense& d) {
    std::vector<std::vector<double>> rows(static_cast<std::size_t>(d.rows()));
    for (index_t i = 0; i < d.rows(); ++i)
        rows[static_cast<std::size_t>(i)].assign(d.values.begin() + i * d.row_size(), d.values.begin() + (i + 1) * d.row_size());
    return rows;
}

inline double huber(double d) { return std::abs(d) < 1 ? 0.5 * d * d : std::abs(d) - 0.5; }

/// psi_D from the definition (differences formed directly).
inline std::vector<double> reference_psi_distance(const dense& x) {
    const auto e = rows_of(x);
    const std::size_t n = e.size();
    std::vector<double> d(n * n, 0.0);
    double total = 0;
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j) {
            if (i == j) continue;
            double sq = 0;
            for (std::size_t k = 0; k < e[i].size(); ++k) sq += (e[j][k] - e[i][k]) * (e[j][k] - e[i][k]);
            d[i * n + j] = std::sqrt(std::max(sq, 1e-12));
            total += d[i * n + j];
        }
    const double mu = total / static_cast<double>(n * (n - 1));
    for (double& v : d) v /= mu;
    return d;
}

/// psi_A[i, j, k] from the definition.
inline std::vector<double> reference_angles(const dense& x) {
    const auto e = rows_of(x);
    const std::size_t n = e.size(), dim = e[0].size();
    std::vector<double> u(n * n * dim, 0.0), out(n * n * n, 0.0);
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j) {
            double sq = 0;
            for (std::size_t k = 0; k < dim; ++k) sq += (e[j][k] - e[i][k]) * (e[j][k] - e[i][k]);
            const double norm = std::max(std::sqrt(sq), 1e-12);
            for (std::size_t k = 0; k < dim; ++k) u[(i * n + j) * dim + k] = (e[j][k] - e[i][k]) / norm;
        }
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j)
            for (std::size_t k = 0; k < n; ++k) {
                double dot = 0;
                for (std::size_t c = 0; c < dim; ++c) dot += u[(i * n + j) * dim + c] * u[(i * n + k) * dim + c];
                out[(i * n + j) * n + k] = dot;
            }
    return out;
}

inline double reference_rkd(const dense& s, const dense& t, double wd, double wa) {
    const auto ds = reference_psi_distance(s), dt = reference_psi_distance(t);
    const auto as = reference_angles(s), at = reference_angles(t);
    const double n = static_cast<double>(s.rows());
    double ld = 0, la = 0;
    for (std::size_t i = 0; i < ds.size(); ++i) ld += huber(ds[i] - dt[i]);
    for (std::size_t i = 0; i < as.size(); ++i) la += huber(as[i] - at[i]);
    return wd * ld / (n * n) + wa * la / (n * n * n);
}

/// The cosine matrix of the rows scaled by 1/(||f|| + eps) (additive) or 1/max(||f||, 1e-12).
inline std::vector<double> reference_cosine(const dense& x, double eps, bool additive) {
    auto e = rows_of(x);
    for (auto& r : e) {
        double sq = 0;
        for (double v : r) sq += v * v;
        const double norm = std::sqrt(sq);
        const double scale = additive ? 1 / (norm + eps) : 1 / std::max(norm, 1e-12);
        for (double& v : r) v *= scale;
    }
    const std::size_t n = e.size();
    std::vector<double> out(n * n);
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < n; ++j) {
            double dot = 0;
            for (std::size_t k = 0; k < e[i].size(); ++k) dot += e[i][k] * e[j][k];
            out[i * n + j] = dot;
        }
    return out;
}

inline std::vector<double> reference_pkt_probabilities(const dense& x, double eps) {
    auto p = reference_cosine(x, eps, true);
    const std::size_t n = static_cast<std::size_t>(x.rows());
    for (std::size_t i = 0; i < n; ++i) {
        double sum = 0;
        for (std::size_t j = 0; j < n; ++j) sum += (p[i * n + j] = (p[i * n + j] + 1) / 2);
        for (std::size_t j = 0; j < n; ++j) p[i * n + j] /= sum;
    }
    return p;
}

inline double reference_pkt(const dense& s, const dense& t, double eps) {
    const auto ps = reference_pkt_probabilities(s, eps), pt = reference_pkt_probabilities(t, eps);
    double sum = 0;
    for (std::size_t i = 0; i < ps.size(); ++i) sum += pt[i] * std::log((pt[i] + eps) / (ps[i] + eps));
    return sum / static_cast<double>(ps.size());
}

inline std::vector<double> reference_cc_kernel(const dense& x, double gamma, int order) {
    auto c = reference_cosine(x, 0, false);
    for (double& v : c) {
        double sum = 0, factorial = 1;
        for (int p = 0; p <= order; ++p) {
            if (p > 0) factorial *= p;
            sum += std::exp(-2 * gamma) * std::pow(2 * gamma, p) / factorial * std::pow(v, p);
        }
        v = sum;
    }
    return c;
}

inline double reference_cc(const dense& s, const dense& t, double gamma, int order) {
    const auto cs = reference_cc_kernel(s, gamma, order), ct = reference_cc_kernel(t, gamma, order);
    double sum = 0;
    for (std::size_t i = 0; i < cs.size(); ++i) sum += (cs[i] - ct[i]) * (cs[i] - ct[i]);
    return sum / static_cast<double>(cs.size());
}

inline double reference_cc_repdistiller(const dense& s, const dense& t) {
    const index_t n = s.rows(), d = s.row_size();
    double sum = 0;
    for (index_t i = 0; i + 1 < n; ++i)
        for (index_t k = 0; k < d; ++k)
            sum += std::abs(s.values[static_cast<std::size_t>(i * d + k)] - t.values[static_cast<std::size_t>(i * d + k)]) *
                   std::abs(s.values[static_cast<std::size_t>((i + 1) * d + k)] - t.values[static_cast<std::size_t>((i + 1) * d + k)]);
    return sum / static_cast<double>(n - 1);
}

/// One CPU call in double with the knowledge outputs requested.
struct knowledge_run {
    distill::status status;
    double loss = 0;
    std::vector<double> grad, knowledge_student, knowledge_teacher;
};
template <class Options>
knowledge_run run_with_knowledge(const Options& opts, const dense& s, const dense& t) {
    feature_test::buffer<double> sb(s), tb(t), grad(s.shape, 0.0), loss(std::vector<index_t>{}, 0.0);
    const index_t n = s.rows();
    feature_test::buffer<double> ks({n, n}, 0.0), kt({n, n}, 0.0);
    distill::feature_args<double> args{std::as_const(sb).view(), std::as_const(tb).view()};
    distill::feature_outputs<double> outs{loss.view(), grad.view(), {}, {}, ks.view(), kt.view()};
    std::vector<double> scratch(distill::workspace_bytes(opts, args, outs) / sizeof(double) + 1);
    knowledge_run r;
    r.status = distill::run(opts, args, outs, {scratch.data(), scratch.size() * sizeof(double)});
    r.loss = loss.data[0];
    r.grad = grad.data;
    r.knowledge_student = ks.data;
    r.knowledge_teacher = kt.data;
    return r;
}

/// An extractor's VJP against finite differences of <upstream, forward(x)>.
template <class Forward, class Vjp>
void check_extractor_vjp(const dense& features, std::size_t out_size, unsigned seed, Forward&& forward, Vjp&& vjp,
                         double rtol = 1e-6) {
    const std::vector<double> upstream = distill_test::random_values<double>(out_size, seed);
    const std::vector<double> analytic = vjp(features, upstream);
    const std::vector<double> numeric = distill_test::numeric_gradient(
        [&](const std::vector<double>& v) {
            const std::vector<double> out = forward(dense(features.shape, v));
            double dot = 0;
            for (std::size_t i = 0; i < out.size(); ++i) dot += out[i] * upstream[i];
            return dot;
        },
        features.values);
    REQUIRE(analytic.size() == numeric.size());
    double largest = 1;
    for (double g : numeric) largest = std::max(largest, std::abs(g));
    for (std::size_t i = 0; i < numeric.size(); ++i) {
        CAPTURE(i);
        CHECK(std::abs(analytic[i] - numeric[i]) <= rtol * largest);
    }
}

inline dense with_duplicate(dense d, index_t from, index_t to) {
    for (index_t j = 0; j < d.row_size(); ++j) d.at(to, j) = d.at(from, j);
    return d;
}
inline dense with_zero_row(dense d, index_t row) {
    for (index_t j = 0; j < d.row_size(); ++j) d.at(row, j) = 0;
    return d;
}

}  // namespace relations_test

// ------------------------------------------------------------------------------------------ rkd

TEST_CASE("rkd: loss matches the definition; gradient matches finite differences (2-D, 4-D, every weight variant)") {
    using namespace feature_test;
    using relations_test::reference_rkd;
    const dense s2 = dense::random({6, 5}, 1), t2 = dense::random({6, 3}, 2);
    const dense s4 = dense::random({5, 2, 2, 3}, 3), t4 = dense::random({5, 7}, 4);
    const distill::rkd_options defaults, paper{1, 2}, distance_only{25, 0}, angle_only{0, 50};
    for (const auto& opts : {defaults, paper, distance_only, angle_only}) {
        CAPTURE(opts.distance_weight);
        CAPTURE(opts.angle_weight);
        const auto r = run_feature<double>(opts, {s2, t2});
        REQUIRE(r.status.ok());
        CHECK(r.loss == doctest::Approx(reference_rkd(s2, t2, opts.distance_weight, opts.angle_weight)).epsilon(1e-12));
        check_gradient_fd(opts, {s2, t2});
        check_gradient_fd(opts, {s4, t4});
    }
    // N = 2: every angle is 0 or 1 and psi_D = [[0, 1], [1, 0]], so the loss is 0 for any input.
    const auto two = run_feature<double>(defaults, {dense::random({2, 4}, 5), dense::random({2, 6}, 6)});
    REQUIRE(two.status.ok());
    CHECK(two.loss == doctest::Approx(0.0).scale(1.0));
    check_gradient_fd(distill::rkd_options{}, {dense::random({3, 4}, 7), dense::random({3, 2}, 8)});
}

TEST_CASE("rkd: duplicate rows are exact (D = 1e-6, u = 0), the gradient is large but finite; weights 0") {
    using namespace feature_test;
    using namespace relations_test;
    const dense s = with_duplicate(dense::random({5, 4}, 11), 0, 3), t = dense::random({5, 6}, 12);
    const auto r = run_with_knowledge(distill::rkd_options{}, s, t);
    REQUIRE(r.status.ok());
    CHECK(std::isfinite(r.loss));
    CHECK(r.loss == doctest::Approx(reference_rkd(s, t, 25, 50)).epsilon(1e-12));
    const auto psi = reference_psi_distance(s);
    for (std::size_t i = 0; i < psi.size(); ++i) CHECK(r.knowledge_student[i] == doctest::Approx(psi[i]).epsilon(1e-13));
    // The duplicate pair sits exactly on the clamp: its psi is the smallest off-diagonal value,
    // and the diagonal is exactly 0.
    CHECK(r.knowledge_student[0 * 5 + 3] == r.knowledge_student[3 * 5 + 0]);
    for (index_t i = 0; i < 5; ++i) CHECK(r.knowledge_student[static_cast<std::size_t>(i * 6)] == 0.0);
    double largest = 0;
    for (double g : r.grad) {
        CHECK(std::isfinite(g));
        largest = std::max(largest, std::abs(g));
    }
    CHECK(largest > 1e9);  // the angle term's 1/eps path
    // Without the angle term the duplicate pair passes no gradient at all: finite differences hold
    // on the rows that are not duplicated (moving a duplicated row leaves the clamp).
    const auto dist = run_feature<double>(distill::rkd_options{25, 0}, {s, t});
    REQUIRE(dist.status.ok());
    for (double g : dist.grads[0]) CHECK(std::abs(g) < 1e3);

    // Every row equal: every D is the clamp, psi_D = 1 off the diagonal, every u = 0.
    dense same({4, 3}, std::vector<double>(12, 0.5));
    const auto all = run_with_knowledge(distill::rkd_options{}, same, dense::random({4, 3}, 13));
    REQUIRE(all.status.ok());
    CHECK(std::isfinite(all.loss));
    for (index_t i = 0; i < 4; ++i)
        for (index_t j = 0; j < 4; ++j)
            CHECK(all.knowledge_student[static_cast<std::size_t>(i * 4 + j)] == doctest::Approx(i == j ? 0.0 : 1.0).epsilon(1e-15));
    for (double g : all.grad) CHECK(std::isfinite(g));

    // A teacher duplicate is a constant: the student's gradient stays finite and matches FD.
    check_gradient_fd(distill::rkd_options{}, {dense::random({4, 3}, 14), with_duplicate(dense::random({4, 5}, 15), 1, 2)});

    const auto zero = run_feature<double>(distill::rkd_options{0, 0}, {s, t});
    REQUIRE(zero.status.ok());
    CHECK(zero.loss == 0.0);
    for (double g : zero.grads[0]) CHECK(g == 0.0);
}

TEST_CASE("rkd: psi_D has mean 1 off the diagonal; knowledge of both networks") {
    using namespace relations_test;
    const dense s = dense::random({6, 4}, 21), t = dense::random({6, 9}, 22);
    const auto r = run_with_knowledge(distill::rkd_options{}, s, t);
    REQUIRE(r.status.ok());
    double mean_s = 0, mean_t = 0;
    for (double v : r.knowledge_student) mean_s += v;
    for (double v : r.knowledge_teacher) mean_t += v;
    CHECK(mean_s / 30 == doctest::Approx(1.0).epsilon(1e-14));
    CHECK(mean_t / 30 == doctest::Approx(1.0).epsilon(1e-14));
    const auto psi_t = reference_psi_distance(t);
    for (std::size_t i = 0; i < psi_t.size(); ++i) CHECK(r.knowledge_teacher[i] == doctest::Approx(psi_t[i]).epsilon(1e-13));
}

TEST_CASE_TEMPLATE("rkd: errors name the argument and write nothing", T, float, double) {
    using namespace feature_test;
    using distill::errc;
    using O = distill::basic_rkd_options<T>;
    const feature_inputs good{dense::random({3, 4}, 1), dense::random({3, 2}, 2)};
    check_feature_error<T>(O{T(-1), 50}, good, errc::invalid_parameter, "distance_weight", {"distance_weight", "-1"});
    check_feature_error<T>(O{25, std::numeric_limits<T>::infinity()}, good, errc::invalid_parameter, "angle_weight",
                           {"angle_weight", "inf"});
    check_feature_error<T>(O{std::numeric_limits<T>::quiet_NaN(), 50}, good, errc::invalid_parameter, "distance_weight", {"nan"});
    check_feature_error<T>(O{}, {dense::random({1, 4}, 1), dense::random({1, 2}, 2)}, errc::shape_mismatch, "student",
                           {"[1, 4]", "N >= 2"});
    check_feature_error<T>(O{}, {dense::random({3, 4}, 1), dense::random({2, 4}, 2)}, errc::shape_mismatch, "teacher",
                           {"[2, 4]", "[3, 4]"});
    check_feature_error<T>(O{}, {dense::random({3}, 1), dense::random({3, 4}, 2)}, errc::bad_rank, "student", {"[3]"});
    check_feature_error<T>(O{}, {dense({0, 4}, {}), dense({0, 4}, {})}, errc::empty_input, "student", {"[0, 4]"});
    check_feature_error<T>(O{}, {dense::random({3, 4}, 1), dense{}}, errc::missing_argument, "teacher", {"teacher"});
}

// ------------------------------------------------------------------------------------------ pkt

TEST_CASE("pkt: loss matches the definition; gradient matches finite differences (2-D, 4-D, eps variants)") {
    using namespace feature_test;
    using relations_test::reference_pkt;
    const dense s2 = dense::random({6, 5}, 31), t2 = dense::random({6, 3}, 32);
    const dense s4 = dense::random({4, 3, 2, 2}, 33), t4 = dense::random({4, 5}, 34);
    for (const double eps : {1e-7, 1e-4, 0.5}) {
        CAPTURE(eps);
        const distill::pkt_options opts{eps};
        const auto r = run_feature<double>(opts, {s2, t2});
        REQUIRE(r.status.ok());
        CHECK(r.loss == doctest::Approx(reference_pkt(s2, t2, eps)).epsilon(1e-12));
        check_gradient_fd(opts, {s2, t2});
        check_gradient_fd(opts, {s4, t4});
    }
}

TEST_CASE("pkt: N = 1 gives 0; zero rows get the finite 1/eps gradient; P rows sum to 1") {
    using namespace feature_test;
    using namespace relations_test;
    const auto one = run_feature<double>(distill::pkt_options{}, {dense::random({1, 4}, 41), dense::random({1, 3}, 42)});
    REQUIRE(one.status.ok());
    CHECK(one.loss == 0.0);
    for (double g : one.grads[0]) CHECK(g == doctest::Approx(0.0).scale(1.0));

    // u = f / (||f|| + eps) is differentiable at f = 0 (Jacobian I / eps), so with a large eps
    // finite differences hold across a zero row.
    const dense zs = with_zero_row(dense::random({5, 4}, 43), 2), t = dense::random({5, 3}, 44);
    check_gradient_fd(distill::pkt_options{0.5}, {zs, t});
    const auto zero = run_feature<double>(distill::pkt_options{}, {zs, t});
    REQUIRE(zero.status.ok());
    CHECK(zero.loss == doctest::Approx(reference_pkt(zs, t, 1e-7)).epsilon(1e-12));
    double largest = 0;
    for (double g : zero.grads[0]) {
        CHECK(std::isfinite(g));
        largest = std::max(largest, std::abs(g));
    }
    CHECK(largest > 1e3);
    // A zero teacher row, and duplicate student rows.
    check_gradient_fd(distill::pkt_options{}, {dense::random({4, 3}, 45), with_zero_row(dense::random({4, 6}, 46), 0)});
    check_gradient_fd(distill::pkt_options{}, {with_duplicate(dense::random({4, 3}, 47), 0, 1), dense::random({4, 2}, 48)});

    const auto k = run_with_knowledge(distill::pkt_options{}, dense::random({5, 3}, 49), dense::random({5, 7}, 50));
    REQUIRE(k.status.ok());
    for (int i = 0; i < 5; ++i) {
        double rs = 0, rt = 0;
        for (int j = 0; j < 5; ++j) {
            rs += k.knowledge_student[static_cast<std::size_t>(i * 5 + j)];
            rt += k.knowledge_teacher[static_cast<std::size_t>(i * 5 + j)];
        }
        CHECK(rs == doctest::Approx(1.0));
        CHECK(rt == doctest::Approx(1.0));
    }
}

TEST_CASE_TEMPLATE("pkt: errors name the argument and write nothing", T, float, double) {
    using namespace feature_test;
    using distill::errc;
    using O = distill::basic_pkt_options<T>;
    const feature_inputs good{dense::random({3, 4}, 1), dense::random({3, 2}, 2)};
    check_feature_error<T>(O{T(0)}, good, errc::invalid_parameter, "eps", {"eps = 0", "> 0"});
    check_feature_error<T>(O{T(-1e-7)}, good, errc::invalid_parameter, "eps", {"eps"});
    check_feature_error<T>(O{std::numeric_limits<T>::infinity()}, good, errc::invalid_parameter, "eps", {"inf"});
    check_feature_error<T>(O{}, {dense::random({3, 4}, 1), dense::random({4, 4}, 2)}, errc::shape_mismatch, "teacher",
                           {"[4, 4]"});
    check_feature_error<T>(O{}, {dense::random({3, 4}, 1), dense::random({3}, 2)}, errc::bad_rank, "teacher", {"[3]"});
    check_feature_error<T>(O{}, {dense::random({3, 4}, 1), dense{}}, errc::missing_argument, "teacher", {"teacher"});
}

// ------------------------------------------------------------------------------------------- cc

TEST_CASE("cc: loss matches the definition; gradient matches finite differences (2-D, 4-D, gamma and order variants)") {
    using namespace feature_test;
    using relations_test::reference_cc;
    const dense s2 = dense::random({6, 5}, 51), t2 = dense::random({6, 3}, 52);
    const dense s4 = dense::random({4, 2, 3, 2}, 53), t4 = dense::random({4, 6}, 54);
    const distill::cc_options variants[] = {{0.4, 2}, {1.5, 1}, {0.2, 3}, {0.7, 6}};
    for (const auto& opts : variants) {
        CAPTURE(opts.gamma);
        CAPTURE(opts.p_order);
        const auto r = run_feature<double>(opts, {s2, t2});
        REQUIRE(r.status.ok());
        CHECK(r.loss == doctest::Approx(reference_cc(s2, t2, opts.gamma, static_cast<int>(opts.p_order))).epsilon(1e-12));
        check_gradient_fd(opts, {s2, t2});
        check_gradient_fd(opts, {s4, t4});
    }
    // Order 0: C is the constant e^{-2 gamma}; loss and gradient exactly 0.
    const auto constant = run_feature<double>(distill::cc_options{0.4, 0}, {s2, t2});
    REQUIRE(constant.status.ok());
    CHECK(constant.loss == 0.0);
    for (double g : constant.grads[0]) CHECK(g == 0.0);
}

TEST_CASE("cc: a huge order stops where the coefficients underflow; N = 1; zero rows; knowledge") {
    using namespace feature_test;
    using namespace relations_test;
    const dense s = dense::random({5, 4}, 61), t = dense::random({5, 3}, 62);
    const auto at_400 = run_feature<double>(distill::cc_options{0.4, 400}, {s, t});
    const auto huge = run_feature<double>(distill::cc_options{0.4, 1e300}, {s, t});
    REQUIRE(at_400.status.ok());
    REQUIRE(huge.status.ok());
    CHECK(huge.loss == at_400.loss);
    CHECK(huge.grads[0] == at_400.grads[0]);

    const auto one = run_feature<double>(distill::cc_options{}, {dense::random({1, 4}, 63), dense::random({1, 3}, 64)});
    REQUIRE(one.status.ok());
    CHECK(one.loss == doctest::Approx(0.0).scale(1.0));

    // A zero student row: u = 0 and its gradient is upstream / 1e-12: large, finite.
    const dense zs = with_zero_row(s, 1);
    const auto zero = run_feature<double>(distill::cc_options{}, {zs, t});
    REQUIRE(zero.status.ok());
    CHECK(zero.loss == doctest::Approx(reference_cc(zs, t, 0.4, 2)).epsilon(1e-12));
    double largest = 0;
    for (double g : zero.grads[0]) {
        CHECK(std::isfinite(g));
        largest = std::max(largest, std::abs(g));
    }
    CHECK(largest > 1e9);
    check_gradient_fd(distill::cc_options{}, {s, with_zero_row(t, 3)});
    check_gradient_fd(distill::cc_options{}, {with_duplicate(s, 0, 4), t});

    // Unit rows: C_ii = sum_p c_p = e^{-2 gamma} sum_p (2 gamma)^p / p!.
    const auto k = run_with_knowledge(distill::cc_options{0.4, 2}, s, t);
    REQUIRE(k.status.ok());
    const double diagonal = std::exp(-0.8) * (1 + 0.8 + 0.32);
    for (int i = 0; i < 5; ++i) CHECK(k.knowledge_student[static_cast<std::size_t>(i * 6)] == doctest::Approx(diagonal));
    const auto ct = reference_cc_kernel(t, 0.4, 2);
    for (std::size_t i = 0; i < ct.size(); ++i) CHECK(k.knowledge_teacher[i] == doctest::Approx(ct[i]).epsilon(1e-13));
}

TEST_CASE_TEMPLATE("cc: errors name the argument and write nothing", T, float, double) {
    using namespace feature_test;
    using distill::errc;
    using O = distill::basic_cc_options<T>;
    const feature_inputs good{dense::random({3, 4}, 1), dense::random({3, 2}, 2)};
    const T inf = std::numeric_limits<T>::infinity(), nan = std::numeric_limits<T>::quiet_NaN();
    check_feature_error<T>(O{T(0), 2}, good, errc::invalid_parameter, "gamma", {"gamma = 0", "> 0"});
    check_feature_error<T>(O{T(-0.4), 2}, good, errc::invalid_parameter, "gamma", {"gamma"});
    check_feature_error<T>(O{inf, 2}, good, errc::invalid_parameter, "gamma", {"inf"});
    check_feature_error<T>(O{T(0.4), T(1.5)}, good, errc::invalid_parameter, "p_order", {"p_order = 1.5", "integer"});
    check_feature_error<T>(O{T(0.4), T(-1)}, good, errc::invalid_parameter, "p_order", {"p_order = -1", ">= 0"});
    check_feature_error<T>(O{T(0.4), nan}, good, errc::invalid_parameter, "p_order", {"nan"});
    check_feature_error<T>(O{T(0.4), inf}, good, errc::invalid_parameter, "p_order", {"inf"});
    check_feature_error<T>(O{}, {dense::random({3, 4}, 1), dense::random({2, 4}, 2)}, errc::shape_mismatch, "teacher",
                           {"[2, 4]"});
    check_feature_error<T>(O{}, {dense::random({4}, 1), dense::random({4, 4}, 2)}, errc::bad_rank, "student", {"[4]"});
    check_feature_error<T>(O{}, {dense::random({3, 4}, 1), dense{}}, errc::missing_argument, "teacher", {"teacher"});
}

// ------------------------------------------------------------------------------ cc_repdistiller

TEST_CASE("cc_repdistiller: loss matches the definition; gradient matches finite differences; ties") {
    using namespace feature_test;
    using relations_test::reference_cc_repdistiller;
    const distill::cc_repdistiller_options opts;
    for (const auto& shape : {std::vector<index_t>{6, 5}, std::vector<index_t>{2, 7}, std::vector<index_t>{8, 1}}) {
        const dense s = dense::random(shape, 71), t = dense::random(shape, 72);
        const auto r = run_feature<double>(opts, {s, t});
        REQUIRE(r.status.ok());
        CHECK(r.loss == doctest::Approx(reference_cc_repdistiller(s, t)).epsilon(1e-13));
        check_gradient_fd(opts, {s, t});
    }
    // s = t in one entry: |x|' = 0 there (and the product's other factor is 0 too).
    dense s = dense::random({3, 4}, 73);
    const dense t = dense::random({3, 4}, 74);
    s.at(1, 2) = t.values[6];
    const auto tie = run_feature<double>(opts, {s, t});
    REQUIRE(tie.status.ok());
    CHECK(tie.grads[0][6] == 0.0);
    const auto equal = run_feature<double>(opts, {t, t});
    REQUIRE(equal.status.ok());
    CHECK(equal.loss == 0.0);
    for (double g : equal.grads[0]) CHECK(g == 0.0);
}

TEST_CASE("cc_repdistiller: a column-major student gives the row-major result; no knowledge outputs") {
    using namespace feature_test;
    const dense s = dense::random({4, 3}, 75), t = dense::random({4, 3}, 76);
    std::vector<double> column_major(12);
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 3; ++j) column_major[static_cast<std::size_t>(j * 4 + i)] = s.values[static_cast<std::size_t>(i * 3 + j)];
    const distill::index_t ext[] = {4, 3}, str[] = {1, 4};
    std::vector<double> loss(1), grad(12), knowledge(16);
    distill::feature_args<double> args{distill::any_view<const double>(column_major.data(), 2, ext, str),
                                       distill::make_view(std::as_const(t.values).data(), 4, 3)};
    distill::feature_outputs<double> outs{distill::make_view(loss.data(), 1), distill::make_view(grad.data(), 4, 3)};
    REQUIRE(distill::run(distill::cc_repdistiller_options{}, args, outs).ok());
    const auto r = run_feature<double>(distill::cc_repdistiller_options{}, {s, t});
    CHECK(distill_test::same_value(loss[0], r.loss));
    for (std::size_t i = 0; i < 12; ++i) CHECK(distill_test::same_value(grad[i], r.grads[0][i], 1.0));
    distill::feature_outputs<double> with_knowledge{distill::make_view(loss.data(), 1), {}, {}, {},
                                                    distill::make_view(knowledge.data(), 4, 4)};
    distill_test::check_method_error("cc_repdistiller", distill::check(distill::cc_repdistiller_options{}, args, with_knowledge),
                                     distill::errc::shape_mismatch, distill::error_kind::shape, "knowledge_student",
                                     {"knowledge_student"});
}

TEST_CASE_TEMPLATE("cc_repdistiller: errors name the argument and write nothing", T, float, double) {
    using namespace feature_test;
    using distill::errc;
    const distill::basic_cc_repdistiller_options<T> opts;
    check_feature_error<T>(opts, {dense::random({1, 4}, 1), dense::random({1, 4}, 2)}, errc::shape_mismatch, "student",
                           {"[1, 4]", "N >= 2"});
    check_feature_error<T>(opts, {dense::random({3, 4}, 1), dense::random({3, 5}, 2)}, errc::shape_mismatch, "teacher",
                           {"[3, 5]", "[3, 4]"});
    check_feature_error<T>(opts, {dense::random({3, 4}, 1), dense::random({2, 4}, 2)}, errc::shape_mismatch, "teacher",
                           {"[2, 4]"});
    check_feature_error<T>(opts, {dense::random({3, 2, 2}, 1), dense::random({3, 2, 2}, 2)}, errc::bad_rank, "student",
                           {"2-D", "[3, 2, 2]"});
    check_feature_error<T>(opts, {dense::random({3, 2, 2, 2}, 1), dense::random({3, 2, 2, 2}, 2)}, errc::bad_rank, "student",
                           {"[3, 2, 2, 2]"});
    check_feature_error<T>(opts, {dense::random({4}, 1), dense::random({4}, 2)}, errc::bad_rank, "student", {"[4]"});
    check_feature_error<T>(opts, {dense({0, 4}, {}), dense({0, 4}, {})}, errc::empty_input, "student", {"[0, 4]"});
    check_feature_error<T>(opts, {dense::random({3, 4}, 1), dense{}}, errc::missing_argument, "teacher", {"teacher"});
}

// ------------------------------------------------------------------------------------ extractors

TEST_CASE("pairwise_distance extractor: forward from the definition (exact duplicates), VJP against finite differences") {
    using namespace feature_test;
    using namespace relations_test;
    const dense f = with_duplicate(dense::random({5, 3, 2}, 81), 1, 4);
    buffer<double> x(f), out({5, 5}, -1.0);
    REQUIRE(distill::knowledge::pairwise_distance(std::as_const(x).view(), out.view()).ok());
    const auto e = rows_of(f);
    for (std::size_t i = 0; i < 5; ++i)
        for (std::size_t j = 0; j < 5; ++j) {
            double sq = 0;
            for (std::size_t k = 0; k < 6; ++k) sq += (e[j][k] - e[i][k]) * (e[j][k] - e[i][k]);
            const double want = i == j ? 0.0 : std::sqrt(std::max(sq, 1e-12));
            CHECK(out.data[i * 5 + j] == doctest::Approx(want).epsilon(1e-14));
        }
    CHECK(out.data[1 * 5 + 4] == std::sqrt(1e-12));

    auto forward = [](const dense& v) {
        buffer<double> in(v), o({v.rows(), v.rows()}, 0.0);
        REQUIRE(distill::knowledge::pairwise_distance(std::as_const(in).view(), o.view()).ok());
        return o.data;
    };
    auto vjp = [](const dense& v, const std::vector<double>& up) {
        const index_t n = v.rows();
        buffer<double> in(v), g(v.shape, 0.0);
        const buffer<double> upstream(dense({n, n}, up));
        std::vector<double> scratch(distill::knowledge::pairwise_distance_vjp_workspace_bytes<double>(n) / sizeof(double));
        REQUIRE(distill::knowledge::pairwise_distance_vjp(std::as_const(in).view(), upstream.view(), g.view(),
                                                          {scratch.data(), scratch.size() * sizeof(double)}).ok());
        return g.data;
    };
    check_extractor_vjp(dense::random({5, 3, 2}, 82), 25, 83, forward, vjp);
}

TEST_CASE("angle_structure extractor: forward from the definition, VJP against finite differences") {
    using namespace feature_test;
    using namespace relations_test;
    auto forward = [](const dense& v) {
        const index_t n = v.rows(), d = v.row_size();
        buffer<double> in(v), o({n, n, n}, 0.0);
        std::vector<double> scratch(distill::knowledge::angle_structure_workspace_bytes<double>(n, d) / sizeof(double));
        REQUIRE(distill::knowledge::angle_structure(std::as_const(in).view(), o.view(), {scratch.data(), scratch.size() * sizeof(double)})
                    .ok());
        return o.data;
    };
    auto vjp = [](const dense& v, const std::vector<double>& up) {
        const index_t n = v.rows(), d = v.row_size();
        buffer<double> in(v), g(v.shape, 0.0);
        const buffer<double> upstream(dense({n, n, n}, up));
        std::vector<double> scratch(distill::knowledge::angle_structure_vjp_workspace_bytes<double>(n, d) / sizeof(double));
        REQUIRE(distill::knowledge::angle_structure_vjp(std::as_const(in).view(), upstream.view(), g.view(),
                                                        {scratch.data(), scratch.size() * sizeof(double)}).ok());
        return g.data;
    };
    const dense f = with_duplicate(dense::random({5, 4}, 91), 0, 2);
    const auto got = forward(f), want = reference_angles(f);
    for (std::size_t i = 0; i < want.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-13).scale(1.0));
    CHECK(got[(0 * 5 + 2) * 5 + 2] == 0.0);  // u_02 = 0 exactly for the duplicate pair
    check_extractor_vjp(dense::random({4, 3}, 92), 64, 93, forward, vjp);
    check_extractor_vjp(dense::random({5, 2, 2}, 94), 125, 95, forward, vjp);

    // Errors: a wrong out shape, a missing workspace.
    buffer<double> in(f), bad({5, 5}, 0.0);
    std::vector<double> scratch(64);
    distill_test::check_method_error("angle_structure",
                                     distill::knowledge::angle_structure(std::as_const(in).view(), bad.view(),
                                                                         {scratch.data(), scratch.size() * sizeof(double)}),
                                     distill::errc::shape_mismatch, distill::error_kind::shape, "out", {"5 x 5 x 5", "[5, 5]"});
    buffer<double> cube({5, 5, 5}, 0.0);
    distill_test::check_method_error("angle_structure", distill::knowledge::angle_structure(std::as_const(in).view(), cube.view(), {}),
                                     distill::errc::workspace_too_small, distill::error_kind::usage, "workspace", {"needs"});
}

TEST_CASE("cosine_probabilities extractor: forward from the definition, VJP against finite differences (zero row)") {
    using namespace feature_test;
    using namespace relations_test;
    for (const double eps : {1e-7, 0.5}) {
        auto forward = [eps](const dense& v) {
            const index_t n = v.rows();
            buffer<double> in(v), o({n, n}, 0.0);
            std::vector<double> scratch(static_cast<std::size_t>(n));
            REQUIRE(distill::knowledge::cosine_probabilities(std::as_const(in).view(), o.view(), eps,
                                                             {scratch.data(), scratch.size() * sizeof(double)})
                        .ok());
            return o.data;
        };
        auto vjp = [eps](const dense& v, const std::vector<double>& up) {
            const index_t n = v.rows();
            buffer<double> in(v), g(v.shape, 0.0);
            const buffer<double> upstream(dense({n, n}, up));
            std::vector<double> scratch(distill::knowledge::cosine_probabilities_vjp_workspace_bytes<double>(n) / sizeof(double));
            REQUIRE(distill::knowledge::cosine_probabilities_vjp(std::as_const(in).view(), upstream.view(), g.view(), eps,
                                                                 {scratch.data(), scratch.size() * sizeof(double)})
                        .ok());
            return g.data;
        };
        const dense f = dense::random({5, 2, 2}, 101);
        const auto got = forward(f), want = reference_pkt_probabilities(f, eps);
        for (std::size_t i = 0; i < want.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-13));
        check_extractor_vjp(f, 25, 102, forward, vjp);
        // Across a zero row the central difference is 1/(eps + h), not 1/eps: O(h/eps) off.
        if (eps == 0.5) check_extractor_vjp(with_zero_row(f, 3), 25, 103, forward, vjp, 1e-5);
    }
    buffer<double> in(dense::random({3, 2}, 104)), out({3, 3}, 0.0);
    std::vector<double> scratch(3);
    distill_test::check_method_error("cosine_probabilities",
                                     distill::knowledge::cosine_probabilities(std::as_const(in).view(), out.view(), 0.0,
                                                                              {scratch.data(), scratch.size() * sizeof(double)}),
                                     distill::errc::invalid_parameter, distill::error_kind::value, "eps", {"eps"});
}

TEST_CASE("taylor_gaussian_kernel extractor: forward from the definition, VJP against finite differences") {
    using namespace feature_test;
    using namespace relations_test;
    for (const int order : {0, 1, 3}) {
        auto forward = [order](const dense& v) {
            const index_t n = v.rows();
            buffer<double> in(v), o({n, n}, 0.0);
            std::vector<double> scratch(static_cast<std::size_t>(n));
            REQUIRE(distill::knowledge::taylor_gaussian_kernel(std::as_const(in).view(), o.view(), 0.7, order,
                                                               {scratch.data(), scratch.size() * sizeof(double)})
                        .ok());
            return o.data;
        };
        auto vjp = [order](const dense& v, const std::vector<double>& up) {
            const index_t n = v.rows();
            buffer<double> in(v), g(v.shape, 0.0);
            const buffer<double> upstream(dense({n, n}, up));
            std::vector<double> scratch(distill::knowledge::taylor_gaussian_kernel_vjp_workspace_bytes<double>(n) / sizeof(double));
            REQUIRE(distill::knowledge::taylor_gaussian_kernel_vjp(std::as_const(in).view(), upstream.view(), g.view(), 0.7, order,
                                                                   {scratch.data(), scratch.size() * sizeof(double)})
                        .ok());
            return g.data;
        };
        const dense f = dense::random({4, 5}, 111);
        const auto got = forward(f), want = reference_cc_kernel(f, 0.7, order);
        for (std::size_t i = 0; i < want.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-13));
        check_extractor_vjp(f, 16, 112, forward, vjp);
    }
    buffer<double> in(dense::random({3, 2}, 113)), out({3, 3}, 0.0);
    std::vector<double> scratch(3);
    distill_test::check_method_error("taylor_gaussian_kernel",
                                     distill::knowledge::taylor_gaussian_kernel(std::as_const(in).view(), out.view(), 0.4, -1,
                                                                                {scratch.data(), scratch.size() * sizeof(double)}),
                                     distill::errc::invalid_parameter, distill::error_kind::value, "order", {"order = -1"});
}

TEST_CASE("relation methods: a column-major student and gradient give the row-major results") {
    using namespace feature_test;
    const dense s = dense::random({5, 4}, 121), t = dense::random({5, 3}, 122);
    std::vector<double> column_major(20), grad(20, -1.0), loss(1);
    for (int i = 0; i < 5; ++i)
        for (int j = 0; j < 4; ++j) column_major[static_cast<std::size_t>(j * 5 + i)] = s.values[static_cast<std::size_t>(i * 4 + j)];
    const distill::index_t ext[] = {5, 4}, str[] = {1, 5};
    const auto check_layout = [&](const auto& opts) {
        distill::feature_args<double> args{distill::any_view<const double>(column_major.data(), 2, ext, str),
                                           distill::make_view(t.values.data(), 5, 3)};
        distill::feature_outputs<double> outs{distill::make_view(loss.data(), 1), distill::any_view<double>(grad.data(), 2, ext, str)};
        std::vector<double> scratch(distill::workspace_bytes(opts, args, outs) / sizeof(double) + 1);
        REQUIRE(distill::run(opts, args, outs, {scratch.data(), scratch.size() * sizeof(double)}).ok());
        const auto r = run_feature<double>(opts, {s, t});
        REQUIRE(r.status.ok());
        double largest = 0;
        for (double g : r.grads[0]) largest = std::max(largest, std::abs(g));
        CHECK(loss[0] == doctest::Approx(r.loss).epsilon(1e-13));
        for (int i = 0; i < 5; ++i)
            for (int j = 0; j < 4; ++j)
                CHECK(std::abs(grad[static_cast<std::size_t>(j * 5 + i)] - r.grads[0][static_cast<std::size_t>(i * 4 + j)]) <=
                      1e-13 * largest);
    };
    check_layout(distill::rkd_options{});
    check_layout(distill::pkt_options{});
    check_layout(distill::cc_options{});
}
