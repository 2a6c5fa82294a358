// tests/unit/feature_methods_test.cpp: the feature and relation methods and the knowledge
// extractors on the CPU backend (Eigen GEMM). One translation unit for all of them (CI builds on
// 2 cores); each family's tests live in feature/<family>.hpp: finite differences of every
// gradient, the definition's edge cases (N = 1, zero and duplicate rows), error rules with
// nothing written, and the extractors' VJPs on their own.
#include "feature_support.hpp"

#include "feature/sp.hpp"
#include "feature/maps.hpp"
#include "feature/relations.hpp"
#include "feature/elementwise.hpp"
