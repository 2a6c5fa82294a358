// methods/ab.hpp - conformance runner for `ab` (METHODS-feature.md, section ab).
// Inputs student.i / teacher.i; param margin (real).
#pragma once

#include "feature.hpp"

namespace distill_conformance {

struct ab_method {
    static constexpr const char* id = "ab";
    template <class Call>
    static distill::status run(Call& call) {
        using T = typename Call::real_type;
        return run_feature(call, distill::basic_ab_options<T>{}, [&](auto& opts) {
            read_real(call, "margin", opts.margin);
            return distill::status{};
        });
    }
};

}  // namespace distill_conformance
