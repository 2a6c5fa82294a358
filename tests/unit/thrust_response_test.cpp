// tests/unit/thrust_response_test.cpp: parity of the Thrust backend (OMP device system) with the
// CPU backend for the response methods other than kd, and their errors through device memory.
// Each family's tests live in parity/<family>.hpp.
#include "thrust_support.hpp"

#include "parity/divergences.hpp"
#include "parity/labels.hpp"
#include "parity/dist.hpp"
#include "parity/kd_topk.hpp"
#include "parity/schemes.hpp"
