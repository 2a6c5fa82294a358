// methods/tvd.hpp - conformance runner for `tvd` (METHODS-response.md).
// Params: temperature, reduction, ignore_index.
#pragma once

#include "response.hpp"

namespace distill_conformance {

struct tvd_method {
    static constexpr const char* id = "tvd";

    template <class Call>
    static distill::status run(Call& call) {
        return run_response(call, distill::basic_tvd_options<typename Call::real_type>{}, [](auto&) {});
    }
};

}  // namespace distill_conformance
