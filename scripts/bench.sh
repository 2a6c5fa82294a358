#!/usr/bin/env bash
# The benchmark command (issue 4): installs what is missing (the build's packages, Google Benchmark
# and LibTorch), configures a Release build of the benchmarks in build-bench/, builds them, runs
# distill_bench, which prints one table per case and the targets, and writes bench/results.json
# (one record per measurement) and bench/results.md (the same as Markdown tables); then runs
# distill_feature_bench (feature and relation methods), which writes bench/feature_results.json/.md.
# When nvcc exists, the CUDA variant is built too (a compile check); where a GPU exists it also
# runs and writes bench/results_cuda.json, and bench/torch_cuda_peer.py (PyTorch on the same GPU,
# where python3 has CUDA PyTorch) writes bench/torch_cuda_results.json.
#
#   ./scripts/bench.sh             the full run (all shapes, 1 and 2 threads, both backends, LibTorch)
#   ./scripts/bench.sh --quick     fewer repetitions; LibTorch single-threaded at the large shapes
#   ./scripts/bench.sh --help      every option (arguments are passed to distill_bench)
#
# DISTILL_BENCH_NO_TORCH=1 skips installing LibTorch (libtorch_ms is then null).
set -euo pipefail
cd "$(dirname "$0")/.."

extra_packages=(libbenchmark-dev)
if [ -z "${DISTILL_BENCH_NO_TORCH:-}" ]; then
    # LibTorch, and OpenBLAS for its matrix products: Debian's default libblas.so.3 is the
    # reference BLAS, which would make LibTorch's GEMM-bound feature losses an unfair peer.
    extra_packages+=(libtorch-dev libopenblas0-openmp)
fi
./scripts/install-deps.sh "${extra_packages[@]}"

torch_option=()
if [ -n "${DISTILL_BENCH_NO_TORCH:-}" ]; then
    torch_option=(-DDISTILL_BENCH_TORCH=OFF)
fi
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DDISTILL_BUILD_BENCH=ON \
    -DDISTILL_BUILD_TESTS=OFF -DDISTILL_BUILD_EXAMPLES=OFF "${torch_option[@]}"
cmake --build build-bench --parallel "$(nproc)"

./build-bench/bench/distill_bench --json bench/results.json --markdown bench/results.md "$@"
for argument in "$@"; do
    if [ "$argument" = "--help" ] || [ "$argument" = "-h" ]; then
        exit 0
    fi
done

# The feature and relation methods (issue 5): single thread, against the Eigen matrix products
# the method needs and LibTorch. --quick is the only option they share.
feature_options=()
for argument in "$@"; do
    if [ "$argument" = "--quick" ]; then
        feature_options+=(--quick)
    fi
done
./build-bench/bench/distill_feature_bench --json bench/feature_results.json --markdown bench/feature_results.md \
    "${feature_options[@]}"

if [ -x build-bench/bench/distill_bench_cuda ]; then
    status=0
    ./build-bench/bench/distill_bench_cuda --json bench/results_cuda.json || status=$?
    if [ "$status" -ne 0 ] && [ "$status" -ne 77 ]; then  # 77: no GPU here, compiled only
        exit "$status"
    fi
    # PyTorch's autograd on the same GPU, where a Python with CUDA PyTorch exists (optional peer).
    if [ "$status" -eq 0 ] && python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        python3 bench/torch_cuda_peer.py --json bench/torch_cuda_results.json
    fi
fi
