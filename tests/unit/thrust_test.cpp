// tests/unit/thrust_test.cpp: distill/backends/thrust.hpp under the OMP device system.
//
// Compiled with THRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_OMP (CMake: distill::thrust_omp),
// so "device" memory is host memory run by OpenMP threads: the same source that runs on
// CUDA under nvcc. Checks the device adapters, parity of the Thrust backend with the CPU
// backend, and that errors found in device memory are reported and leave outputs alone.
#include "lockstep_backend.hpp"  // first: see there
#include "thrust_support.hpp"

#include <thrust/copy.h>
#include <thrust/host_vector.h>
#include <thrust/system/omp/execution_policy.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

using distill::device_space;
using distill::errc;
using distill::error_kind;
using distill::index_t;
using distill::reduction;
using namespace distill_test;

static_assert(THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_OMP, "this test runs the OMP device system");

static_assert(distill::device_tensor<thrust::device_vector<float>>);
static_assert(distill::real_tensor<thrust::device_vector<double>>);
static_assert(!distill::host_tensor<thrust::device_vector<float>>);
static_assert(distill::integer_tensor<thrust::device_vector<std::int64_t>>);
static_assert(!distill::writable_tensor<const thrust::device_vector<float>>);
static_assert(distill::host_tensor<thrust::host_vector<float>>);
static_assert(distill::device_tensor<distill::tensor<float, device_space>>);
static_assert(std::is_same_v<distill::default_backend_t<device_space>, distill::thrust_backend<thrust::detail::device_t, device_space>>);
static_assert(distill::backend_for<decltype(distill::thrust_device()), device_space>);
static_assert(distill::backend_for<decltype(distill::thrust_host()), distill::host_space>);
static_assert(distill::backend_object<decltype(distill::thrust_device())>);
static_assert(!distill::backend_object<thrust::device_vector<float>>);

namespace {



/// Device outputs pre-filled with a sentinel.
template <class T>
struct device_outputs {
    thrust::device_vector<T> loss, grad, grad_temperature;
    device_outputs(index_t loss_size, index_t n, index_t c)
        : loss(static_cast<std::size_t>(loss_size), host_outputs<T>::sentinel),
          grad(static_cast<std::size_t>(n * c), host_outputs<T>::sentinel),
          grad_temperature(1, host_outputs<T>::sentinel) {}

    distill::response_outputs<T, device_space> views(index_t n, index_t c) {
        return {distill::as_view(loss), distill::as_matrix(grad, n, c), distill::as_view(grad_temperature)};
    }
    bool untouched() const {
        for (const auto* v : {&loss, &grad, &grad_temperature})
            for (T x : host_copy(*v))
                if (x != host_outputs<T>::sentinel) return false;
        return true;
    }
};

/// The device result matches the CPU one: per-row values to rounding, sums over the n rows to
/// reordering (d/dT sums terms of both signs, so its allowance is absolute, per row).
template <class T, class DeviceResult, class HostResult>
void check_parity(const DeviceResult& dev, const HostResult& cpu, index_t n) {
    const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
    REQUIRE(dev.status.ok());
    DISTILL_CHECK_CLOSE(dev.loss, cpu.loss, rtol, 1e-30);
    DISTILL_CHECK_CLOSE(dev.grad_temperature, cpu.grad_temperature, rtol, rtol * static_cast<double>(n));
    check_all_close(host_copy(dev.grad_student), host_copy(cpu.grad_student), rtol, 1e-30);
    check_all_close(host_copy(dev.row_losses), host_copy(cpu.row_losses), rtol, 1e-30);
}

}  // namespace

TEST_CASE_TEMPLATE("thrust: device_vector, device_ptr and distill::tensor adapt to device views", T, float, double) {
    thrust::device_vector<T> v(12);
    const auto view = distill::as_view(v);
    static_assert(std::is_same_v<decltype(view), const distill::vector_view<T, device_space>>);
    CHECK(view.rank() == 1);
    CHECK(view.extent(0) == 12);
    CHECK(view.stride(0) == 1);
    CHECK(view.data() == thrust::raw_pointer_cast(v.data()));
    const thrust::device_vector<T>& cv = v;
    static_assert(std::is_same_v<decltype(distill::as_view(cv)), distill::vector_view<const T, device_space>>);

    const auto m = distill::as_matrix(v, 3, 4);
    static_assert(std::is_same_v<decltype(m), const distill::any_view<T, device_space>>);
    CHECK(m.rank() == 2);
    CHECK(m.extent(0) == 3);
    CHECK(m.stride(0) == 4);
    CHECK(m.stride(1) == 1);
    CHECK_FALSE(distill::as_matrix(v, 5, 2).bound());

    const auto p = distill::make_view(v.data() + 2, 2, 5);
    static_assert(std::is_same_v<decltype(p), const distill::strided_view<T, 2, device_space>>);
    CHECK(p.data() == thrust::raw_pointer_cast(v.data()) + 2);
    CHECK(p.stride(0) == 5);
    const auto cp = distill::make_view(thrust::device_ptr<const T>(cv.data()), 12);
    static_assert(std::is_same_v<decltype(cp), const distill::strided_view<const T, 1, device_space>>);

    thrust::host_vector<T> h(4);
    const auto hv = distill::as_view(h);
    static_assert(std::is_same_v<decltype(hv), const distill::vector_view<T>>);
    CHECK(hv.data() == h.data());

    distill::tensor<T, device_space> t({2, 3});
    CHECK(t.size() == 6);
    CHECK(distill::as_view(t).stride(0) == 3);
    CHECK(distill::as_view(t).data() == thrust::raw_pointer_cast(t.storage_object().data()));
    for (T x : host_copy(t)) CHECK(x == T(0));
}

TEST_CASE_TEMPLATE("thrust: the device backend matches the CPU backend", T, float, double) {
    constexpr std::array<std::array<index_t, 2>, 4> shapes = {{{1, 7}, {6, 1}, {37, 1000}, {5, 4}}};
    int runs = 0;
    for (const auto& shape : shapes)
        for (int extras = 0; extras < 2; ++extras)
            for (bool standardize : {false, true})
                for (double temperature : {0.5, 4.0})
                    for (reduction red : {reduction::batchmean, reduction::sum, reduction::none}) {
                        const index_t n = shape[0], c = shape[1];
                        if (standardize && c < 2) continue;
                        CAPTURE(n);
                        CAPTURE(c);
                        CAPTURE(extras);
                        CAPTURE(standardize);
                        CAPTURE(temperature);
                        INFO("reduction: ", std::string(distill::to_string(red)));
                        host_problem<T> hp(n, c, static_cast<unsigned>(300 + n + c));
                        if (extras) {
                            if (n > 1) hp.with_labels({n / 2});
                            else hp.with_labels();
                            hp.with_weight();
                        }
                        const device_problem<T> dp(hp);
                        const distill::kd_options opts{temperature, red, -100, standardize};
                        const auto ha = hp.args();
                        const auto da = dp.args();
                        const auto cpu = distill::kd(ha.student, ha.teacher, ha.labels, ha.weight, opts);
                        const auto dev = distill::kd(da.student, da.teacher, da.labels, da.weight, opts);
                        static_assert(std::is_same_v<decltype(dev), const distill::loss_result<T, device_space>>);
                        check_parity<T>(dev, cpu, n);
                        // Thrust on host memory, sequentially and with OpenMP threads.
                        check_parity<T>(distill::kd(distill::thrust_host(), ha.student, ha.teacher, ha.labels, ha.weight, opts), cpu, n);
                        check_parity<T>(distill::kd(distill::thrust_host(thrust::omp::par), ha.student, ha.teacher, ha.labels,
                                                    ha.weight, opts),
                                        cpu, n);
                        // The GPU's block-per-row path on the host (lockstep_backend.hpp).
                        check_lockstep_parity<T>(distill::kd(lockstep_backend<4>{}, ha.student, ha.teacher, ha.labels, ha.weight, opts), cpu, n);
                        check_lockstep_parity<T>(distill::kd(lockstep_backend<64>{}, ha.student, ha.teacher, ha.labels, ha.weight, opts), cpu, n);
                        ++runs;
                    }
    CHECK(runs == 84);  // 4 shapes x 2 x 2 temperatures x 3 reductions, standardize only where C >= 2
}

TEST_CASE_TEMPLATE("thrust: run (kd) with caller workspace writes the CPU results into device outputs", T, float, double) {
    host_problem<T> hp(9, 11, 401);
    hp.with_labels({3}).with_weight();
    const device_problem<T> dp(hp);
    for (reduction red : {reduction::batchmean, reduction::sum, reduction::none}) {
        const distill::kd_options opts{2.0, red, -100, true};
        host_outputs<T> ho(red, 9, 11);
        REQUIRE(distill::run(opts, hp.args(), ho.views(9, 11)).ok());
        device_outputs<T> d(red == reduction::none ? 9 : 1, 9, 11);
        const auto backend = distill::thrust_device();
        const auto outs = d.views(9, 11);
        const std::size_t bytes = distill::workspace_bytes(backend, opts, dp.args(), outs);
        CHECK(bytes == (red == reduction::none ? 1u : 2u) * 9 * sizeof(T));
        thrust::device_vector<unsigned char> scratch(bytes);
        const distill::status s = distill::run(backend, opts, dp.args(), outs,
                                                  distill::workspace{thrust::raw_pointer_cast(scratch.data()), bytes});
        INFO(s.message());
        REQUIRE(s.ok());
        const double rtol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
        const auto loss = host_copy(d.loss), grad = host_copy(d.grad), grad_t = host_copy(d.grad_temperature);
        check_all_close(loss, ho.loss, rtol, 1e-30);
        check_all_close(grad, ho.grad, rtol, 1e-30);
        DISTILL_CHECK_CLOSE(grad_t[0], ho.grad_temperature[0], rtol, 1e-30);
    }
}

TEST_CASE("thrust: workspace sizes") {
    host_problem<float> hp(17, 3, 403);
    const device_problem<float> dp(hp);
    device_outputs<float> d(17, 17, 3);
    const auto backend = distill::thrust_device();
    auto outs = d.views(17, 3);
    const auto bytes = [&](reduction red) { return distill::workspace_bytes(backend, distill::kd_options{1.0, red}, dp.args(), outs); };
    CHECK(bytes(reduction::batchmean) == 2 * 17 * sizeof(float));
    CHECK(bytes(reduction::none) == 17 * sizeof(float));
    outs.grad_temperature = {};
    CHECK(bytes(reduction::sum) == 17 * sizeof(float));
    CHECK(bytes(reduction::none) == 0);
    CHECK(distill::workspace_bytes(distill::kd_options{}, hp.args(), distill::response_outputs<float>{}) == 0);

    // Reduction none without a temperature gradient needs no workspace at all.
    device_outputs<float> none_out(17, 17, 3);
    auto none_views = none_out.views(17, 3);
    none_views.grad_temperature = {};
    CHECK(distill::run(backend, distill::kd_options{1.0, reduction::none}, dp.args(), none_views).ok());
    CHECK(host_copy(none_out.loss)[0] != host_outputs<float>::sentinel);
}

TEST_CASE_TEMPLATE("thrust: errors found in device memory are reported and nothing is written", T, float, double) {
    host_problem<T> hp(4, 5, 405);
    hp.with_labels().with_weight();
    const distill::kd_options opts{};

    auto expect_device_error = [&](const host_problem<T>& h, errc code, error_kind kind, const char* argument,
                                   std::initializer_list<const char*> fragments) {
        const device_problem<T> dp(h);
        device_outputs<T> d(1, 4, 5);
        thrust::device_vector<T> scratch(8);
        const distill::workspace ws{thrust::raw_pointer_cast(scratch.data()), 8 * sizeof(T)};
        check_error(distill::run(distill::thrust_device(), opts, dp.args(), d.views(4, 5), ws), code, kind, argument, fragments);
        CHECK(d.untouched());
        const auto a = dp.args();
        bool thrown = false;
        try {
            (void)distill::kd(a.student, a.teacher, a.labels, a.weight, opts);
        } catch (const distill::error& e) {
            thrown = true;
            CHECK(e.status().code() == code);
            for (const char* f : fragments) CHECK(contains(e.what(), f));
        }
        CHECK(thrown);
    };

    SUBCASE("a label out of range") {
        hp.labels[2] = 9;
        expect_device_error(hp, errc::label_out_of_range, error_kind::value, "labels", {"labels[2] = 9", "[0, 5)"});
    }
    SUBCASE("a negative label that is not ignore_index") {
        hp.labels[3] = -3;
        expect_device_error(hp, errc::label_out_of_range, error_kind::value, "labels", {"labels[3] = -3"});
    }
    SUBCASE("a negative weight") {
        hp.weight[1] = T(-2);
        expect_device_error(hp, errc::invalid_weight, error_kind::value, "weight", {"weight[1] = -2"});
    }
    SUBCASE("a nan weight") {
        hp.weight[0] = std::numeric_limits<T>::quiet_NaN();
        expect_device_error(hp, errc::invalid_weight, error_kind::value, "weight", {"weight[0] = nan"});
    }
    SUBCASE("labels of the wrong length") {
        hp.labels.push_back(0);
        expect_device_error(hp, errc::shape_mismatch, error_kind::shape, "labels", {"labels", "[5]", "[4]"});
    }
}

TEST_CASE_TEMPLATE("thrust: usage errors on the device path", T, float, double) {
    host_problem<T> hp(4, 5, 407);
    device_problem<T> dp(hp);
    const auto backend = distill::thrust_device();
    const distill::kd_options opts{};
    device_outputs<T> d(1, 4, 5);
    const auto outs = d.views(4, 5);
    const std::size_t need = distill::workspace_bytes(backend, opts, dp.args(), outs);
    REQUIRE(need == 2 * 4 * sizeof(T));
    thrust::device_vector<T> scratch(8);
    void* scratch_data = thrust::raw_pointer_cast(scratch.data());

    SUBCASE("workspace one byte too small") {
        const std::string needed = std::to_string(need), given = std::to_string(need - 1);
        check_error(distill::run(backend, opts, dp.args(), outs, distill::workspace{scratch_data, need - 1}),
                    errc::workspace_too_small, error_kind::usage, "workspace", {"workspace", needed.c_str(), given.c_str()});
        CHECK(d.untouched());
    }
    SUBCASE("no workspace at all") {
        check_error(distill::run(backend, opts, dp.args(), outs), errc::workspace_too_small, error_kind::usage, "workspace",
                    {"workspace", "0 bytes"});
        CHECK(d.untouched());
    }
    SUBCASE("a size without memory") {
        check_error(distill::run(backend, opts, dp.args(), outs, distill::workspace{nullptr, need}),
                    errc::workspace_too_small, error_kind::usage, "workspace", {"workspace"});
        CHECK(d.untouched());
    }
    SUBCASE("grad_student aliasing the student") {
        auto aliased = outs;
        aliased.grad_student = distill::as_matrix(dp.student, 4, 5);
        const auto before = host_copy(dp.student);
        check_error(distill::run(backend, opts, dp.args(), aliased, distill::workspace{scratch_data, need}),
                    errc::aliasing, error_kind::usage, "grad_student", {"grad_student", "student"});
        CHECK(host_copy(dp.student) == before);
        CHECK(d.untouched());
    }
    SUBCASE("a teacher of another shape") {
        thrust::device_vector<T> wide(24);
        auto args = dp.args();
        args.teacher = distill::as_matrix(wide, 4, 6);
        check_error(distill::run(backend, opts, args, outs, distill::workspace{scratch_data, need}), errc::shape_mismatch,
                    error_kind::shape, "teacher", {"teacher", "[4, 6]", "[4, 5]"});
        CHECK(d.untouched());
    }
    SUBCASE("the exact workspace is enough") {
        CHECK(distill::run(backend, opts, dp.args(), outs, distill::workspace{scratch_data, need}).ok());
        CHECK_FALSE(d.untouched());
    }
}
