#!/usr/bin/env bash
# bench-server.sh — load benchmark of `kvzip serve` beside llama.cpp's llama-server (not a test).
#
# Usage: scripts/bench-server.sh [MODEL_NAME ...] [-- extra args for bench/server_load.py]
#
# Builds kvzip (scripts/build.sh), pulls each model (default: smollm2-135m qwen2.5-coder-0.5b),
# builds llama-server from the same pinned llama.cpp source as llama-bench
# (scripts/build-llama-bench.sh --target llama-server, cached outside the repository), then runs
# bench/server_load.py: both servers on loopback, one after the other, on the same GGUF file and
# threads; 1, 4 and 8 clients over one compressed context of about 4K tokens. Results go to
# bench/results/<date>-server-<model>.{json,md}, the plot to docs/img/server_throughput.png.
# Bounded: a fixed request count and a time limit per level. Needs an otherwise idle machine.
#
# Example (one model, kvzip only):  scripts/bench-server.sh smollm2-135m -- --no-llama
# Environment: THREADS (default: all cores), PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
log() { printf 'bench-server.sh: %s\n' "$*" >&2; }

NAMES=()
while (($#)) && [[ "$1" != "--" ]]; do NAMES+=("$1"); shift; done
[[ "${1:-}" == "--" ]] && shift
((${#NAMES[@]})) || NAMES=(smollm2-135m qwen2.5-coder-0.5b)
NO_LLAMA=0
EXTRA=()
for a in "$@"; do
    if [[ "$a" == "--no-llama" ]]; then NO_LLAMA=1; else EXTRA+=("$a"); fi
done

log "building kvzip ..."
scripts/build.sh >&2
MODELS=()
for n in "${NAMES[@]}"; do
    log "pulling model $n ..."
    MODELS+=(-m "$(scripts/pull-model.sh "$n" | tail -n1)")
done
LLAMA=()
if ((NO_LLAMA == 0)); then
    log "building llama-server ..."
    LLAMA=(--llama-server "$(scripts/build-llama-bench.sh --target llama-server | tail -n1)")
fi

VENV="$HOME/.cache/kvzip/bench-venv"
if ! "$PYTHON" -c "import matplotlib" 2>/dev/null; then
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating $VENV with matplotlib for the plot ..."
        "$PYTHON" -m venv "$VENV" && "$VENV/bin/pip" install --quiet matplotlib >&2 \
            || log "could not install matplotlib; the plot will be skipped"
    fi
    [[ -x "$VENV/bin/python" ]] && PYTHON="$VENV/bin/python"
fi

THREADS="${THREADS:-$(nproc 2>/dev/null || echo 2)}"
log "running ($THREADS threads; load average: $(cut -d' ' -f1-3 /proc/loadavg)) ..."
exec "$PYTHON" bench/server_load.py "${MODELS[@]}" -t "$THREADS" --kvzip build/kvzip "${LLAMA[@]}" "${EXTRA[@]}"
