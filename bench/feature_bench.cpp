// bench/feature_bench.cpp: the feature- and relation-method benchmark (issue 5).
//
// Single thread, float32. For every case it times, in one run:
//   * distill's run step on the CPU backend (Eigen path; caller-owned outputs and workspace,
//     allocated outside the timed loop);
//   * the bound: for GEMM-bound methods (sp, rkd) the Eigen matrix products of the sizes the
//     method needs, each product size timed here and multiplied by how many the method needs;
//     for the element-wise and map methods (hint, at) the bandwidth probe out = a + b over the
//     student-sized arrays (read student and teacher, write the gradient);
//   * LibTorch's forward + backward of the loss as RepDistiller writes it (when built with
//     LibTorch), on whichever BLAS libblas.so.3 resolves to (printed; see bench/README.md).
// It prints a table and, with --json FILE, writes one record per case with method, shape,
// backend, threads, median_ms, bound_ms, bound_kind, libtorch_ms (null when absent), blas.
//
//   distill_feature_bench [--quick] [--methods sp,rkd,...] [--json FILE] [--markdown FILE]
#include <distill/eigen.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#if DISTILL_BENCH_HAS_TORCH
#include <torch/torch.h>
#endif

#ifndef DISTILL_BENCH_FLAGS
#define DISTILL_BENCH_FLAGS "unknown"
#endif

namespace {

using index_t = std::int64_t;
using clock_type = std::chrono::steady_clock;
using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct settings {
    bool quick = false;
    std::vector<std::string> methods;
    std::string json, markdown;
};

/// The median of repeated timings of f (ms): at least `min_reps` calls and `min_seconds` in all,
/// after one untimed warm-up call.
double median_ms(const std::function<void()>& f, const settings& s) {
    const auto warm_start = clock_type::now();
    f();
    const double warm_seconds = std::chrono::duration<double>(clock_type::now() - warm_start).count();
    // Calls of seconds (rkd at N = 512): a few repetitions are enough for a median.
    const int min_reps = warm_seconds > 2 ? (s.quick ? 1 : 3) : (s.quick ? 3 : 7);
    const double min_seconds = s.quick ? 0.2 : 1.0;
    std::vector<double> times;
    const auto start = clock_type::now();
    while (static_cast<int>(times.size()) < min_reps ||
           std::chrono::duration<double>(clock_type::now() - start).count() < min_seconds) {
        const auto t0 = clock_type::now();
        f();
        times.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());
        if (times.size() >= 200) break;
    }
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}

/// Inputs in [-1, 1) from a seed (splitmix64), so every run sees the same data.
std::vector<float> noise(std::size_t n, std::uint64_t seed) {
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) {
        std::uint64_t z = i + seed * 0x9E3779B97F4A7C15ull + 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        v[i] = static_cast<float>(z >> 40) * (2.0f / 16777216.0f) - 1.0f;
    }
    return v;
}

/// One timed product C (m x n) = A (m x k) B (k x n) with Eigen, in ms.
double gemm_ms(index_t m, index_t k, index_t n, const settings& s) {
    row_matrix a = row_matrix::Random(m, k), b = row_matrix::Random(k, n), c(m, n);
    return median_ms([&] { c.noalias() = a * b; }, s);
}

/// The bandwidth probe over arrays of `elements` floats: out = a + b (read two, write one).
double probe_ms(index_t elements, const settings& s) {
    std::vector<float> a = noise(static_cast<std::size_t>(elements), 1), b = noise(static_cast<std::size_t>(elements), 2),
                       out(static_cast<std::size_t>(elements));
    return median_ms(
        [&] {
            const float* __restrict pa = a.data();
            const float* __restrict pb = b.data();
            float* __restrict po = out.data();
            for (index_t e = 0; e < elements; ++e) po[e] = pa[e] + pb[e];
        },
        s);
}

/// A bench case: a method, the student and teacher shapes, how to time distill and LibTorch,
/// and the bound.
struct record {
    std::string method, shape;
    double median_ms = 0, bound_ms = 0, libtorch_ms = -1;
    std::string bound_kind;
};

struct dense_input {
    std::vector<index_t> shape, strides;
    std::vector<float> values;
    dense_input(std::vector<index_t> s, std::uint64_t seed) : shape(std::move(s)) {
        strides.resize(shape.size());
        index_t stride = 1;
        for (std::size_t r = shape.size(); r-- > 0;) {
            strides[r] = stride;
            stride *= shape[r];
        }
        values = noise(static_cast<std::size_t>(stride), seed);
    }
    index_t size() const { return static_cast<index_t>(values.size()); }
    distill::any_view<const float> view() const {
        return distill::any_view<const float>(values.data(), static_cast<int>(shape.size()), shape.data(), strides.data());
    }
    distill::any_view<float> out_view(std::vector<float>& storage) const {
        storage.assign(values.size(), 0.0f);
        return distill::any_view<float>(storage.data(), static_cast<int>(shape.size()), shape.data(), strides.data());
    }
#if DISTILL_BENCH_HAS_TORCH
    torch::Tensor tensor() const {
        return torch::from_blob(const_cast<float*>(values.data()), shape, torch::kFloat32).clone();
    }
#endif
};

/// distill's run step on caller-owned outputs and workspace, in ms.
template <class Options>
double distill_ms(const Options& opts, const dense_input& student, const dense_input& teacher, const settings& s) {
    distill::feature_args<float> args;
    args.student = student.view();
    args.teacher = teacher.view();
    std::vector<float> loss(1), grad;
    distill::feature_outputs<float> outs{distill::make_view(loss.data(), 1), student.out_view(grad)};
    const std::size_t bytes = distill::workspace_bytes(opts, args, outs);
    std::vector<float> scratch(bytes / sizeof(float) + 1);
    const distill::workspace ws{scratch.data(), bytes};
    if (const distill::status st = distill::run(opts, args, outs, ws); !st) {
        std::fprintf(stderr, "distill run failed: %s\n", st.message());
        std::exit(1);
    }
    return median_ms([&] { (void)distill::run(opts, args, outs, ws); }, s);
}

#if DISTILL_BENCH_HAS_TORCH
namespace F = torch::nn::functional;

double torch_ms(const std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>& loss,
                const dense_input& student, const dense_input& teacher, const settings& s) {
    const torch::Tensor st = student.tensor(), tt = teacher.tensor();
    return median_ms(
        [&] {
            torch::Tensor x = st.detach().requires_grad_(true);
            torch::Tensor value = loss(x, tt);
            value.backward();
        },
        s);
}

/// RepDistiller SP.py (Similarity).
torch::Tensor torch_sp(const torch::Tensor& s, const torch::Tensor& t) {
    const auto n = s.size(0);
    auto gs = s.view({n, -1}).mm(s.view({n, -1}).t());
    gs = F::normalize(gs, F::NormalizeFuncOptions().p(2).dim(1));
    auto gt = t.view({n, -1}).mm(t.view({n, -1}).t());
    gt = F::normalize(gt, F::NormalizeFuncOptions().p(2).dim(1));
    const auto d = gt - gs;
    return (d * d).sum() / static_cast<double>(n * n);
}

/// RepDistiller RKD.py (RKDLoss, w_d = 25, w_a = 50).
torch::Tensor torch_pdist(const torch::Tensor& e) {
    const auto sq = e.pow(2).sum(1);
    const auto prod = e.mm(e.t());
    auto res = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * prod).clamp_min(1e-12).sqrt().clone();
    const auto n = e.size(0);
    const auto idx = torch::arange(n);
    res.index_put_({idx, idx}, 0);
    return res;
}
torch::Tensor torch_rkd(const torch::Tensor& s0, const torch::Tensor& t0) {
    const auto n = s0.size(0);
    const auto s = s0.view({n, -1}), t = t0.view({n, -1});
    torch::Tensor t_d, t_angle;
    {
        torch::NoGradGuard no_grad;
        t_d = torch_pdist(t);
        t_d = t_d / t_d.index({t_d > 0}).mean();
        const auto td = F::normalize(t.unsqueeze(0) - t.unsqueeze(1), F::NormalizeFuncOptions().p(2).dim(2));
        t_angle = torch::bmm(td, td.transpose(1, 2)).view(-1);
    }
    auto d = torch_pdist(s);
    d = d / d.index({d > 0}).mean();
    const auto loss_d = F::smooth_l1_loss(d, t_d);
    const auto sd = F::normalize(s.unsqueeze(0) - s.unsqueeze(1), F::NormalizeFuncOptions().p(2).dim(2));
    const auto s_angle = torch::bmm(sd, sd.transpose(1, 2)).view(-1);
    const auto loss_a = F::smooth_l1_loss(s_angle, t_angle);
    return 25 * loss_d + 50 * loss_a;
}

/// RepDistiller AT.py (Attention, p = 2).
torch::Tensor torch_at_map(const torch::Tensor& f) {
    return F::normalize(f.pow(2).mean(1).view({f.size(0), -1}), F::NormalizeFuncOptions().p(2).dim(1));
}
torch::Tensor torch_at(const torch::Tensor& s, const torch::Tensor& t) {
    return (torch_at_map(s) - torch_at_map(t)).pow(2).mean();
}

/// RepDistiller FitNet.py (HintLoss: nn.MSELoss).
torch::Tensor torch_hint(const torch::Tensor& s, const torch::Tensor& t) { return F::mse_loss(s, t); }
#endif

std::string shape_text(const std::vector<index_t>& shape) {
    std::string out;
    for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? "x" : "") + std::to_string(shape[i]);
    return out;
}

bool wanted(const settings& s, const std::string& method) {
    return s.methods.empty() || std::find(s.methods.begin(), s.methods.end(), method) != s.methods.end();
}

std::string which_blas() {
    std::error_code ec;
    const auto target = std::filesystem::canonical("/usr/lib/x86_64-linux-gnu/libblas.so.3", ec);
    return ec ? std::string("unknown") : target.string();
}

}  // namespace

int main(int argc, char** argv) {
    settings s;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--quick") s.quick = true;
        else if (arg == "--json" && i + 1 < argc) s.json = argv[++i];
        else if (arg == "--markdown" && i + 1 < argc) s.markdown = argv[++i];
        else if (arg == "--methods" && i + 1 < argc) {
            std::string list = argv[++i];
            for (std::size_t p = 0; p <= list.size();) {
                const std::size_t q = std::min(list.find(',', p), list.size());
                if (q > p) s.methods.push_back(list.substr(p, q - p));
                p = q + 1;
            }
        } else {
            std::fprintf(stderr, "usage: distill_feature_bench [--quick] [--methods sp,rkd,at,hint] [--json FILE] [--markdown FILE]\n");
            return arg == "--help" || arg == "-h" ? 0 : 2;
        }
    }
    Eigen::setNbThreads(1);
#if DISTILL_BENCH_HAS_TORCH
    at::set_num_threads(1);
    const bool have_torch = true;
#else
    const bool have_torch = false;
#endif
    const std::string blas = which_blas();
    std::printf("distill feature bench: single thread, float32, flags %s, Eigen %d.%d.%d\n", DISTILL_BENCH_FLAGS,
                EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION);
    std::printf("LibTorch: %s; libblas.so.3 -> %s\n\n", have_torch ? "yes" : "not built", blas.c_str());

    std::vector<record> records;
    auto add = [&](record r) {
        std::printf("%-5s %-16s distill %10.3f ms  bound %10.3f ms (%s) = %5.2fx", r.method.c_str(), r.shape.c_str(),
                    r.median_ms, r.bound_ms, r.bound_kind.c_str(), r.median_ms / r.bound_ms);
        if (r.libtorch_ms >= 0) std::printf("  libtorch %10.3f ms  speed-up %6.2fx", r.libtorch_ms, r.libtorch_ms / r.median_ms);
        std::printf("\n");
        std::fflush(stdout);
        records.push_back(std::move(r));
    };

    const index_t batch_sizes[] = {64, 256, 512};
    const index_t widths[] = {128, 2048};
    // sp: two N x N x D Gram products and the N x N x D gradient product.
    if (wanted(s, "sp"))
        for (index_t n : batch_sizes)
            for (index_t d : widths) {
                const dense_input student({n, d}, 1), teacher({n, d}, 2);
                record r{"sp", shape_text(student.shape)};
                r.median_ms = distill_ms(distill::sp_float_options{}, student, teacher, s);
                r.bound_ms = 2 * gemm_ms(n, d, n, s) + gemm_ms(n, n, d, s);
                r.bound_kind = "3 GEMM";
#if DISTILL_BENCH_HAS_TORCH
                r.libtorch_ms = torch_ms(torch_sp, student, teacher, s);
#endif
                add(r);
            }

    // rkd: per vertex (the angle term), the student's and the teacher's N x N x D Gram products
    // of normalised differences and the N x N x D gradient product: 3 N products.
    if (wanted(s, "rkd"))
        for (index_t n : batch_sizes)
            for (index_t d : widths) {
                const dense_input student({n, d}, 3), teacher({n, d}, 4);
                record r{"rkd", shape_text(student.shape)};
                r.median_ms = distill_ms(distill::rkd_float_options{}, student, teacher, s);
                r.bound_ms = static_cast<double>(n) * (2 * gemm_ms(n, d, n, s) + gemm_ms(n, n, d, s));
                r.bound_kind = "3N GEMM";
#if DISTILL_BENCH_HAS_TORCH
                r.libtorch_ms = torch_ms(torch_rkd, student, teacher, s);
#endif
                add(r);
            }

    // at and hint on 64 x 256 x 16 x 16 maps: memory-bound, so the bound is the bandwidth probe
    // (read student and teacher, write the gradient).
    const std::vector<index_t> maps{64, 256, 16, 16};
    if (wanted(s, "at")) {
        const dense_input student(maps, 5), teacher(maps, 6);
        record r{"at", shape_text(maps)};
        r.median_ms = distill_ms(distill::at_float_options{}, student, teacher, s);
        r.bound_ms = probe_ms(student.size(), s);
        r.bound_kind = "bandwidth";
#if DISTILL_BENCH_HAS_TORCH
        r.libtorch_ms = torch_ms(torch_at, student, teacher, s);
#endif
        add(r);
    }

    if (wanted(s, "hint")) {
        const dense_input student(maps, 7), teacher(maps, 8);
        record r{"hint", shape_text(maps)};
        r.median_ms = distill_ms(distill::hint_float_options{}, student, teacher, s);
        r.bound_ms = probe_ms(student.size(), s);
        r.bound_kind = "bandwidth";
#if DISTILL_BENCH_HAS_TORCH
        r.libtorch_ms = torch_ms(torch_hint, student, teacher, s);
#endif
        add(r);
    }

    if (!s.json.empty()) {
        std::FILE* f = std::fopen(s.json.c_str(), "w");
        if (!f) {
            std::fprintf(stderr, "cannot write %s\n", s.json.c_str());
            return 1;
        }
        std::fprintf(f, "{\n  \"flags\": \"%s\",\n  \"blas\": \"%s\",\n  \"records\": [\n", DISTILL_BENCH_FLAGS, blas.c_str());
        for (std::size_t i = 0; i < records.size(); ++i) {
            const record& r = records[i];
            std::fprintf(f,
                         "    {\"method\": \"%s\", \"shape\": \"%s\", \"backend\": \"eigen\", \"threads\": 1, "
                         "\"median_ms\": %.6g, \"bound_ms\": %.6g, \"bound_kind\": \"%s\", \"libtorch_ms\": ",
                         r.method.c_str(), r.shape.c_str(), r.median_ms, r.bound_ms, r.bound_kind.c_str());
            if (r.libtorch_ms >= 0) std::fprintf(f, "%.6g}", r.libtorch_ms);
            else std::fprintf(f, "null}");
            std::fprintf(f, "%s\n", i + 1 < records.size() ? "," : "");
        }
        std::fprintf(f, "  ]\n}\n");
        std::fclose(f);
    }
    if (!s.markdown.empty()) {
        std::FILE* f = std::fopen(s.markdown.c_str(), "w");
        if (!f) return 1;
        std::fprintf(f, "Single thread, float32, `%s`; LibTorch BLAS: `%s`.\n\n", DISTILL_BENCH_FLAGS, blas.c_str());
        std::fprintf(f, "| method | shape | distill ms | bound ms | bound | x bound | LibTorch ms | speed-up |\n");
        std::fprintf(f, "|---|---|---:|---:|---|---:|---:|---:|\n");
        for (const record& r : records) {
            std::fprintf(f, "| %s | %s | %.3f | %.3f | %s | %.2f |", r.method.c_str(), r.shape.c_str(), r.median_ms,
                         r.bound_ms, r.bound_kind.c_str(), r.median_ms / r.bound_ms);
            if (r.libtorch_ms >= 0) std::fprintf(f, " %.3f | %.2f |\n", r.libtorch_ms, r.libtorch_ms / r.median_ms);
            else std::fprintf(f, " - | - |\n");
        }
        std::fclose(f);
    }
    return 0;
}
