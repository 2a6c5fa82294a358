// Builds the core, the kd loss (CPU backend) and the Eigen adapter with -fno-exceptions
// -fno-rtti, as on a microcontroller: the run step writes into static buffers, and the
// convenience layer reports bad input through loss_result::status instead of throwing.
// Exit code 0 when every check holds; the first failing check is printed.
#include <distill/distill.hpp>
#if DISTILL_TEST_WITH_EIGEN
#include <Eigen/Core>
#include <distill/eigen.hpp>
#endif

#include <cmath>
#include <cstdio>

static_assert(DISTILL_HAS_EXCEPTIONS == 0, "this translation unit must be compiled with exceptions off");

namespace {

int failures = 0;

void check(bool ok, const char* what) {
    if (!ok) {
        std::printf("FAILED: %s\n", what);
        ++failures;
    }
}

bool near(double actual, double expected, double tolerance) { return std::fabs(actual - expected) <= tolerance; }

// One row: student {0, 1}, teacher {2, 0}, temperature 2 (float64 reference values).
constexpr double expected_loss = 1.0296126584275647;
constexpr double expected_grad[2] = {-0.707035819663719, 0.707035819663719};
constexpr double expected_grad_temperature = 0.08625894887125966;

// Static storage only: the run step must need neither heap nor exceptions.
const double student[2] = {0.0, 1.0};
const double teacher[2] = {2.0, 0.0};
double loss[1];
double grad_student[2];
double grad_temperature[1];

void run_step_on_static_buffers() {
    const distill::kd_options opts{.temperature = 2.0};
    const auto args = distill::make_response_args(distill::make_view(student, 1, 2), distill::make_view(teacher, 1, 2));
    const distill::response_outputs<double> outs{distill::make_view(loss, 1), distill::make_view(grad_student, 1, 2),
                                                 distill::make_view(grad_temperature, 1)};
    check(distill::workspace_bytes(opts, args, outs) == 0, "kd needs no workspace on the CPU backend");
    const distill::status s = distill::run(opts, args, outs);
    if (!s) std::printf("run (kd): %s\n", s.message());
    check(s.ok(), "run (kd) succeeds");
    check(near(loss[0], expected_loss, 1e-12), "run (kd) loss");
    check(near(grad_student[0], expected_grad[0], 1e-12) && near(grad_student[1], expected_grad[1], 1e-12),
          "run (kd) grad_student");
    check(near(grad_temperature[0], expected_grad_temperature, 1e-12), "run (kd) grad_temperature");

    // Bad temperature: a value error, and the outputs stay untouched.
    loss[0] = -1.0;
    const distill::status bad = distill::run(distill::kd_options{.temperature = 0.0}, args, outs);
    check(!bad.ok() && bad.kind() == distill::error_kind::value, "run (kd) rejects temperature 0 as a value error");
    check(loss[0] == -1.0, "run (kd) writes nothing on error");
}

void convenience_returns_status() {
    const auto ok = distill::kd(distill::make_view(student, 1, 2), distill::make_view(teacher, 1, 2),
                                distill::kd_options{.temperature = 2.0});
    check(ok.status.ok(), "distill::kd succeeds");
    check(near(ok.loss, expected_loss, 1e-12), "distill::kd loss");

    const auto bad = distill::kd(distill::make_view(student, 1, 2), distill::make_view(teacher, 1, 2),
                                 distill::kd_options{.temperature = -1.0});
    check(!bad.status.ok(), "distill::kd returns a non-ok status for temperature -1");
    check(bad.status.kind() == distill::error_kind::value, "the status is a value error");
}

#if DISTILL_TEST_WITH_EIGEN
void eigen_adapter() {
    Eigen::Matrix<float, 1, 2> eigen_student{0.0f, 1.0f};
    Eigen::Matrix<float, 1, 2> eigen_teacher{2.0f, 0.0f};
    // A 1 x 2 Eigen matrix is a vector at compile time, hence rank 1: view it as a matrix.
    const auto ok = distill::kd(distill::as_matrix(eigen_student, 1, 2), distill::as_matrix(eigen_teacher, 1, 2),
                                distill::kd_options{.temperature = 2.0});
    check(ok.status.ok(), "distill::kd on Eigen succeeds");
    check(near(ok.loss, expected_loss, 1e-5), "distill::kd on Eigen loss");

    Eigen::MatrixXd student2(2, 3), teacher2(2, 3);
    student2 << 0, 1, 2, 3, 4, 5;
    teacher2 << 1, 1, 1, 0, 0, 0;
    const auto bad = distill::kd(student2, teacher2, distill::kd_options{.temperature = 0.0});
    check(!bad.status.ok(), "distill::kd on Eigen returns a non-ok status for temperature 0");
    const auto mismatch = distill::kd(student2, Eigen::MatrixXd(teacher2.transpose()));
    check(mismatch.status.kind() == distill::error_kind::shape, "distill::kd on Eigen reports a shape mismatch");
}
#endif

}  // namespace

int main() {
    run_step_on_static_buffers();
    convenience_returns_status();
#if DISTILL_TEST_WITH_EIGEN
    eigen_adapter();
#endif
    if (failures == 0) std::printf("noexcept: all checks passed\n");
    return failures == 0 ? 0 : 1;
}
