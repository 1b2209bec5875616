#!/usr/bin/env bash
# ctest ask_load_threads_smoke: a context compressed once (KVzip, ratio 0.5) and saved, then
# answered with `kvzip ask --load` at -t 1, 2 and 3: the greedy answers must be identical
# (docs/kernels.md, "Determinism"). The saved cache holds about 800 rows per head (3 heads),
# so decode takes the split-K attention path. Skips (77) when the default model is absent.
set -euo pipefail
KVZIP="$1"
MODELS="${KVZ_MODELS_DIR:-$HOME/.cache/kvzip/models}"
MODEL="$MODELS/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ ! -f "$MODEL" ]]; then
    echo "ask_load_threads_smoke: $MODEL not found (scripts/pull-model.sh smollm2-135m); skipping"
    exit 77
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
# Under scripts/sanitize.sh (KVZ_SANITIZE=1: SmolLM2 prefills about 30 tokens/s) a shorter text,
# 3 questions and 1 and 2 threads; decode then does not split the keys (the synthetic
# Determinism tests take that path under the sanitizers).
records=60 ws=(41 47 52 58 63 71 80 99) threads=(1 2 3)
if [[ "${KVZ_SANITIZE:-}" == 1 ]]; then records=20 ws=(41 47 52) threads=(1 2); fi
for i in $(seq 1 "$records"); do
    echo "Record $i: the courier from harbour $((i * 7)) delivered $((i * 13 % 97)) crates of tea to warehouse $((i + 40))."
done > "$TMP/ctx.txt"
"$KVZIP" ask -m "$MODEL" --context "$TMP/ctx.txt" --save "$TMP/ctx.kvz" --ratio 0.5 -n 4 -t 2 \
    -q "Which harbour did record 3 come from?" > "$TMP/save.log" 2>&1 || { cat "$TMP/save.log"; exit 1; }
questions=()
for w in "${ws[@]}"; do questions+=(-q "How many crates did warehouse $w receive?"); done
for t in "${threads[@]}"; do
    "$KVZIP" ask -m "$MODEL" --load "$TMP/ctx.kvz" "${questions[@]}" -n 24 -t "$t" > "$TMP/out.$t" 2>&1 \
        || { cat "$TMP/out.$t"; exit 1; }
    # The answer lines without their timing.
    grep '^  answer:' "$TMP/out.$t" | sed -E 's/ +\([0-9.]+ ms\/token\)$//' > "$TMP/answers.$t"
done
n=$(wc -l < "$TMP/answers.1")
[[ "$n" -eq ${#ws[@]} ]] || { cat "$TMP/out.1"; echo "ask_load_threads_smoke: expected ${#ws[@]} answers, got $n"; exit 1; }
for t in "${threads[@]:1}"; do
    diff "$TMP/answers.1" "$TMP/answers.$t" \
        || { echo "ask_load_threads_smoke: the answers at -t $t differ from -t 1"; exit 1; }
done
cat "$TMP/answers.1"
echo "ask_load_threads_smoke: ok (${#ws[@]} answers identical at ${threads[*]} threads)"
