// distill/xtensor.hpp: opt-in xtensor adapters (CMake target distill::xtensor).
#pragma once

#include "adapters/xtensor.hpp"
#include "distill.hpp"
