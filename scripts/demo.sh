#!/usr/bin/env bash
# The demo command: installs missing dependencies, builds the kd example and runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build --parallel "$(nproc)" --target distill_example_kd
./build/examples/distill_example_kd
