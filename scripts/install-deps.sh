#!/usr/bin/env bash
# Installs the Debian packages distill's build and tests need, and only those that are missing.
# Runs apt-get as root, or through sudo when available. Used by scripts/test.sh, scripts/demo.sh
# and scripts/bench.sh; arguments name extra packages (the benchmark's Google Benchmark, LibTorch).
set -euo pipefail

# make: the build tool of CMake's default generator (cmake only recommends it).
# zlib1g-dev and dataset-fashion-mnist: the Fashion-MNIST demo (examples/fashion_mnist) reads the
# dataset's gzip IDX files from /usr/share/datasets/fashion-mnist.
# gcc-arm-none-eabi, libnewlib-arm-none-eabi, libstdc++-arm-none-eabi-dev and qemu-system-arm: the
# Cortex-M4 example and its tests (examples/embedded, docs/embedded.md): about 112 MB to download and
# 940 MB on disk on Debian 12 (the cross compiler and newlib are most of it).
# clang-14, libclang-rt-14-dev, libomp-14-dev: test.sh's sanitizer stage (ASan/UBSan runtimes,
# libFuzzer, OpenMP for the Thrust OMP tests under clang).
packages=(cmake make g++ clang-14 libclang-rt-14-dev libomp-14-dev libeigen3-dev libxtensor-dev doctest-dev libthrust-dev
          zlib1g-dev dataset-fashion-mnist gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-dev
          qemu-system-arm "$@")

missing=()
for package in "${packages[@]}"; do
    if ! dpkg -s "$package" >/dev/null 2>&1; then
        missing+=("$package")
    fi
done
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "error: missing packages (${missing[*]}) and neither root nor sudo is available to install them" >&2
    exit 1
fi

echo "Installing missing packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update
"${as_root[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
