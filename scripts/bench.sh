#!/usr/bin/env bash
# bench.sh — the kvzip vs llama.cpp benchmark in one command (not part of the tests).
#
# Usage: scripts/bench.sh [MODEL_NAME] [-- extra args for bench/compare_llamacpp.py]
#
# Builds kvzip (scripts/build.sh), pulls the model (scripts/pull-model.sh, default
# smollm2-135m), builds llama.cpp's llama-bench (scripts/build-llama-bench.sh, cached outside
# the repo), creates ~/.cache/kvzip/bench-venv with matplotlib for the plot if python3 lacks
# it, then runs bench/compare_llamacpp.py: results go to bench/results/<date>-<host>-<model>.{json,md}
# and the plot to docs/img/decode_vs_depth.png (other models: decode_vs_depth-<name>.png).
#
# On a CPU with AVX-512 the comparison runs twice: with the best kernel set, then with
# KVZ_ISA=avx2 beside a llama.cpp built for AVX2 without AVX-512 (build-llama-bench.sh --avx2;
# results ...-avx2.{json,md}, plot ...-avx2.png), so that both kernel sets users
# run are measured on the same machine. KVZ_ISA set by the caller: that set only.
#
# Example (quicker, fewer rounds):  scripts/bench.sh smollm2-135m -- --rounds 2
# A q8_0 KV cache on both sides:     scripts/bench.sh smollm2-135m -- --kv-type q8_0  (files end in -kv-q8_0)
# Environment: THREADS (default: all cores), PYTHON (default python3), KVZ_ISA.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

NAME=smollm2-135m
if (($#)) && [[ "$1" != "--" ]]; then NAME="$1"; shift; fi
[[ "${1:-}" == "--" ]] && shift

log() { printf 'bench.sh: %s\n' "$*" >&2; }

log "building kvzip ..."
scripts/build.sh >&2
log "pulling model $NAME ..."
MODEL="$(scripts/pull-model.sh "$NAME" | tail -n1)"
log "building llama-bench ..."
LLAMA="$(scripts/build-llama-bench.sh | tail -n1)"

VENV="$HOME/.cache/kvzip/bench-venv"
if ! "$PYTHON" -c "import matplotlib" 2>/dev/null && [[ ! -x "$VENV/bin/python" ]] ; then
    log "creating $VENV with matplotlib for the plot ..."
    "$PYTHON" -m venv "$VENV" && "$VENV/bin/pip" install --quiet matplotlib >&2 \
        || log "could not install matplotlib; the plot will be skipped"
fi

THREADS="${THREADS:-$(nproc 2>/dev/null || echo 2)}"
# A quantized KV cache (--kv-type q8_0 among the extra arguments) names its own files.
KV=""
prev=""
for arg in "$@"; do
    [[ "$prev" == "--kv-type" && "$arg" != f16 ]] && KV="-kv-$arg"
    [[ "$arg" == --kv-type=* && "${arg#--kv-type=}" != f16 ]] && KV="-kv-${arg#--kv-type=}"
    prev="$arg"
done
# One plot per model and kernel set (the default model keeps the plain name docs link to).
PNG="docs/img/decode_vs_depth.png"
[[ "$NAME" == smollm2-135m && -z "$KV" ]] || PNG="docs/img/decode_vs_depth-$NAME$KV.png"
stem="bench/results/$(date +%Y-%m-%d)-$(hostname)-$(basename "$MODEL" .gguf)$KV"
# A second run of the same model on the same day keeps the first one's files: the new files
# get the start time (UTC) in their name.
if [[ -e "$stem.json" || -e "$stem-avx2.json" ]]; then stem="$stem-$(date -u +%H%M)utc"; fi
log "running the comparison ($THREADS threads; load average: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo ?)) -> $stem.{json,md} ..."
"$PYTHON" bench/compare_llamacpp.py -m "$MODEL" -t "$THREADS" --kvzip build/kvzip --llama-bench "$LLAMA" \
    --out "$stem.json" --png "$PNG" "$@"
if [[ -z "${KVZ_ISA:-}" ]] && grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
    log "building llama-bench for AVX2 without AVX-512 ..."
    LLAMA_AVX2="$(scripts/build-llama-bench.sh --avx2 | tail -n1)"
    log "again with the AVX2 kernels on both sides (KVZ_ISA=avx2, llama.cpp built for AVX2) -> $stem-avx2.{json,md} ..."
    # (the extra arguments first: this run's files are named after the first run's)
    KVZ_ISA=avx2 "$PYTHON" bench/compare_llamacpp.py -m "$MODEL" -t "$THREADS" --kvzip build/kvzip \
        --llama-bench "$LLAMA_AVX2" "$@" --out "$stem-avx2.json" --png "${PNG%.png}-avx2.png"
fi
