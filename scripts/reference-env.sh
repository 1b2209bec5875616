#!/usr/bin/env bash
# Builds the Python environments of the INDEPENDENT reference implementations that the
# fixture generators in tests/golden/gen/ use. Not needed to build or test kvzip (the
# fixtures are committed); needed only to regenerate them. Outside the repo:
#   ~/.cache/kvzip/ref/venv     llama-cpp-python (builds llama.cpp from source, ~15 min on 2 cores) + gguf
#   ~/.cache/kvzip/ref/venv-hf  transformers + tokenizers + gguf (tokenizer and dequant references)
#   ~/.cache/kvzip/ref/venv-kvpress  kvpress 0.5.5 + transformers 5.2.0 + torch (KVzip, press, KVzap
#                               and HF-parity fixtures; ~3 GB of wheels, torch with its CUDA libraries)
set -euo pipefail
ref=${KVZ_REF_DIR:-$HOME/.cache/kvzip/ref}
mkdir -p "$ref"
if [ ! -x "$ref/venv/bin/python" ] || ! "$ref/venv/bin/python" -c "import llama_cpp, gguf" 2>/dev/null; then
  python3 -m venv "$ref/venv"
  CMAKE_ARGS="-DGGML_NATIVE=ON" "$ref/venv/bin/pip" install -q "llama-cpp-python==0.3.36" numpy "gguf==0.17.1"
fi
if [ ! -x "$ref/venv-hf/bin/python" ] || ! "$ref/venv-hf/bin/python" -c "import transformers, gguf" 2>/dev/null; then
  python3 -m venv "$ref/venv-hf"
  "$ref/venv-hf/bin/pip" install -q "transformers==4.57.6" "tokenizers==0.22.2" "gguf==0.17.1" numpy sentencepiece protobuf jinja2
fi
if [ ! -x "$ref/venv-kvpress/bin/python" ] || ! "$ref/venv-kvpress/bin/python" -c "import kvpress, gguf, accelerate" 2>/dev/null; then
  python3 -m venv "$ref/venv-kvpress"
  "$ref/venv-kvpress/bin/pip" install -q "kvpress==0.5.5" "transformers==5.2.0" "tokenizers==0.22.2" "torch==2.15.0" \
    "gguf==0.17.1" numpy sentencepiece protobuf jinja2 accelerate
fi
echo "$ref"
