// tests/unit/thrust_support.hpp: what the Thrust (OMP device system) tests share: copies of
// device results to the host, and a host_problem copied into device memory.
#pragma once

#include "test_support.hpp"

#include <distill/thrust.hpp>

#include <cmath>
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

/// A result of the GPU's block-per-row path (lockstep_backend.hpp: one-pass statistics, lane sums
/// in another order, nothing stored between passes) against the CPU backend's: the loss, the row
/// losses and d/dT within rtol of their size (d/dT absolute per row, as it sums terms of both
/// signs), and each gradient element within rtol of the largest (a_c - ps_c A cancels in small
/// elements, whose relative error is then larger whatever the arithmetic).
template <class T, class Result, class Expected>
void check_lockstep_parity(const Result& lockstep, const Expected& cpu, distill::index_t n) {
    const double rtol = std::is_same_v<T, float> ? 1e-4 : 1e-11;
    REQUIRE(lockstep.status.ok());
    REQUIRE(cpu.status.ok());
    DISTILL_CHECK_CLOSE(lockstep.loss, cpu.loss, rtol, rtol);
    DISTILL_CHECK_CLOSE(lockstep.grad_temperature, cpu.grad_temperature, rtol, rtol * static_cast<double>(n));
    const std::vector<T> expected = host_copy(cpu.grad_student);
    double largest = 0;
    for (const T g : expected) largest = std::fmax(largest, std::fabs(static_cast<double>(g)));
    check_all_close(host_copy(lockstep.grad_student), expected, rtol, rtol * largest);
    check_all_close(host_copy(lockstep.row_losses), host_copy(cpu.row_losses), rtol, rtol);
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
