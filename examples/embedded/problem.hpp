// examples/embedded/problem.hpp: the embedded example's problem, shared by the Cortex-M4 firmware
// and the host program that computes its expected values.
//
// A batch of 4 samples over 10 classes: student and teacher logits and labels in static storage,
// and one training step's loss and gradient,
//     L = alpha KD_T(student, teacher) + (1 - alpha) CE(student, labels),
// with the KD gradient written first (grad_scale = alpha) and the cross-entropy's added to it
// (grad_scale = 1 - alpha, accumulate): caller-owned buffers, no workspace, no heap, no exceptions,
// float arithmetic only (basic_*_options<float>).
#pragma once

#include <distill/distill.hpp>

#include <cstdint>

namespace embedded {

inline constexpr int batch = 4;
inline constexpr int classes = 10;
inline constexpr float temperature = 4.0f;
inline constexpr float alpha = 0.9f;

/// Deterministic logits in [-4, 4) from an integer hash: exactly the same floats on every target.
constexpr float logit(std::uint32_t i, std::uint32_t seed) {
    std::uint32_t x = i * 2654435761u + seed;
    x ^= x >> 15;
    x *= 2246822519u;
    x ^= x >> 13;
    return static_cast<float>(static_cast<std::int32_t>(x % 8001u) - 4000) / 1000.0f;
}

struct inputs {
    float student[batch * classes];
    float teacher[batch * classes];
    std::int32_t labels[batch];
};

constexpr inputs make_inputs() {
    inputs in{};
    for (int i = 0; i < batch * classes; ++i) {
        in.student[i] = logit(static_cast<std::uint32_t>(i), 17u);
        in.teacher[i] = logit(static_cast<std::uint32_t>(i), 91u) * 1.5f;
    }
    for (int i = 0; i < batch; ++i) in.labels[i] = (3 * i + 1) % classes;
    return in;
}

/// What one step produces.
struct step_result {
    float loss = 0;                      ///< alpha KD + (1 - alpha) CE
    float kd = 0, ce = 0;                ///< the two terms, unweighted
    float grad[batch * classes] = {};    ///< d loss / d student
    float grad_temperature = 0;          ///< d loss / d T (through the KD term)
};

/// One KD + cross-entropy step on the caller's buffers; returns the first failing status.
inline distill::status kd_ce_step(const inputs& in, step_result& out) noexcept {
    const auto student = distill::make_view(in.student, batch, classes);
    const auto teacher = distill::make_view(in.teacher, batch, classes);
    const auto labels = distill::make_view(in.labels, batch);

    // KD: the gradient buffer is overwritten with alpha * dKD/ds, and alpha * dKD/dT is written.
    distill::response_outputs<float> kd_out{distill::make_view(&out.kd, 1), distill::make_view(out.grad, batch, classes),
                                            distill::make_view(&out.grad_temperature, 1)};
    kd_out.grad_scale = alpha;
    const distill::kd_float_options kd_opts{.temperature = temperature};
    if (distill::status s = distill::run(kd_opts, distill::make_response_args(student, teacher), kd_out); !s) return s;

    // Cross-entropy: (1 - alpha) * dCE/ds added to the same buffer.
    const distill::response_args<float, distill::host_space, std::int32_t> ce_args{student, {}, labels, {}};
    distill::response_outputs<float> ce_out{distill::make_view(&out.ce, 1), distill::make_view(out.grad, batch, classes)};
    ce_out.grad_scale = 1.0f - alpha;
    ce_out.accumulate = true;
    if (distill::status s = distill::run(distill::ce_float_options{}, ce_args, ce_out); !s) return s;

    out.loss = alpha * out.kd + (1.0f - alpha) * out.ce;
    return {};
}

}  // namespace embedded
