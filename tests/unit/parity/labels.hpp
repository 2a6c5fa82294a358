// tests/unit/parity/labels.hpp: logit_mse, ce and dkd on the Thrust backend (OMP device system)
// against the CPU backend, and errors found in device memory (included by thrust_response_test.cpp,
// after test_support.hpp and distill/thrust.hpp).
#pragma once

#include <thrust/device_vector.h>
#include <thrust/host_vector.h>
#include <thrust/system/omp/execution_policy.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace labels_parity_test {

using namespace distill_test;
using distill::device_space;
using distill::errc;
using distill::error_kind;
using distill::index_t;
using distill::reduction;



/// The convenience object of each method, on either memory space.
template <class T, class Space>
auto compute(const distill::logit_mse_options& o, const distill::response_args<T, Space>& a) {
    return distill::logit_mse(a.student, a.teacher, a.labels, a.weight, o);
}
template <class T, class Space>
auto compute(const distill::ce_options& o, const distill::response_args<T, Space>& a) {
    return distill::ce(a.student, a.labels, a.weight, o);
}
template <class T, class Space>
auto compute(const distill::dkd_options& o, const distill::response_args<T, Space>& a) {
    return distill::dkd(a.student, a.teacher, a.labels, a.weight, o);
}

/// dkd on a given backend (host memory).
template <class Backend, class T>
auto compute_on(const Backend& backend, const distill::dkd_options& o, const distill::response_args<T, distill::host_space>& a) {
    return distill::dkd(backend, a.student, a.teacher, a.labels, a.weight, o);
}

/// Device and CPU agree: per-row values to rounding, sums over the rows to reordering.
template <class T, class DeviceResult, class HostResult>
void check_same(const DeviceResult& dev, const HostResult& cpu, index_t n) {
    const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
    REQUIRE(dev.status.ok());
    REQUIRE(cpu.status.ok());
    DISTILL_CHECK_CLOSE(dev.loss, cpu.loss, rtol, 1e-30);
    DISTILL_CHECK_CLOSE(dev.grad_temperature, cpu.grad_temperature, rtol, rtol * static_cast<double>(n));
    check_all_close(host_copy(dev.grad_student), host_copy(cpu.grad_student), rtol, 1e-30);
    check_all_close(host_copy(dev.row_losses), host_copy(cpu.row_losses), rtol, 1e-30);
}

/// Every shape (N = 1, C = 2, 37 x 1000, ...), with and without weights and ignored rows, every reduction.
template <class T, class Options, class Configure>
int check_parity_over_shapes(Configure&& configure) {
    constexpr std::array<std::array<index_t, 2>, 4> shapes = {{{1, 7}, {6, 2}, {37, 1000}, {5, 4}}};
    int runs = 0;
    for (const auto& shape : shapes)
        for (int extras = 0; extras < 2; ++extras)
            for (reduction red : {reduction::batchmean, reduction::sum, reduction::none}) {
                const index_t n = shape[0], c = shape[1];
                CAPTURE(n);
                CAPTURE(c);
                CAPTURE(extras);
                INFO("reduction: ", std::string(distill::to_string(red)));
                host_problem<T> hp(n, c, static_cast<unsigned>(500 + n + c));
                if (extras && n > 1) hp.with_labels({n / 2}).with_weight();
                else if (extras) hp.with_labels().with_weight();
                else hp.with_labels();
                const device_problem<T> dp(hp);
                Options opts{};
                opts.reduce = red;
                configure(opts);
                const auto cpu = compute(opts, hp.args());
                const auto dev = compute(opts, dp.args());
                static_assert(std::is_same_v<decltype(dev), const distill::loss_result<T, device_space>>);
                check_same<T>(dev, cpu, n);
                if constexpr (std::is_same_v<Options, distill::dkd_options>) {
                    // The GPU's block-per-row path on the host (lockstep_backend.hpp).
                    const auto ha = hp.args();
                    check_lockstep_parity<T>(compute_on(lockstep_backend<4>{}, opts, ha), cpu, n);
                    check_lockstep_parity<T>(compute_on(lockstep_backend<64>{}, opts, ha), cpu, n);
                }
                ++runs;
            }
    return runs;
}

TEST_CASE_TEMPLATE("logit_mse: the Thrust device backend matches the CPU backend", T, float, double) {
    CHECK(check_parity_over_shapes<T, distill::logit_mse_options>([](auto&) {}) == 24);
}

TEST_CASE_TEMPLATE("ce: the Thrust device backend matches the CPU backend", T, float, double) {
    for (double eps : {0.0, 0.1}) {
        CAPTURE(eps);
        CHECK(check_parity_over_shapes<T, distill::ce_options>([&](auto& o) { o.label_smoothing = eps; }) == 24);
    }
}

TEST_CASE_TEMPLATE("dkd: the Thrust device backend matches the CPU backend", T, float, double) {
    for (double temperature : {0.5, 4.0}) {
        CAPTURE(temperature);
        CHECK(check_parity_over_shapes<T, distill::dkd_options>([&](auto& o) {
                  o.temperature = temperature;
                  o.beta = 2.0;
              }) == 24);
    }
}

TEST_CASE_TEMPLATE("dkd and ce: Thrust on host memory (sequential and OpenMP) matches the CPU backend", T, float, double) {
    host_problem<T> hp(9, 13, 511);
    hp.with_labels({4}).with_weight();
    const auto a = hp.args();
    const distill::dkd_options dkd_opts{2.0, reduction::none, -100, 1.5, 4.0};
    const auto dkd_cpu = distill::dkd(a.student, a.teacher, a.labels, a.weight, dkd_opts);
    check_same<T>(distill::dkd(distill::thrust_host(), a.student, a.teacher, a.labels, a.weight, dkd_opts), dkd_cpu, 9);
    check_same<T>(distill::dkd(distill::thrust_host(thrust::omp::par), a.student, a.teacher, a.labels, a.weight, dkd_opts),
                  dkd_cpu, 9);
    const distill::ce_options ce_opts{reduction::sum, -100, 0.2};
    const auto ce_cpu = distill::ce(a.student, a.labels, a.weight, ce_opts);
    check_same<T>(distill::ce(distill::thrust_host(thrust::omp::par), a.student, a.labels, a.weight, ce_opts), ce_cpu, 9);
}

TEST_CASE_TEMPLATE("ce and dkd: a label out of range in device memory is reported and nothing is written", T, float,
                   double) {
    host_problem<T> hp(4, 5, 513);
    hp.with_labels().with_weight();
    hp.labels[2] = 5;
    const device_problem<T> dp(hp);
    auto expect_error = [&](const auto& opts, const distill::response_args<T, device_space>& args, const char* method) {
        thrust::device_vector<T> loss(1, host_outputs<T>::sentinel), grad(20, host_outputs<T>::sentinel),
            grad_t(1, host_outputs<T>::sentinel), scratch(8);
        distill::response_outputs<T, device_space> outs{distill::as_view(loss), distill::as_matrix(grad, 4, 5)};
        if (distill::response_method<std::remove_cvref_t<decltype(opts)>>::has_temperature)
            outs.grad_temperature = distill::as_view(grad_t);
        const distill::status s = distill::run(distill::thrust_device(), opts, args, outs,
                                               distill::workspace{thrust::raw_pointer_cast(scratch.data()), 8 * sizeof(T)});
        check_method_error(method, s, errc::label_out_of_range, error_kind::value, "labels", {"labels[2] = 5", "[0, 5)"});
        for (const auto* v : {&loss, &grad, &grad_t})
            for (T x : host_copy(*v)) CHECK(x == host_outputs<T>::sentinel);
        bool thrown = false;
        try {
            (void)compute(opts, args);
        } catch (const distill::error& e) {
            thrown = true;
            check_method_error(method, e.status(), errc::label_out_of_range, error_kind::value, "labels", {"labels[2] = 5"});
        }
        CHECK(thrown);
    };
    auto without_teacher = dp.args();
    without_teacher.teacher = {};
    expect_error(distill::ce_options{}, without_teacher, "ce");
    expect_error(distill::dkd_options{}, dp.args(), "dkd");
}

}  // namespace labels_parity_test
