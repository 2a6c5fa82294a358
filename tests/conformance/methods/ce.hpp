// methods/ce.hpp - conformance runner for `ce` (METHODS-response.md, section ce).
// Inputs: student, labels, optional weight (no teacher). Params: label_smoothing, reduction, ignore_index.
#pragma once

#include "response.hpp"

namespace distill_conformance {

struct ce_method {
    static constexpr const char* id = "ce";

    template <class Call>
    static distill::status run(Call& call) {
        using options = distill::basic_ce_options<typename Call::real_type>;
        return run_response(call, options{}, [&](options& opts) {
            if (auto eps = call.real_param("label_smoothing"))
                opts.label_smoothing = static_cast<typename Call::real_type>(*eps);
        });
    }
};

}  // namespace distill_conformance
