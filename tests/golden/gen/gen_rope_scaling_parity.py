#!/usr/bin/env python3
"""Llama 3.x rope scaling against llama.cpp, on a tiny random-weight model written here.

No real Llama 3.x file is available from a registry package, so this script writes a small
llama GGUF (2 layers, d 64, 4 heads / 2 KV heads, d_head 16, rope base 500000) whose
`rope_freqs.weight` holds the Llama 3.1 frequency factors (factor 8, low/high frequency
factors 1 and 4, original context 8192), computed here from Meta's published rule. With
d_head 16 the eight rotary frequencies fall in all three regimes (unscaled, smoothed, divided
by 8). llama.cpp (llama-cpp-python) then runs 1,200 random token ids through it; positions
that long make the scaled low frequencies matter.

Writes tests/golden/data/rope_llama3.gguf (f16 matrices, random test data, ~0.2 MB) and
rope_llama3.json: the ids, llama.cpp's logits at 12 positions (all 260 vocabulary entries),
llama.cpp's flash-attention on/off disagreement (the tolerance floor), and how far the same
model WITHOUT rope_freqs moves those logits (the test checks its tolerance is far below this,
so it can tell scaled from unscaled rope).

Usage: ~/.cache/kvzip/ref/venv/bin/python tests/golden/gen/gen_rope_scaling_parity.py
(the venv from scripts/reference-env.sh: llama-cpp-python and gguf)
"""
import json
import math
import os
import tempfile

import gguf
import numpy as np
import llama_cpp

SEED = 31
N_LAYER, N_EMBD, N_HEAD, N_KV, N_FF, D_HEAD = 2, 64, 4, 2, 96, 16
BASE = 500000.0
N_IDS = 1200
POSITIONS = [0, 1, 7, 100, 300, 511, 700, 900, 1000, 1100, 1150, 1199]

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")


def llama3_factors(factor=8.0, low=1.0, high=4.0, orig=8192):
    """Per-frequency divisors of Llama 3.1's rope scaling (as llama.cpp's converter stores them)."""
    out = []
    for i in range(D_HEAD // 2):
        freq = BASE ** (-2.0 * i / D_HEAD)
        wavelen = 2 * math.pi / freq
        if wavelen < orig / high:
            out.append(1.0)
        elif wavelen > orig / low:
            out.append(factor)
        else:
            smooth = (orig / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def byte_tokens():
    # GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest to 256+.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


def write_model(path, with_freqs):
    rng = np.random.default_rng(SEED)
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(N_LAYER)
    w.add_embedding_length(N_EMBD)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_KV)
    w.add_feed_forward_length(N_FF)
    w.add_context_length(131072)
    w.add_rope_dimension_count(D_HEAD)
    w.add_rope_freq_base(BASE)
    w.add_layer_norm_rms_eps(1e-5)
    tokens = byte_tokens() + ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<pad>"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([1] * 256 + [3] * 4)
    w.add_token_merges(["! !"])  # llama.cpp requires a merges list; one merge is enough
    w.add_bos_token_id(256)
    w.add_eos_token_id(257)
    n_vocab = len(tokens)

    def mat(name, n_in, n_out, scale):
        # GGUF shape {n_in, n_out} = numpy [n_out, n_in]
        w.add_tensor(name, (rng.standard_normal((n_out, n_in)) * scale).astype(np.float16))

    def norm(name):
        w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(N_EMBD)).astype(np.float32))

    mat("token_embd.weight", N_EMBD, n_vocab, 1.0)
    norm("output_norm.weight")
    if with_freqs:
        w.add_tensor("rope_freqs.weight", llama3_factors())
    for il in range(N_LAYER):
        p = f"blk.{il}."
        norm(p + "attn_norm.weight")
        # large q/k weights make attention peaky, so positions (rope) matter in the logits
        mat(p + "attn_q.weight", N_EMBD, N_HEAD * D_HEAD, 0.6)
        mat(p + "attn_k.weight", N_EMBD, N_KV * D_HEAD, 0.6)
        mat(p + "attn_v.weight", N_EMBD, N_KV * D_HEAD, 0.125)
        mat(p + "attn_output.weight", N_HEAD * D_HEAD, N_EMBD, 0.125)
        norm(p + "ffn_norm.weight")
        mat(p + "ffn_gate.weight", N_EMBD, N_FF, 0.125)
        mat(p + "ffn_up.weight", N_EMBD, N_FF, 0.125)
        mat(p + "ffn_down.weight", N_FF, N_EMBD, 1.0 / math.sqrt(N_FF))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def run(path, ids, flash):
    llm = llama_cpp.Llama(model_path=path, n_ctx=2048, n_batch=512, n_ubatch=512, n_threads=2, logits_all=True,
                          flash_attn=flash, verbose=False, seed=SEED)
    llm.eval(ids)
    logits = np.array(llm.scores[: len(ids)], dtype=np.float32)[POSITIONS]
    del llm
    return logits


def main():
    ids = [int(x) for x in np.random.default_rng(SEED + 1).integers(0, 256, N_IDS)]
    model = os.path.join(DATA, "rope_llama3.gguf")
    write_model(model, with_freqs=True)
    ref = run(model, ids, flash=False)
    fa = run(model, ids, flash=True)
    with tempfile.TemporaryDirectory() as tmp:
        plain = os.path.join(tmp, "plain.gguf")
        write_model(plain, with_freqs=False)
        unscaled = run(plain, ids, flash=False)
    meta = {
        "generator": "tests/golden/gen/gen_rope_scaling_parity.py",
        "llama_cpp_python": llama_cpp.__version__,
        "rope_factors": [round(float(x), 6) for x in llama3_factors()],
        "ids": ids,
        "positions": POSITIONS,
        "logits": [[round(float(x), 5) for x in row] for row in ref],
        "self_noise_max": round(float(np.abs(ref - fa).max()), 5),
        "unscaled_diff_max": round(float(np.abs(ref - unscaled).max()), 5),
        "unscaled_diff_per_position": [round(float(x), 5) for x in np.abs(ref - unscaled).max(axis=1)],
    }
    with open(os.path.join(DATA, "rope_llama3.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print({k: meta[k] for k in ("rope_factors", "self_noise_max", "unscaled_diff_max", "unscaled_diff_per_position")})


if __name__ == "__main__":
    main()
