// tests/unit/parity/kd_topk.hpp: kd_topk on the Thrust backend (OMP device system) against the
// CPU backend (included by thrust_response_test.cpp): the smallest shapes (N = 1, V = 2, k = 1),
// an LLM-like 16 x 5000 batch with k = 64, both variants, float and double; and the index
// errors found in device memory, with the device outputs left alone.
#pragma once

#include <thrust/host_vector.h>
#include <thrust/system/omp/execution_policy.h>

#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "../test_support.hpp"

namespace kd_topk_parity {

using distill::device_space;
using distill::errc;
using distill::error_kind;
using distill::index_t;
using distill::reduction;
using namespace distill_test;

inline std::size_t at(index_t i) { return static_cast<std::size_t>(i); }


/// Inputs on the host: random student logits, k distinct random ids per row (a partial
/// Fisher-Yates draw over the vocabulary) and stored log-probabilities in [-9, -0.25).
template <class T>
struct topk_inputs {
    index_t n, v, k;
    std::vector<T> student, logprob, weight;
    std::vector<std::int64_t> ids, labels;

    topk_inputs(index_t rows, index_t vocabulary, index_t top, unsigned seed)
        : n(rows), v(vocabulary), k(top),
          student(random_values<T>(at(rows * vocabulary), seed, -4.0, 4.0)),
          logprob(random_values<T>(at(rows * top), seed + 1, -9.0, -0.25)),
          weight(random_values<T>(at(rows), seed + 2, 0.0, 2.0)),
          labels(at(rows), 0) {
        std::mt19937_64 gen(seed + 3);
        std::vector<std::int64_t> pool(at(v));
        for (index_t i = 0; i < n; ++i) {
            std::iota(pool.begin(), pool.end(), std::int64_t{0});
            for (index_t j = 0; j < k; ++j) {
                const index_t pick = j + static_cast<index_t>(gen() % static_cast<std::uint64_t>(v - j));
                std::swap(pool[at(j)], pool[at(pick)]);
                ids.push_back(pool[at(j)]);
            }
            labels[at(i)] = i % 3 == 1 ? -100 : i % v;  // every third row ignored
        }
    }
};

/// The result of the convenience object on the CPU and on the Thrust backend (device memory)
/// agree: per-row values and gradients to rounding, sums over rows to reordering.
template <class T>
void check_topk_parity(const topk_inputs<T>& in, const distill::kd_topk_options& opts, bool with_rows) {
    const auto s = distill::make_view(in.student.data(), in.n, in.v);
    const auto ids = distill::make_view(in.ids.data(), in.n, in.k);
    const auto lp = distill::make_view(in.logprob.data(), in.n, in.k);
    const thrust::device_vector<T> d_student(in.student.begin(), in.student.end()),
        d_logprob(in.logprob.begin(), in.logprob.end()), d_weight(in.weight.begin(), in.weight.end());
    const thrust::device_vector<std::int64_t> d_ids(in.ids.begin(), in.ids.end()), d_labels(in.labels.begin(), in.labels.end());
    const auto ds = distill::as_matrix(d_student, in.n, in.v);
    const auto dids = distill::as_matrix(d_ids, in.n, in.k);
    const auto dlp = distill::as_matrix(d_logprob, in.n, in.k);

    const auto cpu = with_rows ? distill::kd_topk(s, ids, lp, distill::make_view(in.labels.data(), in.n),
                                                  distill::make_view(in.weight.data(), in.n), opts)
                               : distill::kd_topk(s, ids, lp, opts);
    const auto dev = with_rows ? distill::kd_topk(ds, dids, dlp, distill::as_view(d_labels), distill::as_view(d_weight), opts)
                               : distill::kd_topk(ds, dids, dlp, opts);
    REQUIRE(cpu.status.ok());
    REQUIRE(dev.status.ok());
    const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
    DISTILL_CHECK_CLOSE(dev.loss, cpu.loss, rtol, 1e-30);
    DISTILL_CHECK_CLOSE(dev.grad_temperature, cpu.grad_temperature, rtol, rtol * static_cast<double>(in.n));
    check_all_close(host_copy(dev.grad_student), host_copy(cpu.grad_student), rtol, 1e-30);
    check_all_close(host_copy(dev.row_losses), host_copy(cpu.row_losses), rtol, 1e-30);
    CHECK(std::isfinite(static_cast<double>(cpu.loss)));
    CHECK(cpu.loss != T(0));  // the comparison means something
    // The GPU's block-per-row path on the host (lockstep_backend.hpp): 64 lanes and 4.
    const auto lockstep = [&](const auto& backend) {
        return with_rows ? distill::kd_topk(backend, s, ids, lp, distill::make_view(in.labels.data(), in.n),
                                            distill::make_view(in.weight.data(), in.n), opts)
                         : distill::kd_topk(backend, s, ids, lp, distill::none, distill::none, opts);
    };
    check_lockstep_parity<T>(lockstep(lockstep_backend<64>{}), cpu, in.n);
    check_lockstep_parity<T>(lockstep(lockstep_backend<4>{}), cpu, in.n);
}

}  // namespace kd_topk_parity

TEST_CASE_TEMPLATE("kd_topk thrust: the Thrust backend on device memory matches the CPU backend", T, float, double) {
    using namespace kd_topk_parity;
    struct shape {
        index_t n, v, k;
    };
    for (shape sh : {shape{1, 2, 1}, shape{1, 7, 3}, shape{3, 2, 2}, shape{16, 5000, 64}})
        for (bool renormalize : {false, true})
            for (reduction red : {reduction::batchmean, reduction::sum, reduction::none}) {
                CAPTURE(sh.n);
                CAPTURE(sh.v);
                CAPTURE(sh.k);
                CAPTURE(renormalize);
                INFO("reduction: ", std::string(distill::to_string(red)));
                const topk_inputs<T> in(sh.n, sh.v, sh.k, 7 + static_cast<unsigned>(sh.v));
                const distill::kd_topk_options opts{renormalize ? 2.0 : 1.0, red, -100, renormalize};
                check_topk_parity(in, opts, false);
                if (sh.n > 1) check_topk_parity(in, opts, true);
            }
}

TEST_CASE_TEMPLATE("kd_topk thrust: thrust_host on host memory gives the CPU results", T, float, double) {
    using namespace kd_topk_parity;
    const topk_inputs<T> in(5, 300, 16, 91);
    const distill::topk_args<T> args{distill::make_view(in.student.data(), in.n, in.v), distill::make_view(in.ids.data(), in.n, in.k),
                                     distill::make_view(in.logprob.data(), in.n, in.k)};
    const distill::kd_topk_options opts{0.5, reduction::none, -100, true};
    host_outputs<T> cpu(opts.reduce, in.n, in.v), omp(opts.reduce, in.n, in.v);
    REQUIRE(distill::run(opts, args, cpu.views(in.n, in.v)).ok());
    const auto backend = distill::thrust_host(thrust::omp::par);
    const auto outs = omp.views(in.n, in.v);
    std::vector<unsigned char> scratch(distill::workspace_bytes(backend, opts, args, outs) + 1);
    REQUIRE(distill::run(backend, opts, args, outs, distill::workspace{scratch.data(), scratch.size()}).ok());
    CHECK(omp.loss == cpu.loss);  // the same kernel on the same rows: identical per-row values
    CHECK(omp.grad == cpu.grad);
    DISTILL_CHECK_CLOSE(omp.grad_temperature[0], cpu.grad_temperature[0], 1e-5, 1e-6);
}

TEST_CASE_TEMPLATE("kd_topk thrust: id errors in device memory name the position and write nothing", T, float, double) {
    using namespace kd_topk_parity;
    topk_inputs<T> in(4, 50, 6, 101);
    SUBCASE("an id repeated within a row") {
        in.ids[at(2 * 6 + 4)] = in.ids[at(2 * 6 + 1)];
    }
    SUBCASE("an id outside the vocabulary") {
        in.ids[at(3 * 6 + 5)] = 50;
    }
    const bool repeated = in.ids[at(2 * 6 + 4)] == in.ids[at(2 * 6 + 1)];
    const thrust::device_vector<T> d_student(in.student.begin(), in.student.end()),
        d_logprob(in.logprob.begin(), in.logprob.end());
    const thrust::device_vector<std::int64_t> d_ids(in.ids.begin(), in.ids.end());
    const distill::topk_args<T, device_space> args{distill::as_matrix(d_student, in.n, in.v), distill::as_matrix(d_ids, in.n, in.k),
                                                   distill::as_matrix(d_logprob, in.n, in.k)};
    thrust::device_vector<T> loss(1, T(-7)), grad(at(in.n * in.v), T(-7)), grad_t(1, T(-7));
    const distill::response_outputs<T, device_space> outs{distill::as_view(loss), distill::as_matrix(grad, in.n, in.v),
                                                          distill::as_view(grad_t)};
    thrust::device_vector<unsigned char> scratch(distill::workspace_bytes(distill::kd_topk_options{}, args, outs));
    const distill::status s = distill::run(distill::kd_topk_options{}, args, outs,
                                           distill::workspace{thrust::raw_pointer_cast(scratch.data()), scratch.size()});
    if (repeated) {
        const std::string value = "teacher.index[2][4] = " + std::to_string(in.ids[at(2 * 6 + 1)]);
        check_method_error("kd_topk", s, errc::repeated_index, error_kind::value, "teacher.index",
                           {value.c_str(), "appears twice in row 2", "teacher.index[2][1]"});
    } else {
        check_method_error("kd_topk", s, errc::index_out_of_range, error_kind::value, "teacher.index",
                           {"teacher.index[3][5] = 50", "[0, 50)"});
    }
    for (const auto* v : {&loss, &grad, &grad_t})
        for (T x : host_copy(*v)) CHECK(x == T(-7));
}
