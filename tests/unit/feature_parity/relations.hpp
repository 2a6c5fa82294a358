// tests/unit/feature_parity/relations.hpp: rkd, pkt, cc and cc_repdistiller on the Thrust backend
// (OMP device system) against the CPU backend, and an error through device memory for each.
#pragma once

#include "support.hpp"

namespace relations_parity {

inline feature_parity::dense duplicate_rows(feature_parity::dense d, distill::index_t from, distill::index_t to) {
    for (distill::index_t j = 0; j < d.row_size(); ++j) d.at(to, j) = d.at(from, j);
    return d;
}

}  // namespace relations_parity

TEST_CASE_TEMPLATE("rkd parity: Thrust (OMP) matches the CPU backend", T, float, double) {
    using namespace feature_parity;
    const distill::basic_rkd_options<T> defaults, distance_only{T(25), T(0)}, angle_only{T(0), T(50)};
    check_parity<T>(defaults, {dense::random({12, 20}, 1), dense::random({12, 9}, 2)});
    check_parity<T>(defaults, {dense::random({6, 3, 2, 2}, 3), dense::random({6, 10}, 4)});
    check_parity<T>(distance_only, {dense::random({9, 5}, 5), dense::random({9, 5}, 6)});
    check_parity<T>(angle_only, {dense::random({7, 4}, 7), dense::random({7, 30}, 8)});
    check_parity<T>(defaults, {relations_parity::duplicate_rows(dense::random({5, 4}, 9), 1, 3), dense::random({5, 6}, 10)});
    check_device_error<T>(defaults, {dense::random({1, 3}, 3), dense::random({1, 3}, 4)}, distill::errc::shape_mismatch);
    check_device_error<T>(distill::basic_rkd_options<T>{T(-1), T(1)}, {dense::random({3, 3}, 3), dense::random({3, 3}, 4)},
                          distill::errc::invalid_parameter);
}

TEST_CASE_TEMPLATE("pkt parity: Thrust (OMP) matches the CPU backend", T, float, double) {
    using namespace feature_parity;
    const distill::basic_pkt_options<T> defaults, wide{T(0.5)};
    check_parity<T>(defaults, {dense::random({16, 40}, 11), dense::random({16, 24}, 12)});
    check_parity<T>(wide, {dense::random({7, 3, 4, 4}, 13), dense::random({7, 10}, 14)});
    check_device_error<T>(distill::basic_pkt_options<T>{T(0)}, {dense::random({7, 3}, 3), dense::random({7, 3}, 4)},
                          distill::errc::invalid_parameter);
}

TEST_CASE_TEMPLATE("cc parity: Thrust (OMP) matches the CPU backend", T, float, double) {
    using namespace feature_parity;
    const distill::basic_cc_options<T> defaults, third{T(0.2), T(3)};
    check_parity<T>(defaults, {dense::random({16, 40}, 21), dense::random({16, 24}, 22)});
    check_parity<T>(third, {dense::random({7, 3, 4, 4}, 23), dense::random({7, 10}, 24)});
    check_device_error<T>(distill::basic_cc_options<T>{T(0.4), T(1.5)}, {dense::random({7, 3}, 3), dense::random({7, 3}, 4)},
                          distill::errc::invalid_parameter);
}

TEST_CASE_TEMPLATE("cc_repdistiller parity: Thrust (OMP) matches the CPU backend", T, float, double) {
    using namespace feature_parity;
    const distill::basic_cc_repdistiller_options<T> opts;
    check_parity<T>(opts, {dense::random({16, 40}, 31), dense::random({16, 40}, 32)});
    check_parity<T>(opts, {dense::random({2, 3}, 33), dense::random({2, 3}, 34)});
    check_device_error<T>(opts, {dense::random({3, 4}, 3), dense::random({3, 5}, 4)}, distill::errc::shape_mismatch);
}
