// methods/logit_mse.hpp - conformance runner for `logit_mse` (METHODS-response.md, section logit_mse).
// Params: reduction, ignore_index (no temperature).
#pragma once

#include "response.hpp"

namespace distill_conformance {

struct logit_mse_method {
    static constexpr const char* id = "logit_mse";

    template <class Call>
    static distill::status run(Call& call) {
        return run_response(call, distill::basic_logit_mse_options<typename Call::real_type>{}, [](auto&) {});
    }
};

}  // namespace distill_conformance
