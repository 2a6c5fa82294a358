// methods/dkd.hpp - conformance runner for `dkd` (METHODS-response.md, section dkd).
// Inputs: student, teacher, labels, optional weight. Params: alpha, beta, temperature, reduction, ignore_index.
#pragma once

#include "response.hpp"

namespace distill_conformance {

struct dkd_method {
    static constexpr const char* id = "dkd";

    template <class Call>
    static distill::status run(Call& call) {
        using options = distill::basic_dkd_options<typename Call::real_type>;
        using real = typename Call::real_type;
        return run_response(call, options{}, [&](options& opts) {
            if (auto a = call.real_param("alpha")) opts.alpha = static_cast<real>(*a);
            if (auto b = call.real_param("beta")) opts.beta = static_cast<real>(*b);
        });
    }
};

}  // namespace distill_conformance
