// distill/feature.hpp: the feature- and relation-based losses and the knowledge extractors.
//
// Needs Eigen (the CPU path's matrix products): link distill::eigen, or put Eigen's include
// directory on the include path. <distill/eigen.hpp> includes this header.
#pragma once

#include "distill.hpp"
#include "knowledge/primitives.hpp"
#include "knowledge/elementwise.hpp"
#include "knowledge/similarity.hpp"
#include "losses/feature/common.hpp"
#include "losses/feature/driver.hpp"
#include "losses/feature/sp.hpp"
#include "losses/feature/hint.hpp"
#include "losses/feature/ab.hpp"
#include "losses/feature/vid.hpp"
