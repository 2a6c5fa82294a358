// tests/unit/parity/kd_topk.hpp: included by thrust_response_test.cpp (being written).
#pragma once
