// tests/float_only/main.cpp: runs the float-only path (float_path.cpp) and compares every loss and
// gradient with the same run steps in double (this file is compiled normally).
#include "cases.hpp"
#include "float_path.hpp"
#if DISTILL_FLOAT_ONLY_FEATURES
#include "feature_cases.hpp"
namespace float_only {
void run_float_features(const float* student, const float* teacher, feature_results<float>& r) noexcept;
}
#endif

#include <cmath>
#include <cstdio>
#include <cstring>

namespace {
/// Compares one method's float loss and gradient with the double run: prints a line, returns
/// whether both are within `tolerance` (relative; the gradient relative to its largest entry).
bool matches_double(const char* name, bool ok, float loss_f, double loss_d, const float* grad_f, const double* grad_d,
                    int count, double tolerance) {
    double scale = 0, worst = 0;
    for (int i = 0; i < count; ++i) scale = std::fmax(scale, std::fabs(grad_d[i]));
    for (int i = 0; i < count; ++i) worst = std::fmax(worst, std::fabs(static_cast<double>(grad_f[i]) - grad_d[i]));
    const double loss_error = std::fabs(static_cast<double>(loss_f) - loss_d) / std::fmax(std::fabs(loss_d), 1e-6);
    const double grad_error = worst / std::fmax(scale, 1e-30);
    const bool pass = ok && loss_error <= tolerance && grad_error <= tolerance;
    std::printf("%-4s %-18s loss %.7g (double %.7g, rel. error %.1e), gradient rel. error %.1e\n", pass ? "ok" : "FAIL", name,
                static_cast<double>(loss_f), loss_d, loss_error, grad_error);
    return pass;
}
}  // namespace

int main() {
    using namespace float_only;
    float sf[n * c], tf[n * c];
    double sd[n * c], td[n * c];
    std::int32_t labels[n];
    for (int i = 0; i < n * c; ++i) {
        // exactly representable in float, so both precisions see the same inputs
        sf[i] = static_cast<float>((i * 37) % 23 - 11) / 4.0f;
        tf[i] = static_cast<float>((i * 53) % 19 - 9) / 2.0f;
        sd[i] = sf[i];
        td[i] = tf[i];
    }
    for (int i = 0; i < n; ++i) labels[i] = (i * 3 + 1) % c;

    static results<float> rf;
    static results<double> rd;
    run_float(sf, tf, labels, rf);
    run_cases<double>(sd, td, labels, rd);

    int failures = 0;
    for (int m = 0; m < method_count; ++m)
        failures += !matches_double(method_names[m], rf.ok[m] && rd.ok[m], rf.loss[m], rd.loss[m], rf.grad[m], rd.grad[m], n * c,
                                    1e-5);
    const double dt_error = std::fabs(static_cast<double>(rf.grad_temperature) - rd.grad_temperature) /
                            std::fmax(std::fabs(rd.grad_temperature), 1e-6);
    if (!(dt_error <= 1e-5)) {
        ++failures;
        std::printf("FAIL kd d/dT %.7g vs %.7g\n", static_cast<double>(rf.grad_temperature), rd.grad_temperature);
    }

#if DISTILL_FLOAT_ONLY_FEATURES
    {
        float fs[feature_n * feature_d], ft[feature_n * feature_d];
        double ds[feature_n * feature_d], dt[feature_n * feature_d];
        for (int i = 0; i < feature_n * feature_d; ++i) {
            fs[i] = static_cast<float>((i * 29) % 17 - 8) / 8.0f;
            ft[i] = static_cast<float>((i * 13) % 11 - 5) / 4.0f;
            ds[i] = fs[i];
            dt[i] = ft[i];
        }
        static feature_results<float> ff;
        static feature_results<double> fd;
        run_float_features(fs, ft, ff);
        run_feature_cases<double>(ds, dt, fd);
        // float against double through products and normalisations: 1e-4 relative
        for (int m = 0; m < feature_count; ++m)
            failures += !matches_double(feature_names[m], ff.ok[m] && fd.ok[m], ff.loss[m], fd.loss[m], ff.grad[m], fd.grad[m],
                                        feature_n * feature_d, 1e-4);
    }
#endif

    char message[192];
    const bool value_error = float_error_message(message, sizeof message);
    const char* expected = "kd: temperature = -1.50000 must be finite and > 0";
    const bool message_ok = value_error && std::strcmp(message, expected) == 0;
    failures += !message_ok;
    std::printf("%-4s float status message: \"%s\"\n", message_ok ? "ok" : "FAIL", message);
    std::printf("%s\n", failures == 0 ? "float-only path: all checks passed" : "float-only path: FAILED");
    return failures == 0 ? 0 : 1;
}
