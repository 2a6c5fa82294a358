// tests/unit/schemes/self_distillation.hpp: self-distillation by deep supervision (BYOT,
// include/distill/schemes/self_distillation.hpp); included by schemes_test.cpp. The scheme
// against distill::ce, distill::kd and distill::logit_mse composed by hand, finite differences
// of every exit's logit and feature gradient, the deepest exit (cross-entropy only, teacher
// detached), grad_scale / accumulate, and the error rules with nothing written.
#pragma once

#include <distill/schemes/self_distillation.hpp>

#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <vector>

namespace byot_test {

using distill::index_t;
using distill::reduction;
using distill_test::random_values;

/// K exits' N x C logits and N x E features, N labels (row i: label i % C; `ignored` rows set to
/// ignore_index).
template <class T>
struct exits_problem {
    index_t k = 0, n = 0, c = 0, e = 0;
    std::vector<std::vector<T>> logits, features;
    std::vector<std::int64_t> labels;

    exits_problem(index_t exits, index_t rows, index_t cols, index_t width, unsigned seed,
                  std::initializer_list<index_t> ignored = {})
        : k(exits), n(rows), c(cols), e(width) {
        for (index_t h = 0; h < k; ++h) {
            const unsigned s = seed + 101 * static_cast<unsigned>(h);
            logits.push_back(random_values<T>(static_cast<std::size_t>(n * c), s, -3.0, 3.0));
            features.push_back(random_values<T>(static_cast<std::size_t>(n * e), s + 7, -1.5, 1.5));
        }
        for (index_t i = 0; i < n; ++i) labels.push_back(i % c);
        for (index_t i : ignored) labels[static_cast<std::size_t>(i)] = -100;
    }

    std::vector<distill::any_view<const T>> logit_views() const {
        std::vector<distill::any_view<const T>> v;
        for (const auto& z : logits) v.push_back(distill::make_view(z.data(), n, c));
        return v;
    }
    std::vector<distill::any_view<const T>> feature_views() const {
        std::vector<distill::any_view<const T>> v;
        for (const auto& f : features) v.push_back(distill::make_view(f.data(), n, e));
        return v;
    }
    distill::self_distillation_args<T> args(const std::vector<distill::any_view<const T>>& z,
                                            const std::vector<distill::any_view<const T>>& f) const {
        return {z, distill::make_view(labels.data(), n), f};
    }
};

/// Outputs of one run, pre-filled with a sentinel, and the workspace the call asks for.
template <class T>
struct exits_outputs {
    static constexpr T sentinel = T(-777.25);
    index_t k, n, c, e;
    std::vector<T> loss, heads, terms;
    std::vector<std::vector<T>> grad_logits, grad_features;
    std::vector<distill::any_view<T>> logit_views, feature_views;
    std::vector<std::byte> scratch;

    exits_outputs(index_t exits, index_t rows, index_t cols, index_t width, reduction red)
        : k(exits), n(rows), c(cols), e(width), loss(1, sentinel),
          heads(static_cast<std::size_t>(red == reduction::none ? exits * rows : exits), sentinel),
          terms(static_cast<std::size_t>(3 * exits), sentinel) {
        for (index_t h = 0; h < k; ++h) {
            grad_logits.emplace_back(static_cast<std::size_t>(n * c), sentinel);
            grad_features.emplace_back(static_cast<std::size_t>(n * e), sentinel);
        }
        for (auto& g : grad_logits) logit_views.push_back(distill::make_view(g.data(), n, c));
        for (auto& g : grad_features) feature_views.push_back(distill::make_view(g.data(), n, e));
    }
    distill::self_distillation_outputs<T> views(reduction red, bool with_features = true) {
        distill::self_distillation_outputs<T> o;
        o.loss = distill::make_view(loss.data(), 1);
        o.head_loss = red == reduction::none ? distill::any_view<T>(distill::make_view(heads.data(), k, n))
                                             : distill::any_view<T>(distill::make_view(heads.data(), k));
        o.term_loss = distill::make_view(terms.data(), k, 3);
        o.grad_logits = logit_views;
        if (with_features) o.grad_features = feature_views;
        return o;
    }
    bool untouched() const {
        auto same = [](const std::vector<T>& v) {
            for (T x : v)
                if (x != sentinel) return false;
            return true;
        };
        bool ok = same(loss) && same(heads) && same(terms);
        for (const auto& g : grad_logits) ok = ok && same(g);
        for (const auto& g : grad_features) ok = ok && same(g);
        return ok;
    }
};

/// distill::run with the workspace the call asks for.
template <class T>
distill::status run_sized(const distill::self_distillation_options& opts, const distill::self_distillation_args<T>& args,
                          const distill::self_distillation_outputs<T>& outs, std::vector<std::byte>& scratch) {
    scratch.assign(distill::workspace_bytes(opts, args, outs), std::byte{0});
    return distill::run(opts, args, outs, distill::workspace{scratch.data(), scratch.size()});
}

/// BYOT composed by hand from the convenience objects of ce, kd and logit_mse.
struct composed {
    double loss = 0;
    std::vector<double> heads;                              // reduced per exit (none: summed over rows)
    std::vector<std::vector<double>> head_rows;             // none: per exit, per row
    std::vector<double> terms;                              // K x 3, unweighted (none: summed over rows)
    std::vector<std::vector<double>> grad_logits, grad_features;
};

template <class T>
std::vector<double> as_double(const distill::tensor<T>& t, std::size_t count) {
    return std::vector<double>(t.data(), t.data() + count);
}

template <class T>
composed compose(const exits_problem<T>& p, const distill::self_distillation_options& o, bool with_features) {
    composed out;
    const auto labels = distill::make_view(p.labels.data(), p.n);
    const std::size_t nc = static_cast<std::size_t>(p.n * p.c), ne = static_cast<std::size_t>(p.n * p.e);
    const std::size_t deep = static_cast<std::size_t>(p.k - 1);
    const auto zd = distill::make_view(p.logits[deep].data(), p.n, p.c);
    const auto fd = distill::make_view(p.features[deep].data(), p.n, p.e);
    const bool rows = o.reduce == reduction::none;
    const auto value = [&](const auto& r) {
        double v = static_cast<double>(r.loss);
        return v;
    };
    for (std::size_t k = 0; k <= deep; ++k) {
        const auto zk = distill::make_view(p.logits[k].data(), p.n, p.c);
        distill::ce_options ce_opts;
        ce_opts.reduce = o.reduce;
        const auto ce = distill::ce(zk, labels, ce_opts);
        const double w_ce = 1.0 - o.alpha;
        double head = w_ce * value(ce);
        std::vector<double> g(nc), gf(ne, 0.0), hr(static_cast<std::size_t>(p.n), 0.0);
        for (std::size_t j = 0; j < nc; ++j) g[j] = w_ce * static_cast<double>(ce.grad_student.data()[j]);
        if (rows)
            for (index_t i = 0; i < p.n; ++i) hr[static_cast<std::size_t>(i)] = w_ce * static_cast<double>(ce.row_losses.data()[i]);
        double terms[3] = {value(ce), 0.0, 0.0};
        if (k != deep) {
            distill::kd_options kd_opts;
            kd_opts.temperature = o.temperature;
            kd_opts.reduce = o.reduce;
            const auto kd = distill::kd(zk, zd, labels, kd_opts);  // the deepest exit teaches, detached
            terms[1] = value(kd);
            head += o.alpha * terms[1];
            for (std::size_t j = 0; j < nc; ++j) g[j] += o.alpha * static_cast<double>(kd.grad_student.data()[j]);
            if (rows)
                for (index_t i = 0; i < p.n; ++i)
                    hr[static_cast<std::size_t>(i)] += o.alpha * static_cast<double>(kd.row_losses.data()[i]);
            if (with_features) {
                distill::logit_mse_options mse_opts;
                mse_opts.reduce = o.reduce;
                // Rows with ignore_index weigh 0 (logit_mse would check labels against E, not C).
                std::vector<T> counted(static_cast<std::size_t>(p.n));
                for (std::size_t i = 0; i < counted.size(); ++i) counted[i] = p.labels[i] == -100 ? T(0) : T(1);
                const auto mse = distill::logit_mse(distill::make_view(p.features[k].data(), p.n, p.e), fd, distill::none,
                                                    distill::make_view(counted.data(), p.n), mse_opts);
                terms[2] = value(mse);
                head += o.feature_weight * terms[2];
                for (std::size_t j = 0; j < ne; ++j) gf[j] = o.feature_weight * static_cast<double>(mse.grad_student.data()[j]);
                if (rows)
                    for (index_t i = 0; i < p.n; ++i)
                        hr[static_cast<std::size_t>(i)] += o.feature_weight * static_cast<double>(mse.row_losses.data()[i]);
            }
        }
        out.loss += head;
        out.heads.push_back(head);
        out.head_rows.push_back(hr);
        for (double t : terms) out.terms.push_back(t);
        out.grad_logits.push_back(g);
        out.grad_features.push_back(gf);
    }
    return out;
}

inline distill::self_distillation_options options(double temperature, double alpha, double feature_weight, reduction red) {
    distill::self_distillation_options o;
    o.temperature = temperature;
    o.alpha = alpha;
    o.feature_weight = feature_weight;
    o.reduce = red;
    return o;
}

}  // namespace byot_test

TEST_CASE_TEMPLATE("self_distillation: equals ce, kd to the deepest exit and logit_mse on features, composed by hand", T,
                   float, double) {
    using namespace byot_test;
    const double rtol = std::is_same_v<T, float> ? 3e-5 : 1e-12;
    const double atol = std::is_same_v<T, float> ? 3e-6 : 1e-14;
    for (index_t k : {2, 3, 4})
        for (double temperature : {1.0, 3.0})
            for (double alpha : {0.1, 0.6, 1.0})
                for (double lambda : {0.05, 2.0})
                    for (bool with_features : {true, false})
                        for (reduction red : {reduction::batchmean, reduction::sum, reduction::none}) {
                            INFO("K = ", k, " T = ", temperature, " alpha = ", alpha, " lambda = ", lambda,
                                 " features ", with_features, " reduction ", std::string(distill::to_string(red)));
                            const exits_problem<T> p(k, 6, 7, 5, 17 + static_cast<unsigned>(k), {1, 4});
                            const auto o = options(temperature, alpha, lambda, red);
                            const composed want = compose(p, o, with_features);
                            const auto z = p.logit_views();
                            const auto f = with_features ? p.feature_views() : std::vector<distill::any_view<const T>>{};
                            exits_outputs<T> out(k, p.n, p.c, p.e, red);
                            const distill::status s = run_sized(o, p.args(z, f), out.views(red, with_features), out.scratch);
                            REQUIRE_MESSAGE(s.ok(), s.message());
                            DISTILL_CHECK_CLOSE(out.loss[0], want.loss, rtol, atol);
                            distill_test::check_all_close(out.terms, want.terms, rtol, atol);
                            for (index_t h = 0; h < k; ++h) {
                                const auto sh = static_cast<std::size_t>(h);
                                INFO("exit ", h);
                                if (red == reduction::none) {
                                    const std::vector<T> rows(out.heads.begin() + h * p.n, out.heads.begin() + (h + 1) * p.n);
                                    distill_test::check_all_close(rows, want.head_rows[sh], rtol, atol);
                                } else {
                                    DISTILL_CHECK_CLOSE(out.heads[sh], want.heads[sh], rtol, atol);
                                }
                                distill_test::check_all_close(out.grad_logits[sh], want.grad_logits[sh], rtol, atol);
                                if (with_features)
                                    distill_test::check_all_close(out.grad_features[sh], want.grad_features[sh], rtol, atol);
                                else
                                    for (T g : out.grad_features[sh]) CHECK(g == exits_outputs<T>::sentinel);
                            }
                            // The convenience object on the same inputs.
                            const auto labels = distill::make_view(p.labels.data(), p.n);
                            const auto r = with_features ? distill::self_distillation(z, f, labels, o)
                                                         : distill::self_distillation(z, labels, o);
                            REQUIRE(r.status.ok());
                            DISTILL_CHECK_CLOSE(r.loss, want.loss, rtol, atol);
                            REQUIRE(r.head_loss.size() == static_cast<std::size_t>(k));
                            REQUIRE(r.grad_logits.size() == static_cast<std::size_t>(k));
                            REQUIRE(r.grad_features.size() == (with_features ? static_cast<std::size_t>(k) : 0u));
                            distill_test::check_all_close(r.term_loss, want.terms, rtol, atol);
                            for (index_t h = 0; h < k; ++h) {
                                const auto sh = static_cast<std::size_t>(h);
                                DISTILL_CHECK_CLOSE(r.head_loss[sh], want.heads[sh], rtol, atol);
                                const std::vector<T> g(r.grad_logits[sh].data(), r.grad_logits[sh].data() + p.n * p.c);
                                CHECK(g == out.grad_logits[sh]);
                                if (with_features) {
                                    const std::vector<T> gf(r.grad_features[sh].data(), r.grad_features[sh].data() + p.n * p.e);
                                    CHECK(gf == out.grad_features[sh]);
                                }
                            }
                            CHECK(r.row_losses.size() == (red == reduction::none ? k * p.n : 0));
                        }
}

TEST_CASE("self_distillation: every shallow exit's gradients match finite differences of the total loss") {
    using namespace byot_test;
    for (reduction red : {reduction::batchmean, reduction::sum, reduction::none})
        for (double temperature : {1.0, 3.0}) {
            INFO("T = ", temperature, " reduction ", std::string(distill::to_string(red)));
            const exits_problem<double> p(3, 4, 5, 3, 29, {2});
            const auto o = options(temperature, 0.3, 0.7, red);
            const auto z = p.logit_views(), f = p.feature_views();
            exits_outputs<double> out(3, p.n, p.c, p.e, red);
            REQUIRE(run_sized(o, p.args(z, f), out.views(red), out.scratch).ok());
            // The total loss (every exit, every row) as a function of one exit's logits or features.
            const auto total_of = [&](std::size_t k, bool feature, const std::vector<double>& x) {
                exits_problem<double> q = p;
                (feature ? q.features : q.logits)[k] = x;
                const auto zq = q.logit_views(), fq = q.feature_views();
                exits_outputs<double> o2(3, q.n, q.c, q.e, red);
                REQUIRE(run_sized(o, q.args(zq, fq), o2.views(red), o2.scratch).ok());
                return o2.loss[0];
            };
            for (std::size_t k = 0; k < 2; ++k) {  // the shallow exits: every term of z_k and F_k is differentiated
                INFO("exit ", k);
                const auto dz = distill_test::numeric_gradient([&](const std::vector<double>& x) { return total_of(k, false, x); },
                                                               p.logits[k]);
                distill_test::check_all_close(out.grad_logits[k], dz, 1e-6, 1e-8);
                const auto df = distill_test::numeric_gradient([&](const std::vector<double>& x) { return total_of(k, true, x); },
                                                               p.features[k]);
                distill_test::check_all_close(out.grad_features[k], df, 1e-6, 1e-8);
                // The ignored row has no gradient in any term.
                for (index_t c = 0; c < p.c; ++c) CHECK(out.grad_logits[k][static_cast<std::size_t>(2 * p.c + c)] == 0.0);
                for (index_t j = 0; j < p.e; ++j) CHECK(out.grad_features[k][static_cast<std::size_t>(2 * p.e + j)] == 0.0);
            }
        }
}

TEST_CASE("self_distillation: the deepest exit gets (1 - alpha) times its cross-entropy gradient, its teacher role detached") {
    using namespace byot_test;
    const exits_problem<double> p(3, 5, 4, 3, 47);
    const auto o = options(2.0, 0.25, 1.5, reduction::batchmean);
    const auto z = p.logit_views(), f = p.feature_views();
    exits_outputs<double> out(3, p.n, p.c, p.e, reduction::batchmean);
    REQUIRE(run_sized(o, p.args(z, f), out.views(reduction::batchmean), out.scratch).ok());
    // Finite differences of the deepest exit's own loss L_D (its head_loss entry), not of the
    // total: the total also moves with z_D through the shallow exits' KL terms, which the scheme
    // detaches.
    const auto own_loss = [&](const std::vector<double>& x) {
        exits_problem<double> q = p;
        q.logits[2] = x;
        const auto zq = q.logit_views(), fq = q.feature_views();
        exits_outputs<double> o2(3, q.n, q.c, q.e, reduction::batchmean);
        REQUIRE(run_sized(o, q.args(zq, fq), o2.views(reduction::batchmean), o2.scratch).ok());
        return o2.heads[2];
    };
    distill_test::check_all_close(out.grad_logits[2], distill_test::numeric_gradient(own_loss, p.logits[2]), 1e-6, 1e-8);
    // (1 - alpha) times ce's gradient (to rounding: the scale is applied inside the kernel), no feature gradient.
    const auto ce = distill::ce(distill::make_view(p.logits[2].data(), p.n, p.c), distill::make_view(p.labels.data(), p.n));
    for (std::size_t j = 0; j < out.grad_logits[2].size(); ++j)
        DISTILL_CHECK_CLOSE(out.grad_logits[2][j], 0.75 * ce.grad_student.data()[j], 1e-12, 1e-15);  // to rounding
    for (double g : out.grad_features[2]) CHECK(g == 0.0);
    CHECK(out.terms[7] == 0.0);  // L_D has no KL and no hint term
    CHECK(out.terms[8] == 0.0);
    // The total does depend on z_D through the KL terms: its finite differences differ from the
    // reported gradient (the teacher is detached, not absent).
    const auto total = [&](const std::vector<double>& x) {
        exits_problem<double> q = p;
        q.logits[2] = x;
        const auto zq = q.logit_views(), fq = q.feature_views();
        exits_outputs<double> o2(3, q.n, q.c, q.e, reduction::batchmean);
        REQUIRE(run_sized(o, q.args(zq, fq), o2.views(reduction::batchmean), o2.scratch).ok());
        return o2.loss[0];
    };
    const auto through_teacher = distill_test::numeric_gradient(total, p.logits[2]);
    double difference = 0;
    for (std::size_t j = 0; j < through_teacher.size(); ++j) difference += std::abs(through_teacher[j] - out.grad_logits[2][j]);
    CHECK(difference > 1e-3);
    // With alpha = 1 the deepest exit gets no gradient at all (and its logits buffer is zeroed).
    exits_outputs<double> all_kl(3, p.n, p.c, p.e, reduction::batchmean);
    REQUIRE(run_sized(options(2.0, 1.0, 1.5, reduction::batchmean), p.args(z, f), all_kl.views(reduction::batchmean),
                      all_kl.scratch).ok());
    for (double g : all_kl.grad_logits[2]) CHECK(g == 0.0);
    CHECK(all_kl.heads[2] == 0.0);
}

TEST_CASE_TEMPLATE("self_distillation: grad_scale scales every gradient and accumulate adds into the buffers", T, float, double) {
    using namespace byot_test;
    const double rtol = distill_test::tolerance<T>();
    const exits_problem<T> p(3, 4, 6, 5, 59, {0});
    const auto o = options(3.0, 0.4, 0.8, reduction::batchmean);
    const auto z = p.logit_views(), f = p.feature_views();
    exits_outputs<T> plain(3, p.n, p.c, p.e, reduction::batchmean), scaled(3, p.n, p.c, p.e, reduction::batchmean);
    REQUIRE(run_sized(o, p.args(z, f), plain.views(reduction::batchmean), plain.scratch).ok());
    // Every buffer starts from a known pattern; accumulate adds -0.5 times the gradient to it.
    const auto pattern = [](std::size_t j) { return T(0.25) * T(j % 7) - T(0.5); };
    for (auto* list : {&scaled.grad_logits, &scaled.grad_features})
        for (auto& g : *list)
            for (std::size_t j = 0; j < g.size(); ++j) g[j] = pattern(j);
    auto views = scaled.views(reduction::batchmean);
    views.grad_scale = T(-0.5);
    views.accumulate = true;
    REQUIRE(run_sized(o, p.args(z, f), views, scaled.scratch).ok());
    DISTILL_CHECK_CLOSE(scaled.loss[0], plain.loss[0], rtol, 0);  // the loss is not scaled
    for (std::size_t k = 0; k < 3; ++k) {
        std::vector<T> want(plain.grad_logits[k].size()), want_f(plain.grad_features[k].size());
        for (std::size_t j = 0; j < want.size(); ++j) want[j] = pattern(j) + T(-0.5) * plain.grad_logits[k][j];
        for (std::size_t j = 0; j < want_f.size(); ++j) want_f[j] = pattern(j) + T(-0.5) * plain.grad_features[k][j];
        distill_test::check_all_close(scaled.grad_logits[k], want, rtol * 10, rtol);
        distill_test::check_all_close(scaled.grad_features[k], want_f, rtol * 10, rtol);  // the deepest: left as it was
    }
    // Without accumulate the buffers are overwritten, whatever they held.
    views.accumulate = false;
    views.grad_scale = T(2);
    REQUIRE(run_sized(o, p.args(z, f), views, scaled.scratch).ok());
    for (std::size_t k = 0; k < 3; ++k) {
        std::vector<T> want(plain.grad_logits[k].size()), want_f(plain.grad_features[k].size());
        for (std::size_t j = 0; j < want.size(); ++j) want[j] = T(2) * plain.grad_logits[k][j];
        for (std::size_t j = 0; j < want_f.size(); ++j) want_f[j] = T(2) * plain.grad_features[k][j];
        distill_test::check_all_close(scaled.grad_logits[k], want, rtol * 10, rtol);
        distill_test::check_all_close(scaled.grad_features[k], want_f, rtol * 10, rtol);
    }
}

TEST_CASE("self_distillation: partial outputs give the same values; the CPU needs workspace only for reduction none") {
    using namespace byot_test;
    const exits_problem<double> p(3, 4, 5, 2, 67);
    const auto z = p.logit_views(), f = p.feature_views();
    for (reduction red : {reduction::batchmean, reduction::none}) {
        const auto o = options(2.0, 0.5, 1.0, red);
        exits_outputs<double> all(3, p.n, p.c, p.e, red), some(3, p.n, p.c, p.e, red);
        REQUIRE(run_sized(o, p.args(z, f), all.views(red), all.scratch).ok());
        // N = 4 doubles of row weights for the features (and 4 of row losses for none), rounded to 64 bytes.
        CHECK(distill::workspace_bytes(o, p.args(z, f), all.views(red)) == 64u);
        CHECK(distill::workspace_bytes(o, p.args(z, {}), all.views(red, false)) == (red == reduction::none ? 64u : 0u));
        auto views = some.views(red);
        views.head_loss = {};
        views.term_loss = {};
        std::vector<distill::any_view<double>> grads = some.logit_views;
        grads[1] = {};
        views.grad_logits = grads;
        views.grad_features = {};
        REQUIRE(run_sized(o, p.args(z, f), views, some.scratch).ok());
        CHECK(some.loss[0] == all.loss[0]);
        CHECK(some.grad_logits[0] == all.grad_logits[0]);
        CHECK(some.grad_logits[2] == all.grad_logits[2]);
        for (double g : some.grad_logits[1]) CHECK(g == exits_outputs<double>::sentinel);
    }
}

TEST_CASE("self_distillation: errors name the argument and the sizes, and nothing is written") {
    using namespace byot_test;
    using distill::errc;
    using distill::error_kind;
    const reduction red = reduction::batchmean;
    const exits_problem<double> p(3, 3, 5, 4, 71);
    const auto z = p.logit_views(), f = p.feature_views();
    const auto expect = [&](const distill::self_distillation_options& o, const distill::self_distillation_args<double>& args,
                            exits_outputs<double>& out, const distill::self_distillation_outputs<double>& views, errc code,
                            error_kind kind, const char* argument, std::initializer_list<const char*> fragments) {
        std::vector<std::byte> scratch(256);
        const distill::status s = distill::run(o, args, views, distill::workspace{scratch.data(), scratch.size()});
        INFO("message: ", std::string(s.message()));
        distill_test::check_method_error("self_distillation", s, code, kind, argument, fragments);
        CHECK(out.untouched());
    };
    const auto o = options(3.0, 0.1, 0.05, red);
    {  // one exit
        exits_outputs<double> out(3, p.n, p.c, p.e, red);
        const std::vector<distill::any_view<const double>> one(z.begin(), z.begin() + 1);
        auto views = out.views(red, false);
        views.grad_logits = {};
        views.head_loss = {};
        views.term_loss = {};
        expect(o, p.args(one, {}), out, views, errc::missing_argument, error_kind::shape, "logits",
               {"logits has 1 entry but", "at least 2 exits"});
    }
    {  // logits of another shape, rank, unbound
        exits_outputs<double> out(3, p.n, p.c, p.e, red);
        auto bad = z;
        bad[0] = distill::make_view(p.logits[0].data(), 3, 4);
        expect(o, p.args(bad, f), out, out.views(red), errc::shape_mismatch, error_kind::shape, "logits",
               {"logits[0] has shape [3, 4] but the deepest exit's logits[2] has shape [3, 5]"});
        bad = z;
        bad[1] = distill::make_view(p.logits[1].data(), 5, 3);
        expect(o, p.args(bad, f), out, out.views(red), errc::shape_mismatch, error_kind::shape, "logits",
               {"logits[1] has shape [5, 3] but the exits have N = 3 rows"});
        bad = z;
        bad[2] = distill::make_view(p.logits[2].data(), 15);
        expect(o, p.args(bad, f), out, out.views(red), errc::bad_rank, error_kind::shape, "logits", {"logits[2] has shape [15]", "2-D"});
        bad = z;
        bad[1] = {};
        expect(o, p.args(bad, f), out, out.views(red), errc::missing_argument, error_kind::shape, "logits", {"logits[1] is unbound"});
    }
    {  // features: count, shape
        exits_outputs<double> out(3, p.n, p.c, p.e, red);
        const std::vector<distill::any_view<const double>> two(f.begin(), f.begin() + 2);
        expect(o, p.args(z, two), out, out.views(red), errc::shape_mismatch, error_kind::shape, "features",
               {"features has 2 entries but there are 3 exits"});
        auto bad = f;
        bad[1] = distill::make_view(p.features[1].data(), 3, 3);
        expect(o, p.args(z, bad), out, out.views(red), errc::shape_mismatch, error_kind::shape, "features",
               {"features[1] has shape [3, 3] but the deepest exit's features[2] has shape [3, 4]"});
        bad = f;
        bad[0] = distill::make_view(p.features[0].data(), 2, 4);
        expect(o, p.args(z, bad), out, out.views(red), errc::shape_mismatch, error_kind::shape, "features",
               {"features[0] has shape [2, 4] but the exits have N = 3 rows"});
    }
    {  // labels: missing, wrong length, out of range
        exits_outputs<double> out(3, p.n, p.c, p.e, red);
        auto args = p.args(z, f);
        args.labels = {};
        expect(o, args, out, out.views(red), errc::missing_argument, error_kind::shape, "labels", {"labels are required"});
        args.labels = distill::make_view(p.labels.data(), 2);
        expect(o, args, out, out.views(red), errc::shape_mismatch, error_kind::shape, "labels", {"[2]", "[3]"});
        std::vector<std::int64_t> wrong = p.labels;
        wrong[2] = 5;
        args.labels = distill::make_view(wrong.data(), 3);
        expect(o, args, out, out.views(red), errc::label_out_of_range, error_kind::value, "labels", {"labels[2] = 5", "[0, 5)"});
    }
    {  // parameters
        exits_outputs<double> out(3, p.n, p.c, p.e, red);
        expect(options(0.0, 0.1, 0.05, red), p.args(z, f), out, out.views(red), errc::invalid_parameter, error_kind::value,
               "temperature", {"temperature = 0"});
        expect(options(3.0, 1.5, 0.05, red), p.args(z, f), out, out.views(red), errc::invalid_parameter, error_kind::value,
               "alpha", {"alpha = 1.5", "is outside [0"});
        expect(options(3.0, 0.1, -1.0, red), p.args(z, f), out, out.views(red), errc::invalid_parameter, error_kind::value,
               "feature_weight", {"feature_weight = -1"});
        expect(options(3.0, 0.1, std::numeric_limits<double>::infinity(), red), p.args(z, f), out, out.views(red),
               errc::invalid_parameter, error_kind::value, "feature_weight", {"feature_weight = inf"});
        expect(options(3.0, 0.1, 0.05, static_cast<reduction>(9)), p.args(z, f), out, out.views(red), errc::unknown_reduction,
               error_kind::value, "reduction", {"reduction = 9"});
        auto views = out.views(red);
        views.grad_scale = std::numeric_limits<double>::quiet_NaN();
        expect(o, p.args(z, f), out, views, errc::invalid_parameter, error_kind::value, "grad_scale", {"grad_scale = nan"});
    }
    {  // outputs
        exits_outputs<double> out(3, p.n, p.c, p.e, red);
        auto views = out.views(red);
        views.loss = {};
        expect(o, p.args(z, f), out, views, errc::missing_argument, error_kind::shape, "loss", {"loss is required"});
        views = out.views(red);
        views.head_loss = distill::make_view(out.heads.data(), 2);
        expect(o, p.args(z, f), out, views, errc::shape_mismatch, error_kind::shape, "head_loss", {"output head_loss has shape [2] but must hold 3 values (one per exit)"});
        views = out.views(red);  // K values where none needs K x N
        expect(options(3.0, 0.1, 0.05, reduction::none), p.args(z, f), out, views, errc::shape_mismatch, error_kind::shape,
               "head_loss", {"[3, 3] (exits x rows)"});
        views = out.views(red);
        views.term_loss = distill::make_view(out.terms.data(), 3, 2);
        expect(o, p.args(z, f), out, views, errc::shape_mismatch, error_kind::shape, "term_loss", {"[3, 2]", "[3, 3]"});
        views = out.views(red);
        views.grad_logits = std::span<const distill::any_view<double>>(out.logit_views.data(), 2);
        expect(o, p.args(z, f), out, views, errc::shape_mismatch, error_kind::shape, "grad_logits",
               {"grad_logits has 2 entries but there are 3 logits"});
        std::vector<distill::any_view<double>> grads = out.feature_views;
        grads[0] = distill::make_view(out.grad_features[0].data(), 4, 3);
        views = out.views(red);
        views.grad_features = grads;
        expect(o, p.args(z, f), out, views, errc::shape_mismatch, error_kind::shape, "grad_features",
               {"output grad_features[0] has shape [4, 3] but features[0] has shape [3, 4]"});
        views = out.views(red);
        expect(o, p.args(z, {}), out, views, errc::invalid_parameter, error_kind::value, "grad_features",
               {"no features"});
    }
    {  // aliasing: an output over an input, two outputs over each other
        exits_outputs<double> out(3, p.n, p.c, p.e, red);
        std::vector<double> shared = p.logits[2];
        auto in = z;
        in[2] = distill::make_view(shared.data(), 3, 5);
        std::vector<distill::any_view<double>> grads = out.logit_views;
        grads[0] = distill::make_view(shared.data(), 3, 5);
        auto views = out.views(red);
        views.grad_logits = grads;
        expect(o, p.args(in, f), out, views, errc::aliasing, error_kind::usage, "grad_logits",
               {"output grad_logits[0] overlaps input logits[2]"});
        std::vector<distill::any_view<double>> fgrads = out.feature_views;
        fgrads[1] = distill::make_view(out.grad_logits[2].data(), 3, 4);
        views = out.views(red);
        views.grad_features = fgrads;
        expect(o, p.args(z, f), out, views, errc::aliasing, error_kind::usage, "grad_logits",
               {"output grad_logits[2] overlaps output grad_features[1]"});
        views = out.views(red);
        views.loss = distill::make_view(out.terms.data() + 4, 1);
        expect(o, p.args(z, f), out, views, errc::aliasing, error_kind::usage, "loss", {"output loss overlaps output term_loss"});
    }
    {  // reduction none without its workspace
        exits_outputs<double> out(3, p.n, p.c, p.e, reduction::none);
        const distill::status s = distill::run(options(3.0, 0.1, 0.05, reduction::none), p.args(z, f), out.views(reduction::none));
        distill_test::check_method_error("self_distillation", s, errc::workspace_too_small, error_kind::usage, "workspace",
                                         {"0 bytes", "needs 64"});
        CHECK(out.untouched());
    }
#if DISTILL_HAS_EXCEPTIONS
    const std::vector<distill::any_view<const double>> one(z.begin(), z.begin() + 1);
    CHECK_THROWS_AS(distill::self_distillation(one, distill::make_view(p.labels.data(), p.n)), distill::error);
#endif
}
