// methods/kd_topk.hpp - conformance runner for `kd_topk` (METHODS-response.md, section kd_topk).
// Params: temperature, reduction, ignore_index, renormalize. Inputs: student, teacher.index
// (integers), teacher.logprob, labels, weight. Outputs: loss, grad.student, grad.temperature
// (all requested, so that an error case proves none is written).
#pragma once

#include <distill/distill.hpp>

#include "../harness.hpp"

namespace distill_conformance {

struct kd_topk_method {
    static constexpr const char* id = "kd_topk";

    template <class Call>
    static distill::status run(Call& call) {
        using T = typename Call::real_type;
        distill::basic_kd_topk_options<T> opts;
        if (auto t = call.real_param("temperature")) opts.temperature = static_cast<T>(*t);
        if (auto i = call.integer_param("ignore_index")) opts.ignore_index = *i;
        if (auto r = call.flag_param("renormalize")) opts.renormalize = *r;
        // An unknown word is the library's value error (from parse_reduction); the call still runs
        // with an enumerator that does not exist, and must reject it too without writing.
        distill::status parsed;
        if (auto r = call.word_param("reduction")) {
            parsed = distill::parse_reduction(r->c_str(), opts.reduce);
            if (!parsed) opts.reduce = static_cast<distill::reduction>(0xff);
        }

        const distill::topk_args<T, typename Call::memory_space, std::int64_t, std::int64_t> args{
            call.real_input("student"), call.integer_input("teacher.index"), call.real_input("teacher.logprob"),
            call.integer_input("labels"), call.real_input("weight")};
        const distill::response_outputs<T, typename Call::memory_space> outs{
            call.loss_output(opts.reduce == distill::reduction::none), call.gradient_output("student"),
            call.output("grad.temperature", {})};
        const distill::status ran = distill::run(opts, args, outs, call.workspace(distill::workspace_bytes(opts, args, outs)));
        return parsed ? ran : parsed;
    }
};

}  // namespace distill_conformance
