// tests/noheap/noheap_test.cpp: the run steps allocate nothing.
//
// Built with -fno-exceptions -fno-rtti and NDEBUG (a release build, as users compile), this program
// replaces every global allocation function with a counting one (counting_allocator.hpp), and
// compiles Eigen with EIGEN_RUNTIME_NO_MALLOC and an eigen_assert that counts failures (NDEBUG would
// otherwise compile Eigen's check out). For every response loss, every feature and relation method
// and every scheme, in float and double, on Eigen matrices: it queries workspace_bytes and
// allocates every buffer first, then counts around the run step alone and requires a count of 0.
// distill's matrix products are checked at and around the size where Eigen would put its GEMM
// packing buffers on the heap (EIGEN_STACK_ALLOCATION_LIMIT), against a naive product.
//
// Built a second time with a small EIGEN_STACK_ALLOCATION_LIMIT (8 KiB) and only the products
// (DISTILL_NOHEAP_PRODUCTS_ONLY): the tiles shrink with the limit (16-wide for float), and double
// products, whose tiles would be 8 wide, take distill's own kernel; still no heap.
//
// The self-test at the start proves the counters can fail: deliberate operator new, new[],
// aligned new, malloc, a std::vector and an Eigen heap matrix are each counted, and so is a large
// Eigen GEMM called directly (what distill's tiling avoids).
#define EIGEN_RUNTIME_NO_MALLOC 1
namespace noheap {
void eigen_assert_failed(const char* expression, const char* file, int line) noexcept;
}
#define eigen_assert(x) ((x) ? static_cast<void>(0) : ::noheap::eigen_assert_failed(#x, __FILE__, __LINE__))

#include <Eigen/Core>

#include <distill/eigen.hpp>
#include <distill/schemes.hpp>

#include "counting_allocator.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <type_traits>
#include <vector>

static_assert(DISTILL_HAS_EXCEPTIONS == 0, "this test must be compiled with exceptions off");
#if defined(__GXX_RTTI) || defined(__cpp_rtti)
#error "this test must be compiled with RTTI off"
#endif
#if !defined(NDEBUG)
#error "this test must be compiled with NDEBUG (users' release builds), where Eigen's own assert is off"
#endif

namespace noheap {

long eigen_assert_failures = 0;
const char* first_eigen_assert = nullptr;

void eigen_assert_failed(const char* expression, const char*, int) noexcept {
    if (eigen_assert_failures++ == 0) first_eigen_assert = expression;
}

/// Counts around one region: the allocation functions, and Eigen's no-malloc check.
class scope {
public:
    scope() noexcept : eigen_before_(eigen_assert_failures) {
        Eigen::internal::set_is_malloc_allowed(false);
        start();
    }
    struct result {
        counters heap;
        long eigen = 0;
        bool clean() const noexcept { return heap.total() == 0 && eigen == 0; }
    };
    result stop() noexcept {
        result r{noheap::stop(), eigen_assert_failures - eigen_before_};
        Eigen::internal::set_is_malloc_allowed(true);
        return r;
    }

private:
    long eigen_before_;
};

int failures = 0;
int cases = 0;

void report(const char* what, const char* precision, bool ok, const scope::result& r, const char* detail = "") {
    ++cases;
    const bool pass = ok && r.clean();
    if (!pass) ++failures;
    std::printf("%-4s %-44s %-6s operator new %ld, C allocator %ld, Eigen no-malloc asserts %ld%s%s\n", pass ? "ok" : "FAIL",
                what, precision, r.heap.operator_new, r.heap.c_alloc, r.eigen, detail[0] ? "  " : "", detail);
}

template <class T>
constexpr const char* precision_name = std::is_same_v<T, float> ? "float" : "double";

/// Scratch with 64-byte alignment, sized by a workspace query before counting starts.
struct alignas(64) scratch_block {
    std::byte bytes[64];
};
struct scratch {
    std::vector<scratch_block> blocks;
    std::size_t bytes = 0;
    explicit scratch(std::size_t n) : blocks((n + 63) / 64), bytes(n) {}
    distill::workspace ws() noexcept { return {bytes ? static_cast<void*>(blocks.data()) : nullptr, bytes}; }
};

/// Queries the workspace, allocates it, then counts around distill::run alone.
template <class T, class Options, class Args, class Outs>
void check_run(const char* what, const Options& opts, const Args& args, const Outs& outs) {
    static_assert(noexcept(distill::run(opts, args, outs, distill::workspace{})), "the run step is noexcept on the CPU backend");
    scratch s(distill::workspace_bytes(opts, args, outs));
    scope counting;
    const distill::status st = distill::run(opts, args, outs, s.ws());
    const scope::result r = counting.stop();
    report(what, precision_name<T>, st.ok(), r, st.ok() ? "" : st.message());
}

// ---------------------------------------------------------------- data

template <class T>
using rowmat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using colmat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
template <class T>
using vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
using labels_vec = Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1>;

/// Deterministic values in [lo, hi).
struct lcg {
    std::uint64_t state;
    double next(double lo, double hi) noexcept {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        return lo + (hi - lo) * static_cast<double>(state >> 11) / 9007199254740992.0;
    }
};
template <class M>
M random_matrix(distill::index_t rows, distill::index_t cols, std::uint64_t seed, double lo = -2, double hi = 2) {
    M m(rows, cols);
    lcg g{seed};
    for (distill::index_t i = 0; i < rows; ++i)
        for (distill::index_t j = 0; j < cols; ++j) m(i, j) = static_cast<typename M::Scalar>(g.next(lo, hi));
    return m;
}
template <class T>
vec<T> random_vector(distill::index_t n, std::uint64_t seed, double lo, double hi) {
    vec<T> v(n);
    lcg g{seed};
    for (distill::index_t i = 0; i < n; ++i) v(i) = static_cast<T>(g.next(lo, hi));
    return v;
}
inline labels_vec some_labels(distill::index_t n, distill::index_t classes) {
    labels_vec y(n);
    for (distill::index_t i = 0; i < n; ++i) y(i) = (i * 7 + 3) % classes;
    return y;
}

/// A 4-D N x C x H x W view of an N x (C H W) row-major Eigen matrix.
template <class T>
distill::any_view<const T> maps(const rowmat<T>& m, distill::index_t c, distill::index_t h, distill::index_t w) {
    return distill::make_view(m.data(), m.rows(), c, h, w);
}
template <class T>
distill::any_view<T> maps(rowmat<T>& m, distill::index_t c, distill::index_t h, distill::index_t w) {
    return distill::make_view(m.data(), m.rows(), c, h, w);
}

// ---------------------------------------------------------------- self-test

void* volatile sink = nullptr;

void self_test() {
    const auto expect_counted = [](const char* what, const scope::result& r) {
        ++cases;
        const bool caught = !r.clean();
        if (!caught) ++failures;
        std::printf("%-4s self-test: %-34s operator new %ld, C allocator %ld, Eigen no-malloc asserts %ld (must be > 0)\n",
                    caught ? "ok" : "FAIL", what, r.heap.operator_new, r.heap.c_alloc, r.eigen);
    };
    {
        scope s;
        int* p = new int(7);
        sink = p;
        const auto r = s.stop();
        delete p;
        expect_counted("new int", r);
    }
    {
        scope s;
        double* p = new double[64];
        sink = p;
        const auto r = s.stop();
        delete[] p;
        expect_counted("new double[64]", r);
    }
    {
        struct alignas(128) wide {
            char c[128];
        };
        scope s;
        wide* p = new wide;
        sink = p;
        const auto r = s.stop();
        delete p;
        expect_counted("aligned new (alignas 128)", r);
    }
    {
        scope s;
        void* p = std::malloc(100);
        sink = p;
        const auto r = s.stop();
        std::free(p);
        expect_counted("malloc", r);
    }
    {
        std::vector<float> v;
        scope s;
        v.push_back(1.0f);
        sink = v.data();
        const auto r = s.stop();
        expect_counted("std::vector::push_back", r);
    }
    {
        scope s;
        Eigen::VectorXf v(1000);
        sink = v.data();
        const auto r = s.stop();
        expect_counted("Eigen::VectorXf(1000)", r);
        if (r.eigen == 0) {
            ++failures;
            std::printf("FAIL self-test: the eigen_assert hook did not see Eigen's no-malloc check\n");
        }
    }
    {
        // A GEMM whose packing blocks exceed EIGEN_STACK_ALLOCATION_LIMIT: Eigen takes them from the heap.
        const auto a = random_matrix<rowmat<float>>(300, 700, 1), b = random_matrix<rowmat<float>>(700, 200, 2);
        rowmat<float> c(300, 200);
        scope s;
        c.noalias() = a * b;
        const auto r = s.stop();
        expect_counted("Eigen GEMM 300 x 700 x 200 (direct)", r);
    }
}

// ---------------------------------------------------------------- matrix products at the stack limit

/// distill's gemm and gram against a naive product, at and around the sizes where Eigen's packing
/// buffers would leave the stack.
template <class T>
void products() {
    using distill::index_t;
    const index_t limit = distill::detail::eigen_stack_elements<T>;
    struct shape {
        index_t m, n, k;
    };
    const index_t side = 64;
    const shape shapes[] = {
        {side, side, limit / side},          // exactly at the limit: one Eigen call
        {side, side, limit / side + 1},      // just above: tiled
        {side + 1, side, limit / side},      // just above through the larger side
        {300, 200, 700},                     // partial tiles in every dimension
        {1, 300, 20000},                     // a row vector times a matrix (Eigen's GEMV path), tiled
        {300, 1, 20000},                     // a matrix times a column vector, tiled
        {1, 64, 512},                        // the same within the limit: one Eigen call
        {64, 1, 512},
        {1, 1, 5000},                        // a dot product
        {8, 8, 20},                          // tiny: Eigen's coefficient-based product
    };
    for (const shape& sh : shapes) {
        const auto a = random_matrix<rowmat<T>>(sh.m, sh.k, 10 + static_cast<std::uint64_t>(sh.k));
        const auto b = random_matrix<colmat<T>>(sh.k, sh.n, 20 + static_cast<std::uint64_t>(sh.n));
        rowmat<T> c = random_matrix<rowmat<T>>(sh.m, sh.n, 30), expected(sh.m, sh.n);
        const T alpha = T(0.5), beta = T(2);
        for (index_t i = 0; i < sh.m; ++i)
            for (index_t j = 0; j < sh.n; ++j) {
                double sum = 0;
                for (index_t q = 0; q < sh.k; ++q) sum += static_cast<double>(a(i, q)) * static_cast<double>(b(q, j));
                expected(i, j) = static_cast<T>(static_cast<double>(alpha) * sum + static_cast<double>(beta) * static_cast<double>(c(i, j)));
            }
        const distill::detail::matrix_ref<const T> ar{a.data(), sh.m, sh.k, sh.k, 1}, br{b.data(), sh.k, sh.n, 1, sh.k};
        const distill::detail::matrix_ref<T> cr{c.data(), sh.m, sh.n, sh.n, 1};
        scope counting;
        distill::detail::gemm(distill::cpu_backend{}, alpha, ar, br, beta, cr);
        const auto r = counting.stop();
        double worst = 0;
        for (index_t i = 0; i < sh.m; ++i)
            for (index_t j = 0; j < sh.n; ++j) {
                const double e = static_cast<double>(expected(i, j)), g = static_cast<double>(c(i, j));
                worst = std::fmax(worst, std::fabs(g - e) / (1 + std::fabs(e)) / std::sqrt(static_cast<double>(sh.k)));
            }
        const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
        char what[96], detail[64];
        std::snprintf(what, sizeof what, "gemm %lld x %lld x %lld (limit %lld)", static_cast<long long>(sh.m),
                      static_cast<long long>(sh.n), static_cast<long long>(sh.k), static_cast<long long>(limit));
        std::snprintf(detail, sizeof detail, "error %.2e / sqrt(k)", worst);
        report(what, precision_name<T>, worst <= tol, r, detail);
    }
    struct gram_shape {
        index_t n, d;
    };
    const gram_shape grams[] = {{side, limit / side}, {side, limit / side + 1}, {300, 1000}, {128, 4096}};
    for (const gram_shape& sh : grams) {
        const auto f = random_matrix<rowmat<T>>(sh.n, sh.d, 40 + static_cast<std::uint64_t>(sh.d));
        rowmat<T> g = rowmat<T>::Constant(sh.n, sh.n, T(7));
        const distill::detail::matrix_ref<const T> fr{f.data(), sh.n, sh.d, sh.d, 1};
        const distill::detail::matrix_ref<T> gr{g.data(), sh.n, sh.n, sh.n, 1};
        scope counting;
        distill::detail::gram(distill::cpu_backend{}, fr, gr);
        const auto r = counting.stop();
        double worst = 0;
        for (index_t i = 0; i < sh.n; ++i)
            for (index_t j = 0; j < sh.n; ++j) {
                double e = 0;
                for (index_t q = 0; q < sh.d; ++q) e += static_cast<double>(f(i, q)) * static_cast<double>(f(j, q));
                worst = std::fmax(worst, std::fabs(static_cast<double>(g(i, j)) - e) / (1 + std::fabs(e)) /
                                             std::sqrt(static_cast<double>(sh.d)));
            }
        const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
        char what[96], detail[64];
        std::snprintf(what, sizeof what, "gram %lld x %lld (limit %lld)", static_cast<long long>(sh.n),
                      static_cast<long long>(sh.d), static_cast<long long>(limit));
        std::snprintf(detail, sizeof detail, "error %.2e / sqrt(d)", worst);
        report(what, precision_name<T>, worst <= tol, r, detail);
    }
}

// ---------------------------------------------------------------- response losses

template <class T>
void response_losses() {
    using distill::index_t;
    const index_t n = 32, c = 1000;
    const auto student = random_matrix<rowmat<T>>(n, c, 1, -4, 4), teacher = random_matrix<rowmat<T>>(n, c, 2, -4, 4);
    const labels_vec labels = some_labels(n, c);
    const vec<T> weight = random_vector<T>(n, 3, 0.5, 1.5);
    vec<T> loss(1), grad_temperature(1);
    rowmat<T> grad(n, c);

    const auto args = distill::make_response_args(student, teacher, labels, weight);
    const distill::response_outputs<T> outs{distill::as_view(loss), distill::as_view(grad)};
    distill::response_outputs<T> outs_t = outs;
    outs_t.grad_temperature = distill::as_view(grad_temperature);

    check_run<T>("kd (T = 4, d/dT)", distill::basic_kd_options<T>{.temperature = T(4)}, args, outs_t);
    check_run<T>("kd (standardize, d/dT)", distill::basic_kd_options<T>{.temperature = T(2), .standardize = true}, args, outs_t);
    check_run<T>("reverse_kd", distill::basic_reverse_kd_options<T>{.temperature = T(2)}, args, outs_t);
    check_run<T>("jsd", distill::basic_jsd_options<T>{}, args, outs);
    check_run<T>("skew_kd", distill::basic_skew_kd_options<T>{}, args, outs);
    check_run<T>("skew_reverse_kd", distill::basic_skew_reverse_kd_options<T>{}, args, outs);
    check_run<T>("tvd", distill::basic_tvd_options<T>{}, args, outs);
    check_run<T>("soft_ce", distill::basic_soft_ce_options<T>{}, args, outs);
    check_run<T>("logit_mse", distill::basic_logit_mse_options<T>{}, args, outs);
    check_run<T>("dkd", distill::basic_dkd_options<T>{}, args, outs);

    // accumulate / grad_scale (how an objective combines terms)
    distill::response_outputs<T> scaled = outs;
    scaled.grad_scale = T(0.25);
    scaled.accumulate = true;
    check_run<T>("kd (grad_scale 0.25, accumulate)", distill::basic_kd_options<T>{.temperature = T(4)}, args, scaled);

    const distill::response_args<T> ce_args{distill::any_view<const T>(distill::as_view(student)), {},
                                            distill::any_view<const std::int64_t>(distill::as_view(labels)),
                                            distill::any_view<const T>(distill::as_view(weight))};
    check_run<T>("ce", distill::basic_ce_options<T>{}, ce_args, outs);
    check_run<T>("ce (label smoothing 0.1)", distill::basic_ce_options<T>{.label_smoothing = T(0.1)}, ce_args, outs);

    const auto dist_args = distill::make_response_args(student, teacher);
    check_run<T>("dist", distill::basic_dist_options<T>{.temperature = T(2)}, dist_args, outs);

    // kd_topk: 8 tokens x 32000 vocabulary, a top-32 teacher.
    const index_t tokens = 8, vocab = 32000, k = 32;
    const auto lm_student = random_matrix<rowmat<T>>(tokens, vocab, 5, -6, 6);
    Eigen::Matrix<std::int64_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> ids(tokens, k);
    rowmat<T> logprob(tokens, k);
    for (index_t i = 0; i < tokens; ++i)
        for (index_t j = 0; j < k; ++j) {
            ids(i, j) = (i * 977 + j * 131) % vocab;
            logprob(i, j) = static_cast<T>(-1.0 - 0.5 * static_cast<double>(j));
        }
    rowmat<T> lm_grad(tokens, vocab);
    vec<T> lm_loss(1);
    const auto topk_args = distill::make_topk_args(lm_student, ids, logprob);
    const distill::response_outputs<T> topk_outs{distill::as_view(lm_loss), distill::as_view(lm_grad)};
    check_run<T>("kd_topk (V = 32000, k = 32)", distill::basic_kd_topk_options<T>{}, topk_args, topk_outs);
    check_run<T>("kd_topk (renormalize, T = 2)", distill::basic_kd_topk_options<T>{.temperature = T(2), .renormalize = true},
                 topk_args, topk_outs);
}

// ---------------------------------------------------------------- feature and relation methods

template <class T>
void feature_methods() {
    using distill::index_t;
    vec<T> loss(1);

    {  // hint on 4-D maps
        const index_t n = 16, c = 64, h = 8, w = 8;
        const auto s = random_matrix<rowmat<T>>(n, c * h * w, 11), t = random_matrix<rowmat<T>>(n, c * h * w, 12);
        rowmat<T> g(n, c * h * w);
        const distill::feature_args<T> args{.student = maps(s, c, h, w), .teacher = maps(t, c, h, w)};
        const distill::feature_outputs<T> outs{.loss = distill::as_view(loss), .grad_student = maps(g, c, h, w)};
        check_run<T>("hint (mse)", distill::basic_hint_options<T>{}, args, outs);
        check_run<T>("hint (cosine)", distill::basic_hint_options<T>{.distance = distill::hint_distance::cosine}, args, outs);
        check_run<T>("hint (smooth_l1)", distill::basic_hint_options<T>{.distance = distill::hint_distance::smooth_l1}, args, outs);
        distill::feature_outputs<T> acc = outs;
        acc.grad_scale = T(0.5);
        acc.accumulate = true;
        check_run<T>("hint (grad_scale 0.5, accumulate)", distill::basic_hint_options<T>{}, args, acc);
    }
    {  // maps with different channel counts: at, nst, factor (HW = 24 x 24 = 576)
        const index_t n = 4, cs = 16, ct = 32, h = 24, w = 24;
        const auto s = random_matrix<rowmat<T>>(n, cs * h * w, 13), t = random_matrix<rowmat<T>>(n, ct * h * w, 14);
        rowmat<T> g(n, cs * h * w);
        const distill::feature_args<T> args{.student = maps(s, cs, h, w), .teacher = maps(t, ct, h, w)};
        const distill::feature_outputs<T> outs{.loss = distill::as_view(loss), .grad_student = maps(g, cs, h, w)};
        check_run<T>("at (4 x 16|32 x 24 x 24)", distill::basic_at_options<T>{}, args, outs);
        check_run<T>("nst (4 x 16|32 x 24 x 24)", distill::basic_nst_options<T>{}, args, outs);
        check_run<T>("factor (attention)", distill::basic_factor_options<T>{}, args, outs);
    }
    {  // factor (flat) needs equal channel counts
        const index_t n = 4, c = 16, h = 16, w = 16;
        const auto s = random_matrix<rowmat<T>>(n, c * h * w, 15), t = random_matrix<rowmat<T>>(n, c * h * w, 16);
        rowmat<T> g(n, c * h * w);
        const distill::feature_args<T> args{.student = maps(s, c, h, w), .teacher = maps(t, c, h, w)};
        const distill::feature_outputs<T> outs{.loss = distill::as_view(loss), .grad_student = maps(g, c, h, w)};
        check_run<T>("factor (flat)", distill::basic_factor_options<T>{.map = distill::factor_map::flat}, args, outs);
    }
    {  // layered methods: fsp (two layers of 16 and 32 channels, 16 x 16) and ab
        const index_t n = 4, c0 = 16, c1 = 32, h = 16, w = 16;
        const auto s0 = random_matrix<rowmat<T>>(n, c0 * h * w, 17), s1 = random_matrix<rowmat<T>>(n, c1 * h * w, 18);
        const auto t0 = random_matrix<rowmat<T>>(n, c0 * h * w, 19), t1 = random_matrix<rowmat<T>>(n, c1 * h * w, 20);
        rowmat<T> g0(n, c0 * h * w), g1(n, c1 * h * w);
        const distill::any_view<const T> sl[] = {maps(s0, c0, h, w), maps(s1, c1, h, w)};
        const distill::any_view<const T> tl[] = {maps(t0, c0, h, w), maps(t1, c1, h, w)};
        const distill::any_view<T> gl[] = {maps(g0, c0, h, w), maps(g1, c1, h, w)};
        const distill::feature_args<T> args{.student_layers = sl, .teacher_layers = tl};
        const distill::feature_outputs<T> outs{.loss = distill::as_view(loss), .grad_student_layers = gl};
        check_run<T>("fsp (2 layers)", distill::basic_fsp_options<T>{}, args, outs);
        check_run<T>("ab (2 layers)", distill::basic_ab_options<T>{}, args, outs);
    }
    {  // vid: N x C x H x W with a per-channel alpha
        const index_t n = 16, c = 64, h = 4, w = 4;
        const auto s = random_matrix<rowmat<T>>(n, c * h * w, 21), t = random_matrix<rowmat<T>>(n, c * h * w, 22);
        const vec<T> alpha = random_vector<T>(c, 23, -1, 1);
        rowmat<T> g(n, c * h * w);
        vec<T> ga(c);
        const distill::feature_args<T> args{.student = maps(s, c, h, w), .teacher = maps(t, c, h, w), .alpha = distill::as_view(alpha)};
        const distill::feature_outputs<T> outs{.loss = distill::as_view(loss), .grad_student = maps(g, c, h, w), .grad_alpha = distill::as_view(ga)};
        check_run<T>("vid (d/d alpha)", distill::basic_vid_options<T>{}, args, outs);
    }
    // relations on N x D embeddings (row-major and column-major Eigen matrices)
    const auto relation = [&](const char* what, const auto& opts, index_t n, index_t d, bool column_major) {
        if (column_major) {
            const auto s = random_matrix<colmat<T>>(n, d, 31), t = random_matrix<colmat<T>>(n, d, 32);
            colmat<T> g(n, d);
            const distill::feature_args<T> args{.student = distill::as_view(s), .teacher = distill::as_view(t)};
            const distill::feature_outputs<T> outs{.loss = distill::as_view(loss), .grad_student = distill::as_view(g)};
            check_run<T>(what, opts, args, outs);
        } else {
            const auto s = random_matrix<rowmat<T>>(n, d, 33), t = random_matrix<rowmat<T>>(n, d, 34);
            rowmat<T> g(n, d);
            const distill::feature_args<T> args{.student = distill::as_view(s), .teacher = distill::as_view(t)};
            const distill::feature_outputs<T> outs{.loss = distill::as_view(loss), .grad_student = distill::as_view(g)};
            check_run<T>(what, opts, args, outs);
        }
    };
    relation("sp (128 x 1024)", distill::basic_sp_options<T>{}, 128, 1024, false);
    relation("sp (256 x 2048, column-major)", distill::basic_sp_options<T>{}, 256, 2048, true);
    relation("rkd (64 x 512)", distill::basic_rkd_options<T>{}, 64, 512, false);
    relation("rkd (64 x 513, column-major)", distill::basic_rkd_options<T>{}, 64, 513, true);
    relation("pkt (128 x 512)", distill::basic_pkt_options<T>{}, 128, 512, false);
    relation("cc (128 x 256)", distill::basic_cc_options<T>{}, 128, 256, false);
    relation("cc_repdistiller (64 x 128)", distill::basic_cc_repdistiller_options<T>{}, 64, 128, false);
}

// ---------------------------------------------------------------- schemes

template <class T>
void schemes() {
    using distill::index_t;
    const index_t n = 32, c = 100, e = 64, k = 3;
    const labels_vec labels = some_labels(n, c);
    const auto labels_view = distill::any_view<const std::int64_t>(distill::as_view(labels));
    std::vector<rowmat<T>> logits, features;
    for (index_t i = 0; i < k; ++i) {
        logits.push_back(random_matrix<rowmat<T>>(n, c, 50 + static_cast<std::uint64_t>(i), -3, 3));
        features.push_back(random_matrix<rowmat<T>>(n, e, 60 + static_cast<std::uint64_t>(i)));
    }
    std::vector<distill::any_view<const T>> logit_views, feature_views;
    for (const auto& m : logits) logit_views.push_back(distill::as_view(m));
    for (const auto& m : features) feature_views.push_back(distill::as_view(m));
    std::vector<rowmat<T>> grad_logits(static_cast<std::size_t>(k), rowmat<T>(n, c)), grad_features(static_cast<std::size_t>(k), rowmat<T>(n, e));
    std::vector<distill::any_view<T>> grad_logit_views, grad_feature_views;
    for (auto& m : grad_logits) grad_logit_views.push_back(distill::as_view(m));
    for (auto& m : grad_features) grad_feature_views.push_back(distill::as_view(m));
    vec<T> loss(1), total(1), peer_loss(k), head_loss(k);
    rowmat<T> grad(n, c), ensemble(n, k), term_loss(k, 3);

    {  // multi_teacher: the student is exit 0, the teachers exits 0..2
        const distill::multi_teacher_args<T> args{logit_views[0], std::span(logit_views).subspan(0, 3), labels_view, {}};
        const distill::multi_teacher_outputs<T> outs{distill::as_view(loss), distill::as_view(grad), distill::as_view(ensemble)};
        const distill::ensemble_mode modes[] = {distill::ensemble_mode::average_probabilities, distill::ensemble_mode::average_logits,
                                                distill::ensemble_mode::confidence_weighted, distill::ensemble_mode::best_teacher};
        const char* names[] = {"multi_teacher (average probabilities)", "multi_teacher (average logits)",
                               "multi_teacher (confidence weighted)", "multi_teacher (best teacher)"};
        for (int m = 0; m < 4; ++m)
            check_run<T>(names[m], distill::basic_multi_teacher_options<T>{.temperature = T(2), .mode = modes[m]}, args, outs);
    }
    {  // dml: three peers
        const distill::dml_args<T> args{logit_views, labels_view};
        const distill::dml_outputs<T> outs{distill::as_view(peer_loss), distill::as_view(total), grad_logit_views};
        check_run<T>("dml (3 peers)", distill::basic_dml_options<T>{.temperature = T(2)}, args, outs);
    }
    {  // self_distillation: three exits with features
        const distill::self_distillation_args<T> args{logit_views, labels_view, feature_views};
        distill::self_distillation_outputs<T> outs{distill::as_view(loss), distill::as_view(head_loss), distill::as_view(term_loss),
                                                   grad_logit_views, grad_feature_views};
        check_run<T>("self_distillation (3 exits, features)", distill::basic_self_distillation_options<T>{}, args, outs);
    }
    {  // objective: ce + kd on the same logits, hint + sp on the same features (accumulating)
        const auto kd_args = distill::make_response_args(logits[0], logits[2], labels);
        const distill::response_args<T> ce_args{logit_views[0], {}, labels_view, {}};
        const distill::feature_args<T> hint_args{.student = feature_views[0], .teacher = feature_views[2]};
        const distill::response_outputs<T> logit_outs{.loss = {}, .grad_student = grad_logit_views[0]};
        const distill::feature_outputs<T> feature_outs{.loss = {}, .grad_student = grad_feature_views[0], .accumulate = true};
        distill::response_outputs<T> logit_outs_acc = logit_outs;
        logit_outs_acc.accumulate = true;
        const distill::basic_ce_options<T> ce_opts{};
        const distill::basic_kd_options<T> kd_opts{.temperature = T(4)};
        const distill::basic_hint_options<T> hint_opts{};
        const distill::basic_sp_options<T> sp_opts{};
        vec<T> slot(1);
        distill::feature_outputs<T> sized = feature_outs;
        sized.loss = distill::as_view(slot);
        distill::response_outputs<T> sized_r = logit_outs_acc;
        sized_r.loss = distill::as_view(slot);
        std::size_t bytes = distill::workspace_bytes(ce_opts, ce_args, sized_r);
        bytes = std::max(bytes, distill::workspace_bytes(kd_opts, kd_args, sized_r));
        bytes = std::max(bytes, distill::workspace_bytes(hint_opts, hint_args, sized));
        bytes = std::max(bytes, distill::workspace_bytes(sp_opts, hint_args, sized));
        scratch s(bytes);
        const auto warmup = distill::warmup(5.0, 0.0, distill::constant_schedule<T>{T(0.5)});
        scope counting;
        distill::objective<T> objective(2.0, s.ws());
        objective.add(T(1), ce_opts, ce_args, logit_outs);
        objective.add(T(0.9), kd_opts, kd_args, logit_outs);
        objective.add(warmup, hint_opts, hint_args, feature_outs);
        objective.add(T(0.1), sp_opts, hint_args, feature_outs);
        const auto r = counting.stop();
        report("objective (ce + kd + hint + sp)", precision_name<T>, objective.ok() && objective.terms() == 4, r,
               objective.ok() ? "" : objective.status().message());
    }
}

}  // namespace noheap

int main() {
    using namespace noheap;
    std::printf("EIGEN_STACK_ALLOCATION_LIMIT = %d bytes\n", EIGEN_STACK_ALLOCATION_LIMIT);
    self_test();
    first_eigen_assert = nullptr;  // the self-test's failures were wanted
    products<float>();
    products<double>();
#if !DISTILL_NOHEAP_PRODUCTS_ONLY
    response_losses<float>();
    response_losses<double>();
    feature_methods<float>();
    feature_methods<double>();
    schemes<float>();
    schemes<double>();
#endif
    if (first_eigen_assert) std::printf("first eigen_assert failure: %s\n", first_eigen_assert);
    std::printf("%d of %d checks passed\n", cases - failures, cases);
    return failures == 0 ? 0 : 1;
}
