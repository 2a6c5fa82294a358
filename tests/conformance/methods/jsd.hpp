// methods/jsd.hpp - conformance runner for `jsd` (METHODS-response.md).
// Params: temperature, reduction, ignore_index, beta.
#pragma once

#include "response.hpp"

namespace distill_conformance {

struct jsd_method {
    static constexpr const char* id = "jsd";

    template <class Call>
    static distill::status run(Call& call) {
        using real = typename Call::real_type;
        return run_response(call, distill::basic_jsd_options<real>{}, [&](auto& opts) {
            if (auto b = call.real_param("beta")) opts.beta = static_cast<real>(*b);
        });
    }
};

}  // namespace distill_conformance
