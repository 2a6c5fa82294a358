// tests/unit/parity/divergences.hpp: reverse_kd, jsd, skew_kd, skew_reverse_kd, tvd and soft_ce on
// the Thrust backend (OMP device system) against the CPU backend (included by
// thrust_response_test.cpp, after test_support.hpp and distill/thrust.hpp): float and double,
// shapes from 1 x 2 and N x 1 to 37 x 1000, with labels, weights, every reduction and d/dT; and
// errors found in device memory, with the device outputs left alone.
#pragma once

#include <thrust/device_vector.h>
#include <thrust/host_vector.h>
#include <thrust/system/omp/execution_policy.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace divergences_parity_test {

using namespace distill_test;
using distill::device_space;
using distill::errc;
using distill::error_kind;
using distill::index_t;
using distill::reduction;



/// The device result matches the CPU one: per-row values to rounding, sums over the n rows to
/// reordering (d/dT sums terms of both signs, so its allowance is absolute, per row).
template <class T, class DeviceResult, class HostResult>
void check_parity(const DeviceResult& dev, const HostResult& cpu, index_t n) {
    const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
    REQUIRE(dev.status.ok());
    REQUIRE(cpu.status.ok());
    DISTILL_CHECK_CLOSE(dev.loss, cpu.loss, rtol, 1e-30);
    DISTILL_CHECK_CLOSE(dev.grad_temperature, cpu.grad_temperature, rtol, rtol * static_cast<double>(n));
    check_all_close(host_copy(dev.grad_student), host_copy(cpu.grad_student), rtol, 1e-30);
    check_all_close(host_copy(dev.row_losses), host_copy(cpu.row_losses), rtol, 1e-30);
}

/// One method on the CPU (host views), on the device (device views) and with Thrust on host memory
/// under OpenMP: all agree.
template <class T, class Loss, class Options>
void check_method_parity(const Loss& loss, const Options& opts, const host_problem<T>& hp) {
    const device_problem<T> dp(hp);
    const auto ha = hp.args();
    const auto da = dp.args();
    const auto cpu = loss(ha.student, ha.teacher, ha.labels, ha.weight, opts);
    const auto dev = loss(da.student, da.teacher, da.labels, da.weight, opts);
    static_assert(std::is_same_v<decltype(dev), const distill::loss_result<T, device_space>>);
    check_parity<T>(dev, cpu, hp.n);
    check_parity<T>(loss(distill::thrust_host(thrust::omp::par), ha.student, ha.teacher, ha.labels, ha.weight, opts),
                    cpu, hp.n);
    // The GPU's block-per-row path on the host (lockstep_backend.hpp): 64 lanes (most rows fit in
    // one pack; at 1000 columns, 16 packs whose later passes run backwards, as the GPU's long
    // rows) and 4 (many packs, a partial last one, forwards).
    check_lockstep_parity<T>(loss(distill_test::lockstep_backend<64>{}, ha.student, ha.teacher, ha.labels, ha.weight, opts), cpu, hp.n);
    check_lockstep_parity<T>(loss(distill_test::lockstep_backend<4>{}, ha.student, ha.teacher, ha.labels, ha.weight, opts), cpu, hp.n);
    // Two OpenMP threads on the CPU backend (from 128 rows): a block of rows each.
    if (hp.n >= 128) check_parity<T>(loss(distill::cpu_backend{2}, ha.student, ha.teacher, ha.labels, ha.weight, opts), cpu, hp.n);
}

TEST_CASE_TEMPLATE("divergences (thrust): the device backend matches the CPU backend", T, float, double) {
    // 130 rows: Thrust on host threads runs blocks of 3 rows in order and the CPU backend one
    // block per thread (jsd keeps its teacher's exps in the next row's gradient only without d/dT,
    // which the convenience objects always ask for: see the next test). Ignored rows inside and at
    // the end of blocks.
    constexpr std::array<std::array<index_t, 2>, 7> shapes = {{{1, 2}, {1, 7}, {6, 1}, {5, 4}, {37, 1000}, {1, 1}, {130, 300}}};
    int runs = 0;
    for (const auto& shape : shapes)
        for (int extras = 0; extras < 2; ++extras)
            for (double temperature : {0.5, 4.0})
                for (reduction red : {reduction::batchmean, reduction::sum, reduction::none}) {
                    const index_t n = shape[0], c = shape[1];
                    CAPTURE(n);
                    CAPTURE(c);
                    CAPTURE(extras);
                    CAPTURE(temperature);
                    INFO("reduction: ", std::string(distill::to_string(red)));
                    host_problem<T> hp(n, c, static_cast<unsigned>(500 + n + c));
                    if (extras) {
                        if (n > 64) hp.with_labels({1, n / 2, 62, 63, n - 2});
                        else if (n > 1) hp.with_labels({n / 2});
                        else hp.with_labels();
                        hp.with_weight();
                    }
                    check_method_parity(distill::reverse_kd, distill::reverse_kd_options{temperature, red}, hp);
                    check_method_parity(distill::jsd, distill::jsd_options{temperature, red, -100, 0.3}, hp);
                    check_method_parity(distill::skew_kd, distill::skew_kd_options{temperature, red, -100, 0.1}, hp);
                    check_method_parity(distill::skew_reverse_kd,
                                        distill::skew_reverse_kd_options{temperature, red, -100, 0.6}, hp);
                    check_method_parity(distill::tvd, distill::tvd_options{temperature, red}, hp);
                    check_method_parity(distill::soft_ce, distill::soft_ce_options{temperature, red}, hp);
                    ++runs;
                }
    CHECK(runs == 84);  // 7 shapes x 2 x 2 temperatures x 3 reductions
}

TEST_CASE_TEMPLATE("divergences (thrust): the skew methods at alpha 0 and 1, and logits of 1e3", T, float, double) {
    host_problem<T> hp(9, 33, 611, 1000.0);
    hp.with_labels({4}).with_weight();
    for (double alpha : {0.0, 1.0}) {
        CAPTURE(alpha);
        check_method_parity(distill::skew_kd, distill::skew_kd_options{0.5, reduction::sum, -100, alpha}, hp);
        check_method_parity(distill::skew_reverse_kd, distill::skew_reverse_kd_options{0.5, reduction::sum, -100, alpha},
                            hp);
    }
    check_method_parity(distill::jsd, distill::jsd_options{0.5, reduction::none}, hp);
    check_method_parity(distill::tvd, distill::tvd_options{0.5, reduction::none}, hp);
}

TEST_CASE_TEMPLATE("divergences (thrust): run with caller workspace writes the CPU results into device outputs", T,
                   float, double) {
    host_problem<T> hp(9, 11, 401);
    hp.with_labels({3}).with_weight();
    const device_problem<T> dp(hp);
    for (reduction red : {reduction::batchmean, reduction::sum, reduction::none}) {
        const distill::jsd_options opts{2.0, red, -100, 0.4};
        host_outputs<T> ho(red, 9, 11);
        REQUIRE(distill::run(opts, hp.args(), ho.views(9, 11)).ok());
        const index_t loss_size = red == reduction::none ? 9 : 1;
        thrust::device_vector<T> loss(static_cast<std::size_t>(loss_size)), grad(99), grad_t(1);
        const distill::response_outputs<T, device_space> outs{distill::as_view(loss), distill::as_matrix(grad, 9, 11),
                                                              distill::as_view(grad_t)};
        const auto backend = distill::thrust_device();
        thrust::device_vector<unsigned char> scratch(distill::workspace_bytes(backend, opts, dp.args(), outs));
        const distill::workspace ws{thrust::raw_pointer_cast(scratch.data()), scratch.size()};
        REQUIRE(distill::run(backend, opts, dp.args(), outs, ws).ok());
        const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
        check_all_close(host_copy(loss), ho.loss, rtol, 1e-30);
        check_all_close(host_copy(grad), ho.grad, rtol, 1e-30);
        DISTILL_CHECK_CLOSE(host_copy(grad_t)[0], ho.grad_temperature[0], rtol, rtol * 9);
    }
}

TEST_CASE_TEMPLATE("divergences (thrust): jsd without d/dT on blocks of rows matches double", T, float, double) {
    // Without d/dT, float jsd on host threads keeps each row's teacher exps in the next row's
    // gradient when the backend runs that row next on the same worker: the CPU backend (one
    // block, or one per thread) and Thrust on host threads (host memory, or the OMP device system
    // here: blocks of 3 of the 130 rows). Each run is compared with double on the CPU, which
    // takes the scalar path with no scratch row. Ignored rows inside, first and last in blocks.
    constexpr index_t n = 130, c = 300;
    host_problem<T> hp(n, c, 907);
    hp.with_labels({1, 62, 63, 65, 128}).with_weight();
    host_problem<double> exact(n, c, 1);
    for (std::size_t k = 0; k < hp.student.size(); ++k) {
        exact.student[k] = hp.student[k];
        exact.teacher[k] = hp.teacher[k];
    }
    exact.with_labels({1, 62, 63, 65, 128});
    exact.weight.assign(hp.weight.begin(), hp.weight.end());
    exact.use_weight = true;
    const device_problem<T> dp(hp);
    for (reduction red : {reduction::sum, reduction::none}) {
        INFO("reduction: ", std::string(distill::to_string(red)));
        const distill::jsd_options opts{2.0, red, -100, 0.3};
        host_outputs<double> want(red, n, c);
        REQUIRE(distill::run(opts, exact.args(), want.views(n, c, true, false)).ok());
        double largest = 0;
        for (double g : want.grad) largest = std::max(largest, std::abs(g));
        const bool single = std::is_same_v<T, float>;
        const auto check = [&](const std::vector<T>& loss, const std::vector<T>& grad) {
            check_all_close(loss, want.loss, single ? 5e-5 : 1e-12, single ? 1e-6 : 1e-15);
            check_all_close(grad, want.grad, single ? 1e-4 : 1e-12, (single ? 1e-5 : 1e-13) * largest);
        };
        const auto host_run = [&](const auto& backend) {
            host_outputs<T> ho(red, n, c);
            const auto views = ho.views(n, c, true, false);
            std::vector<unsigned char> scratch(distill::workspace_bytes(backend, opts, hp.args(), views));
            REQUIRE(distill::run(backend, opts, hp.args(), views, distill::workspace{scratch.data(), scratch.size()}).ok());
            check(ho.loss, ho.grad);
        };
        host_run(distill::cpu_backend{});
        host_run(distill::cpu_backend{2});
        host_run(distill::thrust_host(thrust::omp::par));
        const index_t loss_size = red == reduction::none ? n : 1;
        thrust::device_vector<T> loss(static_cast<std::size_t>(loss_size)), grad(static_cast<std::size_t>(n * c));
        const distill::response_outputs<T, device_space> outs{distill::as_view(loss), distill::as_matrix(grad, n, c)};
        const auto device = distill::thrust_device();
        thrust::device_vector<unsigned char> scratch(distill::workspace_bytes(device, opts, dp.args(), outs));
        REQUIRE(distill::run(device, opts, dp.args(), outs, distill::workspace{thrust::raw_pointer_cast(scratch.data()), scratch.size()})
                    .ok());
        const std::vector<T> device_loss = host_copy(loss), device_grad = host_copy(grad);
        check(device_loss, device_grad);
    }
}

TEST_CASE_TEMPLATE("divergences (thrust): errors found in device memory are reported and write nothing", T, float,
                   double) {
    host_problem<T> hp(4, 6, 421);
    hp.with_labels().with_weight();
    hp.weight[2] = T(-1);  // read back from device memory by the check step
    const device_problem<T> dp(hp);
    thrust::device_vector<T> loss(1, host_outputs<T>::sentinel), grad(24, host_outputs<T>::sentinel),
        grad_t(1, host_outputs<T>::sentinel);
    const distill::response_outputs<T, device_space> outs{distill::as_view(loss), distill::as_matrix(grad, 4, 6),
                                                          distill::as_view(grad_t)};
    auto untouched = [&] {
        for (const auto* v : {&loss, &grad, &grad_t})
            for (T x : host_copy(*v))
                if (x != host_outputs<T>::sentinel) return false;
        return true;
    };
    check_method_error("tvd", distill::run(distill::tvd_options{}, dp.args(), outs), errc::invalid_weight,
                       error_kind::value, "weight", {"weight[2]", ">= 0"});
    CHECK(untouched());
    // A parameter rule, before anything is read on the device.
    host_problem<T> good(4, 6, 421);
    const device_problem<T> dg(good);
    check_method_error("jsd", distill::run(distill::jsd_options{.beta = 1.0}, dg.args(), outs),
                       errc::invalid_parameter, error_kind::value, "beta", {"beta = "});
    CHECK(untouched());
    // And the convenience object throws.
    CHECK_THROWS_AS((void)distill::skew_kd(dp.args().student, dp.args().teacher, dp.args().labels, dp.args().weight,
                                           distill::skew_kd_options{}),
                    distill::error);
}

}  // namespace divergences_parity_test
