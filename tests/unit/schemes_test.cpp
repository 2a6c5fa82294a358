// tests/unit/schemes_test.cpp: the teacher-student schemes and the process parts built on the
// losses (objective composition, learnable temperature, multi-teacher, mutual learning,
// self-distillation, teacher assistant). One translation unit; one header per scheme under
// schemes/, each with its finite-difference and composition checks.
#include "test_support.hpp"

#include <distill/distill.hpp>
#include <distill/schemes.hpp>

#include "schemes/objective.hpp"
#include "schemes/learnable_temperature.hpp"
#include "schemes/mutual.hpp"
#include "schemes/generations.hpp"
#include "schemes/multi_teacher.hpp"
#include "schemes/self_distillation.hpp"
