// distill/schemes/self_distillation.hpp: self-distillation by deep supervision ("Be Your Own
// Teacher", BYOT): the deepest exit of a network teaches its shallow exits.
//
// L. Zhang, J. Song, A. Gao, J. Chen, C. Bao, K. Ma, "Be Your Own Teacher: Improve the
// Performance of Convolutional Neural Networks via Self Distillation", ICCV 2019
// (arXiv:1905.08094; public re-implementation: github.com/luanyunteng/pytorch-be-your-own-teacher).
//
// A network with K >= 2 exits (classifier heads) gives logits z_1 .. z_K (N x C each, shallow
// first, deepest last: D = K) and, optionally, features F_1 .. F_K (N x E each: the output of
// each exit's bottleneck, flattened per sample). With labels y, temperature T > 0, alpha in
// [0, 1] and lambda = feature_weight >= 0, exit k's loss is
//
//     L_k = (1 - alpha) CE(z_k, y) + alpha T^2 KL(softmax(z_D / T) || softmax(z_k / T))
//           + lambda MSE(F_k, F_D)                                       for k < D,
//     L_D = (1 - alpha) CE(z_D, y),
//
// and the loss is L = sum_k L_k: the paper's sum over every classifier, in which the KL and
// hint terms of the deepest one vanish. The deepest exit's outputs are the teacher and are
// detached (as in the reference code, which uses final_output.detach() and final_fea.detach()):
//
//     dL/dz_k = (1 - alpha) dCE_k/dz_k + alpha dKD_k/dz_k,     dL/dF_k = lambda dMSE_k/dF_k    (k < D)
//     dL/dz_D = (1 - alpha) dCE_D/dz_D,                        dL/dF_D = 0
//
// The terms are exactly distill::ce, distill::kd (teacher z_D) and distill::logit_mse (teacher
// F_D, the mean over E of the squared differences of a row), each reduced by `reduce` with the
// same rows counted: a row whose label is ignore_index counts in no term (logit_mse gets row
// weights 0 / 1 built from the labels, as it would check labels against E) (batchmean divides each term
// by the number of counted rows; the feature term of batchmean is then the mean over the counted
// N E elements, F.mse_loss). The gradients are the sums of those losses' gradients: the run step
// calls their run steps, the first term of each buffer overwriting it and the later ones adding
// into it (response_outputs::grad_scale / accumulate), so no N x C temporary is formed.
//
// Conventions against the reference code (T = 3, alpha = 0.1 there, and the defaults here):
// * KL, not the soft cross-entropy -sum p_D log q_k of the code: the same gradient; the value
//   differs by T^2 H(p_D), which does not depend on the shallow exits.
// * The hint is the mean squared difference, not the code's sum over N E elements masked where
//   both features are <= 0 (from ReLU outputs): lambda = beta N E converts its beta (1e-6 with
//   N E = 128 x 512 gives 0.066; the default here is 0.05). Passing no features drops the term.
// * The deepest exit is weighted (1 - alpha), as in the paper's sum and in the code.
//
// Cost: per shallow exit one ce pass (two reads of a row, one exp per class), one kd pass (the
// teacher's statistics are recomputed for every exit; three reads, four exp per class when it
// adds into the ce gradient) and one logit_mse pass over N x E; the deepest exit one ce pass.
// So O(K N (C + E)) time and no N x C temporary; measured (float, one thread, K = 3, N = 64,
// C = 32000) the call costs the sum of its terms' calls, 3 ce + 2 kd, where ce's scalar kernel
// dominates (about 12x kd's SIMD one). The workspace holds the feature terms' row
// weights (N values, with features), a term's row losses for reduction none (N values) or its
// value on a device memory space (1), plus what the losses' run steps need on the backend (0 on
// the CPU): workspace_bytes() tells.
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
#include "../losses/response/ce.hpp"
#include "../losses/response/common.hpp"
#include "../losses/response/driver.hpp"
#include "../losses/response/kd.hpp"
#include "../losses/response/logit_mse.hpp"
#include "../losses/response/result.hpp"

namespace distill {

/// Parameters of self_distillation. Real is the type the parameters are stored in:
/// self_distillation_options (double), or self_distillation_float_options for float-only builds.
template <class Real>
struct basic_self_distillation_options {
    Real temperature = 3;                     ///< T > 0 and finite (the KL terms compare softmax(z / T), times T^2)
    Real alpha = Real(0.1);                   ///< in [0, 1]: weight of the KL terms; the cross-entropies get 1 - alpha
    Real feature_weight = Real(0.05);         ///< lambda >= 0 and finite: weight of the feature hints
    reduction reduce = reduction::batchmean;  ///< batchmean, sum or none (per term, as the losses)
    std::int64_t ignore_index = -100;         ///< rows whose label equals this count in no term
};
using self_distillation_options = basic_self_distillation_options<double>;
using self_distillation_float_options = basic_self_distillation_options<float>;

/// The columns of self_distillation_outputs::term_loss.
enum self_distillation_term : int { self_distillation_ce = 0, self_distillation_kl = 1, self_distillation_hint = 2 };

/// Inputs of self_distillation: K >= 2 exits' logits (N x C each, shallow first, deepest last),
/// N labels (required) and, optionally, the exits' features (empty, or K entries N x E each).
template <class T, class Space = host_space, class Label = std::int64_t>
struct self_distillation_args {
    using real_type = T;
    using label_type = Label;
    using memory_space = Space;
    std::span<const any_view<const T, Space>> logits{};
    any_view<const Label, Space> labels{};
    std::span<const any_view<const T, Space>> features{};
};

/// Outputs of self_distillation, written only when the call succeeds.
template <class T, class Space = host_space>
struct self_distillation_outputs {
    any_view<T, Space> loss;         ///< 1 value: sum of the exits' losses (reduction none: and of the rows)
    any_view<T, Space> head_loss{};  ///< optional: K values L_k (reduction none: K x N rows)
    /// Optional, K x 3: the unweighted terms of exit k (ce, kl, hint; 0 where an exit has none),
    /// reduced as the loss (reduction none: summed over the rows).
    any_view<T, Space> term_loss{};
    /// Optional: empty, or K entries N x C (unbound entries skipped): dL / dz_k.
    std::span<const any_view<T, Space>> grad_logits{};
    /// Optional, only with features: empty, or K entries N x E: dL / dF_k (the deepest exit's is 0).
    std::span<const any_view<T, Space>> grad_features{};
    /// The gradients written are those of grad_scale * L (a weight in a larger objective). Finite.
    T grad_scale = T(1);
    /// Add the gradients into the buffers instead of overwriting them.
    bool accumulate = false;
};

namespace detail {

inline constexpr const char* self_distillation_name = "self_distillation";

template <class V>
status self_distillation_entry_error(errc code, const char* argument, const char* name, std::size_t index,
                                     const V& v) noexcept {
    return method_error(code, self_distillation_name, argument).text(name).text("[")
        .number(static_cast<std::int64_t>(index)).text("] has shape ").shape(v.extents(), v.rank());
}

/// One entry of a list of exit tensors (logits or features: `what`): bound, 2-D, not empty.
template <class View>
status check_self_distillation_entry(const View& v, const char* what, std::size_t k) noexcept {
    const bool logits = what[0] == 'l';
    if (!v.bound())
        return method_error(errc::missing_argument, self_distillation_name, what).text(what).text("[")
            .number(static_cast<std::int64_t>(k)).text("] is unbound");
    if (status s = check_present(self_distillation_name, what, v); !s) return s;
    if (v.rank() != 2)
        return self_distillation_entry_error(errc::bad_rank, what, what, k, v).text(" but must be 2-D (N x ")
            .text(logits ? "C)" : "E)");
    if (v.extent(0) < 1 || v.extent(1) < 1)
        return self_distillation_entry_error(errc::empty_input, what, what, k, v).text(": N and ")
            .text(logits ? "C" : "E").text(" must be >= 1");
    return {};
}

/// A list of K exit tensors: the deepest entry (the last) first, then every entry with its N
/// rows and the deepest entry's columns.
template <class View>
status check_self_distillation_list(std::span<const View> list, const char* what, index_t n) noexcept {
    const std::size_t deepest = list.size() - 1;
    const View& top = list[deepest];
    if (status s = check_self_distillation_entry(top, what, deepest); !s) return s;
    for (std::size_t k = 0; k < list.size(); ++k) {
        const View& v = list[k];
        if (status s = check_self_distillation_entry(v, what, k); !s) return s;
        if (v.extent(0) != n)
            return self_distillation_entry_error(errc::shape_mismatch, what, what, k, v).text(" but the exits have N = ")
                .number(n).text(" rows");
        if (v.extent(1) != top.extent(1))
            return self_distillation_entry_error(errc::shape_mismatch, what, what, k, v).text(" but the deepest exit's ")
                .text(what).text("[").number(static_cast<std::int64_t>(deepest)).text("] has shape ")
                .shape(top.extents(), 2);
    }
    return {};
}

/// Gradient outputs of a list: empty or K entries; each bound entry of the shape of its input.
template <class T, class Space>
status check_self_distillation_grads(std::span<const any_view<T, Space>> grads,
                                     std::span<const any_view<const T, Space>> inputs, const char* name,
                                     const char* input_name) noexcept {
    if (grads.empty()) return {};
    if (grads.size() != inputs.size())
        return method_error(errc::shape_mismatch, self_distillation_name, name).text(name).text(" has ")
            .number(static_cast<std::int64_t>(grads.size())).text(" entries but there are ")
            .number(static_cast<std::int64_t>(inputs.size())).text(" ").text(input_name);
    for (std::size_t k = 0; k < grads.size(); ++k) {
        const auto& g = grads[k];
        if (!g.bound()) continue;
        if (status s = check_present(self_distillation_name, name, g); !s) return s;
        if (g.rank() != 2 || g.extent(0) != inputs[k].extent(0) || g.extent(1) != inputs[k].extent(1))
            return method_error(errc::shape_mismatch, self_distillation_name, name).text("output ").text(name).text("[")
                .number(static_cast<std::int64_t>(k)).text("] has shape ").shape(g.extents(), g.rank()).text(" but ")
                .text(input_name).text("[").number(static_cast<std::int64_t>(k)).text("] has shape ")
                .shape(inputs[k].extents(), 2);
    }
    return {};
}

/// One named memory range (an input or an output, with its exit index or -1) for the aliasing check.
struct self_distillation_range {
    const char* name = "";
    std::int64_t index = -1;
    address_range range{};
    void describe(status& s) const noexcept {
        s.text(name);
        if (index >= 0) s.text("[").number(index).text("]");
    }
};

/// The ranges of the inputs (j < count_inputs) and outputs of a call, enumerated without storage.
template <class T, class Space, class Label>
struct self_distillation_ranges {
    const self_distillation_args<T, Space, Label>& a;
    const self_distillation_outputs<T, Space>& o;
    std::size_t count_inputs() const noexcept { return a.logits.size() + a.features.size() + 1; }
    std::size_t count_outputs() const noexcept { return 3 + o.grad_logits.size() + o.grad_features.size(); }
    self_distillation_range input(std::size_t j) const noexcept {
        const auto k = static_cast<std::int64_t>(j);
        if (j < a.logits.size()) return {"logits", k, range_of(a.logits[j])};
        j -= a.logits.size();
        if (j < a.features.size()) return {"features", static_cast<std::int64_t>(j), range_of(a.features[j])};
        return {"labels", -1, range_of(a.labels)};
    }
    self_distillation_range output(std::size_t j) const noexcept {
        if (j == 0) return {"loss", -1, range_of(o.loss)};
        if (j == 1) return {"head_loss", -1, range_of(o.head_loss)};
        if (j == 2) return {"term_loss", -1, range_of(o.term_loss)};
        j -= 3;
        if (j < o.grad_logits.size()) return {"grad_logits", static_cast<std::int64_t>(j), range_of(o.grad_logits[j])};
        j -= o.grad_logits.size();
        return {"grad_features", static_cast<std::int64_t>(j), range_of(o.grad_features[j])};
    }
};

/// for_each body: one value written into (possibly device) memory.
template <class T>
struct self_distillation_store {
    T* target;
    T value;
    DISTILL_HD void operator()(index_t) const noexcept { *target = value; }
};

/// for_each body: row i of a K x N loss row set to (or, with add, increased by) w * term row i.
template <class T>
struct self_distillation_rows {
    vector_ref<T> out;
    vector_ref<const T> term;
    T w;
    bool add;
    DISTILL_HD void operator()(index_t i) const noexcept { out[i] = add ? out[i] + w * term[i] : w * term[i]; }
};

/// for_each body: row i of a gradient output set to 0 (the deepest exit's features).
template <class T>
struct self_distillation_zero_rows {
    matrix_ref<T> g;
    DISTILL_HD void operator()(index_t i) const noexcept {
        T* row = g.row(i);
        for (index_t c = 0; c < g.cols; ++c) row[c * g.col_stride] = T(0);
    }
};

/// for_each body: the row weights of the feature terms, 1 for a counted row and 0 for a row whose
/// label is ignore_index. (logit_mse cannot take the labels themselves: it would check them
/// against the feature width.)
template <class T, class Label>
struct self_distillation_row_weights {
    vector_ref<const Label> labels;
    std::int64_t ignore_index;
    T* out;
    DISTILL_HD void operator()(index_t i) const noexcept {
        out[i] = static_cast<std::int64_t>(labels[i]) == ignore_index ? T(0) : T(1);
    }
};

/// Values of the run step's own scratch: N for reduction none (a term's row losses), one on a
/// device memory space (a term's reduced loss), and N more with features (their row weights).
template <class Space>
constexpr std::size_t self_distillation_own_values(index_t n, reduction red, bool features) noexcept {
    const std::size_t rows = static_cast<std::size_t>(n);
    return (red == reduction::none ? rows : (std::is_same_v<Space, host_space> ? 0u : 1u)) + (features ? rows : 0u);
}
/// Its bytes, rounded to 64 so that the losses' workspace after it stays aligned.
template <class T, class Space>
constexpr std::size_t self_distillation_own_bytes(index_t n, reduction red, bool features) noexcept {
    return (self_distillation_own_values<Space>(n, red, features) * sizeof(T) + 63u) / 64u * 64u;
}

}  // namespace detail

/// Check step, inputs only: parameters, the exits' logits and features, labels (shape and range).
template <class Backend, class Real, class T, class Space, class Label>
status check_args(const Backend& backend, const basic_self_distillation_options<Real>& opts,
                  const self_distillation_args<T, Space, Label>& args) noexcept(Backend::is_nothrow) {
    static_assert(backend_for<Backend, Space>, "this backend cannot run on the memory space of the arguments");
    constexpr const char* method = detail::self_distillation_name;
    if (status s = detail::check_temperature(method, opts.temperature); !s) return s;
    if (status s = detail::check_range(method, "alpha", opts.alpha, 0.0, 1.0); !s) return s;
    if (!detail::is_finite(opts.feature_weight) || !(opts.feature_weight >= Real(0)))
        return detail::method_error(errc::invalid_parameter, method, "feature_weight").text("feature_weight = ")
            .real(opts.feature_weight).text(" must be finite and >= 0");
    if (status s = detail::check_reduction(method, opts.reduce); !s) return s;
    const std::size_t k_count = args.logits.size();
    if (k_count < 2)
        return detail::method_error(errc::missing_argument, method, "logits").text("logits has ")
            .number(static_cast<std::int64_t>(k_count)).text(k_count == 1 ? " entry" : " entries")
            .text(" but self-distillation needs at least 2 exits (shallow first, deepest last)");
    const std::size_t deepest = k_count - 1;
    const auto& top = args.logits[deepest];
    // The deepest exit sets N and C (and E for the features): it is checked first.
    if (status s = detail::check_self_distillation_entry(top, "logits", deepest); !s) return s;
    if (status s = detail::check_self_distillation_list(args.logits, "logits", top.extent(0)); !s) return s;
    if (!args.features.empty()) {
        if (args.features.size() != k_count)
            return detail::method_error(errc::shape_mismatch, method, "features").text("features has ")
                .number(static_cast<std::int64_t>(args.features.size())).text(" entries but there are ")
                .number(static_cast<std::int64_t>(k_count)).text(" exits");
        if (status s = detail::check_self_distillation_list(args.features, "features", top.extent(0)); !s) return s;
    }
    // Labels: required, N values in [0, C) or ignore_index (the response losses' rule and message).
    const response_args<T, Space, Label> rows{top, top, args.labels, {}};
    return detail::check_rows(backend, method, rows, opts.ignore_index, true);
}

/// Check step: inputs, then outputs (shapes, grad_scale) and aliasing (no output may overlap an
/// input or another output).
template <class Backend, class Real, class T, class Space, class Label>
status check(const Backend& backend, const basic_self_distillation_options<Real>& opts,
             const self_distillation_args<T, Space, Label>& args,
             const self_distillation_outputs<T, Space>& outs) noexcept(Backend::is_nothrow) {
    constexpr const char* method = detail::self_distillation_name;
    if (status s = check_args(backend, opts, args); !s) return s;
    const index_t k_count = static_cast<index_t>(args.logits.size());
    const index_t n = args.logits[0].extent(0);
    if (status s = detail::check_output_size(method, "loss", outs.loss, 1, true); !s) return s;
    if (opts.reduce == reduction::none && outs.head_loss.bound()) {
        if (status s = detail::check_present(method, "head_loss", outs.head_loss); !s) return s;
        if (outs.head_loss.rank() != 2 || outs.head_loss.extent(0) != k_count || outs.head_loss.extent(1) != n)
            return detail::method_error(errc::shape_mismatch, method, "head_loss").text("output head_loss has shape ")
                .shape(outs.head_loss.extents(), outs.head_loss.rank()).text(" but reduction none needs [")
                .number(k_count).text(", ").number(n).text("] (exits x rows)");
    } else if (outs.head_loss.bound()) {
        if (status s = detail::check_present(method, "head_loss", outs.head_loss); !s) return s;
        if (outs.head_loss.size() != k_count || !detail::is_vector_like(outs.head_loss))
            return detail::method_error(errc::shape_mismatch, method, "head_loss").text("output head_loss has shape ")
                .shape(outs.head_loss.extents(), outs.head_loss.rank()).text(" but must hold ").number(k_count)
                .text(" values (one per exit)");
    }
    if (outs.term_loss.bound()) {
        if (status s = detail::check_present(method, "term_loss", outs.term_loss); !s) return s;
        if (outs.term_loss.rank() != 2 || outs.term_loss.extent(0) != k_count || outs.term_loss.extent(1) != 3)
            return detail::method_error(errc::shape_mismatch, method, "term_loss").text("output term_loss has shape ")
                .shape(outs.term_loss.extents(), outs.term_loss.rank()).text(" but must have shape [").number(k_count)
                .text(", 3] (exits x ce, kl, hint)");
    }
    if (status s = detail::check_self_distillation_grads(outs.grad_logits, args.logits, "grad_logits", "logits"); !s)
        return s;
    if (!outs.grad_features.empty() && args.features.empty())
        return detail::method_error(errc::invalid_parameter, method, "grad_features")
            .text("grad_features is given but there are no features");
    if (status s = detail::check_self_distillation_grads(outs.grad_features, args.features, "grad_features", "features"); !s)
        return s;
    // The terms' gradient factors (grad_scale times a weight) must stay finite.
    const T scaled[3] = {outs.grad_scale * (T(1) - static_cast<T>(opts.alpha)), outs.grad_scale * static_cast<T>(opts.alpha),
                         outs.grad_scale * static_cast<T>(opts.feature_weight)};
    if (!detail::is_finite(outs.grad_scale) || !detail::is_finite(scaled[0]) || !detail::is_finite(scaled[1]) ||
        !detail::is_finite(scaled[2]))
        return detail::method_error(errc::invalid_parameter, method, "grad_scale").text("grad_scale = ")
            .real(outs.grad_scale).text(" is not finite, or not once multiplied by the weights");
    const detail::self_distillation_ranges<T, Space, Label> ranges{args, outs};
    for (std::size_t i = 0; i < ranges.count_outputs(); ++i) {
        const detail::self_distillation_range out = ranges.output(i);
        for (std::size_t j = 0; j < ranges.count_inputs(); ++j) {
            const detail::self_distillation_range in = ranges.input(j);
            if (out.range.overlaps(in.range)) {
                status s = detail::method_error(errc::aliasing, method, out.name).text("output ");
                out.describe(s);
                s.text(" overlaps input ");
                in.describe(s);
                return s;
            }
        }
        for (std::size_t j = i + 1; j < ranges.count_outputs(); ++j) {
            const detail::self_distillation_range other = ranges.output(j);
            if (out.range.overlaps(other.range)) {
                status s = detail::method_error(errc::aliasing, method, out.name).text("output ");
                out.describe(s);
                s.text(" overlaps output ");
                other.describe(s);
                return s;
            }
        }
    }
    return {};
}

/// Scratch of the run step, in the arguments' memory space, aligned for T: its own (see the header
/// comment) and then the largest that the terms' run steps ask for on this backend.
template <class Backend, class Real, class T, class Space, class Label>
std::size_t workspace_bytes(const Backend& backend, const basic_self_distillation_options<Real>& opts,
                            const self_distillation_args<T, Space, Label>& args,
                            const self_distillation_outputs<T, Space>&) noexcept {
    if (args.logits.empty()) return 0;
    const auto& top = args.logits[args.logits.size() - 1];
    const index_t n = top.bound() && top.rank() == 2 ? top.extent(0) : 0;
    const response_args<T, Space, Label> rows{top, top, args.labels, {}};
    const response_outputs<T, Space> term{};
    const std::size_t ce = workspace_bytes(backend, basic_ce_options<Real>{opts.reduce, opts.ignore_index, Real(0)}, rows, term);
    const std::size_t kd = workspace_bytes(
        backend, basic_kd_options<Real>{opts.temperature, opts.reduce, opts.ignore_index, false}, rows, term);
    const std::size_t mse = workspace_bytes(backend, basic_logit_mse_options<Real>{opts.reduce, opts.ignore_index}, rows, term);
    const std::size_t terms = ce > kd ? (ce > mse ? ce : mse) : (kd > mse ? kd : mse);
    return detail::self_distillation_own_bytes<T, Space>(n, opts.reduce, !args.features.empty()) + terms;
}

/// Run step: checks, then every exit's terms through the run steps of ce, kd and logit_mse into
/// the caller's buffers. noexcept and allocation-free on the CPU backend; on error nothing is written.
template <class Backend, class Real, class T, class Space, class Label>
status run(const Backend& backend, const basic_self_distillation_options<Real>& opts,
           const self_distillation_args<T, Space, Label>& args, const self_distillation_outputs<T, Space>& outs,
           workspace ws = {}) noexcept(Backend::is_nothrow) {
    constexpr const char* method = detail::self_distillation_name;
    if (status s = check(backend, opts, args, outs); !s) return s;
    if (status s = detail::check_workspace(method, ws, workspace_bytes(backend, opts, args, outs)); !s) return s;
    const std::size_t k_count = args.logits.size(), deepest = k_count - 1;
    const index_t n = args.logits[deepest].extent(0);
    const bool rows_out = opts.reduce == reduction::none;
    const bool features = !args.features.empty();

    // Where each term's loss goes: N values of workspace (none), one value of workspace (device
    // memory) or a local (host memory); the terms' own scratch follows.
    T host_slot = T(0);
    T* const scratch = static_cast<T*>(ws.data);
    const index_t unit = 1;
    const any_view<T, Space> term_loss_view =
        rows_out ? any_view<T, Space>(scratch, 1, &n, &unit)
                 : any_view<T, Space>(std::is_same_v<Space, host_space> ? &host_slot : scratch, 1, &unit, &unit);
    const std::size_t own = detail::self_distillation_own_bytes<T, Space>(n, opts.reduce, features);
    // The feature terms' row weights come after the term values.
    T* const row_weights = features ? scratch + (detail::self_distillation_own_values<Space>(n, opts.reduce, true) -
                                                 static_cast<std::size_t>(n))
                                    : nullptr;
    if (features)
        backend.for_each(n, detail::self_distillation_row_weights<T, Label>{
                                detail::to_vector_ref(args.labels), static_cast<std::int64_t>(opts.ignore_index), row_weights});
    const any_view<const T, Space> feature_weights =
        features ? any_view<const T, Space>(row_weights, 1, &n, &unit) : any_view<const T, Space>{};
    const workspace term_ws{own > 0 ? static_cast<std::byte*>(ws.data) + own : ws.data, ws.bytes - own};

    const basic_ce_options<Real> ce_opts{opts.reduce, opts.ignore_index, Real(0)};
    const basic_kd_options<Real> kd_opts{opts.temperature, opts.reduce, opts.ignore_index, false};
    const basic_logit_mse_options<Real> mse_opts{opts.reduce, opts.ignore_index};
    const T alpha = static_cast<T>(opts.alpha);
    const T weights[3] = {T(1) - alpha, alpha, static_cast<T>(opts.feature_weight)};
    const auto head_rows = [&](std::size_t k) {
        const any_view<T, Space>& h = outs.head_loss;
        return detail::vector_ref<T>{h.data() + static_cast<index_t>(k) * h.stride(0), n, h.stride(1)};
    };
    const detail::matrix_ref<T> terms = detail::to_matrix_ref(outs.term_loss);
    const detail::vector_ref<const T> term_rows{scratch, n, 1};

    T total = T(0);
    for (std::size_t k = 0; k < k_count; ++k) {
        T head = T(0);
        T values[3] = {T(0), T(0), T(0)};
        const auto grad_logits = outs.grad_logits.empty() ? any_view<T, Space>{} : outs.grad_logits[k];
        const auto grad_features = outs.grad_features.empty() ? any_view<T, Space>{} : outs.grad_features[k];
        // Runs one (checked) term and adds its weighted value; `first` says whether its row losses
        // start exit k's row of head_loss (reduction none).
        const auto add_term = [&](int t, const auto& term_opts, const response_args<T, Space, Label>& term_args,
                                  const any_view<T, Space>& grad, bool accumulate, bool first) {
            const response_outputs<T, Space> term_outs{term_loss_view, grad, {}, outs.grad_scale * weights[t], accumulate};
            (void)run(backend, term_opts, term_args, term_outs, term_ws);  // checked above: cannot fail
            T value;
            if (rows_out) {
                value = backend.transform_reduce(n, detail::element_of<T>{term_rows}, T(0), detail::plus_op<T>{});
                if (outs.head_loss.bound())
                    backend.for_each(n, detail::self_distillation_rows<T>{head_rows(k), term_rows, weights[t], !first});
            } else {
                value = Backend::load(term_loss_view.data());
            }
            values[t] = value;
            head += weights[t] * value;
        };
        const auto& z = args.logits[k];
        add_term(self_distillation_ce, ce_opts, response_args<T, Space, Label>{z, {}, args.labels, {}}, grad_logits,
                 outs.accumulate, true);
        if (k != deepest) {
            add_term(self_distillation_kl, kd_opts, response_args<T, Space, Label>{z, args.logits[deepest], args.labels, {}},
                     grad_logits, true, false);
            if (features)
                add_term(self_distillation_hint, mse_opts,
                         response_args<T, Space, Label>{args.features[k], args.features[deepest], {}, feature_weights},
                         grad_features, outs.accumulate, false);
        } else if (grad_features.bound() && !outs.accumulate) {
            backend.for_each(n, detail::self_distillation_zero_rows<T>{detail::to_matrix_ref(grad_features)});
        }
        total += head;
        if (!rows_out && outs.head_loss.bound())
            backend.for_each(1, detail::self_distillation_store<T>{&detail::to_vector_ref(outs.head_loss)[static_cast<index_t>(k)], head});
        if (terms.present())
            for (int t = 0; t < 3; ++t)
                backend.for_each(1, detail::self_distillation_store<T>{
                                        terms.row(static_cast<index_t>(k)) + t * terms.col_stride, values[t]});
    }
    backend.for_each(1, detail::self_distillation_store<T>{outs.loss.data(), total});
    return {};
}

// The same steps on the default backend of the arguments' memory space.
template <class Real, class T, class Space, class Label>
status check_args(const basic_self_distillation_options<Real>& opts, const self_distillation_args<T, Space, Label>& args) noexcept(
    default_backend_t<Space>::is_nothrow) {
    return check_args(default_backend_t<Space>{}, opts, args);
}
template <class Real, class T, class Space, class Label>
status check(const basic_self_distillation_options<Real>& opts, const self_distillation_args<T, Space, Label>& args,
             const self_distillation_outputs<T, Space>& outs) noexcept(default_backend_t<Space>::is_nothrow) {
    return check(default_backend_t<Space>{}, opts, args, outs);
}
template <class Real, class T, class Space, class Label>
std::size_t workspace_bytes(const basic_self_distillation_options<Real>& opts, const self_distillation_args<T, Space, Label>& args,
                            const self_distillation_outputs<T, Space>& outs) noexcept {
    return workspace_bytes(default_backend_t<Space>{}, opts, args, outs);
}
template <class Real, class T, class Space, class Label>
status run(const basic_self_distillation_options<Real>& opts, const self_distillation_args<T, Space, Label>& args,
           const self_distillation_outputs<T, Space>& outs, workspace ws = {}) noexcept(default_backend_t<Space>::is_nothrow) {
    return run(default_backend_t<Space>{}, opts, args, outs, ws);
}

/// What distill::self_distillation returns.
template <class T, class Space = host_space>
struct self_distillation_result {
    ::distill::status status{};                    ///< ok, or why nothing was computed (no-exception builds)
    T loss{};                                      ///< sum of head_loss
    std::vector<T> head_loss{};                    ///< K values L_k (reduction none: summed over rows)
    std::vector<T> term_loss{};                    ///< K x 3 row-major: exit k's unweighted ce, kl, hint
    tensor<T, Space> row_losses{};                 ///< reduction none only: K x N rows of L_k
    std::vector<tensor<T, Space>> grad_logits{};   ///< K tensors N x C: dL / dz_k
    std::vector<tensor<T, Space>> grad_features{};  ///< with features: K tensors N x E (the deepest: 0)
};

/// The convenience object: self_distillation([backend,] logits, [features,] labels[, opts]) with
/// `logits` (and `features`) any range of K >= 2 real tensors (one element type and memory
/// space), shallow first and deepest last, and labels any integer tensor. Allocates the outputs
/// and the workspace; throws distill::error on bad input (without exceptions: the status is in
/// the result).
struct self_distillation_fn {
    template <backend_object Backend, std::ranges::forward_range R, std::ranges::forward_range F, integer_tensor L,
              class Real = double>
        requires real_tensor<std::ranges::range_value_t<R>> && real_tensor<std::ranges::range_value_t<F>>
    auto operator()(const Backend& backend, const R& logits, const F& features, const L& labels,
                    const basic_self_distillation_options<Real>& opts = {}) const {
        using P = std::ranges::range_value_t<R>;
        using T = value_type_t<P>;
        using Space = memory_space_t<P>;
        using Label = value_type_t<L>;
        static_assert(std::is_same_v<value_type_t<std::ranges::range_value_t<F>>, T>,
                      "features must have the element type of the logits");
        static_assert(std::is_same_v<memory_space_t<std::ranges::range_value_t<F>>, Space>,
                      "features must live in the memory space of the logits");
        static_assert(std::is_same_v<memory_space_t<L>, Space>, "labels must live in the memory space of the logits");
        std::vector<any_view<const T, Space>> z, f;
        for (const auto& v : logits) z.push_back(any_view<const T, Space>(as_view(v)));
        for (const auto& v : features) f.push_back(any_view<const T, Space>(as_view(v)));
        return compute<T, Space, Label>(backend, z, f, any_view<const Label, Space>(as_view(labels)), opts);
    }
    template <backend_object Backend, std::ranges::forward_range R, integer_tensor L, class Real = double>
        requires real_tensor<std::ranges::range_value_t<R>>
    auto operator()(const Backend& backend, const R& logits, const L& labels,
                    const basic_self_distillation_options<Real>& opts = {}) const {
        using P = std::ranges::range_value_t<R>;
        return (*this)(backend, logits, std::span<const P>{}, labels, opts);
    }
    template <std::ranges::forward_range R, std::ranges::forward_range F, integer_tensor L, class Real = double>
        requires real_tensor<std::ranges::range_value_t<R>> && real_tensor<std::ranges::range_value_t<F>>
    auto operator()(const R& logits, const F& features, const L& labels,
                    const basic_self_distillation_options<Real>& opts = {}) const {
        return (*this)(default_backend_t<memory_space_t<std::ranges::range_value_t<R>>>{}, logits, features, labels, opts);
    }
    template <std::ranges::forward_range R, integer_tensor L, class Real = double>
        requires real_tensor<std::ranges::range_value_t<R>>
    auto operator()(const R& logits, const L& labels, const basic_self_distillation_options<Real>& opts = {}) const {
        return (*this)(default_backend_t<memory_space_t<std::ranges::range_value_t<R>>>{}, logits, labels, opts);
    }

private:
    template <class T, class Space, class Label, class Backend, class Real>
    static self_distillation_result<T, Space> compute(const Backend& backend, const std::vector<any_view<const T, Space>>& z,
                                                      const std::vector<any_view<const T, Space>>& f,
                                                      const any_view<const Label, Space>& labels,
                                                      const basic_self_distillation_options<Real>& opts) {
        const self_distillation_args<T, Space, Label> args{z, labels, f};
        self_distillation_result<T, Space> result;
        if (status s = check_args(backend, opts, args); !s) {
            result.status = detail::raise(s);
            return result;
        }
        const index_t k_count = static_cast<index_t>(z.size());
        const index_t n = z[0].extent(0), c = z[0].extent(1), one = 1;
        const index_t head_extents[2] = {k_count, n}, term_extents[2] = {k_count, 3}, logit_extents[2] = {n, c};
        tensor<T, Space> loss(&one, 1), terms(term_extents, 2);
        tensor<T, Space> heads = opts.reduce == reduction::none ? tensor<T, Space>(head_extents, 2) : tensor<T, Space>(&k_count, 1);
        std::vector<any_view<T, Space>> grad_z, grad_f;
        for (index_t k = 0; k < k_count; ++k) result.grad_logits.emplace_back(logit_extents, 2);
        for (auto& g : result.grad_logits) grad_z.push_back(g.view());
        for (const auto& v : f) {
            const index_t extents[2] = {v.extent(0), v.extent(1)};
            result.grad_features.emplace_back(extents, 2);
        }
        for (auto& g : result.grad_features) grad_f.push_back(g.view());
        const self_distillation_outputs<T, Space> outs{loss.view(), heads.view(), terms.view(), grad_z, grad_f};
        const std::size_t bytes = workspace_bytes(backend, opts, args, outs);
        const index_t scratch_extent = static_cast<index_t>((bytes + sizeof(T) - 1) / sizeof(T));
        tensor<T, Space> scratch(&scratch_extent, 1);
        if (status s = run(backend, opts, args, outs, workspace{scratch.data(), bytes}); !s) {
            result = {};
            result.status = detail::raise(s);
            return result;
        }
        result.loss = Backend::load(loss.data());
        for (index_t e = 0; e < 3 * k_count; ++e) result.term_loss.push_back(Backend::load(terms.data() + e));
        if (opts.reduce == reduction::none) {
            for (index_t k = 0; k < k_count; ++k) {
                const any_view<const T, Space> row(heads.data() + k * n, 1, &n, &one);
                result.head_loss.push_back(backend.transform_reduce(n, detail::element_of<T>{detail::to_vector_ref(row)}, T(0),
                                                                    detail::plus_op<T>{}));
            }
            result.row_losses = std::move(heads);
        } else {
            for (index_t k = 0; k < k_count; ++k) result.head_loss.push_back(Backend::load(heads.data() + k));
        }
        return result;
    }
};

/// self_distillation(logits, [features,] labels[, opts]): BYOT's loss over K exits and the
/// gradient of the total for every exit's logits (and features).
inline constexpr self_distillation_fn self_distillation{};

}  // namespace distill
