// methods/vid.hpp - conformance runner for `vid` (METHODS-feature.md, section vid).
// Inputs student, teacher, alpha; param eps (real).
#pragma once

#include "feature.hpp"

namespace distill_conformance {

struct vid_method {
    static constexpr const char* id = "vid";
    template <class Call>
    static distill::status run(Call& call) {
        using T = typename Call::real_type;
        return run_feature(call, distill::basic_vid_options<T>{}, [&](auto& opts) {
            read_real(call, "eps", opts.eps);
            return distill::status{};
        });
    }
};

}  // namespace distill_conformance
