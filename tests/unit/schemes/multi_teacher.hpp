// tests/unit/schemes/multi_teacher.hpp: distill::multi_teacher (include/distill/schemes/
// multi_teacher.hpp) on the CPU backend; included by schemes_test.cpp after test_support.hpp.
//
// A 1 x 3 example computed by hand for each mode (probability averaging, logit averaging, fixed
// weights, confidence weights, best teacher with and without labels); average_logits against kd
// on the weighted mean logits; K = 1 against kd for every mode; every mode against a long-double
// reference written from the definition in probability space; student gradients against central
// finite differences for every mode and reduction (double); float against double; column-major
// teachers; masked logits; the convenience object; every error rule with nothing written.
#pragma once

#include <distill/eigen.hpp>
#include <distill/schemes/multi_teacher.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace multi_teacher_test {

using namespace distill_test;
using distill::ensemble_mode;
using distill::errc;
using distill::error_kind;
using distill::index_t;
using distill::reduction;
using real = long double;

constexpr ensemble_mode all_modes[] = {ensemble_mode::average_probabilities, ensemble_mode::average_logits,
                                       ensemble_mode::confidence_weighted, ensemble_mode::best_teacher};
constexpr reduction all_reductions[] = {reduction::batchmean, reduction::sum, reduction::none};

/// N x C student, K N x C teachers, optional labels and row weights, all owned.
template <class T>
struct problem {
    index_t n = 0, c = 0;
    std::vector<T> student, weight;
    std::vector<std::vector<T>> teachers;
    std::vector<std::int64_t> labels;
    bool use_labels = false, use_weight = false;
    std::vector<distill::any_view<const T>> views;  ///< what args() points its teacher span at

    problem(index_t rows, index_t cols, int k, unsigned seed, double scale = 3.0)
        : n(rows), c(cols), student(random_values<T>(static_cast<std::size_t>(rows * cols), seed, -scale, scale)) {
        for (int j = 0; j < k; ++j)
            teachers.push_back(random_values<T>(static_cast<std::size_t>(rows * cols), seed + 100u * (j + 1), -scale, scale));
    }
    problem& with_labels(std::initializer_list<index_t> ignored = {}) {
        labels.resize(static_cast<std::size_t>(n));
        for (index_t i = 0; i < n; ++i) labels[static_cast<std::size_t>(i)] = (3 * i + 1) % c;
        for (index_t i : ignored) labels[static_cast<std::size_t>(i)] = -100;
        use_labels = true;
        return *this;
    }
    problem& with_weight() {
        weight = random_values<T>(static_cast<std::size_t>(n), 91, 0.25, 2.0);
        use_weight = true;
        return *this;
    }
    distill::multi_teacher_args<T> args() {
        views.clear();
        for (const auto& t : teachers) views.push_back(distill::make_view(t.data(), n, c));
        distill::multi_teacher_args<T> a{distill::make_view(student.data(), n, c), views};
        if (use_labels) a.labels = distill::make_view(labels.data(), n);
        if (use_weight) a.weight = distill::make_view(weight.data(), n);
        return a;
    }
};

/// Outputs pre-filled with a sentinel, so that "nothing written" can be checked.
template <class T>
struct outputs {
    static constexpr T sentinel = T(-12345.5);
    std::vector<T> loss, grad, weights;
    index_t n, c, k;
    outputs(reduction red, index_t rows, index_t cols, index_t teachers)
        : loss(static_cast<std::size_t>(red == reduction::none ? rows : 1), sentinel),
          grad(static_cast<std::size_t>(rows * cols), sentinel),
          weights(static_cast<std::size_t>(rows * teachers), sentinel),
          n(rows),
          c(cols),
          k(teachers) {}
    distill::multi_teacher_outputs<T> views() {
        return {distill::make_view(loss.data(), static_cast<index_t>(loss.size())), distill::make_view(grad.data(), n, c),
                distill::make_view(weights.data(), n, k)};
    }
    bool untouched() const {
        for (const auto* v : {&loss, &grad, &weights})
            for (T x : *v)
                if (x != sentinel) return false;
        return true;
    }
    double total() const {
        double s = 0;
        for (T v : loss) s += static_cast<double>(v);
        return s;
    }
};

template <class T>
outputs<T> run_ok(problem<T>& p, const distill::multi_teacher_options& opts) {
    outputs<T> out(opts.reduce, p.n, p.c, static_cast<index_t>(p.teachers.size()));
    const distill::status s = distill::run(opts, p.args(), out.views());
    INFO("message: ", s.message());
    REQUIRE(s.ok());
    return out;
}

/// The definition in long double, in probability space: softmaxes, entropies, weights, p, KL.
struct reference {
    std::vector<real> loss;     ///< reduced (none: per row)
    std::vector<real> grad;     ///< N x C
    std::vector<real> weights;  ///< N x K
};

template <class T>
reference reference_of(const problem<T>& p, const distill::multi_teacher_options& o) {
    const index_t n = p.n, c = p.c;
    const int k_count = static_cast<int>(p.teachers.size());
    const real tau = o.temperature;
    auto softmax = [&](std::vector<real> z) {
        real mx = -std::numeric_limits<real>::infinity();
        for (real& v : z) mx = std::max(mx, v /= tau);
        real sum = 0;
        for (real& v : z) sum += (v = std::exp(v - mx));
        for (real& v : z) v /= sum;
        return z;
    };
    auto row_of = [&](const std::vector<T>& m, index_t i) {
        return std::vector<real>(m.begin() + i * c, m.begin() + (i + 1) * c);
    };
    std::vector<real> prior(static_cast<std::size_t>(k_count), real(1) / k_count);
    if (!o.teacher_weights.empty()) {
        real total = 0;
        for (double v : o.teacher_weights) total += v;
        for (int k = 0; k < k_count; ++k) prior[static_cast<std::size_t>(k)] = o.teacher_weights[static_cast<std::size_t>(k)] / total;
    }
    reference r;
    r.grad.assign(static_cast<std::size_t>(n * c), 0);
    r.weights.assign(static_cast<std::size_t>(n * k_count), 0);
    std::vector<real> rows(static_cast<std::size_t>(n), 0);
    real total_weight = 0;
    for (index_t i = 0; i < n; ++i) {
        real w = p.use_weight ? real(p.weight[static_cast<std::size_t>(i)]) : real(1);
        if (p.use_labels && p.labels[static_cast<std::size_t>(i)] == o.ignore_index) w = 0;
        total_weight += w;
        if (w == 0) continue;
        std::vector<std::vector<real>> q;
        std::vector<real> entropy;
        for (int k = 0; k < k_count; ++k) {
            q.push_back(softmax(row_of(p.teachers[static_cast<std::size_t>(k)], i)));
            real h = 0;
            for (real v : q.back())
                if (v > 0) h -= v * std::log(v);
            entropy.push_back(h);
        }
        std::vector<real> a = prior, pe(static_cast<std::size_t>(c), 0);
        if (o.mode == ensemble_mode::confidence_weighted) {
            real norm = 0;
            for (int k = 0; k < k_count; ++k) norm += (a[k] = prior[k] * std::exp(-entropy[k]));
            for (real& v : a) v /= norm;
        } else if (o.mode == ensemble_mode::best_teacher) {
            int best = 0;
            for (int k = 1; k < k_count; ++k) {
                const bool better = p.use_labels ? q[k][p.labels[i]] > q[best][p.labels[i]] : entropy[k] < entropy[best];
                if (better) best = k;
            }
            for (int k = 0; k < k_count; ++k) a[k] = k == best;
        }
        if (o.mode == ensemble_mode::average_logits) {
            std::vector<real> mean(static_cast<std::size_t>(c), 0);
            for (int k = 0; k < k_count; ++k)
                for (index_t j = 0; j < c; ++j) mean[j] += a[k] * p.teachers[k][i * c + j];
            pe = softmax(mean);
        } else {
            for (int k = 0; k < k_count; ++k)
                for (index_t j = 0; j < c; ++j) pe[j] += a[k] * q[k][j];
        }
        const std::vector<real> ps = softmax(row_of(p.student, i));
        real kl = 0;
        for (index_t j = 0; j < c; ++j)
            if (pe[j] > 0) kl += pe[j] * (std::log(pe[j]) - std::log(ps[j]));
        rows[i] = w * tau * tau * kl;
        for (index_t j = 0; j < c; ++j) r.grad[i * c + j] = w * tau * (ps[j] - pe[j]);
        for (int k = 0; k < k_count; ++k) r.weights[i * k_count + k] = a[k];
    }
    const real scale = o.reduce == reduction::batchmean ? (total_weight > 0 ? 1 / total_weight : 0) : 1;
    for (real& g : r.grad) g *= scale;
    if (o.reduce == reduction::none) {
        r.loss = rows;
    } else {
        real total = 0;
        for (real v : rows) total += v;
        r.loss = {total * scale};
    }
    return r;
}

/// The loss of a run as a function of the student (double), for finite differences.
inline double loss_at(problem<double> p, const distill::multi_teacher_options& opts, const std::vector<double>& student) {
    p.student = student;
    outputs<double> out(opts.reduce, p.n, p.c, static_cast<index_t>(p.teachers.size()));
    const distill::status s = distill::run(opts, p.args(), out.views());
    REQUIRE(s.ok());
    return out.total();
}

/// kd on (student, teacher) with the problem's labels, weights and options.
template <class T>
outputs<T> kd_of(problem<T>& p, const std::vector<T>& teacher, const distill::multi_teacher_options& o) {
    distill::response_args<T> a{distill::make_view(p.student.data(), p.n, p.c), distill::make_view(teacher.data(), p.n, p.c)};
    if (p.use_labels) a.labels = distill::make_view(p.labels.data(), p.n);
    if (p.use_weight) a.weight = distill::make_view(p.weight.data(), p.n);
    outputs<T> out(o.reduce, p.n, p.c, 1);
    distill::response_outputs<T> v{distill::make_view(out.loss.data(), static_cast<index_t>(out.loss.size())),
                                   distill::make_view(out.grad.data(), p.n, p.c)};
    const distill::kd_options kd{.temperature = o.temperature, .reduce = o.reduce, .ignore_index = o.ignore_index};
    REQUIRE(distill::run(kd, a, v).ok());
    return out;
}

}  // namespace multi_teacher_test

TEST_CASE("multi_teacher: a 1 x 3 example by hand, for every mode") {
    using namespace multi_teacher_test;
    // Teacher 1 has probabilities (1/2, 1/4, 1/4), teacher 2 (1/5, 3/5, 1/5); the student is uniform.
    problem<double> p(1, 3, 2, 1);
    p.student = {0.0, 0.0, 0.0};
    p.teachers[0] = {std::log(2.0), 0.0, 0.0};
    p.teachers[1] = {0.0, std::log(3.0), 0.0};
    const auto expect = [&](const outputs<double>& out, const std::vector<double>& pe, double tau) {
        double kl = 0;
        for (int j = 0; j < 3; ++j) kl += pe[j] * std::log(3 * pe[j]);
        DISTILL_CHECK_CLOSE(out.loss[0], tau * tau * kl, 1e-14, 1e-15);
        for (int j = 0; j < 3; ++j) DISTILL_CHECK_CLOSE(out.grad[j], tau * (1.0 / 3 - pe[j]), 1e-14, 1e-15);
    };
    SUBCASE("average of probabilities (default): p = (0.35, 0.425, 0.225)") {
        const auto out = run_ok(p, {});
        expect(out, {0.35, 0.425, 0.225}, 1);
        CHECK(out.weights[0] == 0.5);
        CHECK(out.weights[1] == 0.5);
        // KL(p || uniform) = 0.35 ln 1.05 + 0.425 ln 1.275 + 0.225 ln 0.675, written out.
        DISTILL_CHECK_CLOSE(out.loss[0], 0.35 * std::log(1.05) + 0.425 * std::log(1.275) + 0.225 * std::log(0.675), 1e-14, 0);
    }
    SUBCASE("average of probabilities at T = 2: the teachers' tempered q and the T^2 factor") {
        const double r2 = std::sqrt(2.0), r3 = std::sqrt(3.0);
        const std::vector<double> q1 = {r2 / (r2 + 2), 1 / (r2 + 2), 1 / (r2 + 2)}, q2 = {1 / (r3 + 2), r3 / (r3 + 2), 1 / (r3 + 2)};
        const auto out = run_ok(p, {.temperature = 2.0});
        expect(out, {(q1[0] + q2[0]) / 2, (q1[1] + q2[1]) / 2, (q1[2] + q2[2]) / 2}, 2);
    }
    SUBCASE("fixed weights 3 : 1 give p = 0.75 q1 + 0.25 q2") {
        const std::vector<double> w = {3.0, 1.0};
        const auto out = run_ok(p, {.teacher_weights = w});
        expect(out, {0.75 * 0.5 + 0.25 * 0.2, 0.75 * 0.25 + 0.25 * 0.6, 0.75 * 0.25 + 0.25 * 0.2}, 1);
        CHECK(out.weights[0] == 0.75);
        CHECK(out.weights[1] == 0.25);
    }
    SUBCASE("average of logits: p is proportional to (sqrt 2, sqrt 3, 1)") {
        const double r2 = std::sqrt(2.0), r3 = std::sqrt(3.0), z = r2 + r3 + 1;
        const auto out = run_ok(p, {.mode = ensemble_mode::average_logits});
        expect(out, {r2 / z, r3 / z, 1 / z}, 1);
    }
    SUBCASE("confidence weights: softmax of minus the entropies") {
        const double h1 = 1.5 * std::log(2.0), h2 = -(0.4 * std::log(0.2) + 0.6 * std::log(0.6));
        const double a1 = std::exp(-h1) / (std::exp(-h1) + std::exp(-h2)), a2 = 1 - a1;
        const auto out = run_ok(p, {.mode = ensemble_mode::confidence_weighted});
        DISTILL_CHECK_CLOSE(out.weights[0], a1, 1e-14, 0);
        DISTILL_CHECK_CLOSE(out.weights[1], a2, 1e-14, 0);
        expect(out, {a1 * 0.5 + a2 * 0.2, a1 * 0.25 + a2 * 0.6, a1 * 0.25 + a2 * 0.2}, 1);
        CHECK(a2 > a1);  // teacher 2 is the surer one (H2 < H1)
    }
    SUBCASE("best teacher: by the label's probability, else by the lowest entropy") {
        const distill::multi_teacher_options best{.mode = ensemble_mode::best_teacher};
        p.with_labels();
        p.labels = {0};  // q1[0] = 0.5 > q2[0] = 0.2: teacher 1
        auto out = run_ok(p, best);
        expect(out, {0.5, 0.25, 0.25}, 1);
        CHECK(out.weights == std::vector<double>{1.0, 0.0});
        p.labels = {1};  // q2[1] = 0.6 > 0.25: teacher 2
        out = run_ok(p, best);
        expect(out, {0.2, 0.6, 0.2}, 1);
        CHECK(out.weights == std::vector<double>{0.0, 1.0});
        p.use_labels = false;  // H2 = 0.950 < H1 = 1.040: teacher 2
        out = run_ok(p, best);
        expect(out, {0.2, 0.6, 0.2}, 1);
        CHECK(out.weights == std::vector<double>{0.0, 1.0});
    }
}

TEST_CASE_TEMPLATE("multi_teacher: average_logits is kd against the weighted mean logits", T, float, double) {
    using namespace multi_teacher_test;
    problem<T> p(6, 7, 3, 11);
    p.with_labels({2}).with_weight();
    const std::vector<double> w = {1.0, 2.0, 5.0};
    for (const reduction red : all_reductions)
        for (const double tau : {0.5, 1.0, 4.0}) {
            CAPTURE(tau);
            CAPTURE(static_cast<int>(red));
            const distill::multi_teacher_options o{.temperature = tau, .mode = ensemble_mode::average_logits,
                                                   .reduce = red, .teacher_weights = w};
            std::vector<T> mean(p.teachers[0].size());
            for (std::size_t e = 0; e < mean.size(); ++e)
                mean[e] = static_cast<T>((w[0] * p.teachers[0][e] + w[1] * p.teachers[1][e] + w[2] * p.teachers[2][e]) / 8.0);
            const auto mt = run_ok(p, o);
            const auto kd = kd_of(p, mean, o);
            const double rtol = std::is_same_v<T, float> ? 2e-5 : 1e-12;
            check_all_close(mt.loss, kd.loss, rtol, rtol * 1e-2);
            check_all_close(mt.grad, kd.grad, rtol, rtol * 1e-2);
        }
}

TEST_CASE_TEMPLATE("multi_teacher: one teacher is kd, in every mode", T, float, double) {
    using namespace multi_teacher_test;
    problem<T> p(5, 9, 1, 21);
    p.with_labels({1}).with_weight();
    const auto kd_out = [&](const distill::multi_teacher_options& o) { return kd_of(p, p.teachers[0], o); };
    for (const ensemble_mode mode : all_modes)
        for (const reduction red : all_reductions)
            for (const double tau : {1.0, 3.0}) {
                CAPTURE(static_cast<int>(mode));
                CAPTURE(static_cast<int>(red));
                const distill::multi_teacher_options o{.temperature = tau, .mode = mode, .reduce = red};
                const auto mt = run_ok(p, o);
                const auto kd = kd_out(o);
                for (std::size_t e = 0; e < mt.loss.size(); ++e) CHECK(same_value(mt.loss[e], kd.loss[e], 1.0));
                for (std::size_t e = 0; e < mt.grad.size(); ++e) CHECK(same_value(mt.grad[e], kd.grad[e], 1.0));
            }
}

TEST_CASE_TEMPLATE("multi_teacher: every mode matches the long-double reference", T, float, double) {
    using namespace multi_teacher_test;
    const double rtol = std::is_same_v<T, float> ? 1e-4 : 1e-11, atol = std::is_same_v<T, float> ? 1e-6 : 1e-14;
    for (const bool labels : {false, true})
        for (const ensemble_mode mode : all_modes)
            for (const reduction red : all_reductions)
                for (const double tau : {0.5, 1.0, 4.0}) {
                    CAPTURE(labels);
                    CAPTURE(static_cast<int>(mode));
                    CAPTURE(static_cast<int>(red));
                    CAPTURE(tau);
                    problem<T> p(7, 11, 3, 31);
                    p.with_weight();
                    if (labels) p.with_labels({4});
                    const std::vector<double> fixed = {0.5, 0.0, 1.5};
                    distill::multi_teacher_options o{.temperature = tau, .mode = mode, .reduce = red};
                    if (mode != ensemble_mode::best_teacher && tau == 1.0) o.teacher_weights = fixed;
                    const auto out = run_ok(p, o);
                    const auto ref = reference_of(p, o);
                    check_all_close(out.loss, ref.loss, rtol, atol);
                    check_all_close(out.grad, ref.grad, rtol, atol);
                    check_all_close(out.weights, ref.weights, rtol, atol);
                }
}

TEST_CASE("multi_teacher: student gradients match central finite differences in every mode (double)") {
    using namespace multi_teacher_test;
    for (const ensemble_mode mode : all_modes)
        for (const reduction red : all_reductions)
            for (const double tau : {1.0, 2.5}) {
                CAPTURE(static_cast<int>(mode));
                CAPTURE(static_cast<int>(red));
                CAPTURE(tau);
                problem<double> p(4, 6, 3, 41);
                p.with_labels({2}).with_weight();
                const std::vector<double> fixed = {1.0, 3.0, 0.5};
                distill::multi_teacher_options o{.temperature = tau, .mode = mode, .reduce = red};
                if (mode != ensemble_mode::best_teacher) o.teacher_weights = fixed;
                const auto out = run_ok(p, o);
                const auto numeric = numeric_gradient([&](const std::vector<double>& x) { return loss_at(p, o, x); }, p.student);
                check_all_close(out.grad, numeric, 1e-6, 1e-9);
                // The ignored row gets a zero gradient and zero weights.
                for (index_t j = 0; j < p.c; ++j) CHECK(out.grad[static_cast<std::size_t>(2 * p.c + j)] == 0.0);
                for (index_t k = 0; k < 3; ++k) CHECK(out.weights[static_cast<std::size_t>(2 * 3 + k)] == 0.0);
            }
}

TEST_CASE("multi_teacher: float agrees with double") {
    using namespace multi_teacher_test;
    for (const ensemble_mode mode : all_modes) {
        CAPTURE(static_cast<int>(mode));
        problem<double> pd(8, 33, 4, 51);  // 33 classes: full SIMD packs and a remainder
        pd.with_labels({3});
        problem<float> pf(8, 33, 4, 51);
        pf.with_labels({3});
        const distill::multi_teacher_options o{.temperature = 2.0, .mode = mode};
        const auto d = run_ok(pd, o);
        const auto f = run_ok(pf, o);
        DISTILL_CHECK_CLOSE(f.loss[0], d.loss[0], 2e-5, 1e-7);
        check_all_close(f.grad, d.grad, 1e-4, 2e-7);
        check_all_close(f.weights, d.weights, 1e-5, 1e-7);
    }
}

TEST_CASE("multi_teacher: column-major teachers and student give the row-major result") {
    using namespace multi_teacher_test;
    problem<double> p(5, 8, 3, 61);
    p.with_labels();
    std::vector<Eigen::MatrixXd> teachers;
    for (const auto& t : p.teachers)
        teachers.push_back(Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(t.data(), 5, 8));
    const Eigen::MatrixXd student =
        Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(p.student.data(), 5, 8);
    const Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1> labels =
        Eigen::Map<const Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1>>(p.labels.data(), 5);
    for (const ensemble_mode mode : all_modes) {
        CAPTURE(static_cast<int>(mode));
        const distill::multi_teacher_options o{.temperature = 3.0, .mode = mode, .reduce = reduction::sum};
        const auto rows = run_ok(p, o);
        const auto cols = distill::multi_teacher(student, teachers, labels, o);  // the convenience object
        CHECK(same_value(cols.loss, rows.loss[0], 1.0));
        REQUIRE(cols.grad_student.size() == 40);
        REQUIRE(cols.ensemble_weights.size() == 15);
        const auto g = cols.grad_student.view();
        const auto a = cols.ensemble_weights.view();
        for (index_t i = 0; i < 5; ++i) {
            for (index_t j = 0; j < 8; ++j) CHECK(same_value(g(i, j), rows.grad[static_cast<std::size_t>(i * 8 + j)], 1.0));
            for (index_t k = 0; k < 3; ++k) CHECK(same_value(a(i, k), rows.weights[static_cast<std::size_t>(i * 3 + k)], 1.0));
        }
    }
}

TEST_CASE("multi_teacher: the convenience object with teacher_views, none and row losses") {
    using namespace multi_teacher_test;
    problem<float> p(4, 5, 2, 71);
    const auto a = distill::make_view(p.teachers[0].data(), 4, 5), b = distill::make_view(p.teachers[1].data(), 4, 5);
    const auto s = distill::make_view(p.student.data(), 4, 5);
    const distill::multi_teacher_options o{.temperature = 2.0, .reduce = reduction::none};
    const auto r = distill::multi_teacher(s, distill::teacher_views(a, b), o);
    REQUIRE(r.status.ok());
    const auto out = run_ok(p, o);
    REQUIRE(r.row_losses.size() == 4);
    double total = 0;
    for (index_t i = 0; i < 4; ++i) {
        CHECK(r.row_losses.view()(i) == out.loss[static_cast<std::size_t>(i)]);
        total += out.loss[static_cast<std::size_t>(i)];
    }
    DISTILL_CHECK_CLOSE(r.loss, total, 1e-6, 0);
#if DISTILL_HAS_EXCEPTIONS
    const distill::multi_teacher_options bad{.temperature = -1.0};
    CHECK_THROWS_AS(distill::multi_teacher(s, distill::teacher_views(a, b), bad), distill::error);
#endif
}

TEST_CASE("multi_teacher: masked (-inf) teacher logits") {
    using namespace multi_teacher_test;
    constexpr double neg_inf = -std::numeric_limits<double>::infinity();
    problem<double> p(3, 6, 2, 81);
    p.teachers[0][1] = neg_inf;                            // masked in one teacher only: p keeps the other's mass
    p.teachers[0][6 + 2] = p.teachers[1][6 + 2] = neg_inf;  // masked in both: p_c = 0
    for (const ensemble_mode mode : all_modes) {
        CAPTURE(static_cast<int>(mode));
        const distill::multi_teacher_options o{.temperature = 2.0, .mode = mode};
        const auto out = run_ok(p, o);
        const auto ref = reference_of(p, o);
        CHECK(std::isfinite(out.loss[0]));
        check_all_close(out.loss, ref.loss, 1e-11, 1e-14);
        check_all_close(out.grad, ref.grad, 1e-11, 1e-14);
    }
}

TEST_CASE("multi_teacher: every error rule, with nothing written") {
    using namespace multi_teacher_test;
    problem<double> p(3, 5, 2, 91);
    p.with_labels();
    const auto expect_error = [&](const distill::multi_teacher_options& o, const distill::multi_teacher_args<double>& a,
                                  outputs<double>& out, const distill::multi_teacher_outputs<double>& views, errc code,
                                  error_kind kind, const char* argument, std::initializer_list<const char*> fragments) {
        const distill::status s = distill::run(o, a, views);
        check_method_error("multi_teacher", s, code, kind, argument, fragments);
        CHECK(out.untouched());
    };
    const auto simple = [&](const distill::multi_teacher_options& o, const distill::multi_teacher_args<double>& a, errc code,
                            error_kind kind, const char* argument, std::initializer_list<const char*> fragments) {
        outputs<double> out(o.reduce, 3, 5, 2);
        expect_error(o, a, out, out.views(), code, kind, argument, fragments);
    };
    const distill::multi_teacher_options ok{};

    // Parameters.
    simple({.temperature = 0.0}, p.args(), errc::invalid_parameter, error_kind::value, "temperature", {"temperature = 0"});
    simple({.temperature = std::nan("")}, p.args(), errc::invalid_parameter, error_kind::value, "temperature", {"nan"});
    simple({.reduce = static_cast<reduction>(7)}, p.args(), errc::unknown_reduction, error_kind::value, "reduction", {"7"});
    simple({.mode = static_cast<ensemble_mode>(9)}, p.args(), errc::invalid_parameter, error_kind::value, "mode",
           {"mode = 9", "best_teacher"});
    const std::vector<double> three = {1, 1, 1}, negative = {1, -0.5}, zeros = {0, 0}, nan_weight = {1, std::nan("")},
                              good = {1, 2};
    simple({.teacher_weights = three}, p.args(), errc::shape_mismatch, error_kind::shape, "teacher_weights",
           {"3 values", "2 teachers"});
    simple({.teacher_weights = negative}, p.args(), errc::invalid_parameter, error_kind::value, "teacher_weights",
           {"teacher_weights[1] = -5.00000e-1"});
    simple({.teacher_weights = nan_weight}, p.args(), errc::invalid_parameter, error_kind::value, "teacher_weights",
           {"teacher_weights[1] = nan"});
    simple({.teacher_weights = zeros}, p.args(), errc::invalid_parameter, error_kind::value, "teacher_weights", {"sum to 0"});
    simple({.mode = ensemble_mode::best_teacher, .teacher_weights = good}, p.args(), errc::invalid_parameter,
           error_kind::value, "teacher_weights", {"best_teacher"});

    // The student.
    {
        auto a = p.args();
        a.student = distill::make_view(p.student.data(), 15);
        simple(ok, a, errc::bad_rank, error_kind::shape, "student", {"2-D", "[15]"});
        a.student = {};
        simple(ok, a, errc::missing_argument, error_kind::shape, "student", {"student"});
    }
    // The teachers: none, too many, unbound, wrong shape, wrong rank.
    {
        auto a = p.args();
        a.teachers = {};
        simple(ok, a, errc::missing_argument, error_kind::shape, "teachers", {"at least one teacher"});
        std::vector<distill::any_view<const double>> many(17, p.views[0]);
        a.teachers = many;
        simple(ok, a, errc::shape_mismatch, error_kind::shape, "teachers", {"17", "at most 16"});
        std::vector<distill::any_view<const double>> unbound = {p.views[0], {}};
        a.teachers = unbound;
        simple(ok, a, errc::missing_argument, error_kind::shape, "teachers", {"teachers[1]", "unbound"});
        std::vector<double> wide(18, 0.0);
        std::vector<distill::any_view<const double>> shapes = {p.views[0], distill::make_view(wide.data(), 3, 6)};
        a.teachers = shapes;
        simple(ok, a, errc::shape_mismatch, error_kind::shape, "teachers", {"teachers[1] has shape [3, 6]", "[3, 5]"});
        shapes[1] = distill::make_view(wide.data(), 15);
        simple(ok, a, errc::shape_mismatch, error_kind::shape, "teachers", {"teachers[1] has shape [15]"});
        shapes = {distill::make_view(wide.data(), 5, 3), p.views[1]};
        a.teachers = shapes;
        simple(ok, a, errc::shape_mismatch, error_kind::shape, "teachers", {"teachers[0] has shape [5, 3]"});
    }
    // Labels and row weights.
    {
        auto a = p.args();
        std::vector<std::int64_t> bad = {0, 9, 1};
        a.labels = distill::make_view(bad.data(), 3);
        simple(ok, a, errc::label_out_of_range, error_kind::value, "labels", {"labels[1] = 9", "[0, 5)"});
        a.labels = distill::make_view(bad.data(), 2);
        simple(ok, a, errc::shape_mismatch, error_kind::shape, "labels", {"[2]", "[3]"});
        a = p.args();
        std::vector<double> w = {1.0, -1.0, 1.0};
        a.weight = distill::make_view(w.data(), 3);
        simple(ok, a, errc::invalid_weight, error_kind::value, "weight", {"weight[1]"});
    }
    // Outputs: sizes and shapes.
    {
        outputs<double> out(reduction::none, 3, 5, 2);  // 3 loss values for batchmean
        expect_error(ok, p.args(), out, out.views(), errc::shape_mismatch, error_kind::shape, "loss", {"loss", "1 value"});
        outputs<double> out2(reduction::batchmean, 3, 5, 2);
        auto v = out2.views();
        v.loss = {};
        expect_error(ok, p.args(), out2, v, errc::missing_argument, error_kind::shape, "loss", {"loss"});
        v = out2.views();
        v.grad_student = distill::make_view(out2.grad.data(), 5, 3);
        expect_error(ok, p.args(), out2, v, errc::shape_mismatch, error_kind::shape, "grad_student", {"[5, 3]", "[3, 5]"});
        v = out2.views();
        v.ensemble_weights = distill::make_view(out2.weights.data(), 2, 3);
        expect_error(ok, p.args(), out2, v, errc::shape_mismatch, error_kind::shape, "ensemble_weights",
                     {"[2, 3]", "[3, 2]"});
    }
    // Aliasing: outputs over any teacher, the student, or each other.
    {
        problem<double> q = p;
        auto a = q.args();
        outputs<double> out(reduction::batchmean, 3, 5, 2);
        auto v = out.views();
        const auto saved = q.teachers[1];
        v.grad_student = distill::make_view(q.teachers[1].data(), 3, 5);
        const distill::status s = distill::run(ok, a, v);
        check_method_error("multi_teacher", s, errc::aliasing, error_kind::usage, "grad_student", {"teachers[1]"});
        CHECK(q.teachers[1] == saved);
        CHECK(out.untouched());
        v = out.views();
        v.loss = distill::make_view(q.student.data(), 1);
        expect_error(ok, a, out, v, errc::aliasing, error_kind::usage, "loss", {"overlaps input student"});
        v = out.views();
        v.ensemble_weights = distill::make_view(out.grad.data() + 4, 3, 2);
        expect_error(ok, a, out, v, errc::aliasing, error_kind::usage, "grad_student", {"overlaps output ensemble_weights"});
    }
}

TEST_CASE_TEMPLATE("multi_teacher: grad_scale and accumulate compose with another term's gradient", T, float, double) {
    using namespace multi_teacher_test;
    problem<T> p(5, 19, 3, 101);
    p.with_labels({3}).with_weight();
    for (const ensemble_mode mode : all_modes) {
        CAPTURE(static_cast<int>(mode));
        const distill::multi_teacher_options o{.temperature = 2.0, .mode = mode};
        const auto plain = run_ok(p, o);
        outputs<T> out(o.reduce, p.n, p.c, 3);
        const std::vector<T> before = random_values<T>(out.grad.size(), 7);
        out.grad = before;
        auto v = out.views();
        v.grad_scale = T(0.3);
        v.accumulate = true;
        REQUIRE(distill::run(o, p.args(), v).ok());
        CHECK(out.loss[0] == plain.loss[0]);  // the loss is not scaled
        std::vector<double> expected(before.size());
        for (std::size_t e = 0; e < before.size(); ++e) expected[e] = double(before[e]) + 0.3 * double(plain.grad[e]);
        check_all_close(out.grad, expected, std::is_same_v<T, float> ? 1e-5 : 1e-14, 1e-7);
        // Rows of weight 0 keep what was there.
        for (index_t j = 0; j < p.c; ++j)
            CHECK(out.grad[static_cast<std::size_t>(3 * p.c + j)] == before[static_cast<std::size_t>(3 * p.c + j)]);
    }
    outputs<T> out(reduction::batchmean, p.n, p.c, 3);
    auto v = out.views();
    v.grad_scale = std::numeric_limits<T>::infinity();
    check_method_error("multi_teacher", distill::run(distill::multi_teacher_options{}, p.args(), v),
                       errc::invalid_parameter, error_kind::value, "grad_scale", {"grad_scale = inf"});
    CHECK(out.untouched());
}
