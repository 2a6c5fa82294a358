// bench/distill_bench_cuda.cu: the cases of cases.hpp with the Thrust CUDA backend
// (distill::thrust_device(), thrust::device policy), built by nvcc for sm_90.
//
// Per shape it measures a device bandwidth probe (thrust::transform out = a + b, the same
// read-two-write-one traffic as the CPU bench's probe) and every case's run step, timed with
// CUDA events (median of 20 calls after 3 warm-up calls), and prints the bytes each call must
// move, the achieved GB/s and the time over the probe's bound. Without a GPU it reports that
// it was compiled and exits 77 (the ctest "skipped" code); with one, --json FILE writes records
// in the format of the CPU bench (backend "thrust_cuda", threads 0, libtorch_ms null).
#include "cases.hpp"

#include <distill/thrust.hpp>

#include <thrust/device_vector.h>
#include <thrust/functional.h>
#include <thrust/tabulate.h>
#include <thrust/transform.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace distill_bench {
namespace {

constexpr int skipped = 77;
constexpr int warm_up_calls = 3;
constexpr int timed_calls = 20;

/// Device arrays seen through thrust::device_ptr: device_space tensors for distill.
struct device_memory {
    template <class T>
    static auto matrix(T* p, index_t rows, index_t cols) {
        return distill::make_view(thrust::device_ptr<T>(p), rows, cols);
    }
    template <class T>
    static auto vector(T* p, index_t n) {
        return distill::make_view(thrust::device_ptr<T>(p), n);
    }
};

struct student_fill {
    __host__ __device__ float operator()(index_t e) const { return student_logit(e); }
};
struct teacher_fill {
    __host__ __device__ float operator()(index_t e) const { return teacher_logit(e); }
};
struct label_fill {
    index_t cols;
    __host__ __device__ std::int64_t operator()(index_t i) const { return label_at(i, cols); }
};
struct top_index_fill {
    index_t cols, k;
    __host__ __device__ std::int64_t operator()(index_t e) const { return top_index_at(e / k, e % k, cols, k); }
};

struct device_data {
    shape dims;
    thrust::device_vector<float> student, teacher, grad, loss, top_logprob;
    thrust::device_vector<std::int64_t> labels, top_index;

    explicit device_data(const shape& s)
        : dims(s), student(s.elements()), teacher(s.elements()), grad(s.elements()), loss(1),
          top_logprob(s.rows * max_top_k), labels(s.rows), top_index(s.rows * max_top_k) {
        thrust::tabulate(student.begin(), student.end(), student_fill{});
        thrust::tabulate(teacher.begin(), teacher.end(), teacher_fill{});
        thrust::tabulate(labels.begin(), labels.end(), label_fill{s.cols});
    }
    /// The arrays with the teacher's top-k packed as N x k.
    arrays view(index_t k) {
        thrust::tabulate(top_index.begin(), top_index.begin() + dims.rows * k, top_index_fill{dims.cols, k});
        std::vector<float> row_logprob(static_cast<std::size_t>(dims.rows * k));
        for (index_t e = 0; e < dims.rows * k; ++e) row_logprob[static_cast<std::size_t>(e)] = top_logprob_at(e % k, k);
        thrust::copy(row_logprob.begin(), row_logprob.end(), top_logprob.begin());
        auto raw = [](auto& v) { return thrust::raw_pointer_cast(v.data()); };
        return {dims, k, raw(student), raw(teacher), raw(grad), raw(loss), raw(labels), raw(top_index), raw(top_logprob)};
    }
};

template <class Case>
index_t top_k_of(const Case& c) {
    if constexpr (requires { c.k; }) return c.k;
    else return max_top_k;
}

/// Median milliseconds of `timed_calls` calls of f (after warm-up), timed with CUDA events.
template <class F>
double median_ms(F&& f) {
    for (int i = 0; i < warm_up_calls; ++i) f();
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    std::vector<double> times;
    for (int i = 0; i < timed_calls; ++i) {
        cudaEventRecord(start);
        f();
        cudaEventRecord(stop);
        cudaEventSynchronize(stop);
        float ms = 0;
        cudaEventElapsedTime(&ms, start, stop);
        times.push_back(ms);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}

std::string shape_label(const shape& s) { return std::to_string(s.rows) + "x" + std::to_string(s.cols); }

}  // namespace
}  // namespace distill_bench

int main(int argc, char** argv) {
    using namespace distill_bench;
    std::string json_path;
    for (int i = 1; i + 1 < argc; ++i)
        if (std::string(argv[i]) == "--json") json_path = argv[i + 1];

    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        std::printf("no CUDA device: distill_bench_cuda was compiled (every case instantiated for the GPU); nothing measured\n");
        return skipped;
    }
    cudaDeviceProp prop{};
    cudaGetDeviceProperties(&prop, 0);
    std::printf("%s\n", prop.name);

    std::string json = "{\n  \"context\": {\"device\": \"" + std::string(prop.name) + "\", \"dtype\": \"float32\"},\n  \"records\": [\n";
    bool first_record = true;
    const auto backend = distill::thrust_device();
    for (const shape& s : all_shapes) {
        device_data d(s);
        const double probe_ms = median_ms([&] {
            thrust::transform(d.student.begin(), d.student.end(), d.teacher.begin(), d.grad.begin(), thrust::plus<float>());
        });
        const double probe_bytes = 3.0 * static_cast<double>(s.elements()) * sizeof(float);
        const double probe_gbps = probe_bytes / (probe_ms * 1e-3) / 1e9;
        std::printf("\n%lld x %lld float32   probe: %.3f ms, %.0f GB/s\n", static_cast<long long>(s.rows),
                    static_cast<long long>(s.cols), probe_ms, probe_gbps);
        std::printf("  %-12s %11s %12s %9s %10s %8s\n", "method", "median ms", "bytes/call", "GB/s", "bound ms", "t/bound");
        for_each_case([&](const auto& c) {
            const arrays a = d.view(top_k_of(c));
            thrust::device_vector<unsigned char> ws(std::max<std::size_t>(1, c.template workspace_bytes<device_memory>(backend, a)));
            const distill::workspace w{thrust::raw_pointer_cast(ws.data()), ws.size()};
            distill::status status;
            const double ms = median_ms([&] { status = c.template run<device_memory>(backend, a, w); });
            const double bytes = static_cast<double>(c.bytes_moved(s));
            const double bound_ms = bytes / (probe_gbps * 1e9) * 1e3;
            if (!status) {
                std::printf("  %-12s error: %s\n", c.name, status.message());
                return;
            }
            std::printf("  %-12s %11.3f %12.0f %9.1f %10.3f %7.2fx\n", c.name, ms, bytes, bytes / (ms * 1e-3) / 1e9,
                        bound_ms, ms / bound_ms);
            char record[512];
            std::snprintf(record, sizeof record,
                          "    {\"method\": \"%s\", \"shape\": \"%s\", \"backend\": \"thrust_cuda\", \"threads\": 0, "
                          "\"median_ms\": %.6g, \"bound_ms\": %.6g, \"bytes_moved\": %.0f, \"libtorch_ms\": null, "
                          "\"extra_heap_bytes\": null}",
                          c.name, shape_label(s).c_str(), ms, bound_ms, bytes);
            json += (first_record ? "" : ",\n") + std::string(record);
            first_record = false;
        });
    }
    if (!json_path.empty()) {
        if (std::FILE* f = std::fopen(json_path.c_str(), "w")) {
            std::fputs((json + "\n  ]\n}\n").c_str(), f);
            std::fclose(f);
        }
    }
    return 0;
}
