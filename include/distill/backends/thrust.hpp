// distill/backends/thrust.hpp: the Thrust backend and the Thrust adapters.
//
// thrust_backend<Policy, Space> runs a loss's row kernel with thrust::for_each_n
// over the rows and reduces the per-row results with thrust::reduce, under any
// Thrust execution policy: thrust::device (CUDA under nvcc, or the OMP / CPP
// device system chosen by THRUST_DEVICE_SYSTEM with a host compiler),
// thrust::cuda::par.on(stream), thrust::omp::par, thrust::host, ...
//
// Space is the memory space the policy runs on. thrust_device(policy) runs on
// device_space tensors (thrust::device_vector, device_ptr); thrust_host(policy)
// runs Thrust on host_space tensors. The row kernels are the same host/device
// functions the CPU backend calls. On a GPU (nvcc, the CUDA device system),
// kernels that declare cooperative_rows run one block per row, of the shape
// they declare (gpu_row_shape: 256 threads by default, 1024 for long rows of
// dkd and the divergences; detail::cooperative_rows, the threads as the lanes
// of block_lanes); the others one thread per row.
//
// Workspace: the run step keeps one value per row (and one d/dT per row) in the
// caller's workspace. On CUDA the run step sums them with its own one-block
// kernel; on host systems, and in the check step's label and weight scans,
// Thrust's reductions may still allocate temporary storage through the
// policy's allocator (pass a policy with a custom allocator, e.g.
// thrust::cuda::par(alloc), to control it).
#pragma once

#include <thrust/copy.h>
#include <thrust/device_ptr.h>
#include <thrust/device_vector.h>
#include <thrust/execution_policy.h>
#include <thrust/fill.h>
#include <thrust/for_each.h>
#include <thrust/host_vector.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/reduce.h>
#include <thrust/transform.h>
#include <thrust/transform_reduce.h>

#include <concepts>
#include <cstddef>
#if defined(_OPENMP)
#include <omp.h>
#endif

#include "../core/backend.hpp"
#include "../core/dense_tensor.hpp"
#include "../core/tensor.hpp"
#include "../detail/simd.hpp"

#if defined(__CUDACC__) && THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
#include <thrust/system/cuda/detail/util.h>  // the policy's stream, error reporting
#endif

namespace distill {

namespace detail {
/// x + value (accumulating a reduced d/dT into device memory).
template <class T>
struct add_constant {
    T value;
    DISTILL_HD T operator()(T x) const noexcept { return x + value; }
};

/// for_each body: runs the row kernel and stores its result for the reduction.
template <class T, class Kernel>
struct thrust_row_writer {
    Kernel kernel;
    vector_ref<T> per_row_loss;  // reduction none: the loss output itself; else workspace
    T* per_row_dtemperature;     // workspace, or null
    DISTILL_HD void operator()(index_t i) const noexcept {
        const row_result<T> r = kernel(i);
        per_row_loss[i] = r.value;
        if (per_row_dtemperature) per_row_dtemperature[i] = r.dtemperature;
    }
};
/// thrust_row_writer over blocks of `rows_per_block` consecutive rows, each block's rows run in
/// order by one worker (host systems: kernels that take rows_after use the order, see
/// run_row_block).
template <class T, class Kernel>
struct thrust_row_block_writer {
    Kernel kernel;
    vector_ref<T> per_row_loss;
    T* per_row_dtemperature;
    index_t rows, rows_per_block;
    DISTILL_HD void operator()(index_t block) const noexcept {
        const index_t first = block * rows_per_block;
        const index_t last = rows - first < rows_per_block ? rows : first + rows_per_block;
        row_result<T> ignored{};
        run_row_block(kernel, first, last, ignored, [&](index_t i, const row_result<T>& r) {
            per_row_loss[i] = r.value;
            if (per_row_dtemperature) per_row_dtemperature[i] = r.dtemperature;
        });
    }
};

#if defined(__CUDACC__) && THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
/// A cooperative row kernel's block shape on a GPU (see gpu_row_shape): its `gpu_rows`, else 256
/// threads of one lane; and its `gpu_long_rows`, if it declares them, for rows of at least one
/// pack of that shape.
template <class Kernel>
inline constexpr gpu_row_shape cuda_rows_v = [] {
    if constexpr (requires { Kernel::gpu_rows; }) return Kernel::gpu_rows;
    else return gpu_row_shape{};
}();
template <class Kernel>
concept has_gpu_long_rows = requires(const Kernel& k) {
    Kernel::gpu_long_rows;
    { k.columns() } -> std::convertible_to<index_t>;
};

/// *out = (accumulate ? *out : 0) + the sum of n values, by one block of 1024 threads (each a
/// compensated sum of every 1024th value, then a block reduction): the run step's loss and d/dT
/// reduced on the GPU, without thrust::reduce's temporary allocation and copy to the host.
template <class T>
__global__ void __launch_bounds__(1024) sum_rows(const T* values, index_t n, T* out, bool accumulate) {
    compensated_sum<T> sum;
    for (index_t i = threadIdx.x; i < n; i += 1024) sum.add(values[i]);
    const T total = lane_sum(block_lanes<T, 1024>(sum.sum - sum.lost));  // a block reduction
    if (threadIdx.x == 0) *out = accumulate ? *out + total : total;
}

/// Rows blockIdx.x, blockIdx.x + gridDim.x, ... of a cooperative row kernel, one block each.
template <int Threads, int LanesPerThread, class T, class Kernel>
__global__ void __launch_bounds__(Threads)
    cooperative_rows(Kernel kernel, index_t n, vector_ref<T> per_row_loss, T* per_row_dtemperature) {
    using lanes = block_lanes<T, Threads, LanesPerThread>;
    for (index_t i = blockIdx.x; i < n; i += gridDim.x) {
        const row_result<T> r = run_row_with<lanes>(kernel, i);
        if (threadIdx.x == 0) {
            per_row_loss[i] = r.value;
            if (per_row_dtemperature) per_row_dtemperature[i] = r.dtemperature;
        }
    }
}

/// Launches cooperative_rows with blocks of Threads threads of LanesPerThread lanes on `stream`:
/// one block per row (grid-stride past 2^31 - 1 rows).
template <int Threads, int LanesPerThread, class T, class Kernel>
void launch_cooperative_rows(const Kernel& kernel, index_t n, vector_ref<T> per_row_loss, T* per_row_dtemperature,
                             cudaStream_t stream) {
    const index_t blocks = n < index_t(0x7fffffff) ? n : index_t(0x7fffffff);
    cooperative_rows<Threads, LanesPerThread, T, Kernel>
        <<<static_cast<unsigned>(blocks), Threads, 0, stream>>>(kernel, n, per_row_loss, per_row_dtemperature);
}
#endif
}  // namespace detail

template <class Policy, class Space = device_space>
struct thrust_backend {
    using memory_space = Space;
    /// Thrust reports CUDA failures (e.g. bad_alloc in reduce) by throwing.
    static constexpr bool is_nothrow = false;
    Policy policy;

    template <class R, class F, class Op>
    R transform_reduce(index_t n, const F& f, R init, const Op& op) const {
        return thrust::transform_reduce(policy, thrust::counting_iterator<index_t>(0),
                                        thrust::counting_iterator<index_t>(n), f, init, op);
    }

    /// Runs f(i) for every i in [0, n) (the passes of multi-pass losses such as dist).
    template <class F>
    void for_each(index_t n, const F& f) const {
        thrust::for_each_n(policy, thrust::counting_iterator<index_t>(0), n, f);
    }

    template <class T>
    static constexpr std::size_t rows_workspace_bytes(index_t n, reduction red, bool want_dtemperature) noexcept {
        const std::size_t arrays = (red != reduction::none ? 1u : 0u) + (want_dtemperature ? 1u : 0u);
        return arrays * static_cast<std::size_t>(n) * sizeof(T);
    }

    /// Blocks of rows a row loop on host threads is split into. With OpenMP, one per thread, as
    /// the CPU backend does: the divergence kernels use a row's successor in its block (its
    /// gradient row as scratch, its lines prefetched), so every block's last row is a slower one
    /// (jsd at 1024 x 128256: 3 % with 64 blocks of 16 rows). Without OpenMP (TBB, a pool of
    /// tasks), 64 blocks, enough to balance the threads.
    static index_t host_row_blocks() noexcept {
#if defined(_OPENMP)
        const int threads = omp_get_max_threads();
        return threads > 1 ? static_cast<index_t>(threads) : 1;
#else
        return 64;
#endif
    }
    /// Whether the rows run on host threads: host memory, or device memory of a host device
    /// system (OMP, TBB, CPP). Then they run in blocks; on a GPU one row per block or per thread.
    static constexpr bool rows_on_host_threads =
        std::is_same_v<Space, host_space> || THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_OMP ||
        THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_TBB || THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CPP;

    template <class T, class Kernel>
    void run_rows(index_t n, const Kernel& kernel, reduction red, detail::vector_ref<T> loss, T* dtemperature,
                  workspace ws, bool accumulate = false) const {
        T* scratch = static_cast<T*>(ws.data);
        detail::vector_ref<T> per_row_loss = loss;
        if (red != reduction::none) {
            per_row_loss = {scratch, n, 1};
            scratch += n;
        }
        T* per_row_dtemperature = dtemperature ? scratch : nullptr;
        if constexpr (rows_on_host_threads) {
            // Host threads: blocks of consecutive rows (host_row_blocks), each run in order, which
            // the divergence kernels use (see run_row_block).
            const index_t blocks = host_row_blocks();
            const index_t per_block = n > blocks ? (n + blocks - 1) / blocks : 1;
            thrust::for_each_n(policy, thrust::counting_iterator<index_t>(0), (n + per_block - 1) / per_block,
                               detail::thrust_row_block_writer<T, Kernel>{kernel, per_row_loss, per_row_dtemperature, n, per_block});
        } else {
#if defined(__CUDACC__) && THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
            if constexpr (detail::cooperative_row_kernel<Kernel>) {
                // One block per row, on the policy's stream; long rows with the kernel's long-row
                // shape where it has one.
                Policy on = policy;
                const cudaStream_t stream = thrust::cuda_cub::stream(on);
                bool launched = false;
                if constexpr (detail::has_gpu_long_rows<Kernel>) {
                    constexpr detail::gpu_row_shape long_rows = Kernel::gpu_long_rows;
                    if (kernel.columns() >= long_rows.pack_columns()) {
                        detail::launch_cooperative_rows<long_rows.threads, long_rows.lanes_per_thread>(
                            kernel, n, per_row_loss, per_row_dtemperature, stream);
                        launched = true;
                    }
                }
                if (!launched) {
                    constexpr detail::gpu_row_shape rows = detail::cuda_rows_v<Kernel>;
                    detail::launch_cooperative_rows<rows.threads, rows.lanes_per_thread>(kernel, n, per_row_loss,
                                                                                          per_row_dtemperature, stream);
                }
                thrust::cuda_cub::throw_on_error(cudaPeekAtLastError(), "distill: launching the row kernel");
            } else
#endif
            {
                thrust::for_each_n(policy, thrust::counting_iterator<index_t>(0), n,
                                   detail::thrust_row_writer<T, Kernel>{kernel, per_row_loss, per_row_dtemperature});
            }
#if defined(__CUDACC__) && THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
            // The sums on the GPU, on the policy's stream, then one synchronisation (as Thrust's
            // own algorithms do, unless the policy asks for none).
            Policy on = policy;
            const cudaStream_t stream = thrust::cuda_cub::stream(on);
            if (red != reduction::none) detail::sum_rows<T><<<1, 1024, 0, stream>>>(per_row_loss.data, n, loss.data, false);
            if (dtemperature) detail::sum_rows<T><<<1, 1024, 0, stream>>>(per_row_dtemperature, n, dtemperature, accumulate);
            thrust::cuda_cub::throw_on_error(cudaPeekAtLastError(), "distill: launching the row sums");
            thrust::cuda_cub::throw_on_error(thrust::cuda_cub::synchronize_optional(on), "distill: running the row kernel");
            return;
#endif
        }
        if (red != reduction::none) {
            const T total = thrust::reduce(policy, per_row_loss.data, per_row_loss.data + n, T(0));
            thrust::fill_n(policy, loss.data, 1, total);
        }
        if (dtemperature) {
            const T total = thrust::reduce(policy, per_row_dtemperature, per_row_dtemperature + n, T(0));
            if (accumulate) thrust::transform(policy, dtemperature, dtemperature + 1, dtemperature, detail::add_constant<T>{total});
            else thrust::fill_n(policy, dtemperature, 1, total);
        }
    }

    /// Reads one element (a label or weight named in an error message, a scalar result).
    template <class T>
    static T load(const T* p) {
        if constexpr (std::is_same_v<Space, device_space>) {
            T value{};
            thrust::copy_n(thrust::device_ptr<const T>(p), 1, &value);  // device -> host
            return value;
        } else {
            return *p;
        }
    }
};

/// Thrust on device memory (the default for device_space tensors).
template <class Policy = thrust::detail::device_t>
constexpr thrust_backend<Policy, device_space> thrust_device(const Policy& policy = thrust::device) {
    return {policy};
}
/// Thrust on host memory (e.g. thrust::host, or thrust::omp::par on host arrays).
template <class Policy = thrust::detail::host_t>
constexpr thrust_backend<Policy, host_space> thrust_host(const Policy& policy = thrust::host) {
    return {policy};
}

template <>
struct default_backend<device_space> {
    using type = thrust_backend<thrust::detail::device_t, device_space>;
};

namespace detail {
template <class T>
struct storage_for<T, device_space> {
    using type = thrust::device_vector<T>;
    static T* data(type& v) noexcept { return thrust::raw_pointer_cast(v.data()); }
    static const T* data(const type& v) noexcept { return thrust::raw_pointer_cast(v.data()); }
};
}  // namespace detail

/// thrust::device_vector: a rank-1 device view (use distill::as_matrix(v, rows, cols) for 2-D).
template <class T, class Alloc>
struct tensor_adapter<thrust::device_vector<T, Alloc>> {
    static vector_view<T, device_space> view(thrust::device_vector<T, Alloc>& v) noexcept {
        return make(thrust::raw_pointer_cast(v.data()), v.size());
    }
    static vector_view<const T, device_space> view(const thrust::device_vector<T, Alloc>& v) noexcept {
        return make(thrust::raw_pointer_cast(v.data()), v.size());
    }

private:
    template <class E>
    static vector_view<E, device_space> make(E* p, std::size_t n) noexcept {
        const index_t ext = static_cast<index_t>(n), str = 1;
        return vector_view<E, device_space>(p, 1, &ext, &str);
    }
};

/// thrust::host_vector: a rank-1 host view.
template <class T, class Alloc>
struct tensor_adapter<thrust::host_vector<T, Alloc>> {
    static vector_view<T> view(thrust::host_vector<T, Alloc>& v) noexcept { return make(v.data(), v.size()); }
    static vector_view<const T> view(const thrust::host_vector<T, Alloc>& v) noexcept { return make(v.data(), v.size()); }

private:
    template <class E>
    static vector_view<E> make(E* p, std::size_t n) noexcept {
        const index_t ext = static_cast<index_t>(n), str = 1;
        return vector_view<E>(p, 1, &ext, &str);
    }
};

/// A device view of contiguous row-major memory behind a thrust::device_ptr: make_view(ptr, rows, cols).
template <class T, class... E>
    requires(sizeof...(E) >= 1 && (std::is_integral_v<E> && ...))
strided_view<T, sizeof...(E), device_space> make_view(thrust::device_ptr<T> data, E... extents) noexcept {
    const index_t ext[] = {static_cast<index_t>(extents)...};
    index_t str[sizeof...(E)];
    detail::row_major_strides<sizeof...(E)>(ext, str);
    return strided_view<T, sizeof...(E), device_space>(thrust::raw_pointer_cast(data), sizeof...(E), ext, str);
}

}  // namespace distill
