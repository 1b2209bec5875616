#!/usr/bin/env python3
"""Reference logits and greedy continuations from llama.cpp for the forward-pass parity test.

Independent implementation: llama.cpp through PyPI llama-cpp-python (version recorded in the
fixture), run on a real GGUF that scripts/pull-model.sh fetches: one fixture per model
(parity_<name>.bin/.json; names and prompt sets in MODELS below).
For each prompt we record
  - the token ids llama.cpp's own tokenizer produced (our test feeds these ids, so the
    forward pass is checked apart from the tokenizer),
  - at EVERY position: the top-8 logits (ids, values) and the logits of 8 fixed random ids,
  - the 32-token greedy continuation and llama.cpp's top-1/top-2 margin at each step.
Settings that matter for comparability: n_threads=2, F16 KV cache (llama.cpp's default, also
ours), flash attention off, n_batch = n_ubatch = 512, logits_all.

The tolerance is derived, not guessed: the same prompts are also run through llama.cpp with
flash attention ON (a second, equally valid llama.cpp code path: f16 Q, f16 V accumulation) and
the disagreement of llama.cpp with itself is stored per prompt as "self_noise" (max, mean and
99th percentile over positions of the per-position max |logit difference| over the same ids the
test compares). SmolLM2 is very sensitive to rounding
inside attention (rounding Q to f16 alone moves logits by ~0.2), so this floor is far from zero.

Usage (writes tests/golden/data/parity_<name>.bin and .json):
  scripts/reference-env.sh   # makes the venv with llama-cpp-python
  ~/.cache/kvzip/ref/venv/bin/python tests/golden/gen/gen_llama_parity.py MODEL.gguf [NAME]
NAME is smollm2 (default) or qwen25.
"""
import json
import os
import struct
import sys

import numpy as np
import llama_cpp

TOPK = 8
NRAND = 8
NGEN = 32
SEED = 1234


def long_document(n_lines=60):
    # A deterministic document of checkable facts (> 1,000 tokens), written by this script.
    rng = np.random.default_rng(SEED)
    cities = ["Arden", "Belmora", "Corvish", "Dunlow", "Elstree", "Fenmark", "Galdor", "Harwick",
              "Islay", "Jorvik", "Kestrel", "Lunden", "Marrow", "Norwick", "Oakhurst", "Pellam"]
    goods = ["copper", "wool", "salt", "glass", "timber", "amber", "flax", "honey", "tin", "silk"]
    lines = ["The Annual Report of the Northern Trade League, compiled by the harbour clerks.\n"]
    for i in range(n_lines):
        c = cities[i % len(cities)]
        g = goods[int(rng.integers(len(goods)))]
        n = int(rng.integers(100, 9999))
        y = int(rng.integers(1100, 1400))
        lines.append(f"In the year {y}, the town of {c} shipped {n} crates of {g} to its neighbours, "
                     f"and its harbour master recorded {int(rng.integers(3, 90))} ships in the spring.\n")
    return "".join(lines) + "\nQuestion: which town shipped the most crates of salt? Answer:"


CHAT_SMOLLM2 = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
                "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n")
CHAT_QWEN = ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
             "<|im_start|>user\nWrite a Python function that checks whether a number is prime.<|im_end|>\n"
             "<|im_start|>assistant\n")


def standard_prompts(chat):
    return [
    "The capital of France is",
    chat,
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a small village by the mountains, there lived an old clockmaker who",
    long_document(),
    # Continuations the model decides by wide margins (no near-tie in 32 greedy steps), so an
    # exact 32-token match is a property of the model, not of rounding luck.
    "Count from 1 to 60: 1, 2, 3, 4, 5,",
    "Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday, Monday, Tuesday,",
    "A, B, C, D, E, F, G, H, I, J, K,",
    "January, February, March, April, May, June, July, August, September, October, November, December, "
    "January, February, March,",
    "10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120,",
    ]


MODELS = {"smollm2": standard_prompts(CHAT_SMOLLM2), "qwen25": standard_prompts(CHAT_QWEN)}


def generate(model_path, prompts, out_stem, n_ctx=4096, add_bos=False):
    """Writes tests/golden/data/<out_stem>.bin and .json for `prompts` (see the module doc)."""
    out_dir = os.path.join(os.path.dirname(__file__), "..", "data")
    llm = llama_cpp.Llama(model_path=model_path, n_ctx=n_ctx, n_batch=512, n_ubatch=512, n_threads=2,
                          logits_all=True, flash_attn=False, verbose=False, seed=SEED)
    n_vocab = llm.n_vocab()
    rng = np.random.default_rng(SEED)
    rand_ids = np.sort(rng.choice(n_vocab, NRAND, replace=False)).astype(np.int32)
    meta = {"generator": "tests/golden/gen/" + os.path.basename(sys.argv[0]),
            "llama_cpp_python": llama_cpp.__version__, "model_sha256_file": os.path.basename(model_path),
            "n_threads": 2, "kv_type": "f16", "flash_attn": False, "topk": TOPK, "rand_ids": rand_ids.tolist(),
            "prompts": []}
    blob = bytearray()
    ref_logits = []
    for text in prompts:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
        llm.reset()
        llm.eval(ids)
        logits = np.array(llm.scores[: len(ids)], dtype=np.float32)  # [n][vocab]
        # keep only what the self-noise comparison below needs (the vocabulary may be large)
        top = np.argsort(-logits, axis=1, kind="stable")[:, :TOPK].astype(np.int32)
        cols = np.concatenate([top, np.broadcast_to(rand_ids, (len(ids), NRAND))], axis=1)
        ref_logits.append((cols, np.take_along_axis(logits, cols, 1)))
        # greedy continuation, fed back through llama.cpp
        gen, margins = [], []
        last = logits[-1]
        for _ in range(NGEN):
            t = int(np.argmax(last))
            top2 = np.sort(last)[-2:]
            margins.append(round(float(top2[1] - top2[0]), 4))
            gen.append(t)
            llm.eval([t])
            last = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        meta["prompts"].append({"text": text, "n_tokens": len(ids), "greedy": gen, "greedy_margins": margins,
                                "greedy_text": llm.detokenize(gen).decode("utf-8", "replace")})
        blob += struct.pack("<i", len(ids))
        blob += np.array(ids, dtype=np.int32).tobytes()
        for t in range(len(ids)):
            blob += top[t].tobytes() + logits[t, top[t]].astype(np.float32).tobytes()
            blob += logits[t, rand_ids].astype(np.float32).tobytes()
        del logits
        print(f"prompt of {len(ids)} tokens -> {meta['prompts'][-1]['greedy_text']!r}")
    # llama.cpp against itself: flash attention on vs off, same ids compared as in the test.
    del llm
    fa = llama_cpp.Llama(model_path=model_path, n_ctx=n_ctx, n_batch=512, n_ubatch=512, n_threads=2,
                         logits_all=True, flash_attn=True, verbose=False, seed=SEED)
    for p, text in zip(meta["prompts"], prompts):
        ids = fa.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
        fa.reset()
        fa.eval(ids)
        cols, ref = ref_logits.pop(0)
        lf = np.take_along_axis(np.array(fa.scores[: len(ids)], dtype=np.float32), cols, 1)
        d = np.abs(ref - lf).max(axis=1)
        p["self_noise"] = {"max": round(float(d.max()), 4), "mean": round(float(d.mean()), 4),
                           "p99": round(float(np.percentile(d, 99)), 4)}
        print(f"llama.cpp flash-attn on vs off, prompt of {len(ids)} tokens: {p['self_noise']}")
    with open(os.path.join(out_dir, out_stem + ".bin"), "wb") as f:
        f.write(bytes(blob))
    with open(os.path.join(out_dir, out_stem + ".json"), "w") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)


def main():
    name = sys.argv[2] if len(sys.argv) > 2 else "smollm2"
    generate(sys.argv[1], MODELS[name], f"parity_{name}")


if __name__ == "__main__":
    main()
