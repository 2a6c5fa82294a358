// methods/soft_ce.hpp - conformance runner for `soft_ce` (METHODS-response.md).
// Params: temperature, reduction, ignore_index.
#pragma once

#include "response.hpp"

namespace distill_conformance {

struct soft_ce_method {
    static constexpr const char* id = "soft_ce";

    template <class Call>
    static distill::status run(Call& call) {
        return run_response(call, distill::basic_soft_ce_options<typename Call::real_type>{}, [](auto&) {});
    }
};

}  // namespace distill_conformance
