// methods/cc_repdistiller.hpp - conformance runner for `cc_repdistiller` (METHODS-feature.md,
// section cc_repdistiller). No params.
#pragma once

#include "feature.hpp"

namespace distill_conformance {

struct cc_repdistiller_method {
    static constexpr const char* id = "cc_repdistiller";
    template <class Call>
    static distill::status run(Call& call) {
        using T = typename Call::real_type;
        return run_feature(call, distill::basic_cc_repdistiller_options<T>{}, [](auto&) { return distill::status{}; });
    }
};

}  // namespace distill_conformance
