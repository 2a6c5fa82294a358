// tests/unit/feature_support.hpp: what the feature and relation method tests share.
//
// Dense host tensors of any rank, the run step called on them (loss, gradients, knowledge),
// central finite differences of the loss in double, and a check that a failing call writes
// nothing. Included by feature_methods_test.cpp (CPU) and thrust_feature_test.cpp (parity).
#pragma once

#include "test_support.hpp"

#include <distill/eigen.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace feature_test {

using distill::index_t;

/// A dense row-major host tensor (double values; converted to T at the call).
struct dense {
    std::vector<index_t> shape;
    std::vector<double> values;

    dense() = default;
    dense(std::vector<index_t> s, std::vector<double> v) : shape(std::move(s)), values(std::move(v)) {}
    /// Uniform values in [lo, hi) from a seed.
    static dense random(std::vector<index_t> s, unsigned seed, double lo = -2, double hi = 2) {
        index_t n = 1;
        for (index_t d : s) n *= d;
        return {std::move(s), distill_test::random_values<double>(static_cast<std::size_t>(n), seed, lo, hi)};
    }
    index_t size() const {
        index_t n = 1;
        for (index_t d : shape) n *= d;
        return n;
    }
    index_t rows() const { return shape.empty() ? 1 : shape[0]; }
    index_t row_size() const { return size() / rows(); }
    double& at(index_t row, index_t j) { return values[static_cast<std::size_t>(row * row_size() + j)]; }
};

/// Row-major strides of a shape.
inline std::vector<index_t> strides_of(const std::vector<index_t>& shape) {
    std::vector<index_t> s(shape.size());
    index_t stride = 1;
    for (std::size_t r = shape.size(); r-- > 0;) {
        s[r] = stride;
        stride *= shape[r];
    }
    return s;
}

/// A T copy of a dense tensor, viewable as any_view.
template <class T>
struct buffer {
    std::vector<index_t> shape, strides;
    std::vector<T> data;
    explicit buffer(const dense& d) : shape(d.shape), strides(strides_of(d.shape)), data(d.values.begin(), d.values.end()) {}
    buffer(std::vector<index_t> s, T fill) : shape(std::move(s)), strides(strides_of(shape)) {
        index_t n = 1;
        for (index_t e : shape) n *= e;
        data.assign(static_cast<std::size_t>(n), fill);
    }
    distill::any_view<const T> view() const {
        return distill::any_view<const T>(data.data(), static_cast<int>(shape.size()), shape.data(), strides.data());
    }
    distill::any_view<T> view() { return distill::any_view<T>(data.data(), static_cast<int>(shape.size()), shape.data(), strides.data()); }
};

/// A NaN with a payload: what outputs hold before a call, to prove an error wrote nothing.
template <class T>
T sentinel() {
    return std::numeric_limits<T>::quiet_NaN();
}
template <class T>
bool untouched(const std::vector<T>& v) {
    for (T x : v)
        if (!std::isnan(x)) return false;
    return true;
}

/// Inputs of one call: student and teacher, or layers, and alpha (vid).
struct feature_inputs {
    dense student{}, teacher{}, alpha{};
    std::vector<dense> student_layers{}, teacher_layers{};

    feature_inputs() = default;
    feature_inputs(dense s, dense t) : student(std::move(s)), teacher(std::move(t)) {}
    feature_inputs(dense s, dense t, dense a) : student(std::move(s)), teacher(std::move(t)), alpha(std::move(a)) {}
    static feature_inputs layers(std::vector<dense> s, std::vector<dense> t) {
        feature_inputs in;
        in.student_layers = std::move(s);
        in.teacher_layers = std::move(t);
        return in;
    }
};

/// Outputs of one call on the CPU backend, as double.
struct feature_outputs_host {
    distill::status status;
    double loss = 0;
    std::vector<std::vector<double>> grads;  ///< the student (or one per student layer), then alpha
    bool all_untouched = true;               ///< every output still holds the sentinel
};

/// Calls distill::run (check, workspace query, run) in precision T on the CPU backend.
template <class T, class Options>
feature_outputs_host run_feature(const Options& opts, const feature_inputs& in, bool want_grads = true) {
    using M = distill::feature_method<Options>;
    std::vector<buffer<T>> inputs;
    inputs.reserve(64);
    std::vector<buffer<T>> outputs;
    outputs.reserve(64);
    distill::feature_args<T> args;
    std::vector<distill::any_view<const T>> sl, tl;
    std::vector<distill::any_view<T>> gl;
    auto input = [&](const dense& d) { return inputs.emplace_back(d).view(); };
    if (!in.student.shape.empty() || !in.student.values.empty()) args.student = input(in.student);
    if (!in.teacher.shape.empty() || !in.teacher.values.empty()) args.teacher = input(in.teacher);
    for (const auto& d : in.student_layers) sl.push_back(input(d));
    for (const auto& d : in.teacher_layers) tl.push_back(input(d));
    args.student_layers = sl;
    args.teacher_layers = tl;
    if (!in.alpha.shape.empty()) args.alpha = input(in.alpha);

    distill::feature_outputs<T> outs{outputs.emplace_back(std::vector<index_t>{}, sentinel<T>()).view()};
    if (want_grads) {
        if constexpr (M::form == distill::feature_form::layers) {
            for (const auto& d : in.student_layers) gl.push_back(outputs.emplace_back(d.shape, sentinel<T>()).view());
            outs.grad_student_layers = gl;
        } else if (args.student.bound()) {
            outs.grad_student = outputs.emplace_back(in.student.shape, sentinel<T>()).view();
        }
        if (M::form == distill::feature_form::pair_with_alpha && args.alpha.bound())
            outs.grad_alpha = outputs.emplace_back(in.alpha.shape, sentinel<T>()).view();
    }
    const std::size_t bytes = distill::workspace_bytes(opts, args, outs);
    std::vector<T> scratch(bytes / sizeof(T) + 1);
    feature_outputs_host r;
    r.status = distill::run(opts, args, outs, distill::workspace{scratch.data(), bytes});
    for (std::size_t i = 0; i < outputs.size(); ++i) {
        r.all_untouched = r.all_untouched && untouched(outputs[i].data);
        if (i == 0) r.loss = static_cast<double>(outputs[i].data[0]);
        else r.grads.emplace_back(outputs[i].data.begin(), outputs[i].data.end());
    }
    return r;
}

/// Every differentiable input of a call, flattened in the order of feature_outputs_host::grads.
inline std::vector<dense*> differentiable(feature_inputs& in, bool with_alpha) {
    std::vector<dense*> out;
    if (in.student_layers.empty()) out.push_back(&in.student);
    for (auto& d : in.student_layers) out.push_back(&d);
    if (with_alpha) out.push_back(&in.alpha);
    return out;
}

/// The analytic gradients (double) against central finite differences of the loss, for every
/// differentiable input. Tolerance: rtol relative to the largest gradient entry, plus atol.
template <class Options>
void check_gradient_fd(const Options& opts, feature_inputs in, double rtol = 1e-6, double atol = 1e-9,
                       double rel_step = 1e-6) {
    using M = distill::feature_method<Options>;
    const bool with_alpha = M::form == distill::feature_form::pair_with_alpha;
    const feature_outputs_host analytic = run_feature<double>(opts, in);
    INFO("message: ", analytic.status.message());
    REQUIRE(analytic.status.ok());
    REQUIRE(std::isfinite(analytic.loss));
    const auto targets = differentiable(in, with_alpha);
    REQUIRE(analytic.grads.size() == targets.size());
    for (std::size_t k = 0; k < targets.size(); ++k) {
        dense& x = *targets[k];
        const std::vector<double> numeric = distill_test::numeric_gradient(
            [&](const std::vector<double>& v) {
                const std::vector<double> saved = x.values;
                x.values = v;
                const double loss = run_feature<double>(opts, in, false).loss;
                x.values = saved;
                return loss;
            },
            x.values, rel_step);
        double largest = 0;
        for (double g : numeric) largest = std::max(largest, std::abs(g));
        CAPTURE(k);
        for (std::size_t i = 0; i < numeric.size(); ++i) {
            CAPTURE(i);
            CHECK(std::abs(analytic.grads[k][i] - numeric[i]) <= atol + rtol * std::max(largest, 1.0));
        }
    }
}

/// The call fails with `code` (and the method's prefix and the fragments), writing nothing.
template <class T, class Options>
void check_feature_error(const Options& opts, const feature_inputs& in, distill::errc code, const char* argument,
                         std::initializer_list<const char*> fragments = {}) {
    using M = distill::feature_method<Options>;
    const feature_outputs_host r = run_feature<T>(opts, in);
    distill_test::check_method_error(M::name, r.status, code, distill::kind_of(code), argument, fragments);
    CHECK(r.all_untouched);
}

}  // namespace feature_test
