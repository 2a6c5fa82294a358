// methods/rkd.hpp - conformance runner for `rkd` (METHODS-feature.md, section rkd).
// Params: distance_weight, angle_weight (reals; the library validates them).
#pragma once

#include "feature.hpp"

namespace distill_conformance {

struct rkd_method {
    static constexpr const char* id = "rkd";
    template <class Call>
    static distill::status run(Call& call) {
        using T = typename Call::real_type;
        return run_feature(call, distill::basic_rkd_options<T>{}, [&](auto& opts) {
            read_real(call, "distance_weight", opts.distance_weight);
            read_real(call, "angle_weight", opts.angle_weight);
            return distill::status{};
        });
    }
};

}  // namespace distill_conformance
