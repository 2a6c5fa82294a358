// tests/unit/response/kd_topk.hpp: included by response_methods_test.cpp (being written).
#pragma once
