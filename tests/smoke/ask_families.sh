#!/usr/bin/env bash
# ctest ask_families_smoke: `kvzip ask` with KVzip compression (ratio 0.3) on one model of
# every family in every format present: GGUF files of SmolLM2 (llama), Qwen2.5-Coder-0.5B
# (qwen2) and Gemma 3 270M (gemma3), their Hugging Face copies, and the tiny random Qwen3
# (folder + GGUF) and Llama-3-rope folder that scripts/make-hf-models.sh makes. Checks that
# each run prefills, scores, prunes to about 30% of the (evictable) context pairs and answers
# from both caches; answer quality is the eval harness's job. Skips (77) when none is present.
set -euo pipefail
KVZIP="$1"
MODELS="${KVZ_MODELS_DIR:-$HOME/.cache/kvzip/models}"
HF="${KVZ_HF_DIR:-$HOME/.cache/kvzip/hf}"
cands=("$MODELS/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"
       "$MODELS/qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
       "$MODELS/gemma3-270m/gemma-3-270m-q4_k_m.gguf"
       "$HF/smollm2-135m" "$HF/qwen2.5-coder-0.5b" "$HF/gemma3-270m"
       "$HF/qwen3-tiny" "$HF/qwen3-tiny.gguf" "$HF/llama3-tiny")
# Under scripts/sanitize.sh (KVZ_SANITIZE=1: SmolLM2 prefills about 30 tokens/s) the Hugging Face
# copies of the real models are left out (HfParity loads them under the sanitizers) and the
# models without local layers read a 10-record text.
sanitized=0
if [[ "${KVZ_SANITIZE:-}" == 1 ]]; then
    sanitized=1
    cands=("${cands[@]:0:3}" "${cands[@]:6}")
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
# ~600 tokens: more than the 512-token sliding window of Gemma 3's local layers.
for i in $(seq 1 30); do
    echo "Record $i: the courier from harbour $((i * 7)) delivered $((i * 13 % 97)) crates of tea to warehouse $((i + 40))."
done > "$TMP/ctx.txt"
head -n 10 "$TMP/ctx.txt" > "$TMP/short.txt"
ran=0
for m in "${cands[@]}"; do
    [[ -e "$m" ]] || { echo "ask_families_smoke: $m absent, skipped"; continue; }
    ctx="$TMP/ctx.txt"
    if ((sanitized)) && [[ "$m" != *gemma* ]]; then ctx="$TMP/short.txt"; fi
    out="$("$KVZIP" ask -m "$m" --context "$ctx" -q "How many crates did warehouse 45 receive?" \
        --ratio 0.3 -n 8 -t 2 --compare-full 2>&1)" || { echo "$out"; echo "ask_families_smoke: FAILED on $m"; exit 1; }
    kept=$(grep -o 'kept [0-9.]*% of context pairs' <<<"$out" | grep -o '[0-9.]*' | head -n1)
    grep -q "full cache:" <<<"$out" && grep -q "compressed (30%):" <<<"$out" \
        || { echo "$out"; echo "ask_families_smoke: no answers from $m"; exit 1; }
    awk -v k="$kept" 'BEGIN { exit !(k >= 25 && k <= 35) }' \
        || { echo "$out"; echo "ask_families_smoke: kept ${kept:-?}% on $m, expected about 30%"; exit 1; }
    echo "ask_families_smoke: $m: kept $kept% of context pairs"
    ran=$((ran + 1))
done
((ran > 0)) || { echo "ask_families_smoke: no model present; skipping"; exit 77; }
echo "ask_families_smoke: ok ($ran models)"
