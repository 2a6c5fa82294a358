// tests/unit/feature/maps.hpp: the spatial (4-D map) methods at, factor, nst, fsp and their
// extractors (adaptive pooling, spatial matching, attention maps, FSP matrices) on the CPU
// backend; included by feature_methods_test.cpp.
#pragma once

#include "../feature_support.hpp"

#include <algorithm>
#include <utility>

namespace maps_test {

using distill::index_t;
using feature_test::buffer;
using feature_test::dense;

/// A 4-D tensor stored in another layout but viewed as N x C x H x W: channel-last (N x H x W x C
/// memory: samples cannot be flattened, but H and W still walk with one stride), or padded
/// (each row of W values followed by 2 unused ones: H and W cannot be walked with one stride).
enum class layout { channel_last, padded };
template <class T>
struct strided_map {
    std::vector<index_t> shape, strides;
    std::vector<T> data;
    explicit strided_map(const dense& d, layout kind = layout::channel_last) : shape(d.shape) {
        const index_t n = shape[0], c = shape[1], h = shape[2], w = shape[3];
        if (kind == layout::channel_last) strides = {h * w * c, 1, w * c, c};
        else strides = {c * h * (w + 2), h * (w + 2), w + 2, 1};
        data.assign(static_cast<std::size_t>(strides[0] * n), std::nan(""));
        for (index_t i = 0; i < n; ++i)
            for (index_t ch = 0; ch < c; ++ch)
                for (index_t y = 0; y < h; ++y)
                    for (index_t x = 0; x < w; ++x)
                        data[static_cast<std::size_t>(i * strides[0] + ch * strides[1] + y * strides[2] + x * strides[3])] =
                            static_cast<T>(d.values[static_cast<std::size_t>(((i * c + ch) * h + y) * w + x)]);
    }
    distill::any_view<const T> view() const { return distill::any_view<const T>(data.data(), 4, shape.data(), strides.data()); }
    distill::any_view<T> view() { return distill::any_view<T>(data.data(), 4, shape.data(), strides.data()); }
    /// Back to row-major N x C x H x W order.
    std::vector<double> row_major() const {
        std::vector<double> out;
        for (index_t i = 0; i < shape[0]; ++i)
            for (index_t ch = 0; ch < shape[1]; ++ch)
                for (index_t y = 0; y < shape[2]; ++y)
                    for (index_t x = 0; x < shape[3]; ++x)
                        out.push_back(static_cast<double>(
                            data[static_cast<std::size_t>(i * strides[0] + ch * strides[1] + y * strides[2] + x * strides[3])]));
        return out;
    }
};

/// A naive adaptive average pooling of a row-major N x C x H x W tensor (the test's own).
inline dense naive_pool(const dense& in, index_t oh, index_t ow) {
    const index_t n = in.shape[0], c = in.shape[1], h = in.shape[2], w = in.shape[3];
    dense out({n, c, oh, ow}, std::vector<double>(static_cast<std::size_t>(n * c * oh * ow)));
    for (index_t i = 0; i < n; ++i)
        for (index_t ch = 0; ch < c; ++ch)
            for (index_t a = 0; a < oh; ++a)
                for (index_t b = 0; b < ow; ++b) {
                    const index_t y0 = a * h / oh, y1 = ((a + 1) * h + oh - 1) / oh;
                    const index_t x0 = b * w / ow, x1 = ((b + 1) * w + ow - 1) / ow;
                    double sum = 0;
                    for (index_t y = y0; y < y1; ++y)
                        for (index_t x = x0; x < x1; ++x)
                            sum += in.values[static_cast<std::size_t>(((i * c + ch) * h + y) * w + x)];
                    out.values[static_cast<std::size_t>(((i * c + ch) * oh + a) * ow + b)] =
                        sum / static_cast<double>((y1 - y0) * (x1 - x0));
                }
    return out;
}

/// nst by its definition (double, per sample, the channel form written out with loops).
inline double naive_nst(const dense& s, const dense& t) {
    const index_t n = s.shape[0], cs = s.shape[1], ct = t.shape[1], k = s.shape[2] * s.shape[3];
    auto normalized = [k](const dense& f, index_t i, index_t ch) {
        std::vector<double> v(f.values.begin() + (i * f.shape[1] + ch) * k, f.values.begin() + (i * f.shape[1] + ch + 1) * k);
        double sq = 0;
        for (double x : v) sq += x * x;
        const double norm = std::max(std::sqrt(sq), 1e-12);
        for (double& x : v) x /= norm;
        return v;
    };
    auto kernel = [](const std::vector<double>& a, const std::vector<double>& b) {
        double dot = 0;
        for (std::size_t j = 0; j < a.size(); ++j) dot += a[j] * b[j];
        return dot * dot;
    };
    double loss = 0;
    for (index_t i = 0; i < n; ++i) {
        double ss = 0, tt = 0, st = 0;
        for (index_t a = 0; a < cs; ++a)
            for (index_t b = 0; b < cs; ++b) ss += kernel(normalized(s, i, a), normalized(s, i, b));
        for (index_t a = 0; a < ct; ++a)
            for (index_t b = 0; b < ct; ++b) tt += kernel(normalized(t, i, a), normalized(t, i, b));
        for (index_t a = 0; a < cs; ++a)
            for (index_t b = 0; b < ct; ++b) st += kernel(normalized(s, i, a), normalized(t, i, b));
        loss += tt / double(ct * ct) + ss / double(cs * cs) - 2 * st / double(cs * ct);
    }
    return loss / double(n);
}

template <class V>
bool nst_spatial_form(const V& s, const V& t) {
    return distill::detail::nst_plan::of(s.view(), t.view()).spatial_gram;
}

/// The loss and student gradient of a pair method on arbitrary input views (dense gradient).
template <class T, class Options>
feature_test::feature_outputs_host run_views(const Options& opts, distill::any_view<const T> s, distill::any_view<const T> t,
                                             std::vector<index_t> grad_shape) {
    buffer<T> loss(std::vector<index_t>{}, T(0)), grad(std::move(grad_shape), T(0));
    distill::feature_args<T> args;
    args.student = s;
    args.teacher = t;
    const distill::feature_outputs<T> outs{loss.view(), grad.view()};
    std::vector<T> scratch(distill::workspace_bytes(opts, args, outs) / sizeof(T) + 1);
    feature_test::feature_outputs_host r;
    r.status = distill::run(opts, args, outs, {scratch.data(), scratch.size() * sizeof(T)});
    r.loss = static_cast<double>(loss.data[0]);
    r.grads.emplace_back(grad.data.begin(), grad.data.end());
    return r;
}

inline void check_same(const feature_test::feature_outputs_host& a, const feature_test::feature_outputs_host& b) {
    REQUIRE(a.status.ok());
    REQUIRE(b.status.ok());
    CHECK(a.loss == doctest::Approx(b.loss).epsilon(1e-13));
    REQUIRE(a.grads.size() == b.grads.size());
    for (std::size_t k = 0; k < a.grads.size(); ++k) {
        double largest = 0;
        for (double g : b.grads[k]) largest = std::max(largest, std::abs(g));
        for (std::size_t i = 0; i < a.grads[k].size(); ++i) CHECK(std::abs(a.grads[k][i] - b.grads[k][i]) <= 1e-13 * largest);
    }
}

}  // namespace maps_test

// ---------------------------------------------------------------- spatial matching and pooling

TEST_CASE("spatial matching: the map at least as large in both H and W is pooled; taller but narrower fails") {
    distill::detail::spatial_match m;
    REQUIRE(distill::detail::match_spatial(4, 4, 4, 4, m));
    CHECK((m.h == 4 && m.w == 4 && !m.pool_first && !m.pool_second));
    REQUIRE(distill::detail::match_spatial(5, 7, 2, 3, m));
    CHECK((m.h == 2 && m.w == 3 && m.pool_first && !m.pool_second));
    REQUIRE(distill::detail::match_spatial(3, 4, 7, 4, m));  // equal W, smaller H: the second is pooled
    CHECK((m.h == 3 && m.w == 4 && !m.pool_first && m.pool_second));
    CHECK_FALSE(distill::detail::match_spatial(2, 5, 3, 4, m));
    CHECK_FALSE(distill::detail::match_spatial(7, 5, 5, 7, m));
}

TEST_CASE("adaptive_avg_pool: the adaptive_avg_pool2d windows (down, non-divisible, up, identity) and strided input") {
    using namespace maps_test;
    const dense in = dense::random({2, 3, 7, 6}, 31);
    // Not a structured binding: CAPTURE's lambda captures oh and ow (clang 14 cannot).
    for (const auto& size : {std::pair<index_t, index_t>{3, 4}, {2, 3}, {7, 6}, {1, 1}, {9, 8}, {7, 2}}) {
        const index_t oh = size.first, ow = size.second;
        CAPTURE(oh);
        CAPTURE(ow);
        const dense want = naive_pool(in, oh, ow);
        const buffer<double> input(in);
        buffer<double> out({2, 3, oh, ow}, 0.0);
        REQUIRE(distill::knowledge::adaptive_avg_pool(input.view(), out.view()).ok());
        for (std::size_t i = 0; i < want.values.size(); ++i) CHECK(out.data[i] == doctest::Approx(want.values[i]).epsilon(1e-14));
        // The same from channel-last and padded buffers.
        for (auto kind : {layout::channel_last, layout::padded}) {
            const strided_map<double> strided(in, kind);
            buffer<double> out2({2, 3, oh, ow}, 0.0);
            REQUIRE(distill::knowledge::adaptive_avg_pool(strided.view(), out2.view()).ok());
            CHECK(out2.data == out.data);
        }
    }
}

TEST_CASE("adaptive_avg_pool_vjp: the adjoint of the pooling (finite differences and <P x, y> = <x, P^T y>)") {
    using namespace maps_test;
    const dense x = dense::random({2, 2, 5, 7}, 41);
    // Not a structured binding: CAPTURE's lambda captures oh and ow (clang 14 cannot).
    for (const auto& size : {std::pair<index_t, index_t>{2, 3}, {3, 3}, {5, 7}, {8, 9}}) {
        const index_t oh = size.first, ow = size.second;
        CAPTURE(oh);
        CAPTURE(ow);
        const dense y = dense::random({2, 2, oh, ow}, 42);
        const buffer<double> upstream(y);
        buffer<double> grad({2, 2, 5, 7}, 0.0);
        REQUIRE(distill::knowledge::adaptive_avg_pool_vjp(upstream.view(), grad.view()).ok());
        const auto numeric = distill_test::numeric_gradient(
            [&](const std::vector<double>& v) {
                const dense pooled = naive_pool(dense(x.shape, v), oh, ow);
                double dot = 0;
                for (std::size_t i = 0; i < pooled.values.size(); ++i) dot += pooled.values[i] * y.values[i];
                return dot;
            },
            x.values);
        for (std::size_t i = 0; i < numeric.size(); ++i) CHECK(grad.data[i] == doctest::Approx(numeric[i]).epsilon(1e-7));
    }
}

TEST_CASE("attention_map: unit rows, and its VJP against finite differences for p = 1, 1.5, 2, 3") {
    using namespace maps_test;
    const dense f = dense::random({2, 3, 3, 4}, 51), upstream = dense::random({2, 12}, 52);
    for (double p : {1.0, 1.5, 2.0, 3.0}) {
        CAPTURE(p);
        const buffer<double> features(f), up(upstream);
        buffer<double> out({2, 12}, 0.0), grad({2, 3, 3, 4}, 0.0);
        REQUIRE(distill::knowledge::attention_map(features.view(), out.view(), p).ok());
        for (int i = 0; i < 2; ++i) {
            double sq = 0;
            for (int k = 0; k < 12; ++k) sq += out.data[static_cast<std::size_t>(i * 12 + k)] * out.data[static_cast<std::size_t>(i * 12 + k)];
            CHECK(sq == doctest::Approx(1.0));
        }
        std::vector<double> scratch(distill::knowledge::attention_map_vjp_workspace_bytes<double>(2, 12) / sizeof(double));
        REQUIRE(distill::knowledge::attention_map_vjp(features.view(), up.view(), grad.view(), p,
                                                      {scratch.data(), scratch.size() * sizeof(double)})
                    .ok());
        const auto numeric = distill_test::numeric_gradient(
            [&](const std::vector<double>& v) {
                const buffer<double> x(dense(f.shape, v));
                buffer<double> a({2, 12}, 0.0);
                (void)distill::knowledge::attention_map(x.view(), a.view(), p);
                double dot = 0;
                for (std::size_t i = 0; i < a.data.size(); ++i) dot += a.data[i] * upstream.values[i];
                return dot;
            },
            f.values);
        for (std::size_t i = 0; i < numeric.size(); ++i) CHECK(grad.data[i] == doctest::Approx(numeric[i]).epsilon(1e-6));
    }
}

TEST_CASE("attention_map: |x|^p has derivative 0 at x = 0 (p = 1 included), errors name the argument") {
    using namespace maps_test;
    dense f = dense::random({1, 2, 2, 2}, 53);
    f.values[0] = 0;
    const dense upstream = dense::random({1, 4}, 54);
    for (double p : {1.0, 2.0, 2.5}) {
        const buffer<double> features(f), up(upstream);
        buffer<double> grad({1, 2, 2, 2}, 1.0);
        std::vector<double> scratch(distill::knowledge::attention_map_vjp_workspace_bytes<double>(1, 4) / sizeof(double));
        REQUIRE(distill::knowledge::attention_map_vjp(features.view(), up.view(), grad.view(), p,
                                                      {scratch.data(), scratch.size() * sizeof(double)})
                    .ok());
        CHECK(grad.data[0] == 0.0);
    }
    const buffer<double> features(f);
    buffer<double> out({1, 4}, 0.0), wrong({1, 5}, 0.0);
    distill_test::check_method_error("attention_map", distill::knowledge::attention_map(features.view(), out.view(), 0.5),
                                     distill::errc::invalid_parameter, distill::error_kind::value, "p", {"p = 5.00000e-1"});
    distill_test::check_method_error("attention_map", distill::knowledge::attention_map(features.view(), wrong.view(), 2.0),
                                     distill::errc::shape_mismatch, distill::error_kind::shape, "out", {"[1, 5]", "[1, 4]"});
    const buffer<double> flat(dense::random({2, 4}, 55));
    distill_test::check_method_error("attention_map", distill::knowledge::attention_map(flat.view(), out.view(), 2.0),
                                     distill::errc::bad_rank, distill::error_kind::shape, "features", {"4-D"});
}

TEST_CASE("fsp_matrix: G = U B^T / K, and its VJP for both inputs against finite differences") {
    using namespace maps_test;
    const dense b = dense::random({2, 3, 2, 3}, 61), u = dense::random({2, 4, 2, 3}, 62), upstream = dense::random({2, 4, 3}, 63);
    const buffer<double> bottom(b), top(u), up(upstream);
    buffer<double> g({2, 4, 3}, 0.0);
    REQUIRE(distill::knowledge::fsp_matrix(bottom.view(), top.view(), g.view()).ok());
    for (index_t n = 0; n < 2; ++n)
        for (index_t i = 0; i < 4; ++i)
            for (index_t j = 0; j < 3; ++j) {
                double sum = 0;
                for (index_t k = 0; k < 6; ++k) sum += u.values[static_cast<std::size_t>((n * 4 + i) * 6 + k)] * b.values[static_cast<std::size_t>((n * 3 + j) * 6 + k)];
                CHECK(g.data[static_cast<std::size_t>((n * 4 + i) * 3 + j)] == doctest::Approx(sum / 6));
            }
    buffer<double> gb({2, 3, 2, 3}, 0.0), gu({2, 4, 2, 3}, 0.0);
    REQUIRE(distill::knowledge::fsp_matrix_vjp(bottom.view(), top.view(), up.view(), gb.view(), gu.view()).ok());
    auto value = [&](const dense& bb, const dense& uu) {
        const buffer<double> x(bb), y(uu);
        buffer<double> out({2, 4, 3}, 0.0);
        (void)distill::knowledge::fsp_matrix(x.view(), y.view(), out.view());
        double dot = 0;
        for (std::size_t i = 0; i < out.data.size(); ++i) dot += out.data[i] * upstream.values[i];
        return dot;
    };
    const auto nb = distill_test::numeric_gradient([&](const std::vector<double>& v) { return value(dense(b.shape, v), u); }, b.values);
    const auto nu = distill_test::numeric_gradient([&](const std::vector<double>& v) { return value(b, dense(u.shape, v)); }, u.values);
    for (std::size_t i = 0; i < nb.size(); ++i) CHECK(gb.data[i] == doctest::Approx(nb[i]).epsilon(1e-7));
    for (std::size_t i = 0; i < nu.size(); ++i) CHECK(gu.data[i] == doctest::Approx(nu[i]).epsilon(1e-7));
    // One gradient skipped with distill::none.
    buffer<double> gu2({2, 4, 2, 3}, 0.0);
    REQUIRE(distill::knowledge::fsp_matrix_vjp(bottom.view(), top.view(), up.view(), distill::none, gu2.view()).ok());
    CHECK(gu2.data == gu.data);
    // Channel-last samples are read in place (H and W walk with the channel count as stride).
    const strided_map<double> channel_last(b);
    buffer<double> g2({2, 4, 3}, 0.0);
    REQUIRE(distill::knowledge::fsp_matrix(channel_last.view(), top.view(), g2.view()).ok());
    for (std::size_t i = 0; i < g.data.size(); ++i) CHECK(g2.data[i] == doctest::Approx(g.data[i]).epsilon(1e-14));
    // Different spatial sizes and padded rows are refused.
    const buffer<double> other(dense::random({2, 4, 3, 3}, 64));
    distill_test::check_method_error("fsp_matrix", distill::knowledge::fsp_matrix(bottom.view(), other.view(), g.view()),
                                     distill::errc::shape_mismatch, distill::error_kind::shape, "top", {"[2, 4, 3, 3]"});
    const strided_map<double> strided(b, layout::padded);
    distill_test::check_method_error("fsp_matrix", distill::knowledge::fsp_matrix(strided.view(), top.view(), g.view()),
                                     distill::errc::unsupported_layout, distill::error_kind::usage, "bottom", {"[2, 3, 2, 3]"});
}

// ---------------------------------------------------------------- at

TEST_CASE("at: gradient matches finite differences (channels differ, pooling either side, p = 1, 2, 3.5)") {
    using namespace feature_test;
    for (double p : {1.0, 2.0, 3.5}) {
        CAPTURE(p);
        const distill::at_options opts{p};
        check_gradient_fd(opts, {dense::random({3, 2, 4, 3}, 1), dense::random({3, 5, 4, 3}, 2)});
        check_gradient_fd(opts, {dense::random({2, 2, 5, 7}, 3), dense::random({2, 3, 2, 3}, 4)});  // student pooled
        check_gradient_fd(opts, {dense::random({2, 3, 3, 4}, 5), dense::random({2, 2, 7, 6}, 6)});  // teacher pooled
        check_gradient_fd(opts, {dense::random({1, 2, 3, 3}, 7), dense::random({1, 2, 3, 3}, 8)});  // N = 1
        check_gradient_fd(opts, {dense::random({2, 1, 1, 5}, 9), dense::random({2, 2, 1, 5}, 10)});  // one row
    }
}

TEST_CASE("at: equal maps give 0; a zero student sample gets a large finite gradient; strided inputs") {
    using namespace feature_test;
    const distill::at_options opts;
    const dense s = dense::random({2, 3, 3, 3}, 11);
    const auto same = run_feature<double>(opts, {s, s});
    REQUIRE(same.status.ok());
    CHECK(same.loss == 0.0);
    for (double g : same.grads[0]) CHECK(g == 0.0);

    dense zero = dense::random({2, 2, 3, 3}, 12);
    std::fill(zero.values.begin(), zero.values.begin() + 18, 0.0);
    const auto z = run_feature<double>(opts, {zero, dense::random({2, 3, 3, 3}, 13)});
    REQUIRE(z.status.ok());
    CHECK(std::isfinite(z.loss));
    for (double g : z.grads[0]) CHECK(std::isfinite(g));
    // p = 2: the gradient of |f|^2 is 2 f, so a zero sample's gradient is exactly zero.
    for (std::size_t i = 0; i < 18; ++i) CHECK(z.grads[0][i] == 0.0);

    // Channel-last inputs give what their dense copies give.
    const dense a = dense::random({2, 3, 5, 4}, 14), b = dense::random({2, 2, 2, 2}, 15);
    const maps_test::strided_map<double> sa(a, maps_test::layout::padded), sb(b, maps_test::layout::channel_last);
    const buffer<double> da(a), db(b);
    maps_test::check_same(maps_test::run_views<double>(opts, sa.view(), sb.view(), a.shape),
                          maps_test::run_views<double>(opts, da.view(), db.view(), a.shape));
}

TEST_CASE("at: knowledge outputs are the normalised maps (N x H'W')") {
    using namespace feature_test;
    const buffer<double> s(dense::random({2, 2, 6, 6}, 16)), t(dense::random({2, 4, 3, 3}, 17));
    buffer<double> loss(std::vector<index_t>{}, 0.0), ks({2, 9}, 0.0), kt({2, 9}, 0.0), wrong({2, 36}, 0.0);
    const distill::at_options opts;
    distill::feature_args<double> args;
    args.student = s.view();
    args.teacher = t.view();
    distill::feature_outputs<double> outs{loss.view()};
    outs.knowledge_student = ks.view();
    outs.knowledge_teacher = kt.view();
    std::vector<double> scratch(distill::workspace_bytes(opts, args, outs) / sizeof(double));
    REQUIRE(distill::run(opts, args, outs, {scratch.data(), scratch.size() * sizeof(double)}).ok());
    double loss_again = 0;
    for (int i = 0; i < 2; ++i) {
        double sq = 0;
        for (int k = 0; k < 9; ++k) {
            const auto idx = static_cast<std::size_t>(i * 9 + k);
            sq += ks.data[idx] * ks.data[idx];
            loss_again += (ks.data[idx] - kt.data[idx]) * (ks.data[idx] - kt.data[idx]);
        }
        CHECK(sq == doctest::Approx(1.0));
    }
    CHECK(loss.data[0] == doctest::Approx(loss_again / 18));
    outs.knowledge_student = wrong.view();
    distill_test::check_method_error("at", distill::check(opts, args, outs), distill::errc::shape_mismatch,
                                     distill::error_kind::shape, "knowledge_student", {"[2, 36]", "[2, 9]"});
}

TEST_CASE_TEMPLATE("at: errors name the argument and write nothing", T, float, double) {
    using namespace feature_test;
    using distill::errc;
    const distill::basic_at_options<T> opts;
    check_feature_error<T>(distill::basic_at_options<T>{T(0.5)}, {dense::random({2, 2, 3, 3}, 1), dense::random({2, 2, 3, 3}, 2)},
                           errc::invalid_parameter, "p", {"p = 5.00000e-1", ">= 1"});
    check_feature_error<T>(distill::basic_at_options<T>{std::numeric_limits<T>::quiet_NaN()},
                           {dense::random({2, 2, 3, 3}, 1), dense::random({2, 2, 3, 3}, 2)}, errc::invalid_parameter, "p");
    check_feature_error<T>(opts, {dense::random({2, 6}, 1), dense::random({2, 2, 3, 3}, 2)}, errc::bad_rank, "student",
                           {"4-D", "[2, 6]"});
    check_feature_error<T>(opts, {dense::random({2, 2, 3, 3}, 1), dense::random({2, 2, 9}, 2)}, errc::bad_rank, "teacher",
                           {"[2, 2, 9]"});
    check_feature_error<T>(opts, {dense::random({3, 2, 3, 3}, 1), dense::random({2, 2, 3, 3}, 2)}, errc::shape_mismatch,
                           "teacher", {"N must match"});
    check_feature_error<T>(opts, {dense::random({2, 2, 2, 5}, 1), dense::random({2, 2, 3, 4}, 2)}, errc::shape_mismatch,
                           "teacher", {"student is 2x5", "teacher is 3x4"});
    check_feature_error<T>(opts, {dense({0, 2, 3, 3}, {}), dense({0, 2, 3, 3}, {})}, errc::empty_input, "student");
    check_feature_error<T>(opts, {dense::random({2, 2, 3, 3}, 1), dense{}}, errc::missing_argument, "teacher");
}

// ---------------------------------------------------------------- factor

TEST_CASE("factor: gradient matches finite differences (attention and flat maps, p1, p2, pooling)") {
    using namespace feature_test;
    using distill::factor_map;
    const std::vector<distill::factor_options> variants = {
        {factor_map::attention, 2, 1}, {factor_map::attention, 1, 2}, {factor_map::attention, 3, 1.5},
        {factor_map::flat, 2, 1},      {factor_map::flat, 2, 2},      {factor_map::flat, 5, 3}};
    for (const auto& opts : variants) {
        CAPTURE(distill::to_string(opts.map));
        CAPTURE(opts.p1);
        CAPTURE(opts.p2);
        const bool flat = opts.map == factor_map::flat;
        check_gradient_fd(opts, {dense::random({2, 3, 3, 4}, 21), dense::random({2, flat ? 3 : 5, 3, 4}, 22)});
        check_gradient_fd(opts, {dense::random({2, 2, 7, 6}, 23), dense::random({2, 2, 3, 4}, 24)});  // student pooled
        check_gradient_fd(opts, {dense::random({1, 2, 2, 3}, 25), dense::random({1, 2, 5, 7}, 26)});  // teacher pooled, N = 1
    }
}

TEST_CASE("factor: equal inputs give 0 and no gradient; zero samples stay finite; defaults are RepDistiller's") {
    using namespace feature_test;
    const distill::factor_options defaults;
    CHECK(defaults.map == distill::factor_map::attention);
    CHECK(defaults.p1 == 2.0);
    CHECK(defaults.p2 == 1.0);
    const dense s = dense::random({2, 3, 3, 3}, 27);
    for (auto map : {distill::factor_map::attention, distill::factor_map::flat}) {
        const distill::factor_options opts{map, 2, 1};
        const auto same = run_feature<double>(opts, {s, s});
        REQUIRE(same.status.ok());
        CHECK(same.loss == 0.0);
        for (double g : same.grads[0]) CHECK(g == 0.0);  // |d|' = 0 at d = 0
        dense zero = s;
        std::fill(zero.values.begin(), zero.values.begin() + 27, 0.0);
        const auto z = run_feature<double>(distill::factor_options{map, 1, 2}, {zero, dense::random({2, 3, 3, 3}, 28)});
        REQUIRE(z.status.ok());
        for (double g : z.grads[0]) CHECK(std::isfinite(g));
    }
    // flat with a zero sample: normalize's 1/eps branch gives a large, finite gradient.
    dense zero = s;
    std::fill(zero.values.begin(), zero.values.begin() + 27, 0.0);
    const auto z = run_feature<double>(distill::factor_options{distill::factor_map::flat, 2, 2}, {zero, s});
    REQUIRE(z.status.ok());
    double largest = 0;
    for (double g : z.grads[0]) largest = std::max(largest, std::abs(g));
    CHECK(largest > 1e9);
    CHECK(std::isfinite(largest));
}

TEST_CASE("factor: parse_factor_map and the knowledge length of each map") {
    distill::factor_map m = distill::factor_map::attention;
    CHECK(distill::parse_factor_map("flat", m).ok());
    CHECK(m == distill::factor_map::flat);
    CHECK(distill::parse_factor_map("attention", m).ok());
    CHECK(m == distill::factor_map::attention);
    const distill::status bad = distill::parse_factor_map("spatial", m);
    CHECK(bad.code() == distill::errc::invalid_parameter);
    CHECK(std::string(bad.argument()) == "map");
    CHECK(distill_test::contains(bad.message(), "spatial"));
    CHECK(m == distill::factor_map::attention);
    CHECK_FALSE(distill::parse_factor_map(nullptr, m).ok());

    const maps_test::buffer<double> s(maps_test::dense::random({2, 3, 6, 4}, 1)), t(maps_test::dense::random({2, 3, 3, 2}, 2));
    distill::feature_args<double> args;
    args.student = s.view();
    args.teacher = t.view();
    using M = distill::feature_method<distill::factor_options>;
    const distill::knowledge_shape attention = M::knowledge(distill::factor_options{}, args, 0);
    const distill::knowledge_shape flat = M::knowledge(distill::factor_options{distill::factor_map::flat}, args, 0);
    CHECK((attention.rank == 2 && attention.extents[0] == 2 && attention.extents[1] == 6));
    CHECK((flat.rank == 2 && flat.extents[0] == 2 && flat.extents[1] == 18));
}

TEST_CASE_TEMPLATE("factor: errors name the argument and write nothing", T, float, double) {
    using namespace feature_test;
    using distill::errc;
    using distill::factor_map;
    using O = distill::basic_factor_options<T>;
    const feature_inputs good{dense::random({2, 2, 3, 3}, 1), dense::random({2, 3, 3, 3}, 2)};
    check_feature_error<T>(O{static_cast<factor_map>(7), 2, 1}, good, errc::invalid_parameter, "map", {"attention nor flat"});
    check_feature_error<T>(O{factor_map::attention, T(0.9), 1}, good, errc::invalid_parameter, "p1", {"p1 = 9.00000e-1"});
    check_feature_error<T>(O{factor_map::flat, 2, std::numeric_limits<T>::quiet_NaN()}, good, errc::invalid_parameter, "p2");
    check_feature_error<T>(O{factor_map::attention, 2, std::numeric_limits<T>::infinity()}, good, errc::invalid_parameter, "p2");
    check_feature_error<T>(O{factor_map::flat, 2, 1}, good, errc::shape_mismatch, "teacher", {"equal channel counts"});
    check_feature_error<T>(O{}, {dense::random({2, 2, 3}, 1), dense::random({2, 2, 3, 3}, 2)}, errc::bad_rank, "student");
    check_feature_error<T>(O{}, {dense::random({2, 2, 4, 2}, 1), dense::random({2, 2, 3, 3}, 2)}, errc::shape_mismatch,
                           "teacher", {"4x2", "3x3"});
    check_feature_error<T>(O{}, {dense({0, 2, 3, 3}, {}), dense({0, 2, 3, 3}, {})}, errc::empty_input, "student");
    check_feature_error<T>(O{}, {dense::random({2, 2, 3, 3}, 1), dense{}}, errc::missing_argument, "teacher");
}

// ---------------------------------------------------------------- nst

TEST_CASE("nst: both Gram forms match the definition and finite differences (pooling either side)") {
    using namespace feature_test;
    using maps_test::nst_spatial_form;
    const distill::nst_options opts;
    struct shapes {
        std::vector<index_t> s, t;
        bool spatial;
    };
    // Small K next to the channels: the K x K form; large K: the channel Grams.
    const std::vector<shapes> cases = {{{2, 4, 2, 2}, {2, 5, 2, 2}, true},  {{2, 2, 3, 4}, {2, 3, 3, 4}, false},
                                       {{2, 3, 4, 4}, {2, 4, 2, 2}, true},  {{2, 2, 5, 7}, {2, 3, 2, 3}, false},
                                       {{1, 2, 3, 3}, {1, 3, 6, 7}, false}, {{3, 6, 1, 2}, {3, 2, 3, 5}, true}};
    unsigned seed = 30;
    for (const auto& c : cases) {
        const dense s = dense::random(c.s, ++seed), t = dense::random(c.t, ++seed);
        const maps_test::buffer<double> sb(s), tb(t);
        CHECK(nst_spatial_form(sb, tb) == c.spatial);
        // The definition on the pooled maps.
        distill::detail::spatial_match m;
        REQUIRE(distill::detail::match_spatial(c.s[2], c.s[3], c.t[2], c.t[3], m));
        const double want = maps_test::naive_nst(maps_test::naive_pool(s, m.h, m.w), maps_test::naive_pool(t, m.h, m.w));
        const auto r = run_feature<double>(opts, {s, t});
        REQUIRE(r.status.ok());
        CHECK(r.loss == doctest::Approx(want).epsilon(1e-12));
        check_gradient_fd(opts, {s, t});
    }
}

TEST_CASE("nst: equal inputs give 0; zero and duplicate channels; strided inputs") {
    using namespace feature_test;
    const distill::nst_options opts;
    for (auto shape : {std::vector<index_t>{2, 3, 2, 2}, std::vector<index_t>{2, 2, 4, 4}}) {  // spatial, channel form
        const dense s = dense::random(shape, 40);
        const auto same = run_feature<double>(opts, {s, s});
        REQUIRE(same.status.ok());
        CHECK(std::abs(same.loss) < 1e-15);
        for (double g : same.grads[0]) CHECK(std::abs(g) < 1e-14);

        dense zero = s, dup = s;
        const index_t k = shape[2] * shape[3];
        std::fill(zero.values.begin() + k, zero.values.begin() + 2 * k, 0.0);  // sample 0, channel 1
        const auto z = run_feature<double>(opts, {zero, dense::random(shape, 41)});
        REQUIRE(z.status.ok());
        CHECK(std::isfinite(z.loss));
        for (double g : z.grads[0]) CHECK(std::isfinite(g));
        std::copy(dup.values.begin(), dup.values.begin() + k, dup.values.begin() + k);  // channel 1 = channel 0
        check_gradient_fd(opts, {dup, dense::random(shape, 42)});
    }
    const dense a = dense::random({2, 3, 5, 4}, 43), b = dense::random({2, 2, 2, 2}, 44);
    const maps_test::strided_map<double> sa(a, maps_test::layout::padded), sb(b, maps_test::layout::channel_last);
    const buffer<double> da(a), db(b);
    maps_test::check_same(maps_test::run_views<double>(opts, sa.view(), sb.view(), a.shape),
                          maps_test::run_views<double>(opts, da.view(), db.view(), a.shape));
}

TEST_CASE("nst: workspace follows the form; no knowledge outputs") {
    using namespace maps_test;
    const buffer<double> s(dense::random({2, 8, 2, 2}, 1)), t(dense::random({2, 6, 2, 2}, 2));
    distill::feature_args<double> args;
    args.student = s.view();
    args.teacher = t.view();
    buffer<double> loss(std::vector<index_t>{}, 0.0), ks({2, 4}, 0.0);
    distill::feature_outputs<double> outs{loss.view()};
    // K = 4, Cs = 8, Ct = 6: N K (2 Cs + Ct) + N (Cs + Ct) + N K^2 values.
    CHECK(distill::workspace_bytes(distill::nst_options{}, args, outs) == (2 * 4 * 22 + 2 * 14 + 2 * 16) * sizeof(double));
    outs.knowledge_student = ks.view();
    distill_test::check_method_error("nst", distill::check(distill::nst_options{}, args, outs), distill::errc::shape_mismatch,
                                     distill::error_kind::shape, "knowledge_student", {"no output"});
}

TEST_CASE_TEMPLATE("nst: errors name the argument and write nothing", T, float, double) {
    using namespace feature_test;
    using distill::errc;
    const distill::basic_nst_options<T> opts;
    check_feature_error<T>(opts, {dense::random({2, 2, 3, 3}, 1), dense::random({2, 2, 9}, 2)}, errc::bad_rank, "teacher");
    check_feature_error<T>(opts, {dense::random({4}, 1), dense::random({4, 2, 3, 3}, 2)}, errc::bad_rank, "student");
    check_feature_error<T>(opts, {dense::random({3, 2, 3, 3}, 1), dense::random({2, 2, 3, 3}, 2)}, errc::shape_mismatch,
                           "teacher");
    check_feature_error<T>(opts, {dense::random({2, 2, 2, 5}, 1), dense::random({2, 2, 3, 4}, 2)}, errc::shape_mismatch,
                           "teacher", {"2x5", "3x4", "H x W"});
    check_feature_error<T>(opts, {dense({2, 0, 3, 3}, {}), dense::random({2, 2, 3, 3}, 2)}, errc::empty_input, "student");
    check_feature_error<T>(opts, {dense::random({2, 2, 3, 3}, 1), dense{}}, errc::missing_argument, "teacher");
}

// ---------------------------------------------------------------- fsp

TEST_CASE("fsp: gradient matches finite differences (2 to 4 layers, pooling inside each network, other resolutions)") {
    using namespace feature_test;
    const distill::fsp_options opts;
    // Two layers, one resolution.
    check_gradient_fd(opts, feature_inputs::layers({dense::random({2, 2, 3, 3}, 1), dense::random({2, 3, 3, 3}, 2)},
                                                   {dense::random({2, 2, 3, 3}, 3), dense::random({2, 3, 3, 3}, 4)}));
    // Three layers: the middle student layer is pooled in pair 0 (5x7 -> 2x3) and pools layer 2
    // in pair 1; the teacher runs at another resolution.
    check_gradient_fd(opts, feature_inputs::layers(
                                {dense::random({2, 2, 2, 3}, 5), dense::random({2, 3, 5, 7}, 6), dense::random({2, 2, 3, 4}, 7)},
                                {dense::random({2, 2, 4, 4}, 8), dense::random({2, 3, 4, 4}, 9), dense::random({2, 2, 2, 2}, 10)}));
    // Four layers shrinking 7 -> 3, N = 1, non-square in both directions.
    check_gradient_fd(opts, feature_inputs::layers({dense::random({1, 2, 7, 5}, 11), dense::random({1, 3, 5, 5}, 12),
                                                    dense::random({1, 2, 4, 3}, 13), dense::random({1, 1, 3, 3}, 14)},
                                                   {dense::random({1, 2, 2, 2}, 15), dense::random({1, 3, 2, 2}, 16),
                                                    dense::random({1, 2, 3, 3}, 17), dense::random({1, 1, 1, 2}, 18)}));
}

TEST_CASE("fsp: equal networks give 0; knowledge outputs; channel-last and padded layers and gradients") {
    using namespace feature_test;
    const distill::fsp_options opts;
    const std::vector<dense> layers = {dense::random({2, 2, 4, 4}, 20), dense::random({2, 3, 2, 2}, 21)};
    const auto same = run_feature<double>(opts, feature_inputs::layers(layers, layers));
    REQUIRE(same.status.ok());
    CHECK(same.loss == 0.0);
    for (const auto& g : same.grads)
        for (double x : g) CHECK(x == 0.0);

    // Channel-last layers and gradients against dense ones, with the knowledge outputs.
    const std::vector<dense> students = {dense::random({2, 2, 5, 4}, 22), dense::random({2, 3, 2, 2}, 23),
                                         dense::random({2, 2, 2, 2}, 24)};
    const std::vector<dense> teachers = {dense::random({2, 2, 3, 3}, 25), dense::random({2, 3, 3, 3}, 26),
                                         dense::random({2, 2, 6, 6}, 27)};
    auto run = [&](bool strided) {
        std::vector<maps_test::strided_map<double>> sl, tl, gl;
        std::vector<buffer<double>> sd, td, gd;
        std::vector<distill::any_view<const double>> s_views, t_views;
        std::vector<distill::any_view<double>> g_views, ks_views, kt_views;
        // Layers alternate between channel-last (read in place) and padded rows (copied).
        auto kind = [](std::size_t i) { return i % 2 ? maps_test::layout::padded : maps_test::layout::channel_last; };
        for (std::size_t i = 0; i < 3; ++i) {
            const dense& d = students[i];
            sl.emplace_back(d, kind(i));
            sd.emplace_back(d);
            gl.emplace_back(dense(d.shape, std::vector<double>(d.values.size(), std::nan(""))), kind(i + 1));
            gd.emplace_back(d.shape, std::nan(""));
            tl.emplace_back(teachers[i], kind(i + 1));
            td.emplace_back(teachers[i]);
        }
        for (std::size_t i = 0; i < 3; ++i) {
            s_views.push_back(strided ? std::as_const(sl[i]).view() : std::as_const(sd[i]).view());
            t_views.push_back(strided ? std::as_const(tl[i]).view() : std::as_const(td[i]).view());
            g_views.push_back(strided ? gl[i].view() : gd[i].view());
        }
        std::vector<buffer<double>> know;
        know.emplace_back(std::vector<index_t>{2, 3, 2}, 0.0);
        know.emplace_back(std::vector<index_t>{2, 2, 3}, 0.0);
        know.emplace_back(std::vector<index_t>{2, 3, 2}, 0.0);
        know.emplace_back(std::vector<index_t>{2, 2, 3}, 0.0);
        ks_views = {know[0].view(), know[1].view()};
        kt_views = {know[2].view(), know[3].view()};
        buffer<double> loss(std::vector<index_t>{}, 0.0);
        distill::feature_args<double> args;
        args.student_layers = s_views;
        args.teacher_layers = t_views;
        distill::feature_outputs<double> outs{loss.view()};
        outs.grad_student_layers = g_views;
        outs.knowledge_student_layers = ks_views;
        outs.knowledge_teacher_layers = kt_views;
        std::vector<double> scratch(distill::workspace_bytes(opts, args, outs) / sizeof(double) + 1);
        feature_outputs_host r;
        r.status = distill::run(opts, args, outs, {scratch.data(), scratch.size() * sizeof(double)});
        r.loss = loss.data[0];
        for (std::size_t i = 0; i < 3; ++i) r.grads.push_back(strided ? gl[i].row_major() : std::vector<double>(gd[i].data.begin(), gd[i].data.end()));
        // The loss from the knowledge outputs: sum over pairs of the mean squared difference.
        double from_knowledge = 0;
        for (int pair = 0; pair < 2; ++pair) {
            double sum = 0;
            for (std::size_t i = 0; i < know[static_cast<std::size_t>(pair)].data.size(); ++i) {
                const double d = know[static_cast<std::size_t>(pair)].data[i] - know[static_cast<std::size_t>(pair) + 2].data[i];
                sum += d * d;
            }
            from_knowledge += sum / 12;
        }
        CHECK(r.loss == doctest::Approx(from_knowledge).epsilon(1e-13));
        return r;
    };
    maps_test::check_same(run(true), run(false));
}

TEST_CASE("fsp: the knowledge shapes and the workspace of the pairs") {
    using namespace maps_test;
    const buffer<double> s0(dense::random({2, 2, 4, 4}, 1)), s1(dense::random({2, 3, 2, 2}, 2));
    const buffer<double> t0(dense::random({2, 2, 4, 4}, 3)), t1(dense::random({2, 3, 4, 4}, 4));
    const std::vector<distill::any_view<const double>> sl = {s0.view(), s1.view()}, tl = {t0.view(), t1.view()};
    distill::feature_args<double> args;
    args.student_layers = sl;
    args.teacher_layers = tl;
    using M = distill::feature_method<distill::fsp_options>;
    CHECK(M::knowledge_layers(distill::fsp_options{}, args) == 1);
    const distill::knowledge_shape k = M::knowledge(distill::fsp_options{}, args, 0);
    CHECK((k.rank == 3 && k.extents[0] == 2 && k.extents[1] == 3 && k.extents[2] == 2));
    // G^s, G^t (2 x 2 x 3 x 2), the pooled student layer 0 (2 x 2 x 4), then the gradients
    // (2 x (2 + 3) x 4) which outgrow the teacher (read in place).
    buffer<double> loss(std::vector<index_t>{}, 0.0);
    CHECK(distill::workspace_bytes(distill::fsp_options{}, args, distill::feature_outputs<double>{loss.view()}) ==
          (24 + 16 + 40) * sizeof(double));
}

TEST_CASE_TEMPLATE("fsp: errors name the argument and write nothing", T, float, double) {
    using namespace feature_test;
    using distill::errc;
    const distill::basic_fsp_options<T> opts;
    auto d = [](std::vector<index_t> shape, unsigned seed) { return dense::random(std::move(shape), seed); };
    check_feature_error<T>(opts, feature_inputs::layers({d({2, 2, 3, 3}, 1)}, {d({2, 2, 3, 3}, 2)}), errc::shape_mismatch,
                           "student_layers", {"at least 2"});
    check_feature_error<T>(opts, feature_inputs::layers({d({2, 2, 3, 3}, 1), d({2, 3, 3, 3}, 2)}, {d({2, 2, 3, 3}, 3)}),
                           errc::shape_mismatch, "teacher_layers", {"2 student layers", "1 teacher"});
    check_feature_error<T>(opts,
                           feature_inputs::layers({d({2, 2, 3, 3}, 1), d({2, 3, 3, 3}, 2)}, {d({2, 2, 3, 3}, 3), d({2, 4, 3, 3}, 4)}),
                           errc::shape_mismatch, "teacher_layers", {"teacher_layers[1]", "C must match"});
    check_feature_error<T>(opts, feature_inputs::layers({d({2, 2, 3, 3}, 1), d({2, 3, 9}, 2)}, {d({2, 2, 3, 3}, 3), d({2, 3, 9}, 4)}),
                           errc::bad_rank, "student_layers", {"student_layers[1] must be 4-D", "[2, 3, 9]"});
    check_feature_error<T>(opts,
                           feature_inputs::layers({d({2, 2, 3, 3}, 1), d({3, 3, 3, 3}, 2)}, {d({2, 2, 3, 3}, 3), d({2, 3, 3, 3}, 4)}),
                           errc::shape_mismatch, "student_layers", {"student_layers[1]", "N = 2"});
    check_feature_error<T>(opts,
                           feature_inputs::layers({d({2, 2, 3, 3}, 1), d({2, 3, 3, 3}, 2)}, {d({2, 2, 2, 5}, 3), d({2, 3, 3, 4}, 4)}),
                           errc::shape_mismatch, "teacher_layers", {"teacher_layers[0] is 2x5", "teacher_layers[1] is 3x4"});
    check_feature_error<T>(opts, feature_inputs::layers({dense({0, 2, 3, 3}, {}), dense({0, 3, 3, 3}, {})},
                                                        {dense({0, 2, 3, 3}, {}), dense({0, 3, 3, 3}, {})}),
                           errc::empty_input, "student_layers");
    check_feature_error<T>(opts, feature_inputs{d({2, 2, 3, 3}, 1), d({2, 2, 3, 3}, 2)}, errc::shape_mismatch, "student",
                           {"takes layers"});
    check_feature_error<T>(opts, feature_inputs{}, errc::missing_argument, "student_layers", {"required"});
}

// ---------------------------------------------------------------- convenience objects

TEST_CASE("maps: the convenience objects (at, factor, nst on tensors; fsp on ranges of layers)") {
    using maps_test::dense;
    auto make = [](std::vector<distill::index_t> shape, unsigned seed) {
        const dense d = dense::random(shape, seed);
        distill::tensor<float> t(shape.data(), static_cast<int>(shape.size()));
        for (std::size_t i = 0; i < d.values.size(); ++i) t.data()[i] = static_cast<float>(d.values[i]);
        return t;
    };
    const distill::tensor<float> s = make({2, 3, 6, 4}, 1), t = make({2, 2, 3, 2}, 2);
    const auto at = distill::at(s, t, distill::at_float_options{3.f});
    REQUIRE(at.status.ok());
    CHECK(at.loss > 0.f);
    CHECK(at.grad_student.view().extent(2) == 6);
    const auto fa = distill::factor(s, t, distill::factor_float_options{distill::factor_map::attention, 2.f, 2.f});
    REQUIRE(fa.status.ok());
    const auto ns = distill::nst(s, t);
    REQUIRE(ns.status.ok());
    CHECK(ns.loss >= 0.f);
    const std::vector<distill::tensor<float>> students = {make({2, 2, 4, 4}, 3), make({2, 3, 2, 2}, 4)};
    const std::vector<distill::tensor<float>> teachers = {make({2, 2, 2, 2}, 5), make({2, 3, 2, 2}, 6)};
    const auto f = distill::fsp(students, teachers);
    REQUIRE(f.status.ok());
    REQUIRE(f.grad_student_layers.size() == 2);
    CHECK(f.grad_student_layers[0].view().extent(2) == 4);
#if DISTILL_HAS_EXCEPTIONS
    CHECK_THROWS_AS(distill::factor(s, t, distill::factor_float_options{distill::factor_map::flat}), distill::error);
    CHECK_THROWS_AS(distill::fsp(std::vector<distill::tensor<float>>{students[0]}, std::vector<distill::tensor<float>>{teachers[0]}),
                    distill::error);
#endif
}
