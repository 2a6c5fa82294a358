// distill/eigen.hpp: opt-in Eigen adapters (CMake target distill::eigen).
#pragma once

#include "adapters/eigen.hpp"
#include "distill.hpp"
