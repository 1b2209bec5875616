#!/usr/bin/env python3
"""Reference logits and greedy continuations from llama.cpp for the Gemma 3 parity test.

Same procedure and file format as gen_llama_parity.py (see its doc: top-8 + 8 random-id logits
at every position, 32-token greedy continuation with margins, llama.cpp's flash-attention
on/off self-noise), on the real Gemma 3 270M base Q4_K_M GGUF (scripts/pull-model.sh
gemma3-270m). Differences:
  - plain-text prompts (a base model, no chat template in the file), tokenized with BOS as
    llama.cpp does by default for Gemma (tokenizer.ggml.add_bos_token = true);
  - the long document is ~1,300 tokens: past the 512-token sliding window of the local layers
    and over two 512-token batches, so local-layer windows start inside a batch and span
    batch boundaries;
  - n_ctx 1536: llama-cpp-python keeps an [n_ctx][n_vocab] f32 score array and the vocabulary
    has 262,144 entries (1.6 GB).

Usage (writes tests/golden/data/parity_gemma3.bin and .json):
  ~/.cache/kvzip/ref/venv/bin/python tests/golden/gen/gen_gemma3_parity.py gemma-3-270m-q4_k_m.gguf
"""
import sys

from gen_llama_parity import generate, long_document

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a small village by the mountains, there lived an old clockmaker who",
    long_document(n_lines=34),
    "Count from 1 to 60: 1, 2, 3, 4, 5,",
    "Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday, Monday, Tuesday,",
    "A, B, C, D, E, F, G, H, I, J, K,",
]


if __name__ == "__main__":
    generate(sys.argv[1], PROMPTS, "parity_gemma3", n_ctx=1536, add_bos=True)
