#!/usr/bin/env bash
# The demo command: installs what is missing (build tools, Eigen, zlib, the Debian package
# dataset-fashion-mnist), builds the Fashion-MNIST demo and runs it: a teacher MLP is trained on
# all 60000 images (cached in build/fashion_mnist/ for later runs), then the same small student
# from scratch and with each distillation method, and the results table is printed.
# Arguments go to the demo (e.g. --quick, --methods kd,pkt, --seeds 5; --help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build --parallel "$(nproc)" --target distill_example_fashion_mnist
# Passive OpenMP waiting: a thread that waits for the other sleeps instead of spinning, which
# keeps the run fast when another process shares the cores.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
./build/examples/fashion_mnist/distill_example_fashion_mnist "$@"
