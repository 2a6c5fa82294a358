// tests/unit/thrust_feature_test.cpp: parity of the Thrust backend (OMP device system) with the
// CPU backend for the feature and relation methods, and their errors through device memory.
// Each family's tests live in feature_parity/<family>.hpp.
#include "feature_parity/support.hpp"

#include "feature_parity/sp.hpp"
#include "feature_parity/maps.hpp"
#include "feature_parity/relations.hpp"
#include "feature_parity/elementwise.hpp"
#include "feature_parity/accumulate.hpp"
