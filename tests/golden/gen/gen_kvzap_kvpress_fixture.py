#!/usr/bin/env python3
"""KVzap surrogates and scores from kvpress, for the parity test tests/unit/test_kvzap_kvpress.cpp.

Independent implementation: kvpress's KVzapModel / KVzapConfig (the published checkpoint format,
save_pretrained / from_pretrained) and KVzapPress (the per-layer surrogate applied to the
attention input inside kvpress's forward hooks), on HF transformers in float32.

Three parts:

1. Tiny checkpoints written by kvpress itself (tests/golden/data/kvzap_kvpress_tiny/{linear,mlp}:
   config.json + model.safetensors, a few hundred bytes each): KVzapModel(KVzapConfig(input_dim
   8, output_dim 2, n_modules 3, hidden_dim None / 4)) with torch's default nn.Linear init under
   a fixed seed, saved with save_pretrained. Recorded: inputs x [5 tokens][3 modules][8] and
   kvpress's outputs [5][3][2]. The test loads the folders with our loader (the published
   layout, untagged) and compares predictions, and checks that our writer produces the same
   tensor names, shapes, dtypes and config fields.

2. KVzapPress scores on the real SmolLM2-135M-Instruct (HF float32 copy of the Q4_1 GGUF, as
   gen_presses_kvpress_fixture.py), over the same ids as that fixture: our ChatML KVzip prefix
   ++ its 1,024 context tokens. The surrogate weights are not trained: both sides make them from
   a formula (below), so no weights are committed. Captured: the [H, T] scores KVzapPress.score
   returns per layer (before any selection), context columns only, float32 (log-scores of
   random surrogates are too close together for float16's 11 bits).

3. KVzip+ scores, the quantity KVzap learns: KVzipPress(kvzip_plus_normalization=True) on the
   same ids, run as gen_kvzip_kvpress_fixture.py runs KVzipPress (our prefix length and
   postfix, n_sink = n_sys, chunk 2048: one chunk here). Stored as float32 ln(score), context
   columns, with the repeat input kvpress fed (the test checks ours is the same).

Weights formula (identical in tests/unit/test_kvzap_kvpress.cpp): tensor t of layer l (t = 0
W1 or W, 1 b1 or b, 2 W2, 3 b2), element i of its row-major [out][in] data:
    u = splitmix64((t << 56) | (l << 40) | i) >> 40          (a 24-bit integer)
    w = float32((u - 2^23) / 2^23 * (1 / sqrt(fan_in)))      (computed in double)
with fan_in the tensor's input width (torch nn.Linear's init range, also for the biases).

Noise estimate recorded (same metrics as the test, kvpress against itself): the bfloat16 model
(surrogate run in bfloat16 too, as KVzapPress casts it to the hidden states' dtype) against
float32.

Usage (writes tests/golden/data/kvzap_kvpress_smollm2.{bin,json} and kvzap_kvpress_tiny/):
  ~/.cache/kvzip/ref/venv-kvpress/bin/python tests/golden/gen/gen_kvzap_kvpress_fixture.py [MODEL.gguf]
"""
import importlib.metadata as md
import json
import os
import shutil
import struct
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from kvpress import KVzapPress
from kvpress.presses.kvzap_press import KVzapConfig, KVzapModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_kvzip_kvpress_fixture import (CHUNK, DATA, POSTFIX, PREFIX, SEED, context_text, hf_copy,  # noqa: E402
                                       run_kvpress)
from gen_presses_kvpress_fixture import N_CTX, SHORT_N_CTX, metrics, run, short_args  # noqa: E402

RATIO = 0.5  # kvpress compression_ratio: any value > 0 makes the press score


def splitmix64(x):
    """numpy uint64 array -> uint64 array (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def formula_tensor(t, layer, shape, fan_in):
    n = int(np.prod(shape))
    keys = (np.uint64(t) << np.uint64(56)) | (np.uint64(layer) << np.uint64(40)) | np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        u = (splitmix64(keys) >> np.uint64(40)).astype(np.float64)
    w = (u - 8388608.0) / 8388608.0 * (1.0 / np.sqrt(float(fan_in)))
    return torch.from_numpy(w.astype(np.float32).reshape(shape))


def formula_model(kind, n_layer, d_in, n_out, hidden):
    cfg = KVzapConfig(input_dim=d_in, output_dim=n_out, n_modules=n_layer,
                      hidden_dim=hidden if kind == "mlp" else None)
    m = KVzapModel(cfg).eval()
    with torch.no_grad():
        for il, mod in enumerate(m.layers):
            if kind == "linear":
                mod.weight.copy_(formula_tensor(0, il, (n_out, d_in), d_in))
                mod.bias.copy_(formula_tensor(1, il, (n_out,), d_in))
            else:
                mod[0].weight.copy_(formula_tensor(0, il, (hidden, d_in), d_in))
                mod[0].bias.copy_(formula_tensor(1, il, (hidden,), d_in))
                mod[2].weight.copy_(formula_tensor(2, il, (n_out, hidden), hidden))
                mod[2].bias.copy_(formula_tensor(3, il, (n_out,), hidden))
    return m


def safetensors_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    return {k: {"dtype": v["dtype"], "shape": v["shape"]} for k, v in h.items() if k != "__metadata__"}


def tiny_part():
    out = {}
    root = os.path.join(DATA, "kvzap_kvpress_tiny")
    for kind, hidden in (("linear", None), ("mlp", 4)):
        torch.manual_seed(SEED)
        m = KVzapModel(KVzapConfig(input_dim=8, output_dim=2, n_modules=3, hidden_dim=hidden)).eval()
        d = os.path.join(root, kind)
        shutil.rmtree(d, ignore_errors=True)
        m.save_pretrained(d)
        files = sorted(os.listdir(d))
        # What the test loads must be what kvpress wrote: reload through kvpress and compare.
        m2 = KVzapModel.from_pretrained(d).eval()
        x = torch.randn(5, 3, 8, generator=torch.Generator().manual_seed(SEED + 1))
        with torch.no_grad():
            y = m(x)
            assert torch.equal(y, m2(x))
        with open(os.path.join(d, "config.json")) as f:
            cfg = json.load(f)
        out[kind] = {"files": files, "config": {k: cfg.get(k) for k in ("model_type", "input_dim", "output_dim",
                                                                      "hidden_dim", "n_modules")},
                     "tensors": safetensors_header(os.path.join(d, "model.safetensors")),
                     "x": x.tolist(), "y": y.tolist()}
    return out


def main():
    # --short: kvzap_kvpress_smollm2_short.{bin,json}, the first SHORT_N_CTX context tokens, for
    # the sanitizer stage (as gen_presses_kvpress_fixture.py --short); the tiny part is the same.
    args, short = short_args()
    n_ctx_target = SHORT_N_CTX if short else N_CTX
    name = "kvzap_kvpress_smollm2" + ("_short" if short else "")
    gguf = args[0] if args else os.path.expanduser(
        "~/.cache/kvzip/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf")
    torch.set_num_threads(2)
    tiny = tiny_part()

    hf_dir = hf_copy(gguf)
    tok = AutoTokenizer.from_pretrained(hf_dir)
    enc = lambda s: tok.encode(s, add_special_tokens=False)
    sys_ids = enc(PREFIX)
    ctx_ids = enc(context_text(tok))[:n_ctx_target]
    n_sys, n_ctx = len(sys_ids), len(ctx_ids)
    ids = sys_ids + ctx_ids

    def load(dtype):
        return AutoModelForCausalLM.from_pretrained(hf_dir, torch_dtype=dtype, attn_implementation="sdpa").eval()

    f32 = load(torch.float32)
    cfg = f32.config
    L, H, D = cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.hidden_size
    hidden = D // 8

    def press_for(kind):
        p = KVzapPress(compression_ratio=RATIO, model_type=kind)
        p.kvzap_model = formula_model(kind, L, D, H, hidden)
        p.post_init_from_model = lambda model: None  # no hub download: the formula's weights
        return p

    blobs, entries, noise = [], {}, {}
    offset = 0
    bf16 = load(torch.bfloat16)
    for kind in ("linear", "mlp"):
        s = run(f32, press_for(kind), ids)[:, :, n_sys:n_sys + n_ctx]
        assert s.shape == (L, H, n_ctx), s.shape
        blobs.append(s.astype(np.float32))
        entries[kind] = {"offset_values": offset, "hidden_dim": hidden if kind == "mlp" else None}
        offset += s.size
        sbf = run(bf16, press_for(kind), ids)[:, :, n_sys:n_sys + n_ctx]
        noise[kind] = metrics(s, sbf)
        noise[kind]["max_abs_diff"] = round(float(np.max(np.abs(s - sbf))), 5)
        entries[kind]["range"] = [round(float(s.min()), 4), round(float(s.max()), 4)]
        print(kind, entries[kind]["range"], noise[kind], flush=True)

    # KVzip+ (part 3), and how much bf16 rounding moves it.
    post_ids = enc(POSTFIX)
    plus, _, rep = run_kvpress(f32, ids, n_sys, post_ids, CHUNK, n_sink=n_sys, plus=True)
    with np.errstate(divide="ignore"):
        ln_plus = np.log(plus)
    assert np.isfinite(ln_plus).all()
    blobs.append(ln_plus.astype(np.float32))
    entries["kvzip_plus"] = {"offset_values": offset, "transform": "ln", "chunk": CHUNK, "n_sink": n_sys,
                             "repeat_inputs": rep}
    offset += ln_plus.size
    plus_bf, _, _ = run_kvpress(bf16, ids, n_sys, post_ids, CHUNK, n_sink=n_sys, plus=True)
    with np.errstate(divide="ignore"):
        noise["kvzip_plus"] = metrics(ln_plus, np.log(plus_bf))
    print("kvzip_plus", noise["kvzip_plus"], flush=True)

    base = os.path.join(DATA, name)
    np.concatenate([b.reshape(-1) for b in blobs]).tofile(base + ".bin")
    meta = {
        "generator": "tests/golden/gen/gen_kvzap_kvpress_fixture.py",
        "versions": {p: md.version(p) for p in ("kvpress", "torch", "transformers", "gguf", "numpy")},
        "model": os.path.basename(gguf) + " (HF float32 copy via transformers gguf_file)",
        "seed": SEED, "dtype": "float32", "compression_ratio": RATIO,
        "n_layer": L, "n_head_kv": H, "n_embd": D, "n_sys": n_sys, "n_ctx": n_ctx,
        "sys_ids": sys_ids, "postfix_ids": enc(POSTFIX), "ctx_ids": ctx_ids,
        "values_file": name + ".bin: float32, per entry of `surrogates` [n_layer][n_head_kv][n_ctx] at "
                       "offset_values (elements): the log-scores KVzapPress.score returned; kvzip_plus: ln of "
                       "KVzipPress(kvzip_plus_normalization=True)'s scores",
        "surrogates": entries,
        "noise_bf16": noise,
        "tiny": tiny,
    }
    with open(base + ".json", "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(json.dumps({k: v for k, v in meta.items() if "ids" not in k and k != "tiny"}, indent=1))


if __name__ == "__main__":
    main()
