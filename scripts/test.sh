#!/usr/bin/env bash
# The test command: installs missing dependencies, configures a Release build in build/,
# builds it with every core and runs the whole test suite; then the sanitizer stage
# (docs/reliability.md): a clang build in build-asan/ with AddressSanitizer and
# UndefinedBehaviorSanitizer that runs the unit tests, the conformance runner over every case
# on every backend and precision, and the libFuzzer target for DISTILL_FUZZ_SECONDS (60).
#   DISTILL_SKIP_SANITIZE=1   skips the sanitizer stage (a quick local run; CI never sets it)
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh

jobs="$(nproc)"

# When a ctest run fails, CI keeps only the end of the log: repeat there what explains the
# failure (the fuzzer's seed, findings and sanitizer reports, and each saved input in base64,
# which `base64 -d > crash && build-asan/tests/fuzz/fuzz_distill crash` replays).
report_failure() {
    local build_dir="$1" log="$1/Testing/Temporary/LastTest.log"
    echo "test.sh: tests failed in $build_dir; what explains it:"
    if [ -f "$log" ]; then
        grep -E 'INFO: Seed:|distill fuzz finding|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|SUMMARY: |FAILED|ERROR:|CHECK|REQUIRE' \
            "$log" | head -n 60 || true
    fi
    local finding
    for finding in "$build_dir"/tests/fuzz/findings/*; do
        [ -f "$finding" ] || continue
        echo "test.sh: fuzz input $(basename "$finding") ($(stat -c %s "$finding") bytes), base64:"
        head -c 16384 "$finding" | base64
    done
}
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build --parallel "$jobs"
ctest --test-dir build --output-on-failure --parallel "$jobs" || { report_failure build; exit 1; }

if [ "${DISTILL_SKIP_SANITIZE:-0}" = 1 ]; then
    echo "test.sh: sanitizer stage skipped (DISTILL_SKIP_SANITIZE=1)"
    exit 0
fi

# -O1: the usual sanitizer level (fast enough to run, precise enough to report).
# -fno-sanitize-recover=all: the first UBSan report fails the test instead of scrolling by.
# The ignore list exempts Thrust's own headers from UBSan (a null upcast inside CCCL 3; see the file).
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
sanitize+=" -fsanitize-ignorelist=$PWD/tests/sanitizer-ignorelist.txt"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER=clang++-14 \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
    -DCMAKE_CXX_FLAGS="$sanitize" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
    -DDISTILL_BUILD_CUDA=OFF -DDISTILL_BUILD_EXAMPLES=OFF -DDISTILL_INSTALL=OFF \
    -DDISTILL_BUILD_FUZZ=ON -DDISTILL_FUZZ_SECONDS="${DISTILL_FUZZ_SECONDS:-60}"
cmake --build build-asan --parallel "$jobs" --target \
    distill_unit_tests distill_thrust_tests distill_case_file_test distill_conformance fuzz_distill
rm -f build-asan/tests/fuzz/findings/*  # report_failure lists only this run's findings
# Only what was built here: the consumer and no-exceptions tests build their own projects and
# run in the first stage.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure --parallel "$jobs" \
    -R '^(distill\.unit|conformance\.|fuzz\.)' || { report_failure build-asan; exit 1; }
