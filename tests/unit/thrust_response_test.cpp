// tests/unit/thrust_response_test.cpp: parity of the Thrust backend (OMP device system) with the
// CPU backend for the response methods other than kd, their errors through device memory, the
// grad_scale / accumulate outputs (kd included) and the dml and multi_teacher schemes.
// Each family's tests live in parity/<family>.hpp.
#include "lockstep_backend.hpp"  // first: see there
#include "thrust_support.hpp"

#include "parity/divergences.hpp"
#include "parity/labels.hpp"
#include "parity/dist.hpp"
#include "parity/kd_topk.hpp"
#include "parity/schemes.hpp"
