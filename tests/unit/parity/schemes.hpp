// tests/unit/parity/schemes.hpp: on the Thrust backend (OMP device system; device_vector data, and
// host_vector data under thrust::omp::par) against the CPU backend, float and double (included by
// thrust_response_test.cpp):
//   - response_outputs::grad_scale and accumulate for kd, jsd, tvd, ce, dkd, kd_topk and dist:
//     gradients added into a prefilled buffer (grad_student, and grad_temperature where the method
//     has one; run_rows adds it on both backends), and scaled gradients that overwrite;
//   - dml (deep mutual learning), K = 2, 3, 5 peers, every reduction;
//   - multi_teacher, every ensemble mode, with and without labels, row weights and fixed teacher
//     weights, and its grad_scale / accumulate outputs.
// Each backend's result is also checked against the CPU's plain gradient (base + scale * plain),
// so that a backend that ignored grad_scale or accumulate would fail even where the others agree.
#pragma once

#include "../test_support.hpp"

#include <distill/schemes/multi_teacher.hpp>
#include <distill/schemes/mutual.hpp>
#include <distill/thrust.hpp>

#include <thrust/device_vector.h>
#include <thrust/host_vector.h>
#include <thrust/system/omp/execution_policy.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

namespace schemes_parity {

using distill::device_space;
using distill::host_space;
using distill::index_t;
using distill::reduction;
using namespace distill_test;

inline std::size_t at(index_t i) { return static_cast<std::size_t>(i); }

template <class T>
double parity_rtol() {
    return std::is_same_v<T, float> ? 1e-5 : 1e-12;
}

template <class V>
std::vector<double> to_doubles(const V& v) {
    const thrust::host_vector<typename V::value_type> h = v;
    return std::vector<double>(h.begin(), h.end());
}
template <class T, class Space>
std::vector<double> to_doubles(const distill::tensor<T, Space>& t) {
    const auto h = host_copy(t);
    return std::vector<double>(h.begin(), h.end());
}

/// actual and expected agree to rtol relative to the largest |expected| (sums of terms of both
/// signs, reordered by the backends, carry the rounding of their largest terms).
inline void check_close_to_largest(const std::vector<double>& actual, const std::vector<double>& expected, double rtol) {
    double largest = 1e-30;
    for (double v : expected) largest = std::max(largest, std::abs(v));
    check_all_close(actual, expected, rtol, rtol * largest);
}

/// What a gradient buffer holds before an accumulating call: an earlier term's gradient.
template <class T>
std::vector<T> earlier_gradient(index_t size) {
    std::vector<T> g(at(size));
    for (std::size_t k = 0; k < g.size(); ++k) g[k] = T(0.25) * T(static_cast<int>(k % 5)) - T(0.5);
    return g;
}
template <class T>
constexpr T earlier_dtemperature = T(1.5);

template <class Backend>
constexpr bool on_device = std::is_same_v<typename Backend::memory_space, device_space>;

/// Runs a checked call with a workspace of the size the call asks for, in its memory space.
template <class Backend, class Options, class Args, class Outputs>
void run_sized(const Backend& backend, const Options& opts, const Args& args, const Outputs& outs) {
    const std::size_t bytes = distill::workspace_bytes(backend, opts, args, outs);
    std::conditional_t<on_device<Backend>, thrust::device_vector<double>, thrust::host_vector<double>> scratch(
        bytes / sizeof(double) + 1);
    const distill::status s =
        distill::run(backend, opts, args, outs, distill::workspace{thrust::raw_pointer_cast(scratch.data()), bytes});
    INFO("message: ", std::string(s.message()));
    REQUIRE(s.ok());
}

/// One response call's outputs in host_vector or device_vector storage: loss, an N x C gradient
/// and d/dT, the gradients prefilled with an earlier term's values.
template <template <class...> class Vec, class T>
struct term_outputs {
    using space = distill::memory_space_t<Vec<T>>;
    index_t n, c;
    Vec<T> loss, grad, grad_temperature;
    term_outputs(index_t loss_size, index_t rows, index_t cols)
        : n(rows), c(cols), loss(at(loss_size), T(0)), grad(earlier_gradient<T>(rows * cols)),
          grad_temperature(1, earlier_dtemperature<T>) {}
    distill::response_outputs<T, space> views(bool tempered, T scale, bool accumulate) {
        distill::response_outputs<T, space> o{distill::as_view(loss), distill::as_matrix(grad, n, c)};
        if (tempered) o.grad_temperature = distill::as_view(grad_temperature);
        o.grad_scale = scale;
        o.accumulate = accumulate;
        return o;
    }
};

/// A response problem's inputs in host_vector or device_vector storage.
template <template <class...> class Vec, class T>
struct response_inputs {
    using space = distill::memory_space_t<Vec<T>>;
    index_t n, c;
    Vec<T> student, teacher, weight;
    Vec<std::int64_t> labels;
    bool use_labels, use_weight;
    explicit response_inputs(const host_problem<T>& h)
        : n(h.n), c(h.c), student(h.student.begin(), h.student.end()), teacher(h.teacher.begin(), h.teacher.end()),
          weight(h.weight.begin(), h.weight.end()), labels(h.labels.begin(), h.labels.end()), use_labels(h.use_labels),
          use_weight(h.use_weight) {}
    distill::response_args<T, space> args(bool with_teacher = true) const {
        distill::response_args<T, space> a{distill::as_matrix(student, n, c), {}};
        if (with_teacher) a.teacher = distill::as_matrix(teacher, n, c);
        if (use_labels) a.labels = distill::as_view(labels);
        if (use_weight) a.weight = distill::as_view(weight);
        return a;
    }
};

/// One method with grad_scale and accumulate on the CPU backend, on Thrust over device memory and
/// on Thrust over host memory with OpenMP. `host_args` / `device_args` are the same inputs in
/// host_vector / device_vector storage. Checked:
///   - the CPU result is the CPU's plain gradient scaled (and added to the earlier values), and the
///     loss is not scaled;
///   - both Thrust results match the CPU result.
template <class T, class Options, class HostArgs, class DeviceArgs>
void check_scaled_outputs(const Options& opts, const HostArgs& host_args, const DeviceArgs& device_args, index_t n,
                          index_t c, bool tempered) {
    const double rtol = parity_rtol<T>();
    const index_t loss_size = opts.reduce == reduction::none ? n : 1;
    const distill::cpu_backend cpu{};
    term_outputs<thrust::host_vector, T> plain(loss_size, n, c);
    run_sized(cpu, opts, host_args, plain.views(tempered, T(1), false));
    const std::vector<double> plain_grad = to_doubles(plain.grad), plain_loss = to_doubles(plain.loss);
    const double plain_dt = tempered ? to_doubles(plain.grad_temperature)[0] : 0.0;

    struct setting {
        T scale;
        bool accumulate;
    };
    for (const setting s : {setting{T(-0.75), true}, setting{T(2.5), false}, setting{T(1), true}}) {
        CAPTURE(s.scale);
        CAPTURE(s.accumulate);
        term_outputs<thrust::host_vector, T> on_cpu(loss_size, n, c), on_omp(loss_size, n, c);
        term_outputs<thrust::device_vector, T> on_dev(loss_size, n, c);
        run_sized(cpu, opts, host_args, on_cpu.views(tempered, s.scale, s.accumulate));
        run_sized(distill::thrust_host(thrust::omp::par), opts, host_args, on_omp.views(tempered, s.scale, s.accumulate));
        run_sized(distill::thrust_device(), opts, device_args, on_dev.views(tempered, s.scale, s.accumulate));

        // The CPU's semantics: earlier + scale * plain (or scale * plain), the loss unscaled.
        const std::vector<T> earlier = earlier_gradient<T>(n * c);
        std::vector<double> want(earlier.size());
        for (std::size_t k = 0; k < want.size(); ++k)
            want[k] = (s.accumulate ? static_cast<double>(earlier[k]) : 0.0) + static_cast<double>(s.scale) * plain_grad[k];
        check_close_to_largest(to_doubles(on_cpu.grad), want, 10 * rtol);
        check_all_close(to_doubles(on_cpu.loss), plain_loss, rtol, 0);
        if (tempered) {
            const double want_dt =
                (s.accumulate ? static_cast<double>(earlier_dtemperature<T>) : 0.0) + static_cast<double>(s.scale) * plain_dt;
            DISTILL_CHECK_CLOSE(to_doubles(on_cpu.grad_temperature)[0], want_dt, 10 * rtol,
                                10 * rtol * std::max(1.0, std::abs(plain_dt)));
        } else {
            CHECK(to_doubles(on_cpu.grad_temperature)[0] == static_cast<double>(earlier_dtemperature<T>));
        }

        // Thrust (device memory, and host memory under OpenMP) against the CPU.
        const std::vector<double> cpu_grad = to_doubles(on_cpu.grad), cpu_loss = to_doubles(on_cpu.loss);
        const double cpu_dt = to_doubles(on_cpu.grad_temperature)[0];
        for (int which = 0; which < 2; ++which) {
            INFO("thrust on ", which == 0 ? "device memory" : "host memory (omp::par)");
            const std::vector<double> grad = which == 0 ? to_doubles(on_dev.grad) : to_doubles(on_omp.grad);
            const std::vector<double> loss = which == 0 ? to_doubles(on_dev.loss) : to_doubles(on_omp.loss);
            const double dt = which == 0 ? to_doubles(on_dev.grad_temperature)[0] : to_doubles(on_omp.grad_temperature)[0];
            check_close_to_largest(grad, cpu_grad, rtol);
            check_close_to_largest(loss, cpu_loss, rtol);
            DISTILL_CHECK_CLOSE(dt, cpu_dt, rtol, rtol * static_cast<double>(n) * std::max(1.0, std::abs(plain_dt)));
        }
    }
}

}  // namespace schemes_parity

TEST_CASE_TEMPLATE("grad_scale / accumulate parity: kd, jsd, tvd, ce, dkd, kd_topk and dist on Thrust match the CPU", T,
                   float, double) {
    using namespace schemes_parity;
    constexpr std::array<std::array<index_t, 2>, 3> shapes = {{{1, 2}, {5, 7}, {33, 515}}};
    int runs = 0;
    for (const auto& shape : shapes)
        for (reduction red : {reduction::batchmean, reduction::sum, reduction::none}) {
            const index_t n = shape[0], c = shape[1];
            CAPTURE(n);
            CAPTURE(c);
            INFO("reduction: ", std::string(distill::to_string(red)));
            host_problem<T> hp(n, c, static_cast<unsigned>(900 + n + c));
            hp.with_labels(n > 1 ? std::initializer_list<index_t>{1} : std::initializer_list<index_t>{}).with_weight();
            const response_inputs<thrust::host_vector, T> h(hp);
            const response_inputs<thrust::device_vector, T> d(hp);
            {
                INFO("kd");
                check_scaled_outputs<T>(distill::kd_options{.temperature = 2.0, .reduce = red}, h.args(), d.args(), n, c,
                                        true);
            }
            {
                INFO("jsd");
                check_scaled_outputs<T>(distill::jsd_options{.temperature = 1.5, .reduce = red, .beta = 0.3}, h.args(),
                                        d.args(), n, c, true);
            }
            {
                INFO("tvd");
                check_scaled_outputs<T>(distill::tvd_options{.temperature = 3.0, .reduce = red}, h.args(), d.args(), n, c,
                                        true);
            }
            {
                INFO("ce");
                check_scaled_outputs<T>(distill::ce_options{.reduce = red, .label_smoothing = 0.1}, h.args(false),
                                        d.args(false), n, c, false);
            }
            {
                INFO("dkd");
                check_scaled_outputs<T>(distill::dkd_options{.temperature = 4.0, .reduce = red}, h.args(), d.args(), n, c,
                                        true);
            }
            if (red == reduction::batchmean) {  // dist takes batchmean only, and no labels
                INFO("dist");
                response_inputs<thrust::host_vector, T> hu(hp);
                response_inputs<thrust::device_vector, T> du(hp);
                hu.use_labels = du.use_labels = hu.use_weight = du.use_weight = false;
                check_scaled_outputs<T>(distill::dist_options{.temperature = 2.0, .reduce = red}, hu.args(), du.args(), n, c,
                                        true);
            }
            {
                // The teacher's top k ids: row i holds (i + 3 j) % c, distinct for j < k <= c / 3 + 1.
                const index_t k = std::min<index_t>(4, (c + 2) / 3);
                std::vector<std::int64_t> ids;
                std::vector<T> logprob;
                for (index_t i = 0; i < n; ++i)
                    for (index_t j = 0; j < k; ++j) {
                        ids.push_back((i + 3 * j) % c);
                        logprob.push_back(T(-1) - T(0.75) * static_cast<T>(j));  // mass < 1
                    }
                const thrust::host_vector<std::int64_t> hids(ids.begin(), ids.end());
                const thrust::device_vector<std::int64_t> dids(ids.begin(), ids.end());
                const thrust::host_vector<T> hlp(logprob.begin(), logprob.end());
                const thrust::device_vector<T> dlp(logprob.begin(), logprob.end());
                const auto host_topk = distill::make_topk_args(distill::as_matrix(h.student, n, c),
                                                               distill::as_matrix(hids, n, k),
                                                               distill::as_matrix(hlp, n, k), h.labels, h.weight);
                const auto device_topk = distill::make_topk_args(distill::as_matrix(d.student, n, c),
                                                                 distill::as_matrix(dids, n, k),
                                                                 distill::as_matrix(dlp, n, k), d.labels, d.weight);
                for (bool renormalize : {false, true}) {
                    INFO("kd_topk, renormalize ", renormalize);
                    check_scaled_outputs<T>(
                        distill::kd_topk_options{.temperature = renormalize ? 1.5 : 1.0, .reduce = red, .renormalize = renormalize},
                        host_topk, device_topk, n, c, true);
                }
            }
            ++runs;
        }
    CHECK(runs == 9);
}

namespace schemes_parity {

/// K peers' logits and N labels, on the host; `ignored` rows get ignore_index.
template <class T>
struct peers_inputs {
    index_t k, n, c;
    std::vector<std::vector<T>> logits;
    std::vector<std::int64_t> labels;
    peers_inputs(index_t peers, index_t rows, index_t cols, unsigned seed, std::initializer_list<index_t> ignored)
        : k(peers), n(rows), c(cols) {
        for (index_t p = 0; p < k; ++p)
            logits.push_back(random_values<T>(at(n * c), seed + 31 * static_cast<unsigned>(p)));
        for (index_t i = 0; i < n; ++i) labels.push_back((3 * i + 1) % c);
        for (index_t i : ignored) labels[at(i)] = -100;
    }
};

/// The same tensors in Vec storage, and views of them.
template <template <class...> class Vec, class T>
struct peers_storage {
    using space = distill::memory_space_t<Vec<T>>;
    std::vector<Vec<T>> logits;
    Vec<std::int64_t> labels;
    std::vector<distill::any_view<const T, space>> views;
    explicit peers_storage(const peers_inputs<T>& in) : labels(in.labels.begin(), in.labels.end()) {
        for (const auto& z : in.logits) logits.emplace_back(z.begin(), z.end());
        for (const auto& z : logits) views.push_back(distill::as_matrix(z, in.n, in.c));
    }
};

/// Two dml results agree: every peer's loss, the total, the K x N row losses and each peer's gradient.
template <class T, class A, class B>
void check_dml_parity(const A& other, const B& cpu) {
    const double rtol = parity_rtol<T>();
    REQUIRE(other.status.ok());
    REQUIRE(cpu.status.ok());
    REQUIRE(other.peer_loss.size() == cpu.peer_loss.size());
    check_all_close(other.peer_loss, cpu.peer_loss, rtol, rtol * 1e-3);
    DISTILL_CHECK_CLOSE(other.total, cpu.total, rtol, rtol * 1e-3);
    check_close_to_largest(to_doubles(other.row_losses), to_doubles(cpu.row_losses), rtol);
    REQUIRE(other.grad_peers.size() == cpu.grad_peers.size());
    for (std::size_t k = 0; k < cpu.grad_peers.size(); ++k) {
        CAPTURE(k);
        check_close_to_largest(to_doubles(other.grad_peers[k]), to_doubles(cpu.grad_peers[k]), rtol);
    }
}

}  // namespace schemes_parity

TEST_CASE_TEMPLATE("dml parity: Thrust (device memory, host memory under OpenMP) matches the CPU backend", T, float,
                   double) {
    using namespace schemes_parity;
    struct shape {
        index_t k, n, c;
    };
    int runs = 0;
    for (const shape sh : {shape{2, 1, 2}, shape{3, 6, 9}, shape{5, 17, 300}})
        for (double temperature : {1.0, 2.5})
            for (reduction red : {reduction::batchmean, reduction::sum, reduction::none}) {
                CAPTURE(sh.k);
                CAPTURE(sh.n);
                CAPTURE(sh.c);
                CAPTURE(temperature);
                INFO("reduction: ", std::string(distill::to_string(red)));
                const peers_inputs<T> in(sh.k, sh.n, sh.c, static_cast<unsigned>(40 + sh.k + sh.c),
                                         sh.n > 1 ? std::initializer_list<index_t>{1} : std::initializer_list<index_t>{});
                const peers_storage<thrust::host_vector, T> h(in);
                const peers_storage<thrust::device_vector, T> d(in);
                const distill::dml_options opts{.temperature = temperature, .kl_weight = 0.7, .reduce = red};
                const auto cpu = distill::dml(h.views, h.labels, opts);
                REQUIRE(cpu.status.ok());
                double mass = 0;  // the gradients are not all zero
                for (const auto& g : cpu.grad_peers)
                    for (double v : to_doubles(g)) mass += std::abs(v);
                CHECK(mass > 0);
                const auto dev = distill::dml(d.views, d.labels, opts);
                static_assert(std::is_same_v<decltype(dev), const distill::dml_result<T, device_space>>);
                check_dml_parity<T>(dev, cpu);
                check_dml_parity<T>(distill::dml(distill::thrust_host(thrust::omp::par), h.views, h.labels, opts), cpu);
                ++runs;
            }
    CHECK(runs == 18);
}

TEST_CASE_TEMPLATE("dml parity: run into device outputs, one peer's gradient left out", T, float, double) {
    using namespace schemes_parity;
    const peers_inputs<T> in(3, 7, 11, 77, {2});
    const peers_storage<thrust::device_vector, T> d(in);
    const peers_storage<thrust::host_vector, T> h(in);
    const distill::dml_options opts{.temperature = 2.0};
    const auto cpu = distill::dml(h.views, h.labels, opts);
    REQUIRE(cpu.status.ok());
    const T sentinel = T(-3.25);
    thrust::device_vector<T> loss(3, sentinel), total(1, sentinel), g0(7 * 11, sentinel), g2(7 * 11, sentinel);
    const std::vector<distill::any_view<T, device_space>> grads = {distill::as_matrix(g0, 7, 11), {},
                                                                   distill::as_matrix(g2, 7, 11)};
    const distill::dml_outputs<T, device_space> outs{distill::as_view(loss), distill::as_view(total), grads};
    const distill::dml_args<T, device_space> args{d.views, distill::as_view(d.labels)};
    run_sized(distill::thrust_device(), opts, args, outs);
    const double rtol = parity_rtol<T>();
    check_all_close(host_copy(loss), cpu.peer_loss, rtol, 0);
    DISTILL_CHECK_CLOSE(host_copy(total)[0], cpu.total, rtol, 0);
    check_close_to_largest(to_doubles(g0), to_doubles(cpu.grad_peers[0]), rtol);
    check_close_to_largest(to_doubles(g2), to_doubles(cpu.grad_peers[2]), rtol);
}

namespace schemes_parity {

constexpr distill::ensemble_mode all_modes[] = {
    distill::ensemble_mode::average_probabilities, distill::ensemble_mode::average_logits,
    distill::ensemble_mode::confidence_weighted, distill::ensemble_mode::best_teacher};

inline const char* mode_name(distill::ensemble_mode m) {
    switch (m) {
        case distill::ensemble_mode::average_probabilities: return "average_probabilities";
        case distill::ensemble_mode::average_logits: return "average_logits";
        case distill::ensemble_mode::confidence_weighted: return "confidence_weighted";
        case distill::ensemble_mode::best_teacher: return "best_teacher";
    }
    return "?";
}

/// A student, K teachers, labels and row weights, on the host.
template <class T>
struct ensemble_inputs {
    index_t k, n, c;
    host_problem<T> rows;  ///< the student, labels and weights
    std::vector<std::vector<T>> teachers;
    ensemble_inputs(index_t count, index_t n_, index_t c_, unsigned seed) : k(count), n(n_), c(c_), rows(n_, c_, seed) {
        rows.with_labels(n > 2 ? std::initializer_list<index_t>{2} : std::initializer_list<index_t>{}).with_weight();
        for (index_t t = 0; t < k; ++t) teachers.push_back(random_values<T>(at(n * c), seed + 57 * static_cast<unsigned>(t + 1)));
    }
};

template <template <class...> class Vec, class T>
struct ensemble_storage {
    using space = distill::memory_space_t<Vec<T>>;
    response_inputs<Vec, T> rows;
    std::vector<Vec<T>> teachers;
    std::vector<distill::any_view<const T, space>> views;
    explicit ensemble_storage(const ensemble_inputs<T>& in) : rows(in.rows) {
        for (const auto& t : in.teachers) teachers.emplace_back(t.begin(), t.end());
        for (const auto& t : teachers) views.push_back(distill::as_matrix(t, in.n, in.c));
    }
    distill::any_view<const T, space> student() const { return distill::as_matrix(rows.student, rows.n, rows.c); }
    distill::multi_teacher_args<T, space> args(bool labelled, bool weighted) const {
        distill::multi_teacher_args<T, space> a{student(), views};
        if (labelled) a.labels = distill::as_view(rows.labels);
        if (weighted) a.weight = distill::as_view(rows.weight);
        return a;
    }
};

/// Two multi_teacher results agree: the loss, the row losses, the gradient and the ensemble weights.
template <class T, class A, class B>
void check_ensemble_parity(const A& other, const B& cpu) {
    const double rtol = parity_rtol<T>();
    REQUIRE(other.status.ok());
    REQUIRE(cpu.status.ok());
    DISTILL_CHECK_CLOSE(other.loss, cpu.loss, rtol, rtol * 1e-3);
    check_close_to_largest(to_doubles(other.row_losses), to_doubles(cpu.row_losses), rtol);
    check_close_to_largest(to_doubles(other.grad_student), to_doubles(cpu.grad_student), rtol);
    check_all_close(to_doubles(other.ensemble_weights), to_doubles(cpu.ensemble_weights), rtol, rtol * 1e-3);
}

}  // namespace schemes_parity

TEST_CASE_TEMPLATE("multi_teacher parity: every ensemble mode on Thrust matches the CPU backend", T, float, double) {
    using namespace schemes_parity;
    struct shape {
        index_t k, n, c;
    };
    const std::vector<double> fixed_weights = {0.5, 0.0, 2.0};  // K = 3; one teacher left out
    int runs = 0;
    for (const shape sh : {shape{1, 1, 2}, shape{3, 6, 9}, shape{3, 19, 301}})
        for (const distill::ensemble_mode mode : all_modes)
            for (int variant = 0; variant < 4; ++variant)  // bit 0: labels, bit 1: row weights
                for (reduction red : {reduction::batchmean, reduction::none}) {
                    const bool labelled = variant & 1, weighted = variant & 2;
                    CAPTURE(sh.k);
                    CAPTURE(sh.n);
                    CAPTURE(sh.c);
                    CAPTURE(labelled);
                    CAPTURE(weighted);
                    INFO("mode: ", mode_name(mode), ", reduction: ", std::string(distill::to_string(red)));
                    const ensemble_inputs<T> in(sh.k, sh.n, sh.c, static_cast<unsigned>(300 + sh.c + variant));
                    const ensemble_storage<thrust::host_vector, T> h(in);
                    const ensemble_storage<thrust::device_vector, T> d(in);
                    distill::multi_teacher_options opts{.temperature = 2.0, .mode = mode, .reduce = red};
                    // Fixed weights where the mode takes them (not best_teacher), for K = 3.
                    if (mode != distill::ensemble_mode::best_teacher && sh.k == 3 && variant >= 2)
                        opts.teacher_weights = fixed_weights;
                    const auto ha = h.args(labelled, weighted);
                    const auto da = d.args(labelled, weighted);
                    const auto cpu =
                        distill::multi_teacher(distill::cpu_backend{}, ha.student, h.views, ha.labels, ha.weight, opts);
                    REQUIRE(cpu.status.ok());
                    const auto dev = distill::multi_teacher(distill::thrust_device(), da.student, d.views, da.labels,
                                                            da.weight, opts);
                    static_assert(std::is_same_v<decltype(dev), const distill::multi_teacher_result<T, device_space>>);
                    check_ensemble_parity<T>(dev, cpu);
                    check_ensemble_parity<T>(distill::multi_teacher(distill::thrust_host(thrust::omp::par), ha.student,
                                                                    h.views, ha.labels, ha.weight, opts),
                                             cpu);
                    ++runs;
                }
    CHECK(runs == 96);  // 3 shapes x 4 modes x 4 variants x 2 reductions
}

TEST_CASE_TEMPLATE("multi_teacher parity: grad_scale and accumulate on Thrust match the CPU, every mode", T, float,
                   double) {
    using namespace schemes_parity;
    const double rtol = parity_rtol<T>();
    const index_t k = 3, n = 7, c = 45;
    const ensemble_inputs<T> in(k, n, c, 512);
    const ensemble_storage<thrust::host_vector, T> h(in);
    const ensemble_storage<thrust::device_vector, T> d(in);
    for (const distill::ensemble_mode mode : all_modes)
        for (reduction red : {reduction::sum, reduction::none}) {
            INFO("mode: ", mode_name(mode), ", reduction: ", std::string(distill::to_string(red)));
            const distill::multi_teacher_options opts{.temperature = 1.5, .mode = mode, .reduce = red};
            const index_t loss_size = red == reduction::none ? n : 1;
            const auto ha = h.args(true, true);
            const auto da = d.args(true, true);
            // The CPU's plain gradient.
            thrust::host_vector<T> plain_loss(at(loss_size)), plain_grad(at(n * c));
            run_sized(distill::cpu_backend{}, opts, ha,
                      distill::multi_teacher_outputs<T>{distill::as_view(plain_loss), distill::as_matrix(plain_grad, n, c)});
            const std::vector<T> earlier = earlier_gradient<T>(n * c);
            thrust::host_vector<T> cpu_loss(at(loss_size)), cpu_grad(earlier.begin(), earlier.end()), cpu_weights(at(n * k));
            thrust::host_vector<T> omp_loss(at(loss_size)), omp_grad(earlier.begin(), earlier.end()), omp_weights(at(n * k));
            thrust::device_vector<T> dev_loss(at(loss_size)), dev_grad(earlier.begin(), earlier.end()), dev_weights(at(n * k));
            const T scale = T(-0.6);
            run_sized(distill::cpu_backend{}, opts, ha,
                      distill::multi_teacher_outputs<T>{distill::as_view(cpu_loss), distill::as_matrix(cpu_grad, n, c),
                                                        distill::as_matrix(cpu_weights, n, k), scale, true});
            run_sized(distill::thrust_host(thrust::omp::par), opts, ha,
                      distill::multi_teacher_outputs<T>{distill::as_view(omp_loss), distill::as_matrix(omp_grad, n, c),
                                                        distill::as_matrix(omp_weights, n, k), scale, true});
            run_sized(distill::thrust_device(), opts, da,
                      distill::multi_teacher_outputs<T, device_space>{distill::as_view(dev_loss),
                                                                      distill::as_matrix(dev_grad, n, c),
                                                                      distill::as_matrix(dev_weights, n, k), scale, true});
            std::vector<double> want(earlier.size());
            for (std::size_t e = 0; e < want.size(); ++e)
                want[e] = static_cast<double>(earlier[e]) + static_cast<double>(scale) * static_cast<double>(plain_grad[e]);
            check_close_to_largest(to_doubles(cpu_grad), want, 10 * rtol);
            check_all_close(to_doubles(cpu_loss), to_doubles(plain_loss), rtol, 0);
            // Row 2 is ignored: its earlier gradient is kept on every backend.
            for (const auto* g : {&cpu_grad, &omp_grad})
                for (index_t j = 0; j < c; ++j) CHECK((*g)[at(2 * c + j)] == earlier[at(2 * c + j)]);
            const std::vector<double> dev_g = to_doubles(dev_grad);
            for (index_t j = 0; j < c; ++j) CHECK(dev_g[at(2 * c + j)] == static_cast<double>(earlier[at(2 * c + j)]));
            check_close_to_largest(dev_g, to_doubles(cpu_grad), rtol);
            check_close_to_largest(to_doubles(omp_grad), to_doubles(cpu_grad), rtol);
            check_close_to_largest(to_doubles(dev_loss), to_doubles(cpu_loss), rtol);
            check_close_to_largest(to_doubles(omp_loss), to_doubles(cpu_loss), rtol);
            check_all_close(to_doubles(dev_weights), to_doubles(cpu_weights), rtol, rtol * 1e-3);
            check_all_close(to_doubles(omp_weights), to_doubles(cpu_weights), rtol, rtol * 1e-3);
        }
}
