// distill/losses/response/kd_topk.hpp: knowledge distillation from a sparse top-k teacher.
//
// An LLM teacher's full distribution over a vocabulary of V ~ 1e5 tokens is too large to
// store for every training token, so pipelines keep only its top-k token ids and their
// log-probabilities. Anshumann et al., "Sparse Logit Sampling: Accelerating Knowledge
// Distillation in LLMs", ACL 2025, analyse this Top-K KD (and show that it is biased).
// The two variants follow the reference code:
//   renormalize = false  verl (verl/trainer/distillation/fsdp/losses.py, compute_forward_kl_topk)
//   renormalize = true   DistillKit (distillkit/lossfuncs/kl.py, sparse_kl_div, missing mass "zero")
//
// Inputs per row i: the student logits z_i (V values), the teacher's token ids S_ij and its
// stored full-vocabulary log-probabilities l_ij (j < k, ids distinct, at temperature 1).
// With the temperature T > 0:
//
//     log q_ij = z_{i,S_ij} / T - LSE_v(z_iv / T)         student, normalised over the full vocabulary
//     log p_ij = l_ij                                     renormalize = false (needs T == 1 exactly)
//     log p_ij = l_ij / T - LSE_j'(l_ij' / T)             renormalize = true: p^(1/T) renormalised on the k ids
//     L_i = T^2 sum_j p_ij (log p_ij - log q_ij)
//
// reduced over rows with the weights of distill::reduction. Without renormalize the teacher's
// mass outside the top k is dropped (sum_j p_ij <= 1), and stored log-probabilities cannot be
// re-tempered without the full normaliser, hence T == 1. With k = V and renormalize = false
// this is kd at T = 1; with renormalize it is kd against a teacher whose logits are l_ij at
// the ids and -inf elsewhere.
//
// Gradients, with ps = softmax(z_i / T) over the vocabulary and P_i = sum_j p_ij:
//     dL_i/dz_ic = w_i T (P_i ps_c - sum_j p_ij [S_ij == c])
//     dL_i/dT    = w_i [2T D_i + T (sum_j p_ij ds_j - P_i sum_v ps_v ds_v)
//                       - T (sum_j p_ij da_j (log p_ij - log q_ij) - (sum_j p_ij da_j) D_i)]
// where D_i = L_i / T^2, ds = z/T shifted by the row max, da_j = l_ij/T shifted by the row's
// max over j (the sums are invariant to the shifts, which keep the terms small). The second
// line (the teacher's dependence on T) is there with renormalize only: without it the stored
// log-probabilities are constants, so d/dT differentiates T^2 and the student's 1/T (the value
// autograd gives at T = 1).
//
// Cost per row: O(V + k) time (the student row is read three times: maximum, sum of exp, which
// leaves exp(z / T - max) in the gradient row, and the gradient; the k teacher entries twice, a
// pack of them at a time; SIMD packs for float on the host), one exp per vocabulary entry and
// one per teacher entry and pass, O(1) extra memory, no N x V temporaries: a kernel touches the
// student row and the k teacher entries of its row, nothing else. The check step costs O(N k)
// for the range of the ids (row by row) and expected O(N k) for their distinctness (on the stack per row: a
// bitmap of the vocabulary when V <= 4096, else a hash set of up to 512 slots; rows of more than
// 256 ids then fall back to O(k^2) pairwise compares; no allocation).
//
// Masked entries: a -inf student logit has probability 0 (nothing is added where the teacher
// has no mass there; if a teacher id points at it with p > 0 the loss is +inf, as KL is, and
// d/dT is not finite). A -inf stored teacher log-probability has p = 0 and contributes
// nothing, as if the id were absent; with renormalize, a row whose k stored values are all
// -inf has no teacher mass and contributes 0 with a zero gradient. Each student row needs at
// least one finite logit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "divergence.hpp"
#include "driver.hpp"

namespace distill {

/// Parameters of kd_topk. Real is the type the parameters are stored in: kd_topk_options (double)
/// for general use; kd_topk_float_options for float-only builds.
template <class Real>
struct basic_kd_topk_options {
    Real temperature = 1;                     ///< T > 0 and finite; exactly 1 unless renormalize
    reduction reduce = reduction::batchmean;  ///< batchmean, sum or none
    std::int64_t ignore_index = -100;         ///< rows whose label equals this get weight 0
    bool renormalize = false;                 ///< renormalise the tempered top-k teacher to sum to 1
};
using kd_topk_options = basic_kd_topk_options<double>;
using kd_topk_float_options = basic_kd_topk_options<float>;

/// Inputs of kd_topk: N x V student logits, the teacher's N x k token ids (any integer type) and
/// N x k log-probabilities, and optional labels (length N, for ignore_index) and row weights.
template <class T, class Space = host_space, class Index = std::int64_t, class Label = std::int64_t>
struct topk_args {
    using real_type = T;
    using index_type = Index;
    using label_type = Label;
    using memory_space = Space;
    any_view<const T, Space> student;
    any_view<const Index, Space> teacher_index;   ///< ids in [0, V), distinct within a row, any order
    any_view<const T, Space> teacher_logprob;     ///< full-vocabulary log-probabilities at T = 1
    any_view<const Label, Space> labels{};        ///< optional; rows with labels_i == ignore_index get weight 0
    any_view<const T, Space> weight{};            ///< optional; per-row weights >= 0
};

/// Builds topk_args from any tensors (labels and weight may be distill::none).
template <real_tensor S, integer_tensor I, real_tensor Lp, optional_tensor L = none_t, optional_tensor W = none_t>
constexpr auto make_topk_args(const S& student, const I& teacher_index, const Lp& teacher_logprob,
                              const L& labels = none, const W& weight = none) {
    using T = value_type_t<S>;
    using Space = memory_space_t<S>;
    using Index = value_type_t<I>;
    static_assert(std::is_same_v<value_type_t<Lp>, T>, "student and teacher_logprob must have the same element type");
    static_assert(std::is_same_v<memory_space_t<I>, Space> && std::is_same_v<memory_space_t<Lp>, Space>,
                  "the teacher's ids and log-probabilities must live in the memory space of the student");
    using Label = detail::label_type_t<L>;
    detail::check_row_input_types<T, Space, L, W>();
    return topk_args<T, Space, Index, Label>{any_view<const T, Space>(as_view(student)),
                                             any_view<const Index, Space>(as_view(teacher_index)),
                                             any_view<const T, Space>(as_view(teacher_logprob)),
                                             detail::optional_view<const Label, Space>(labels),
                                             detail::optional_view<const T, Space>(weight)};
}

namespace detail {

inline constexpr const char* kd_topk_name = "kd_topk";


/// x in [0, v) for an integer of any type and signedness.
template <class Index>
DISTILL_HD constexpr bool index_in_vocabulary(Index x, index_t v) noexcept {
    if constexpr (std::is_signed_v<Index>) {
        if (x < Index(0)) return false;
    }
    return static_cast<std::uint64_t>(x) < static_cast<std::uint64_t>(v);
}

/// Element `flat` (row-major over N x k) of the ids is outside [0, V).
template <class Index>
struct topk_id_outside_vocabulary {
    matrix_ref<const Index> ids;
    index_t vocabulary;
    DISTILL_HD constexpr bool operator()(index_t flat) const noexcept {
        const index_t i = flat / ids.cols, j = flat % ids.cols;
        return !index_in_vocabulary(ids.row(i)[j * ids.col_stride], vocabulary);
    }
};

/// Row i of the ids holds an id outside [0, V) (k compares, no division per element).
template <class Index>
struct topk_row_has_outside {
    matrix_ref<const Index> ids;
    index_t vocabulary;
    DISTILL_HD constexpr bool operator()(index_t i) const noexcept {
        const Index* row = ids.row(i);
        bool outside = false;
        for (index_t j = 0; j < ids.cols; ++j) outside |= !index_in_vocabulary(row[j * ids.col_stride], vocabulary);
        return outside;
    }
};

/// Element `flat` of the ids equals an earlier id of its row: O(k) compares (used on the row that
/// has a repeat, to name the element).
template <class Index>
struct topk_id_repeats_earlier {
    matrix_ref<const Index> ids;
    DISTILL_HD constexpr bool operator()(index_t flat) const noexcept {
        const index_t i = flat / ids.cols, j = flat % ids.cols, stride = ids.col_stride;
        const Index* row = ids.row(i);
        const Index x = row[j * stride];
        for (index_t earlier = 0; earlier < j; ++earlier)
            if (row[earlier * stride] == x) return true;
        return false;
    }
};

/// Row i of the ids (already checked to lie in [0, V)) holds a repeated id: a bitmap of the
/// vocabulary on the stack when V <= 4096 (O(k) per row, one bit test per id), else an
/// open-addressing hash set on the stack (expected O(k) per row; up to 256 ids, beyond that the
/// O(k^2) pairwise compare); no scratch memory.
template <class Index>
struct topk_row_has_repeat {
    static constexpr int max_slots = 512;
    static constexpr index_t max_bitmap_vocabulary = 4096;
    matrix_ref<const Index> ids;
    index_t vocabulary;
    DISTILL_HD bool operator()(index_t i) const noexcept {
        const index_t k = ids.cols, stride = ids.col_stride;
        const Index* row = ids.row(i);
        if (vocabulary <= max_bitmap_vocabulary) {
            std::uint64_t seen[max_bitmap_vocabulary / 64];
            for (index_t w = 0; w < (vocabulary + 63) / 64; ++w) seen[w] = 0;
            for (index_t j = 0; j < k; ++j) {
                const auto x = static_cast<std::uint64_t>(row[j * stride]);
                const std::uint64_t bit = std::uint64_t(1) << (x & 63);
                if (seen[x >> 6] & bit) return true;
                seen[x >> 6] |= bit;
            }
            return false;
        }
        if (2 * k > max_slots) {
            for (index_t j = 1; j < k; ++j)
                for (index_t earlier = 0; earlier < j; ++earlier)
                    if (row[earlier * stride] == row[j * stride]) return true;
            return false;
        }
        index_t slots = 16;
        while (slots < 2 * k) slots *= 2;
        const std::uint64_t mask = static_cast<std::uint64_t>(slots - 1);
        Index keys[max_slots];
        bool used[max_slots];
        for (index_t h = 0; h < slots; ++h) used[h] = false;
        for (index_t j = 0; j < k; ++j) {
            const Index x = row[j * stride];
            std::uint64_t h = (static_cast<std::uint64_t>(x) * 0x9E3779B97F4A7C15ull) >> 40 & mask;
            while (used[h]) {
                if (keys[h] == x) return true;
                h = (h + 1) & mask;
            }
            used[h] = true;
            keys[h] = x;
        }
        return false;
    }
};

/// row[j] == value: finds the first occurrence of a repeated id for the message.
template <class Index>
struct topk_id_equals {
    const Index* row;
    index_t stride;
    Index value;
    DISTILL_HD constexpr bool operator()(index_t j) const noexcept { return row[j * stride] == value; }
};

/// "teacher.index[i][j] = x" at the start of an index error.
template <class Backend, class Index>
status topk_id_error(errc code, const matrix_ref<const Index>& ids, index_t i, index_t j, Index& value) {
    value = Backend::load(&ids.row(i)[j * ids.col_stride]);
    status s = method_error(code, kd_topk_name, "teacher.index");
    s.text("teacher.index[").number(i).text("][").number(j).text("] = ").number(static_cast<std::int64_t>(value));
    return s;
}

/// The student logits alone as response_args, so the shared student/label/weight/output checks apply.
template <class T, class Space, class Index, class Label>
constexpr response_args<T, Space, Label> student_only(const topk_args<T, Space, Index, Label>& a) noexcept {
    return {a.student, a.student, a.labels, a.weight};
}

/// The kd_topk row kernel: loss, gradient row and d/dT of row i. Shared by every backend.
/// ctx.teacher is the N x k matrix of stored log-probabilities, `ids` the N x k token ids.
template <class T, class Index, class Label>
struct kd_topk_row_kernel {
    /// Written for cooperative value types too (see lane_group): one GPU block per row.
    static constexpr bool cooperative_rows = true;
    /// On a GPU: 256 threads per row, 4 lanes each (one 16-byte access per thread, four
    /// independent chains; see gpu_row_shape).
    static constexpr gpu_row_shape gpu_rows{256, 4};
    row_context<T, Label> ctx;
    matrix_ref<const Index> ids;
    T tau, inv_tau;
    bool renormalize;

    DISTILL_HD row_result<T> operator()(index_t i) const noexcept {
        using V = row_value_t<T>;
        if constexpr (host_simd_v<V>)
            if (ctx.student.col_stride == 1 && (!ctx.grad.present() || ctx.grad.col_stride == 1)) return row<V, true>(i);
        return row<V, false>(i);
    }

    /// Row i: the two passes over the vocabulary (log-sum-exp of the student; its probabilities into
    /// the gradient row) and the k teacher entries run on V (SIMD packs for float on the host,
    /// unit-stride when contiguous; a GPU block's threads, block_lanes, on a GPU).
    template <class V, bool Unit = false>
    DISTILL_HD row_result<T> row(index_t i) const noexcept {
        const T w = ctx.row_scale(i);
        if (w == T(0)) {
            ctx.zero_grad_row(i);
            return {};
        }
        const index_t vocabulary = ctx.student.cols, cs = Unit ? 1 : ctx.student.col_stride;
        const index_t k = ids.cols, ci = ids.col_stride, cl = ctx.teacher.col_stride;
        const T* z = ctx.student.row(i);
        const Index* row_ids = ids.row(i);
        const T* stored = ctx.teacher.row(i);
        const T pad = -infinity_v<T>;  // lanes past the row's end: probability 0
        T* g = ctx.grad.present() ? ctx.grad.row(i) : nullptr;
        const index_t cg = Unit ? 1 : ctx.grad.col_stride;
        // The gradient row holds exp(z / T - max) from the sums until the gradient pass (one exp per
        // class less), unless the gradients accumulate into it, or on a GPU (an exp costs less there
        // than the row's traffic).
        T* const student_exp = ctx.accumulate || cooperative_v<V> ? nullptr : g;

        // The student's log-sum-exp: the maximum, then a compensated sum of exp(z / T - max); on a GPU
        // both in one pass (online_exp_sum).
        T max_s, sum_s;
        if constexpr (cooperative_v<V>) {
            const row_scaling<T> tempered{inv_tau};
            online_exp_sum<V, T> lse(V(lowest<T>()));
            for_each_pack<V>(vocabulary, [&](index_t v, int count) DISTILL_LAMBDA_INLINE {
                lse.add(tempered, load_lanes<V>(z + v * cs, cs, count, pad));
            });
            max_s = max_of(lowest<T>(), lane_max(lse.max) * inv_tau);
            const V to_row = exp_nonpositive(tempered(lse.max) - V(max_s));
            sum_s = lane_sum(lse.sum * to_row) - lane_sum(lse.lost * to_row);
        } else {
            V max_lanes = V(lowest<T>());
            for_each_pack<V>(vocabulary, [&](index_t v, int count) DISTILL_LAMBDA_INLINE {
                max_lanes = max_of(max_lanes, load_lanes<V>(z + v * cs, cs, count, pad));
            });
            max_s = max_of(lowest<T>(), lane_max(max_lanes) * inv_tau);
            blocked_sum<V> sum_lanes;
            for_each_pack<V>(vocabulary, [&](index_t v, int count) DISTILL_LAMBDA_INLINE {
                const V es = exp_nonpositive(load_lanes<V>(z + v * cs, cs, count, pad) * inv_tau - max_s);
                if (student_exp) store_lanes(student_exp + v * cg, cg, count, es);
                sum_lanes.add(es);
            });
            sum_s = sum_lanes.value();
        }
        const T log_sum_s = detail::log(sum_s);

        // renormalize: the tempered teacher's normaliser over its k entries.
        T max_a = 0, log_sum_a = 0, log_ratio = 0;
        if (renormalize) {
            online_logsumexp<T> teacher_lse;
            for (index_t j = 0; j < k; ++j) teacher_lse.add(stored[j * cl] * inv_tau);
            if (!(teacher_lse.sum > T(0))) {  // every stored log-probability is -inf: no teacher mass
                ctx.zero_grad_row(i);
                return {};
            }
            max_a = teacher_lse.max;
            log_sum_a = detail::log(teacher_lse.sum);
            // log p - log q = (da - ds) - log(sum_a / sum_s): no rounding at the scale of log V in
            // the per-entry difference (at T = 20 a row's divergence is ~1e-3, log V ~ 10).
            log_ratio = detail::log(teacher_lse.sum / sum_s);
        }

        // The k teacher entries, a pack of them at a time: the student logits at their ids are
        // gathered (lanes past k hold a -inf log-probability: p = 0).
        struct at_entries {
            V ds, da, p, log_ratio_pq;
        };
        const auto evaluate = [&](index_t j0, int count) DISTILL_LAMBDA_INLINE {
            at_entries e;
            e.ds = gather_lanes<V>(z, cs, row_ids + j0 * ci, ci, count, T(0)) * inv_tau - max_s;
            const V l = load_lanes<V>(stored + j0 * cl, cl, count, pad);
            if (renormalize) {
                e.da = l * inv_tau - max_a;
                e.p = exp_nonpositive(e.da - log_sum_a);  // <= 0: da <= 0 and the sum is >= 1
                e.log_ratio_pq = (e.da - e.ds) - log_ratio;
            } else {
                e.da = V(0);
                e.p = exp(l);  // stored log-probabilities: <= 0 unless the caller's are not
                e.log_ratio_pq = l - (e.ds - log_sum_s);
            }
            return e;
        };

        V divergence_lanes = V(0), mass_lanes = V(0), p_ds_lanes = V(0), p_da_lanes = V(0), p_da_ratio_lanes = V(0);
        for_each_pack<V>(k, [&](index_t j0, int count) DISTILL_LAMBDA_INLINE {
            const at_entries e = evaluate(j0, count);
            const auto has_mass = e.p > V(0);  // no teacher mass: contributes 0, never 0 * inf
            divergence_lanes += select(has_mass, e.p * e.log_ratio_pq, V(0));
            mass_lanes += select(has_mass, e.p, V(0));
            if (ctx.want_dtemperature) {
                p_ds_lanes += select(has_mass, e.p * e.ds, V(0));
                p_da_lanes += select(has_mass, e.p * e.da, V(0));
                p_da_ratio_lanes += select(has_mass, e.p * e.da * e.log_ratio_pq, V(0));
            }
        });
        const T divergence = lane_sum(divergence_lanes), mass = lane_sum(mass_lanes);
        const T p_ds = lane_sum(p_ds_lanes), p_da = lane_sum(p_da_lanes), p_da_ratio = lane_sum(p_da_ratio_lanes);

        // Student pass over the vocabulary: the gradient's P ps_c part, and E_ps[ds] for d/dT.
        const T scale = w * tau * ctx.grad_factor;  // d(w T^2 D)/d(z/T) times d(z/T)/dz = w T (...)
        T ps_ds = 0;
        if (g || ctx.want_dtemperature) {
            const T inv_sum_s = T(1) / sum_s, grad_coef = scale * mass * inv_sum_s;
            V ps_ds_lanes = V(0);
            for_each_pack<V>(vocabulary, [&](index_t v, int count) DISTILL_LAMBDA_INLINE {
                const auto shifted = [&]() DISTILL_LAMBDA_INLINE {
                    return load_lanes<V>(z + v * cs, cs, count, pad) * inv_tau - max_s;
                };
                if (student_exp && !ctx.want_dtemperature) {  // ps = es / sum_s, es stored by the sums
                    store_lanes(g + v * cg, cg, count, V(grad_coef) * load_lanes<V>(g + v * cg, cg, count, T(0)));
                    return;
                }
                const V ds = shifted();
                const V es = student_exp ? load_lanes<V>(student_exp + v * cg, cg, count, T(0)) : exp_nonpositive(ds);
                if (g) ctx.put_grad(g + v * cg, cg, count, V(grad_coef) * es);
                if (ctx.want_dtemperature) ps_ds_lanes += select(es > V(0), es * ds, V(0));
            });
            ps_ds = lane_sum(ps_ds_lanes) * inv_sum_s;
        }
        // ... then the teacher's part at its k ids (distinct, so each is one subtraction), once every
        // worker's pass is done (cooperative value types, see lane_group).
        lane_group<V>::barrier();
        if (g) {
            for_each_pack<V>(k, [&](index_t j0, int count) DISTILL_LAMBDA_INLINE {
                const at_entries e = evaluate(j0, count);
                subtract_at_lanes(g, cg, row_ids + j0 * ci, ci, count, V(scale) * e.p);  // lanes with p = 0: nothing
            });
        }

        row_result<T> r;
        r.value = w * tau * tau * divergence;
        if (ctx.want_dtemperature) {
            T d = T(2) * tau * divergence + tau * (p_ds - mass * ps_ds);
            if (renormalize) d -= tau * (p_da_ratio - p_da * divergence);
            r.dtemperature = w * ctx.grad_factor * d;
        }
        return r;
    }
};

template <class Real>
status check_kd_topk_params(const basic_kd_topk_options<Real>& o) noexcept {
    if (status s = check_tempered(kd_topk_name, o); !s) return s;
    if (!o.renormalize && !(o.temperature == Real(1)))
        return method_error(errc::invalid_parameter, kd_topk_name, "temperature").text("temperature = ")
            .real(o.temperature)
            .text(" needs renormalize: stored log-probabilities cannot be re-tempered, so renormalize = false needs temperature 1");
    return {};
}

/// teacher.index and teacher.logprob: present, 2-D, the same N x k shape, N rows, 1 <= k <= V.
template <class T, class Space, class Index, class Label>
status check_topk_teacher(const topk_args<T, Space, Index, Label>& a) noexcept {
    const char* method = kd_topk_name;
    const index_t n = a.student.extent(0), vocabulary = a.student.extent(1);
    if (status s = check_present(method, "teacher.index", a.teacher_index); !s) return s;
    if (a.teacher_index.rank() != 2)
        return method_error(errc::bad_rank, method, "teacher.index").text("teacher.index must be 2-D (N x k), got shape ")
            .shape(a.teacher_index.extents(), a.teacher_index.rank());
    if (status s = check_present(method, "teacher.logprob", a.teacher_logprob); !s) return s;
    if (a.teacher_logprob.rank() != 2 || a.teacher_logprob.extent(0) != a.teacher_index.extent(0) ||
        a.teacher_logprob.extent(1) != a.teacher_index.extent(1))
        return method_error(errc::shape_mismatch, method, "teacher.logprob").text("teacher.logprob has shape ")
            .shape(a.teacher_logprob.extents(), a.teacher_logprob.rank()).text(" but teacher.index has shape ")
            .shape(a.teacher_index.extents(), 2);
    if (a.teacher_index.extent(0) != n)
        return method_error(errc::shape_mismatch, method, "teacher.index").text("teacher.index has shape ")
            .shape(a.teacher_index.extents(), 2).text(" but student has ").number(n).text(" rows (shape ")
            .shape(a.student.extents(), 2).text(")");
    const index_t k = a.teacher_index.extent(1);
    if (k < 1 || k > vocabulary)
        return method_error(errc::shape_mismatch, method, "teacher.index").text("teacher.index has shape ")
            .shape(a.teacher_index.extents(), 2).text(": k = ").number(k).text(" is outside [1, V] = [1, ")
            .number(vocabulary).text("] (student has shape ").shape(a.student.extents(), 2).text(")");
    return {};
}

/// The ids' values: in [0, V), then distinct within each row (read through the backend).
template <class Backend, class T, class Space, class Index, class Label>
status check_topk_ids(const Backend& backend, const topk_args<T, Space, Index, Label>& a) noexcept(Backend::is_nothrow) {
    const index_t vocabulary = a.student.extent(1);
    const matrix_ref<const Index> ids = to_matrix_ref(a.teacher_index);
    Index value{};
    // The ids of one row as a 1 x k matrix (to name the first bad element of a bad row).
    const auto row_of = [&](index_t i) {
        matrix_ref<const Index> row = ids;
        row.data = ids.row(i);
        row.rows = 1;
        return row;
    };
    // The first row with an id outside [0, V), then its first such element.
    const index_t outside_row = backend.transform_reduce(
        ids.rows, first_where<topk_row_has_outside<Index>>{{ids, vocabulary}, ids.rows}, ids.rows, min_op<index_t>{});
    if (outside_row < ids.rows) {
        const index_t j = backend.transform_reduce(
            ids.cols, first_where<topk_id_outside_vocabulary<Index>>{{row_of(outside_row), vocabulary}, ids.cols}, ids.cols,
            min_op<index_t>{});
        status s = topk_id_error<Backend>(errc::index_out_of_range, ids, outside_row, j, value);
        return s.text(" is outside the vocabulary [0, ").number(vocabulary).text(")");
    }
    // The first row with a repeated id (expected O(k) per row), then its first repeated element.
    const index_t repeat_row =
        backend.transform_reduce(ids.rows, first_where<topk_row_has_repeat<Index>>{{ids, vocabulary}, ids.rows}, ids.rows, min_op<index_t>{});
    if (repeat_row < ids.rows) {
        const index_t repeat = repeat_row * ids.cols +
            backend.transform_reduce(ids.cols, first_where<topk_id_repeats_earlier<Index>>{{row_of(repeat_row)}, ids.cols},
                                     ids.cols, min_op<index_t>{});
        const index_t i = repeat / ids.cols, j = repeat % ids.cols;
        status s = topk_id_error<Backend>(errc::repeated_index, ids, i, j, value);
        const index_t first = backend.transform_reduce(
            j, first_where<topk_id_equals<Index>>{{ids.row(i), ids.col_stride, value}, j}, j, min_op<index_t>{});
        return s.text(" appears twice in row ").number(i).text(" (also at teacher.index[").number(i).text("][")
            .number(first).text("]); the ids of a row must be distinct");
    }
    return {};
}

}  // namespace detail

/// Check of the parameters and inputs (before anything is allocated): every shape, then the
/// values of the ids, labels and weights. Expected O(N k) for the distinctness of the ids.
template <class Backend, class Real, class T, class Space, class Index, class Label>
status check_args(const Backend& backend, const basic_kd_topk_options<Real>& opts,
                  const topk_args<T, Space, Index, Label>& args) noexcept(Backend::is_nothrow) {
    static_assert(backend_for<Backend, Space>, "this backend cannot run on the memory space of the arguments");
    static_assert(std::is_integral_v<Index>, "teacher_index must hold integers");
    const char* method = detail::kd_topk_name;
    if (status s = detail::check_kd_topk_params(opts); !s) return s;
    const response_args<T, Space, Label> student = detail::student_only(args);
    if (status s = detail::check_logits(method, student); !s) return s;
    if (status s = detail::check_topk_teacher(args); !s) return s;
    const index_t n = args.student.extent(0);
    if (status s = detail::check_row_vector(method, "labels", args.labels, n); !s) return s;
    if (status s = detail::check_row_vector(method, "weight", args.weight, n); !s) return s;
    if (status s = detail::check_topk_ids(backend, args); !s) return s;
    return detail::check_rows(backend, method, student, static_cast<std::int64_t>(opts.ignore_index), false);
}

/// check_args, then the outputs: loss (1 or N values), optional N x V grad_student and 1-value
/// grad_temperature, none overlapping an input or another output.
template <class Backend, class Real, class T, class Space, class Index, class Label>
status check(const Backend& backend, const basic_kd_topk_options<Real>& opts, const topk_args<T, Space, Index, Label>& args,
             const response_outputs<T, Space>& outs) noexcept(Backend::is_nothrow) {
    const char* method = detail::kd_topk_name;
    if (status s = check_args(backend, opts, args); !s) return s;
    if (status s = detail::check_outputs(method, detail::student_only(args), outs, opts.reduce); !s) return s;
    const detail::address_range outputs[] = {detail::range_of(outs.loss), detail::range_of(outs.grad_student),
                                             detail::range_of(outs.grad_temperature)};
    const char* output_names[] = {"loss", "grad_student", "grad_temperature"};
    const detail::address_range teacher[] = {detail::range_of(args.teacher_index), detail::range_of(args.teacher_logprob)};
    const char* teacher_names[] = {"teacher.index", "teacher.logprob"};
    for (int o = 0; o < 3; ++o)
        for (int t = 0; t < 2; ++t)
            if (outputs[o].overlaps(teacher[t]))
                return detail::method_error(errc::aliasing, method, output_names[o]).text("output ").text(output_names[o])
                    .text(" overlaps input ").text(teacher_names[t]);
    return {};
}

/// Scratch the run step needs on the backend (0 on the CPU; one value per row on Thrust).
template <class Backend, class Real, class T, class Space, class Index, class Label>
std::size_t workspace_bytes(const Backend&, const basic_kd_topk_options<Real>& opts,
                            const topk_args<T, Space, Index, Label>& args, const response_outputs<T, Space>& outs) noexcept {
    const index_t n = args.student.bound() && args.student.rank() == 2 ? args.student.extent(0) : 0;
    return Backend::template rows_workspace_bytes<T>(n, opts.reduce, outs.grad_temperature.bound());
}

/// Run step: checks, then the loss and the requested gradients into the caller's outputs.
/// noexcept and allocation-free on the CPU backend; on error nothing is written.
template <class Backend, class Real, class T, class Space, class Index, class Label>
status run(const Backend& backend, const basic_kd_topk_options<Real>& opts, const topk_args<T, Space, Index, Label>& args,
           const response_outputs<T, Space>& outs, workspace ws = {}) noexcept(Backend::is_nothrow) {
    if (status s = check(backend, opts, args, outs); !s) return s;
    if (status s = detail::check_workspace(detail::kd_topk_name, ws, workspace_bytes(backend, opts, args, outs)); !s)
        return s;
    const row_context<T, Label> context =
        detail::make_row_context(backend, args.student, args.teacher_logprob, args.labels, args.weight,
                                 static_cast<std::int64_t>(opts.ignore_index), opts.reduce, outs);
    const T tau = static_cast<T>(opts.temperature);
    const detail::kd_topk_row_kernel<T, Index, Label> kernel{context, detail::to_matrix_ref(args.teacher_index), tau,
                                                            T(1) / tau, opts.renormalize};
    detail::run_rows_into(backend, args.student.extent(0), kernel, opts.reduce, outs, ws);
    return {};
}

// The same steps on the default backend of the arguments' memory space.
template <class Real, class T, class Space, class Index, class Label>
status check_args(const basic_kd_topk_options<Real>& opts, const topk_args<T, Space, Index, Label>& args) noexcept(
    default_backend_t<Space>::is_nothrow) {
    return check_args(default_backend_t<Space>{}, opts, args);
}
template <class Real, class T, class Space, class Index, class Label>
status check(const basic_kd_topk_options<Real>& opts, const topk_args<T, Space, Index, Label>& args,
             const response_outputs<T, Space>& outs) noexcept(default_backend_t<Space>::is_nothrow) {
    return check(default_backend_t<Space>{}, opts, args, outs);
}
template <class Real, class T, class Space, class Index, class Label>
std::size_t workspace_bytes(const basic_kd_topk_options<Real>& opts, const topk_args<T, Space, Index, Label>& args,
                            const response_outputs<T, Space>& outs) noexcept {
    return workspace_bytes(default_backend_t<Space>{}, opts, args, outs);
}
template <class Real, class T, class Space, class Index, class Label>
status run(const basic_kd_topk_options<Real>& opts, const topk_args<T, Space, Index, Label>& args,
           const response_outputs<T, Space>& outs, workspace ws = {}) noexcept(default_backend_t<Space>::is_nothrow) {
    return run(default_backend_t<Space>{}, opts, args, outs, ws);
}

/// The convenience function object distill::kd_topk:
///   kd_topk(student, teacher_index, teacher_logprob[, labels[, weight]][, opts])
///   kd_topk(backend, student, teacher_index, teacher_logprob, labels, weight[, opts])
/// labels and weight may be distill::none. Returns a loss_result (loss, row_losses for reduction
/// none, N x V grad_student, grad_temperature); throws distill::error on bad input (with
/// exceptions disabled, returns the status in the result instead).
struct kd_topk_fn {
    template <backend_object Backend, real_tensor S, integer_tensor I, real_tensor Lp, optional_tensor L,
              optional_tensor W, class Real = double>
    auto operator()(const Backend& backend, const S& student, const I& teacher_index, const Lp& teacher_logprob,
                    const L& labels, const W& weight, const basic_kd_topk_options<Real>& opts = {}) const {
        const auto args = make_topk_args(student, teacher_index, teacher_logprob, labels, weight);
        return detail::run_owning(
            backend, args, opts.reduce, true, [&] { return check_args(backend, opts, args); },
            [&](const auto& outs) { return workspace_bytes(backend, opts, args, outs); },
            [&](const auto& outs, workspace ws) { return run(backend, opts, args, outs, ws); });
    }
    template <real_tensor S, integer_tensor I, real_tensor Lp, optional_tensor L, optional_tensor W, class Real = double>
    auto operator()(const S& student, const I& teacher_index, const Lp& teacher_logprob, const L& labels, const W& weight,
                    const basic_kd_topk_options<Real>& opts = {}) const {
        return (*this)(default_backend_t<memory_space_t<S>>{}, student, teacher_index, teacher_logprob, labels, weight, opts);
    }
    template <real_tensor S, integer_tensor I, real_tensor Lp, optional_tensor L, class Real = double>
    auto operator()(const S& student, const I& teacher_index, const Lp& teacher_logprob, const L& labels,
                    const basic_kd_topk_options<Real>& opts = {}) const {
        return (*this)(student, teacher_index, teacher_logprob, labels, none, opts);
    }
    template <real_tensor S, integer_tensor I, real_tensor Lp, class Real = double>
    auto operator()(const S& student, const I& teacher_index, const Lp& teacher_logprob,
                    const basic_kd_topk_options<Real>& opts = {}) const {
        return (*this)(student, teacher_index, teacher_logprob, none, none, opts);
    }
};

/// kd_topk(student, teacher_index, teacher_logprob[, labels[, weight]][, opts]): loss, d loss / d
/// student and d loss / d T.
inline constexpr kd_topk_fn kd_topk{};

}  // namespace distill
