// methods/sp.hpp - conformance runner for `sp` (METHODS-feature.md, section sp). No params.
#pragma once

#include "feature.hpp"

namespace distill_conformance {

struct sp_method {
    static constexpr const char* id = "sp";
    template <class Call>
    static distill::status run(Call& call) {
        using T = typename Call::real_type;
        return run_feature(call, distill::basic_sp_options<T>{}, [](auto&) { return distill::status{}; });
    }
};

}  // namespace distill_conformance
