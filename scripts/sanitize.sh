#!/usr/bin/env bash
# sanitize.sh — the test suite under AddressSanitizer + UndefinedBehaviorSanitizer.
#
# Usage: scripts/sanitize.sh [--ci] [CTEST ARGS...]   e.g. scripts/sanitize.sh -R 'Hostile|Fuzz'
#
# --ci: the stage .ci/run runs. Builds only what those tests need (kvzip-tests, the CLI, the C
# test) and leaves out the tests that compare real models with llama.cpp, transformers or
# kvpress at full length, the real-model determinism runs and the end-to-end shell, server,
# Python and browser tests (CI_EXCLUDE below): under the sanitizers they take 2-12 minutes
# each (most of the whole run's 96 minutes on a busy 2-core Zen 5, 2026-12-03) and run, unsanitized, in the
# test command. What stays: every unit test (the fuzz corpora replayed, hostile inputs, the
# forward pass, KVzip, presses and loaders on the synthetic and tiny models, composition,
# the server's request parsing), the C API test, the CLI's model checks and the AVX2 determinism run.
# Without --ci every test runs (about 96 minutes on 2 cores).
#
# Builds the library, the CLI and the unit tests with gcc, -fsanitize=address,undefined
# -fno-sanitize-recover=undefined (KVZ_SANITIZE=ON), -O2 -g, into build-asan/, then runs
# ctest there: any sanitizer report fails its test (ASan aborts, UBSan is made fatal, leaks
# are reported at exit). gcc, the compiler of the normal build: scripts/fuzz.sh covers clang's
# sanitizers. The tests see KVZ_SANITIZE=1: a test too slow under the sanitizers for CI may
# shorten its input when it is set (none does yet: the stage's time is not measured). Run
# after scripts/test.sh, which fetches the models and the test venvs (.ci/run does).
# Env: KVZ_SANITIZE_JOBS (build and ctest jobs, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${KVZ_SANITIZE_JOBS:-2}
B=build-asan
CI_EXCLUDE='Parity|Kvpress|SmolLM2IsBitwise|_smoke$|^cli_test_(ask_load|chat|compose|compress|flags|length|stream_json)$|pytest|web_browser|determinism_ref'
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
