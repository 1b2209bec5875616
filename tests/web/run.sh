#!/usr/bin/env bash
# ctest entry of the browser tests: the page of `kvzip serve` (GET /) and `kvzip kept`'s
# offline file in Debian's headless Chromium, driven over the DevTools protocol by pytest.
# $1: the kvzip binary. Exits 77 (skip) without the default model; a missing chromium fails
# (scripts/setup.sh installs it). KVZ_WEB_SCREENSHOTS=DIR also writes the screenshots there
# (docs/img holds the committed ones).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export KVZ_CLI="$1"
model="${KVZ_TEST_MODEL:-$HOME/.cache/kvzip/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf}"
[ -f "$model" ] || { echo "no model at $model (scripts/pull-model.sh smollm2-135m): skipping"; exit 77; }
py="$("$here/../../scripts/server-test-env.sh")"
cd "$here"
set +e
"$py" -m pytest -q -p no:cacheprovider "${@:2}" .
rc=$?
set -e
# pytest's 5 is "no tests collected": a failure here, never a pass.
[ "$rc" = 5 ] && { echo "run.sh: pytest collected no tests"; exit 1; }
exit "$rc"
