// A consumer of distill::eigen: kd on Eigen matrices.
#include <distill/eigen.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstdio>

int main() {
    Eigen::MatrixXd student(2, 2), teacher(2, 2);  // two identical rows
    student << 0.0, 1.0, 0.0, 1.0;
    teacher << 2.0, 0.0, 2.0, 0.0;
    const auto result = distill::kd(student, teacher, distill::kd_options{.temperature = 2.0});
    const double expected = 1.0296126584275647;  // batchmean of two equal rows = one row's loss
    std::printf("kd loss %.17g (expected %.17g)\n", result.loss, expected);
    return std::fabs(result.loss - expected) <= 1e-12 ? 0 : 1;
}
