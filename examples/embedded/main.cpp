// examples/embedded/main.cpp: distill on a Cortex-M4 (QEMU mps2-an386).
//
// One KD + cross-entropy training step (problem.hpp) on static buffers, checked against the values
// the host computed in float (expected.hpp, generated at build time): the loss, both terms, d/dT
// and every gradient entry must agree to 1e-5 relative (the gradient relative to its largest
// entry). Then a call with a bad temperature shows how errors arrive without exceptions: as a
// status with a message, with nothing written. Output goes to the host through semihosting; the
// exit code (0: everything matched) becomes QEMU's.
#include "problem.hpp"
#include "semihosting.h"

#include "expected.hpp"

#include <cstdint>

namespace {

// Text output without printf (which would bring in newlib's stdio, and double arithmetic for %f).
struct line {
    char text[256] = {};
    int length = 0;
    line& put(const char* s) {
        while (*s && length < 255) text[length++] = *s++;
        return *this;
    }
    line& put(std::int64_t v) {
        char digits[24];
        int n = 0;
        const bool negative = v < 0;
        std::uint64_t u = negative ? 0 - static_cast<std::uint64_t>(v) : static_cast<std::uint64_t>(v);
        do digits[n++] = static_cast<char>('0' + u % 10); while ((u /= 10) != 0);
        if (negative) put("-");
        while (n > 0 && length < 255) text[length++] = digits[--n];
        return *this;
    }
    /// A float as an integer multiple of 1e-6 (enough to read the values; the check is on the
    /// floats). Converted through int32 (|v| < 2147 here): float -> int64 is a libgcc call that
    /// computes in double on a single-precision FPU.
    line& micro(float v) {
        float scaled = v * 1e6f;
        scaled = scaled > 2.1e9f ? 2.1e9f : (scaled < -2.1e9f ? -2.1e9f : scaled);
        return put(static_cast<std::int64_t>(static_cast<std::int32_t>(scaled < 0.0f ? scaled - 0.5f : scaled + 0.5f))).put("e-6");
    }
    void write() {
        text[length < 255 ? length : 255] = '\0';
        semihosting_write(text);
        semihosting_write("\n");
    }
};

float magnitude(float x) { return x < 0.0f ? -x : x; }

/// |got - want| <= tolerance * scale (scale: |want| for a value, the largest |entry| for a gradient).
bool close(float got, float want, float scale, float tolerance = 1e-5f) {
    return magnitude(got - want) <= tolerance * scale;
}

// The inputs live in RAM (.data), as they would after a forward pass.
embedded::inputs batch_inputs = embedded::make_inputs();
embedded::step_result result;

}  // namespace

int main() {
    int failures = 0;
    const distill::status s = embedded::kd_ce_step(batch_inputs, result);
    if (!s) {
        line{}.put("step failed: ").put(s.message()).write();
        return 1;
    }
    const auto check = [&](const char* name, float got, float want) {
        const bool ok = close(got, want, magnitude(want));
        failures += !ok;
        line{}.put(ok ? "ok   " : "FAIL ").put(name).put(" = ").micro(got).put(" (host ").micro(want).put(")").write();
    };
    check("loss", result.loss, embedded::expected::loss);
    check("kd", result.kd, embedded::expected::kd);
    check("ce", result.ce, embedded::expected::ce);
    check("d loss / d T", result.grad_temperature, embedded::expected::grad_temperature);

    float scale = 0.0f, worst = 0.0f;
    for (float g : embedded::expected::grad) scale = magnitude(g) > scale ? magnitude(g) : scale;
    int mismatches = 0;
    for (int i = 0; i < embedded::batch * embedded::classes; ++i) {
        const float diff = magnitude(result.grad[i] - embedded::expected::grad[i]);
        worst = diff > worst ? diff : worst;
        mismatches += !close(result.grad[i], embedded::expected::grad[i], scale);
    }
    failures += mismatches != 0;
    line{}.put(mismatches == 0 ? "ok   " : "FAIL ").put("gradient: ").put(static_cast<std::int64_t>(mismatches))
        .put(" of 40 entries differ; largest difference ").micro(worst).put(", largest entry ").micro(scale).write();

    // Without exceptions, bad input comes back as a status naming the argument; nothing is written.
    float loss = -1.0f;
    const distill::status bad = distill::run(
        distill::kd_float_options{.temperature = 0.0f},
        distill::make_response_args(distill::make_view(batch_inputs.student, embedded::batch, embedded::classes),
                                    distill::make_view(batch_inputs.teacher, embedded::batch, embedded::classes)),
        distill::response_outputs<float>{distill::make_view(&loss, 1)});
    const bool reported = !bad && bad.kind() == distill::error_kind::value && loss == -1.0f;
    failures += !reported;
    line{}.put(reported ? "ok   " : "FAIL ").put("error status: ").put(bad.message()).write();

    line{}.put(failures == 0 ? "distill on Cortex-M4: all checks passed" : "distill on Cortex-M4: FAILED").write();
    return failures == 0 ? 0 : 1;
}
