// methods/nst.hpp - conformance runner for `nst` (METHODS-feature.md, section nst). No params.
#pragma once

#include "feature.hpp"

namespace distill_conformance {

struct nst_method {
    static constexpr const char* id = "nst";
    template <class Call>
    static distill::status run(Call& call) {
        using T = typename Call::real_type;
        return run_feature(call, distill::basic_nst_options<T>{}, [](auto&) { return distill::status{}; });
    }
};

}  // namespace distill_conformance
