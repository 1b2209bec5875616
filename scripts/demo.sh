#!/usr/bin/env bash
# The main job (README): set up, fetch the default model, build, and run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
model=$(scripts/pull-model.sh smollm2-135m | tail -n 1)
scripts/build.sh
exec build/kvzip demo -m "$model" "$@"
