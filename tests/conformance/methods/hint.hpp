// methods/hint.hpp - conformance runner for `hint` (METHODS-feature.md, section hint).
// Params: distance (word: mse | l1 | smooth_l1 | cosine), beta (real).
#pragma once

#include "feature.hpp"

namespace distill_conformance {

struct hint_method {
    static constexpr const char* id = "hint";
    template <class Call>
    static distill::status run(Call& call) {
        using T = typename Call::real_type;
        return run_feature(call, distill::basic_hint_options<T>{}, [&](auto& opts) {
            read_real(call, "beta", opts.beta);
            // An unknown word is the library's value error; the call still runs with an
            // enumerator that does not exist, which the check step must reject too.
            distill::status parsed;
            if (auto d = call.word_param("distance")) {
                parsed = distill::parse_hint_distance(d->c_str(), opts.distance);
                if (!parsed) opts.distance = static_cast<distill::hint_distance>(0xff);
            }
            return parsed;
        });
    }
};

}  // namespace distill_conformance
