// distill/eigen.hpp: opt-in Eigen adapters and everything that needs Eigen (CMake target
// distill::eigen): the feature- and relation-based losses, whose CPU path uses Eigen's GEMM.
#pragma once

#include "adapters/eigen.hpp"
#include "distill.hpp"
#include "feature.hpp"
