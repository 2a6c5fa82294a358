// methods/kd.hpp - conformance runner for `kd` (METHODS-response.md, section kd).
// Params: temperature, reduction, ignore_index, standardize.
#pragma once

#include "response.hpp"

namespace distill_conformance {

struct kd_method {
    static constexpr const char* id = "kd";

    template <class Call>
    static distill::status run(Call& call) {
        return run_response(call, distill::basic_kd_options<typename Call::real_type>{}, [&](auto& opts) {
            if (auto s = call.flag_param("standardize")) opts.standardize = *s;
        });
    }
};

}  // namespace distill_conformance
