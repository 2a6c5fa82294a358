// tests/unit/response/divergences.hpp: included by response_methods_test.cpp (being written).
#pragma once
