#!/usr/bin/env python3
"""Per-head scores of kvpress presses, for the parity test tests/unit/test_presses_kvpress.cpp.

Independent implementation: kvpress (PyPI) SnapKVPress, StreamingLLMPress, KnormPress, TOVAPress,
ExpectedAttentionPress and ObservedAttentionPress (H2O-like), run on HF transformers in float32 on
the HF copy of the real SmolLM2-135M-Instruct Q4_1 GGUF (the copy gen_kvzip_kvpress_fixture.py
makes in ~/.cache/kvzip/hf/smollm2-135m).

Each press runs the way kvpress runs it: `with press(model): model.model(input_ids=ids)` (a
prefill under the press's forward hooks). We wrap `press.score` and capture, per layer, the
[H, T] score tensor the press computes before its top-k.

Input ids (both sides identical, the test checks our tokenizer gives the same prefix/postfix):
  query-agnostic: enc(our ChatML KVzip prefix) ++ ctx_ids           (T = n_sys + n_ctx)
  query-aware (snapkv_qa): the same ++ question_ids, where question_ids = enc("\\n\\n" + question)
  ++ enc(postfix) is exactly what KvzipContext::question_ids / query() feed; kvpress appends
  the question to the context in its own query-aware mode, so its observation window (the last
  64 rows) covers the question and the context's tail, as ours does.
ctx_ids: the first N_CTX tokens of the generated prose of gen_kvzip_kvpress_fixture.py.

Stored: only the n_ctx context columns (our engine never scores the system prompt, which it
always keeps). Scores as float16 of ln(score) for the attention-like presses (positive), of the
raw score for KnormPress (-||k||) and StreamingLLMPress (0/1).

Also recorded: PyramidKVPress.get_layer_budget for a few (q_len, ratio) pairs, compared exactly
with our PyramidKV layer budgets.

Noise estimate recorded per press (same metrics as the test, kvpress against itself): the
bfloat16 model against the float32 one.

Usage (writes tests/golden/data/presses_kvpress_smollm2.bin and .json):
  ~/.cache/kvzip/ref/venv-kvpress/bin/python tests/golden/gen/gen_presses_kvpress_fixture.py [--short] [MODEL.gguf]

--short writes presses_kvpress_smollm2_short.{bin,json}: the first SHORT_N_CTX context tokens
only (still five times the 64-row observation window), for the sanitizer stage, where seven
prefills of 1,024 tokens take minutes (the test picks it under KVZ_SANITIZE=1). The presses'
scores depend on the context's end, so a shorter input needs its own run.
"""
import importlib.metadata as md
import json
import os
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.cache_utils import DynamicCache

from kvpress import (ExpectedAttentionPress, KnormPress, ObservedAttentionPress, PyramidKVPress, SnapKVPress,
                     StreamingLLMPress, TOVAPress)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_kvzip_kvpress_fixture import DATA, POSTFIX, PREFIX, SEED, context_text, hf_copy, spearman  # noqa: E402

N_CTX = 1024
SHORT_N_CTX = 320  # --short
RATIO = 0.5  # kvpress compression_ratio (removed fraction); any value > 0 makes the press score
QUESTION = "What does Greta Brandt keep, and where was she born?"

# name -> (factory, transform, query_aware, attn_implementation)
PRESSES = {
    "snapkv": (lambda: SnapKVPress(compression_ratio=RATIO), "ln", False, "sdpa"),
    "snapkv_qa": (lambda: SnapKVPress(compression_ratio=RATIO), "ln", True, "sdpa"),
    "streaming_llm": (lambda: StreamingLLMPress(compression_ratio=RATIO), "id", False, "sdpa"),
    "knorm": (lambda: KnormPress(compression_ratio=RATIO), "id", False, "sdpa"),
    "tova": (lambda: TOVAPress(compression_ratio=RATIO), "ln", False, "sdpa"),
    "expected_attention": (lambda: ExpectedAttentionPress(compression_ratio=RATIO), "ln", False, "sdpa"),
    "h2o": (lambda: ObservedAttentionPress(compression_ratio=RATIO), "ln", False, "eager"),
}


def run(model, press, ids):
    """[L][H][T] float64 scores as the press computed them in each layer."""
    got = {}
    orig = press.score

    def score(module, *a, **kw):
        s = orig(module, *a, **kw)
        got[module.layer_idx] = s[0].detach().to(torch.float64).numpy().copy()
        return s

    press.score = score
    with torch.no_grad(), press(model):
        model.model(input_ids=torch.tensor([ids]), past_key_values=DynamicCache(config=model.config))
    return np.stack([got[i] for i in range(len(got))])


def transform(s, how):
    if how == "ln":
        with np.errstate(divide="ignore"):
            return np.log(s)
    return s


def metrics(a, b):
    """Spearman per head (mean, min) and per-head top-half overlap of ctx columns."""
    L, H, n = a.shape
    rho = [spearman(a[l, h], b[l, h]) for l in range(L) for h in range(H)]
    k = n // 2
    ov = []
    for l in range(L):
        for h in range(H):
            ka = set(np.argsort(-a[l, h], kind="stable")[:k].tolist())
            kb = set(np.argsort(-b[l, h], kind="stable")[:k].tolist())
            ov.append(len(ka & kb) / k)
    return {"spearman_mean": round(float(np.nanmean(rho)), 5), "spearman_min": round(float(np.nanmin(rho)), 5),
            "overlap_mean": round(float(np.mean(ov)), 5), "overlap_min": round(float(np.min(ov)), 5)}


def short_args():
    """(args without --short, whether --short was given)."""
    args = sys.argv[1:]
    short = "--short" in args
    return [a for a in args if a != "--short"], short


def main():
    args, short = short_args()
    n_ctx_target = SHORT_N_CTX if short else N_CTX
    fixture = "presses_kvpress_smollm2" + ("_short" if short else "")
    gguf = args[0] if args else os.path.expanduser(
        "~/.cache/kvzip/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf")
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    hf_dir = hf_copy(gguf)
    tok = AutoTokenizer.from_pretrained(hf_dir)
    enc = lambda s: tok.encode(s, add_special_tokens=False)
    sys_ids, post_ids = enc(PREFIX), enc(POSTFIX)
    ctx_ids = enc(context_text(tok))[:n_ctx_target]
    q_ids = enc("\n\n" + QUESTION.strip()) + post_ids
    n_sys, n_ctx = len(sys_ids), len(ctx_ids)

    def load(dtype, attn):
        return AutoModelForCausalLM.from_pretrained(hf_dir, torch_dtype=dtype, attn_implementation=attn).eval()

    models = {}
    blobs, entries, noise = [], {}, {}
    offset = 0
    for name, (make, how, qa, attn) in PRESSES.items():
        if attn not in models:
            models[attn] = load(torch.float32, attn)
        ids = sys_ids + ctx_ids + (q_ids if qa else [])
        s = run(models[attn], make(), ids)[:, :, n_sys:n_sys + n_ctx]
        stored = transform(s, how).astype(np.float16)
        blobs.append(stored)
        entries[name] = {"offset_values": offset, "transform": how, "query_aware": qa, "attn_implementation": attn,
                         "press": type(make()).__name__,
                         "press_args": {k: v for k, v in vars(make()).items() if isinstance(v, (int, float, bool))}}
        offset += stored.size
        sbf = run(load(torch.bfloat16, attn), make(), ids)[:, :, n_sys:n_sys + n_ctx]
        noise[name] = metrics(transform(s, how), transform(sbf, how))
        print(name, noise[name], flush=True)

    # PyramidKV budgets (kvpress get_layer_budget) for a few (q_len, compression_ratio).
    L = models["sdpa"].config.num_hidden_layers
    pyr = []
    for q_len, cr in ((4000, 0.75), (1024, 0.5), (1024, 0.9), (100, 0.5)):
        p = PyramidKVPress(compression_ratio=cr)
        budgets = [p.get_layer_budget(type("M", (), {"config": models["sdpa"].config, "layer_idx": i})(), q_len)
                   for i in range(L)]
        pyr.append({"q_len": q_len, "compression_ratio": cr, "window": p.window_size, "beta": p.beta,
                    "budgets": [int(b) for b in budgets]})

    base = os.path.join(DATA, fixture)
    np.concatenate([b.reshape(-1) for b in blobs]).tofile(base + ".bin")
    meta = {
        "generator": "tests/golden/gen/gen_presses_kvpress_fixture.py",
        "versions": {p: md.version(p) for p in ("kvpress", "torch", "transformers", "gguf", "numpy")},
        "model": os.path.basename(gguf) + " (HF float32 copy via transformers gguf_file)",
        "seed": SEED, "dtype": "float32", "compression_ratio": RATIO,
        "n_layer": L, "n_head_kv": models["sdpa"].config.num_key_value_heads, "n_sys": n_sys, "n_ctx": n_ctx,
        "sys_ids": sys_ids, "postfix_ids": post_ids, "ctx_ids": ctx_ids, "question": QUESTION,
        "question_ids": q_ids,
        "values_file": fixture + ".bin: float16, per press [n_layer][n_head_kv][n_ctx] at offset_values "
                       "(elements), ln(score) or the raw score per `transform`",
        "presses": entries,
        "noise_bf16": noise,
        "pyramidkv_budgets": pyr,
    }
    with open(base + ".json", "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(json.dumps({k: v for k, v in meta.items() if "ids" not in k}, indent=1))


if __name__ == "__main__":
    main()
