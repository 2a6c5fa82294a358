// distill/losses/response/result.hpp: the convenience layer shared by response losses.
//
// The convenience functions (distill::kd(student, teacher, opts), ...) check the
// arguments, allocate the outputs and the workspace as distill::tensor in the
// arguments' memory space, run the loss, and return a loss_result. On bad input
// they throw distill::error when exceptions are enabled; without exceptions they
// return a result whose status says what went wrong (and whose tensors are empty).
#pragma once

#include <cstddef>
#include <utility>

#include "../../core/dense_tensor.hpp"
#include "../../core/error.hpp"
#include "common.hpp"

namespace distill {

template <class T, class Space = host_space>
struct loss_result {
    ::distill::status status{};       ///< ok, or why nothing was computed (no-exception builds)
    T loss{};                         ///< the reduced loss (reduction none: the sum of row_losses)
    tensor<T, Space> row_losses{};    ///< reduction none only: w_i L_i, one per row
    tensor<T, Space> grad_student{};  ///< N x C, d(loss)/d student
    T grad_temperature{};             ///< d(loss)/d temperature (methods with a temperature)
};

/// A backend object, as opposed to a tensor: what the convenience overloads take first.
template <class B>
concept backend_object = requires { typename B::memory_space; } && !tensor_like<B>;

namespace detail {

template <class T>
struct element_of {
    vector_ref<const T> v;
    DISTILL_HD constexpr T operator()(index_t i) const noexcept { return v[i]; }
};

/// check_args(): status of the inputs alone (so nothing is allocated for absurd shapes);
/// run(outputs, workspace): the run step; workspace_bytes(outputs): its scratch query.
/// Args: any argument struct with real_type, memory_space and a 2-D `student` member (N x C).
template <class Backend, class Args, class CheckArgs, class WorkspaceBytes, class Run>
auto run_owning(const Backend& backend, const Args& args, reduction red, bool has_temperature,
                CheckArgs&& check_args, WorkspaceBytes&& workspace_bytes, Run&& run) {
    using T = typename Args::real_type;
    using Space = typename Args::memory_space;
    loss_result<T, Space> result;
    if (status s = check_args(); !s) {
        result.status = raise(s);
        return result;
    }
    const index_t n = args.student.extent(0), c = args.student.extent(1);
    const index_t loss_extent = red == reduction::none ? n : 1;
    const index_t grad_extents[2] = {n, c};
    const index_t one = 1;
    tensor<T, Space> loss(&loss_extent, 1), grad(grad_extents, 2), dtemperature(&one, 1);
    response_outputs<T, Space> outs{loss.view(), grad.view(), {}};
    if (has_temperature) outs.grad_temperature = dtemperature.view();
    const std::size_t bytes = workspace_bytes(outs);
    const index_t scratch_extent = static_cast<index_t>((bytes + sizeof(T) - 1) / sizeof(T));
    tensor<T, Space> scratch(&scratch_extent, 1);
    if (status s = run(outs, workspace{scratch.data(), bytes}); !s) {
        result.status = raise(s);
        return result;
    }
    if (red == reduction::none)
        result.loss = backend.transform_reduce(n, element_of<T>{to_vector_ref(any_view<const T, Space>(loss.view()))},
                                               T(0), plus_op<T>{});
    else
        result.loss = Backend::load(loss.data());
    if (has_temperature) result.grad_temperature = Backend::load(dtemperature.data());
    if (red == reduction::none) result.row_losses = std::move(loss);
    result.grad_student = std::move(grad);
    return result;
}

}  // namespace detail
}  // namespace distill
