// distill/losses/feature/fsp.hpp: flow of solution procedure (FSP) matrices.
//
// J. Yim, D. Joo, J. Bae, J. Kim, "A Gift from Knowledge Distillation: Fast Optimization, Network
// Minimization and Transfer Learning", CVPR 2017 (reference code: RepDistiller FSP.py). Inputs are
// L >= 2 layers of each network, 4-D maps student_layers[i] and teacher_layers[i] with
// C(student i) == C(teacher i); spatial sizes may differ between layers and between networks.
// For each network and each pair (b, u) = (layer i, layer i + 1), within that network the map at
// least as large in both H and W is adaptive-average-pooled to the other's size (taller but
// narrower: shape error), and with K = H' W' and each sample read as a C x K matrix
//
//   G_i,n = (1/K) U_n B_n^T            (N x C_{i+1} x C_i)
//   L = sum_{i=0}^{L-2} mean_{n,a,b} (G^s_i - G^t_i)^2
//   dG^s_i = 2 (G^s_i - G^t_i) / (N C_{i+1} C_i),  dB_n = (1/K) dG_n^T U_n,  dU_n = (1/K) dG_n B_n,
//
// then the pooling's VJP for a pooled layer; a middle layer sums the gradients of both its pairs.
// Cost: per pair, one batched N x C_{i+1} x C_i x K GEMM per network forward and two for the
// gradient (Eigen per sample on the CPU), O(N C H W) for pooling. Layers are read in place when
// not pooled and dense over H and W; a pooled (or otherwise strided) layer is pooled/copied into
// the workspace. Workspace: the largest over the pairs of 2 N C_{i+1} C_i (G^s, G^t) + the student
// operands that are not read in place + max(the teacher's, N (C_i + C_{i+1}) K_s for the
// gradients), in values of T.
// Knowledge outputs: knowledge_*_layers[i] = G_i (N x C_{i+1} x C_i), i < L - 1.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../../knowledge/fsp.hpp"
#include "../../knowledge/spatial.hpp"
#include "common.hpp"
#include "driver.hpp"

namespace distill {

/// fsp has no parameters; Real only selects the options' family (fsp_options / fsp_float_options).
template <class Real>
struct basic_fsp_options {};
using fsp_options = basic_fsp_options<double>;
using fsp_float_options = basic_fsp_options<float>;

namespace detail {

/// How one network's layer pair (b, u) is read: the common size and, per operand, whether it is
/// read in place (not pooled, H and W walkable with one stride) or pooled/copied into scratch.
struct fsp_side_plan {
    spatial_match match;
    index_t n = 0, cb = 0, cu = 0;
    bool bottom_in_place = false, top_in_place = false;

    index_t k() const noexcept { return match.h * match.w; }
    std::size_t bottom_scratch() const noexcept { return bottom_in_place ? 0 : values(cb); }
    std::size_t top_scratch() const noexcept { return top_in_place ? 0 : values(cu); }
    std::size_t values(index_t c) const noexcept {
        return static_cast<std::size_t>(n) * static_cast<std::size_t>(c) * static_cast<std::size_t>(k());
    }

    template <class V>
    static bool readable_in_place(const V& v) noexcept {
        using T = std::remove_reference_t<decltype(*v.data())>;
        matrix_ref<T> m;
        return sample_matrix(to_map_ref(v), m);
    }
    template <class V>
    static fsp_side_plan of(const V& bottom, const V& top) noexcept {
        fsp_side_plan p;
        match_spatial(bottom.extent(2), bottom.extent(3), top.extent(2), top.extent(3), p.match);
        p.n = bottom.extent(0);
        p.cb = bottom.extent(1);
        p.cu = top.extent(1);
        p.bottom_in_place = !p.match.pool_first && readable_in_place(bottom);
        p.top_in_place = !p.match.pool_second && readable_in_place(top);
        return p;
    }
};

/// Scratch of one layer pair (see the header comment for the layout).
struct fsp_pair_plan {
    fsp_side_plan student, teacher;
    std::size_t g_values() const noexcept {
        return static_cast<std::size_t>(student.n) * static_cast<std::size_t>(student.cu) * static_cast<std::size_t>(student.cb);
    }
    std::size_t values() const noexcept {
        const std::size_t teacher_operands = teacher.bottom_scratch() + teacher.top_scratch();
        const std::size_t gradients = student.values(student.cb) + student.values(student.cu);
        return 2 * g_values() + student.bottom_scratch() + student.top_scratch() +
               (teacher_operands > gradients ? teacher_operands : gradients);
    }
    template <class T, class Space>
    static fsp_pair_plan of(const feature_args<T, Space>& a, std::size_t i) noexcept {
        return {fsp_side_plan::of(a.student_layers[i], a.student_layers[i + 1]),
                fsp_side_plan::of(a.teacher_layers[i], a.teacher_layers[i + 1])};
    }
};

/// One operand of a pair as a batch of C x K matrices: the layer itself, or its pooled (or
/// copied) dense version in `scratch`.
template <class Backend, class T>
batched_matrix<const T> fsp_operand(const Backend& backend, map_ref<const T> layer, bool in_place, const spatial_match& m,
                                    T* scratch) {
    if (in_place) return sample_matrices(layer);
    adaptive_pool_forward(backend, layer, dense_map(scratch, layer.n, layer.c, m.h, m.w));
    return as_const(dense_batch(scratch, layer.c, m.h * m.w));
}

/// (G^s - G^t)^2 at one entry, and the upstream 2 (G^s - G^t) / count written over G^t.
template <class T>
struct fsp_difference_kernel {
    const T* student;
    const T* teacher;
    DISTILL_HD T operator()(index_t i) const noexcept {
        const T d = student[i] - teacher[i];
        return d * d;
    }
};
template <class T>
struct fsp_upstream_kernel {
    const T* student;
    T* teacher_then_grad;
    T scale;
    DISTILL_HD void operator()(index_t i) const noexcept { teacher_then_grad[i] = scale * (student[i] - teacher_then_grad[i]); }
};

/// One layer of a layered call: 4-D, non-empty, with the batch of student layer 0.
template <class V>
status check_fsp_layer(const char* method, const char* side, std::size_t index, const V& v, index_t batch) noexcept {
    const auto i = static_cast<std::int64_t>(index);
    if (!v.bound()) return method_error(errc::missing_argument, method, side).text(side).text("[").number(i).text("] is required");
    if (status s = check_present(method, side, v); !s) return s;
    if (v.rank() != 4)
        return method_error(errc::bad_rank, method, side).text(side).text("[").number(i).text("] must be 4-D, got shape ")
            .shape(v.extents(), v.rank());
    for (int r = 0; r < 4; ++r)
        if (v.extent(r) < 1)
            return method_error(errc::empty_input, method, side).text(side).text("[").number(i).text("] has shape ")
                .shape(v.extents(), 4).text(": every dimension must be >= 1");
    if (batch >= 0 && v.extent(0) != batch)
        return method_error(errc::shape_mismatch, method, side).text(side).text("[").number(i).text("] has shape ")
            .shape(v.extents(), 4).text(" but student_layers[0] has N = ").number(batch);
    return {};
}

}  // namespace detail

template <class Real>
struct feature_method<basic_fsp_options<Real>> {
    using options = basic_fsp_options<Real>;
    static constexpr const char* name = "fsp";
    static constexpr feature_form form = feature_form::layers;

    template <class Backend, class T, class Space>
    static status check_inputs(const Backend&, const options&, const feature_args<T, Space>& a) noexcept {
        if (a.student.bound() || a.teacher.bound())
            return detail::method_error(errc::shape_mismatch, name, a.student.bound() ? "student" : "teacher")
                .text("takes layers (student_layers, teacher_layers), not one student / teacher tensor");
        if (a.alpha.bound()) return detail::method_error(errc::shape_mismatch, name, "alpha").text("takes no alpha input");
        const std::size_t layers = a.student_layers.size();
        if (layers == 0) return detail::method_error(errc::missing_argument, name, "student_layers").text("student_layers is required");
        if (layers < 2)
            return detail::method_error(errc::shape_mismatch, name, "student_layers")
                .text("needs at least 2 layers per network, got 1");
        if (a.teacher_layers.size() != layers)
            return detail::method_error(errc::shape_mismatch, name, "teacher_layers").text("has ")
                .number(static_cast<std::int64_t>(layers)).text(" student layers but ")
                .number(static_cast<std::int64_t>(a.teacher_layers.size())).text(" teacher layers");
        if (status s = detail::check_fsp_layer(name, "student_layers", 0, a.student_layers[0], -1); !s) return s;
        const index_t batch = a.student_layers[0].extent(0);
        for (std::size_t i = 0; i < layers; ++i) {
            if (status s = detail::check_fsp_layer(name, "student_layers", i, a.student_layers[i], batch); !s) return s;
            if (status s = detail::check_fsp_layer(name, "teacher_layers", i, a.teacher_layers[i], batch); !s) return s;
            if (a.teacher_layers[i].extent(1) != a.student_layers[i].extent(1))
                return detail::method_error(errc::shape_mismatch, name, "teacher_layers").text("teacher_layers[")
                    .number(static_cast<std::int64_t>(i)).text("] has shape ").shape(a.teacher_layers[i].extents(), 4)
                    .text(" but student_layers[").number(static_cast<std::int64_t>(i)).text("] has shape ")
                    .shape(a.student_layers[i].extents(), 4).text(" (C must match)");
        }
        const std::span<const any_view<const T, Space>> sides[2] = {a.student_layers, a.teacher_layers};
        const char* side_names[2] = {"student_layers", "teacher_layers"};
        for (int side = 0; side < 2; ++side)
            for (std::size_t i = 0; i + 1 < layers; ++i) {
                const auto &b = sides[side][i], &u = sides[side][i + 1];
                detail::spatial_match m;
                if (!detail::match_spatial(b.extent(2), b.extent(3), u.extent(2), u.extent(3), m))
                    return detail::spatial_mismatch_error(name, side_names[side], side_names[side],
                                                          static_cast<index_t>(i), b.extent(2), b.extent(3),
                                                          side_names[side], static_cast<index_t>(i + 1), u.extent(2),
                                                          u.extent(3));
            }
        return {};
    }
    template <class T, class Space>
    static knowledge_shape knowledge(const options&, const feature_args<T, Space>& a, int pair) noexcept {
        const auto i = static_cast<std::size_t>(pair);
        return {3, {a.student_layers[i].extent(0), a.student_layers[i + 1].extent(1), a.student_layers[i].extent(1)}};
    }
    template <class T, class Space>
    static int knowledge_layers(const options&, const feature_args<T, Space>& a) noexcept {
        return static_cast<int>(a.student_layers.size()) - 1;
    }
    template <class T, class Space>
    static std::size_t workspace_bytes(const options&, const feature_args<T, Space>& a) noexcept {
        std::size_t values = 0;
        for (std::size_t i = 0; i + 1 < a.student_layers.size(); ++i) {
            const std::size_t v = detail::fsp_pair_plan::of(a, i).values();
            values = v > values ? v : values;
        }
        return values * sizeof(T);
    }

    template <class Backend, class T, class Space>
    static void run(const Backend& backend, const options&, const feature_args<T, Space>& a, const feature_outputs<T, Space>& o,
                    workspace ws) {
        using detail::to_map_ref;
        const std::size_t layers = a.student_layers.size();
        T* base = static_cast<T*>(ws.data);
        T loss = 0;
        for (std::size_t i = 0; i + 1 < layers; ++i) {
            const detail::fsp_pair_plan plan = detail::fsp_pair_plan::of(a, i);
            const detail::fsp_side_plan &ps = plan.student, &pt = plan.teacher;
            const index_t n = ps.n, cb = ps.cb, cu = ps.cu, count = n * cb * cu;
            // Layout: G^s, G^t, the student operands read from scratch, then the teacher operands
            // (dead once G^t is formed) sharing their space with the student's gradients.
            T* gs = base;
            T* gt = gs + count;
            T* student_bottom = gt + count;
            T* student_top = student_bottom + ps.bottom_scratch();
            T* shared = student_top + ps.top_scratch();
            const auto gs_batch = detail::dense_batch(gs, cu, cb), gt_batch = detail::dense_batch(gt, cu, cb);

            const auto sb = detail::fsp_operand(backend, to_map_ref(a.student_layers[i]), ps.bottom_in_place, ps.match, student_bottom);
            const auto su = detail::fsp_operand(backend, to_map_ref(a.student_layers[i + 1]), ps.top_in_place, ps.match, student_top);
            detail::fsp_forward(backend, n, sb, su, gs_batch);
            const auto tb = detail::fsp_operand(backend, to_map_ref(a.teacher_layers[i]), pt.bottom_in_place, pt.match, shared);
            const auto tu = detail::fsp_operand(backend, to_map_ref(a.teacher_layers[i + 1]), pt.top_in_place, pt.match,
                                                shared + pt.bottom_scratch());
            detail::fsp_forward(backend, n, tb, tu, gt_batch);

            const detail::map_ref<const T> gs_map = detail::as_const(detail::dense_map(gs, n, 1, cu, cb)),
                                           gt_map = detail::as_const(detail::dense_map(gt, n, 1, cu, cb));
            if (i < o.knowledge_student_layers.size() && o.knowledge_student_layers[i].bound())
                detail::copy(backend, gs_map, detail::to_map_ref_3d(o.knowledge_student_layers[i]));
            if (i < o.knowledge_teacher_layers.size() && o.knowledge_teacher_layers[i].bound())
                detail::copy(backend, gt_map, detail::to_map_ref_3d(o.knowledge_teacher_layers[i]));
            loss += detail::sum_over<T>(backend, count, detail::fsp_difference_kernel<T>{gs, gt}) / T(count);

            // The gradients of layers i (bottom: added to pair i - 1's) and i + 1 (top: written).
            const bool grad_bottom = i < o.grad_student_layers.size() && o.grad_student_layers[i].bound();
            const bool grad_top = i + 1 < o.grad_student_layers.size() && o.grad_student_layers[i + 1].bound();
            if (!grad_bottom && !grad_top) continue;
            backend.for_each(count, detail::fsp_upstream_kernel<T>{gs, gt, T(2) / T(count)});
            T* d_bottom = shared;
            T* d_top = shared + ps.values(cb);
            detail::fsp_backward(backend, n, sb, su, detail::as_const(gt_batch),
                                 grad_bottom ? detail::dense_batch(d_bottom, cb, ps.k()) : detail::batched_matrix<T>{}, false,
                                 grad_top ? detail::dense_batch(d_top, cu, ps.k()) : detail::batched_matrix<T>{}, false);
            if (grad_bottom)
                detail::adaptive_pool_backward(backend, detail::as_const(detail::dense_map(d_bottom, n, cb, ps.match.h, ps.match.w)),
                                               to_map_ref(o.grad_student_layers[i]), i > 0);
            if (grad_top)
                detail::adaptive_pool_backward(backend, detail::as_const(detail::dense_map(d_top, n, cu, ps.match.h, ps.match.w)),
                                               to_map_ref(o.grad_student_layers[i + 1]), false);
        }
        detail::store(backend, o.loss.data(), loss);
    }
};

/// fsp(student_layers, teacher_layers[, opts]): FSP loss and d loss / d student_layers[i].
inline constexpr feature_loss_fn<basic_fsp_options> fsp{};

}  // namespace distill
