// tests/unit/parity/labels.hpp: included by thrust_response_test.cpp (being written).
#pragma once
