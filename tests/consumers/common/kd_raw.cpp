// A consumer of distill::distill: kd on raw buffers through make_view.
#include <distill/distill.hpp>

#include <cmath>
#include <cstdio>

int main() {
    const double student[] = {0.0, 1.0};  // one row, two classes
    const double teacher[] = {2.0, 0.0};
    const auto result = distill::kd(distill::make_view(student, 1, 2), distill::make_view(teacher, 1, 2),
                                    distill::kd_options{.temperature = 2.0});
    const double expected = 1.0296126584275647;  // float64 reference
    std::printf("kd loss %.17g (expected %.17g)\n", result.loss, expected);
    return std::fabs(result.loss - expected) <= 1e-12 ? 0 : 1;
}
