#!/usr/bin/env bash
# make-hf-models.sh — Hugging Face-format copies of the pulled GGUF models, for the
# safetensors / tokenizer.json / HF-parity tests. Idempotent: a folder that already has
# config.json is kept. Output: ${KVZ_HF_DIR:-~/.cache/kvzip/hf}/<name>.
#
# Usage: scripts/make-hf-models.sh [NAME...]   (default: every model below whose GGUF is pulled)
#
# Needs a Python with torch + transformers + gguf: $KVZ_HF_PYTHON, else the first of
# ~/.cache/kvzip/ref/venv-kvpress and ~/.cache/kvzip/ref/venv-hf that imports them, else a
# venv of its own (~/.cache/kvzip/ref/venv-hfcopy) with transformers 5.2.0, torch and accelerate
# (transformers needs accelerate to read a GGUF).
set -euo pipefail
export TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1
cd "$(dirname "$0")/.."
models=${KVZ_MODELS_DIR:-$HOME/.cache/kvzip/models}
hf=${KVZ_HF_DIR:-$HOME/.cache/kvzip/hf}
ref=${KVZ_REF_DIR:-$HOME/.cache/kvzip/ref}

# name  gguf (relative to the models dir)  dtype
table="smollm2-135m smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf float32
smollm2-135m-bf16 smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf bfloat16
qwen2.5-coder-0.5b qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf bfloat16
gemma3-270m gemma3-270m/gemma-3-270m-q4_k_m.gguf float32"

want=("$@")
# The tiny random Qwen3 (HF folder + GGUF) and Llama-3-rope model (HF folder) need the
# smollm2-135m folder's tokenizer.
need_qwen3=0
if { ((${#want[@]} == 0)) || [[ " ${want[*]} " == *" qwen3-tiny "* ]]; } && [[ ! -f "$hf/qwen3-tiny/config.json" || ! -f "$hf/qwen3-tiny.gguf" ]]; then
  need_qwen3=1
fi
need_llama3=0
if { ((${#want[@]} == 0)) || [[ " ${want[*]} " == *" llama3-tiny "* ]]; } && [[ ! -f "$hf/llama3-tiny/config.json" ]]; then
  need_llama3=1
fi
todo=()
while read -r name gguf dtype; do
  if ((${#want[@]})) && [[ ! " ${want[*]} " == *" $name "* ]]; then continue; fi
  [[ -f "$hf/$name/config.json" && -f "$hf/$name/kvzip_tokenizer.txt" ]] && continue
  if [[ ! -f "$models/$gguf" ]]; then echo "make-hf-models: $models/$gguf absent, skipping $name" >&2; continue; fi
  todo+=("$name $models/$gguf $dtype")
done <<<"$table"
((${#todo[@]} + need_qwen3 + need_llama3)) || exit 0

ok() { [[ -x "$1" ]] && "$1" -c "import torch, transformers, gguf, accelerate" 2>/dev/null; }
py=${KVZ_HF_PYTHON:-}
if [[ -z "$py" ]]; then
  for cand in "$ref/venv-kvpress/bin/python" "$ref/venv-hf/bin/python"; do
    if ok "$cand"; then py=$cand; break; fi
  done
fi
if [[ -z "$py" ]]; then
  # Only what the copies need, in their own venv: not scripts/reference-env.sh, whose
  # llama-cpp-python build takes ~15 min on 2 cores. The transformers version the committed
  # fixtures were made with (5.2.0, as in venv-kvpress); torch from the package index.
  py_env=$ref/venv-hfcopy
  [[ -x "$py_env/bin/python" ]] || python3 -m venv "$py_env"
  "$py_env/bin/pip" install -q "transformers==5.2.0" "gguf==0.17.1" numpy sentencepiece protobuf jinja2 torch accelerate
  py=$py_env/bin/python
fi
mkdir -p "$hf"
for t in "${todo[@]}"; do
  read -r name gguf dtype <<<"$t"
  if [[ -f "$hf/$name/config.json" ]]; then  # weights made before the tokenizer step existed
    echo "make-hf-models: $name: tokenizer from $gguf" >&2
    "$py" tests/golden/gen/make_hf_copy.py --tokenizer-only "$gguf" "$hf/$name"
  else
    echo "make-hf-models: $name ($dtype) from $gguf" >&2
    "$py" tests/golden/gen/make_hf_copy.py "$gguf" "$hf/$name" "$dtype" >/dev/null
  fi
done
if ((need_qwen3)); then
  if [[ -f "$hf/smollm2-135m/kvzip_tokenizer.txt" ]]; then
    echo "make-hf-models: qwen3-tiny (random weights, HF folder + GGUF)" >&2
    "$py" tests/golden/gen/gen_qwen3_tiny.py
  else
    echo "make-hf-models: qwen3-tiny needs the smollm2-135m folder, skipping" >&2
  fi
fi
if ((need_llama3)); then
  if [[ -f "$hf/smollm2-135m/kvzip_tokenizer.txt" ]]; then
    echo "make-hf-models: llama3-tiny (random weights, Llama 3 rope scaling, HF folder)" >&2
    "$py" tests/golden/gen/gen_llama3_tiny.py
  else
    echo "make-hf-models: llama3-tiny needs the smollm2-135m folder, skipping" >&2
  fi
fi
