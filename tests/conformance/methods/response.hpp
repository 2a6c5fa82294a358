// methods/response.hpp - what the runners of the row-wise response methods share.
//
// Reads the parameters every such method has (temperature when the method has one,
// reduction, ignore_index), lets the method read its own (`extra`), builds the
// inputs (student, teacher, labels, weight) and the outputs (loss, grad.student and,
// for methods with a temperature, grad.temperature: all requested, so that an error
// case proves none is written), and calls distill::run.
#pragma once

#include <distill/distill.hpp>

#include "../harness.hpp"

namespace distill_conformance {

template <class Options, class Call, class Extra>
distill::status run_response(Call& call, Options opts, Extra&& extra) {
    using T = typename Call::real_type;
    using method = distill::response_method<Options>;
    if constexpr (method::has_temperature) {
        if (auto t = call.real_param("temperature")) opts.temperature = static_cast<decltype(opts.temperature)>(*t);
    }
    if (auto i = call.integer_param("ignore_index")) opts.ignore_index = *i;
    extra(opts);
    // An unknown word is the library's value error (from parse_reduction); the call still
    // runs, with an enumerator that does not exist, and must reject it too without writing.
    distill::status parsed;
    if (auto r = call.word_param("reduction")) {
        parsed = distill::parse_reduction(r->c_str(), opts.reduce);
        if (!parsed) opts.reduce = static_cast<distill::reduction>(0xff);
    }

    const distill::response_args<T, typename Call::memory_space, std::int64_t> args{
        call.real_input("student"), method::needs_teacher ? call.real_input("teacher") : decltype(args.teacher){},
        call.integer_input("labels"), call.real_input("weight")};
    distill::response_outputs<T, typename Call::memory_space> outs{
        call.loss_output(opts.reduce == distill::reduction::none), call.gradient_output("student"), {}};
    if constexpr (method::has_temperature) outs.grad_temperature = call.output("grad.temperature", {});
    const distill::status ran = distill::run(opts, args, outs, call.workspace(distill::workspace_bytes(opts, args, outs)));
    return parsed ? ran : parsed;
}

}  // namespace distill_conformance
