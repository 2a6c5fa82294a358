// methods/fsp.hpp - conformance runner for `fsp` (METHODS-feature.md, section fsp). Layers
// student.i / teacher.i; no params.
#pragma once

#include "feature.hpp"

namespace distill_conformance {

struct fsp_method {
    static constexpr const char* id = "fsp";
    template <class Call>
    static distill::status run(Call& call) {
        using T = typename Call::real_type;
        return run_feature(call, distill::basic_fsp_options<T>{}, [](auto&) { return distill::status{}; });
    }
};

}  // namespace distill_conformance
