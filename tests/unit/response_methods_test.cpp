// tests/unit/response_methods_test.cpp: the response methods other than kd on the CPU backend.
// One translation unit for all of them (CI builds on 2 cores); each family's tests live in
// response/<family>.hpp: finite differences, properties, error rules, nothing written on error.
#include "test_support.hpp"

#include "response/divergences.hpp"
#include "response/labels.hpp"
#include "response/dist.hpp"
#include "response/kd_topk.hpp"
