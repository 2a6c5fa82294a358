// kd with the Thrust CUDA backend on thrust::device_vector<float> and <double>, built by nvcc.
// The build is the check (the headers compile as CUDA device code for sm_90). When run on a
// machine with a GPU it also checks the values; without one it reports "skipped" (exit 77).
#include <distill/thrust.hpp>

#include <thrust/device_vector.h>
#include <thrust/execution_policy.h>
#include <thrust/host_vector.h>

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <initializer_list>

namespace {

constexpr int skipped = 77;  // ctest SKIP_RETURN_CODE

// Two identical rows: student {0, 1}, teacher {2, 0}, temperature 2 (float64 reference).
constexpr double expected_loss = 1.0296126584275647;
constexpr double expected_grad_row[2] = {-0.707035819663719, 0.707035819663719};  // of one row
constexpr double expected_grad_temperature = 0.08625894887125966;

template <class T>
thrust::device_vector<T> on_device(std::initializer_list<T> values) {
    return thrust::device_vector<T>(thrust::host_vector<T>(values.begin(), values.end()));
}

template <class T>
bool near(T actual, double expected, double tolerance) {
    return std::fabs(static_cast<double>(actual) - expected) <= tolerance;
}

template <class T>
thrust::host_vector<T> to_host(const T* device_data, std::size_t n) {
    const thrust::device_ptr<const T> first(device_data);
    return thrust::host_vector<T>(first, first + n);
}

template <class T>
int check_kd(const char* type_name, double tolerance) {
    const thrust::device_vector<T> student = on_device<T>({0, 1, 0, 1});
    const thrust::device_vector<T> teacher = on_device<T>({2, 0, 2, 0});
    const auto student_matrix = distill::as_matrix(student, 2, 2);
    const auto teacher_matrix = distill::as_matrix(teacher, 2, 2);
    int failures = 0;
    const auto expect = [&](bool ok, const char* what) {
        if (!ok) {
            std::printf("FAILED kd<%s>: %s\n", type_name, what);
            ++failures;
        }
    };

    // Convenience layer, default backend of device memory (thrust::device, which is CUDA under nvcc).
    const auto result = distill::kd(student_matrix, teacher_matrix, distill::kd_options{.temperature = 2.0});
    expect(result.status.ok(), "distill::kd succeeds");
    expect(near(result.loss, expected_loss, tolerance), "distill::kd loss");
    expect(near(result.grad_temperature, expected_grad_temperature, tolerance), "distill::kd grad_temperature");
    const thrust::host_vector<T> grad = to_host(result.grad_student.data(), 4);
    for (int i = 0; i < 4; ++i)  // batchmean over two rows halves each row's gradient
        expect(near(grad[i], expected_grad_row[i % 2] / 2, tolerance), "distill::kd grad_student");

    // Check and run steps: an explicit policy, labels in device memory, caller-owned workspace.
    const thrust::device_vector<std::int32_t> labels = on_device<std::int32_t>({1, -100});  // row 1 ignored
    const auto args = distill::make_response_args(student_matrix, teacher_matrix, labels);
    thrust::device_vector<T> loss(1), grad_temperature(1);
    const distill::response_outputs<T, distill::device_space> outs{distill::as_view(loss), {},
                                                                   distill::as_view(grad_temperature)};
    const auto backend = distill::thrust_device(thrust::cuda::par);
    const distill::kd_options opts{.temperature = 2.0};
    const std::size_t bytes = distill::workspace_bytes(backend, opts, args, outs);
    thrust::device_vector<unsigned char> scratch(bytes);
    const distill::status s =
        distill::run(backend, opts, args, outs, distill::workspace{thrust::raw_pointer_cast(scratch.data()), bytes});
    if (!s) std::printf("run (kd): %s\n", s.message());
    expect(s.ok(), "run (kd) succeeds");
    expect(near(static_cast<T>(loss[0]), expected_loss, tolerance), "run (kd) loss (one row ignored)");
    expect(near(static_cast<T>(grad_temperature[0]), expected_grad_temperature, tolerance), "run (kd) grad_temperature");

    // The same run step on a stream of the caller's (the row kernel is launched on the policy's
    // stream), with the gradient too.
    cudaStream_t stream = nullptr;
    expect(cudaStreamCreate(&stream) == cudaSuccess, "cudaStreamCreate");
    thrust::device_vector<T> stream_loss(1), stream_grad(4), stream_grad_temperature(1);
    const distill::response_outputs<T, distill::device_space> stream_outs{
        distill::as_view(stream_loss), distill::as_matrix(stream_grad, 2, 2), distill::as_view(stream_grad_temperature)};
    const auto on_stream = distill::thrust_device(thrust::cuda::par.on(stream));
    thrust::device_vector<unsigned char> stream_scratch(distill::workspace_bytes(on_stream, opts, args, stream_outs) + 1);
    const distill::status s_stream =
        distill::run(on_stream, opts, args, stream_outs,
                     distill::workspace{thrust::raw_pointer_cast(stream_scratch.data()), stream_scratch.size()});
    expect(cudaStreamSynchronize(stream) == cudaSuccess, "cudaStreamSynchronize");
    expect(s_stream.ok(), "run (kd) on a stream succeeds");
    expect(near(static_cast<T>(stream_loss[0]), expected_loss, tolerance), "run (kd) on a stream: loss");
    const thrust::host_vector<T> stream_grad_host = stream_grad;
    expect(near(stream_grad_host[0], expected_grad_row[0], tolerance) && near(stream_grad_host[1], expected_grad_row[1], tolerance) &&
               stream_grad_host[2] == T(0) && stream_grad_host[3] == T(0),
           "run (kd) on a stream: gradient (row 1 ignored)");
    cudaStreamDestroy(stream);

    std::printf("kd<%s> on CUDA: loss %.9g (expected %.9g), %d failure(s)\n", type_name,
                static_cast<double>(result.loss), expected_loss, failures);
    return failures;
}

}  // namespace

int main() {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        std::printf("no CUDA device: compiled only, run skipped\n");
        return skipped;
    }
    const int failures = check_kd<float>("float", 1e-5) + check_kd<double>("double", 1e-12);
    return failures == 0 ? 0 : 1;
}
