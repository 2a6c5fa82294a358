// harness.hpp - what every method runner of the conformance runner shares.
//
// A method runner (methods/<id>.hpp) turns one parsed case into one library
// call. It asks a `call` for the case's parameters (strictly parsed), for its
// inputs as views in the memory space under test, and for outputs, which the
// harness allocates, fills with a sentinel and reads back after the call. The
// runner then judges the outputs (runner.cpp): values against `expect`, or, for
// an `error` case, the status kind and outputs that were not touched.
//
// Two memories exist, so that one method runner serves every backend:
//   eigen_memory<T>   host memory; 1-D and 2-D tensors are Eigen vectors and
//                     row-major matrices seen through distill's Eigen adapter
//                     (other ranks are plain strided views over std::vector);
//                     calls run on the default CPU backend.
//   thrust_memory<T>  thrust::device_vector (the OMP device system on the
//                     host); 1-D and 2-D tensors go through the device_vector
//                     adapter and as_matrix; calls run on the Thrust backend.
// T is the precision under test: the case's float64 values are converted to T.
#pragma once

#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <distill/eigen.hpp>

#ifndef DISTILL_CONFORMANCE_HAS_THRUST
#define DISTILL_CONFORMANCE_HAS_THRUST 0
#endif
#if DISTILL_CONFORMANCE_HAS_THRUST
#include <distill/thrust.hpp>
#endif

#include "case_file.hpp"

namespace distill_conformance {

/// A problem of the runner or of the case, not of the library: a parameter or input no
/// runner reads, a malformed number. The case fails loudly instead of being skipped.
struct runner_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

using shape_t = std::vector<std::int64_t>;

inline std::string shape_string(const shape_t& shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

/// What every output holds before the call: a quiet NaN with a payload, so that an output the
/// library wrote (even with a NaN) can be told from one it left alone.
template <class T>
T sentinel() noexcept;
template <>
inline double sentinel<double>() noexcept {
    return std::bit_cast<double>(std::uint64_t{0x7ff800000dead5e1});
}
template <>
inline float sentinel<float>() noexcept {
    return std::bit_cast<float>(std::uint32_t{0x7fc0d5e1});
}
template <class T>
bool is_sentinel(T value) noexcept {
    using bits = std::conditional_t<sizeof(T) == 8, std::uint64_t, std::uint32_t>;
    return std::bit_cast<bits>(value) == std::bit_cast<bits>(sentinel<T>());
}

/// An output after the call, back on the host.
struct output_values {
    std::string name;
    shape_t shape;               // the logical shape (a scalar is [])
    std::vector<double> values;  // row-major
    std::size_t untouched = 0;   // elements that still hold the sentinel
};

namespace detail {

inline std::int64_t element_count(const shape_t& shape) {
    std::int64_t n = 1;
    for (std::int64_t d : shape) n *= d;
    return n;
}

/// A dense row-major view of any rank (the general case: scalars, 3-D tensors, ...).
template <class E, class Space>
distill::any_view<E, Space> dense_view(E* data, const shape_t& shape) {
    if (shape.size() > static_cast<std::size_t>(distill::max_dynamic_rank))
        throw runner_error("a tensor of rank " + std::to_string(shape.size()) + " exceeds distill::max_dynamic_rank");
    distill::index_t strides[distill::max_dynamic_rank] = {};
    distill::index_t stride = 1;
    for (std::size_t r = shape.size(); r-- > 0;) {
        strides[r] = stride;
        stride *= shape[r];
    }
    return distill::any_view<E, Space>(data, static_cast<int>(shape.size()), shape.data(), strides);
}

template <class T>
output_values to_output_values(std::vector<T> raw) {
    output_values out;
    out.values.reserve(raw.size());
    for (T v : raw) {
        out.untouched += is_sentinel(v) ? 1 : 0;
        out.values.push_back(static_cast<double>(v));
    }
    return out;
}

}  // namespace detail

/// Host memory: Eigen containers (1-D, 2-D) and std::vector (other ranks); the CPU backend.
template <class T>
class eigen_memory {
public:
    using real_type = T;
    using memory_space = distill::host_space;
    using matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;
    using label_vector = Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1>;

    distill::any_view<const T> real_input(const shape_t& shape, const std::vector<double>& values) {
        if (shape.size() == 2) {
            matrix& m = matrices_.emplace_back(shape[0], shape[1]);
            for (Eigen::Index i = 0; i < m.rows(); ++i)
                for (Eigen::Index j = 0; j < m.cols(); ++j) m(i, j) = static_cast<T>(values[i * m.cols() + j]);
            return distill::as_view(std::as_const(m));
        }
        if (shape.size() == 1) {
            vector& v = vectors_.emplace_back(shape[0]);
            for (Eigen::Index i = 0; i < v.size(); ++i) v(i) = static_cast<T>(values[i]);
            return distill::as_view(std::as_const(v));
        }
        std::vector<T>& raw = buffers_.emplace_back(values.begin(), values.end());
        return detail::dense_view<const T, memory_space>(raw.data(), shape);
    }

    distill::any_view<const std::int64_t> integer_input(const shape_t& shape, const std::vector<std::int64_t>& values) {
        if (shape.size() == 1) {
            label_vector& v = label_vectors_.emplace_back(shape[0]);
            for (Eigen::Index i = 0; i < v.size(); ++i) v(i) = values[i];
            return distill::as_view(std::as_const(v));
        }
        std::vector<std::int64_t>& raw = label_buffers_.emplace_back(values);
        return detail::dense_view<const std::int64_t, memory_space>(raw.data(), shape);
    }

    /// An output filled with the sentinel, and how to read it back.
    std::pair<distill::any_view<T>, std::function<output_values()>> output(const shape_t& shape) {
        if (shape.size() == 2) {
            matrix& m = matrices_.emplace_back(matrix::Constant(shape[0], shape[1], sentinel<T>()));
            return {distill::as_view(m), [&m] {
                        std::vector<T> raw(static_cast<std::size_t>(m.size()));
                        Eigen::Map<matrix>(raw.data(), m.rows(), m.cols()) = m;
                        return detail::to_output_values(std::move(raw));
                    }};
        }
        if (shape.size() == 1) {
            vector& v = vectors_.emplace_back(vector::Constant(shape[0], sentinel<T>()));
            return {distill::as_view(v), [&v] { return detail::to_output_values(std::vector<T>(v.begin(), v.end())); }};
        }
        // A scalar (rank 0) or any other rank: a plain strided view.
        std::vector<T>& raw = buffers_.emplace_back(static_cast<std::size_t>(detail::element_count(shape)), sentinel<T>());
        return {detail::dense_view<T, memory_space>(raw.data(), shape), [&raw] { return detail::to_output_values(raw); }};
    }

    distill::workspace workspace(std::size_t bytes) {
        if (bytes == 0) return {};
        auto& block = scratch_.emplace_back((bytes + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t));
        return {block.data(), bytes};
    }

private:
    // deques: growing them never moves the elements the views point into.
    std::deque<matrix> matrices_;
    std::deque<vector> vectors_;
    std::deque<label_vector> label_vectors_;
    std::deque<std::vector<T>> buffers_;
    std::deque<std::vector<std::int64_t>> label_buffers_;
    std::deque<std::vector<std::max_align_t>> scratch_;
};

#if DISTILL_CONFORMANCE_HAS_THRUST
/// Device memory: thrust::device_vector for every tensor; the Thrust backend.
template <class T>
class thrust_memory {
public:
    using real_type = T;
    using memory_space = distill::device_space;

    distill::any_view<const T, memory_space> real_input(const shape_t& shape, const std::vector<double>& values) {
        std::vector<T> host(values.size());
        for (std::size_t i = 0; i < values.size(); ++i) host[i] = static_cast<T>(values[i]);
        return view_of(std::as_const(reals_.emplace_back(host.begin(), host.end())), shape, false);
    }

    distill::any_view<const std::int64_t, memory_space> integer_input(const shape_t& shape,
                                                                     const std::vector<std::int64_t>& values) {
        return view_of(std::as_const(integers_.emplace_back(values.begin(), values.end())), shape, false);
    }

    std::pair<distill::any_view<T, memory_space>, std::function<output_values()>> output(const shape_t& shape) {
        thrust::device_vector<T>& v = reals_.emplace_back(static_cast<std::size_t>(detail::element_count(shape)), sentinel<T>());
        return {view_of(v, shape, true), [&v] {
                    const thrust::host_vector<T> host = v;
                    return detail::to_output_values(std::vector<T>(host.begin(), host.end()));
                }};
    }

    distill::workspace workspace(std::size_t bytes) {
        if (bytes == 0) return {};
        auto& block = scratch_.emplace_back(bytes);
        return {thrust::raw_pointer_cast(block.data()), bytes};
    }

private:
    /// 1-D and 2-D through distill's device_vector adapter, other ranks as plain views. An output
    /// scalar is a 1-element vector (what a user would pass); an input scalar keeps rank 0, so
    /// that the library sees the rank the case gives.
    template <class V>
    static auto view_of(V& v, const shape_t& shape, bool scalar_as_vector) {
        using view = decltype(distill::as_matrix(v, 0, 0));
        if (shape.size() == 1 || (shape.empty() && scalar_as_vector)) return view(distill::as_view(v));
        if (shape.size() == 2) return distill::as_matrix(v, shape[0], shape[1]);
        return detail::dense_view<typename view::element_type, memory_space>(thrust::raw_pointer_cast(v.data()), shape);
    }

    std::deque<thrust::device_vector<T>> reals_;
    std::deque<thrust::device_vector<std::int64_t>> integers_;
    std::deque<thrust::device_vector<unsigned char>> scratch_;
};
#endif

/// One library call being prepared from a case: its parameters, inputs and outputs.
/// Every parameter and input of the case must be read by the method runner (check_all_used),
/// so that a case the runner does not fully understand fails instead of passing by accident.
template <class Memory>
class call {
public:
    using real_type = typename Memory::real_type;
    using memory_space = typename Memory::memory_space;

    explicit call(const case_data& c) : case_(c) {}

    const case_data& data() const noexcept { return case_; }

    // ---------------------------------------------------------------- parameters
    std::optional<std::string> word_param(std::string_view name) {
        const std::string* v = use_param(name);
        if (!v) return std::nullopt;
        return *v;
    }

    /// A real number (strtod: also inf and nan).
    std::optional<double> real_param(std::string_view name) {
        const std::string* v = use_param(name);
        if (!v) return std::nullopt;
        errno = 0;
        char* end = nullptr;
        const double x = std::strtod(v->c_str(), &end);
        if (v->empty() || end != v->c_str() + v->size())
            throw runner_error("param " + std::string(name) + ": '" + *v + "' is not a number");
        return x;
    }

    /// An integer, written as one ("-100") or as an integral real ("-100.0").
    std::optional<std::int64_t> integer_param(std::string_view name) {
        const std::string* v = use_param(name);
        if (!v) return std::nullopt;
        errno = 0;
        char* end = nullptr;
        const long long i = std::strtoll(v->c_str(), &end, 10);
        if (!v->empty() && end == v->c_str() + v->size() && errno == 0) return static_cast<std::int64_t>(i);
        const double x = std::strtod(v->c_str(), &end);
        // The range test first: converting a double outside int64 is undefined (the fuzzer found it).
        if (v->empty() || end != v->c_str() + v->size() || !(x >= -9.2e18 && x <= 9.2e18) ||
            !(x == static_cast<double>(static_cast<std::int64_t>(x))))
            throw runner_error("param " + std::string(name) + ": '" + *v + "' is not an integer");
        return static_cast<std::int64_t>(x);
    }

    /// 0 or 1. The library takes a bool, so another value cannot reach it: a runner error.
    std::optional<bool> flag_param(std::string_view name) {
        const std::optional<std::int64_t> i = integer_param(name);
        if (!i) return std::nullopt;
        if (*i != 0 && *i != 1)
            throw runner_error("param " + std::string(name) + ": " + std::to_string(*i) +
                               " is not 0 or 1 (the library takes a bool)");
        return *i == 1;
    }

    // ---------------------------------------------------------------- inputs
    /// The shape of an input, or nullopt when the case leaves it out (does not count as reading it).
    std::optional<shape_t> input_shape(std::string_view name) const {
        const tensor_data* t = case_.input(name);
        if (!t) return std::nullopt;
        return t->shape;
    }

    /// A real input in the memory under test (unbound when the case leaves it out).
    distill::any_view<const real_type, memory_space> real_input(std::string_view name) {
        const tensor_data* t = use_input(name);
        if (!t) return {};
        if (t->is_integer) throw runner_error("input " + t->name + " holds integers but the method takes reals");
        return memory_.real_input(t->shape, t->real);
    }

    /// An integer input (labels, indices), as int64.
    distill::any_view<const std::int64_t, memory_space> integer_input(std::string_view name) {
        const tensor_data* t = use_input(name);
        if (!t) return {};
        if (!t->is_integer) throw runner_error("input " + t->name + " holds reals but the method takes integers");
        return memory_.integer_input(t->shape, t->integer);
    }

    // ---------------------------------------------------------------- outputs
    /// An output of the given logical shape, filled with the sentinel, read back after the call.
    distill::any_view<real_type, memory_space> output(std::string name, shape_t shape) {
        for (const auto& o : outputs_)
            if (o.name == name) throw runner_error("output " + name + " requested twice");
        auto [view, read] = memory_.output(shape);
        outputs_.push_back({std::move(name), std::move(shape), std::move(read)});
        return view;
    }

    /// grad.<input>, shaped like the input; unbound when the case has no such input.
    distill::any_view<real_type, memory_space> gradient_output(std::string_view input) {
        const std::optional<shape_t> shape = input_shape(input);
        if (!shape) return {};
        return output("grad." + std::string(input), *shape);
    }

    /// `loss`: one value per row of `rows_of` (reduction none) or a scalar.
    distill::any_view<real_type, memory_space> loss_output(bool per_row, std::string_view rows_of = "student") {
        if (!per_row) return output("loss", {});
        const std::optional<shape_t> shape = input_shape(rows_of);
        return output("loss", {shape && !shape->empty() ? (*shape)[0] : 1});
    }

    distill::workspace workspace(std::size_t bytes) { return memory_.workspace(bytes); }

    // ---------------------------------------------------------------- after the call
    void check_all_used() const {
        for (const auto& p : case_.params)
            if (!contains(used_params_, p.first))
                throw runner_error("param " + p.first + " is not understood by the " + case_.method + " runner");
        for (const auto& t : case_.inputs)
            if (!contains(used_inputs_, t.name))
                throw runner_error("input " + t.name + " is not understood by the " + case_.method + " runner");
    }

    std::vector<output_values> read_outputs() const {
        std::vector<output_values> out;
        for (const auto& o : outputs_) {
            output_values v = o.read();
            v.name = o.name;
            v.shape = o.shape;
            out.push_back(std::move(v));
        }
        return out;
    }

private:
    struct pending_output {
        std::string name;
        shape_t shape;
        std::function<output_values()> read;
    };

    static bool contains(const std::vector<std::string>& names, std::string_view name) {
        for (const auto& n : names)
            if (n == name) return true;
        return false;
    }

    const std::string* use_param(std::string_view name) {
        if (!contains(used_params_, name)) used_params_.emplace_back(name);
        return case_.param(name);
    }

    const tensor_data* use_input(std::string_view name) {
        if (contains(used_inputs_, name)) throw runner_error("input " + std::string(name) + " bound twice");
        used_inputs_.emplace_back(name);
        return case_.input(name);
    }

    const case_data& case_;
    Memory memory_;
    std::vector<std::string> used_params_, used_inputs_;
    std::vector<pending_output> outputs_;
};

}  // namespace distill_conformance
