// A consumer of distill::thrust_omp: kd with the Thrust backend, OpenMP as the device system.
#include <distill/thrust.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
    const thrust::device_vector<double> student(std::vector<double>{0.0, 1.0});
    const thrust::device_vector<double> teacher(std::vector<double>{2.0, 0.0});
    const auto result = distill::kd(distill::as_matrix(student, 1, 2), distill::as_matrix(teacher, 1, 2),
                                    distill::kd_options{.temperature = 2.0});
    const double expected = 1.0296126584275647;  // float64 reference
    std::printf("kd loss %.17g (expected %.17g)\n", result.loss, expected);
    return std::fabs(result.loss - expected) <= 1e-12 ? 0 : 1;
}
