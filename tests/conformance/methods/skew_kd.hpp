// methods/skew_kd.hpp - conformance runner for `skew_kd` (METHODS-response.md).
// Params: temperature, reduction, ignore_index, alpha.
#pragma once

#include "response.hpp"

namespace distill_conformance {

struct skew_kd_method {
    static constexpr const char* id = "skew_kd";

    template <class Call>
    static distill::status run(Call& call) {
        using real = typename Call::real_type;
        return run_response(call, distill::basic_skew_kd_options<real>{}, [&](auto& opts) {
            if (auto a = call.real_param("alpha")) opts.alpha = static_cast<real>(*a);
        });
    }
};

}  // namespace distill_conformance
