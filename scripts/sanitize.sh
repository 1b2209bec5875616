#!/usr/bin/env bash
# sanitize.sh — the test suite under AddressSanitizer + UndefinedBehaviorSanitizer.
#
# Usage: scripts/sanitize.sh [--ci] [CTEST ARGS...]   e.g. scripts/sanitize.sh -R 'Hostile|Fuzz'
#
# --ci: the stage .ci/run runs. Builds only what the tests need (kvzip-tests, the CLI, the C
# test) and runs every test but two kinds (CI_EXCLUDE below): the comparisons with kvpress,
# whose fixtures fix the context at about 3,000 tokens (KVzip scores depend on the whole
# context, so a shorter input needs a shorter fixture: 2-4 minutes each under the sanitizers),
# and the Python package's tests, whose extension pip builds outside build-asan without the
# sanitizers. Both run, unsanitized, in the test command. The real-model tests (parity with
# llama.cpp and transformers, determinism, the CLI, smoke, server and browser tests) see
# KVZ_SANITIZE=1 and run a shorter input: under the sanitizers SmolLM2 prefills about 30
# tokens/s on 2 threads (docs/reliability.md, "Sanitizers").
# Without --ci every test runs.
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
CI_EXCLUDE='Kvpress|^python_pytest$'
targets=()
ctest_args=()
if [[ "${1:-}" == "--ci" ]]; then
    shift
    targets=(--target kvzip-tests kvzip-cli test_capi)
    ctest_args=(-E "$CI_EXCLUDE")
fi
start=$(date +%s)
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g" \
      -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g" -DKVZ_SANITIZE=ON >/dev/null
cmake --build "$B" -j"$jobs" "${targets[@]}"
built=$(date +%s)
echo "sanitize.sh: build $((built - start)) s"
export KVZ_SANITIZE=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$B"
rc=0
ctest --output-on-failure -j"$jobs" --timeout 1800 "${ctest_args[@]}" "$@" || rc=$?
echo "sanitize.sh: ctest $(( $(date +%s) - built )) s (exit status $rc)"
exit "$rc"
