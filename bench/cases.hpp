// bench/cases.hpp: what the benchmarks measure, shared by the CPU bench (distill_bench.cpp)
// and the CUDA bench (distill_bench_cuda.cu).
//
// A case is one method with fixed options. It knows the bytes a call must move at least (the
// numerator of GB/s and of the bandwidth bound) and how to build distill's arguments from the
// bench's raw arrays for a given memory policy (Eigen maps, Thrust device pointers, ...), so
// the same table runs on every backend. Adding a method is one line in `cases` below (plus,
// optionally, a LibTorch peer in distill_bench.cpp); a method whose inputs are not a pair of
// N x C matrices (feature maps, relation matrices) adds a case type with the same four members
// (name, bytes_moved, workspace_bytes, run) and, if it needs new arrays, a field in `arrays`.
#pragma once

#include <distill/distill.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <tuple>

namespace distill_bench {

using index_t = std::int64_t;

/// One problem size: N rows (samples, tokens) of C columns (classes, vocabulary).
struct shape {
    index_t rows = 0, cols = 0;
    constexpr index_t elements() const noexcept { return rows * cols; }
    friend constexpr bool operator==(const shape&, const shape&) = default;
};

/// The sizes of issue 4: two small classification batches, then an LLM-style batch at a 32k
/// vocabulary (Llama 2) and one at a 128k vocabulary (Llama 3).
inline constexpr shape all_shapes[] = {{256, 100}, {128, 1000}, {4096, 32000}, {1024, 128256}};
/// Shapes at or above this many elements are "large": fewer repetitions, and the targets that
/// name the large shapes apply to them.
inline constexpr index_t large_elements = index_t(1) << 24;
constexpr bool is_large(const shape& s) noexcept { return s.elements() >= large_elements; }

/// The raw arrays of one shape, in the memory of the backend under test (host or device),
/// owned by the bench. Each case reads what it needs.
struct arrays {
    shape dims;
    index_t top_k = 0;
    float* student = nullptr;       ///< N x C logits
    float* teacher = nullptr;       ///< N x C logits
    float* grad = nullptr;          ///< N x C output: d loss / d student
    float* loss = nullptr;          ///< 1 value
    std::int64_t* labels = nullptr; ///< N labels in [0, C)
    std::int64_t* top_index = nullptr;  ///< N x top_k distinct ids per row
    float* top_logprob = nullptr;       ///< N x top_k teacher log-probabilities
};

// A Memory policy presents raw pointers to distill: Memory::matrix(p, rows, cols) and
// Memory::vector(p, n) return tensors (Eigen maps, strided views, ...) in one memory space.
template <class Memory, class T>
auto output_view(T* p, index_t rows, index_t cols) {
    const auto v = distill::as_view(Memory::matrix(p, rows, cols));
    return distill::any_view<T, typename decltype(v)::memory_space>(v);
}
template <class Memory, class T>
auto output_vector(T* p, index_t n) {
    const auto v = distill::as_view(Memory::vector(p, n));
    return distill::any_view<T, typename decltype(v)::memory_space>(v);
}

/// A row-wise response method: student and teacher logits (and labels when the method needs
/// them) in; the batchmean loss and d loss / d student out.
/// The workspace query and the run step of a case, from its with_call (which builds the call's
/// arguments and outputs over the arrays) and its options.
template <class Case>
struct case_calls {
    template <class Memory, class Backend>
    std::size_t workspace_bytes(const Backend& backend, const arrays& a) const {
        const Case& self = static_cast<const Case&>(*this);
        return self.template with_call<Memory>(a, [&](const auto& args, const auto& outs) {
            return distill::workspace_bytes(backend, self.options, args, outs);
        });
    }
    template <class Memory, class Backend>
    distill::status run(const Backend& backend, const arrays& a, distill::workspace ws) const {
        const Case& self = static_cast<const Case&>(*this);
        return self.template with_call<Memory>(a, [&](const auto& args, const auto& outs) {
            return distill::run(backend, self.options, args, outs, ws);
        });
    }
};

template <class Options>
struct response_case : case_calls<response_case<Options>> {
    const char* name;
    Options options;
    bool with_labels = false;

    /// Both logit matrices (and the labels) read once, the gradient written once.
    std::size_t bytes_moved(const shape& s) const noexcept {
        const std::size_t matrix = static_cast<std::size_t>(s.elements()) * sizeof(float);
        return 3 * matrix + (with_labels ? static_cast<std::size_t>(s.rows) * sizeof(std::int64_t) : 0);
    }

    template <class Memory, class F>
    auto with_call(const arrays& a, F&& f) const {
        const index_t n = a.dims.rows, c = a.dims.cols;
        const auto student = Memory::matrix(static_cast<const float*>(a.student), n, c);
        const auto teacher = Memory::matrix(static_cast<const float*>(a.teacher), n, c);
        const auto labels = Memory::vector(static_cast<const std::int64_t*>(a.labels), n);
        const auto args = with_labels ? distill::make_response_args(student, teacher, labels)
                                      : distill::make_response_args(student, teacher);
        using space = typename decltype(args)::memory_space;
        const distill::response_outputs<float, space> outs{output_vector<Memory>(a.loss, 1),
                                                           output_view<Memory>(a.grad, n, c)};
        return f(args, outs);
    }
};

/// kd_topk: N x V student logits and the teacher's N x k ids and log-probabilities in; the
/// batchmean loss and the N x V student gradient out.
template <class Options>
struct topk_case : case_calls<topk_case<Options>> {
    const char* name;
    Options options;
    index_t k;

    /// Student read once, gradient written once, and the k ids (int64) and log-probabilities.
    std::size_t bytes_moved(const shape& s) const noexcept {
        const std::size_t matrix = static_cast<std::size_t>(s.elements()) * sizeof(float);
        const std::size_t teacher = static_cast<std::size_t>(s.rows * k) * (sizeof(std::int64_t) + sizeof(float));
        return 2 * matrix + teacher;
    }

    template <class Memory, class F>
    auto with_call(const arrays& a, F&& f) const {
        const index_t n = a.dims.rows, c = a.dims.cols;
        const auto args = distill::make_topk_args(Memory::matrix(static_cast<const float*>(a.student), n, c),
                                                  Memory::matrix(static_cast<const std::int64_t*>(a.top_index), n, k),
                                                  Memory::matrix(static_cast<const float*>(a.top_logprob), n, k));
        using space = typename decltype(args)::memory_space;
        const distill::response_outputs<float, space> outs{output_vector<Memory>(a.loss, 1),
                                                           output_view<Memory>(a.grad, n, c)};
        return f(args, outs);
    }
};

/// The largest top-k any case uses (the bench allocates the teacher's top-k arrays once).
inline constexpr index_t max_top_k = 64;

/// The table of cases. Options are the float ones, so the float path runs without doubles.
/// Temperatures: 2 for the divergences (a common KD setting), mdistiller's defaults for dkd,
/// and T = 1 without renormalisation for kd_topk (verl's stored-log-probability setting).
inline const auto cases = std::tuple{
    response_case<distill::kd_float_options>{{}, "kd", {.temperature = 2.0f}},
    response_case<distill::reverse_kd_float_options>{{}, "reverse_kd", {.temperature = 2.0f}},
    response_case<distill::jsd_float_options>{{}, "jsd", {.temperature = 2.0f, .beta = 0.5f}},
    response_case<distill::tvd_float_options>{{}, "tvd", {.temperature = 2.0f}},
    response_case<distill::dkd_float_options>{{}, "dkd", {.temperature = 4.0f, .alpha = 1.0f, .beta = 8.0f}, true},
    topk_case<distill::kd_topk_float_options>{{}, "kd_topk", {.temperature = 1.0f}, 64},
};

/// Calls f(case) for every case of the table, in order.
template <class F>
void for_each_case(F&& f) {
    std::apply([&](const auto&... c) { (f(c), ...); }, cases);
}

// ---------------------------------------------------------------- deterministic inputs

/// A value in [-1, 1) from an index (splitmix64): inputs can be filled in parallel, in any memory.
constexpr float unit_noise(std::uint64_t i) noexcept {
    std::uint64_t z = i + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return static_cast<float>(z >> 40) * (2.0f / 16777216.0f) - 1.0f;
}
/// Logits: uniform in [-4, 4), different streams for student and teacher (KL of order 1, so
/// the loss comparison with LibTorch is not a comparison of two rounding errors).
constexpr float student_logit(index_t e) noexcept { return 4.0f * unit_noise(static_cast<std::uint64_t>(e)); }
constexpr float teacher_logit(index_t e) noexcept { return 4.0f * unit_noise(static_cast<std::uint64_t>(e) + (1ull << 40)); }
constexpr std::int64_t label_at(index_t i, index_t cols) noexcept {
    return static_cast<std::int64_t>((static_cast<std::uint64_t>(i) * 2654435761ull) % static_cast<std::uint64_t>(cols));
}
/// Top-k ids spread over the vocabulary, distinct within a row: (i + j * (V / k)) mod V.
constexpr std::int64_t top_index_at(index_t i, index_t j, index_t cols, index_t k) noexcept {
    const index_t spacing = cols / k > 0 ? cols / k : 1;
    return static_cast<std::int64_t>((i * 7919 + j * spacing) % cols);
}
/// Top-k log-probabilities: 90% of the mass on the k ids, decaying geometrically (ratio 0.9).
inline float top_logprob_at(index_t j, index_t k) noexcept {
    const double ratio = 0.9, first = 0.9 * (1 - ratio) / (1 - std::pow(ratio, static_cast<double>(k)));
    return static_cast<float>(std::log(first) + static_cast<double>(j) * std::log(ratio));
}

}  // namespace distill_bench
