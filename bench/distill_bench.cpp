// bench/distill_bench.cpp: the CPU benchmark of issue 4.
//
// In one run, per shape and thread count, it measures with Google Benchmark:
//   * a bandwidth probe: out = a + b over arrays of N x C floats (reads two, writes one), the
//     memory traffic of the cheapest conceivable loss + gradient; it gives the bound (at the
//     large shapes, one probe call is also timed right before each repetition of each case, and
//     the bound of that case is taken from those: the host is shared, and its speed drifts);
//   * distill's run step for every case of cases.hpp on two backends: the CPU backend on Eigen
//     maps ("eigen", cpu_backend{threads}) and Thrust with the OMP device system ("thrust_omp");
//     outputs and workspace are caller-owned and allocated outside the timed loop;
//   * LibTorch's forward + backward of the same loss (when built with LibTorch), at the same
//     thread count (at::set_num_threads): as shipped, and at 1 thread also on a caching CPU
//     allocator (LibTorch without its page faults; see torch_block_cache).
// Every allocation of the process is counted (glibc malloc family, so operator new, Thrust's
// temporaries and LibTorch's CPU allocator are all seen), and the peak above the level before a
// benchmark's timed loop is reported as its extra heap. The CPU time other processes take while
// a benchmark is timed is recorded too (the machine may be shared).
//
// Then it prints one table per case (median time, GB/s, bound, LibTorch, speed-up, extra heap),
// the targets of issue 4 with their numbers, and writes one record per measurement with
// --json FILE and Markdown tables with --markdown FILE. Run with --help for the options;
// remaining arguments go to Google Benchmark. bench/README.md explains every number.
#include "cases.hpp"

#include <distill/eigen.hpp>
#include <distill/thrust.hpp>

#include <benchmark/benchmark.h>
#include <omp.h>

#if DISTILL_BENCH_HAS_TORCH
#include <c10/core/CPUAllocator.h>
#include <torch/torch.h>
#endif

#include <fcntl.h>
#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#ifndef DISTILL_BENCH_FLAGS
#define DISTILL_BENCH_FLAGS "unknown"
#endif

// ---------------------------------------------------------------- heap accounting

namespace heap_count {
std::atomic<std::int64_t> live{0};  ///< bytes currently allocated (usable sizes)
std::atomic<std::int64_t> peak{0};  ///< highest `live` since the last peak_scope began

inline void allocated(void* p) noexcept {
    if (!p) return;
    const auto n = static_cast<std::int64_t>(malloc_usable_size(p));
    const std::int64_t now = live.fetch_add(n, std::memory_order_relaxed) + n;
    std::int64_t seen = peak.load(std::memory_order_relaxed);
    while (now > seen && !peak.compare_exchange_weak(seen, now, std::memory_order_relaxed)) {
    }
}
inline void released(void* p) noexcept {
    if (p) live.fetch_sub(static_cast<std::int64_t>(malloc_usable_size(p)), std::memory_order_relaxed);
}

/// The peak number of bytes allocated above the level at construction, while it lives.
class peak_scope {
public:
    peak_scope() noexcept : base_(live.load()) { peak.store(base_); }
    std::int64_t extra() const noexcept { return std::max<std::int64_t>(0, peak.load() - base_); }

private:
    std::int64_t base_;
};
}  // namespace heap_count

// Interposes glibc's allocator: operator new, Thrust's temporary buffers (std::malloc) and
// LibTorch's CPU allocator (posix_memalign) all end up here. The real work is done by glibc's
// own entry points, so pointers from every path can be freed by every other.
#if defined(__GLIBC__) && !defined(DISTILL_BENCH_NO_MALLOC_COUNT)
#define DISTILL_BENCH_COUNTS_MALLOC 1
extern "C" {
void* __libc_malloc(std::size_t) noexcept;
void __libc_free(void*) noexcept;
void* __libc_calloc(std::size_t, std::size_t) noexcept;
void* __libc_realloc(void*, std::size_t) noexcept;
void* __libc_memalign(std::size_t, std::size_t) noexcept;

void* malloc(std::size_t n) noexcept {
    void* p = __libc_malloc(n);
    heap_count::allocated(p);
    return p;
}
void free(void* p) noexcept {
    heap_count::released(p);
    __libc_free(p);
}
void* calloc(std::size_t count, std::size_t size) noexcept {
    void* p = __libc_calloc(count, size);
    heap_count::allocated(p);
    return p;
}
void* realloc(void* p, std::size_t n) noexcept {
    const auto before = p ? static_cast<std::int64_t>(malloc_usable_size(p)) : 0;
    void* q = __libc_realloc(p, n);
    if (q || n == 0) {  // moved, resized, or (n == 0) freed: the old block is gone
        heap_count::live.fetch_sub(before, std::memory_order_relaxed);
        heap_count::allocated(q);
    }
    return q;
}
void* memalign(std::size_t alignment, std::size_t n) noexcept {
    void* p = __libc_memalign(alignment, n);
    heap_count::allocated(p);
    return p;
}
void* aligned_alloc(std::size_t alignment, std::size_t n) noexcept { return memalign(alignment, n); }
int posix_memalign(void** out, std::size_t alignment, std::size_t n) noexcept {
    if (alignment % sizeof(void*) != 0 || (alignment & (alignment - 1)) != 0) return EINVAL;
    void* p = memalign(alignment, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
void* valloc(std::size_t n) noexcept { return memalign(static_cast<std::size_t>(sysconf(_SC_PAGESIZE)), n); }
}
#endif

namespace distill_bench {
namespace {

// ---------------------------------------------------------------- machine load

/// CPU time of the whole machine and of this process: what other processes used during the run
/// (a concurrent compile on a 2-core machine distorts the 2-thread numbers above all).
struct cpu_sample {
    double busy_s = 0, steal_s = 0, self_s = 0, wall_s = 0;
    /// Reads /proc/stat with plain system calls: no allocation, so it may run inside a heap measurement.
    static cpu_sample now() {
        cpu_sample c;
        char text[256] = {};
        if (const int fd = ::open("/proc/stat", O_RDONLY); fd >= 0) {
            const ssize_t got = ::read(fd, text, sizeof text - 1);
            ::close(fd);
            text[got > 0 ? got : 0] = '\0';
            unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
            if (std::sscanf(text, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &system, &idle, &iowait,
                            &irq, &softirq, &steal) == 8) {
                const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
                c.busy_s = static_cast<double>(user + nice + system + irq + softirq) / tick;
                c.steal_s = static_cast<double>(steal) / tick;
            }
        }
        rusage usage{};
        getrusage(RUSAGE_SELF, &usage);
        c.self_s = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                   1e-6 * static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
        c.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
        return c;
    }
};
/// Average number of cores other processes kept busy between two samples, and the steal.
struct machine_load {
    double other_cores = 0, steal_cores = 0, wall_s = 0;
};
machine_load load_between(const cpu_sample& a, const cpu_sample& b) {
    machine_load l;
    l.wall_s = b.wall_s - a.wall_s;
    if (l.wall_s > 0) {
        l.other_cores = std::max(0.0, ((b.busy_s - a.busy_s) - (b.self_s - a.self_s)) / l.wall_s);
        l.steal_cores = (b.steal_s - a.steal_s) / l.wall_s;
    }
    return l;
}

// ---------------------------------------------------------------- settings

struct settings {
    std::string json_path;
    std::string markdown_path;
    bool quick = false;
    bool torch = true;
    bool torch_cached = true;           // also LibTorch on a caching CPU allocator, 1 thread (torch_block_cache)
    std::vector<int> threads{1, 2};
    std::vector<shape> shapes{std::begin(all_shapes), std::end(all_shapes)};
    std::vector<std::string> methods;   // empty: all
    std::vector<std::string> backends{"eigen", "thrust_omp"};
    int small_repetitions = 5;
    int large_repetitions = 7;        ///< distill and the probe (a call of 0.05-0.2 s each)
    int large_peer_repetitions = 3;   ///< LibTorch (seconds per call)
    double small_min_time = 0.1;        // seconds per repetition (Google Benchmark's MinTime)
};

std::string shape_label(const shape& s) { return std::to_string(s.rows) + "x" + std::to_string(s.cols); }

std::vector<std::string> split(const std::string& text, char sep) {
    std::vector<std::string> parts;
    std::stringstream in(text);
    for (std::string part; std::getline(in, part, sep);)
        if (!part.empty()) parts.push_back(part);
    return parts;
}

bool wanted(const std::vector<std::string>& list, const std::string& name) {
    return list.empty() || std::find(list.begin(), list.end(), name) != list.end();
}

void print_help() {
    std::puts(
        "distill_bench [options] [Google Benchmark options]\n"
        "  --json FILE         write one JSON record per (method, shape, backend, threads) to FILE\n"
        "  --markdown FILE     write the results as Markdown tables (the table of bench/README.md)\n"
        "  --quick             fewer repetitions (small shapes 5 x 20 ms each), LibTorch at the large shapes\n"
        "                      single-thread only, no cached-allocator LibTorch\n"
        "  --threads LIST      thread counts, default 1,2\n"
        "  --shapes LIST       e.g. 256x100,4096x32000 (default: the four shapes of issue 4)\n"
        "  --methods LIST      e.g. kd,jsd (default: every case in bench/cases.hpp)\n"
        "  --backends LIST     eigen,thrust_omp (default both)\n"
        "  --no-torch          skip LibTorch even when built with it\n"
        "  --no-torch-cached   skip the second LibTorch measurement (caching allocator, 1 thread)\n"
        "  --repetitions N,M,K repetitions at the small shapes, at the large shapes, and of LibTorch at\n"
        "                      the large shapes (default 5,7,3)");
}

/// Parses the bench's own options and removes them from argv (the rest is Google Benchmark's).
std::optional<settings> parse(int& argc, char** argv) {
    settings s;
    int kept = 1;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "distill_bench: %s needs a value\n", arg.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (arg == "--help" || arg == "-h") {
            print_help();
            return std::nullopt;
        } else if (arg == "--json") {
            s.json_path = value();
        } else if (arg == "--markdown") {
            s.markdown_path = value();
        } else if (arg == "--quick") {
            s.quick = true;
        } else if (arg == "--no-torch") {
            s.torch = false;
        } else if (arg == "--no-torch-cached") {
            s.torch_cached = false;
        } else if (arg == "--threads") {
            s.threads.clear();
            for (const auto& t : split(value(), ',')) s.threads.push_back(std::max(1, std::atoi(t.c_str())));
        } else if (arg == "--shapes") {
            s.shapes.clear();
            for (const auto& t : split(value(), ',')) {
                const auto x = t.find('x');
                if (x == std::string::npos) {
                    std::fprintf(stderr, "distill_bench: bad shape '%s' (want NxC)\n", t.c_str());
                    std::exit(2);
                }
                s.shapes.push_back({std::atoll(t.substr(0, x).c_str()), std::atoll(t.substr(x + 1).c_str())});
            }
        } else if (arg == "--methods") {
            s.methods = split(value(), ',');
        } else if (arg == "--backends") {
            s.backends = split(value(), ',');
        } else if (arg == "--repetitions") {
            const auto parts = split(value(), ',');
            if (!parts.empty()) s.small_repetitions = std::max(1, std::atoi(parts[0].c_str()));
            if (parts.size() > 1) s.large_repetitions = std::max(1, std::atoi(parts[1].c_str()));
            if (parts.size() > 2) s.large_peer_repetitions = std::max(1, std::atoi(parts[2].c_str()));
        } else {
            argv[kept++] = argv[i];
        }
    }
    argc = kept;
    for (const std::string& b : s.backends)
        if (b != "eigen" && b != "thrust_omp") {
            std::fprintf(stderr, "distill_bench: unknown backend '%s' (eigen, thrust_omp)\n", b.c_str());
            std::exit(2);
        }
    if (s.quick) {
        s.small_min_time = 0.02;
        s.torch_cached = false;
    }
    return s;
}

// ---------------------------------------------------------------- host arrays of one shape

template <class T>
struct aligned_buffer {
    T* data = nullptr;
    std::size_t count = 0;
    aligned_buffer() = default;
    explicit aligned_buffer(std::size_t n) : count(n) {
        const std::size_t bytes = std::max<std::size_t>(64, (n * sizeof(T) + 63) / 64 * 64);
        data = static_cast<T*>(std::aligned_alloc(64, bytes));
        if (!data) {
            std::fprintf(stderr, "distill_bench: out of memory allocating %zu bytes\n", bytes);
            std::exit(1);
        }
    }
    aligned_buffer(aligned_buffer&& o) noexcept : data(std::exchange(o.data, nullptr)), count(o.count) {}
    aligned_buffer& operator=(aligned_buffer&& o) noexcept {
        std::swap(data, o.data);
        std::swap(count, o.count);
        return *this;
    }
    ~aligned_buffer() { std::free(data); }
};

/// Inputs and outputs of one shape. Every page is written once here, so no timed call pays
/// for first-touch page faults.
struct host_data {
    shape dims;
    aligned_buffer<float> student, teacher, grad, loss, top_logprob;
    aligned_buffer<std::int64_t> labels, top_index;

    explicit host_data(const shape& s)
        : dims(s), student(s.elements()), teacher(s.elements()), grad(s.elements()), loss(1),
          top_logprob(s.rows * max_top_k), labels(s.rows), top_index(s.rows * max_top_k) {
        const index_t n = s.rows, c = s.cols, k = std::min(max_top_k, c), elements = s.elements();
#pragma omp parallel for schedule(static)
        for (index_t e = 0; e < elements; ++e) {
            student.data[e] = student_logit(e);
            teacher.data[e] = teacher_logit(e);
            grad.data[e] = 0.0f;
        }
        for (index_t i = 0; i < n; ++i) {
            labels.data[i] = label_at(i, c);
            for (index_t j = 0; j < max_top_k; ++j) {
                top_index.data[i * max_top_k + j] = top_id(i, j, c, k);
                top_logprob.data[i * max_top_k + j] = top_value(j, k);
            }
        }
        loss.data[0] = 0.0f;
    }
    // Entries past k (C < max_top_k) repeat the last one; the cases only read the first k.
    static std::int64_t top_id(index_t i, index_t j, index_t c, index_t k) { return top_index_at(i, j < k ? j : k - 1, c, k); }
    static float top_value(index_t j, index_t k) { return top_logprob_at(j < k ? j : k - 1, k); }

    /// The arrays of a case with top-k = k: the teacher's ids and log-probabilities are packed
    /// as N x k (rewritten when a case asks for another k than the previous one).
    arrays view(index_t k) {
        if (k != packed_k) {
            for (index_t i = 0; i < dims.rows; ++i)
                for (index_t j = 0; j < k; ++j) {
                    top_index.data[i * k + j] = top_id(i, j, dims.cols, k);
                    top_logprob.data[i * k + j] = top_value(j, k);
                }
            packed_k = k;
        }
        return {dims, k, student.data, teacher.data, grad.data, loss.data, labels.data, top_index.data, top_logprob.data};
    }

private:
    index_t packed_k = max_top_k;
};

void release_torch_cache();

/// The arrays of the shape being measured (one shape lives at a time: the large ones are 0.5 GB each).
host_data& data_for(const shape& s) {
    static std::unique_ptr<host_data> current;
    if (!current || current->dims != s) {
        current.reset();
        release_torch_cache();  // LibTorch blocks cached for the previous shape
        current = std::make_unique<host_data>(s);
    }
    return *current;
}

template <class Case>
index_t top_k_of(const Case& c) {
    if constexpr (requires { c.k; }) return c.k;
    else return max_top_k;
}

// ---------------------------------------------------------------- backends and memory policies

using index = Eigen::Index;

/// The "Eigen path": distill's CPU backend on Eigen maps of the arrays (row-major, no copies).
struct eigen_kind {
    static constexpr const char* name = "eigen";
    struct memory {
        template <class T>
        static auto matrix(T* p, index_t rows, index_t cols) {
            using matrix_t = Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
            using map_t = std::conditional_t<std::is_const_v<T>, Eigen::Map<const matrix_t>, Eigen::Map<matrix_t>>;
            return map_t(p, static_cast<index>(rows), static_cast<index>(cols));
        }
        template <class T>
        static auto vector(T* p, index_t n) {
            using vector_t = Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, 1>;
            using map_t = std::conditional_t<std::is_const_v<T>, Eigen::Map<const vector_t>, Eigen::Map<vector_t>>;
            return map_t(p, static_cast<index>(n));
        }
    };
    static distill::cpu_backend backend(int threads) { return distill::cpu_backend{threads}; }
};

/// Thrust with the OMP device system: "device" memory is host memory, so thrust::device_ptr
/// views of the same arrays are device_space tensors; the thread count is OpenMP's.
struct thrust_omp_kind {
    static constexpr const char* name = "thrust_omp";
    struct memory {
        template <class T>
        static auto matrix(T* p, index_t rows, index_t cols) {
            return distill::make_view(thrust::device_ptr<T>(p), rows, cols);
        }
        template <class T>
        static auto vector(T* p, index_t n) {
            return distill::make_view(thrust::device_ptr<T>(p), n);
        }
    };
    static auto backend(int threads) {
        omp_set_num_threads(threads);
        return distill::thrust_device();
    }
};

// ---------------------------------------------------------------- the bandwidth probe

/// Reads two arrays and writes one, as a loss + gradient must at least: out = a + b.
void probe(const float* __restrict a, const float* __restrict b, float* __restrict out, index_t n, int threads) {
#pragma omp parallel for simd schedule(static) num_threads(threads)
    for (index_t e = 0; e < n; ++e) out[e] = a[e] + b[e];
}
std::size_t probe_bytes(const shape& s) { return 3 * static_cast<std::size_t>(s.elements()) * sizeof(float); }

// ---------------------------------------------------------------- LibTorch peers

#if DISTILL_BENCH_HAS_TORCH
/// The inputs of a LibTorch peer: `student` is a leaf that requires grad; the others are constants.
struct torch_inputs {
    torch::Tensor student, teacher, labels, top_index, top_logprob;
};
namespace F = torch::nn::functional;

// Each peer is the loss as a PyTorch user writes it (the reference code the method cites),
// batchmean. Overloaded on the case's options type; a case without a peer reports libtorch null.

/// kd: kl_div(log_softmax(s/T), log_softmax(t/T), log_target, batchmean) * T^2.
torch::Tensor torch_loss(const distill::kd_float_options& o, const torch_inputs& in) {
    const double tau = o.temperature;
    const auto ls = torch::log_softmax(in.student / tau, 1), lt = torch::log_softmax(in.teacher / tau, 1);
    return F::kl_div(ls, lt, F::KLDivFuncOptions().reduction(torch::kBatchMean).log_target(true)) * (tau * tau);
}
/// reverse_kd: KL(p_s || p_t) = sum ps (ls - lt), batchmean, * T^2 (MiniLLM / distillm reverse_kl).
torch::Tensor torch_loss(const distill::reverse_kd_float_options& o, const torch_inputs& in) {
    const double tau = o.temperature;
    const auto ls = torch::log_softmax(in.student / tau, 1), lt = torch::log_softmax(in.teacher / tau, 1);
    return (ls.exp() * (ls - lt)).sum() / in.student.size(0) * (tau * tau);
}
/// jsd: TRL's generalized_jsd_loss (mixture in log space, beta weights the teacher), * T^2.
torch::Tensor torch_loss(const distill::jsd_float_options& o, const torch_inputs& in) {
    const double tau = o.temperature, beta = o.beta;
    const auto ls = torch::log_softmax(in.student / tau, 1), lt = torch::log_softmax(in.teacher / tau, 1);
    const auto lm = torch::logsumexp(torch::stack({ls + std::log(1 - beta), lt + std::log(beta)}), 0);
    const auto kl_teacher = F::kl_div(lm, lt, F::KLDivFuncOptions().reduction(torch::kNone).log_target(true));
    const auto kl_student = F::kl_div(lm, ls, F::KLDivFuncOptions().reduction(torch::kNone).log_target(true));
    return (beta * kl_teacher + (1 - beta) * kl_student).sum() / in.student.size(0) * (tau * tau);
}
/// tvd: 1/2 sum |pt - ps|, batchmean, * T^2 (DistiLLM's tv_distance).
torch::Tensor torch_loss(const distill::tvd_float_options& o, const torch_inputs& in) {
    const double tau = o.temperature;
    const auto ps = torch::softmax(in.student / tau, 1), pt = torch::softmax(in.teacher / tau, 1);
    return 0.5 * (pt - ps).abs().sum() / in.student.size(0) * (tau * tau);
}
/// dkd: mdistiller's dkd_loss (DKD.py): TCKD on the binary target / non-target masses, NCKD
/// with the target masked by -1000.
torch::Tensor torch_loss(const distill::dkd_float_options& o, const torch_inputs& in) {
    const double tau = o.temperature;
    const auto target = in.labels.unsqueeze(1);
    const auto gt_mask = torch::zeros_like(in.teacher).scatter_(1, target, 1).to(torch::kBool);
    const auto other_mask = torch::ones_like(in.teacher).scatter_(1, target, 0).to(torch::kBool);
    auto cat_mask = [&](const torch::Tensor& p) {
        return torch::cat({(p * gt_mask).sum(1, true), (p * other_mask).sum(1, true)}, 1);
    };
    const auto ps = cat_mask(torch::softmax(in.student / tau, 1));
    const auto pt = cat_mask(torch::softmax(in.teacher / tau, 1));
    const auto n = static_cast<double>(in.student.size(0));
    const auto sum = F::KLDivFuncOptions().reduction(torch::kSum);
    const auto tckd = F::kl_div(torch::log(ps), pt, sum) * (tau * tau) / n;
    const auto pt2 = torch::softmax(in.teacher / tau - 1000.0 * gt_mask, 1);
    const auto ls2 = torch::log_softmax(in.student / tau - 1000.0 * gt_mask, 1);
    const auto nckd = F::kl_div(ls2, pt2, sum) * (tau * tau) / n;
    return o.alpha * tckd + o.beta * nckd;
}
/// kd_topk: verl's compute_forward_kl_topk: the student's full log_softmax gathered at the
/// teacher's ids, sum p (log p - log q), batchmean (T = 1, no renormalisation).
torch::Tensor torch_loss(const distill::kd_topk_float_options&, const torch_inputs& in) {
    const auto lq = torch::log_softmax(in.student, 1).gather(1, in.top_index);
    return (in.top_logprob.exp() * (in.top_logprob - lq)).sum() / in.student.size(0);
}

template <class Options>
concept has_torch_peer = requires(const Options& o, const torch_inputs& in) { torch_loss(o, in); };

/// LibTorch's default CPU allocator returns its 0.5 GB temporaries to glibc, which unmaps them,
/// so every step page-faults them in afresh: most of LibTorch's time at the large shapes on this
/// VM (~9 us per 4 KiB fault), and a cost that varies from run to run. That is LibTorch as
/// shipped ("libtorch"). The bench also measures LibTorch at its best ("libtorch_cached"):
/// blocks freed by a step are kept by size and handed out again to the next step (what
/// PyTorch's CUDA caching allocator, or jemalloc, does), after one untimed warm-up step. The
/// blocks in use are counted, so their peak during a step is LibTorch's extra memory.
struct torch_block_cache {
    std::mutex mutex;
    std::unordered_map<void*, std::size_t> size_of;
    std::unordered_map<std::size_t, std::vector<void*>> free_by_size;
    std::int64_t in_use = 0, peak = 0;

    void* take(std::size_t n) {
        const std::lock_guard<std::mutex> lock(mutex);
        void* p = nullptr;
        if (auto it = free_by_size.find(n); it != free_by_size.end() && !it->second.empty()) {
            p = it->second.back();
            it->second.pop_back();
        } else {
            p = std::aligned_alloc(64, std::max<std::size_t>(64, (n + 63) / 64 * 64));
            if (!p) throw std::bad_alloc();
            size_of[p] = n;
        }
        in_use += static_cast<std::int64_t>(n);
        peak = std::max(peak, in_use);
        return p;
    }
    void give_back(void* p) {
        const std::lock_guard<std::mutex> lock(mutex);
        const std::size_t n = size_of.at(p);
        free_by_size[n].push_back(p);
        in_use -= static_cast<std::int64_t>(n);
    }
    /// Frees the cached blocks (between shapes: their sizes will not come back).
    void release_cached() {
        const std::lock_guard<std::mutex> lock(mutex);
        for (auto& [n, blocks] : free_by_size)
            for (void* p : blocks) {
                size_of.erase(p);
                std::free(p);
            }
        free_by_size.clear();
    }
    /// Starts a peak measurement; returns the bytes in use now.
    std::int64_t begin_peak() {
        const std::lock_guard<std::mutex> lock(mutex);
        peak = in_use;
        return in_use;
    }
    std::int64_t peak_now() {
        const std::lock_guard<std::mutex> lock(mutex);
        return peak;
    }
};
torch_block_cache torch_cache;
void release_torch_cache() { torch_cache.release_cached(); }

class torch_caching_allocator final : public c10::Allocator {
public:
    /// The instance handed to c10 (which keeps the pointer for the life of the process).
    static torch_caching_allocator* instance() {
        static auto* allocator = new torch_caching_allocator;
        return allocator;
    }
    c10::DataPtr allocate(std::size_t n) const override {
        void* p = torch_cache.take(n);
        return {p, p, &release, c10::Device(c10::DeviceType::CPU)};
    }
    c10::DeleterFnPtr raw_deleter() const override { return &release; }

private:
    static void release(void* p) {
        if (p) torch_cache.give_back(p);
    }
};
#else
void release_torch_cache() {}
#endif

// ---------------------------------------------------------------- measurements

/// What one benchmark (one Google Benchmark family) measured.
struct measurement {
    std::vector<double> times_ms;  ///< one per repetition (mean of its iterations)
    /// Large shapes: the bandwidth probe timed right before each repetition's call (untimed by
    /// the harness), so that the bound and the call see the same phase of a shared host.
    std::vector<double> paired_probe_ms;
    std::int64_t extra_heap = -1;  ///< peak bytes allocated during the timed calls (-1: not measured)
    bool warmed_up = false;        ///< the untimed first call was made (LibTorch on the caching allocator)
    double timed_wall_s = 0, other_busy_s = 0;  ///< over the timed loops: wall time, CPU time of other processes

    /// Cores other processes kept busy while this benchmark was timed (> 0.25: the numbers are suspect).
    /// /proc/stat counts in 10 ms ticks, so below 0.3 s of timed loops the figure is noise: NaN.
    double other_load() const { return timed_wall_s >= 0.3 ? other_busy_s / timed_wall_s : NAN; }
    std::size_t workspace = 0;     ///< caller-owned workspace the call asked for
    double loss = std::numeric_limits<double>::quiet_NaN();
    std::string error;

    double median_ms() const { return median_of(times_ms); }
    static double median_of(const std::vector<double>& times) {
        if (times.empty()) return std::numeric_limits<double>::quiet_NaN();
        std::vector<double> t = times;
        std::sort(t.begin(), t.end());
        const std::size_t m = t.size() / 2;
        return t.size() % 2 ? t[m] : 0.5 * (t[m - 1] + t[m]);
    }
    bool measured() const { return !times_ms.empty() && error.empty(); }
};
std::map<std::string, measurement> measurements;  // node-based: benchmarks keep pointers into it

/// Adds the machine's load during a timed loop to a measurement (the loop is the scope's lifetime).
class load_meter {
public:
    explicit load_meter(measurement* m) : m_(m), start_(cpu_sample::now()) {}
    ~load_meter() {
        const machine_load l = load_between(start_, cpu_sample::now());
        m_->timed_wall_s += l.wall_s;
        m_->other_busy_s += l.other_cores * l.wall_s;
    }
    load_meter(const load_meter&) = delete;
    load_meter& operator=(const load_meter&) = delete;

private:
    measurement* m_;
    cpu_sample start_;
};

std::string probe_key(const shape& s, int threads) {
    return "probe/" + shape_label(s) + "/threads:" + std::to_string(threads);
}
std::string distill_key(const char* method, const shape& s, const char* backend, int threads) {
    return std::string(method) + "/" + shape_label(s) + "/" + backend + "/threads:" + std::to_string(threads);
}
std::string torch_key(const char* method, const shape& s, int threads, bool cached = false) {
    return distill_key(method, s, cached ? "libtorch_cached" : "libtorch", threads);
}

/// Repetitions and iterations: at the small shapes MinTime per repetition (many calls each),
/// at the large shapes one call per repetition.
void configure(benchmark::internal::Benchmark* b, const shape& s, const settings& cfg, bool peer = false) {
    b->Unit(benchmark::kMillisecond)->UseRealTime();
    if (is_large(s)) b->Iterations(1)->Repetitions(peer ? cfg.large_peer_repetitions : cfg.large_repetitions);
    else b->MinTime(cfg.small_min_time)->Repetitions(cfg.small_repetitions);
}

void register_probe(const shape& s, int threads, const settings& cfg) {
    const std::string key = probe_key(s, threads);
    measurement* m = &measurements[key];
    configure(benchmark::RegisterBenchmark(key.c_str(),
                                           [s, threads, m](benchmark::State& state) {
                                               host_data& d = data_for(s);
                                               const heap_count::peak_scope heap;
                                               const load_meter meter(m);
                                               for (auto _ : state) {
                                                   probe(d.student.data, d.teacher.data, d.grad.data, s.elements(),
                                                         threads);
                                                   benchmark::ClobberMemory();
                                               }
                                               m->extra_heap = heap.extra();
                                               state.SetBytesProcessed(static_cast<std::int64_t>(
                                                   state.iterations() * probe_bytes(s)));
                                           }),
              s, cfg);
}

template <class Kind, class Case>
void register_distill(const Case& c, const shape& s, int threads, const settings& cfg) {
    const std::string key = distill_key(c.name, s, Kind::name, threads);
    measurement* m = &measurements[key];
    configure(benchmark::RegisterBenchmark(
                  key.c_str(),
                  [&c, s, threads, m](benchmark::State& state) {
                      using memory = typename Kind::memory;
                      host_data& d = data_for(s);
                      if (is_large(s)) {  // one call per repetition: the probe right before it
                          const auto start = std::chrono::steady_clock::now();
                          probe(d.student.data, d.teacher.data, d.grad.data, s.elements(), threads);
                          benchmark::ClobberMemory();
                          m->paired_probe_ms.push_back(
                              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
                      }
                      const arrays a = d.view(top_k_of(c));
                      const auto backend = Kind::backend(threads);
                      distill::status status;
                      try {
                          const std::size_t ws_bytes = c.template workspace_bytes<memory>(backend, a);
                          aligned_buffer<unsigned char> ws(ws_bytes);
                          const heap_count::peak_scope heap;
                          {
                              const load_meter meter(m);
                              for (auto _ : state) {
                                  status = c.template run<memory>(backend, a, distill::workspace{ws.data, ws_bytes});
                                  benchmark::ClobberMemory();
                              }
                          }
                          m->extra_heap = std::max(m->extra_heap, heap.extra());
                          m->workspace = ws_bytes;
                      } catch (const std::exception& e) {
                          state.SkipWithError(e.what());
                          return;
                      }
                      if (!status) {
                          state.SkipWithError(status.message());
                          return;
                      }
                      m->loss = a.loss[0];
                      state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * c.bytes_moved(s)));
                  }),
              s, cfg);
}

#if DISTILL_BENCH_HAS_TORCH
template <class Case>
void register_torch(const Case& c, const shape& s, int threads, const settings& cfg, bool caching) {
    if constexpr (has_torch_peer<decltype(c.options)>) {
        const std::string key = torch_key(c.name, s, threads, caching);
        measurement* m = &measurements[key];
        configure(
            benchmark::RegisterBenchmark(
                key.c_str(),
                [&c, s, threads, m, caching](benchmark::State& state) {
                    at::set_num_threads(threads);
                    // Priority 1 outranks the default allocator's registration; both are set with it.
                    c10::SetCPUAllocator(caching ? torch_caching_allocator::instance() : c10::GetDefaultCPUAllocator(), 1);
                    const arrays a = data_for(s).view(top_k_of(c));
                    const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
                    const auto i64 = torch::TensorOptions().dtype(torch::kInt64);
                    const index_t n = s.rows, k = top_k_of(c);
                    // The bench's arrays, without copies.
                    const torch::Tensor student = torch::from_blob(a.student, {n, s.cols}, f32);
                    torch_inputs in{{},
                                    torch::from_blob(a.teacher, {n, s.cols}, f32),
                                    torch::from_blob(a.labels, {n}, i64),
                                    torch::from_blob(a.top_index, {n, k}, i64),
                                    torch::from_blob(a.top_logprob, {n, k}, f32)};
                    double loss = 0;
                    // One training step: a fresh leaf, as after optimizer.zero_grad(set_to_none=True).
                    auto step = [&] {
                        in.student = student.detach().requires_grad_(true);
                        const torch::Tensor value = torch_loss(c.options, in);
                        value.backward();
                        benchmark::DoNotOptimize(in.student.grad().data_ptr<float>());
                        loss = value.item<double>();
                        in.student = torch::Tensor();
                    };
                    try {
                        if (caching) {
                            if (!m->warmed_up) step();  // fills the cache; once per benchmark
                            m->warmed_up = true;
                        }
                        const std::int64_t cached_base = caching ? torch_cache.begin_peak() : 0;
                        const heap_count::peak_scope heap;
                        {
                            const load_meter meter(m);
                            for (auto _ : state) step();
                        }
                        // The gradient LibTorch allocates is the output distill writes into caller memory.
                        const auto grad_bytes = static_cast<std::int64_t>(s.elements() * sizeof(float));
                        const std::int64_t tensors = caching ? torch_cache.peak_now() - cached_base : 0;
                        m->extra_heap = std::max(m->extra_heap, std::max<std::int64_t>(0, heap.extra() + tensors - grad_bytes));
                    } catch (const std::exception& e) {
                        c10::SetCPUAllocator(c10::GetDefaultCPUAllocator(), 1);
                        state.SkipWithError(e.what());
                        return;
                    }
                    c10::SetCPUAllocator(c10::GetDefaultCPUAllocator(), 1);
                    m->loss = loss;
                    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * c.bytes_moved(s)));
                }),
            s, cfg, true);
    }
}
#endif

/// Prints Google Benchmark's lines for the medians only, and records every repetition.
class capture_reporter : public benchmark::ConsoleReporter {
public:
    void ReportRuns(const std::vector<Run>& runs) override {
        std::vector<Run> shown;
        for (const Run& r : runs) {
            const auto it = measurements.find(r.run_name.function_name);
            if (r.error_occurred) {
                if (it != measurements.end()) it->second.error = r.error_message;
                shown.push_back(r);
            } else if (r.run_type == Run::RT_Iteration) {
                if (it != measurements.end()) it->second.times_ms.push_back(r.GetAdjustedRealTime());
                if (r.repetitions <= 1) shown.push_back(r);
            } else if (r.aggregate_name == "median") {
                shown.push_back(r);
            }
        }
        if (!shown.empty()) ConsoleReporter::ReportRuns(shown);
    }
};

// ---------------------------------------------------------------- results

struct record {
    std::string method, backend;
    shape dims;
    int threads = 1;
    std::size_t bytes = 0;
    double median_ms = NAN, bound_ms = NAN, probe_gbps = NAN, libtorch_ms = NAN, libtorch_cached_ms = NAN;
    std::int64_t extra_heap = -1, libtorch_extra_heap = -1;
    std::size_t workspace = 0;
    double loss = NAN, libtorch_loss = NAN;
    double other_load = NAN, probe_other_load = NAN;  ///< cores other processes used while timed (NaN: too short to tell)
    double probe_benchmark_gbps = NAN;  ///< the probe's own benchmark (the bound at the small shapes)
    bool paired_probe = false;          ///< the bound is from probes timed right before each call
    int repetitions = 0;
    std::vector<double> times_ms, libtorch_times_ms, libtorch_cached_times_ms;  ///< every repetition, in run order
    std::vector<double> paired_probe_ms;  ///< the probe before each repetition (large shapes)
    std::string error;

    double gbps() const { return bytes / (median_ms * 1e-3) / 1e9; }
    double of_bound() const { return median_ms / bound_ms; }  // time / bound (1 = at the probe's bandwidth)
    double speedup() const { return libtorch_ms / median_ms; }
    double speedup_cached() const { return libtorch_cached_ms / median_ms; }
};

/// Other processes kept more than a quarter of a core busy while this record or its probe was timed.
bool is_shared(const record& r) { return r.other_load > 0.25 || r.probe_other_load > 0.25; }

std::vector<record> collect(const settings& cfg) {
    std::vector<record> out;
    for (const shape& s : cfg.shapes)
        for_each_case([&](const auto& c) {
            if (!wanted(cfg.methods, c.name)) return;
            for (const std::string& backend : cfg.backends)
                for (int threads : cfg.threads) {
                    const auto it = measurements.find(distill_key(c.name, s, backend.c_str(), threads));
                    if (it == measurements.end()) continue;
                    const measurement& m = it->second;
                    record r;
                    r.method = c.name;
                    r.backend = backend;
                    r.dims = s;
                    r.threads = threads;
                    r.bytes = c.bytes_moved(s);
                    r.median_ms = m.median_ms();
                    r.extra_heap = m.extra_heap;
                    r.workspace = m.workspace;
                    r.loss = m.loss;
                    r.repetitions = static_cast<int>(m.times_ms.size());
                    r.times_ms = m.times_ms;
                    r.other_load = m.other_load();
                    r.error = m.error;
                    if (const auto p = measurements.find(probe_key(s, threads)); p != measurements.end() && p->second.measured()) {
                        r.probe_benchmark_gbps = probe_bytes(s) / (p->second.median_ms() * 1e-3) / 1e9;
                        r.probe_gbps = r.probe_benchmark_gbps;
                        r.probe_other_load = p->second.other_load();
                    }
                    if (m.measured() && !m.paired_probe_ms.empty()) {
                        r.probe_gbps = probe_bytes(s) / (measurement::median_of(m.paired_probe_ms) * 1e-3) / 1e9;
                        r.paired_probe = true;
                        r.paired_probe_ms = m.paired_probe_ms;
                    }
                    if (!std::isnan(r.probe_gbps)) r.bound_ms = r.bytes / (r.probe_gbps * 1e9) * 1e3;
                    if (const auto t = measurements.find(torch_key(c.name, s, threads));
                        t != measurements.end() && t->second.measured()) {
                        r.libtorch_ms = t->second.median_ms();
                        r.libtorch_extra_heap = t->second.extra_heap;
                        r.libtorch_loss = t->second.loss;
                        r.libtorch_times_ms = t->second.times_ms;
                    }
                    if (const auto t = measurements.find(torch_key(c.name, s, threads, true));
                        t != measurements.end() && t->second.measured()) {
                        r.libtorch_cached_ms = t->second.median_ms();
                        r.libtorch_cached_times_ms = t->second.times_ms;
                        if (r.libtorch_extra_heap < 0) r.libtorch_extra_heap = t->second.extra_heap;
                        if (std::isnan(r.libtorch_loss)) r.libtorch_loss = t->second.loss;
                    }
                    out.push_back(r);
                }
        });
    return out;
}

std::string human_bytes(double b) {
    if (b < 0 || std::isnan(b)) return "-";
    const char* units[] = {"B", "KiB", "MiB", "GiB"};
    int u = 0;
    while (b >= 1024 && u < 3) {
        b /= 1024;
        ++u;
    }
    char text[32];
    std::snprintf(text, sizeof text, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
    return text;
}
std::string number(double x, const char* format) {
    if (std::isnan(x) || std::isinf(x)) return "-";
    char text[32];
    std::snprintf(text, sizeof text, format, x);
    return text;
}

void print_tables(const std::vector<record>& records) {
    std::printf("\n(rows marked ! were timed while other processes kept more than 0.25 cores busy)\n");
    std::string current;
    for (const record& r : records) {
        const std::string group = r.method + " " + shape_label(r.dims);
        if (group != current) {
            current = group;
            std::printf("\n%s  %lld x %lld float32   bytes moved per call: %s\n", r.method.c_str(),
                        static_cast<long long>(r.dims.rows), static_cast<long long>(r.dims.cols),
                        human_bytes(static_cast<double>(r.bytes)).c_str());
            std::printf("  %-11s %3s %10s %7s %9s %8s %5s %12s %8s %12s %8s %18s %13s\n", "backend", "thr", "median ms",
                        "GB/s", "bound ms", "t/bound", "bw %", "LibTorch ms", "speed-up", "LT cached ms", "speed-up",
                        "extra heap", "LibTorch heap");
        }
        if (!r.error.empty()) {
            std::printf("  %-11s %3d   error: %s\n", r.backend.c_str(), r.threads, r.error.c_str());
            continue;
        }
        // '!': other processes kept more than a quarter of a core busy while this (or its probe) was timed.
        const bool shared = is_shared(r);
        std::printf("%c %-11s %3d %10s %7s %9s %8s %5s %12s %8s %12s %8s %18s %13s\n", shared ? '!' : ' ', r.backend.c_str(), r.threads,
                    number(r.median_ms, "%.3f").c_str(), number(r.gbps(), "%.2f").c_str(),
                    number(r.bound_ms, "%.3f").c_str(), number(r.of_bound(), "%.2fx").c_str(),
                    number(100.0 / r.of_bound(), "%.0f%%").c_str(), number(r.libtorch_ms, "%.3f").c_str(),
                    number(r.speedup(), "%.1fx").c_str(), number(r.libtorch_cached_ms, "%.3f").c_str(),
                    number(r.speedup_cached(), "%.1fx").c_str(),
                    (human_bytes(static_cast<double>(r.extra_heap)) +
                     (r.workspace ? " +" + human_bytes(static_cast<double>(r.workspace)) + " ws" : ""))
                        .c_str(),
                    human_bytes(static_cast<double>(r.libtorch_extra_heap)).c_str());
    }
}

/// The loss of every backend agrees with LibTorch's (relative 1e-3).
void check_losses(const std::vector<record>& records) {
    int warnings = 0;
    for (const record& r : records) {
        if (std::isnan(r.libtorch_loss) || std::isnan(r.loss)) continue;
        const double diff = std::fabs(r.loss - r.libtorch_loss), scale = std::fabs(r.libtorch_loss);
        if (!(diff <= 1e-3 * scale + 1e-6)) {
            std::printf("WARNING: %s %s %s threads %d: distill loss %.7g but LibTorch %.7g (relative %.2e)\n",
                        r.method.c_str(), shape_label(r.dims).c_str(), r.backend.c_str(), r.threads, r.loss,
                        r.libtorch_loss, diff / scale);
            ++warnings;
        }
    }
    if (warnings == 0) std::printf("\nloss check: every distill loss matches LibTorch's within 1e-3 relative\n");
}

// ---------------------------------------------------------------- targets of issue 4

struct target_result {
    std::string name;
    bool met;
    std::string detail;
    bool informational = false;  ///< not a target of the issue: context for one (printed as "info")
};

const record* find(const std::vector<record>& records, const std::string& method, const shape& s,
                   const std::string& backend, int threads) {
    for (const record& r : records)
        if (r.method == method && r.dims == s && r.backend == backend && r.threads == threads && r.error.empty())
            return &r;
    return nullptr;
}

std::vector<target_result> evaluate_targets(const std::vector<record>& records, const settings& cfg) {
    std::vector<target_result> results;
    const char* divergences[] = {"kd", "reverse_kd", "jsd", "tvd"};
    auto add = [&](std::string name, bool met, std::string detail) { results.push_back({name, met, detail}); };
    char text[256];
    for (const shape& s : cfg.shapes)
        for (const std::string& backend : cfg.backends)
            for (const char* method : divergences) {
                const record* r = find(records, method, s, backend, 1);
                if (!r) continue;
                if (is_large(s) && !std::isnan(r->bound_ms)) {
                    std::snprintf(text, sizeof text, "%.1f ms vs bound %.1f ms: %.2fx (target <= 2x)", r->median_ms,
                                  r->bound_ms, r->of_bound());
                    add(std::string(method) + " " + shape_label(s) + " " + backend + " 1 thread: time <= 2 x bound",
                        r->of_bound() <= 2.0, text);
                }
                const double want = is_large(s) ? 10.0 : 3.0;
                if (!std::isnan(r->libtorch_ms)) {
                    std::snprintf(text, sizeof text, "%.3f ms vs LibTorch %.3f ms: %.1fx (target >= %.0fx)", r->median_ms,
                                  r->libtorch_ms, r->speedup(), want);
                    add(std::string(method) + " " + shape_label(s) + " " + backend + " 1 thread: >= " +
                            (is_large(s) ? "10" : "3") + "x LibTorch",
                        r->speedup() >= want, text);
                }
                if (!std::isnan(r->libtorch_cached_ms)) {
                    std::snprintf(text, sizeof text, "%.3f ms vs LibTorch on a caching allocator %.3f ms: %.1fx",
                                  r->median_ms, r->libtorch_cached_ms, r->speedup_cached());
                    results.push_back({std::string(method) + " " + shape_label(s) + " " + backend + " 1 thread: >= " +
                                           (is_large(s) ? "10" : "3") + "x LibTorch (cached allocator)",
                                       r->speedup_cached() >= want, text, true});
                }
            }
    // Extra heap O(N): what a call allocates (plus its workspace) per row stays bounded as C grows.
    for (const record& r : records) {
        if (r.extra_heap < 0) continue;
        const double per_row = static_cast<double>(r.extra_heap + static_cast<std::int64_t>(r.workspace)) /
                               static_cast<double>(r.dims.rows);
        // 16 bytes per row (a loss and a d/dT per row) plus 64 KiB of fixed scratch (per-thread partials).
        const bool met = r.extra_heap + static_cast<std::int64_t>(r.workspace) <= 16 * r.dims.rows + 65536;
        if (!met || (is_large(r.dims) && r.threads == 1)) {
            std::snprintf(text, sizeof text, "%s in the call + %s workspace (%.1f B per row; limit 16 B/row + 64 KiB)",
                          human_bytes(static_cast<double>(r.extra_heap)).c_str(),
                          human_bytes(static_cast<double>(r.workspace)).c_str(), per_row);
            add(r.method + " " + shape_label(r.dims) + " " + r.backend + " " + std::to_string(r.threads) +
                    " thread(s): extra heap O(N)",
                met, text);
        }
    }
    // Thrust/OMP scales: 2 threads >= 1.5x faster than 1 at the large shapes.
    for (const shape& s : cfg.shapes) {
        if (!is_large(s)) continue;
        for_each_case([&](const auto& c) {
            const record* one = find(records, c.name, s, "thrust_omp", 1);
            const record* two = find(records, c.name, s, "thrust_omp", 2);
            if (!one || !two) return;
            const double speedup = one->median_ms / two->median_ms;
            std::snprintf(text, sizeof text, "%.1f ms -> %.1f ms: %.2fx (target >= 1.5x)%s", one->median_ms,
                          two->median_ms, speedup, is_shared(*one) || is_shared(*two) ? "; machine shared while timed" : "");
            add(std::string(c.name) + " " + shape_label(s) + " thrust_omp: 2 threads >= 1.5x 1 thread", speedup >= 1.5,
                text);
        });
    }
    return results;
}

void print_targets(const std::vector<target_result>& targets) {
    int met = 0, counted = 0;
    std::printf("\nTargets of issue 4 (info: the same bar against LibTorch on a caching allocator, not a target)\n");
    for (const target_result& t : targets) {
        std::printf("  %-4s %-72s %s\n", t.informational ? (t.met ? "info" : "info") : (t.met ? "MET" : "MISS"),
                    t.name.c_str(), t.detail.c_str());
        if (!t.informational) {
            met += t.met;
            ++counted;
        }
    }
    std::printf("  %d of %d met\n", met, counted);
}

// ---------------------------------------------------------------- JSON

std::string json_number(double x) {
    if (std::isnan(x) || std::isinf(x)) return "null";
    char text[40];
    std::snprintf(text, sizeof text, "%.6g", x);
    return text;
}
std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (char ch : s) {
        if (ch == '"' || ch == '\\') out += '\\';
        if (static_cast<unsigned char>(ch) < 0x20) {
            out += ' ';
            continue;
        }
        out += ch;
    }
    return out + "\"";
}

std::string json_array(const std::vector<double>& values) {
    std::string out = "[";
    for (std::size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + json_number(values[i]);
    return out + "]";
}

std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    for (std::string line; std::getline(in, line);)
        if (line.rfind("model name", 0) == 0) {
            const auto colon = line.find(':');
            return colon == std::string::npos ? line : line.substr(colon + 2);
        }
    return "unknown";
}

void write_json(const std::string& path, const std::vector<record>& records, const std::vector<target_result>& targets,
                const settings& cfg, const machine_load& load) {
    std::ofstream out(path);
    if (!out) {
        std::fprintf(stderr, "distill_bench: cannot write %s\n", path.c_str());
        return;
    }
    const std::time_t now = std::time(nullptr);
    char date[32];
    std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    out << "{\n  \"context\": {\n";
    out << "    \"date\": " << json_string(date) << ",\n";
    out << "    \"cpu\": " << json_string(cpu_model()) << ",\n";
    out << "    \"cores\": " << sysconf(_SC_NPROCESSORS_ONLN) << ",\n";
    out << "    \"compiler\": " << json_string(std::string("g++ ") + __VERSION__) << ",\n";
    out << "    \"flags\": " << json_string(DISTILL_BENCH_FLAGS) << ",\n";
    out << "    \"dtype\": \"float32\",\n";
    out << "    \"thrust\": " << json_string(std::to_string(THRUST_MAJOR_VERSION) + "." + std::to_string(THRUST_MINOR_VERSION) + "." + std::to_string(THRUST_SUBMINOR_VERSION) + " (OMP device system)") << ",\n";
#if DISTILL_BENCH_HAS_TORCH
    out << "    \"libtorch\": " << json_string(TORCH_VERSION) << ",\n";
#else
    out << "    \"libtorch\": null,\n";
#endif
    out << "    \"run_seconds\": " << json_number(load.wall_s) << ",\n";
    out << "    \"other_processes_cores\": " << json_number(load.other_cores) << ",\n";
    out << "    \"steal_cores\": " << json_number(load.steal_cores) << ",\n";
    out << "    \"libtorch_allocator\": \"libtorch_ms: LibTorch's default CPU allocator (glibc malloc); "
           "libtorch_cached_ms: a caching allocator (freed blocks reused by size, one untimed warm-up step)\",\n";
    out << "    \"quick\": " << (cfg.quick ? "true" : "false") << ",\n";
    out << "    \"repetitions\": {\"small\": " << cfg.small_repetitions << ", \"large\": " << cfg.large_repetitions
        << ", \"large_libtorch\": " << cfg.large_peer_repetitions << "},\n";
#if DISTILL_BENCH_COUNTS_MALLOC
    out << "    \"heap_accounting\": \"glibc malloc family interposed (operator new, std::malloc, posix_memalign)\"\n";
#else
    out << "    \"heap_accounting\": \"none\"\n";
#endif
    out << "  },\n  \"records\": [\n";
    for (std::size_t i = 0; i < records.size(); ++i) {
        const record& r = records[i];
        out << "    {\"method\": " << json_string(r.method) << ", \"shape\": " << json_string(shape_label(r.dims))
            << ", \"rows\": " << r.dims.rows << ", \"cols\": " << r.dims.cols << ", \"dtype\": \"float32\""
            << ", \"backend\": " << json_string(r.backend) << ", \"threads\": " << r.threads
            << ", \"median_ms\": " << json_number(r.median_ms) << ", \"repetitions\": " << r.repetitions
            << ", \"bytes_moved\": " << r.bytes << ", \"gbps\": " << json_number(r.gbps())
            << ", \"probe_gbps\": " << json_number(r.probe_gbps) << ", \"bound_ms\": " << json_number(r.bound_ms)
            << ", \"bound_probe\": " << json_string(r.paired_probe ? "paired" : "benchmark")
            << ", \"probe_benchmark_gbps\": " << json_number(r.probe_benchmark_gbps)
            << ", \"time_over_bound\": " << json_number(r.of_bound())
            << ", \"bound_fraction\": " << json_number(1.0 / r.of_bound())
            << ", \"libtorch_ms\": " << json_number(r.libtorch_ms)
            << ", \"libtorch_cached_ms\": " << json_number(r.libtorch_cached_ms)
            << ", \"speedup_vs_libtorch\": " << json_number(r.speedup())
            << ", \"speedup_vs_libtorch_cached\": " << json_number(r.speedup_cached())
            << ", \"extra_heap_bytes\": " << (r.extra_heap < 0 ? std::string("null") : std::to_string(r.extra_heap))
            << ", \"workspace_bytes\": " << r.workspace << ", \"libtorch_extra_heap_bytes\": "
            << (r.libtorch_extra_heap < 0 ? std::string("null") : std::to_string(r.libtorch_extra_heap))
            << ", \"other_load_cores\": " << json_number(r.other_load)
            << ", \"probe_other_load_cores\": " << json_number(r.probe_other_load)
            << ", \"loss\": " << json_number(r.loss) << ", \"libtorch_loss\": " << json_number(r.libtorch_loss)
            << ", \"times_ms\": " << json_array(r.times_ms) << ", \"libtorch_times_ms\": " << json_array(r.libtorch_times_ms)
            << ", \"libtorch_cached_times_ms\": " << json_array(r.libtorch_cached_times_ms)
            << ", \"paired_probe_ms\": " << json_array(r.paired_probe_ms);
        if (!r.error.empty()) out << ", \"error\": " << json_string(r.error);
        out << "}" << (i + 1 < records.size() ? "," : "") << "\n";
    }
    out << "  ],\n  \"targets\": [\n";
    for (std::size_t i = 0; i < targets.size(); ++i)
        out << "    {\"target\": " << json_string(targets[i].name) << ", \"met\": " << (targets[i].met ? "true" : "false")
            << ", \"informational\": " << (targets[i].informational ? "true" : "false")
            << ", \"detail\": " << json_string(targets[i].detail) << "}" << (i + 1 < targets.size() ? "," : "") << "\n";
    out << "  ]\n}\n";
    std::printf("\nwrote %zu records to %s\n", records.size(), path.c_str());
}

// ---------------------------------------------------------------- Markdown

void write_markdown(const std::string& path, const std::vector<record>& records, const std::vector<target_result>& targets,
                    const settings& cfg, const machine_load& load) {
    std::ofstream out(path);
    if (!out) {
        std::fprintf(stderr, "distill_bench: cannot write %s\n", path.c_str());
        return;
    }
    out << "Measured on " << cpu_model() << " (" << sysconf(_SC_NPROCESSORS_ONLN) << " cores), g++ " << __VERSION__
        << " `" << DISTILL_BENCH_FLAGS << "`, float32"
#if DISTILL_BENCH_HAS_TORCH
        << ", LibTorch " << TORCH_VERSION
#endif
        << (cfg.quick ? ", --quick" : "") << ". Run time " << number(load.wall_s, "%.0f") << " s; other processes kept "
        << number(load.other_cores, "%.2f") << " cores busy on average; `!` marks rows timed while they kept more "
           "than 0.25 cores busy.\n\n";
    out << "| method | shape | backend | threads | median ms | GB/s | bound ms | time / bound | LibTorch ms | speed-up | "
           "LibTorch cached ms | speed-up | extra heap | workspace | LibTorch extra heap |\n";
    out << "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n";
    for (const record& r : records) {
        const bool shared = is_shared(r);
        out << "| " << r.method << " | " << shape_label(r.dims) << " | " << r.backend << " | " << r.threads
            << (shared ? " !" : "") << " | ";
        if (!r.error.empty()) {
            out << "error: " << r.error << " | | | | | | | | | | |\n";
            continue;
        }
        out << number(r.median_ms, "%.3f") << " | " << number(r.gbps(), "%.2f") << " | " << number(r.bound_ms, "%.3f")
            << " | " << number(r.of_bound(), "%.2f") << " | " << number(r.libtorch_ms, "%.3f") << " | "
            << number(r.speedup(), "%.1fx") << " | " << number(r.libtorch_cached_ms, "%.3f") << " | "
            << number(r.speedup_cached(), "%.1fx") << " | " << human_bytes(static_cast<double>(r.extra_heap)) << " | "
            << human_bytes(static_cast<double>(r.workspace)) << " | "
            << human_bytes(static_cast<double>(r.libtorch_extra_heap)) << " |\n";
    }
    int met = 0, counted = 0;
    for (const target_result& t : targets)
        if (!t.informational) {
            met += t.met;
            ++counted;
        }
    out << "\nTargets: " << met << " of " << counted << " met (rows marked info compare with LibTorch on a caching "
           "allocator; they are context, not targets).\n\n";
    out << "| target | met | measured |\n|---|---|---|\n";
    for (const target_result& t : targets)
        out << "| " << t.name << " | " << (t.informational ? (t.met ? "info: would be met" : "info: not met") : t.met ? "yes" : "**no**")
            << " | " << t.detail << " |\n";
    std::printf("wrote the Markdown tables to %s\n", path.c_str());
}

}  // namespace
}  // namespace distill_bench

int main(int argc, char** argv) {
    using namespace distill_bench;
    const std::optional<settings> parsed = parse(argc, argv);
    if (!parsed) return 0;
    const settings& cfg = *parsed;
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;

#if DISTILL_BENCH_HAS_TORCH
#endif
    [[maybe_unused]] bool torch = cfg.torch;
#if !DISTILL_BENCH_HAS_TORCH
    if (torch) std::printf("LibTorch was not found when the bench was built: libtorch_ms is null\n");
    torch = false;
#endif
    // Shape by shape (one shape's arrays live at a time), thread count by thread count: the
    // probe first, then every case on every backend and in LibTorch, side by side.
    for (const shape& s : cfg.shapes)
        for (int threads : cfg.threads) {
            register_probe(s, threads, cfg);
            for_each_case([&](const auto& c) {
                if (!wanted(cfg.methods, c.name)) return;
                for (const std::string& backend : cfg.backends) {
                    if (backend == eigen_kind::name) register_distill<eigen_kind>(c, s, threads, cfg);
                    else if (backend == thrust_omp_kind::name) register_distill<thrust_omp_kind>(c, s, threads, cfg);
                }
#if DISTILL_BENCH_HAS_TORCH
                // --quick: LibTorch's large-shape runs (seconds each) only single-threaded.
                if (torch && !(cfg.quick && is_large(s) && threads != 1)) register_torch(c, s, threads, cfg, false);
                if (torch && cfg.torch_cached && threads == 1) register_torch(c, s, threads, cfg, true);
#endif
            });
        }

    capture_reporter reporter;
    const cpu_sample before = cpu_sample::now();
    benchmark::RunSpecifiedBenchmarks(&reporter);
    const machine_load load = load_between(before, cpu_sample::now());

    const std::vector<record> records = collect(cfg);
    print_tables(records);
    check_losses(records);
    const std::vector<target_result> targets = evaluate_targets(records, cfg);
    print_targets(targets);
    std::printf("\nrun time %.0f s; other processes kept %.2f cores busy on average (steal %.2f cores)%s\n", load.wall_s,
                load.other_cores, load.steal_cores,
                load.other_cores > 0.25 ? ": the machine was shared, multi-thread numbers are pessimistic" : "");
    if (!cfg.json_path.empty()) write_json(cfg.json_path, records, targets, cfg, load);
    if (!cfg.markdown_path.empty()) write_markdown(cfg.markdown_path, records, targets, cfg, load);
    benchmark::Shutdown();
    return 0;
}
