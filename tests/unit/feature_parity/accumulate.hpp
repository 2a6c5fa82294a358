// tests/unit/feature_parity/accumulate.hpp: feature_outputs::grad_scale and accumulate on the
// Thrust backend (OMP device system, device_vector data) against the CPU backend: the gradients
// are computed into workspace and scaled into (or added to) the caller's outputs by
// backend.for_each. hint (mse, smooth_l1), sp, vid (grad_alpha too) and fsp (per-layer
// gradients), into outputs that hold an earlier term's gradient.
#pragma once

#include "support.hpp"

#include <thrust/host_vector.h>

namespace feature_accumulate_parity {

using distill::index_t;
using feature_test::dense;
using feature_test::feature_inputs;

/// What an output holds before the call: an earlier term's gradient (output o, element e).
inline double earlier_value(std::size_t o, std::size_t e) { return 0.25 * static_cast<double>((e + o) % 5) - 0.5; }

/// A dense tensor in Vec storage (thrust::host_vector for the CPU backend, device_vector for Thrust).
template <template <class...> class Vec, class T>
struct stored {
    using space = distill::memory_space_t<Vec<T>>;
    std::vector<index_t> shape, strides;
    Vec<T> data;
    stored(const std::vector<index_t>& s, const std::vector<double>& values)
        : shape(s), strides(feature_test::strides_of(s)), data(values.begin(), values.end()) {}
    distill::any_view<T, space> view() {
        return distill::any_view<T, space>(thrust::raw_pointer_cast(data.data()), static_cast<int>(shape.size()),
                                           shape.data(), strides.data());
    }
    std::vector<double> values() const {
        const thrust::host_vector<T> h = data;
        return std::vector<double>(h.begin(), h.end());
    }
};

/// One call on `backend` with the given grad_scale / accumulate: the loss and every gradient (the
/// student's, or one per student layer, then alpha's), the gradient outputs prefilled.
template <template <class...> class Vec, class T, class Backend, class Options>
feature_test::feature_outputs_host run_scaled(const Backend& backend, const Options& opts, const feature_inputs& in, T scale,
                                              bool accumulate) {
    using M = distill::feature_method<Options>;
    using space = typename stored<Vec, T>::space;
    std::vector<std::unique_ptr<stored<Vec, T>>> ins, outs_storage;
    auto input = [&](const dense& d) {
        ins.push_back(std::make_unique<stored<Vec, T>>(d.shape, d.values));
        return distill::any_view<const T, space>(ins.back()->view());
    };
    auto output = [&](const std::vector<index_t>& shape) {
        index_t n = 1;
        for (index_t e : shape) n *= e;
        std::vector<double> values(static_cast<std::size_t>(n));
        for (std::size_t e = 0; e < values.size(); ++e) values[e] = earlier_value(outs_storage.size(), e);
        outs_storage.push_back(std::make_unique<stored<Vec, T>>(shape, values));
        return outs_storage.back()->view();
    };
    distill::feature_args<T, space> args;
    std::vector<distill::any_view<const T, space>> sl, tl;
    std::vector<distill::any_view<T, space>> gl;
    if (!in.student.shape.empty()) args.student = input(in.student);
    if (!in.teacher.shape.empty()) args.teacher = input(in.teacher);
    for (const auto& d : in.student_layers) sl.push_back(input(d));
    for (const auto& d : in.teacher_layers) tl.push_back(input(d));
    args.student_layers = sl;
    args.teacher_layers = tl;
    if (!in.alpha.shape.empty()) args.alpha = input(in.alpha);
    distill::feature_outputs<T, space> outs{output({})};
    if constexpr (M::form == distill::feature_form::layers) {
        for (const auto& d : in.student_layers) gl.push_back(output(d.shape));
        outs.grad_student_layers = gl;
    } else {
        outs.grad_student = output(in.student.shape);
    }
    if constexpr (M::form == distill::feature_form::pair_with_alpha) outs.grad_alpha = output(in.alpha.shape);
    outs.grad_scale = scale;
    outs.accumulate = accumulate;
    const std::size_t bytes = distill::workspace_bytes(backend, opts, args, outs);
    Vec<double> scratch(bytes / sizeof(double) + 1);
    feature_test::feature_outputs_host r;
    r.status = distill::run(backend, opts, args, outs, distill::workspace{thrust::raw_pointer_cast(scratch.data()), bytes});
    for (std::size_t i = 0; i < outs_storage.size(); ++i) {
        const std::vector<double> v = outs_storage[i]->values();
        if (i == 0) r.loss = v[0];
        else r.grads.push_back(v);
    }
    return r;
}

/// The CPU's scaled / accumulated gradients are earlier + scale * its plain ones and its loss is
/// unscaled; the Thrust backend's outputs match the CPU's.
template <class T, class Options>
void check_scaled_parity(const Options& opts, const feature_inputs& in) {
    const double rtol = std::is_same_v<T, float> ? 2e-5 : 1e-12;
    const distill::cpu_backend cpu{};
    const auto plain = run_scaled<thrust::host_vector, T>(cpu, opts, in, T(1), false);
    INFO("plain: ", std::string(plain.status.message()));
    REQUIRE(plain.status.ok());
    struct setting {
        T scale;
        bool accumulate;
    };
    for (const setting s : {setting{T(-0.75), true}, setting{T(2.5), false}, setting{T(1), true}}) {
        CAPTURE(s.scale);
        CAPTURE(s.accumulate);
        const auto on_cpu = run_scaled<thrust::host_vector, T>(cpu, opts, in, s.scale, s.accumulate);
        const auto on_dev = run_scaled<thrust::device_vector, T>(distill::thrust_device(), opts, in, s.scale, s.accumulate);
        INFO("cpu: ", std::string(on_cpu.status.message()), " device: ", std::string(on_dev.status.message()));
        REQUIRE(on_cpu.status.ok());
        REQUIRE(on_dev.status.ok());
        CHECK(std::abs(on_cpu.loss - plain.loss) <= rtol * std::max(1.0, std::abs(plain.loss)));
        CHECK(std::abs(on_dev.loss - on_cpu.loss) <= rtol * std::max(1.0, std::abs(on_cpu.loss)));
        REQUIRE(on_cpu.grads.size() == plain.grads.size());
        REQUIRE(on_dev.grads.size() == plain.grads.size());
        for (std::size_t k = 0; k < plain.grads.size(); ++k) {
            CAPTURE(k);
            std::vector<double> want(plain.grads[k].size());
            double largest = 1e-30;
            for (std::size_t e = 0; e < want.size(); ++e) {
                want[e] = (s.accumulate ? earlier_value(k + 1, e) : 0.0) + static_cast<double>(s.scale) * plain.grads[k][e];
                largest = std::max(largest, std::abs(want[e]));
            }
            distill_test::check_all_close(on_cpu.grads[k], want, 10 * rtol, 10 * rtol * largest);
            distill_test::check_all_close(on_dev.grads[k], on_cpu.grads[k], rtol, rtol * largest);
        }
    }
}

}  // namespace feature_accumulate_parity

TEST_CASE_TEMPLATE("feature grad_scale / accumulate parity: Thrust (OMP) matches the CPU backend", T, float, double) {
    using namespace feature_accumulate_parity;
    SUBCASE("hint mse and smooth_l1") {
        for (auto distance : {distill::hint_distance::mse, distill::hint_distance::smooth_l1}) {
            CAPTURE(distill::to_string(distance));
            const distill::basic_hint_options<T> opts{distance, T(0.5)};
            check_scaled_parity<T>(opts, {dense::random({16, 40}, 1), dense::random({16, 40}, 2)});
            check_scaled_parity<T>(opts, {dense::random({5, 3, 4, 2}, 3), dense::random({5, 3, 4, 2}, 4)});
        }
    }
    SUBCASE("sp") {
        check_scaled_parity<T>(distill::basic_sp_options<T>{}, {dense::random({16, 40}, 5), dense::random({16, 24}, 6)});
        check_scaled_parity<T>(distill::basic_sp_options<T>{}, {dense::random({7, 3, 4, 4}, 7), dense::random({7, 10}, 8)});
    }
    SUBCASE("vid: grad_student and grad_alpha") {
        check_scaled_parity<T>(distill::basic_vid_options<T>{T(1e-3)},
                               {dense::random({6, 5, 3, 2}, 9), dense::random({6, 5, 3, 2}, 10), dense::random({5}, 11)});
    }
    SUBCASE("fsp: one gradient per student layer") {
        check_scaled_parity<T>(distill::basic_fsp_options<T>{},
                               feature_inputs::layers({dense::random({2, 2, 5, 7}, 12), dense::random({2, 3, 2, 3}, 13)},
                                                      {dense::random({2, 2, 3, 3}, 14), dense::random({2, 3, 3, 3}, 15)}));
    }
}
