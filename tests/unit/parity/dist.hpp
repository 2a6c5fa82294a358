// tests/unit/parity/dist.hpp: dist on the Thrust backend (OMP device system) against the CPU
// backend; included by thrust_response_test.cpp.
//
// The Thrust path runs the column passes as one functor per column, the CPU path row by row;
// both sum in the same order, so gradients agree to rounding and the loss and d/dT to the
// reordering of the backend's reductions. Also: the caller's device workspace, and errors found
// on the device path leave the device outputs alone.
#pragma once

#include "../test_support.hpp"

#include <distill/thrust.hpp>

#include <thrust/device_vector.h>
#include <thrust/host_vector.h>
#include <thrust/system/omp/execution_policy.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace dist_parity {

using distill::device_space;
using distill::index_t;
using namespace distill_test;


/// A Thrust result against the CPU one: the gradient to rounding (relative to its largest entry),
/// the loss and d/dT to the reordering of sums over N rows and C columns.
template <class T, class Result, class CpuResult>
void check_dist_parity(const Result& other, const CpuResult& cpu) {
    const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
    REQUIRE(other.status.ok());
    DISTILL_CHECK_CLOSE(other.loss, cpu.loss, rtol, 0);
    DISTILL_CHECK_CLOSE(other.grad_temperature, cpu.grad_temperature, rtol, rtol * std::abs(static_cast<double>(cpu.loss)));
    const auto g = host_copy(other.grad_student), want = host_copy(cpu.grad_student);
    double largest = 0;
    for (T v : want) largest = std::max(largest, std::abs(static_cast<double>(v)));
    check_all_close(g, want, rtol, rtol * largest);
}

}  // namespace dist_parity

TEST_CASE_TEMPLATE("dist parity: the Thrust backend (device, host, host OpenMP) matches the CPU backend", T, float, double) {
    using namespace dist_parity;
    constexpr index_t shapes[][2] = {{1, 7}, {5, 2}, {64, 100}, {37, 1000}};
    struct setting {
        double temperature, beta, gamma, scale;
    };
    constexpr setting settings[] = {{0.5, 1.0, 1.0, 3.0}, {4.0, 2.0, 0.0, 3.0}, {0.5, 1.0, 0.5, 1000.0}};
    int runs = 0;
    for (const auto& shape : shapes)
        for (const setting& s : settings) {
            const index_t n = shape[0], c = shape[1];
            CAPTURE(n);
            CAPTURE(c);
            CAPTURE(s.temperature);
            CAPTURE(s.gamma);
            CAPTURE(s.scale);
            const host_problem<T> hp(n, c, static_cast<unsigned>(700 + n + c), s.scale);
            const thrust::device_vector<T> student(hp.student.begin(), hp.student.end()),
                teacher(hp.teacher.begin(), hp.teacher.end());
            const distill::dist_options opts{s.temperature, s.beta, s.gamma};
            const auto ha = hp.args();
            const auto cpu = distill::dist(ha.student, ha.teacher, opts);
            REQUIRE(cpu.status.ok());
            REQUIRE(std::isfinite(cpu.loss));
            const auto dev = distill::dist(distill::as_matrix(student, n, c), distill::as_matrix(teacher, n, c), opts);
            static_assert(std::is_same_v<decltype(dev), const distill::loss_result<T, device_space>>);
            check_dist_parity<T>(dev, cpu);
            check_dist_parity<T>(distill::dist(distill::thrust_host(), ha.student, ha.teacher, opts), cpu);
            check_dist_parity<T>(distill::dist(distill::thrust_host(thrust::omp::par), ha.student, ha.teacher, opts), cpu);
            ++runs;
        }
    CHECK(runs == 12);
}

TEST_CASE_TEMPLATE("dist parity: run with a caller workspace in device memory; errors write nothing", T, float, double) {
    using namespace dist_parity;
    constexpr index_t n = 9, c = 11;
    host_problem<T> hp(n, c, 811);
    hp.with_labels();
    const thrust::device_vector<T> student(hp.student.begin(), hp.student.end()), teacher(hp.teacher.begin(), hp.teacher.end());
    const thrust::device_vector<std::int64_t> labels(hp.labels.begin(), hp.labels.end());
    const distill::response_args<T, device_space> args{distill::as_matrix(student, n, c), distill::as_matrix(teacher, n, c)};
    const distill::dist_options opts{2.0, 1.0, 1.0};
    const T sentinel = host_outputs<T>::sentinel;
    thrust::device_vector<T> loss(1, sentinel), grad(n * c, sentinel), grad_t(1, sentinel);
    const distill::response_outputs<T, device_space> outs{distill::as_view(loss), distill::as_matrix(grad, n, c),
                                                          distill::as_view(grad_t)};
    auto untouched = [&] {
        for (const auto* v : {&loss, &grad, &grad_t})
            for (T x : host_copy(*v))
                if (x != sentinel) return false;
        return true;
    };
    const auto backend = distill::thrust_device();
    const std::size_t need = distill::workspace_bytes(backend, opts, args, outs);
    CHECK(need == (8 * n + 6 * c) * sizeof(T));
    CHECK(distill::workspace_bytes(opts, args, outs) == need);
    thrust::device_vector<T> block(need / sizeof(T));
    const distill::workspace ws{thrust::raw_pointer_cast(block.data()), need};

    SUBCASE("workspace one byte short") {
        check_method_error("dist", distill::run(backend, opts, args, outs, distill::workspace{ws.data, need - 1}),
                           distill::errc::workspace_too_small, distill::error_kind::usage, "workspace",
                           {std::to_string(need).c_str()});
        CHECK(untouched());
    }
    SUBCASE("labels in device memory are rejected") {
        auto with_labels = args;
        with_labels.labels = distill::as_view(labels);
        check_method_error("dist", distill::run(backend, opts, with_labels, outs, ws), distill::errc::shape_mismatch,
                           distill::error_kind::shape, "labels", {"labels", "[9]"});
        CHECK(untouched());
    }
    SUBCASE("reduction none is rejected") {
        distill::dist_options none = opts;
        none.reduce = distill::reduction::none;
        check_method_error("dist", distill::run(backend, none, args, outs, ws), distill::errc::invalid_parameter,
                           distill::error_kind::value, "reduction", {"reduction = none"});
        CHECK(untouched());
    }
    SUBCASE("the device outputs hold the CPU results") {
        REQUIRE(distill::run(backend, opts, args, outs, ws).ok());
        const auto ha = hp.args();
        const auto cpu = distill::dist(ha.student, ha.teacher, opts);
        const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
        DISTILL_CHECK_CLOSE(host_copy(loss)[0], cpu.loss, rtol, 0);
        DISTILL_CHECK_CLOSE(host_copy(grad_t)[0], cpu.grad_temperature, rtol, rtol * std::abs(static_cast<double>(cpu.loss)));
        check_all_close(host_copy(grad), host_copy(cpu.grad_student), rtol, rtol * 1e-3);
    }
}
