// distill/core/backend.hpp: backends, workspace, and the CPU backend.
//
// A backend runs a loss's host/device row kernel over the rows of a batch.
// Two exist:
//   cpu_backend            plain C++ loops on host memory (the "Eigen path":
//                          Eigen tensors map to it; feature methods use Eigen's
//                          matrix products through it). Part of the core: it
//                          needs no third-party header, so it also serves
//                          embedded builds.
//   thrust_backend<Policy> Thrust algorithms under any Thrust execution policy
//                          (CUDA under nvcc; OMP or CPP device systems on the
//                          CPU). Defined in <distill/thrust.hpp>.
// The backend of a call is default_backend_t<Space> of its arguments' memory
// space; passing a backend object as the first argument overrides it.
#pragma once

#include <cstddef>
#include <type_traits>

#include "config.hpp"
#include "reduction.hpp"
#include "view.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace distill {

/// Caller-owned scratch memory, in the memory space of the call's tensors.
/// Size it with the loss's *_workspace_bytes query.
struct workspace {
    void* data = nullptr;
    std::size_t bytes = 0;
};

/// What a row kernel returns for one row: its contribution to the reduced loss
/// (already weighted and scaled) and to d loss / d temperature.
template <class T>
struct row_result {
    T value{};
    T dtemperature{};
    DISTILL_HD constexpr row_result operator+(const row_result& o) const noexcept {
        return {value + o.value, dtemperature + o.dtemperature};
    }
};

namespace detail {

/// A trivially copyable matrix handle for kernels (host and device).
template <class T>
struct matrix_ref {
    T* data = nullptr;
    index_t rows = 0, cols = 0, row_stride = 0, col_stride = 0;
    DISTILL_HD constexpr T* row(index_t i) const noexcept { return data + i * row_stride; }
    DISTILL_HD constexpr bool present() const noexcept { return data != nullptr; }
};

/// A trivially copyable vector handle for kernels; data == nullptr means absent.
template <class T>
struct vector_ref {
    T* data = nullptr;
    index_t size = 0, stride = 0;
    DISTILL_HD constexpr T& operator[](index_t i) const noexcept { return data[i * stride]; }
    DISTILL_HD constexpr bool present() const noexcept { return data != nullptr; }
};

/// Kernel handles from (already checked) views. A 2-D view becomes a matrix, any view a vector
/// over its elements in order (a vector's rank may be 0 or 1 with one element, e.g. a scalar loss).
template <class T, std::size_t R, class S>
constexpr matrix_ref<T> to_matrix_ref(const strided_view<T, R, S>& v) noexcept {
    if (!v.bound() || v.rank() != 2) return {};
    return {v.data(), v.extent(0), v.extent(1), v.stride(0), v.stride(1)};
}
/// Vector handle of a view with at most one extent != 1 (a vector, a scalar, an N x 1 matrix).
template <class T, std::size_t R, class S>
constexpr vector_ref<T> to_vector_ref(const strided_view<T, R, S>& v) noexcept {
    if (!v.bound() || v.data() == nullptr) return {};
    index_t stride = 1;
    for (int r = 0; r < v.rank(); ++r)
        if (v.extent(r) != 1) stride = v.stride(r);
    return {v.data(), v.size(), stride};
}

/// At most one extent differs from 1, so the elements form a (strided) vector.
template <class T, std::size_t R, class S>
constexpr bool is_vector_like(const strided_view<T, R, S>& v) noexcept {
    int non_unit = 0;
    for (int r = 0; r < v.rank(); ++r) non_unit += v.extent(r) != 1;
    return non_unit <= 1;
}

template <class T>
struct plus_op {
    DISTILL_HD constexpr T operator()(const T& a, const T& b) const noexcept { return a + b; }
};
template <class T>
struct min_op {
    DISTILL_HD constexpr T operator()(const T& a, const T& b) const noexcept { return b < a ? b : a; }
};

/// Index of the first i in [0, n) with pred(i), or n: the shape of every data-dependent check.
template <class Pred>
struct first_where {
    Pred pred;
    index_t none;
    DISTILL_HD constexpr index_t operator()(index_t i) const noexcept { return pred(i) ? i : none; }
};

/// Row kernels that can use the order of a block of rows take kernel(i, rows_after): the caller
/// promises to run rows i + 1, ..., i + rows_after next, in that order, on the same worker, and
/// that nothing else touches their outputs meanwhile (the divergence kernels then keep a row's
/// intermediates in the next row's gradient, which that row overwrites). Every kernel takes kernel(i).
template <class Kernel>
inline constexpr bool row_kernel_takes_rows_after_v = requires(const Kernel& k) { k(index_t{}, index_t{}); };

/// Row kernels written for cooperative value types (see lane_group in detail/simd.hpp) declare
/// `static constexpr bool cooperative_rows = true` and a member template row<V>(i[, rows_after]):
/// on a GPU the Thrust backend runs them one block per row, the block's threads as the lanes of
/// block_lanes, instead of one thread per row.
template <class Kernel>
concept cooperative_row_kernel = requires { requires Kernel::cooperative_rows; };

/// How a cooperative row kernel runs on a GPU: one block of `threads` threads per row, each
/// thread holding `lanes_per_thread` consecutive lanes (detail::block_lanes). A kernel declares
/// its shape as `static constexpr gpu_row_shape gpu_rows` (else {256, 1}); it may also declare
/// `gpu_long_rows` and `columns()`: rows of at least one pack of that shape (threads *
/// lanes_per_thread columns) then run with it (see backends/thrust.hpp).
struct gpu_row_shape {
    int threads = 256;
    int lanes_per_thread = 1;
    constexpr index_t pack_columns() const noexcept { return static_cast<index_t>(threads) * lanes_per_thread; }
};

/// Row i of a cooperative row kernel with value type V, alone (no rows follow it on its worker).
template <class V, class Kernel>
DISTILL_HD auto run_row_with(const Kernel& kernel, index_t i) noexcept {
    if constexpr (requires { kernel.template row<V>(i, index_t{0}); }) return kernel.template row<V>(i, 0);
    else return kernel.template row<V>(i);
}

/// Runs rows [first, last) of `kernel` in order, telling each kernel that takes it how many rows
/// of the block follow it; adds each row's result to `total` and passes it to `each(i, r)`.
template <class T, class Kernel, class Each>
DISTILL_HD void run_row_block(const Kernel& kernel, index_t first, index_t last, row_result<T>& total, const Each& each) noexcept {
    for (index_t i = first; i < last; ++i) {
        row_result<T> r;
        if constexpr (row_kernel_takes_rows_after_v<Kernel>) r = kernel(i, last - 1 - i);
        else r = kernel(i);
        each(i, r);
        total = total + r;
    }
}

}  // namespace detail

/// The CPU backend: row kernels run in a loop over the rows; with OpenMP enabled (-fopenmp) the
/// rows are split over `threads` threads, otherwise everything runs on the calling thread.
struct cpu_backend {
    using memory_space = host_space;
    /// Its members never throw, so the check and run steps are noexcept on it.
    static constexpr bool is_nothrow = true;
    /// Threads for the row loops (used only when compiled with OpenMP; 1 runs on the caller).
    int threads = 1;
    /// Rows per thread below which a loop stays on the calling thread: waking a thread team
    /// costs more than a few short rows.
    static constexpr index_t min_rows_per_thread = 64;

    bool parallel(index_t n) const noexcept { return threads > 1 && n >= min_rows_per_thread * threads; }

    /// op-reduction of f(i) over i in [0, n), starting from init.
    template <class R, class F, class Op>
    R transform_reduce(index_t n, const F& f, R init, const Op& op) const noexcept {
        for (index_t i = 0; i < n; ++i) init = op(init, f(i));
        return init;
    }

    /// Runs f(i) for every i in [0, n) (the passes of multi-pass losses such as dist).
    template <class F>
    void for_each(index_t n, const F& f) const noexcept {
#if defined(_OPENMP)
        if (parallel(n)) {
#pragma omp parallel for schedule(static) num_threads(threads)
            for (index_t i = 0; i < n; ++i) f(i);
            return;
        }
#endif
        for (index_t i = 0; i < n; ++i) f(i);
    }

    /// Scratch a call to run_rows needs (none on the CPU).
    template <class T>
    static constexpr std::size_t rows_workspace_bytes(index_t, reduction, bool) noexcept {
        return 0;
    }

    /// Runs kernel(i) for every row; writes the reduced loss (one value, or one per row for
    /// reduction none) to `loss` and, when `dtemperature` is not null, the summed d/dT there
    /// (added to what is there when `accumulate`).
    template <class T, class Kernel>
    void run_rows(index_t n, const Kernel& kernel, reduction red, detail::vector_ref<T> loss, T* dtemperature,
                  workspace, bool accumulate = false) const noexcept {
        row_result<T> total{};
        const auto each = [&](index_t i, const row_result<T>& r) {
            if (red == reduction::none) loss[i] = r.value;
        };
#if defined(_OPENMP)
        if (parallel(n)) {
            // One contiguous block of rows per thread, run in order (see run_row_block).
#pragma omp parallel num_threads(threads)
            {
                const index_t k = omp_get_thread_num(), m = omp_get_num_threads();
                row_result<T> partial{};
                detail::run_row_block(kernel, n * k / m, n * (k + 1) / m, partial, each);
#pragma omp critical(distill_cpu_backend_rows)
                total = total + partial;
            }
        } else
#endif
        {
            detail::run_row_block(kernel, 0, n, total, each);
        }
        if (red != reduction::none) loss[0] = total.value;
        if (dtemperature) *dtemperature = accumulate ? *dtemperature + total.dtemperature : total.dtemperature;
    }

    /// Reads one element of a view's memory on the host.
    template <class T>
    static T load(const T* p) noexcept {
        return *p;
    }
};

/// The backend a call uses when none is given, from the memory space of its tensors.
template <class Space>
struct default_backend;
template <>
struct default_backend<host_space> {
    using type = cpu_backend;
};
/// default_backend<device_space> is defined by <distill/thrust.hpp>.
template <class Space>
using default_backend_t = typename default_backend<Space>::type;

/// A backend that can run the row kernels of a loss on memory of space S: its memory_space is S.
template <class B, class S>
concept backend_for = requires { typename B::memory_space; } && std::is_same_v<typename B::memory_space, S>;

}  // namespace distill
