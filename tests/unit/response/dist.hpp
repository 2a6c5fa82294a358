// tests/unit/response/dist.hpp: included by response_methods_test.cpp (being written).
#pragma once
