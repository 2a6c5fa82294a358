// methods/feature.hpp - what the runners of the feature and relation methods share.
//
// Binds the inputs of every form (student / teacher; student.i / teacher.i layers; alpha),
// requests every output the method has (loss, grad.student or grad.student.i, grad.alpha,
// knowledge.* when the arguments are valid, so their shapes are known) so that an error case
// proves none is written, and calls distill::run. The method's own parameters are read by
// `params(opts)`.
#pragma once

#include <string>
#include <vector>

#include <distill/eigen.hpp>

#include "../harness.hpp"

namespace distill_conformance {

template <class Options, class Call, class Params>
distill::status run_feature(Call& call, Options opts, Params&& params) {
    using T = typename Call::real_type;
    using Space = typename Call::memory_space;
    using method = distill::feature_method<Options>;
    distill::status parsed = params(opts);  // a word param that is not a known word: the library's value error

    distill::feature_args<T, Space> args;
    args.student = call.real_input("student");
    args.teacher = call.real_input("teacher");
    std::vector<distill::any_view<const T, Space>> students, teachers;
    if constexpr (method::form == distill::feature_form::layers) {
        for (int i = 0; call.input_shape("student." + std::to_string(i)); ++i)
            students.push_back(call.real_input("student." + std::to_string(i)));
        for (int i = 0; call.input_shape("teacher." + std::to_string(i)); ++i)
            teachers.push_back(call.real_input("teacher." + std::to_string(i)));
        args.student_layers = students;
        args.teacher_layers = teachers;
    }
    if constexpr (method::form == distill::feature_form::pair_with_alpha) args.alpha = call.real_input("alpha");

    distill::feature_outputs<T, Space> outs{call.loss_output(false)};
    std::vector<distill::any_view<T, Space>> grads, know_s, know_t;
    const bool valid = static_cast<bool>(distill::check_args(opts, args));
    if constexpr (method::form == distill::feature_form::layers) {
        for (std::size_t i = 0; i < students.size(); ++i)
            grads.push_back(call.gradient_output("student." + std::to_string(i)));
        outs.grad_student_layers = grads;
        if (valid) {
            for (int i = 0; i < method::knowledge_layers(opts, args); ++i) {
                const distill::knowledge_shape k = method::knowledge(opts, args, i);
                const shape_t shape(k.extents, k.extents + k.rank);
                know_s.push_back(call.output("knowledge.student." + std::to_string(i), shape));
                know_t.push_back(call.output("knowledge.teacher." + std::to_string(i), shape));
            }
            outs.knowledge_student_layers = know_s;
            outs.knowledge_teacher_layers = know_t;
        }
    } else {
        outs.grad_student = call.gradient_output("student");
        if (valid) {
            const distill::knowledge_shape k = method::knowledge(opts, args, 0);
            if (k.rank >= 0) {
                const shape_t shape(k.extents, k.extents + k.rank);
                outs.knowledge_student = call.output("knowledge.student", shape);
                outs.knowledge_teacher = call.output("knowledge.teacher", shape);
            }
        }
    }
    if constexpr (method::form == distill::feature_form::pair_with_alpha) outs.grad_alpha = call.gradient_output("alpha");

    const distill::status ran = distill::run(opts, args, outs, call.workspace(distill::workspace_bytes(opts, args, outs)));
    return parsed ? ran : parsed;
}

/// A real param into an options field (any finite or non-finite value: the library validates).
template <class Call, class Field>
void read_real(Call& call, const char* name, Field& field) {
    if (auto v = call.real_param(name)) field = static_cast<Field>(*v);
}

}  // namespace distill_conformance
