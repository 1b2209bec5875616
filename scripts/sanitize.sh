#!/usr/bin/env bash
# sanitize.sh — the test suite under AddressSanitizer + UndefinedBehaviorSanitizer.
#
# Usage: scripts/sanitize.sh [--ci] [CTEST ARGS...]   e.g. scripts/sanitize.sh -R 'Hostile|Fuzz'
#
# --ci: the stage .ci/run runs. Builds only what the tests need (kvzip-tests, the CLI, the C
# test, the Python module) and runs every test. The real-model tests (parity with llama.cpp,
# transformers and kvpress, determinism, the CLI, smoke, server and browser tests) see
# KVZ_SANITIZE=1 and run a shorter input (the kvpress comparisons their *_short fixtures):
# under the sanitizers SmolLM2 prefills about 30 tokens/s on 2 threads (docs/reliability.md,
# "Sanitizers"). Without --ci everything is built, and every test runs too.
#
# The Python package's module is built here too (KVZ_PYTHON, with the venv of
# scripts/python-test-env.sh for nanobind and pytest) and staged in build-asan/python/kvzip;
# python_pytest tests that one, with the sanitizer runtimes preloaded into the interpreter
# (tests/python/run.sh --package).
#
# Builds the library, the CLI and the unit tests with gcc, -fsanitize=address,undefined
# -fno-sanitize-recover=undefined (KVZ_SANITIZE=ON), -O2 -g, into build-asan/, then runs
# ctest there: any sanitizer report fails its test (ASan aborts, UBSan is made fatal, leaks
# are reported at exit). gcc, the compiler of the normal build: scripts/fuzz.sh covers clang's
# sanitizers. The tests see KVZ_SANITIZE=1 (test::sanitized() in C++, SANITIZED in
# tests/cli/lib.sh). Run after scripts/test.sh, which fetches the models and the test venvs
# (.ci/run does).
# Env: KVZ_SANITIZE_JOBS (build and ctest jobs, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${KVZ_SANITIZE_JOBS:-2}
B=build-asan
targets=()
if [[ "${1:-}" == "--ci" ]]; then
    shift
    targets=(--target kvzip-tests kvzip-cli test_capi _kvzip)
fi
start=$(date +%s)
py="$(scripts/python-test-env.sh --no-install)"
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g" \
      -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g" -DKVZ_SANITIZE=ON \
      -DKVZ_PYTHON=ON -DPython_EXECUTABLE="$py" -Dnanobind_DIR="$("$py" -m nanobind --cmake_dir)" >/dev/null
cmake --build "$B" -j"$jobs" "${targets[@]}"
built=$(date +%s)
echo "sanitize.sh: build $((built - start)) s"
export KVZ_SANITIZE=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$B"
rc=0
ctest --output-on-failure -j"$jobs" --timeout 1800 "$@" || rc=$?
echo "sanitize.sh: ctest $(( $(date +%s) - built )) s (exit status $rc)"
exit "$rc"
