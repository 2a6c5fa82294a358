// tests/float_only/float_path_feature.cpp: the feature and relation methods in float, compiled with
// -Wdouble-promotion -Werror=double-promotion (Eigen's own headers are system headers).
#include "feature_cases.hpp"

namespace float_only {
void run_float_features(const float* student, const float* teacher, feature_results<float>& r) noexcept {
    run_feature_cases<float>(student, teacher, r);
}
}  // namespace float_only
