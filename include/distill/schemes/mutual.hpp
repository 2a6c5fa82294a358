// distill/schemes/mutual.hpp: online (mutual) distillation between K peers (DML).
//
// Y. Zhang, T. Xiang, T. M. Hospedales, H. Lu, "Deep Mutual Learning", CVPR 2018
// (arXiv:1706.00384; code: github.com/YingZhangDUT/Deep-Mutual-Learning).
//
// K >= 2 peers are trained together from scratch; each learns from the labels and from the
// other peers' current predictions. For row i with label y, peer logits z_1..z_K (N x C each),
// temperature T > 0, q_k = softmax(z_k / T), p_k = softmax(z_k) and weight lambda = kl_weight:
//
//     L_k = CE(z_k, y) + lambda / (K - 1) * sum_{l != k} T^2 KL(q_l || q_k)
//
// with the other peers detached (peer k's update does not move peer l), as in DML's code, where
// each network's optimiser differentiates its own loss with respect to its own variables only.
// The gradient reported for peer k is that of its own loss:
//
//     dL_k/dz_k = (p_k - onehot(y)) + lambda T / (K - 1) * (K q_k - sum_l q_l)
//
// Rows are weighted as in the losses (labels == ignore_index: weight 0) and reduced per peer
// (batchmean: / number of counted rows; sum; none: one value per peer and row). At K = 2,
// T = 1, lambda = 1 this is the paper's two-network loss; the paper's K-network loss divides the
// KL sum by K - 1 (its released code sums without dividing: kl_weight = K - 1 reproduces that).
// DML updates the peers in turn with a fresh forward pass each; calling dml once per peer
// update gives that schedule, one call for all peers gives the simultaneous variant.
//
// Computation: one row kernel forms every peer's statistics and all K gradient rows.
// Pass 1 per peer: max and compensated sum of exp at T (and at 1 when T != 1). Pass 2 per
// class c, all peers at once: x_k = z_kc / T - max_k, q_k, and e_k = log q_k - log q_r
// relative to a reference peer r formed as ((x_k - x_r) - (log_sum_k - log_sum_r)), so peers
// that agree cancel nothing at the scale of log C; then
//     sum_{l != k} q_l (log q_l - log q_k) = A - S e_k,   A = sum_l q_l e_l,  S = sum_l q_l
// gives every peer's KL sum and (K q_k - S) every peer's KL gradient in O(K) per class.
// Cost: O(K N C) time, K exp per element (2K when T != 1) plus pass 1; no N x C temporary,
// no workspace. Masked (-inf) logits have probability 0; a -inf entry of peer k where another
// peer has mass makes L_k infinite.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ranges>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/backend.hpp"
#include "../core/dense_tensor.hpp"
#include "../core/error.hpp"
#include "../core/reduction.hpp"
#include "../core/status.hpp"
#include "../core/tensor.hpp"
#include "../detail/math.hpp"
#include "../losses/response/common.hpp"
#include "../losses/response/divergence.hpp"
#include "../losses/response/driver.hpp"
#include "../losses/response/result.hpp"

namespace distill {

/// The most peers one dml call takes (the kernel keeps one handle per peer by value, so that it
/// runs unchanged on a device).
inline constexpr int max_dml_peers = 16;

/// Parameters of dml. Real is the type the parameters are stored in: dml_options (double), or
/// dml_float_options for float-only builds.
template <class Real>
struct basic_dml_options {
    Real temperature = 1;                     ///< T > 0 and finite: the KL terms compare softmax(z / T), times T^2
    Real kl_weight = 1;                       ///< lambda >= 0 and finite: weight of the mean KL to the other peers
    reduction reduce = reduction::batchmean;  ///< batchmean, sum or none (per peer)
    std::int64_t ignore_index = -100;         ///< rows whose label equals this get weight 0
};
using dml_options = basic_dml_options<double>;
using dml_float_options = basic_dml_options<float>;

/// Inputs of dml: K >= 2 peer logit matrices of one shape N x C, and N labels (required).
template <class T, class Space = host_space, class Label = std::int64_t>
struct dml_args {
    using real_type = T;
    using label_type = Label;
    using memory_space = Space;
    std::span<const any_view<const T, Space>> peers{};
    any_view<const Label, Space> labels{};
};

/// Outputs of dml, written only when the call succeeds.
template <class T, class Space = host_space>
struct dml_outputs {
    any_view<T, Space> loss;   ///< K values: peer k's reduced L_k (batchmean, sum); reduction none: K x N
    any_view<T, Space> total{};  ///< optional, 1 value: sum over peers (and rows, for none)
    /// Optional: empty, or K entries (N x C each, unbound entries skipped): dL_k / dz_k.
    std::span<const any_view<T, Space>> grad_peers{};
};

namespace detail {

/// Per-peer sums of one row (or of all rows): the value of the backend reduction.
template <class T>
struct dml_sums {
    T value[max_dml_peers] = {};
};
template <class T>
struct dml_sums_plus {
    DISTILL_HD dml_sums<T> operator()(const dml_sums<T>& a, const dml_sums<T>& b) const noexcept {
        dml_sums<T> r;
        for (int k = 0; k < max_dml_peers; ++k) r.value[k] = a.value[k] + b.value[k];
        return r;
    }
};

/// The dml row kernel: every peer's loss of row i (returned, and written to the K x N loss output
/// for reduction none) and every present gradient row. Its writes depend only on i, so running it
/// inside the backend's reduction is safe (idempotent).
template <class T, class Label>
struct dml_row_kernel {
    matrix_ref<const T> peers[max_dml_peers];
    matrix_ref<T> grads[max_dml_peers];
    matrix_ref<T> row_losses;  ///< reduction none: K x N
    int count;
    vector_ref<const Label> labels;
    row_weighting<T, Label> weighting;
    T inv_total;
    T tau, inv_tau;
    T kl_value_scale;  ///< lambda T^2 / (K - 1)
    T kl_grad_scale;   ///< lambda T / (K - 1)

    DISTILL_HD dml_sums<T> operator()(index_t i) const noexcept {
        dml_sums<T> out;
        const T w = weighting(i) * inv_total;
        const index_t cols = peers[0].cols;
        if (w == T(0)) {  // also every ignored row, whose label may be outside [0, C)
            for (int k = 0; k < count; ++k) {
                if (grads[k].present())
                    for (index_t c = 0; c < cols; ++c) grads[k].row(i)[c * grads[k].col_stride] = T(0);
                if (row_losses.present()) row_losses.row(k)[i * row_losses.col_stride] = T(0);
            }
            return out;
        }
        const auto y = static_cast<index_t>(labels[i]);
        const bool tempered = tau != T(1);
        T max_t[max_dml_peers], log_sum_t[max_dml_peers], log_sum_1[max_dml_peers], kl[max_dml_peers];
        // Pass 1: each peer's statistics at T (for the KL terms) and at 1 (for the cross-entropy).
        for (int k = 0; k < count; ++k) {
            const T* z = peers[k].row(i);
            const index_t cs = peers[k].col_stride;
            online_logsumexp<T> at_t, at_1;
            for (index_t c = 0; c < cols; ++c) {
                at_t.add(z[c * cs] * inv_tau);
                if (tempered) at_1.add(z[c * cs]);
            }
            max_t[k] = at_t.max;
            log_sum_t[k] = detail::log(at_t.sum);
            if (!tempered) at_1 = at_t;
            // -log p_ky = (max - z_y) + log(sum); the entropy-free form keeps large logits exact.
            log_sum_1[k] = detail::log(at_1.sum);
            out.value[k] = (at_1.max - z[y * cs]) + log_sum_1[k];
            // From here on log_sum_1 is the full log-sum-exp at T = 1: log p = z - log_sum_1.
            log_sum_1[k] += at_1.max;
            kl[k] = T(0);
        }
        // Pass 2: every class of every peer at once.
        const T minus_inf = -infinity_v<T>;
        for (index_t c = 0; c < cols; ++c) {
            T x[max_dml_peers], q[max_dml_peers];
            int ref = -1;
            for (int k = 0; k < count; ++k) {
                x[k] = peers[k].row(i)[c * peers[k].col_stride] * inv_tau - max_t[k];
                q[k] = detail::exp(x[k] - log_sum_t[k]);
                if (ref < 0 && x[k] > minus_inf) ref = k;
            }
            T mass = 0, weighted = 0;  // S = sum_l q_l, A = sum_l q_l e_l
            if (ref >= 0) {
                for (int k = 0; k < count; ++k) {
                    mass += q[k];
                    if (q[k] > T(0)) weighted += q[k] * ((x[k] - x[ref]) - (log_sum_t[k] - log_sum_t[ref]));
                }
                if (mass > T(0))
                    for (int k = 0; k < count; ++k) {
                        const T e = x[k] > minus_inf ? (x[k] - x[ref]) - (log_sum_t[k] - log_sum_t[ref]) : minus_inf;
                        kl[k] += weighted - mass * e;
                    }
            }
            for (int k = 0; k < count; ++k) {
                if (!grads[k].present()) continue;
                const T z = peers[k].row(i)[c * peers[k].col_stride];
                const T p = tempered ? detail::exp(z - log_sum_1[k]) : q[k];
                grads[k].row(i)[c * grads[k].col_stride] =
                    w * ((p - (c == y ? T(1) : T(0))) + kl_grad_scale * (T(count) * q[k] - mass));
            }
        }
        for (int k = 0; k < count; ++k) {
            out.value[k] = w * (out.value[k] + kl_value_scale * kl[k]);
            if (row_losses.present()) row_losses.row(k)[i * row_losses.col_stride] = out.value[k];
        }
        return out;
    }
};

/// Writes the K reduced losses and the total into (possibly device) outputs.
template <class T>
struct dml_store_kernel {
    dml_sums<T> sums;
    vector_ref<T> loss;  ///< absent for reduction none (the kernel wrote the rows)
    T* total;
    int count;
    T total_value;
    DISTILL_HD void operator()(index_t) const noexcept {
        if (loss.present())
            for (int k = 0; k < count; ++k) loss[k] = sums.value[k];
        if (total) *total = total_value;
    }
};

template <class V>
status dml_peer_error(errc code, const char* argument, const char* name, int index, const V& v) noexcept {
    return method_error(code, "dml", argument).text(name).text("[").number(index).text("] has shape ")
        .shape(v.extents(), v.rank());
}

/// The ranges of every input and output with names and peer indices, for the aliasing check.
struct dml_range_list {
    static constexpr int capacity = 2 * max_dml_peers + 2;
    address_range ranges[capacity];
    const char* names[capacity];
    int index[capacity];  ///< peer index, or -1
    int count = 0;
    void add(const char* name, int k, address_range r) noexcept {
        names[count] = name;
        index[count] = k;
        ranges[count++] = r;
    }
    void describe(status& s, int j) const noexcept {
        s.text(names[j]);
        if (index[j] >= 0) s.text("[").number(index[j]).text("]");
    }
};

}  // namespace detail

/// Check step, inputs only: parameters, K, the peers' shapes, labels (shape and range).
template <class Backend, class Real, class T, class Space, class Label>
status check_args(const Backend& backend, const basic_dml_options<Real>& opts,
                  const dml_args<T, Space, Label>& args) noexcept(Backend::is_nothrow) {
    static_assert(backend_for<Backend, Space>, "this backend cannot run on the memory space of the arguments");
    constexpr const char* method = "dml";
    if (status s = detail::check_temperature(method, opts.temperature); !s) return s;
    if (!detail::is_finite(opts.kl_weight) || !(opts.kl_weight >= Real(0)))
        return detail::method_error(errc::invalid_parameter, method, "kl_weight").text("kl_weight = ")
            .real(opts.kl_weight).text(" must be finite and >= 0");
    if (status s = detail::check_reduction(method, opts.reduce); !s) return s;
    const std::size_t k_count = args.peers.size();
    if (k_count < 2 || k_count > static_cast<std::size_t>(max_dml_peers))
        return detail::method_error(k_count < 2 ? errc::missing_argument : errc::shape_mismatch, method, "peers")
            .text("peers has ").number(static_cast<std::int64_t>(k_count)).text(k_count == 1 ? " entry" : " entries")
            .text(" but mutual learning needs 2 to ")
            .number(max_dml_peers).text(" peers");
    const auto& first = args.peers[0];
    for (std::size_t k = 0; k < k_count; ++k) {
        const auto& v = args.peers[k];
        const int ki = static_cast<int>(k);
        if (!v.bound())
            return detail::method_error(errc::missing_argument, method, "peers").text("peers[").number(ki)
                .text("] is unbound");
        if (status s = detail::check_present(method, "peers", v); !s) return s;
        if (v.rank() != 2)
            return detail::dml_peer_error(errc::bad_rank, "peers", "peers", ki, v).text(" but must be 2-D (N x C)");
        if (k == 0 && (v.extent(0) < 1 || v.extent(1) < 1))
            return detail::dml_peer_error(errc::empty_input, "peers", "peers", ki, v).text(": N and C must be >= 1");
        if (v.extent(0) != first.extent(0) || v.extent(1) != first.extent(1))
            return detail::dml_peer_error(errc::shape_mismatch, "peers", "peers", ki, v).text(" but peers[0] has shape ")
                .shape(first.extents(), 2);
    }
    // Labels: required, N values in [0, C) or ignore_index (the response losses' rule and message).
    const response_args<T, Space, Label> rows{first, first, args.labels, {}};
    return detail::check_rows(backend, method, rows, opts.ignore_index, true);
}

/// Check step: inputs, then outputs (shapes) and aliasing (no output may overlap an input or
/// another output).
template <class Backend, class Real, class T, class Space, class Label>
status check(const Backend& backend, const basic_dml_options<Real>& opts, const dml_args<T, Space, Label>& args,
             const dml_outputs<T, Space>& outs) noexcept(Backend::is_nothrow) {
    constexpr const char* method = "dml";
    if (status s = check_args(backend, opts, args); !s) return s;
    const index_t k_count = static_cast<index_t>(args.peers.size());
    const index_t n = args.peers[0].extent(0), c = args.peers[0].extent(1);
    if (opts.reduce == reduction::none) {
        if (status s = detail::check_present(method, "loss", outs.loss); !s) return s;
        if (outs.loss.rank() != 2 || outs.loss.extent(0) != k_count || outs.loss.extent(1) != n)
            return detail::method_error(errc::shape_mismatch, method, "loss").text("output loss has shape ")
                .shape(outs.loss.extents(), outs.loss.rank()).text(" but reduction none needs [").number(k_count)
                .text(", ").number(n).text("] (peers x rows)");
    } else if (status s = detail::check_output_size(method, "loss", outs.loss, k_count, true); !s) {
        return s;
    }
    if (status s = detail::check_output_size(method, "total", outs.total, 1, false); !s) return s;
    if (!outs.grad_peers.empty() && static_cast<index_t>(outs.grad_peers.size()) != k_count)
        return detail::method_error(errc::shape_mismatch, method, "grad_peers").text("grad_peers has ")
            .number(static_cast<std::int64_t>(outs.grad_peers.size())).text(" entries but there are ").number(k_count)
            .text(" peers");
    for (std::size_t k = 0; k < outs.grad_peers.size(); ++k) {
        const auto& g = outs.grad_peers[k];
        if (!g.bound()) continue;
        if (status s = detail::check_present(method, "grad_peers", g); !s) return s;
        if (g.rank() != 2 || g.extent(0) != n || g.extent(1) != c)
            return detail::dml_peer_error(errc::shape_mismatch, "grad_peers", "output grad_peers", static_cast<int>(k), g)
                .text(" but the peers have shape ").shape(args.peers[0].extents(), 2);
    }
    detail::dml_range_list ins, outputs;
    for (std::size_t k = 0; k < args.peers.size(); ++k) ins.add("peers", static_cast<int>(k), detail::range_of(args.peers[k]));
    ins.add("labels", -1, detail::range_of(args.labels));
    outputs.add("loss", -1, detail::range_of(outs.loss));
    outputs.add("total", -1, detail::range_of(outs.total));
    for (std::size_t k = 0; k < outs.grad_peers.size(); ++k)
        outputs.add("grad_peers", static_cast<int>(k), detail::range_of(outs.grad_peers[k]));
    for (int i = 0; i < outputs.count; ++i) {
        for (int j = 0; j < ins.count; ++j)
            if (outputs.ranges[i].overlaps(ins.ranges[j])) {
                status s = detail::method_error(errc::aliasing, method, outputs.names[i]).text("output ");
                outputs.describe(s, i);
                s.text(" overlaps input ");
                ins.describe(s, j);
                return s;
            }
        for (int j = i + 1; j < outputs.count; ++j)
            if (outputs.ranges[i].overlaps(outputs.ranges[j])) {
                status s = detail::method_error(errc::aliasing, method, outputs.names[i]).text("output ");
                outputs.describe(s, i);
                s.text(" overlaps output ");
                outputs.describe(s, j);
                return s;
            }
    }
    return {};
}

/// dml needs no scratch on any backend.
template <class Backend, class Real, class T, class Space, class Label>
constexpr std::size_t workspace_bytes(const Backend&, const basic_dml_options<Real>&, const dml_args<T, Space, Label>&,
                                      const dml_outputs<T, Space>&) noexcept {
    return 0;
}

/// Run step: checks, then every peer's loss and the requested gradients, from one row kernel.
/// noexcept and allocation-free on the CPU backend; on error nothing is written.
template <class Backend, class Real, class T, class Space, class Label>
status run(const Backend& backend, const basic_dml_options<Real>& opts, const dml_args<T, Space, Label>& args,
           const dml_outputs<T, Space>& outs, workspace = {}) noexcept(Backend::is_nothrow) {
    if (status s = check(backend, opts, args, outs); !s) return s;
    const int k_count = static_cast<int>(args.peers.size());
    const index_t n = args.peers[0].extent(0);
    detail::dml_row_kernel<T, Label> kernel{};
    for (int k = 0; k < k_count; ++k) {
        kernel.peers[k] = detail::to_matrix_ref(args.peers[k]);
        if (!outs.grad_peers.empty()) kernel.grads[k] = detail::to_matrix_ref(outs.grad_peers[k]);
    }
    kernel.count = k_count;
    kernel.labels = detail::to_vector_ref(args.labels);
    kernel.weighting = {kernel.labels, {}, static_cast<std::int64_t>(opts.ignore_index)};
    kernel.inv_total = T(1);
    if (opts.reduce == reduction::batchmean) {
        const T counted = backend.transform_reduce(n, kernel.weighting, T(0), detail::plus_op<T>{});
        kernel.inv_total = counted > T(0) ? T(1) / counted : T(0);
    }
    if (opts.reduce == reduction::none) kernel.row_losses = detail::to_matrix_ref(outs.loss);
    kernel.tau = static_cast<T>(opts.temperature);
    kernel.inv_tau = T(1) / kernel.tau;
    const T lambda = static_cast<T>(opts.kl_weight) / T(k_count - 1);
    kernel.kl_value_scale = lambda * kernel.tau * kernel.tau;
    kernel.kl_grad_scale = lambda * kernel.tau;

    const detail::dml_sums<T> sums = backend.transform_reduce(n, kernel, detail::dml_sums<T>{}, detail::dml_sums_plus<T>{});
    T total = 0;
    for (int k = 0; k < k_count; ++k) total += sums.value[k];
    const detail::vector_ref<T> loss = opts.reduce == reduction::none ? detail::vector_ref<T>{} : detail::to_vector_ref(outs.loss);
    if (loss.present() || outs.total.bound())
        backend.for_each(1, detail::dml_store_kernel<T>{sums, loss, outs.total.bound() ? outs.total.data() : nullptr,
                                                         k_count, total});
    return {};
}

// The same steps on the default backend of the arguments' memory space.
template <class Real, class T, class Space, class Label>
status check_args(const basic_dml_options<Real>& opts, const dml_args<T, Space, Label>& args) noexcept(
    default_backend_t<Space>::is_nothrow) {
    return check_args(default_backend_t<Space>{}, opts, args);
}
template <class Real, class T, class Space, class Label>
status check(const basic_dml_options<Real>& opts, const dml_args<T, Space, Label>& args,
             const dml_outputs<T, Space>& outs) noexcept(default_backend_t<Space>::is_nothrow) {
    return check(default_backend_t<Space>{}, opts, args, outs);
}
template <class Real, class T, class Space, class Label>
constexpr std::size_t workspace_bytes(const basic_dml_options<Real>& opts, const dml_args<T, Space, Label>& args,
                                      const dml_outputs<T, Space>& outs) noexcept {
    return workspace_bytes(default_backend_t<Space>{}, opts, args, outs);
}
template <class Real, class T, class Space, class Label>
status run(const basic_dml_options<Real>& opts, const dml_args<T, Space, Label>& args, const dml_outputs<T, Space>& outs,
           workspace ws = {}) noexcept(default_backend_t<Space>::is_nothrow) {
    return run(default_backend_t<Space>{}, opts, args, outs, ws);
}

/// What distill::dml returns.
template <class T, class Space = host_space>
struct dml_result {
    ::distill::status status{};                 ///< ok, or why nothing was computed (no-exception builds)
    std::vector<T> peer_loss{};                 ///< K values: L_k reduced (reduction none: summed over rows)
    T total{};                                  ///< sum of peer_loss
    tensor<T, Space> row_losses{};              ///< reduction none only: K x N, w_i L_ki
    std::vector<tensor<T, Space>> grad_peers{};  ///< K tensors N x C: dL_k / dz_k (the other peers detached)
};

/// The convenience object: dml([backend,] peers, labels[, opts]) with `peers` any range of
/// K >= 2 real tensors (N x C, one element type and memory space) and labels any integer tensor.
/// Allocates the outputs; throws distill::error on bad input (without exceptions: the status is
/// in the result).
struct dml_fn {
    template <backend_object Backend, std::ranges::forward_range R, integer_tensor L, class Real = double>
        requires real_tensor<std::ranges::range_value_t<R>>
    auto operator()(const Backend& backend, const R& peers, const L& labels, const basic_dml_options<Real>& opts = {}) const {
        using P = std::ranges::range_value_t<R>;
        using T = value_type_t<P>;
        using Space = memory_space_t<P>;
        using Label = value_type_t<L>;
        static_assert(std::is_same_v<memory_space_t<L>, Space>, "labels must live in the memory space of the peers");
        std::vector<any_view<const T, Space>> views;
        for (const auto& p : peers) views.push_back(any_view<const T, Space>(as_view(p)));
        const dml_args<T, Space, Label> args{views, any_view<const Label, Space>(as_view(labels))};
        dml_result<T, Space> result;
        if (status s = check_args(backend, opts, args); !s) {
            result.status = detail::raise(s);
            return result;
        }
        const index_t k_count = static_cast<index_t>(views.size());
        const index_t n = views[0].extent(0), c = views[0].extent(1);
        const index_t loss_extents[2] = {k_count, n}, grad_extents[2] = {n, c}, one = 1;
        tensor<T, Space> loss = opts.reduce == reduction::none ? tensor<T, Space>(loss_extents, 2)
                                                               : tensor<T, Space>(&k_count, 1);
        tensor<T, Space> total(&one, 1);
        std::vector<any_view<T, Space>> grad_views;
        for (index_t k = 0; k < k_count; ++k) result.grad_peers.emplace_back(grad_extents, 2);
        for (auto& g : result.grad_peers) grad_views.push_back(g.view());
        const dml_outputs<T, Space> outs{loss.view(), total.view(), grad_views};
        if (status s = run(backend, opts, args, outs); !s) {
            result = {};
            result.status = detail::raise(s);
            return result;
        }
        result.total = Backend::load(total.data());
        if (opts.reduce == reduction::none) {
            result.peer_loss.assign(static_cast<std::size_t>(k_count), T(0));
            for (index_t k = 0; k < k_count; ++k) {
                const any_view<const T, Space> row(loss.data() + k * n, 1, &n, &one);
                result.peer_loss[static_cast<std::size_t>(k)] = backend.transform_reduce(
                    n, detail::element_of<T>{detail::to_vector_ref(row)}, T(0), detail::plus_op<T>{});
            }
            result.row_losses = std::move(loss);
        } else {
            for (index_t k = 0; k < k_count; ++k) result.peer_loss.push_back(Backend::load(loss.data() + k));
        }
        return result;
    }
    template <std::ranges::forward_range R, integer_tensor L, class Real = double>
        requires real_tensor<std::ranges::range_value_t<R>>
    auto operator()(const R& peers, const L& labels, const basic_dml_options<Real>& opts = {}) const {
        return (*this)(default_backend_t<memory_space_t<std::ranges::range_value_t<R>>>{}, peers, labels, opts);
    }
};

/// dml(peers, labels[, opts]): every peer's DML loss and the gradient of each peer's own loss.
inline constexpr dml_fn dml{};

}  // namespace distill
