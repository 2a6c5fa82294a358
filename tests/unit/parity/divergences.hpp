// tests/unit/parity/divergences.hpp: included by thrust_response_test.cpp (being written).
#pragma once
