#!/usr/bin/env bash
# build-llama-bench.sh — build llama.cpp's `llama-bench` (or `llama-server`) for side-by-side
# benchmarks.
#
# Usage: scripts/build-llama-bench.sh [--force] [--target llama-bench|llama-server] [--avx2]
#
# --avx2 builds llama.cpp for AVX2 without AVX-512 (GGML_NATIVE=OFF, GGML_AVX2/FMA/F16C on,
# GGML_AVX512 off) into ${DEST}-avx2, the side-by-side partner of kvzip's KVZ_ISA=avx2 run on
# an AVX-512 machine (scripts/bench.sh): both engines then use the same instruction set.
#
# The source is the pinned sdist of PyPI llama-cpp-python (its vendor/llama.cpp tree), fetched
# with pip, so no git access is needed. The build lives outside the repository, in
#   ${KVZ_LLAMA_DIR:-$HOME/.cache/kvzip/llama.cpp-$VERSION}/bin/llama-bench
#   (or .../bin/llama-server with --target llama-server: scripts/bench-server.sh uses it)
# and is skipped when that binary already exists (--force rebuilds). Third-party code never
# enters the repository. Progress goes to stderr; the last line on stdout is the binary's path.
#
# Environment: KVZ_LLAMA_DIR (install dir), PYTHON (default python3), JOBS (default 2),
#              TMPDIR (scratch space for the download and the build tree).
set -euo pipefail

VERSION=0.3.36
PYTHON="${PYTHON:-python3}"
JOBS="${JOBS:-2}"
DEST="${KVZ_LLAMA_DIR:-$HOME/.cache/kvzip/llama.cpp-$VERSION}"
TARGET=llama-bench
PROG="build-llama-bench.sh"

die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
log() { printf '%s: %s\n' "$PROG" "$*" >&2; }

FORCE=0
AVX2=0
while (($#)); do
    case "$1" in
        --force) FORCE=1 ;;
        --avx2) AVX2=1 ;;
        --target)
            (($# >= 2)) || die "--target needs a value: llama-bench or llama-server"
            TARGET="$2"; shift ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done
case "$TARGET" in
    llama-bench) SERVER=OFF ;;
    llama-server) SERVER=ON ;;
    *) die "unknown --target '$TARGET' (llama-bench or llama-server)" ;;
esac
ISA_FLAGS=(-DGGML_NATIVE=ON)
if ((AVX2)); then
    DEST="$DEST-avx2"
    ISA_FLAGS=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
               -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF)
fi
BIN="$DEST/bin/$TARGET"

if [[ -x "$BIN" && $FORCE -eq 0 ]]; then
    log "already built: $BIN"
    echo "$BIN"
    exit 0
fi

for c in cmake "$PYTHON"; do command -v "$c" >/dev/null 2>&1 || die "'$c' not found (scripts/setup.sh installs it)"; done
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "pip is not available for $PYTHON"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/llama-bench.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

log "downloading llama-cpp-python==$VERSION (source distribution) ..."
# --no-binary for this package only: with `:all:`, pip also builds the sdist's build backend
# (scikit-build-core, setuptools, ...) from source just to read its metadata, which takes
# many minutes; their wheels are fine, the llama.cpp sources come from the sdist either way.
"$PYTHON" -m pip download --quiet --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$WORK" >&2 \
    || die "pip download failed (network? the version is pinned to $VERSION)"
SDIST="$(ls "$WORK"/llama_cpp_python-"$VERSION".tar.gz 2>/dev/null | head -n1)"
[[ -n "$SDIST" ]] || die "no sdist tarball found in $WORK"
tar -xzf "$SDIST" -C "$WORK"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
[[ -f "$SRC/CMakeLists.txt" ]] || die "vendor/llama.cpp missing from the sdist ($SDIST)"

GEN=()
command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)
log "configuring llama.cpp (${ISA_FLAGS[*]}, LLAMA_CURL=OFF) ..."
cmake -S "$SRC" -B "$WORK/build" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release "${ISA_FLAGS[@]}" -DLLAMA_CURL=OFF \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=$SERVER >&2
log "building $TARGET with -j$JOBS (a few minutes) ..."
cmake --build "$WORK/build" --target "$TARGET" -j"$JOBS" >&2

built="$(find "$WORK/build" -type f -name "$TARGET" -perm -u+x | head -n1)"
[[ -n "$built" ]] || die "build finished but no $TARGET binary was produced"
mkdir -p "$DEST/bin"
install -m 755 "$built" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
# Record what was built, for the benchmark report.
{
    echo "llama-cpp-python $VERSION"
    echo "target: $TARGET"
    echo "flags: ${ISA_FLAGS[*]} LLAMA_CURL=OFF BUILD_SHARED_LIBS=OFF LLAMA_BUILD_SERVER=$SERVER"
    cc --version 2>/dev/null | head -n1 || true
} >"$DEST/BUILD_INFO.$TARGET"
log "installed $BIN"
echo "$BIN"
