// methods/cc.hpp - conformance runner for `cc` (METHODS-feature.md, section cc).
// Params: gamma, p_order. p_order is read as a real (cases give 1.5, nan, 3.0) and the library
// reports a non-integer, non-finite or negative order.
#pragma once

#include "feature.hpp"

namespace distill_conformance {

struct cc_method {
    static constexpr const char* id = "cc";
    template <class Call>
    static distill::status run(Call& call) {
        using T = typename Call::real_type;
        return run_feature(call, distill::basic_cc_options<T>{}, [&](auto& opts) {
            read_real(call, "gamma", opts.gamma);
            read_real(call, "p_order", opts.p_order);
            return distill::status{};
        });
    }
};

}  // namespace distill_conformance
