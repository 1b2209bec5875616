#!/usr/bin/env bash
# ctest eval_quick_smoke: `kvzip eval --quick` on the default model end to end (three tasks,
# one sample each, ratios 1.0/0.5/0.2), then a resumed run that must find everything done,
# then `kvzip report` without plots. Skips (exit 77) when the model is absent. A few
# minutes on 2 cores; no timing assertions.
set -euo pipefail
KVZIP="$1"
MODELS="${KVZ_MODELS_DIR:-$HOME/.cache/kvzip/models}"
MODEL="$MODELS/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ ! -f "$MODEL" ]]; then
    echo "eval_quick_smoke: $MODEL not found (scripts/pull-model.sh smollm2-135m); skipping"
    exit 77
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
# Under scripts/sanitize.sh (KVZ_SANITIZE=1: SmolLM2 prefills about 30 tokens/s) 200-token
# contexts instead of --quick's 500 (explicit options win over --quick's).
extra=()
if [[ "${KVZ_SANITIZE:-}" == 1 ]]; then extra=(--ctx-tokens 200); fi
"$KVZIP" eval --quick -m "$MODEL" -t 2 --out "$TMP/results.jsonl" "${extra[@]}"
n=$(wc -l < "$TMP/results.jsonl")
[[ "$n" -eq 9 ]] || { echo "expected 9 records (3 tasks x 3 ratios), got $n"; exit 1; }
"$KVZIP" eval --quick -m "$MODEL" -t 2 --out "$TMP/results.jsonl" "${extra[@]}" 2> "$TMP/resume.log"
grep -q "wrote 0 records (9 skipped as done)" "$TMP/resume.log" || { cat "$TMP/resume.log"; exit 1; }
"$KVZIP" report "$TMP/results.jsonl" -o "$TMP/report" --no-plots
for t in needle-easy kv-easy squad-easy; do
    grep -q "### $t" "$TMP/report/report.md" || { echo "report.md lacks $t"; exit 1; }
done
# needle-easy is answered from the full cache by this model; the smoke test checks the
# pipeline produced a score column, not a quality bar.
head -c 2000 "$TMP/report/report.md"
echo "eval_quick_smoke: ok"
