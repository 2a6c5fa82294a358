// tests/unit/feature_parity/maps.hpp: at, factor, nst and fsp on the Thrust backend against the
// CPU backend (pooling on either side, both nst forms, layers at several resolutions).
#pragma once

#include "support.hpp"

TEST_CASE_TEMPLATE("at parity: Thrust (OMP) matches the CPU backend", T, float, double) {
    using namespace feature_parity;
    check_parity<T>(distill::basic_at_options<T>{}, {dense::random({6, 4, 8, 8}, 1), dense::random({6, 8, 4, 4}, 2)});
    check_parity<T>(distill::basic_at_options<T>{T(3.5)}, {dense::random({3, 2, 5, 7}, 3), dense::random({3, 3, 7, 9}, 4)});
    check_parity<T>(distill::basic_at_options<T>{T(1)}, {dense::random({2, 3, 4, 4}, 5), dense::random({2, 2, 4, 4}, 6)});
    check_device_error<T>(distill::basic_at_options<T>{}, {dense::random({2, 2, 2, 5}, 1), dense::random({2, 2, 3, 4}, 2)},
                          distill::errc::shape_mismatch);
}

TEST_CASE_TEMPLATE("factor parity: Thrust (OMP) matches the CPU backend", T, float, double) {
    using namespace feature_parity;
    using distill::factor_map;
    using O = distill::basic_factor_options<T>;
    check_parity<T>(O{}, {dense::random({4, 3, 6, 6}, 1), dense::random({4, 5, 3, 3}, 2)});
    check_parity<T>(O{factor_map::attention, T(3), T(1.5)}, {dense::random({3, 2, 4, 5}, 3), dense::random({3, 2, 8, 5}, 4)});
    check_parity<T>(O{factor_map::flat, T(2), T(2)}, {dense::random({3, 4, 7, 6}, 5), dense::random({3, 4, 3, 4}, 6)});
    check_device_error<T>(O{factor_map::flat}, {dense::random({2, 2, 3, 3}, 1), dense::random({2, 3, 3, 3}, 2)},
                          distill::errc::shape_mismatch);
}

TEST_CASE_TEMPLATE("nst parity: Thrust (OMP) matches the CPU backend (both Gram forms)", T, float, double) {
    using namespace feature_parity;
    const distill::basic_nst_options<T> opts;
    check_parity<T>(opts, {dense::random({4, 6, 2, 2}, 1), dense::random({4, 8, 4, 4}, 2)});  // K x K form
    check_parity<T>(opts, {dense::random({3, 2, 8, 8}, 3), dense::random({3, 3, 4, 4}, 4)});  // channel Grams
    check_device_error<T>(opts, {dense::random({2, 2, 3, 3}, 1), dense::random({2, 2, 9}, 2)}, distill::errc::bad_rank);
}

TEST_CASE_TEMPLATE("fsp parity: Thrust (OMP) matches the CPU backend", T, float, double) {
    using namespace feature_parity;
    const distill::basic_fsp_options<T> opts;
    check_parity<T>(opts, feature_inputs::layers({dense::random({3, 4, 8, 8}, 1), dense::random({3, 6, 4, 4}, 2),
                                                  dense::random({3, 5, 4, 4}, 3)},
                                                 {dense::random({3, 4, 4, 4}, 4), dense::random({3, 6, 4, 4}, 5),
                                                  dense::random({3, 5, 2, 3}, 6)}));
    check_parity<T>(opts, feature_inputs::layers({dense::random({2, 2, 5, 7}, 7), dense::random({2, 3, 2, 3}, 8)},
                                                 {dense::random({2, 2, 3, 3}, 9), dense::random({2, 3, 3, 3}, 10)}));
    check_device_error<T>(opts, feature_inputs::layers({dense::random({2, 2, 3, 3}, 1), dense::random({2, 3, 3, 3}, 2)},
                                                       {dense::random({2, 2, 3, 3}, 3), dense::random({2, 4, 3, 3}, 4)}),
                          distill::errc::shape_mismatch);
}
