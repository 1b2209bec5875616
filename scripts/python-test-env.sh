#!/usr/bin/env bash
# The Python environment of the package tests (tests/python/): pytest, numpy and the package's
# build requirements, pinned, in a venv outside the repository, with the kvzip package built
# from this checkout and installed into it. Prints the venv's python.
#   ~/.cache/kvzip/ref/venv-python   (or $KVZ_REF_DIR/venv-python)
# The package is reinstalled on every call; its CMake build directory ($ref/pybuild-<hash of
# this checkout's path>) is kept, so only what changed is compiled again (hence no build
# isolation here: an isolated build would configure from scratch each time).
# --no-install: the venv only (pytest, numpy, nanobind, scikit-build-core), no package build;
# for a build tree that makes the module itself (tests/python/run.sh --package).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
ref=${KVZ_REF_DIR:-$HOME/.cache/kvzip/ref}
venv="$ref/venv-python"
pins=("pytest==9.2.0" "numpy==2.4.6" "scikit-build-core==1.1.2" "nanobind==2.9.2")
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import pytest, numpy, scikit_build_core, nanobind" 2>/dev/null; then
  mkdir -p "$ref"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "${pins[@]}" >&2
fi
if [ "${1:-}" = --no-install ]; then echo "$venv/bin/python"; exit 0; fi
key="$(printf '%s' "$root" | cksum | cut -d' ' -f1)"
"$venv/bin/pip" install -q --disable-pip-version-check --no-build-isolation --no-deps \
  -C build-dir="$ref/pybuild-$key" "$root" >&2
echo "$venv/bin/python"
