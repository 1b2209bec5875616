#!/usr/bin/env bash
# ctest entry of the Python package tests: builds and installs the package from this checkout
# into the venv of scripts/python-test-env.sh, then runs pytest. $1: the kvzip binary (the
# tests compare answers with `kvzip ask`). Exits 77 (skip) without the default model.
#   run.sh KVZIP [--package DIR] [PYTEST ARGS...]
# --package DIR: test the package already laid out in DIR/kvzip (a build with KVZ_PYTHON on
# stages it there; scripts/sanitize.sh) instead of installing one; the venv gives only pytest
# and numpy. Under KVZ_SANITIZE=1 the sanitizer runtimes are preloaded into Python (the module
# is instrumented, the interpreter is not), with leak checks off: the interpreter keeps its
# objects to the end by design.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export KVZ_CLI="$(realpath "$1")"
shift
package=
if [ "${1:-}" = --package ]; then package="$(realpath "$2")"; shift 2; fi
model="${KVZ_TEST_MODEL:-$HOME/.cache/kvzip/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf}"
[ -f "$model" ] || { echo "no model at $model (scripts/pull-model.sh smollm2-135m): skipping"; exit 77; }
export KVZ_TEST_MODEL="$model"
if [ -n "$package" ]; then
  [ -f "$package/kvzip/__init__.py" ] || { echo "run.sh: no package staged in $package/kvzip"; exit 1; }
  py="$("$here/../../scripts/python-test-env.sh" --no-install)"
  export PYTHONPATH="$package${PYTHONPATH:+:$PYTHONPATH}"
  if [ "${KVZ_SANITIZE:-}" = 1 ]; then
    export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"  # the last setting wins
  fi
  where="$("$py" -c 'import kvzip; print(kvzip.__file__)')"
  [ "$where" = "$package/kvzip/__init__.py" ] || { echo "run.sh: imported kvzip from $where, not $package"; exit 1; }
else
  py="$("$here/../../scripts/python-test-env.sh")"
fi
cd "$here"
set +e
"$py" -m pytest -q -p no:cacheprovider -rs "$@" .
rc=$?
set -e
# pytest's 5 is "no tests collected": a failure here, never a pass.
[ "$rc" = 5 ] && { echo "run.sh: pytest collected no tests"; exit 1; }
exit "$rc"
