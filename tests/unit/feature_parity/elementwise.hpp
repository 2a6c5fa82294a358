// tests/unit/feature_parity/elementwise.hpp: hint, ab and vid on the Thrust backend against the
// CPU backend (every distance of hint; several layers of ab; vid's per-channel reduction).
#pragma once

#include "support.hpp"

TEST_CASE_TEMPLATE("hint parity: Thrust (OMP) matches the CPU backend", T, float, double) {
    using namespace feature_parity;
    for (auto distance : {distill::hint_distance::mse, distill::hint_distance::l1, distill::hint_distance::smooth_l1,
                          distill::hint_distance::cosine}) {
        CAPTURE(distill::to_string(distance));
        const distill::basic_hint_options<T> opts{distance, T(0.5)};
        check_parity<T>(opts, {dense::random({16, 40}, 1), dense::random({16, 40}, 2)});
        check_parity<T>(opts, {dense::random({7, 3, 5, 4}, 3), dense::random({7, 3, 5, 4}, 4)});
        check_parity<T>(opts, {dense::random({1, 9}, 5), dense::random({1, 9}, 6)});
    }
    // a zero student row under cosine: the clamped branch on the device too
    dense zero = dense::random({4, 6}, 7);
    for (index_t j = 0; j < 6; ++j) zero.at(2, j) = 0;
    check_parity<T>(distill::basic_hint_options<T>{distill::hint_distance::cosine, T(1)}, {zero, dense::random({4, 6}, 8)});
    check_device_error<T>(distill::basic_hint_options<T>{distill::hint_distance::mse, T(-1)},
                          {dense::random({4, 6}, 7), dense::random({4, 6}, 8)}, distill::errc::invalid_parameter);
    check_device_error<T>(distill::basic_hint_options<T>{}, {dense::random({4, 6}, 7), dense::random({4, 5}, 8)},
                          distill::errc::shape_mismatch);
}

TEST_CASE_TEMPLATE("ab parity: Thrust (OMP) matches the CPU backend", T, float, double) {
    using namespace feature_parity;
    const distill::basic_ab_options<T> opts{T(0.75)};
    check_parity<T>(opts, feature_inputs::layers({dense::random({16, 40}, 1)}, {dense::random({16, 40}, 2)}));
    check_parity<T>(opts, feature_inputs::layers(
                              {dense::random({6, 4, 5, 5}, 3), dense::random({6, 8, 3}, 4), dense::random({6, 30}, 5)},
                              {dense::random({6, 4, 5, 5}, 6), dense::random({6, 8, 3}, 7), dense::random({6, 30}, 8)}));
    check_device_error<T>(opts, feature_inputs::layers({dense::random({4, 6}, 1), dense::random({3, 6}, 2)},
                                                       {dense::random({4, 6}, 3), dense::random({3, 6}, 4)}),
                          distill::errc::shape_mismatch);
}

TEST_CASE_TEMPLATE("vid parity: Thrust (OMP) matches the CPU backend", T, float, double) {
    using namespace feature_parity;
    const distill::basic_vid_options<T> opts{T(1e-3)};
    check_parity<T>(opts, {dense::random({16, 40}, 1), dense::random({16, 40}, 2), dense::random({40}, 3)});
    check_parity<T>(opts, {dense::random({5, 6, 4, 3}, 4), dense::random({5, 6, 4, 3}, 5), dense::random({6}, 6)});
    check_parity<T>(opts, {dense::random({1, 3, 7}, 7), dense::random({1, 3, 7}, 8), dense({3}, {-30.0, 30.0, 0.0})});
    check_device_error<T>(opts, {dense::random({4, 6}, 1), dense::random({4, 6}, 2), dense::random({5}, 3)},
                          distill::errc::shape_mismatch);
}
