#!/usr/bin/env bash
# eval.sh — the evaluation suite in one command (issue 6): builds kvzip, pulls the model,
# creates ~/.cache/kvzip/bench-venv with matplotlib for the plots (if python3 lacks it),
# runs `kvzip eval`, then `kvzip report` (Markdown tables, summary.csv, PNG plots).
#
# Usage: scripts/eval.sh [--quick | --preset NAME] [-o OUT_DIR] [MODEL_NAME] [-- extra `kvzip eval` args]
#
#   default suite  ten tasks (needle: haystacks of 500 and 1,000 tokens under its 2000-token target; the others' easy variants at 300-850
#                  tokens), 2 samples each, methods pair / pair-uniform / head, ratios
#                  1.0 0.8 0.6 0.4 0.3 0.2 0.1: about 50 minutes for SmolLM2-135M on 2 cores
#                  (30 for Qwen2.5-Coder-0.5B, whose full cache answers more)
#   --quick        the CI smoke test: three tasks, one sample, ratios 1.0 0.5 0.2 (~2 min)
#   --preset presses      KVzip beside SnapKV, PyramidKV, H2O, TOVA, KNorm, StreamingLLM,
#                         ExpectedAttention and random on four tasks (docs/eval/<model>-presses)
#   --preset query-aware  agnostic vs query-aware vs a query-aware cache reused, on three tasks
#                         (the paper's finding; docs/eval/<model>-query-aware)
#   --preset lengths      KVzip at 1000, 2000, 4000 and 5500 context tokens on squad and kv
#                         (docs/eval/<model>-lengths; 5500 (+ a 2000-token scoring chunk) fits SmolLM2's 8192)
#   --preset kvzap        KVzap beside KVzip on the default suite's ten tasks: KVzip, KVzip+ (what
#                         KVzap learns) and the surrogate ranked at kept ratios 1.0 0.5 0.3 0.1, and KVzap's own threshold
#                         rule at tau -7 -6 -5 -4 -3 -2, once per sample (docs/eval/<model>-kvzap-suite);
#                         trains the surrogate first (`kvzip train-kvzap`, defaults) when none is
#                         cached; another surrogate: `-- --kvzap DIR`
#
# Results go to OUT_DIR (default docs/eval/<model>[-<preset>]/, or eval-quick/ with --quick):
# results.jsonl (appended; rerunning resumes), report.md, summary.csv, *.png.
# Environment: THREADS (default: all cores), PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

QUICK=0
PRESET=""
OUT=""
NAME=smollm2-135m
while (($#)); do
    case "$1" in
        --quick) QUICK=1; shift ;;
        --preset) PRESET="$2"; shift 2 ;;
        -o) OUT="$2"; shift 2 ;;
        --) shift; break ;;
        *) NAME="$1"; shift ;;
    esac
done
case "$PRESET" in
    ""|presses|query-aware|lengths|kvzap) ;;
    *) echo "eval.sh: unknown preset '$PRESET' (presses, query-aware, lengths, kvzap)" >&2; exit 2 ;;
esac
SUFFIX="${PRESET:+-$PRESET}"
[[ "$PRESET" == kvzap ]] && SUFFIX=-kvzap-suite  # docs/eval/<model>-kvzap holds the two-task run of 2026-11-24
[[ -n "$OUT" ]] || { if ((QUICK)); then OUT=eval-quick; else OUT="docs/eval/$NAME$SUFFIX"; fi; }

log() { printf 'eval.sh: %s\n' "$*" >&2; }

log "building kvzip ..."
scripts/build.sh >&2
log "pulling model $NAME ..."
MODEL="$(scripts/pull-model.sh "$NAME" | tail -n1)"

VENV="$HOME/.cache/kvzip/bench-venv"
PLOT_PY="$PYTHON"
# Debian's python3-matplotlib (scripts/setup.sh) is for /usr/bin/python3, which need not be
# the python3 found first on PATH.
if ! "$PLOT_PY" -c "import matplotlib" 2>/dev/null && /usr/bin/python3 -c "import matplotlib" 2>/dev/null; then
    PLOT_PY=/usr/bin/python3
fi
if ! "$PLOT_PY" -c "import matplotlib" 2>/dev/null; then
    if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c "import matplotlib" 2>/dev/null; then
        log "creating $VENV with matplotlib for the plots ..."
        "$PYTHON" -m venv "$VENV" && "$VENV/bin/pip" install --quiet matplotlib >&2 \
            || log "could not install matplotlib; the plots will be skipped"
    fi
    PLOT_PY="$VENV/bin/python"
fi
# `kvzip report` fails when it cannot plot; without matplotlib anywhere, ask for the tables only.
REPORT_ARGS=(--python "$PLOT_PY")
if ! "$PLOT_PY" -c "import matplotlib" 2>/dev/null; then
    log "no Python with matplotlib (scripts/setup.sh installs python3-matplotlib): the report will have no plots"
    REPORT_ARGS=(--no-plots)
fi

THREADS="${THREADS:-$(nproc 2>/dev/null || echo 2)}"
mkdir -p "$OUT"
if ((QUICK)); then
    ARGS=(--quick)
elif [[ "$PRESET" == presses ]]; then
    ARGS=(--task needle-easy,squad-easy,kv-easy,summary-needles-easy --samples 2 --seed 1
          --methods pair,snapkv,pyramidkv,h2o,tova,knorm,streaming_llm,expected_attention,random
          --ratios 1.0,0.6,0.3,0.1)
elif [[ "$PRESET" == query-aware ]]; then
    ARGS=(--task squad-easy,summary-needles-easy,needle-multikey --samples 3 --seed 1
          --methods pair,snapkv,tova,h2o --mode agnostic,aware,reuse --ratios 1.0,0.5,0.3,0.1)
elif [[ "$PRESET" == kvzap ]]; then
    ARGS=(--task needle-easy,needle,squad-easy,vt-easy,many-shot-easy,summary-needles-easy,repoqa-easy,kv-easy,prefix-suffix-easy,gsm-easy
          --samples 2 --methods pair,kvzip_plus,kvzap --ratios 1.0,0.5,0.3,0.1 --thresholds -7,-6,-5,-4,-3,-2 --seed 1)
elif [[ "$PRESET" == lengths ]]; then
    ARGS=(--task squad,kv --ctx-tokens 1000,2000,4000,5500 --samples 1 --seed 1
          --methods pair --ratios 1.0,0.5,0.3,0.1)
else
    ARGS=(--task needle-easy,needle,squad-easy,vt-easy,many-shot-easy,summary-needles-easy,repoqa-easy,kv-easy,prefix-suffix-easy,gsm-easy
          --samples 2 --methods pair,pair-uniform,head --ratios 1.0,0.8,0.6,0.4,0.3,0.2,0.1 --seed 1)
fi
if [[ "$PRESET" == kvzap ]]; then
    # Where `kvzip train-kvzap` writes and `kvzip eval` looks by default: the pulled model's
    # folder is named after its pull name.
    KVZAP_DIR="$HOME/.cache/kvzip/kvzap/$NAME-mlp"
    if [[ ! -f "$KVZAP_DIR/config.json" ]]; then
        log "no KVzap surrogate in $KVZAP_DIR: training one (kvzip train-kvzap, defaults) ..."
        build/kvzip train-kvzap -m "$MODEL" -t "$THREADS" >&2
    fi
fi
log "running kvzip eval ($THREADS threads; load average: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo ?)) ..."
build/kvzip eval -m "$MODEL" -t "$THREADS" "${ARGS[@]}" --out "$OUT/results.jsonl" "$@"
build/kvzip report "$OUT/results.jsonl" -o "$OUT" "${REPORT_ARGS[@]}"
log "done: $OUT/report.md"
