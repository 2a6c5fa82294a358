// distill/thrust.hpp: opt-in Thrust backend (CUDA, OMP or CPP device system) and adapters.
// Link the CMake target distill::thrust (or define THRUST_DEVICE_SYSTEM yourself).
#pragma once

#include "backends/thrust.hpp"
#include "distill.hpp"
