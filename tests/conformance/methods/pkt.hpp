// methods/pkt.hpp - conformance runner for `pkt` (METHODS-feature.md, section pkt). Param: eps.
#pragma once

#include "feature.hpp"

namespace distill_conformance {

struct pkt_method {
    static constexpr const char* id = "pkt";
    template <class Call>
    static distill::status run(Call& call) {
        using T = typename Call::real_type;
        return run_feature(call, distill::basic_pkt_options<T>{}, [&](auto& opts) {
            read_real(call, "eps", opts.eps);
            return distill::status{};
        });
    }
};

}  // namespace distill_conformance
