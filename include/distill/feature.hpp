// distill/feature.hpp: the feature- and relation-based losses and the knowledge extractors.
//
// Needs Eigen (the CPU path's matrix products): link distill::eigen, or put Eigen's include
// directory on the include path. <distill/eigen.hpp> includes this header.
#pragma once

#include "distill.hpp"
#include "knowledge/primitives.hpp"
#include "knowledge/fsp.hpp"
#include "knowledge/elementwise.hpp"
#include "knowledge/similarity.hpp"
#include "knowledge/spatial.hpp"
#include "knowledge/distance.hpp"
#include "knowledge/kernels.hpp"
#include "losses/feature/common.hpp"
#include "losses/feature/driver.hpp"
#include "losses/feature/at.hpp"
#include "losses/feature/factor.hpp"
#include "losses/feature/fsp.hpp"
#include "losses/feature/nst.hpp"
#include "losses/feature/sp.hpp"
#include "losses/feature/rkd.hpp"
#include "losses/feature/pkt.hpp"
#include "losses/feature/cc.hpp"
#include "losses/feature/cc_repdistiller.hpp"
#include "losses/feature/hint.hpp"
#include "losses/feature/ab.hpp"
#include "losses/feature/vid.hpp"
