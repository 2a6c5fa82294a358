// tests/unit/feature_parity/support.hpp: one call of a feature method on the Thrust backend (OMP
// device system, device_vector inputs and outputs) against the same call on the CPU backend.
#pragma once

#include "../feature_support.hpp"

#include <distill/thrust.hpp>

#include <thrust/device_vector.h>
#include <thrust/host_vector.h>

namespace feature_parity {

using distill::device_space;
using distill::index_t;
using feature_test::dense;
using feature_test::feature_inputs;

template <class T>
struct device_buffer {
    std::vector<index_t> shape, strides;
    thrust::device_vector<T> data;
    device_buffer(const std::vector<index_t>& s, const std::vector<T>& values)
        : shape(s), strides(feature_test::strides_of(s)), data(values.begin(), values.end()) {}
    distill::any_view<T, device_space> view() {
        return distill::any_view<T, device_space>(thrust::raw_pointer_cast(data.data()), static_cast<int>(shape.size()),
                                                  shape.data(), strides.data());
    }
    std::vector<double> host() const {
        const thrust::host_vector<T> h = data;
        return std::vector<double>(h.begin(), h.end());
    }
};

/// The call on the Thrust backend: loss and gradients (in the order of feature_outputs_host).
template <class T, class Options>
feature_test::feature_outputs_host run_on_device(const Options& opts, const feature_inputs& in) {
    using M = distill::feature_method<Options>;
    std::vector<std::unique_ptr<device_buffer<T>>> ins, outs_storage;
    auto input = [&](const dense& d) {
        ins.push_back(std::make_unique<device_buffer<T>>(d.shape, std::vector<T>(d.values.begin(), d.values.end())));
        return distill::any_view<const T, device_space>(ins.back()->view());
    };
    auto output = [&](const std::vector<index_t>& shape) {
        index_t n = 1;
        for (index_t e : shape) n *= e;
        outs_storage.push_back(std::make_unique<device_buffer<T>>(
            shape, std::vector<T>(static_cast<std::size_t>(n), feature_test::sentinel<T>())));
        return outs_storage.back()->view();
    };
    distill::feature_args<T, device_space> args;
    std::vector<distill::any_view<const T, device_space>> sl, tl;
    std::vector<distill::any_view<T, device_space>> gl;
    if (!in.student.shape.empty()) args.student = input(in.student);
    if (!in.teacher.shape.empty()) args.teacher = input(in.teacher);
    for (const auto& d : in.student_layers) sl.push_back(input(d));
    for (const auto& d : in.teacher_layers) tl.push_back(input(d));
    args.student_layers = sl;
    args.teacher_layers = tl;
    if (!in.alpha.shape.empty()) args.alpha = input(in.alpha);
    distill::feature_outputs<T, device_space> outs{output({})};
    if constexpr (M::form == distill::feature_form::layers) {
        for (const auto& d : in.student_layers) gl.push_back(output(d.shape));
        outs.grad_student_layers = gl;
    } else {
        outs.grad_student = output(in.student.shape);
    }
    if constexpr (M::form == distill::feature_form::pair_with_alpha) outs.grad_alpha = output(in.alpha.shape);
    const std::size_t bytes = distill::workspace_bytes(opts, args, outs);
    thrust::device_vector<unsigned char> scratch(bytes);
    feature_test::feature_outputs_host r;
    r.status = distill::run(opts, args, outs, distill::workspace{thrust::raw_pointer_cast(scratch.data()), bytes});
    for (std::size_t i = 0; i < outs_storage.size(); ++i) {
        const std::vector<double> v = outs_storage[i]->host();
        for (double x : v) r.all_untouched = r.all_untouched && std::isnan(x);
        if (i == 0) r.loss = v[0];
        else r.grads.push_back(v);
    }
    return r;
}

/// Thrust and CPU agree: the loss and every gradient to rtol (relative to the largest entry of
/// each gradient, since GEMM and reductions sum in different orders).
template <class T, class Options>
void check_parity(const Options& opts, const feature_inputs& in) {
    const double rtol = std::is_same_v<T, float> ? 2e-5 : 1e-12;
    const auto cpu = feature_test::run_feature<T>(opts, in);
    const auto dev = run_on_device<T>(opts, in);
    INFO("cpu: ", cpu.status.message(), " device: ", dev.status.message());
    REQUIRE(cpu.status.ok());
    REQUIRE(dev.status.ok());
    CHECK(std::abs(dev.loss - cpu.loss) <= rtol * std::max(1.0, std::abs(cpu.loss)));
    REQUIRE(dev.grads.size() == cpu.grads.size());
    for (std::size_t k = 0; k < cpu.grads.size(); ++k) {
        double largest = 0;
        for (double g : cpu.grads[k]) largest = std::max(largest, std::abs(g));
        for (std::size_t i = 0; i < cpu.grads[k].size(); ++i)
            CHECK(std::abs(dev.grads[k][i] - cpu.grads[k][i]) <= rtol * std::max(largest, 1e-30));
    }
}

/// An invalid call on the device path fails with the same code as on the CPU and writes nothing.
template <class T, class Options>
void check_device_error(const Options& opts, const feature_inputs& in, distill::errc code) {
    const auto dev = run_on_device<T>(opts, in);
    CHECK(static_cast<int>(dev.status.code()) == static_cast<int>(code));
    CHECK(dev.all_untouched);
}

}  // namespace feature_parity
