// tests/unit/thrust_support.hpp: what the Thrust (OMP device system) tests share: copies of
// device results to the host, and a host_problem copied into device memory.
#pragma once

#include "test_support.hpp"

#include <distill/thrust.hpp>

#include <cstdint>
#include <vector>

namespace distill_test {

template <class T>
std::vector<T> host_copy(const thrust::device_vector<T>& d) {
    const thrust::host_vector<T> h = d;
    return std::vector<T>(h.begin(), h.end());
}
template <class T>
std::vector<T> host_copy(const distill::tensor<T, distill::device_space>& t) {
    return host_copy(t.storage_object());
}
template <class T>
std::vector<T> host_copy(const distill::tensor<T>& t) {
    return std::vector<T>(t.data(), t.data() + t.size());
}

/// A host problem copied to device memory.
template <class T>
struct device_problem {
    const host_problem<T>& host;
    thrust::device_vector<T> student, teacher, weight;
    thrust::device_vector<std::int64_t> labels;

    explicit device_problem(const host_problem<T>& h)
        : host(h), student(h.student), teacher(h.teacher), weight(h.weight), labels(h.labels) {}

    distill::response_args<T, distill::device_space> args() const {
        distill::response_args<T, distill::device_space> a{distill::as_matrix(student, host.n, host.c),
                                                           distill::as_matrix(teacher, host.n, host.c)};
        if (host.use_labels) a.labels = distill::as_view(labels);
        if (host.use_weight) a.weight = distill::as_view(weight);
        return a;
    }
};

}  // namespace distill_test
