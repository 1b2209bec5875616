#!/usr/bin/env bash
# ctest entry of the Python package tests: builds and installs the package from this checkout
# into the venv of scripts/python-test-env.sh, then runs pytest. $1: the kvzip binary (the
# tests compare answers with `kvzip ask`). Exits 77 (skip) without the default model.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export KVZ_CLI="$(realpath "$1")"
model="${KVZ_TEST_MODEL:-$HOME/.cache/kvzip/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf}"
[ -f "$model" ] || { echo "no model at $model (scripts/pull-model.sh smollm2-135m): skipping"; exit 77; }
export KVZ_TEST_MODEL="$model"
py="$("$here/../../scripts/python-test-env.sh")"
cd "$here"
set +e
"$py" -m pytest -q -p no:cacheprovider -rs "${@:2}" .
rc=$?
set -e
# pytest's 5 is "no tests collected": a failure here, never a pass.
[ "$rc" = 5 ] && { echo "run.sh: pytest collected no tests"; exit 1; }
exit "$rc"
