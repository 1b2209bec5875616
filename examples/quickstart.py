#!/usr/bin/env python3
"""KVzip's quick start on the native engine: prefill a short profile once, score it, keep
30% of its KV pairs, and answer two questions from the compressed cache.

    pip install .                  # from the repository root
    python examples/quickstart.py  # fetches SmolLM2-135M on first use
"""
import sys

import kvzip

model = kvzip.Model(sys.argv[1] if len(sys.argv) > 1 else "smollm2-135m")
context = "This is my basic profile. My name is Kim living in Seoul. My major is computer science."
queries = ["What is my name?", "Do I live in Seoul?"]

kv = model.prefill(context, load_score=False)  # prefill + KVzip scoring
bytes_full = kv.kv_bytes
kv.prune(ratio=0.3)  # compression ratio: keep 30% of the context's KV pairs
print(f"KV cache: {bytes_full} bytes -> {kv.kv_bytes} bytes after pruning "
      f"({100 * kv.ratio_true:.0f}% of the context's pairs kept)")

for q in queries:
    query_ids = model.apply_template(q)
    output = model.generate(query_ids, kv=kv, update_cache=False)  # efficient inference
    print(q, output)
