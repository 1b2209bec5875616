#!/usr/bin/env bash
# ctest entry of the server tests: the pytest suite against real `kvzip serve` processes on
# loopback. $1: the kvzip binary; the rest goes to pytest (default: every test here).
# Exits 77 (skip) without the default model.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export KVZ_CLI="$1"
model="${KVZ_TEST_MODEL:-$HOME/.cache/kvzip/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf}"
[ -f "$model" ] || { echo "no model at $model (scripts/pull-model.sh smollm2-135m): skipping"; exit 77; }
py="$("$here/../../scripts/server-test-env.sh")"
cd "$here"
set +e
args=("${@:2}")
[ ${#args[@]} -gt 0 ] || args=(.)
"$py" -m pytest -q -p no:cacheprovider -rs --durations=10 "${args[@]}"
rc=$?
set -e
# pytest's 5 is "no tests collected": a failure here, never a pass.
[ "$rc" = 5 ] && { echo "run.sh: pytest collected no tests"; exit 1; }
exit "$rc"
