// Every response method with the Thrust CUDA backend, built by nvcc: the build checks that each
// row kernel compiles as device code for sm_90. On a machine with a GPU it also compares each
// method's loss and gradient on the GPU with the CPU backend (the same kernels, run on the host
// by this translation unit); without a GPU it reports "skipped" (exit 77).
#include <distill/thrust.hpp>

#include <thrust/device_vector.h>
#include <thrust/host_vector.h>

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

namespace {

constexpr int skipped = 77;  // ctest SKIP_RETURN_CODE
constexpr long rows = 5, cols = 37, top_k = 4;

struct inputs {
    std::vector<float> student, teacher, top_logprob;
    std::vector<std::int64_t> labels, top_index;
    inputs() : student(rows * cols), teacher(rows * cols), labels(rows), top_index(rows * top_k), top_logprob(rows * top_k) {
        unsigned state = 12345u;
        auto next = [&] { return (state = state * 1664525u + 1013904223u) / 4294967296.0f * 6.0f - 3.0f; };
        for (auto& x : student) x = next();
        for (auto& x : teacher) x = next();
        for (long i = 0; i < rows; ++i) {
            labels[i] = i == 2 ? -100 : (i * 7) % cols;
            for (long j = 0; j < top_k; ++j) {
                top_index[i * top_k + j] = (i + 5 * j) % cols;
                top_logprob[i * top_k + j] = -1.0f - 0.5f * static_cast<float>(j);
            }
        }
    }
};

int failures = 0;

template <class HostResult, class DeviceResult>
void compare(const char* method, const HostResult& host, const DeviceResult& device) {
    const thrust::host_vector<float> grad(device.grad_student.storage_object());
    double worst = std::fabs(static_cast<double>(host.loss) - device.loss);
    for (long e = 0; e < rows * cols; ++e)
        worst = std::fmax(worst, std::fabs(static_cast<double>(host.grad_student.data()[e]) - grad[e]));
    const bool ok = host.status.ok() && device.status.ok() && worst <= 1e-4;
    std::printf("%-16s loss %.6f  max |gpu - cpu| %.2e  %s\n", method, static_cast<double>(host.loss), worst,
                ok ? "ok" : "FAILED");
    failures += !ok;
}

}  // namespace

int main() {
    int devices = 0;
    const bool has_gpu = cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0;

    const inputs in;
    const auto s = distill::make_view(in.student.data(), rows, cols);
    const auto t = distill::make_view(in.teacher.data(), rows, cols);
    const auto y = distill::make_view(in.labels.data(), rows);
    const auto ids = distill::make_view(in.top_index.data(), rows, top_k);
    const auto lp = distill::make_view(in.top_logprob.data(), rows, top_k);
    if (!has_gpu) {
        std::printf("no CUDA device: every method compiled for the GPU; values not checked\n");
        return skipped;
    }
    const thrust::device_vector<float> ds(in.student.begin(), in.student.end()), dt(in.teacher.begin(), in.teacher.end()),
        dlp(in.top_logprob.begin(), in.top_logprob.end());
    const thrust::device_vector<std::int64_t> dy(in.labels.begin(), in.labels.end()),
        dids(in.top_index.begin(), in.top_index.end());
    const auto gs = distill::as_matrix(ds, rows, cols), gt = distill::as_matrix(dt, rows, cols);
    const auto gids = distill::as_matrix(dids, rows, top_k);
    const auto glp = distill::as_matrix(dlp, rows, top_k);

    // Methods with (student, teacher, labels, options).
    auto pair = [&](const char* name, const auto& loss, const auto& options) {
        compare(name, loss(s, t, y, options), loss(gs, gt, dy, options));
    };
    pair("kd", distill::kd, distill::kd_options{.temperature = 2.0});
    pair("kd standardize", distill::kd, distill::kd_options{.temperature = 2.0, .standardize = true});
    pair("reverse_kd", distill::reverse_kd, distill::reverse_kd_options{.temperature = 2.0});
    pair("jsd", distill::jsd, distill::jsd_options{.temperature = 2.0, .beta = 0.3});
    pair("skew_kd", distill::skew_kd, distill::skew_kd_options{.alpha = 0.1});
    pair("skew_reverse_kd", distill::skew_reverse_kd, distill::skew_reverse_kd_options{.alpha = 0.1});
    pair("tvd", distill::tvd, distill::tvd_options{.temperature = 2.0});
    pair("soft_ce", distill::soft_ce, distill::soft_ce_options{.temperature = 2.0});
    pair("logit_mse", distill::logit_mse, distill::logit_mse_options{});
    pair("dkd", distill::dkd, distill::dkd_options{});
    compare("ce", distill::ce(s, y, distill::ce_options{.label_smoothing = 0.1}),
            distill::ce(gs, dy, distill::ce_options{.label_smoothing = 0.1}));
    compare("dist", distill::dist(s, t, distill::dist_options{.temperature = 2.0}),
            distill::dist(gs, gt, distill::dist_options{.temperature = 2.0}));
    compare("kd_topk", distill::kd_topk(s, ids, lp, y, distill::kd_topk_options{.temperature = 2.0, .renormalize = true}),
            distill::kd_topk(gs, gids, glp, dy, distill::kd_topk_options{.temperature = 2.0, .renormalize = true}));
    return failures == 0 ? 0 : 1;
}
