// methods/factor.hpp - conformance runner for `factor` (METHODS-feature.md, section factor).
// Params: map (a word), p1, p2.
#pragma once

#include "feature.hpp"

namespace distill_conformance {

struct factor_method {
    static constexpr const char* id = "factor";
    template <class Call>
    static distill::status run(Call& call) {
        using T = typename Call::real_type;
        return run_feature(call, distill::basic_factor_options<T>{}, [&](auto& opts) {
            read_real(call, "p1", opts.p1);
            read_real(call, "p2", opts.p2);
            // An unknown word is the library's value error (from parse_factor_map); the call still
            // runs, with an enumerator that does not exist, and must reject it too without writing.
            distill::status parsed;
            if (auto m = call.word_param("map")) {
                parsed = distill::parse_factor_map(m->c_str(), opts.map);
                if (!parsed) opts.map = static_cast<distill::factor_map>(0xff);
            }
            return parsed;
        });
    }
};

}  // namespace distill_conformance
