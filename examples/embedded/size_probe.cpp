// examples/embedded/size_probe.cpp: one run step of one method on static buffers, for measuring
// its code size on the Cortex-M4 (arm-none-eabi-size; docs/embedded.md) and checking that it runs
// there. Built once per method with -DDISTILL_SIZE_CASE_<method>=1; the baseline case calls no loss.
#include "problem.hpp"
#include "semihosting.h"

#if defined(DISTILL_SIZE_CASE_dml) || defined(DISTILL_SIZE_CASE_multi_teacher) || defined(DISTILL_SIZE_CASE_self_distillation)
#include <distill/schemes.hpp>
#endif

#include <cstddef>
#include <cstdint>

namespace {

using embedded::batch;
using embedded::classes;

embedded::inputs in = embedded::make_inputs();
float loss[4];
float grad[2][batch * classes];
float grad_temperature;
[[maybe_unused]] float ensemble[batch * 2];
[[maybe_unused]] std::int32_t topk_ids[batch * 3];
[[maybe_unused]] float topk_logprob[batch * 3];

}  // namespace

int main() {
    const auto student = distill::make_view(in.student, batch, classes);
    const auto teacher = distill::make_view(in.teacher, batch, classes);
    const auto labels = distill::make_view(in.labels, batch);
    const auto args = distill::make_response_args(student, teacher, labels);
    const distill::response_outputs<float> outs{distill::make_view(loss, 1), distill::make_view(grad[0], batch, classes)};
    distill::response_outputs<float> outs_t = outs;
    outs_t.grad_temperature = distill::make_view(&grad_temperature, 1);
    distill::status s;
    (void)args;
    (void)outs_t;
#if defined(DISTILL_SIZE_CASE_baseline)
    s = distill::status{};
#elif defined(DISTILL_SIZE_CASE_kd_ce)
    embedded::step_result r;
    s = embedded::kd_ce_step(in, r);
    loss[0] = r.loss;
#elif defined(DISTILL_SIZE_CASE_kd)
    s = distill::run(distill::kd_float_options{.temperature = 4.0f}, args, outs_t);
#elif defined(DISTILL_SIZE_CASE_kd_standardize)
    s = distill::run(distill::kd_float_options{.temperature = 2.0f, .standardize = true}, args, outs_t);
#elif defined(DISTILL_SIZE_CASE_reverse_kd)
    s = distill::run(distill::reverse_kd_float_options{.temperature = 2.0f}, args, outs_t);
#elif defined(DISTILL_SIZE_CASE_jsd)
    s = distill::run(distill::jsd_float_options{}, args, outs);
#elif defined(DISTILL_SIZE_CASE_skew_kd)
    s = distill::run(distill::skew_kd_float_options{}, args, outs);
#elif defined(DISTILL_SIZE_CASE_skew_reverse_kd)
    s = distill::run(distill::skew_reverse_kd_float_options{}, args, outs);
#elif defined(DISTILL_SIZE_CASE_tvd)
    s = distill::run(distill::tvd_float_options{}, args, outs);
#elif defined(DISTILL_SIZE_CASE_soft_ce)
    s = distill::run(distill::soft_ce_float_options{}, args, outs);
#elif defined(DISTILL_SIZE_CASE_ce)
    const distill::response_args<float, distill::host_space, std::int32_t> ce_args{student, {}, labels, {}};
    s = distill::run(distill::ce_float_options{.label_smoothing = 0.1f}, ce_args, outs);
#elif defined(DISTILL_SIZE_CASE_logit_mse)
    s = distill::run(distill::logit_mse_float_options{}, args, outs);
#elif defined(DISTILL_SIZE_CASE_dkd)
    s = distill::run(distill::dkd_float_options{}, args, outs);
#elif defined(DISTILL_SIZE_CASE_dist)
    // dist needs (8 N + 6 C) floats of scratch: static storage, sized by the query.
    alignas(8) static unsigned char scratch[512];
    const auto dist_args = distill::make_response_args(student, teacher);
    const std::size_t bytes = distill::workspace_bytes(distill::dist_float_options{}, dist_args, outs);
    s = bytes > sizeof scratch ? distill::status::error(distill::errc::workspace_too_small, "workspace")
                               : distill::run(distill::dist_float_options{}, dist_args, outs, distill::workspace{scratch, bytes});
#elif defined(DISTILL_SIZE_CASE_kd_topk)
    for (int i = 0; i < batch; ++i)
        for (int j = 0; j < 3; ++j) {
            topk_ids[i * 3 + j] = (i + 3 * j) % classes;
            topk_logprob[i * 3 + j] = -1.0f - static_cast<float>(j);
        }
    s = distill::run(distill::kd_topk_float_options{},
                     distill::make_topk_args(student, distill::make_view(topk_ids, batch, 3), distill::make_view(topk_logprob, batch, 3)),
                     outs);
#elif defined(DISTILL_SIZE_CASE_dml)
    const distill::any_view<const float> peers[2] = {student, teacher};
    const distill::any_view<float> grads[2] = {distill::make_view(grad[0], batch, classes), distill::make_view(grad[1], batch, classes)};
    s = distill::run(distill::dml_float_options{.temperature = 2.0f},
                     distill::dml_args<float, distill::host_space, std::int32_t>{peers, labels},
                     distill::dml_outputs<float>{distill::make_view(loss, 2), {}, grads});
#elif defined(DISTILL_SIZE_CASE_multi_teacher)
    const distill::any_view<const float> teachers[2] = {teacher, student};
    s = distill::run(distill::multi_teacher_float_options{.temperature = 2.0f},
                     distill::multi_teacher_args<float, distill::host_space, std::int32_t>{student, teachers, labels, {}},
                     distill::multi_teacher_outputs<float>{distill::make_view(loss, 1), distill::make_view(grad[0], batch, classes),
                                                           distill::make_view(ensemble, batch, 2)});
#elif defined(DISTILL_SIZE_CASE_self_distillation)
    const distill::any_view<const float> exits[2] = {student, teacher};
    const distill::any_view<float> grads[2] = {distill::make_view(grad[0], batch, classes), distill::make_view(grad[1], batch, classes)};
    distill::self_distillation_outputs<float> o{distill::make_view(loss, 1)};
    o.grad_logits = grads;
    s = distill::run(distill::self_distillation_float_options{},
                     distill::self_distillation_args<float, distill::host_space, std::int32_t>{exits, labels, {}}, o);
#else
#error "define one DISTILL_SIZE_CASE_<method>"
#endif
    semihosting_write(s ? "ok\n" : s.message());
    return s ? 0 : 1;
}
