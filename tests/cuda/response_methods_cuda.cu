// Every response method with the Thrust CUDA backend, built by nvcc: the build checks that each
// row kernel compiles as device code for sm_90. On a machine with a GPU it also compares each
// method's loss and gradient on the GPU with the CPU backend (the same kernels, run on the host
// by this translation unit); without a GPU it reports "skipped" (exit 77). The schemes built on
// the response kernels are here too: dml (three peers), multi_teacher (every ensemble mode), and
// run calls with grad_scale and accumulate into prefilled device gradients (kd, multi_teacher).
// Long rows (9 x 1000, 3 x 70001, masked classes) check the one-block-per-row kernels of kd,
// reverse_kd, jsd, tvd, skew_kd, dkd and kd_topk against the CPU.
#include <distill/schemes/multi_teacher.hpp>
#include <distill/schemes/mutual.hpp>
#include <distill/thrust.hpp>

#include <thrust/device_vector.h>
#include <thrust/host_vector.h>

#include <cuda_runtime.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <type_traits>
#include <vector>

namespace {

constexpr int skipped = 77;  // ctest SKIP_RETURN_CODE
constexpr long rows = 5, cols = 37, top_k = 4;

struct inputs {
    std::vector<float> student, teacher, extra, top_logprob;
    std::vector<std::int64_t> labels, top_index;
    inputs()
        : student(rows * cols), teacher(rows * cols), extra(rows * cols), top_logprob(rows * top_k), labels(rows),
          top_index(rows * top_k) {
        unsigned state = 12345u;
        auto next = [&] { return (state = state * 1664525u + 1013904223u) / 4294967296.0f * 6.0f - 3.0f; };
        for (auto& x : student) x = next();
        for (auto& x : teacher) x = next();
        for (auto& x : extra) x = next();
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

void report(const char* method, double loss, double worst, bool ok) {
    ok = ok && worst <= 1e-4;
    std::printf("%-16s loss %.6f  max |gpu - cpu| %.2e  %s\n", method, loss, worst, ok ? "ok" : "FAILED");
    failures += !ok;
}

/// The largest |host - device| over n values, host in host memory and device in device memory.
double worst_of(const float* host, const thrust::device_vector<float>& device, long n) {
    const thrust::host_vector<float> d = device;
    double worst = 0;
    for (long e = 0; e < n; ++e) worst = std::fmax(worst, std::fabs(static_cast<double>(host[e]) - d[e]));
    return worst;
}

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

/// Long rows (one GPU block per row, 256 threads as the lanes: many packs per row and a partial
/// last one), with masked classes (-inf logits): `both` masks the same classes in both rows (every
/// method stays finite), `mixed` masks some in the student, some in the teacher, some in both
/// (the KL methods are then infinite, so only the others run). The GPU against the CPU backend,
/// loss and gradient relative to their size.
enum class masking { none, both, mixed };
struct long_rows {
    long n, c;
    std::vector<float> student, teacher;
    std::vector<std::int64_t> labels;
    long_rows(long rows_, long cols_, masking masked) : n(rows_), c(cols_), student(rows_ * cols_), teacher(rows_ * cols_), labels(rows_) {
        unsigned state = 777u + static_cast<unsigned>(cols_);
        auto next = [&] { return (state = state * 1664525u + 1013904223u) / 4294967296.0f * 16.0f - 8.0f; };
        for (auto& x : student) x = next();
        for (auto& x : teacher) x = next();
        for (long i = 0; i < n; ++i) labels[i] = (i * 7919) % c;
        if (masked != masking::none)
            for (long e = 0; e < n * c; e += 97) {
                const bool mixed = masked == masking::mixed;
                if (!mixed || (e / 97) % 3 != 1) student[e] = -INFINITY;  // the student masked, or both
                if (!mixed || (e / 97) % 3 != 0) teacher[e] = -INFINITY;  // the teacher masked, or both
            }
    }
    template <class Loss, class Options>
    void check(const char* method, const Loss& loss, const Options& options) const {
        const auto hs = distill::make_view(student.data(), n, c), ht = distill::make_view(teacher.data(), n, c);
        const auto hy = distill::make_view(labels.data(), n);
        const thrust::device_vector<float> ds(student.begin(), student.end()), dt(teacher.begin(), teacher.end());
        const thrust::device_vector<std::int64_t> dy(labels.begin(), labels.end());
        const auto host = loss(hs, ht, hy, options);
        const auto device = loss(distill::as_matrix(ds, n, c), distill::as_matrix(dt, n, c), dy, options);
        const thrust::host_vector<float> grad(device.grad_student.storage_object());
        double worst = 0, largest = 0;
        for (long e = 0; e < n * c; ++e) {
            const double h = host.grad_student.data()[e];
            worst = std::fmax(worst, std::fabs(h - grad[e]));
            largest = std::fmax(largest, std::fabs(h));
        }
        const double loss_error = std::fabs(static_cast<double>(host.loss) - device.loss) / std::fmax(1.0, std::fabs(host.loss));
        const bool ok = host.status.ok() && device.status.ok() && std::isfinite(host.loss) && loss_error <= 1e-5 &&
                        worst <= 1e-4 * largest;
        std::printf("%-16s %ld x %-6ld loss %.6f  loss error %.1e  max |gpu - cpu| / max |grad| %.1e  %s\n", method, n, c,
                    static_cast<double>(host.loss), loss_error, largest > 0 ? worst / largest : worst, ok ? "ok" : "FAILED");
        failures += !ok;
    }
};

void check_long_rows() {
    for (const masking masked : {masking::none, masking::both, masking::mixed}) {
        for (const long cols_ : {1000L, 70001L}) {
            const long_rows in(cols_ > 10000 ? 3 : 9, cols_, masked);
            if (masked != masking::mixed) {
                in.check("kd", distill::kd, distill::kd_options{.temperature = 2.0});
                in.check("kd T = 0.5", distill::kd, distill::kd_options{.temperature = 0.5});
                in.check("reverse_kd", distill::reverse_kd, distill::reverse_kd_options{.temperature = 2.0});
                in.check("dkd", distill::dkd, distill::dkd_options{});
            }
            in.check("jsd", distill::jsd, distill::jsd_options{.temperature = 2.0, .beta = 0.3});
            in.check("jsd T = 0.5", distill::jsd, distill::jsd_options{.temperature = 0.5, .beta = 0.5});
            in.check("tvd", distill::tvd, distill::tvd_options{.temperature = 2.0});
            in.check("skew_kd", distill::skew_kd, distill::skew_kd_options{.alpha = 0.1});
            if (masked == masking::none) {  // (a masked student class at a teacher id: an infinite loss)
                // kd_topk: 64 distinct ids per row ((131 i + 997 j) mod C), log-probabilities -1 - j / 10.
                constexpr long k = 64;
                std::vector<std::int64_t> ids(in.n * k);
                std::vector<float> logprob(in.n * k);
                for (long i = 0; i < in.n; ++i)
                    for (long j = 0; j < k; ++j) {
                        ids[i * k + j] = (131 * i + 997 * j) % in.c;
                        logprob[i * k + j] = -1.0f - 0.1f * static_cast<float>(j);
                    }
                const thrust::device_vector<std::int64_t> dids(ids.begin(), ids.end());
                const thrust::device_vector<float> dlp(logprob.begin(), logprob.end());
                const auto hids = distill::make_view(ids.data(), in.n, k);
                const auto hlp = distill::make_view(logprob.data(), in.n, k);
                for (const bool renormalize : {false, true}) {
                    const distill::kd_topk_options o{.temperature = renormalize ? 2.0 : 1.0, .renormalize = renormalize};
                    in.check(renormalize ? "kd_topk renorm" : "kd_topk",
                             [&](const auto& s, const auto& t, const auto& y, const auto& opts) {
                                 (void)t;
                                 if constexpr (std::is_same_v<std::remove_cvref_t<decltype(y)>, thrust::device_vector<std::int64_t>>)
                                     return distill::kd_topk(s, distill::as_matrix(dids, in.n, k), distill::as_matrix(dlp, in.n, k), y, opts);
                                 else
                                     return distill::kd_topk(s, hids, hlp, y, opts);
                             },
                             o);
                }
            }
        }
    }
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
    const auto x = distill::make_view(in.extra.data(), rows, cols);
    if (!has_gpu) {
        std::printf("no CUDA device: every method compiled for the GPU; values not checked\n");
        return skipped;
    }
    const thrust::device_vector<float> ds(in.student.begin(), in.student.end()), dt(in.teacher.begin(), in.teacher.end()),
        dx(in.extra.begin(), in.extra.end()), dlp(in.top_logprob.begin(), in.top_logprob.end());
    const thrust::device_vector<std::int64_t> dy(in.labels.begin(), in.labels.end()),
        dids(in.top_index.begin(), in.top_index.end());
    const auto gs = distill::as_matrix(ds, rows, cols), gt = distill::as_matrix(dt, rows, cols),
               gx = distill::as_matrix(dx, rows, cols);
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

    // dml: three peers' losses and gradients.
    {
        const distill::dml_options o{.temperature = 2.0, .kl_weight = 0.5};
        const auto host = distill::dml(distill::teacher_views(s, t, x), y, o);
        const auto device = distill::dml(distill::teacher_views(gs, gt, gx), dy, o);
        double worst = std::fabs(static_cast<double>(host.total) - device.total);
        for (std::size_t k = 0; k < 3; ++k)
            worst = std::fmax(worst, worst_of(host.grad_peers[k].data(), device.grad_peers[k].storage_object(), rows * cols));
        report("dml", host.total, worst, host.status.ok() && device.status.ok());
    }
    // multi_teacher: two teachers, every ensemble mode (one kernel; the mode is a run-time choice).
    for (const auto mode : {distill::ensemble_mode::average_probabilities, distill::ensemble_mode::average_logits,
                            distill::ensemble_mode::confidence_weighted, distill::ensemble_mode::best_teacher}) {
        const distill::multi_teacher_options o{.temperature = 2.0, .mode = mode};
        compare("multi_teacher", distill::multi_teacher(s, distill::teacher_views(t, x), y, o),
                distill::multi_teacher(gs, distill::teacher_views(gt, gx), dy, o));
    }
    // grad_scale and accumulate: kd (with d/dT) and multi_teacher add -0.5 x their gradient to an
    // earlier one, through the run step into caller-owned device outputs.
    {
        std::vector<float> earlier(rows * cols);
        for (long e = 0; e < rows * cols; ++e) earlier[e] = 0.125f * static_cast<float>(e % 7) - 0.25f;
        const float scale = -0.5f, earlier_dt = 1.5f;
        std::vector<float> host_grad = earlier, host_loss(1), host_dt(1, earlier_dt), host_mt_grad = earlier, host_mt_loss(1);
        thrust::device_vector<float> grad(earlier.begin(), earlier.end()), loss(1), dtemp(1, earlier_dt),
            mt_grad(earlier.begin(), earlier.end()), mt_loss(1);
        const distill::kd_options ko{.temperature = 2.0};
        const distill::status host_kd = distill::run(
            ko, distill::make_response_args(s, t, y),
            distill::response_outputs<float>{distill::make_view(host_loss.data(), 1), distill::make_view(host_grad.data(), rows, cols),
                                             distill::make_view(host_dt.data(), 1), scale, true});
        const distill::response_outputs<float, distill::device_space> kd_outs{
            distill::as_view(loss), distill::as_matrix(grad, rows, cols), distill::as_view(dtemp), scale, true};
        const auto kd_args = distill::make_response_args(gs, gt, dy);
        thrust::device_vector<float> scratch(distill::workspace_bytes(ko, kd_args, kd_outs) / sizeof(float) + 1);
        const distill::status device_kd = distill::run(
            ko, kd_args, kd_outs, distill::workspace{thrust::raw_pointer_cast(scratch.data()), scratch.size() * sizeof(float)});
        double worst = std::fmax(worst_of(host_grad.data(), grad, rows * cols), worst_of(host_dt.data(), dtemp, 1));
        report("kd accumulate", host_loss[0], std::fmax(worst, worst_of(host_loss.data(), loss, 1)),
               host_kd.ok() && device_kd.ok() && host_dt[0] != earlier_dt);

        const distill::multi_teacher_options mo{.temperature = 2.0, .mode = distill::ensemble_mode::confidence_weighted};
        const auto host_teachers = distill::teacher_views(t, x);
        const auto device_teachers = distill::teacher_views(gt, gx);
        const distill::status host_mt = distill::run(
            mo, distill::multi_teacher_args<float>{s, host_teachers, y},
            distill::multi_teacher_outputs<float>{distill::make_view(host_mt_loss.data(), 1),
                                                  distill::make_view(host_mt_grad.data(), rows, cols), {}, scale, true});
        const distill::multi_teacher_args<float, distill::device_space> mt_args{gs, device_teachers, distill::as_view(dy)};
        const distill::multi_teacher_outputs<float, distill::device_space> mt_outs{
            distill::as_view(mt_loss), distill::as_matrix(mt_grad, rows, cols), {}, scale, true};
        thrust::device_vector<float> mt_scratch(distill::workspace_bytes(mo, mt_args, mt_outs) / sizeof(float) + 1);
        const distill::status device_mt =
            distill::run(mo, mt_args, mt_outs,
                         distill::workspace{thrust::raw_pointer_cast(mt_scratch.data()), mt_scratch.size() * sizeof(float)});
        report("multi_teacher acc", host_mt_loss[0],
               std::fmax(worst_of(host_mt_grad.data(), mt_grad, rows * cols), worst_of(host_mt_loss.data(), mt_loss, 1)),
               host_mt.ok() && device_mt.ok());
    }
    check_long_rows();
    return failures == 0 ? 0 : 1;
}
