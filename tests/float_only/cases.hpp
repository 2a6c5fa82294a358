// tests/float_only/cases.hpp: every response loss, dist, kd_topk and the core schemes, called
// through their run steps with parameters of the element type T (basic_*_options<T>). Instantiated
// for float by float_path.cpp (compiled with -Werror=double-promotion) and for double by main.cpp,
// which compares the two.
#pragma once

#include <distill/distill.hpp>
#include <distill/schemes.hpp>

#include <cstddef>
#include <cstdint>

namespace float_only {

inline constexpr int n = 6, c = 10;
inline constexpr int method_count = 14;
inline constexpr const char* method_names[method_count] = {
    "kd (T = 4)", "kd (standardize)", "reverse_kd", "jsd", "skew_kd", "skew_reverse_kd", "tvd",
    "soft_ce",    "ce (smoothing)",   "logit_mse",  "dkd", "dist",    "kd_topk",         "dml"};

/// Outputs of every method: its loss, its N x C gradient, whether it ran.
template <class T>
struct results {
    T loss[method_count] = {};
    T grad[method_count][n * c] = {};
    T grad_temperature = 0;
    bool ok[method_count] = {};
};

template <class T>
void run_cases(const T* student, const T* teacher, const std::int32_t* labels, results<T>& r) noexcept {
    const auto s = distill::make_view(student, n, c);
    const auto t = distill::make_view(teacher, n, c);
    const auto y = distill::make_view(labels, n);
    const auto args = distill::make_response_args(s, t, y);
    int m = 0;
    const auto outs = [&](int k) {
        return distill::response_outputs<T>{distill::make_view(&r.loss[k], 1), distill::make_view(r.grad[k], n, c)};
    };
    // Scratch from static storage, sized by the query (only dist needs any on the CPU).
    alignas(64) static unsigned char scratch[4096];
    const auto step = [&](const auto& opts, const auto& a, const distill::response_outputs<T>& o) {
        const std::size_t bytes = distill::workspace_bytes(opts, a, o);
        r.ok[m] = bytes <= sizeof scratch && distill::run(opts, a, o, distill::workspace{scratch, bytes}).ok();
        ++m;
    };
    distill::response_outputs<T> with_t = outs(m);
    with_t.grad_temperature = distill::make_view(&r.grad_temperature, 1);
    step(distill::basic_kd_options<T>{.temperature = T(4)}, args, with_t);
    step(distill::basic_kd_options<T>{.temperature = T(2), .standardize = true}, args, outs(m));
    step(distill::basic_reverse_kd_options<T>{.temperature = T(2)}, args, outs(m));
    step(distill::basic_jsd_options<T>{.beta = T(0.3)}, args, outs(m));
    step(distill::basic_skew_kd_options<T>{.alpha = T(0.2)}, args, outs(m));
    step(distill::basic_skew_reverse_kd_options<T>{.alpha = T(0.2)}, args, outs(m));
    step(distill::basic_tvd_options<T>{}, args, outs(m));
    step(distill::basic_soft_ce_options<T>{.temperature = T(2)}, args, outs(m));
    const distill::response_args<T, distill::host_space, std::int32_t> ce_args{s, {}, y, {}};
    step(distill::basic_ce_options<T>{.label_smoothing = T(0.1)}, ce_args, outs(m));
    step(distill::basic_logit_mse_options<T>{}, args, outs(m));
    step(distill::basic_dkd_options<T>{}, args, outs(m));
    step(distill::basic_dist_options<T>{.temperature = T(2)}, distill::make_response_args(s, t), outs(m));

    // kd_topk: the teacher's top 3 of each row as ids and log-probabilities of its softmax.
    std::int32_t ids[n * 3];
    T logprob[n * 3];
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < 3; ++j) {
            ids[i * 3 + j] = (i + 3 * j) % c;
            logprob[i * 3 + j] = T(-1) - T(j);
        }
    step(distill::basic_kd_topk_options<T>{}, distill::make_topk_args(s, distill::make_view(ids, n, 3), distill::make_view(logprob, n, 3), y),
         outs(m));

    // dml between the student and the teacher as peers: the student's gradient is compared.
    T peer_loss[2], other_grad[n * c];
    const distill::any_view<const T> peers[2] = {s, t};
    const distill::any_view<T> grads[2] = {distill::make_view(r.grad[m], n, c), distill::make_view(other_grad, n, c)};
    const distill::dml_args<T, distill::host_space, std::int32_t> dml_args{peers, y};
    const distill::dml_outputs<T> dml_outs{distill::make_view(peer_loss, 2), {}, grads};
    r.ok[m] = distill::run(distill::basic_dml_options<T>{.temperature = T(2)}, dml_args, dml_outs).ok();
    r.loss[m] = peer_loss[0];
}

}  // namespace float_only
