// tests/unit/schemes/mutual.hpp: deep mutual learning (include/distill/schemes/mutual.hpp);
// included by schemes_test.cpp. DML against a composition of distill::ce and distill::kd, finite
// differences of every peer's gradient, float against double, masked classes, and the error
// rules with nothing written.
#pragma once

#include <distill/schemes/mutual.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace dml_test {

using distill::index_t;
using distill::reduction;
using distill_test::random_values;

/// K peers' N x C logits and N labels (row i: label i % C, `ignored` rows set to ignore_index).
template <class T>
struct peers_problem {
    index_t k = 0, n = 0, c = 0;
    std::vector<std::vector<T>> logits;
    std::vector<std::int64_t> labels;

    peers_problem(index_t peers, index_t rows, index_t cols, unsigned seed, std::initializer_list<index_t> ignored = {},
                  double scale = 3.0)
        : k(peers), n(rows), c(cols) {
        for (index_t p = 0; p < k; ++p)
            logits.push_back(random_values<T>(static_cast<std::size_t>(n * c), seed + 101 * static_cast<unsigned>(p), -scale, scale));
        for (index_t i = 0; i < n; ++i) labels.push_back(i % c);
        for (index_t i : ignored) labels[static_cast<std::size_t>(i)] = -100;
    }

    std::vector<distill::any_view<const T>> views() const {
        std::vector<distill::any_view<const T>> v;
        for (const auto& z : logits) v.push_back(distill::make_view(z.data(), n, c));
        return v;
    }
    distill::dml_args<T> args(const std::vector<distill::any_view<const T>>& v) const {
        return {v, distill::make_view(labels.data(), n)};
    }
};

/// Outputs of one run, pre-filled with a sentinel.
template <class T>
struct peers_outputs {
    static constexpr T sentinel = T(-777.25);
    index_t k, n, c;
    std::vector<T> loss, total;
    std::vector<std::vector<T>> grads;
    std::vector<distill::any_view<T>> grad_views;

    peers_outputs(index_t peers, index_t rows, index_t cols, reduction red)
        : k(peers), n(rows), c(cols), loss(static_cast<std::size_t>(red == reduction::none ? peers * rows : peers), sentinel),
          total(1, sentinel) {
        for (index_t p = 0; p < k; ++p) grads.emplace_back(static_cast<std::size_t>(n * c), sentinel);
        for (auto& g : grads) grad_views.push_back(distill::make_view(g.data(), n, c));
    }
    distill::dml_outputs<T> views(reduction red) {
        distill::dml_outputs<T> o;
        o.loss = red == reduction::none ? distill::any_view<T>(distill::make_view(loss.data(), k, n))
                                        : distill::any_view<T>(distill::make_view(loss.data(), k));
        o.total = distill::make_view(total.data(), 1);
        o.grad_peers = grad_views;
        return o;
    }
    bool untouched() const {
        auto same = [](const std::vector<T>& v) {
            for (T x : v)
                if (x != sentinel) return false;
            return true;
        };
        bool ok = same(loss) && same(total);
        for (const auto& g : grads) ok = ok && same(g);
        return ok;
    }
};

/// L_k and dL_k/dz_k composed by hand from distill::ce and distill::kd (peer l as kd's teacher).
template <class T>
struct composed {
    std::vector<double> loss;                 // reduced per peer (none: the sum of rows)
    std::vector<std::vector<double>> rows;    // none: per peer, per row
    std::vector<std::vector<double>> grads;   // per peer, N x C
};

template <class T>
composed<T> compose(const peers_problem<T>& p, double temperature, double kl_weight, reduction red) {
    composed<T> out;
    const auto labels = distill::make_view(p.labels.data(), p.n);
    for (index_t k = 0; k < p.k; ++k) {
        const auto zk = distill::make_view(p.logits[static_cast<std::size_t>(k)].data(), p.n, p.c);
        distill::ce_options ce_opts;
        ce_opts.reduce = red;
        const auto ce = distill::ce(zk, labels, ce_opts);
        double loss = static_cast<double>(ce.loss);
        std::vector<double> grad(ce.grad_student.data(), ce.grad_student.data() + p.n * p.c);
        std::vector<double> rows(static_cast<std::size_t>(p.n), 0.0);
        if (red == reduction::none)
            for (index_t i = 0; i < p.n; ++i) rows[static_cast<std::size_t>(i)] = static_cast<double>(ce.row_losses.data()[i]);
        const double share = kl_weight / static_cast<double>(p.k - 1);
        for (index_t l = 0; l < p.k; ++l) {
            if (l == k) continue;
            const auto zl = distill::make_view(p.logits[static_cast<std::size_t>(l)].data(), p.n, p.c);
            distill::kd_options kd_opts;
            kd_opts.temperature = temperature;
            kd_opts.reduce = red;
            const auto kd = distill::kd(zk, zl, labels, kd_opts);  // peer l teaches peer k, detached
            loss += share * static_cast<double>(kd.loss);
            for (std::size_t e = 0; e < grad.size(); ++e) grad[e] += share * static_cast<double>(kd.grad_student.data()[e]);
            if (red == reduction::none)
                for (index_t i = 0; i < p.n; ++i)
                    rows[static_cast<std::size_t>(i)] += share * static_cast<double>(kd.row_losses.data()[i]);
        }
        out.loss.push_back(loss);
        out.grads.push_back(grad);
        out.rows.push_back(rows);
    }
    return out;
}

inline distill::dml_options options(double temperature, double kl_weight, reduction red) {
    distill::dml_options o;
    o.temperature = temperature;
    o.kl_weight = kl_weight;
    o.reduce = red;
    return o;
}

}  // namespace dml_test

TEST_CASE_TEMPLATE("dml: equals cross-entropy plus the mean of kd terms to the other peers", T, float, double) {
    using namespace dml_test;
    const double rtol = std::is_same_v<T, float> ? 2e-5 : 1e-12;
    const double atol = std::is_same_v<T, float> ? 2e-6 : 1e-14;
    for (index_t k : {2, 3, 5})
        for (double temperature : {1.0, 2.5, 0.7})
            for (double kl_weight : {1.0, 0.3})
                for (reduction red : {reduction::batchmean, reduction::sum, reduction::none}) {
                    INFO("K = ", k, " T = ", temperature, " kl_weight = ", kl_weight, " reduction ",
                         std::string(distill::to_string(red)));
                    const peers_problem<T> p(k, 6, 7, 11 + static_cast<unsigned>(k), {2, 5});
                    const composed<T> want = compose(p, temperature, kl_weight, red);
                    // The run step on caller outputs.
                    const auto in = p.views();
                    peers_outputs<T> out(k, p.n, p.c, red);
                    const distill::status s = distill::run(options(temperature, kl_weight, red), p.args(in), out.views(red));
                    REQUIRE_MESSAGE(s.ok(), s.message());
                    double total = 0;
                    for (index_t q = 0; q < k; ++q) {
                        const auto sq = static_cast<std::size_t>(q);
                        if (red == reduction::none) {
                            const std::vector<T> rows(out.loss.begin() + q * p.n, out.loss.begin() + (q + 1) * p.n);
                            distill_test::check_all_close(rows, want.rows[sq], rtol, atol);
                        } else {
                            DISTILL_CHECK_CLOSE(out.loss[sq], want.loss[sq], rtol, atol);
                        }
                        distill_test::check_all_close(out.grads[sq], want.grads[sq], rtol, atol);
                        total += want.loss[sq];
                    }
                    DISTILL_CHECK_CLOSE(out.total[0], total, rtol, atol);
                    // The convenience object on the same inputs.
                    const auto r = distill::dml(in, distill::make_view(p.labels.data(), p.n), options(temperature, kl_weight, red));
                    REQUIRE(r.peer_loss.size() == static_cast<std::size_t>(k));
                    for (index_t q = 0; q < k; ++q) {
                        const auto sq = static_cast<std::size_t>(q);
                        DISTILL_CHECK_CLOSE(r.peer_loss[sq], want.loss[sq], rtol, atol);
                        const std::vector<T> g(r.grad_peers[sq].data(), r.grad_peers[sq].data() + p.n * p.c);
                        CHECK(g == out.grads[sq]);
                    }
                    DISTILL_CHECK_CLOSE(r.total, total, rtol, atol);
                    CHECK(r.row_losses.size() == (red == reduction::none ? k * p.n : 0));
                }
}

TEST_CASE("dml: every peer's gradient matches finite differences of its own loss") {
    using namespace dml_test;
    for (reduction red : {reduction::batchmean, reduction::sum})
        for (double temperature : {1.0, 3.0}) {
            INFO("T = ", temperature, " reduction ", std::string(distill::to_string(red)));
            const peers_problem<double> p(3, 4, 5, 29, {1});
            const auto opts = options(temperature, 0.8, red);
            const auto in = p.views();
            peers_outputs<double> out(3, p.n, p.c, red);
            REQUIRE(distill::run(opts, p.args(in), out.views(red)).ok());
            for (index_t k = 0; k < p.k; ++k) {
                INFO("peer ", k);
                const auto sk = static_cast<std::size_t>(k);
                // L_k as a function of z_k alone (the other peers are constants: detached).
                const auto loss_of = [&](const std::vector<double>& zk) {
                    peers_problem<double> q = p;
                    q.logits[sk] = zk;
                    const auto views = q.views();
                    peers_outputs<double> o(3, q.n, q.c, red);
                    REQUIRE(distill::run(opts, q.args(views), o.views(red)).ok());
                    return o.loss[sk];
                };
                const auto numeric = distill_test::numeric_gradient(loss_of, p.logits[sk]);
                distill_test::check_all_close(out.grads[sk], numeric, 1e-6, 1e-8);
                // The ignored row has no gradient.
                for (index_t c = 0; c < p.c; ++c) CHECK(out.grads[sk][static_cast<std::size_t>(p.c + c)] == 0.0);
            }
        }
}

TEST_CASE("dml: float agrees with double; large logits stay finite") {
    using namespace dml_test;
    for (double scale : {3.0, 1000.0}) {
        INFO("logit scale ", scale);
        const peers_problem<double> pd(3, 5, 9, 41, {}, scale);
        peers_problem<float> pf(3, 5, 9, 41, {}, scale);
        for (std::size_t k = 0; k < 3; ++k)
            for (std::size_t e = 0; e < pd.logits[k].size(); ++e) pf.logits[k][e] = static_cast<float>(pd.logits[k][e]);
        const auto opts = options(2.0, 1.0, reduction::batchmean);
        const auto rd = distill::dml(pd.views(), distill::make_view(pd.labels.data(), pd.n), opts);
        const auto rf = distill::dml(pf.views(), distill::make_view(pf.labels.data(), pf.n), opts);
        for (std::size_t k = 0; k < 3; ++k) {
            CHECK(std::isfinite(rf.peer_loss[k]));
            // Float rounds the logits themselves at ~1e-4 when they are ~1e3; the losses scale with them.
            DISTILL_CHECK_CLOSE(rf.peer_loss[k], rd.peer_loss[k], 1e-5, 1e-7 * scale);
            const std::vector<double> gd(rd.grad_peers[k].data(), rd.grad_peers[k].data() + 45);
            const std::vector<float> gf(rf.grad_peers[k].data(), rf.grad_peers[k].data() + 45);
            distill_test::check_all_close(gf, gd, 1e-4, 1e-5);
        }
    }
}

TEST_CASE_TEMPLATE("dml: a class masked (-inf) in every peer is the same as the class left out", T, float, double) {
    using namespace dml_test;
    const index_t n = 4, c = 6, masked = 3;
    peers_problem<T> full(3, n, c, 53);
    peers_problem<T> reduced(3, n, c - 1, 53);
    for (index_t k = 0; k < 3; ++k)
        for (index_t i = 0; i < n; ++i)
            for (index_t j = 0, r = 0; j < c; ++j) {
                T& v = full.logits[static_cast<std::size_t>(k)][static_cast<std::size_t>(i * c + j)];
                if (j == masked) {
                    v = -std::numeric_limits<T>::infinity();
                } else {
                    reduced.logits[static_cast<std::size_t>(k)][static_cast<std::size_t>(i * (c - 1) + r++)] = v;
                }
            }
    for (index_t i = 0; i < n; ++i) {  // labels avoid the masked class; remapped for the reduced problem
        const std::int64_t y = i % 2 == 0 ? 1 : 5;
        full.labels[static_cast<std::size_t>(i)] = y;
        reduced.labels[static_cast<std::size_t>(i)] = y > masked ? y - 1 : y;
    }
    const auto opts = options(1.5, 1.0, reduction::batchmean);
    const auto a = distill::dml(full.views(), distill::make_view(full.labels.data(), n), opts);
    const auto b = distill::dml(reduced.views(), distill::make_view(reduced.labels.data(), n), opts);
    const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
    for (std::size_t k = 0; k < 3; ++k) {
        DISTILL_CHECK_CLOSE(a.peer_loss[k], b.peer_loss[k], rtol, 0);
        for (index_t i = 0; i < n; ++i)
            for (index_t j = 0, r = 0; j < c; ++j) {
                const T g = a.grad_peers[k].data()[i * c + j];
                if (j == masked) CHECK(g == T(0));
                else DISTILL_CHECK_CLOSE(g, b.grad_peers[k].data()[i * (c - 1) + r++], rtol, 1e-7);
            }
    }
}

TEST_CASE("dml: two identical peers reduce to cross-entropy (the KL terms vanish)") {
    using namespace dml_test;
    peers_problem<double> p(2, 5, 4, 61);
    p.logits[1] = p.logits[0];
    const auto labels = distill::make_view(p.labels.data(), p.n);
    const auto r = distill::dml(p.views(), labels, options(4.0, 2.0, reduction::sum));
    distill::ce_options ce_opts;
    ce_opts.reduce = reduction::sum;
    const auto ce = distill::ce(distill::make_view(p.logits[0].data(), p.n, p.c), labels, ce_opts);
    for (std::size_t k = 0; k < 2; ++k) {
        DISTILL_CHECK_CLOSE(r.peer_loss[k], ce.loss, 1e-14, 1e-15);
        const std::vector<double> g(r.grad_peers[k].data(), r.grad_peers[k].data() + 20);
        const std::vector<double> want(ce.grad_student.data(), ce.grad_student.data() + 20);
        distill_test::check_all_close(g, want, 1e-14, 1e-15);
    }
}

TEST_CASE("dml: errors name the argument and the sizes, and nothing is written") {
    using namespace dml_test;
    using distill::errc;
    using distill::error_kind;
    const reduction red = reduction::batchmean;
    const peers_problem<double> p(3, 3, 5, 71);
    const auto good = p.views();
    const auto expect = [&](const distill::dml_options& opts, const distill::dml_args<double>& args,
                            peers_outputs<double>& out, const distill::dml_outputs<double>& views, errc code, error_kind kind,
                            const char* argument, std::initializer_list<const char*> fragments) {
        const distill::status s = distill::run(opts, args, views);
        distill_test::check_method_error("dml", s, code, kind, argument, fragments);
        CHECK(out.untouched());
    };
    const auto opts = options(1.0, 1.0, red);
    {  // K = 1
        peers_outputs<double> out(3, p.n, p.c, red);
        const std::vector<distill::any_view<const double>> one(good.begin(), good.begin() + 1);
        auto views = out.views(red);
        views.grad_peers = {};
        expect(opts, p.args(one), out, views, errc::missing_argument, error_kind::shape, "peers", {"peers has 1 entry but", "2 to 16"});
    }
    {  // K = 17
        peers_outputs<double> out(3, p.n, p.c, red);
        std::vector<distill::any_view<const double>> many(17, good[0]);
        auto views = out.views(red);
        views.grad_peers = {};
        expect(opts, p.args(many), out, views, errc::shape_mismatch, error_kind::shape, "peers", {"17 entries"});
    }
    {  // a peer of another shape
        peers_outputs<double> out(3, p.n, p.c, red);
        auto bad = good;
        bad[2] = distill::make_view(p.logits[2].data(), 3, 4);
        expect(opts, p.args(bad), out, out.views(red), errc::shape_mismatch, error_kind::shape, "peers",
               {"peers[2] has shape [3, 4] but peers[0] has shape [3, 5]"});
        bad[2] = distill::make_view(p.logits[2].data(), 15);
        expect(opts, p.args(bad), out, out.views(red), errc::bad_rank, error_kind::shape, "peers", {"peers[2] has shape [15]", "2-D"});
        bad[1] = {};
        expect(opts, p.args(bad), out, out.views(red), errc::missing_argument, error_kind::shape, "peers", {"peers[1] is unbound"});
    }
    {  // labels: missing, wrong length, out of range
        peers_outputs<double> out(3, p.n, p.c, red);
        distill::dml_args<double> args = p.args(good);
        args.labels = {};
        expect(opts, args, out, out.views(red), errc::missing_argument, error_kind::shape, "labels", {"labels are required"});
        args.labels = distill::make_view(p.labels.data(), 2);
        expect(opts, args, out, out.views(red), errc::shape_mismatch, error_kind::shape, "labels", {"[2]", "[3]"});
        std::vector<std::int64_t> wrong = p.labels;
        wrong[1] = 5;
        args.labels = distill::make_view(wrong.data(), 3);
        expect(opts, args, out, out.views(red), errc::label_out_of_range, error_kind::value, "labels", {"labels[1] = 5", "[0, 5)"});
    }
    {  // parameters
        peers_outputs<double> out(3, p.n, p.c, red);
        expect(options(0.0, 1.0, red), p.args(good), out, out.views(red), errc::invalid_parameter, error_kind::value,
               "temperature", {"temperature = 0"});
        expect(options(1.0, -0.5, red), p.args(good), out, out.views(red), errc::invalid_parameter, error_kind::value,
               "kl_weight", {"kl_weight = -5"});
        expect(options(1.0, std::numeric_limits<double>::infinity(), red), p.args(good), out, out.views(red),
               errc::invalid_parameter, error_kind::value, "kl_weight", {"kl_weight = inf"});
        expect(options(1.0, 1.0, static_cast<reduction>(9)), p.args(good), out, out.views(red), errc::unknown_reduction,
               error_kind::value, "reduction", {"reduction = 9"});
    }
    {  // outputs
        peers_outputs<double> out(3, p.n, p.c, red);
        auto views = out.views(red);
        views.loss = distill::make_view(out.loss.data(), 2);
        expect(opts, p.args(good), out, views, errc::shape_mismatch, error_kind::shape, "loss", {"must hold 3 values"});
        views = out.views(red);
        views.loss = {};
        expect(opts, p.args(good), out, views, errc::missing_argument, error_kind::shape, "loss", {"loss is required"});
        views = out.views(reduction::batchmean);  // K values where none needs K x N
        expect(options(1.0, 1.0, reduction::none), p.args(good), out, views, errc::shape_mismatch, error_kind::shape, "loss",
               {"[3, 3] (peers x rows)"});
        views = out.views(red);
        views.grad_peers = std::span<const distill::any_view<double>>(out.grad_views.data(), 2);
        expect(opts, p.args(good), out, views, errc::shape_mismatch, error_kind::shape, "grad_peers",
               {"grad_peers has 2 entries but there are 3 peers"});
        std::vector<distill::any_view<double>> grads = out.grad_views;
        grads[1] = distill::make_view(out.grads[1].data(), 5, 3);
        views = out.views(red);
        views.grad_peers = grads;
        expect(opts, p.args(good), out, views, errc::shape_mismatch, error_kind::shape, "grad_peers",
               {"output grad_peers[1] has shape [5, 3] but the peers have shape [3, 5]"});
    }
    {  // aliasing: an output over an input, two outputs over each other
        peers_outputs<double> out(3, p.n, p.c, red);
        std::vector<double> shared = p.logits[0];
        auto in = good;
        in[0] = distill::make_view(shared.data(), 3, 5);
        std::vector<distill::any_view<double>> grads = out.grad_views;
        grads[1] = distill::make_view(shared.data(), 3, 5);
        auto views = out.views(red);
        views.grad_peers = grads;
        expect(opts, p.args(in), out, views, errc::aliasing, error_kind::usage, "grad_peers",
               {"output grad_peers[1] overlaps input peers[0]"});
        grads = out.grad_views;
        grads[2] = out.grad_views[0];
        views.grad_peers = grads;
        expect(opts, p.args(good), out, views, errc::aliasing, error_kind::usage, "grad_peers",
               {"output grad_peers[0] overlaps output grad_peers[2]"});
        views = out.views(red);
        views.total = distill::make_view(out.loss.data() + 2, 1);
        expect(opts, p.args(good), out, views, errc::aliasing, error_kind::usage, "loss", {"output loss overlaps output total"});
    }
#if DISTILL_HAS_EXCEPTIONS
    // The convenience object throws distill::error with the same status.
    const std::vector<distill::any_view<const double>> one(good.begin(), good.begin() + 1);
    CHECK_THROWS_AS(distill::dml(one, distill::make_view(p.labels.data(), p.n)), distill::error);
#endif
}

TEST_CASE("dml: partial outputs (no gradients, some gradients) give the same values") {
    using namespace dml_test;
    const peers_problem<double> p(3, 4, 6, 83, {0});
    const auto in = p.views();
    const auto opts = options(2.0, 1.0, reduction::batchmean);
    peers_outputs<double> all(3, p.n, p.c, reduction::batchmean), some(3, p.n, p.c, reduction::batchmean);
    REQUIRE(distill::run(opts, p.args(in), all.views(reduction::batchmean)).ok());
    auto views = some.views(reduction::batchmean);
    std::vector<distill::any_view<double>> grads = some.grad_views;
    grads[0] = {};
    grads[2] = {};
    views.grad_peers = grads;
    views.total = {};
    REQUIRE(distill::run(opts, p.args(in), views).ok());
    CHECK(some.loss == all.loss);
    CHECK(some.grads[1] == all.grads[1]);
    CHECK(some.total[0] == peers_outputs<double>::sentinel);
    CHECK(some.grads[0][0] == peers_outputs<double>::sentinel);
    views.grad_peers = {};
    REQUIRE(distill::run(opts, p.args(in), views).ok());
    CHECK(some.loss == all.loss);
}

TEST_CASE("dml: a column-major peer and strided outputs give the values of the row-major call") {
    using namespace dml_test;
    const peers_problem<double> p(3, 4, 5, 97, {3});
    const auto in = p.views();
    const auto opts = options(1.7, 0.9, reduction::none);
    peers_outputs<double> want(3, p.n, p.c, reduction::none);
    REQUIRE(distill::run(opts, p.args(in), want.views(reduction::none)).ok());
    // Peer 1 stored column-major, peer 2's gradient written column-major.
    std::vector<double> col(static_cast<std::size_t>(p.n * p.c)), grad_col(col.size(), 0.0);
    for (index_t i = 0; i < p.n; ++i)
        for (index_t c = 0; c < p.c; ++c) col[static_cast<std::size_t>(c * p.n + i)] = p.logits[1][static_cast<std::size_t>(i * p.c + c)];
    const index_t extents[2] = {p.n, p.c}, col_strides[2] = {1, p.n};
    auto strided = in;
    strided[1] = distill::any_view<const double>(col.data(), 2, extents, col_strides);
    peers_outputs<double> got(3, p.n, p.c, reduction::none);
    auto views = got.views(reduction::none);
    std::vector<distill::any_view<double>> grads = got.grad_views;
    grads[2] = distill::any_view<double>(grad_col.data(), 2, extents, col_strides);
    views.grad_peers = grads;
    REQUIRE(distill::run(opts, p.args(strided), views).ok());
    distill_test::check_all_close(got.loss, want.loss, 1e-15, 0);
    distill_test::check_all_close(got.grads[0], want.grads[0], 1e-15, 0);
    distill_test::check_all_close(got.grads[1], want.grads[1], 1e-15, 0);
    for (index_t i = 0; i < p.n; ++i)
        for (index_t c = 0; c < p.c; ++c)
            CHECK(grad_col[static_cast<std::size_t>(c * p.n + i)] == want.grads[2][static_cast<std::size_t>(i * p.c + c)]);
}
