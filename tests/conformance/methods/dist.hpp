// methods/dist.hpp - conformance runner for `dist` (METHODS-response.md, section dist).
// Params: temperature, beta, gamma, reduction (only batchmean is valid). dist couples the rows,
// so it has its own check/run overloads instead of the row driver's: this runner mirrors
// run_response without ignore_index. Inputs student, teacher, and labels / weight when a case
// gives them (the library must reject them). Outputs: loss (a scalar), grad.student and
// grad.temperature, all requested so that an error case proves none is written.
#pragma once

#include <distill/distill.hpp>

#include "../harness.hpp"

namespace distill_conformance {

struct dist_method {
    static constexpr const char* id = "dist";

    template <class Call>
    static distill::status run(Call& call) {
        using T = typename Call::real_type;
        distill::basic_dist_options<T> opts;
        if (auto t = call.real_param("temperature")) opts.temperature = static_cast<T>(*t);
        if (auto b = call.real_param("beta")) opts.beta = static_cast<T>(*b);
        if (auto g = call.real_param("gamma")) opts.gamma = static_cast<T>(*g);
        // An unknown word is the library's value error (from parse_reduction); the call still runs
        // with an enumerator that does not exist, and must reject it too without writing.
        distill::status parsed;
        if (auto r = call.word_param("reduction")) {
            parsed = distill::parse_reduction(r->c_str(), opts.reduce);
            if (!parsed) opts.reduce = static_cast<distill::reduction>(0xff);
        }
        const distill::response_args<T, typename Call::memory_space, std::int64_t> args{
            call.real_input("student"), call.real_input("teacher"), call.integer_input("labels"), call.real_input("weight")};
        const distill::response_outputs<T, typename Call::memory_space> outs{
            call.loss_output(opts.reduce == distill::reduction::none), call.gradient_output("student"),
            call.output("grad.temperature", {})};
        const distill::status ran = distill::run(opts, args, outs, call.workspace(distill::workspace_bytes(opts, args, outs)));
        return parsed ? ran : parsed;
    }
};

}  // namespace distill_conformance
