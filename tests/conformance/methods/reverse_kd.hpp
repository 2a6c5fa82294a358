// methods/reverse_kd.hpp - conformance runner for `reverse_kd` (METHODS-response.md).
// Params: temperature, reduction, ignore_index.
#pragma once

#include "response.hpp"

namespace distill_conformance {

struct reverse_kd_method {
    static constexpr const char* id = "reverse_kd";

    template <class Call>
    static distill::status run(Call& call) {
        return run_response(call, distill::basic_reverse_kd_options<typename Call::real_type>{}, [](auto&) {});
    }
};

}  // namespace distill_conformance
