// methods/at.hpp - conformance runner for `at` (METHODS-feature.md, section at). Param: p.
#pragma once

#include "feature.hpp"

namespace distill_conformance {

struct at_method {
    static constexpr const char* id = "at";
    template <class Call>
    static distill::status run(Call& call) {
        using T = typename Call::real_type;
        return run_feature(call, distill::basic_at_options<T>{}, [&](auto& opts) {
            read_real(call, "p", opts.p);
            return distill::status{};
        });
    }
};

}  // namespace distill_conformance
