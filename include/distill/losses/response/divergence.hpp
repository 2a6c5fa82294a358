// distill/losses/response/divergence.hpp: the row kernel of every divergence between the
// tempered student and teacher distributions that is a sum of per-class terms.
//
// For s = student_i / T, t = teacher_i / T, ls = log_softmax(s), lt = log_softmax(t),
// ps = exp(ls), pt = exp(lt), a method supplies the per-class term
//
//     phi_c = phi(ls_c, lt_c, ps_c, pt_c)   with  a_c = d phi_c / d ls_c,  b_c = d phi_c / d lt_c
//
// (total derivatives: ps_c = exp(ls_c) moves with ls_c) as terms(ls, lt, ps, pt, ls_minus_lt),
// where ls_minus_lt = ls - lt formed accurately (use it rather than ls - lt whenever phi depends
// on the log ratio), and the row loss is L_i = T^2 sum_c phi_c. Through the softmax Jacobian d ls_j / d s_c = delta_jc - ps_c:
//
//     dL_i / d student_ic = w_i T (a_c - ps_c A),   A = sum_j a_j
//     dL_i / d T          = w_i [2T sum phi - T (sum_c (a_c - ps_c A) s_c + sum_c (b_c - pt_c B) t_c)]
//
// with B = sum_j b_j; s and t may be shifted by any constant per row (the bracketed sums
// are invariant), which keeps them small. Four reads of a row: maxima; sums of exp (which
// leave exp(s - max_s) in the gradient row); loss, A, B and the d/dT sums; the gradient row
// (recomputing the terms; no per-class storage but the gradient row itself, and for
// next_row_scratch terms the next row's, when the backend runs that row next). On the host SIMD
// path without d/dT, rows over 1 MiB take the first two in one chunked pass, and the loss pass
// runs in tiles of two loops each (see row_impl); with the next row's scratch, terms linear in
// ls - lt (linear_in_log_ratio_v) have that part summed by the statistics pass, and the loss
// pass reads only the stored exps. A term whose probability is 0 contributes 0, never 0 * inf.
#pragma once

#include <cstddef>
#include <type_traits>

#include "../../detail/math.hpp"
#include "../../detail/simd.hpp"
#include "driver.hpp"

namespace distill {

/// A per-class divergence term and its derivatives with respect to ls and lt.
template <class T>
struct divergence_term {
    T value{};
    T d_log_student{};
    T d_log_teacher{};
};

namespace detail {

/// log(wa exp(la) + wb exp(lb)) for weights in (0, 1], in log space (lanes where both are -inf
/// give -inf).
template <class V, class T>
DISTILL_HD DISTILL_FORCE_INLINE V log_mix(V la, T log_wa, V lb, T log_wb) noexcept {
    const V x = la + V(log_wa), y = lb + V(log_wb);
    const V hi = max_of(x, y), lo = select(x > y, y, x);
    return select(hi > V(lowest<T>()), hi + detail::log1p(exp_nonpositive(lo - hi)), hi);
}

/// Online max and sum of exp(x - max) in one pass: log-sum-exp = max + log(sum). The sum is
/// compensated (Kahan): a plain float sum of C ~ 1e4 terms is off by ~sqrt(C) 6e-8 ~ 1e-5
/// relative, which shifts every log-probability by as much; at T = 20 that is 4e-3 of loss.
template <class T>
struct online_logsumexp {
    T max = lowest<T>();
    T sum = 0;
    T lost = 0;  ///< what the last additions rounded away (Kahan)
    DISTILL_HD void add(T x) noexcept {
        if (x > max) {
            const T scale = detail::exp(max - x);
            sum = sum * scale;
            lost = lost * scale;
            max = x;
            x = max;
        }
        const T y = detail::exp(x - max) - lost;
        const T t = sum + y;
        lost = (t - sum) - y;
        sum = t;
    }
};

/// What the log-softmax of a student row and a teacher row needs: their maxima, the logs of
/// their sums of exp(x - max), and log(sum_t / sum_s), from which
///   ls = (s - max_s) - log_sum_s,   lt = (t - max_t) - log_sum_t,
///   ls - lt = ((s - max_s) - (t - max_t)) + log_ratio
/// without rounding at the scale of log C (at T = 20 a row's KL is ~1e-3 while log-probabilities
/// are ~log C) or cancelling large maxima (|z / T| ~ 2e3).
template <class T>
struct softmax_pair_stats {
    T max_s, max_t, log_sum_s, log_sum_t, log_ratio;
    T sum_s, sum_t;          ///< sums of exp(s - max_s), exp(t - max_t)
    T inv_sum_s, inv_sum_t;  ///< ps = exp(s - max_s) * inv_sum_s, pt = exp(t - max_t) * inv_sum_t
    T student_gap = 0;       ///< with `gap`: sum_c exp(s_c - max_s) ((s_c - max_s) - (t_c - max_t)) (0 * x = 0)
    /// With `teacher_exp`: sum_c pt_c (ls_c - lt_c) over the classes whose two stored exps are > 0
    /// (the others add 0): the part of a term linear in ls - lt (see linear_in_log_ratio_v), summed
    /// here so that the loss pass reads neither logit row again.
    T teacher_log_ratio = 0;

    /// The members that follow from the two sums (log_sums = false leaves log_sum_s, log_sum_t 0).
    DISTILL_HD void set_sums(T total_s, T total_t, bool log_sums) noexcept {
        log_sum_s = log_sums ? detail::log(total_s) : T(0);  // kd needs only the ratio
        log_sum_t = log_sums ? detail::log(total_t) : T(0);
        log_ratio = detail::log(total_t / total_s);
        sum_s = total_s;
        sum_t = total_t;
        inv_sum_s = T(1) / total_s;
        inv_sum_t = T(1) / total_t;
    }
};

/// s' = x * scale with scale > 0: the tempered logit (max(s') = scale * max(x)).
template <class T>
struct row_scaling {
    T scale = 1;
    template <class V>
    DISTILL_HD DISTILL_FORCE_INLINE constexpr V operator()(V x) const noexcept {
        return x * scale;
    }
};
/// row_scaling whose product is rounded before anything else uses it (rounded_product): x * scale - max
/// then gives the same bits wherever it is computed, whatever the compiler contracts into FMAs
/// (terms with exact ties compare ps and pt that come from two different passes).
template <class T>
struct rounded_row_scaling {
    T scale = 1;
    template <class V>
    DISTILL_HD DISTILL_FORCE_INLINE V operator()(V x) const noexcept {
        return rounded_product(x, V(scale));
    }
};
template <class F>
inline constexpr bool is_row_scaling_v = false;
template <class T>
inline constexpr bool is_row_scaling_v<row_scaling<T>> = true;
template <class T>
inline constexpr bool is_row_scaling_v<rounded_row_scaling<T>> = true;

/// The lines a row kernel fetches for the next row while it computes on this one (host SIMD on
/// contiguous rows; null pointers fetch nothing), so that the next row's first pass reads from
/// cache instead of waiting on memory while the compute-bound passes leave the memory bus idle.
template <class T>
struct next_row_lines {
    const T* student = nullptr;  ///< the next row's student
    const T* teacher = nullptr;  ///< the next row's teacher
    const T* scratch = nullptr;  ///< a gradient row the next row will write first (fetched for writing)
    bool into_l2 = false;        ///< into L2 rather than L1 (when this row's own arrays already fill L1)

    DISTILL_HD DISTILL_FORCE_INLINE void read(const T* row, index_t c) const noexcept {
        if (!row) return;
        if (into_l2) prefetch<prefetch_kind::read_l2>(row + c);
        else prefetch(row + c);
    }
    /// The lines of column c (one pack) of each row the pass is to fetch.
    DISTILL_HD DISTILL_FORCE_INLINE void fetch(index_t c, bool student_row, bool teacher_row, bool scratch_row) const noexcept {
        if (student_row) read(student, c);
        if (teacher_row) read(teacher, c);
        if (scratch_row && scratch) prefetch<prefetch_kind::write_l2>(scratch + c);
    }
};

/// The sums behind softmax_pair_stats::teacher_log_ratio: et (ds - dt) and et, with ds and dt
/// taken at least -log_ratio_floor_v<T> (clamped_gap): a class whose student exp is 0 (a masked
/// or very unlikely student class) then adds a finite et (ds - dt), and one whose teacher exp is 0
/// adds 0 (never 0 * inf). The loss pass, which takes such classes in full, subtracts what was
/// counted here through the same clamped_gap. (Clamping costs two maxima per pack where testing
/// both exps cost two compares and two selects: the sums measured 10 % of jsd's time in cache.)
template <class T>
inline constexpr T log_ratio_floor_v = T(88);
template <class V>
DISTILL_HD DISTILL_FORCE_INLINE V clamped_gap(V ds, V dt) noexcept {
    using T = decltype(lane_sum(ds));
    return max_of(ds, V(-log_ratio_floor_v<T>)) - max_of(dt, V(-log_ratio_floor_v<T>));
}
template <class V>
struct teacher_log_ratio_sums {
    blocked_sum<V> gap, weight;
    DISTILL_HD DISTILL_FORCE_INLINE void add_to_block(V et, V ds, V dt) noexcept {
        gap.add_to_block(et * clamped_gap(ds, dt));
        weight.add_to_block(et);
    }
    DISTILL_HD DISTILL_FORCE_INLINE void close_block() noexcept {
        gap.close_block();
        weight.close_block();
    }
};

/// Per lane: the running maximum of raw values x (f increasing) and the compensated sum of
/// exp(f(x) - f(max)), rescaled when the maximum rises (online softmax).
template <class V, class T>
struct online_exp_sum {
    V max, sum, lost;
    DISTILL_HD DISTILL_FORCE_INLINE online_exp_sum(V lowest_value) noexcept : max(lowest_value), sum(V(0)), lost(V(0)) {}
    template <class F>
    DISTILL_HD DISTILL_FORCE_INLINE void add(const F& f, V x) noexcept {
        raise_running_max(max, sum, lost, x, f);  // select form; block_lanes: a branch per thread
        // The shift at least lowest: f(lowest) overflows to -inf for f(x) = x / T with T < 1, and a
        // lane that has seen only -inf would take exp(-inf - -inf).
        const V y = exp_nonpositive(f(x) - max_of(f(max), V(lowest<T>()))) - lost;
        const V total = sum + y;
        lost = (total - sum) - y;
        sum = total;
    }
};
/// The lanes where x > max rescale sum and lost by exp(f(max) - f(x)) and take x as their max.
template <class V, class F>
DISTILL_HD DISTILL_FORCE_INLINE void raise_running_max(V& max, V& sum, V& lost, V x, const F& f) noexcept {
    const auto rises = x > max;
    const V scale = select(rises, exp_nonpositive(f(max) - f(x)), V(1));
    sum = sum * scale;
    lost = lost * scale;
    max = select(rises, x, max);
}

/// softmax_pair_statistics in one pass over both rows, for cooperative value types (a GPU block
/// per row, where a second pass costs a row's memory traffic and an exp costs little): each lane
/// keeps online_exp_sum of its elements, and the lanes are combined against the row's maxima.
/// Only for increasing scalings, without stored exps or the reverse-KL gap.
template <class V, bool Excluding, class T, class FS, class FT>
DISTILL_HD DISTILL_FORCE_INLINE softmax_pair_stats<T> online_softmax_pair_statistics(const T* s, index_t cs, const T* t, index_t ct,
                                                                          index_t cols, const FS& fs, const FT& ft,
                                                                          bool log_sums, index_t skip) noexcept {
    const T pad = -infinity_v<T>;
    const auto load = [&](const T* row, index_t stride, index_t c, int count) DISTILL_LAMBDA_INLINE {
        if constexpr (Excluding) return load_lanes_excluding<V>(row, c, stride, count, pad, skip);
        else return load_lanes<V>(row + c * stride, stride, count, pad);
    };
    online_exp_sum<V, T> os(V(lowest<T>())), ot(V(lowest<T>()));
    for_each_pack<V>(cols, [&](index_t c, int count) DISTILL_LAMBDA_INLINE {
        os.add(fs, load(s, cs, c, count));
        ot.add(ft, load(t, ct, c, count));
    });
    softmax_pair_stats<T> r;
    r.max_s = max_of(lowest<T>(), fs(lane_max(os.max)));  // as the two-pass form: the maximum of fs(x) and lowest
    r.max_t = max_of(lowest<T>(), ft(lane_max(ot.max)));
    // Each lane's sum against the row's maximum (a lane that saw no finite value has sum 0).
    const V to_row_s = exp_nonpositive(fs(os.max) - V(r.max_s)), to_row_t = exp_nonpositive(ft(ot.max) - V(r.max_t));
    r.set_sums(lane_sum(os.sum * to_row_s) - lane_sum(os.lost * to_row_s),
               lane_sum(ot.sum * to_row_t) - lane_sum(ot.lost * to_row_t), log_sums);
    return r;
}

/// softmax_pair_stats of the transformed rows fs(s), ft(t) (fs(x) = x / T, or a standardization),
/// in two passes over V lanes: the maxima, then compensated sums of exp(x - max). When
/// `student_exp` is not null, exp(fs(s) - max_s) is also stored there (stride `ce`): the caller's
/// gradient row, so that the next pass gets ps by a multiplication instead of another exp; so is
/// exp(ft(t) - max_t) at `teacher_exp` (same stride) when it is not null. The second pass also
/// fetches the next row's student and scratch lines in `next`. With `teacher_exp`, the pass also
/// sums pt (ls - lt) over the classes whose exps are both > 0 (teacher_log_ratio), as et (ds - dt)
/// and et, scaled at the end. log_sums = false leaves
/// log_sum_s and log_sum_t 0 (two logs per row fewer for callers that need only log_ratio).
/// gap = true also sums exp(s' - max_s) (s' - max_s - (t' - max_t)), from which the reverse KL is
/// student_gap / sum_s + log_ratio without another pass. Excluding = true leaves column `skip` out of
/// every statistic (dkd's target class): its lane is loaded as -inf, as if the class were masked, so
/// its exp is exactly 0 and, with student_exp, 0 is stored there (one predictable branch per pack;
/// the other callers, Excluding = false, compile to the loads without it).
template <class V, bool Excluding = false, class T, class FS, class FT>
DISTILL_HD DISTILL_FORCE_INLINE softmax_pair_stats<T> softmax_pair_statistics(const T* s, index_t cs, const T* t, index_t ct, index_t cols,
                                                         const FS& fs, const FT& ft, T* student_exp = nullptr,
                                                         index_t ce = 1, next_row_lines<T> next = {}, bool log_sums = true,
                                                         bool gap = false, index_t skip = -1, T* teacher_exp = nullptr) noexcept {
    if constexpr (cooperative_v<V> && is_row_scaling_v<FS> && is_row_scaling_v<FT>)
        if (!student_exp && !teacher_exp && !gap)
            return online_softmax_pair_statistics<V, Excluding>(s, cs, t, ct, cols, fs, ft, log_sums, skip);
    const T pad = -infinity_v<T>;  // lanes past the row's end (and the skipped column): exp(-inf) = 0
    const auto load = [&](const T* row, index_t stride, index_t c, int count) DISTILL_LAMBDA_INLINE {
        if constexpr (Excluding) return load_lanes_excluding<V>(row, c, stride, count, pad, skip);
        else return load_lanes<V>(row + c * stride, stride, count, pad);
    };
    V max_s = V(lowest<T>()), max_t = V(lowest<T>());
    softmax_pair_stats<T> r;
    if constexpr (is_row_scaling_v<FS> && is_row_scaling_v<FT>) {
        // The maxima of the raw rows, scaled once (x -> x * scale is increasing).
        for_each_pack<V>(cols, [&](index_t c, int count) DISTILL_LAMBDA_INLINE {
            max_s = max_of(max_s, load(s, cs, c, count));
            max_t = max_of(max_t, load(t, ct, c, count));
        });
        r.max_s = max_of(lowest<T>(), fs(lane_max(max_s)));  // as the maximum of fs(x) and lowest
        r.max_t = max_of(lowest<T>(), ft(lane_max(max_t)));
    } else {
        for_each_pack<V>(cols, [&](index_t c, int count) DISTILL_LAMBDA_INLINE {
            max_s = max_of(max_s, fs(load(s, cs, c, count)));
            max_t = max_of(max_t, ft(load(t, ct, c, count)));
        });
        r.max_s = lane_max(max_s);
        r.max_t = lane_max(max_t);
    }
    blocked_sum<V> sum_s, sum_t;
    teacher_log_ratio_sums<V> ratio_sums;
    V gap_lanes = V(0);
    for_each_pack_in_blocks_revisit<V, 16>(
        cols,
        [&](index_t c, int count) DISTILL_LAMBDA_INLINE {
            next.fetch(c, true, false, true);
            const V ds = fs(load(s, cs, c, count)) - r.max_s;
            const V dt = ft(load(t, ct, c, count)) - r.max_t;
            const V es = exp_nonpositive(ds);
            if (student_exp) store_lanes(student_exp + c * ce, ce, count, es);
            sum_s.add_to_block(es);
            const V et = exp_nonpositive(dt);
            sum_t.add_to_block(et);
            if (teacher_exp) {
                store_lanes(teacher_exp + c * ce, ce, count, et);
                ratio_sums.add_to_block(et, ds, dt);
            }
            if (gap) gap_lanes += select(es > V(0), es * (ds - dt), V(0));
        },
        [&]() DISTILL_LAMBDA_INLINE {
            sum_s.close_block();
            sum_t.close_block();
            if (teacher_exp) ratio_sums.close_block();
        });
    if (gap) r.student_gap = lane_sum(gap_lanes);
    r.set_sums(sum_s.value(), sum_t.value(), log_sums);
    if (teacher_exp) r.teacher_log_ratio = (ratio_sums.gap.value() + ratio_sums.weight.value() * r.log_ratio) * r.inv_sum_t;
    return r;
}

/// Rows whose student, teacher and gradient take more than this (a typical L2 cache) take their
/// statistics in chunks (chunked_softmax_pair_statistics) where a kernel can.
inline constexpr std::size_t chunked_statistics_min_row_bytes = std::size_t(1) << 20;
/// The bytes of each row a chunk of chunked_softmax_pair_statistics takes (at least): 64 KiB, so
/// that a chunk's two rows stay in L2 between its maxima and its exps. Measured at 1024 x 128256
/// against chunks of 8 KiB: jsd 10 % and tvd 6 % faster (32 KiB: 9 %, 128 KiB: 7 % for jsd);
/// the per-chunk work (maxima reduced across lanes, sums rescaled) then runs 8 times per row
/// instead of 63.
inline constexpr std::size_t chunk_statistics_bytes = std::size_t(64) << 10;

/// The shifts of chunked_softmax_pair_statistics: chunk k (columns [k size, (k + 1) size)) holds
/// exp(s' - student[k]) in the gradient row and its teacher exps are taken against teacher[k];
/// student[k] and teacher[k] are the running maxima of the row up to the end of chunk k.
template <class T>
struct chunk_shifts {
    static constexpr int max_chunks = 256;
    index_t size = 0;
    T student[max_chunks];
    T teacher[max_chunks];
    T teacher_gap[max_chunks];     ///< with teacher_exp: the chunk's sum of et (ds - dt) ...
    T teacher_weight[max_chunks];  ///< ... and of et, over the classes whose exps are both > 0

    /// The factors that turn chunk k's stored exps into probabilities, exp(shift - max) / sum: the
    /// loss and gradient passes take the same bits.
    DISTILL_HD T student_scale(index_t k, const softmax_pair_stats<T>& st) const noexcept {
        return detail::exp(student[k] - st.max_s) * st.inv_sum_s;
    }
    DISTILL_HD T teacher_scale(index_t k, const softmax_pair_stats<T>& st) const noexcept {
        return detail::exp(teacher[k] - st.max_t) * st.inv_sum_t;
    }
};

/// softmax_pair_statistics of unit-stride rows in one pass instead of two (host SIMD): the row is
/// taken a chunk at a time (chunk_statistics_bytes of each row, whole tiles of the loss pass, at
/// most 256 chunks), whose maxima are found first (the chunk then sits in L2 for its exps) and
/// raise the running maxima; the sums are rescaled when they rise, and each chunk's exps are taken
/// against the running maxima, which `shifts` records. A stored exp of chunk k (student_exp;
/// teacher_exp when not null) times exp(student[k] - max_s) (exp(teacher[k] - max_t)) is then the
/// exp against the row's maximum. This saves the maxima's own pass over both rows (from L3 at
/// 128k columns). While a chunk is summed, the next chunk is prefetched into L2, and the next
/// row's scratch lines (`next`), but not its student: a row this long streams from memory at the
/// pace of its exps, and fetching a second row meanwhile only evicts what the loss pass reads next
/// (measured at 128k columns without that fetch: jsd 1.5-4 % and tvd 2.5 % faster). With
/// `teacher_exp` the result's teacher_log_ratio is summed as in softmax_pair_statistics, chunk by
/// chunk, each chunk's sums scaled at the end to the row's maxima.
template <class V, class T, class FS, class FT>
DISTILL_HD DISTILL_FORCE_INLINE softmax_pair_stats<T> chunked_softmax_pair_statistics(const T* s, const T* t, index_t cols, const FS& fs,
                                                                            const FT& ft, T* student_exp, next_row_lines<T> next,
                                                                            bool log_sums, chunk_shifts<T>& shifts,
                                                                            T* teacher_exp = nullptr) noexcept {
    static_assert(is_row_scaling_v<FS> && is_row_scaling_v<FT>,
                  "each chunk's maxima are taken on the raw rows and scaled once: fs and ft must be increasing scalings");
    constexpr int lanes = lanes_v<V>;
    constexpr index_t tile = 32 * lanes;  // the loss pass's tile: chunks are whole tiles
    const T pad = -infinity_v<T>;
    const index_t tiles = (cols + tile - 1) / tile;
    constexpr index_t least_tiles_per_chunk =
        chunk_statistics_bytes / (tile * sizeof(T)) > 0 ? static_cast<index_t>(chunk_statistics_bytes / (tile * sizeof(T))) : 1;
    const index_t tiles_per_chunk = tiles <= least_tiles_per_chunk * chunk_shifts<T>::max_chunks
                                        ? least_tiles_per_chunk
                                        : (tiles + chunk_shifts<T>::max_chunks - 1) / chunk_shifts<T>::max_chunks;
    const index_t chunk = tiles_per_chunk * tile;
    shifts.size = chunk;
    blocked_sum<V> sum_s, sum_t;
    T shift_s = lowest<T>(), shift_t = lowest<T>();
    int k = 0;
    for (index_t c0 = 0; c0 < cols; c0 += chunk, ++k) {
        const index_t width = cols - c0 < chunk ? cols - c0 : chunk;
        const T* const cs = s + c0;
        const T* const ct = t + c0;
        V max_s = V(lowest<T>()), max_t = V(lowest<T>());
        for_each_pack<V>(width, [&](index_t c, int count) DISTILL_LAMBDA_INLINE {
            max_s = max_of(max_s, load_lanes<V>(cs + c, 1, count, pad));
            max_t = max_of(max_t, load_lanes<V>(ct + c, 1, count, pad));
        });
        // The chunk's maxima, scaled once (x -> x * scale is increasing), raise the running ones;
        // the sums so far are rescaled to the new shift.
        const T chunk_s = max_of(lowest<T>(), fs(lane_max(max_s))), chunk_t = max_of(lowest<T>(), ft(lane_max(max_t)));
        if (chunk_s > shift_s) {
            sum_s.scale(V(detail::exp(shift_s - chunk_s)));
            shift_s = chunk_s;
        }
        if (chunk_t > shift_t) {
            sum_t.scale(V(detail::exp(shift_t - chunk_t)));
            shift_t = chunk_t;
        }
        shifts.student[k] = shift_s;
        shifts.teacher[k] = shift_t;
        const T chunk_shift_s = shift_s, chunk_shift_t = shift_t;  // constants of the loop below
        const index_t next_width = cols - c0 - width;  // of the next chunk, to prefetch (<= chunk)
        teacher_log_ratio_sums<V> ratio_sums;
        for_each_pack_in_blocks<V, 16>(
            width,
            [&](index_t c, int count) DISTILL_LAMBDA_INLINE {
                if (c < next_width) {
                    prefetch<prefetch_kind::read_l2>(cs + chunk + c);
                    prefetch<prefetch_kind::read_l2>(ct + chunk + c);
                }
                next.fetch(c0 + c, false, false, true);
                const V ds = fs(load_lanes<V>(cs + c, 1, count, pad)) - chunk_shift_s;
                const V es = exp_nonpositive(ds);
                if (student_exp) store_lanes(student_exp + c0 + c, 1, count, es);
                sum_s.add_to_block(es);
                const V dt = ft(load_lanes<V>(ct + c, 1, count, pad)) - chunk_shift_t;
                const V et = exp_nonpositive(dt);
                sum_t.add_to_block(et);
                if (teacher_exp) {
                    store_lanes(teacher_exp + c0 + c, 1, count, et);
                    ratio_sums.add_to_block(et, ds, dt);
                }
            },
            [&]() DISTILL_LAMBDA_INLINE {
                sum_s.close_block();
                sum_t.close_block();
                if (teacher_exp) ratio_sums.close_block();
            });
        if (teacher_exp) {
            shifts.teacher_gap[k] = ratio_sums.gap.value();
            shifts.teacher_weight[k] = ratio_sums.weight.value();
        }
    }
    softmax_pair_stats<T> r;
    r.max_s = shift_s;
    r.max_t = shift_t;
    r.set_sums(sum_s.value(), sum_t.value(), log_sums);
    if (teacher_exp) {
        // Chunk k's ds - dt is against its own shifts: d = (ds - dt) + (offset_s - offset_t) + log_ratio.
        compensated_sum<T> sum;
        for (int j = 0; j < k; ++j) {
            const T offsets = (shifts.student[j] - r.max_s) - (shifts.teacher[j] - r.max_t) + r.log_ratio;
            sum.add(shifts.teacher_scale(j, r) * (shifts.teacher_gap[j] + offsets * shifts.teacher_weight[j]));
        }
        r.teacher_log_ratio = sum.sum - sum.lost;
    }
    return r;
}

/// Where a row kernel's next row starts, for prefetching: only host SIMD kernels on contiguous
/// rows prefetch (null otherwise, and past the last row).
template <class V, bool Unit, class T>
DISTILL_HD DISTILL_FORCE_INLINE const T* next_row_for_prefetch(const matrix_ref<const T>& m, index_t i) noexcept {
    if constexpr (Unit && lanes_v<V> > 1) return i + 1 < m.rows ? m.row(i + 1) : nullptr;
    else return nullptr;
}

/// Whether a row kernel may run its unit-stride form: every row it touches is contiguous.
template <class V, class T, class G>
DISTILL_HD constexpr bool unit_stride_rows(const matrix_ref<const T>& s, const matrix_ref<const T>& t, const G& g) noexcept {
    return host_simd_v<V> && s.col_stride == 1 && t.col_stride == 1 && (!g.present() || g.col_stride == 1);
}

/// Terms whose value or derivatives jump where ps == pt (tvd's |pt - ps|) declare
/// `static constexpr bool exact_ties = true`: equal rows must then give bitwise equal ps and pt.
template <class Terms, class = void>
inline constexpr bool exact_ties_v = false;
template <class Terms>
inline constexpr bool exact_ties_v<Terms, std::void_t<decltype(Terms::exact_ties)>> = Terms::exact_ties;

/// Terms that are costly to evaluate (log-space mixtures: an exp and a log per class) declare
/// `static constexpr bool store_student_derivative = true`: the loss pass then leaves
/// a_c = d phi_c / d ls_c in the gradient row, and the gradient pass needs only ps again (one exp)
/// instead of every term.
template <class Terms, class = void>
inline constexpr bool store_student_derivative_v = false;
template <class Terms>
inline constexpr bool store_student_derivative_v<Terms, std::void_t<decltype(Terms::store_student_derivative)>> =
    Terms::store_student_derivative;

/// Terms whose loss is the reverse KL, sum_c ps_c (ls_c - lt_c), with d phi / d ls = ps (ls - lt + 1)
/// declare `static constexpr bool reverse_kl = true`: the statistics pass then yields the loss
/// (student_gap / sum_s + log_ratio) and A = loss + 1, and the loss pass is skipped unless d/dT is wanted.
template <class Terms, class = void>
inline constexpr bool reverse_kl_v = false;
template <class Terms>
inline constexpr bool reverse_kl_v<Terms, std::void_t<decltype(Terms::reverse_kl)>> = Terms::reverse_kl;

/// Terms whose stored d phi / d ls gives ps back (where it is not 0) declare a static
/// `student_probability(a)`: the gradient pass then computes exp only for packs holding a 0.
template <class Terms, class V, class = void>
inline constexpr bool recovers_student_probability_v = false;
template <class Terms, class V>
inline constexpr bool recovers_student_probability_v<
    Terms, V, std::void_t<decltype(Terms::template student_probability<V>(V(0)))>> = true;

/// Terms that store their derivative and cost more than the memory traffic (jsd: a division and a
/// log besides the exps) declare `static constexpr bool next_row_scratch = true`: when the backend
/// runs row i + 1 next on the same worker, the teacher's exps are kept in its gradient row (see
/// divergence_row_kernel::row_impl). Cheap terms do not: tvd, whose loss pass takes its ps back
/// from the stored derivative, measured 13 % slower with it (the extra row's traffic).
template <class Terms, class = void>
inline constexpr bool next_row_scratch_v = false;
template <class Terms>
inline constexpr bool next_row_scratch_v<Terms, std::void_t<decltype(Terms::next_row_scratch)>> = Terms::next_row_scratch;

/// Terms whose phi is f(ps, pt) + w pt (ls - lt), with d phi / d ls free of ls - lt, declare
/// `static constexpr bool linear_in_log_ratio = true` and provide
///   T log_ratio_weight() const                           w,
///   V prepare_without_log_ratio(V ps, V pt) const        f's first part (a division, say),
///   divergence_term<V> without_log_ratio(V ps, V pt, V prepared) const
///                                                        f and d phi / d ls,
/// valid where ps >= least_probability_v<T>. With the teacher's exps in the next row's gradient
/// (next_row_scratch), the statistics then sum pt (ls - lt) over the row (teacher_log_ratio), and
/// the loss pass reads neither logit row: it adds w times that sum, and takes the full terms
/// (reading both logits) only for packs holding a smaller ps.
template <class Terms, class = void>
inline constexpr bool linear_in_log_ratio_v = false;
template <class Terms>
inline constexpr bool linear_in_log_ratio_v<Terms, std::void_t<decltype(Terms::linear_in_log_ratio)>> =
    Terms::linear_in_log_ratio;
/// The least ps for which a linear_in_log_ratio term's form without ls - lt is used: 64 times the
/// least normal value, so that a ratio of probabilities over it (at most 1 / 64 of the largest
/// finite value) cannot overflow.
template <class T>
inline constexpr T least_probability_v = T(64) * min_normal_v<T>;

/// Terms that never read ls and lt themselves (only ps, pt and ls - lt) declare
/// `static constexpr bool uses_log_probabilities = false`: the statistics then skip two logs per row.
template <class Terms, class = void>
inline constexpr bool uses_log_probabilities_v = true;
template <class Terms>
inline constexpr bool uses_log_probabilities_v<Terms, std::void_t<decltype(Terms::uses_log_probabilities)>> =
    Terms::uses_log_probabilities;

/// Terms that never read ls - lt (only ps and pt) declare `static constexpr bool uses_log_ratio =
/// false`: the host SIMD loss pass then neither forms it nor, when the student's exps are stored,
/// reads the student row.
template <class Terms, class = void>
inline constexpr bool uses_log_ratio_v = true;
template <class Terms>
inline constexpr bool uses_log_ratio_v<Terms, std::void_t<decltype(Terms::uses_log_ratio)>> = Terms::uses_log_ratio;

/// Terms whose evaluation is one long dependency chain (jsd: a division, then a log) may split
/// off its first part as `V prepare(V ps, V pt) const`, then take its result as a sixth argument:
/// the host SIMD loss pass computes it in the loop that computes the probabilities.
template <class Terms, class V>
inline constexpr bool has_prepare_v = requires(const Terms& terms, V x) { terms.prepare(x, x); };

/// The row kernel shared by the divergence methods; Terms maps (ls, lt, ps, pt, ls - lt) to a
/// divergence_term, for scalars and for SIMD packs alike (branch-free: select, not if).
template <class T, class Label, class Terms>
struct divergence_row_kernel {
    /// Written for cooperative value types too (see lane_group): one GPU block per row.
    static constexpr bool cooperative_rows = true;
    /// On a GPU: 256 threads per row, one lane each (2 or 4 lanes per thread made reverse_kd, jsd
    /// and tvd 20-70 % slower there: the kernel holds more values per element); rows of 4096
    /// columns or more with 1024 threads of 4 lanes, one block per multiprocessor, the later passes
    /// backwards (block_lanes' later_passes_backwards: 15-25 % faster on an H100, see bench/README).
    static constexpr gpu_row_shape gpu_rows{256, 1}, gpu_long_rows{1024, 4};
    row_context<T, Label> ctx;
    T tau, inv_tau;
    Terms terms;

    DISTILL_HD index_t columns() const noexcept { return ctx.student.cols; }

    DISTILL_HD row_result<T> operator()(index_t i) const noexcept { return row<row_value_t<T>>(i, 0); }
    /// Row i, when the caller runs the `rows_after` rows that follow it (i + 1, i + 2, ...) next, in
    /// order, on the same worker, and nothing else touches their gradient rows meanwhile (a
    /// backend's block of rows; see row_kernel_takes_rows_after). Terms that declare
    /// next_row_scratch may then keep their teacher's exps in gradient row i + 1, which row i + 1
    /// overwrites anyway.
    DISTILL_HD row_result<T> operator()(index_t i, index_t rows_after) const noexcept {
        return row<row_value_t<T>>(i, rows_after);
    }

    /// Row i with values V: the unit-stride form (plain vector loads and stores, the next row
    /// prefetched) when every row is contiguous.
    template <class V>
    DISTILL_HD row_result<T> row(index_t i, index_t rows_after) const noexcept {
        if constexpr (host_simd_v<V>)
            if (unit_stride_rows<V>(ctx.student, ctx.teacher, ctx.grad)) return row_impl<V, true>(i, rows_after);
        return row_impl<V, false>(i, rows_after);
    }

    template <class V, bool Unit>
    DISTILL_HD DISTILL_FORCE_INLINE row_result<T> row_impl(index_t i, index_t rows_after) const noexcept {
        const T w = ctx.row_scale(i);
        if (w == T(0)) {
            ctx.zero_grad_row(i);
            return {};
        }
        const index_t cols = ctx.student.cols;
        const index_t cs = Unit ? 1 : ctx.student.col_stride, ct = Unit ? 1 : ctx.teacher.col_stride,
                      cg = Unit ? 1 : ctx.grad.col_stride;
        const T* s = ctx.student.row(i);
        const T* t = ctx.teacher.row(i);
        const T inv = inv_tau;
        // A local copy of the terms' parameters: stores to the gradient row cannot alias it, so the
        // loops keep them in registers instead of reloading them after every store.
        const Terms row_terms = terms;
        // Terms with exact ties get ps and pt from two passes (es stored by the statistics, et
        // computed by the loss pass): their logits are tempered with a rounded product, so that
        // equal rows give bitwise equal probabilities whatever the compiler fuses.
        using tempering = std::conditional_t<exact_ties_v<Terms>, rounded_row_scaling<T>, row_scaling<T>>;
        const tempering tempered{inv};
        // The gradient row holds exp(s' - max_s) from the statistics until the loss pass (one exp per
        // class less), unless the gradients accumulate into it.
        T* g = ctx.grad.present() ? ctx.grad.row(i) : nullptr;
        // On a GPU (cooperative values) nothing is kept there between passes: an exp costs less
        // than a row's extra memory traffic.
        T* const student_exp = ctx.accumulate || cooperative_v<V> ? nullptr : g;
        // The next row is fetched while this one is computed on: its student during the sums, its
        // teacher during the loss pass.
        const T* const next_t = next_row_for_prefetch<V, Unit>(ctx.teacher, i);
        // Host SIMD terms that store their derivative, without d/dT, take the statistics of a long
        // row in one chunked pass (the tiled loss pass below applies the chunks' shifts); the
        // others, and rows that fit in L2, in two passes (measured at 128k columns: tvd 5-8 % and jsd
        // 2-4 % faster; at 32k 5 % slower, where the maxima's pass reads from L2 anyway).
        constexpr bool may_chunk = lanes_v<V> > 1 && Unit && store_student_derivative_v<Terms> && !reverse_kl_v<Terms>;
        const bool chunked = may_chunk && !ctx.want_dtemperature &&
                             3 * static_cast<std::size_t>(cols) * sizeof(T) > chunked_statistics_min_row_bytes;
        // Terms that declare next_row_scratch keep the teacher's exps in gradient row i + 1 when the
        // caller runs that row next on this worker (it overwrites the row): the loss pass then needs
        // no exp, and it leaves d phi / d ls there, so that the student's exps stay in row i for the
        // gradient pass, which needs none either (jsd: two exps per class instead of four). The
        // next rows then go to L2 (the row's four arrays fill L1), and gradient row i + 2, which row
        // i + 1 writes first, is fetched for writing.
        constexpr bool may_scratch = lanes_v<V> > 1 && Unit && store_student_derivative_v<Terms> &&
                                     !reverse_kl_v<Terms> && next_row_scratch_v<Terms>;
        T* const scratch = may_scratch && rows_after > 0 && student_exp != nullptr && !ctx.want_dtemperature &&
                                   ctx.grad.row_stride >= cols
                               ? ctx.grad.row(i + 1)
                               : nullptr;
        next_row_lines<T> next{next_row_for_prefetch<V, Unit>(ctx.student, i), next_t,
                               scratch && rows_after > 1 ? ctx.grad.row(i + 2) : nullptr, scratch != nullptr};
        [[maybe_unused]] std::conditional_t<may_chunk, chunk_shifts<T>, char> shifts;
        softmax_pair_stats<T> st;
        if constexpr (may_chunk) {
            if (chunked)
                st = chunked_softmax_pair_statistics<V>(s, t, cols, tempered, tempered, student_exp, next,
                                                        uses_log_probabilities_v<Terms>, shifts, scratch);
        }
        if (!chunked)
            st = softmax_pair_statistics<V>(s, cs, t, ct, cols, tempered, tempered, student_exp, cg, next,
                                            uses_log_probabilities_v<Terms>, reverse_kl_v<Terms> && !ctx.want_dtemperature,
                                            -1, scratch);
        const T pad = -infinity_v<T>;  // lanes past the row's end: probability 0, every term 0
        // The loss pass leaves d phi / d ls in the gradient row for costly terms.
        const bool keep_derivative = store_student_derivative_v<Terms> && !cooperative_v<V> && g != nullptr && !ctx.accumulate;

        // One block of classes: max-shifted logits, probabilities and terms.
        struct at_block {
            V ds, dt, ps, pt;
            divergence_term<V> f;
        };
        const auto evaluate = [&](index_t c, int count) DISTILL_LAMBDA_INLINE {
            at_block e;
            e.ds = tempered(load_lanes<V>(s + c * cs, cs, count, pad)) - st.max_s;
            e.dt = tempered(load_lanes<V>(t + c * ct, ct, count, pad)) - st.max_t;
            const V ls = e.ds - st.log_sum_s, lt = e.dt - st.log_sum_t;
            // For equal rows es (statistics pass) and et (here) are the same exp of the same bits, and
            // so are the sums: ps and pt are then equal, which terms with exact ties compare.
            e.ps = (student_exp ? load_lanes<V>(student_exp + c * cg, cg, count, T(0)) : exp_nonpositive(e.ds)) *
                   V(st.inv_sum_s);
            e.pt = exp_nonpositive(e.dt) * V(st.inv_sum_t);
            e.f = row_terms(ls, lt, e.ps, e.pt, (e.ds - e.dt) + st.log_ratio);
            return e;
        };

        V loss = V(0), sum_a = V(0), sum_b = V(0), a_ds = V(0), ps_ds = V(0), b_dt = V(0), pt_dt = V(0);
        T total = T(0), total_a = T(0);
        if (reverse_kl_v<Terms> && !ctx.want_dtemperature) {
            // The reverse KL from the statistics: no loss pass.
            total = st.student_gap * st.inv_sum_s + st.log_ratio;
            total_a = total + T(1);
        } else {
            // Two loops, with and without the d/dT sums: the usual one keeps every value in registers.
            // The sums run in blocks of 32 packs whose partial sums are added with compensation (a
            // row of 1e5 classes would otherwise lose ~1e-4 of A and of the loss).
            const auto loss_pass = [&](auto want_dtemperature) DISTILL_LAMBDA_INLINE {
                constexpr bool dT = decltype(want_dtemperature)::value;
                constexpr int sums = dT ? 7 : 2;  // loss, A, then B and the four d/dT sums
                blocked_sum<V, 32> whole[sums];
                for_each_pack_in_blocks_revisit<V, 32>(
                    cols,
                    [&](index_t c, int count) DISTILL_LAMBDA_INLINE {
                        next.fetch(c, false, true, false);
                        const at_block e = evaluate(c, count);
                        whole[0].add_to_block(e.f.value);
                        whole[1].add_to_block(e.f.d_log_student);
                        if (keep_derivative) store_lanes(g + c * cg, cg, count, e.f.d_log_student);
                        if constexpr (dT) {
                            whole[2].add_to_block(e.f.d_log_teacher);
                            whole[3].add_to_block(select(e.f.d_log_student != V(0), e.f.d_log_student * e.ds, V(0)));
                            whole[4].add_to_block(select(e.ps > V(0), e.ps * e.ds, V(0)));
                            whole[5].add_to_block(select(e.f.d_log_teacher != V(0), e.f.d_log_teacher * e.dt, V(0)));
                            whole[6].add_to_block(select(e.pt > V(0), e.pt * e.dt, V(0)));
                        }
                    },
                    [&]() DISTILL_LAMBDA_INLINE {
                        for (blocked_sum<V, 32>& w : whole) w.close_block();
                    });
                V* const totals[7] = {&loss, &sum_a, &sum_b, &a_ds, &ps_ds, &b_dt, &pt_dt};
                for (int k = 0; k < sums; ++k) *totals[k] = whole[k].lanes();
            };
            if (ctx.want_dtemperature) {
                loss_pass(std::true_type{});
            } else if constexpr (lanes_v<V> > 1 && Unit) {
                // Host SIMD: the pass runs over tiles of `tile` classes in two loops each: the
                // probabilities (an exp) into small buffers on the stack, then the terms (for jsd a
                // division and a log). A single loop holding both dependency chains is bound by
                // their latency, as the scheduler holds too few of its iterations; each of the two
                // shorter loops overlaps its own iterations (jsd: about 20 % faster).
                constexpr int lanes = lanes_v<V>;
                constexpr index_t tile = 32 * lanes;
                constexpr bool logs = uses_log_probabilities_v<Terms>;
                constexpr bool prepared = has_prepare_v<Terms, V>;
                constexpr bool ratio = uses_log_ratio_v<Terms>;
                constexpr bool linear_terms = linear_in_log_ratio_v<Terms>;
                struct buffers {
                    alignas(64) T ps[tile];
                    alignas(64) T pt[tile];
                    alignas(64) T d[ratio ? tile : 1];          // ls - lt
                    alignas(64) T first[prepared || linear_terms ? tile : 1];  // Terms::prepare(ps, pt)
                    alignas(64) T ds[logs ? tile : 1];          // s' - max_s, t' - max_t
                    alignas(64) T dt[logs ? tile : 1];
                } b;
                // The loss and A summed per tile, the tiles' sums compensated (a row of 1e5 classes
                // would otherwise lose ~1e-4 of them).
                blocked_sum<V, 32> row_loss, row_a;
                // Two instantiations: with the scratch row (the teacher's exps read from it, d phi / d ls
                // written to it) and without (a runtime test inside the loops measured 20 % slower in cache).
                const auto tiles = [&](auto use_scratch) DISTILL_LAMBDA_INLINE {
                    constexpr bool with_scratch = decltype(use_scratch)::value;
                    // With the scratch row, terms linear in ls - lt read neither logit row: the
                    // statistics summed that part (teacher_log_ratio), added below. (The branches
                    // test linear_terms first: a condition on the lambda's own parameter alone
                    // would leave their non-dependent calls to be checked for every Terms.)
                    // Chunk k's scales (two exps), taken when a tile enters the chunk: a chunk has
                    // several tiles.
                    [[maybe_unused]] index_t chunk_k = -1;
                    [[maybe_unused]] T chunk_scale_s = T(0), chunk_scale_t = T(0);
                    for (index_t c0 = 0; c0 < cols; c0 += tile) {
                        const index_t width = cols - c0 < tile ? cols - c0 : tile;
                        // The shifts of this tile's exps: the row's maxima, or its chunk's running maxima
                        // (then exp(x - shift) times exp(shift - max) is the exp against the maximum, and
                        // ls - lt gains the difference of the two shifts' offsets). Equal rows get equal
                        // shifts and scales, so equal probabilities (tvd's exact ties).
                        T shift_s = st.max_s, shift_t = st.max_t, scale_s = st.inv_sum_s, scale_t = st.inv_sum_t;
                        T offset_s = T(0), offset_t = T(0), log_ratio = st.log_ratio;
                        if constexpr (may_chunk) {
                            if (chunked) {
                                const index_t k = c0 / shifts.size;
                                shift_s = shifts.student[k];
                                shift_t = shifts.teacher[k];
                                offset_s = shift_s - st.max_s;  // <= 0
                                offset_t = shift_t - st.max_t;
                                if (k != chunk_k) {
                                    chunk_k = k;
                                    chunk_scale_s = shifts.student_scale(k, st);
                                    chunk_scale_t = shifts.teacher_scale(k, st);
                                }
                                scale_s = chunk_scale_s;
                                scale_t = chunk_scale_t;
                                log_ratio = (offset_s - offset_t) + st.log_ratio;
                            }
                        }
                        // Full packs go to the buffers (lanes past the row's end hold probability 0).
                        for_each_pack<V>(width, [&](index_t c, int count) DISTILL_LAMBDA_INLINE {
                            const index_t at = c0 + c;
                            next.fetch(at, false, true, false);
                            if constexpr (linear_terms) if constexpr (with_scratch) {
                                const V ps = load_lanes<V>(student_exp + at, 1, count, T(0)) * V(scale_s);
                                const V pt = load_lanes<V>(scratch + at, 1, count, T(0)) * V(scale_t);
                                store_lanes(b.ps + c, 1, lanes, ps);
                                store_lanes(b.pt + c, 1, lanes, pt);
                                store_lanes(b.first + c, 1, lanes, row_terms.prepare_without_log_ratio(ps, pt));
                                return;
                            }
                            const auto student_shifted = [&]() DISTILL_LAMBDA_INLINE {
                                return tempered(load_lanes<V>(s + at, 1, count, pad)) - shift_s;
                            };
                            const V dt = tempered(load_lanes<V>(t + at, 1, count, pad)) - shift_t;
                            const V ps = (student_exp ? load_lanes<V>(student_exp + at, 1, count, T(0))
                                                      : exp_nonpositive(student_shifted())) *
                                         V(scale_s);
                            V et;
                            if constexpr (with_scratch) et = load_lanes<V>(scratch + at, 1, count, T(0));
                            else et = exp_nonpositive(dt);
                            const V pt = et * V(scale_t);
                            store_lanes(b.ps + c, 1, lanes, ps);
                            store_lanes(b.pt + c, 1, lanes, pt);
                            if constexpr (ratio || logs) {
                                const V ds = student_shifted();
                                if constexpr (ratio) store_lanes(b.d + c, 1, lanes, (ds - dt) + log_ratio);
                                if constexpr (logs) {
                                    store_lanes(b.ds + c, 1, lanes, ds + offset_s);
                                    store_lanes(b.dt + c, 1, lanes, dt + offset_t);
                                }
                            }
                            if constexpr (prepared) store_lanes(b.first + c, 1, lanes, row_terms.prepare(ps, pt));
                        });
                        for_each_pack<V>(width, [&](index_t c, int count) DISTILL_LAMBDA_INLINE {
                            const auto at_buffer = [&](const T* p) DISTILL_LAMBDA_INLINE { return load_lanes<V>(p + c, 1, lanes, T(0)); };
                            if constexpr (linear_terms) if constexpr (with_scratch) {
                                const index_t at = c0 + c;
                                const V ps = at_buffer(b.ps), pt = at_buffer(b.pt);
                                divergence_term<V> f = row_terms.without_log_ratio(ps, pt, at_buffer(b.first));
                                if (any_lane_less(ps, V(least_probability_v<T>))) {
                                    const auto small = ps < V(least_probability_v<T>);
                                    // The full terms (a masked or very unlikely student class), less
                                    // what the statistics counted for it: w pt (ls - lt), with ls and lt
                                    // through the same clamped_gap (finite; 0 where pt is 0).
                                    const V ds = tempered(load_lanes<V>(s + at, 1, count, pad)) - shift_s;
                                    const V dt = tempered(load_lanes<V>(t + at, 1, count, pad)) - shift_t;
                                    const V d = (ds - dt) + log_ratio;
                                    const divergence_term<V> full = row_terms(V(0), V(0), ps, pt, d, row_terms.prepare(ps, pt));
                                    const V linear_part = V(row_terms.log_ratio_weight()) * pt * (clamped_gap(ds, dt) + log_ratio);
                                    f.value = select(small, full.value - linear_part, f.value);
                                    f.d_log_student = select(small, full.d_log_student, f.d_log_student);
                                }
                                row_loss.add_to_block(f.value);
                                row_a.add_to_block(f.d_log_student);
                                store_lanes(scratch + at, 1, count, f.d_log_student);
                                return;
                            }
                            V ls = V(0), lt = V(0);
                            if constexpr (logs) {
                                ls = at_buffer(b.ds) - st.log_sum_s;
                                lt = at_buffer(b.dt) - st.log_sum_t;
                            }
                            V d = V(0);  // 0 for terms that do not read it
                            if constexpr (ratio) d = at_buffer(b.d);
                            divergence_term<V> f;
                            if constexpr (prepared) f = row_terms(ls, lt, at_buffer(b.ps), at_buffer(b.pt), d, at_buffer(b.first));
                            else f = row_terms(ls, lt, at_buffer(b.ps), at_buffer(b.pt), d);
                            row_loss.add_to_block(f.value);
                            row_a.add_to_block(f.d_log_student);
                            if constexpr (with_scratch) store_lanes(scratch + c0 + c, 1, count, f.d_log_student);
                            else if (keep_derivative) store_lanes(g + c0 + c, 1, count, f.d_log_student);
                        });
                        row_loss.close_block();
                        row_a.close_block();
                    }
                };
                if (scratch) tiles(std::true_type{});
                else tiles(std::false_type{});
                loss = row_loss.lanes();
                sum_a = row_a.lanes();
                if constexpr (linear_terms)
                    if (scratch) total = row_terms.log_ratio_weight() * st.teacher_log_ratio;
            } else {
                loss_pass(std::false_type{});
            }
            total += lane_sum(loss);
            total_a = lane_sum(sum_a);
        }
        if (g) {
            const V scale = V(ctx.grad_scale(i) * tau);
            if (scratch) {
                // ps from the stored exps, each chunk's against its own shift. The chunks run last
                // to first: the loss pass has just left the row's end in L2, which long rows (two
                // gradient rows of 0.5 MB at 128k columns) cannot keep whole (3-4 % faster at
                // 1024 x 128256); each chunk runs forwards, as the prefetchers expect.
                index_t span = cols;
                if constexpr (may_chunk)
                    if (chunked) span = shifts.size;
                for (index_t k = (cols + span - 1) / span - 1; k >= 0; --k) {
                    const index_t c0 = k * span;
                    const index_t width = cols - c0 < span ? cols - c0 : span;
                    T scale_s = st.inv_sum_s;
                    if constexpr (may_chunk)
                        if (chunked) scale_s = shifts.student_scale(k, st);
                    const V minus_a_scale = V(-total_a * scale_s);
                    for_each_pack<V>(width, [&](index_t c, int count) DISTILL_LAMBDA_INLINE {
                        const V a = load_lanes<V>(scratch + c0 + c, 1, count, T(0));
                        const V es = load_lanes<V>(g + c0 + c, 1, count, T(0));
                        store_lanes(g + c0 + c, 1, count, scale * (a + es * minus_a_scale));
                    });
                }
            } else if (keep_derivative) {
                for_each_pack<V>(cols, [&](index_t c, int count) DISTILL_LAMBDA_INLINE {
                    const V a = load_lanes<V>(g + c * cg, cg, count, T(0));
                    const auto recompute = [&]() DISTILL_LAMBDA_INLINE {
                        return exp_nonpositive(tempered(load_lanes<V>(s + c * cs, cs, count, pad)) - st.max_s) * V(st.inv_sum_s);
                    };
                    V ps;
                    if constexpr (recovers_student_probability_v<Terms, V>) {
                        ps = Terms::template student_probability<V>(a);
                        if (const auto lost = a == V(0); any_lane(lost)) ps = select(lost, recompute(), ps);
                    } else {
                        ps = recompute();
                    }
                    store_lanes(g + c * cg, cg, count, scale * (a - ps * V(total_a)));
                });
            } else {
                // First to last: where the loss pass ran backwards (for_each_pack_revisit), the
                // row's start is what it read last.
                for_each_pack<V>(cols, [&](index_t c, int count) DISTILL_LAMBDA_INLINE {
                    const at_block e = evaluate(c, count);
                    ctx.put_grad(g + c * cg, cg, count, scale * (e.f.d_log_student - e.ps * V(total_a)));
                });
            }
        }
        row_result<T> r;
        r.value = w * tau * tau * total;
        if (ctx.want_dtemperature)
            r.dtemperature = w * ctx.grad_factor *
                             (T(2) * tau * total - tau * (lane_sum(a_ds) - total_a * lane_sum(ps_ds) + lane_sum(b_dt) -
                                                          lane_sum(sum_b) * lane_sum(pt_dt)));
        return r;
    }
};

/// response_method for a divergence method: the options carry temperature, reduce, ignore_index;
/// Method supplies name, check_extra(opts) and terms<T>(opts).
template <class Options, class Method>
struct divergence_method_base {
    static constexpr const char* name = Method::name;
    static constexpr bool has_temperature = true;
    static constexpr bool needs_teacher = true;
    static constexpr bool labels_required = false;
    static constexpr const char* min_classes_reason = "";
    static constexpr index_t min_classes(const Options&) noexcept { return 1; }
    static status check_params(const Options& o) noexcept {
        if (status s = check_tempered(name, o); !s) return s;
        return Method::check_extra(o);
    }
    template <class T, class Label>
    static auto kernel(const Options& o, const row_context<T, Label>& ctx) noexcept {
        const T tau = static_cast<T>(o.temperature);
        using terms_t = decltype(Method::template terms<T>(o));
        return divergence_row_kernel<T, Label, terms_t>{ctx, tau, T(1) / tau, Method::template terms<T>(o)};
    }
};

}  // namespace detail
}  // namespace distill
