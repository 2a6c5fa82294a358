// The feature and relation methods with the Thrust CUDA backend, built by nvcc: the build checks
// that every kernel (and the generic GEMM) compiles as device code for sm_90, with Eigen in the
// same translation unit for the host path. On a machine with a GPU it also compares each method's
// loss and gradient on the GPU with the CPU backend; without a GPU it reports "skipped" (exit 77).
#include <distill/eigen.hpp>
#include <distill/thrust.hpp>

#include <thrust/device_vector.h>
#include <thrust/host_vector.h>

#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <vector>

namespace {

constexpr int skipped = 77;  // ctest SKIP_RETURN_CODE
int failures = 0;

std::vector<float> noise(std::size_t n, unsigned seed) {
    std::vector<float> v(n);
    unsigned state = seed;
    for (auto& x : v) x = (state = state * 1664525u + 1013904223u) / 4294967296.0f * 4.0f - 2.0f;
    return v;
}

/// A dense tensor on the host and its copy on the device, with row-major strides.
struct pair_tensor {
    std::vector<distill::index_t> shape, strides;
    std::vector<float> host;
    thrust::device_vector<float> device;
    /// The device copy is made only where a GPU exists (every CUDA call fails elsewhere).
    pair_tensor(std::vector<distill::index_t> s, unsigned seed, bool has_gpu) : shape(std::move(s)), strides(shape.size()) {
        distill::index_t stride = 1;
        for (std::size_t r = shape.size(); r-- > 0;) {
            strides[r] = stride;
            stride *= shape[r];
        }
        host = noise(static_cast<std::size_t>(stride), seed);
        if (has_gpu) device = host;
    }
    distill::any_view<const float> host_view() const {
        return {host.data(), static_cast<int>(shape.size()), shape.data(), strides.data()};
    }
    distill::any_view<const float, distill::device_space> device_view() const {
        return {thrust::raw_pointer_cast(device.data()), static_cast<int>(shape.size()), shape.data(), strides.data()};
    }
};

/// One method on both backends through the convenience objects; compares loss and gradient.
template <class Fn, class Options>
void compare(const char* method, const Fn& fn, const Options& opts, const pair_tensor& student, const pair_tensor& teacher,
             bool has_gpu) {
    const auto host = fn(student.host_view(), teacher.host_view(), opts);
    if (!has_gpu) return;
    const auto device = fn(student.device_view(), teacher.device_view(), opts);
    const thrust::host_vector<float> grad(device.grad_student.storage_object());
    double worst = std::fabs(static_cast<double>(host.loss) - device.loss), largest = 0;
    for (std::size_t e = 0; e < grad.size(); ++e) {
        worst = std::fmax(worst, std::fabs(static_cast<double>(host.grad_student.data()[e]) - grad[e]));
        largest = std::fmax(largest, std::fabs(static_cast<double>(host.grad_student.data()[e])));
    }
    const bool ok = host.status.ok() && device.status.ok() && worst <= 1e-4 * std::fmax(1.0, largest);
    std::printf("%-16s loss %.6f  max |gpu - cpu| %.2e  %s\n", method, static_cast<double>(host.loss), worst,
                ok ? "ok" : "FAILED");
    failures += !ok;
}

}  // namespace

int main() {
    int devices = 0;
    const bool has_gpu = cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0;
    const pair_tensor embed_s({6, 20}, 1, has_gpu), embed_t({6, 12}, 2, has_gpu), same_t({6, 20}, 3, has_gpu);
    const pair_tensor maps_s({4, 3, 8, 6}, 4, has_gpu), maps_t({4, 5, 4, 3}, 5, has_gpu), maps_same({4, 3, 8, 6}, 6, has_gpu);
    compare("sp", distill::sp, distill::sp_float_options{}, embed_s, embed_t, has_gpu);
    compare("rkd", distill::rkd, distill::rkd_float_options{}, embed_s, embed_t, has_gpu);
    compare("pkt", distill::pkt, distill::pkt_float_options{}, embed_s, embed_t, has_gpu);
    compare("cc", distill::cc, distill::cc_float_options{}, embed_s, embed_t, has_gpu);
    compare("cc_repdistiller", distill::cc_repdistiller, distill::cc_repdistiller_float_options{}, embed_s, same_t, has_gpu);
    compare("hint", distill::hint, distill::hint_float_options{}, maps_s, maps_same, has_gpu);
    compare("at", distill::at, distill::at_float_options{}, maps_s, maps_t, has_gpu);
    compare("factor", distill::factor, distill::factor_float_options{}, maps_s, maps_t, has_gpu);
    compare("nst", distill::nst, distill::nst_float_options{}, maps_s, maps_t, has_gpu);
    // vid (alpha) and the layered methods: compiled for the device here, run where a GPU exists.
    const pair_tensor alpha({3}, 7, has_gpu);
    const std::vector<distill::any_view<const float>> host_layers_s{maps_s.host_view(), maps_same.host_view()},
        host_layers_t{maps_same.host_view(), maps_s.host_view()};
    const auto vid_host = distill::vid(maps_s.host_view(), maps_same.host_view(), alpha.host_view(), distill::vid_float_options{});
    const auto ab_host = distill::ab(host_layers_s, host_layers_t, distill::ab_float_options{});
    const auto fsp_host = distill::fsp(host_layers_s, host_layers_t, distill::fsp_float_options{});
    if (has_gpu) {
        const std::vector<distill::any_view<const float, distill::device_space>> layers_s{maps_s.device_view(), maps_same.device_view()},
            layers_t{maps_same.device_view(), maps_s.device_view()};
        const auto vid_dev = distill::vid(maps_s.device_view(), maps_same.device_view(), alpha.device_view(), distill::vid_float_options{});
        const auto ab_dev = distill::ab(layers_s, layers_t, distill::ab_float_options{});
        const auto fsp_dev = distill::fsp(layers_s, layers_t, distill::fsp_float_options{});
        const double losses[3][2] = {{vid_host.loss, vid_dev.loss}, {ab_host.loss, ab_dev.loss}, {fsp_host.loss, fsp_dev.loss}};
        const char* names[3] = {"vid", "ab", "fsp"};
        for (int m = 0; m < 3; ++m) {
            const bool ok = std::fabs(losses[m][0] - losses[m][1]) <= 1e-4 * std::fmax(1.0, std::fabs(losses[m][0]));
            std::printf("%-16s loss %.6f  |gpu - cpu| %.2e  %s\n", names[m], losses[m][0], std::fabs(losses[m][0] - losses[m][1]),
                        ok ? "ok" : "FAILED");
            failures += !ok;
        }
    }
    if (!has_gpu) {
        std::printf("no CUDA device: the feature methods compiled for sm_90; values not checked (skipped)\n");
        return skipped;
    }
    return failures == 0 ? 0 : 1;
}
