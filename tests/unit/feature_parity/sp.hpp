// tests/unit/feature_parity/sp.hpp: sp on the Thrust backend against the CPU backend.
#pragma once

#include "support.hpp"

TEST_CASE_TEMPLATE("sp parity: Thrust (OMP) matches the CPU backend", T, float, double) {
    using namespace feature_parity;
    const distill::basic_sp_options<T> opts;
    check_parity<T>(opts, {dense::random({16, 40}, 1), dense::random({16, 24}, 2)});
    check_parity<T>(opts, {dense::random({7, 3, 4, 4}, 3), dense::random({7, 10}, 4)});
    check_device_error<T>(opts, {dense::random({7, 3}, 3), dense::random({6, 3}, 4)}, distill::errc::shape_mismatch);
}
