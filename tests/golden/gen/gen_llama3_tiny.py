#!/usr/bin/env python3
"""A tiny random-weight Llama with Llama 3.x rope scaling, as an HF folder, and its reference logits.

No Llama 3.x checkpoint ships in a registry package, so the rope-scaling path of the HF loader
(config.json rope_scaling -> per-frequency divisors) is checked on a synthetic model:
LlamaConfig(2 layers, hidden 64, 4 heads, 2 KV heads, head_dim 16, intermediate 96, rope_theta
500000, rope_scaling llama3 with factor 8, low_freq_factor 1, high_freq_factor 4 and an original
context of 64 tokens, so that with head_dim 16 the frequencies fall in all three bands), the
SmolLM2 tokenizer's vocabulary, seed 20251124. Weights redrawn N(0, 0.1), norms 1 + N(0, 0.2)
(transformers' init would leave every logit near zero).

Outputs (nothing of the model is committed; scripts/make-hf-models.sh runs this):
  ~/.cache/kvzip/hf/llama3-tiny/           save_pretrained (f32) + the SmolLM2 tokenizer files
  tests/golden/data/parity_llama3_tiny.json (with --fixture): transformers float32 eager logits,
      top-8 + 8 random ids per position, the f16-KV noise, and how far the logits move when the
      same weights run without rope scaling ("unscaled_delta": what the test would miss).

Usage: ~/.cache/kvzip/ref/venv-kvpress/bin/python tests/golden/gen/gen_llama3_tiny.py [--fixture]
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

SEED = 20251124
HF = os.path.expanduser(os.environ.get("KVZ_HF_DIR", "~/.cache/kvzip/hf"))
OUT = os.path.join(HF, "llama3-tiny")
TOK_SRC = os.path.join(HF, "smollm2-135m")
ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64}
PROMPTS = ["The capital of France is",
           "Counting slowly: " + ", ".join(str(i) for i in range(1, 121)) + "."]
TOPK, NRAND = 8, 8


def config(rope_scaling):
    return LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
                       rms_norm_eps=1e-5, rope_theta=500000.0, rope_scaling=rope_scaling, tie_word_embeddings=True,
                       bos_token_id=1, eos_token_id=2)


def make_model(rope_scaling=ROPE):
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config(rope_scaling)).eval()
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.copy_(1.0 + 0.2 * torch.randn_like(p) if p.dim() == 1 else 0.1 * torch.randn_like(p))
    model.config._attn_implementation = "eager"
    return model


@torch.no_grad()
def logits_all(model, ids):
    return model(torch.tensor([ids])).logits[0].double().numpy()


def write_fixture(model):
    import tokenizers

    tok = tokenizers.Tokenizer.from_file(os.path.join(OUT, "tokenizer.json"))
    plain = make_model(rope_scaling=None)  # the same draws, no scaling
    rng = np.random.default_rng(SEED)
    rand_ids = np.sort(rng.choice(model.config.vocab_size, NRAND, replace=False)).tolist()
    prompts, nmax, unscaled = [], 0.0, 0.0
    for text in PROMPTS:
        ids = tok.encode(text, add_special_tokens=False).ids
        lg = logits_all(model, ids)
        unscaled = max(unscaled, float(np.abs(lg - logits_all(plain, ids)).max()))
        hs = [getattr(l.self_attn, n).register_forward_hook(lambda m, i, o: o.half().float())
              for l in model.model.layers for n in ("k_proj", "v_proj")]
        lg16 = logits_all(model, ids)
        for h in hs:
            h.remove()
        top = np.argsort(-lg, axis=1)[:, :TOPK]
        cols = np.concatenate([top, np.tile(rand_ids, (len(ids), 1))], axis=1)
        nmax = max(nmax, float(np.abs(np.take_along_axis(lg, cols, 1) - np.take_along_axis(lg16, cols, 1)).max()))
        prompts.append({"text": text, "ids": ids, "top_ids": top.tolist(),
                        "top_logits": [[round(float(x), 6) for x in lg[t, top[t]]] for t in range(len(ids))],
                        "rand_logits": [[round(float(x), 6) for x in lg[t, rand_ids]] for t in range(len(ids))]})
    fx = {"generator": "tests/golden/gen/gen_llama3_tiny.py", "seed": SEED, "rope_scaling": ROPE,
          "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
          "attn_implementation": "eager", "topk": TOPK, "rand_ids": rand_ids,
          "f16_kv_noise": {"max": nmax}, "unscaled_delta": unscaled, "prompts": prompts}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "parity_llama3_tiny.json")
    with open(path, "w") as f:
        json.dump(fx, f, separators=(",", ":"))
    print(f"llama3-tiny fixture: f16 KV noise max {nmax:.2e}, without scaling the logits move {unscaled:.3f} -> {path}")


def main():
    model = make_model()
    tmp = OUT + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOK_SRC, f), tmp)
    shutil.rmtree(OUT, ignore_errors=True)
    os.rename(tmp, OUT)
    if "--fixture" in sys.argv:
        write_fixture(model)


if __name__ == "__main__":
    main()
