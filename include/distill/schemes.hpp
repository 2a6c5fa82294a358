// distill/schemes.hpp: the teacher-student schemes (docs/schemes.md), built on the losses of
// <distill/distill.hpp>: multi-teacher ensembles, online / mutual learning, self-distillation,
// the teacher-assistant chain. Needs nothing beyond the core.
#pragma once

#include "distill.hpp"
#include "schemes/mutual.hpp"
#include "schemes/generations.hpp"
#include "schemes/multi_teacher.hpp"
#include "schemes/self_distillation.hpp"
