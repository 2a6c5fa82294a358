// distill/distill.hpp: the core umbrella header (no third-party dependency).
//
// Views and the tensor customisation point, status and reductions, the CPU
// backend, and every loss. Backends and adapters for third-party types are
// opt-in: <distill/eigen.hpp>, <distill/xtensor.hpp>, <distill/thrust.hpp>.
#pragma once

#include "core/backend.hpp"
#include "core/config.hpp"
#include "core/dense_tensor.hpp"
#include "core/finite.hpp"
#include "core/reduction.hpp"
#include "core/status.hpp"
#include "core/tensor.hpp"
#include "core/view.hpp"
#include "process/schedule.hpp"
#include "process/learnable_temperature.hpp"
#include "losses/response/driver.hpp"
#include "losses/response/kd.hpp"
#include "losses/response/kd_topk.hpp"
#include "losses/response/reverse_kd.hpp"
#include "losses/response/logit_mse.hpp"
#include "losses/response/ce.hpp"
#include "losses/response/dkd.hpp"
#include "losses/response/dist.hpp"
#include "losses/response/jsd.hpp"
#include "losses/response/skew_kd.hpp"
#include "losses/response/tvd.hpp"
#include "losses/response/soft_ce.hpp"
#include "process/objective.hpp"
