// tests/unit/test_support.hpp: what several unit-test files share.
//
// Deterministic random inputs, an independent long-double reference of kd written
// straight from the definition (docs: /work/shared/conformance/METHODS-response.md),
// a host problem that owns its inputs and outputs, and the checks every error test
// makes (code, kind, argument, message fragments).
#pragma once

#include <doctest/doctest.h>

#include <distill/distill.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace distill_test {

using distill::index_t;

/// n values uniform in [lo, hi), the same for a given seed on every platform we build on.
template <class T>
std::vector<T> random_values(std::size_t n, unsigned seed, double lo = -3.0, double hi = 3.0) {
    std::mt19937_64 gen(seed);
    std::vector<T> out(n);
    for (auto& x : out) {
        // Map 53 random bits to [0, 1) ourselves: std::uniform_real_distribution's output is
        // implementation-defined, and these inputs should not depend on the standard library.
        const double u = static_cast<double>(gen() >> 11) * 0x1.0p-53;
        x = static_cast<T>(lo + (hi - lo) * u);
    }
    return out;
}

inline bool contains(const char* text, const char* fragment) {
    return std::string(text).find(fragment) != std::string::npos;
}

/// The status is the expected error of `method`: code, kind, offending argument, the message
/// prefix "<method>: " and message fragments (the argument's name and the sizes involved).
inline void check_method_error(const char* method, const distill::status& s, distill::errc code,
                               distill::error_kind kind, const char* argument,
                               std::initializer_list<const char*> fragments) {
    INFO("message: ", s.message());
    CHECK_FALSE(s.ok());
    CHECK(static_cast<int>(s.code()) == static_cast<int>(code));
    CHECK(static_cast<int>(s.kind()) == static_cast<int>(kind));
    CHECK(std::string(s.argument()) == argument);
    CHECK(std::string(s.message()).rfind(std::string(method) + ": ", 0) == 0);
    for (const char* f : fragments) CHECK_MESSAGE(contains(s.message(), f), "missing fragment: ", f);
}

/// a and b are the same value up to a few units in the last place. Two computations of one
/// quantity along different code paths (a strided and a contiguous layout) are bitwise equal
/// without FMA contraction, and within a few ulp with it (GCC contracts a * b + c under
/// -march=native), so layout tests compare with this instead of ==.
/// `magnitude` is the size of the quantity's typical entries (a gradient entry that is a small
/// difference ps - pt carries the rounding of ps and pt, not of itself).
template <class T>
bool same_value(T a, T b, double magnitude = 0) {
    const double scale =
        std::max({1e-30, magnitude, std::abs(static_cast<double>(a)), std::abs(static_cast<double>(b))});
    return std::abs(static_cast<double>(a) - static_cast<double>(b)) <= 16 * std::numeric_limits<T>::epsilon() * scale;
}

/// check_method_error for kd.
inline void check_error(const distill::status& s, distill::errc code, distill::error_kind kind, const char* argument,
                        std::initializer_list<const char*> fragments) {
    check_method_error("kd", s, code, kind, argument, fragments);
}

/// Central finite differences of a scalar function of x (double precision): the gradient
/// at x with step rel_step * max(1, |x_i|) per coordinate.
template <class F>
std::vector<double> numeric_gradient(F&& f, std::vector<double> x, double rel_step = 1e-6) {
    std::vector<double> g(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double xi = x[i], h = rel_step * std::max(1.0, std::abs(xi));
        x[i] = xi + h;
        const double up = f(x);
        x[i] = xi - h;
        const double down = f(x);
        x[i] = xi;
        g[i] = (up - down) / (2 * h);
    }
    return g;
}

/// Options of the reference (kept apart from distill's so the reference cannot share a bug).
struct reference_options {
    double temperature = 1;
    distill::reduction reduce = distill::reduction::batchmean;
    std::int64_t ignore_index = -100;
    bool standardize = false;
};

struct reference_result {
    std::vector<long double> rows;  ///< w_i L_i (before batchmean's division)
    long double loss = 0;           ///< the reduced loss (none: the sum of rows)
};

/// kd from its definition in long double: log_softmax by a max-shifted log-sum-exp, KL(pt || ps) * T^2.
template <class T>
reference_result kd_reference(const std::vector<T>& student, const std::vector<T>& teacher, index_t n, index_t c,
                              const reference_options& opts, const std::vector<std::int64_t>* labels = nullptr,
                              const std::vector<T>* weight = nullptr) {
    using real = long double;
    const real tau = opts.temperature;
    auto log_softmax = [&](const T* row) {
        std::vector<real> z(row, row + c);
        if (opts.standardize) {
            real mean = 0, m2 = 0;
            for (real v : z) mean += v;
            mean /= static_cast<real>(c);
            for (real v : z) m2 += (v - mean) * (v - mean);
            const real sd = std::sqrt(m2 / static_cast<real>(c - 1));
            for (real& v : z) v = (v - mean) / (real(1e-7) + sd);
        }
        for (real& v : z) v /= tau;
        const real mx = *std::max_element(z.begin(), z.end());
        real sum = 0;
        for (real v : z) sum += std::exp(v - mx);
        const real lse = mx + std::log(sum);
        for (real& v : z) v -= lse;
        return z;
    };
    reference_result r;
    real total_weight = 0, total = 0;
    for (index_t i = 0; i < n; ++i) {
        real w = weight ? static_cast<real>((*weight)[static_cast<std::size_t>(i)]) : real(1);
        if (labels && (*labels)[static_cast<std::size_t>(i)] == opts.ignore_index) w = 0;
        const auto ls = log_softmax(student.data() + i * c);
        const auto lt = log_softmax(teacher.data() + i * c);
        real kl = 0;
        for (index_t k = 0; k < c; ++k) kl += std::exp(lt[k]) * (lt[k] - ls[k]);
        const real row = w * tau * tau * kl;
        r.rows.push_back(row);
        total += row;
        total_weight += w;
    }
    if (opts.reduce == distill::reduction::batchmean) {
        r.loss = total_weight > 0 ? total / total_weight : real(0);
        for (auto& v : r.rows) v = total_weight > 0 ? v / total_weight : real(0);
    } else {
        r.loss = total;
    }
    return r;
}

/// A kd problem on the host: inputs, optional labels and weights, and outputs it owns.
template <class T>
struct host_problem {
    index_t n = 0, c = 0;
    std::vector<T> student, teacher, weight;
    std::vector<std::int64_t> labels;
    bool use_labels = false, use_weight = false;

    host_problem(index_t rows, index_t cols, unsigned seed, double scale = 3.0)
        : n(rows),
          c(cols),
          student(random_values<T>(static_cast<std::size_t>(rows * cols), seed, -scale, scale)),
          teacher(random_values<T>(static_cast<std::size_t>(rows * cols), seed + 1000, -scale, scale)) {}

    /// Labels (row i gets i % c), with the listed rows set to ignore_index.
    host_problem& with_labels(std::initializer_list<index_t> ignored = {}, std::int64_t ignore_index = -100) {
        labels.resize(static_cast<std::size_t>(n));
        for (index_t i = 0; i < n; ++i) labels[static_cast<std::size_t>(i)] = i % c;
        for (index_t i : ignored) labels[static_cast<std::size_t>(i)] = ignore_index;
        use_labels = true;
        return *this;
    }
    host_problem& with_weight(unsigned seed = 77) {
        weight = random_values<T>(static_cast<std::size_t>(n), seed, 0.25, 2.0);
        use_weight = true;
        return *this;
    }

    distill::response_args<T> args() const {
        distill::response_args<T> a{distill::make_view(student.data(), n, c), distill::make_view(teacher.data(), n, c)};
        if (use_labels) a.labels = distill::make_view(labels.data(), n);
        if (use_weight) a.weight = distill::make_view(weight.data(), n);
        return a;
    }

    reference_result reference(const reference_options& opts) const {
        return kd_reference(student, teacher, n, c, opts, use_labels ? &labels : nullptr, use_weight ? &weight : nullptr);
    }
};

/// Outputs of one distill::run on the host, pre-filled with a sentinel so that "nothing written" is checkable.
template <class T>
struct host_outputs {
    static constexpr T sentinel = T(-12345.5);
    std::vector<T> loss, grad, grad_temperature;

    host_outputs(index_t loss_size, index_t n, index_t c)
        : loss(static_cast<std::size_t>(loss_size), sentinel),
          grad(static_cast<std::size_t>(n * c), sentinel),
          grad_temperature(1, sentinel) {}
    host_outputs(distill::reduction red, index_t n, index_t c)
        : host_outputs(red == distill::reduction::none ? n : 1, n, c) {}

    /// loss, N x C grad_student and grad_temperature; each can be left out.
    distill::response_outputs<T> views(index_t n, index_t c, bool want_grad = true, bool want_temperature = true) {
        distill::response_outputs<T> o{distill::make_view(loss.data(), static_cast<index_t>(loss.size()))};
        if (want_grad) o.grad_student = distill::make_view(grad.data(), n, c);
        if (want_temperature) o.grad_temperature = distill::make_view(grad_temperature.data(), 1);
        return o;
    }

    bool untouched() const {
        auto all_sentinel = [](const std::vector<T>& v) {
            return std::all_of(v.begin(), v.end(), [](T x) { return x == sentinel; });
        };
        return all_sentinel(loss) && all_sentinel(grad) && all_sentinel(grad_temperature);
    }

    /// The summed loss (the reduced loss, or the sum of the per-row losses for reduction none).
    double total() const {
        double s = 0;
        for (T v : loss) s += static_cast<double>(v);
        return s;
    }
};

template <class T>
constexpr double tolerance() {
    return std::is_same_v<T, float> ? 2e-5 : 1e-12;
}

/// |a - b| <= rtol * max(|a|, |b|) + atol.
inline bool close(double a, double b, double rtol, double atol = 0) {
    return std::abs(a - b) <= rtol * std::max(std::abs(a), std::abs(b)) + atol;
}

/// "actual 1.2345678901234567 expected ... (difference ...)" for a failed comparison.
inline std::string show(double actual, double expected) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "actual %.17g expected %.17g (difference %.3g)", actual, expected, actual - expected);
    return buf;
}

}  // namespace distill_test

/// CHECK that actual is within rtol (relative) + atol (absolute) of expected, printing both in full.
#define DISTILL_CHECK_CLOSE(actual, expected, rtol, atol)                                                       \
    CHECK_MESSAGE(::distill_test::close(static_cast<double>(actual), static_cast<double>(expected), rtol, atol), \
                  ::distill_test::show(static_cast<double>(actual), static_cast<double>(expected)))

namespace distill_test {

/// Every element of actual is close to expected: one assertion that reports the first mismatch.
template <class A, class B>
void check_all_close(const A& actual, const B& expected, double rtol, double atol) {
    REQUIRE(actual.size() == expected.size());
    std::size_t bad = actual.size();
    for (std::size_t k = 0; k < actual.size() && bad == actual.size(); ++k)
        if (!close(static_cast<double>(actual[k]), static_cast<double>(expected[k]), rtol, atol)) bad = k;
    if (bad == actual.size()) {
        CHECK(bad == actual.size());
    } else {
        CHECK_MESSAGE(bad == actual.size(), "element ", bad, ": ",
                      show(static_cast<double>(actual[bad]), static_cast<double>(expected[bad])));
    }
}

}  // namespace distill_test
