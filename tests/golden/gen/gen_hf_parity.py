#!/usr/bin/env python3
"""Reference logits and greedy continuations from HF transformers for the safetensors parity
test (tests/unit/test_parity_hf.cpp), on the HF folders scripts/make-hf-models.sh makes.

Independent implementation: transformers (PyPI) LlamaForCausalLM, eager attention, computed in
float32 on CPU (the bf16 folder is upcast to float32 on load, so its bf16-rounded weights are
used exactly as our engine uses them). For each prompt:
  - the ids (the folder's tokenizer.json through `tokenizers`, no special tokens added),
  - at EVERY position: the top-8 logits (ids, values) and the logits of 8 fixed random ids,
  - the 32-token greedy continuation and the top-1/top-2 margin at each step.

Tolerance, derived: our engine keeps K/V in an f16 cache (f32 everywhere else). The same
prompts are run again with every k_proj/v_proj output rounded to float16 (forward hooks), and
the max / mean |logit difference| this alone causes is stored as "f16_kv_noise"; the test
allows a small multiple of it.

Families: llama (SmolLM2), qwen2 (Qwen2.5-Coder-0.5B, bf16 folder) and gemma3 (Gemma 3 270M,
with a ~700-token prompt past its 512-token sliding window); any folder make-hf-models.sh makes.

Usage (venv with torch + transformers: ~/.cache/kvzip/ref/venv-kvpress; versions recorded):
  python tests/golden/gen/gen_hf_parity.py [HF_DIR...]
  (default: smollm2-135m smollm2-135m-bf16 qwen2.5-coder-0.5b gemma3-270m)
Writes tests/golden/data/parity_hf_<name>.json.
"""
import json
import os
import sys

import numpy as np
import tokenizers
import torch
import transformers
from transformers import AutoModelForCausalLM

TOPK = 8
NRAND = 8
NGEN = 32
SEED = 4321

PROMPTS = [
    "The capital of France is",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Count from 1 to 60: 1, 2, 3, 4, 5,",
    "Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday, Monday, Tuesday,",
]


# Gemma 3 only (sliding window 512): a prompt of ~700 tokens, so the local layers' window
# start moves during the prompt and during the greedy continuation.
LONG_PROMPT = "A list of facts, one per line.\n" + "".join(
    f"Fact {i}: the {['red', 'blue', 'green', 'white'][i % 4]} box number {i} holds {3 * i + 1} marbles.\n"
    for i in range(1, 36)) + "Fact 36: the"


def prompts_for(model):
    return PROMPTS + ([LONG_PROMPT] if model.config.model_type.startswith("gemma3") else [])


def f16_kv_hooks(model):
    """Round what our cache stores to f16: k after k_norm where the family has one (qwen3,
    gemma3; our cache holds k after the norm and RoPE), else the k_proj output; v_proj."""
    def hook(_mod, _inp, out):
        return out.to(torch.float16).to(torch.float32)

    hs = []
    for layer in model.model.layers:
        a = layer.self_attn
        hs.append((a.k_norm if hasattr(a, "k_norm") else a.k_proj).register_forward_hook(hook))
        hs.append(a.v_proj.register_forward_hook(hook))
    return hs


@torch.no_grad()
def logits_all(model, ids):
    return model(torch.tensor([ids])).logits[0].double().numpy()


@torch.no_grad()
def greedy(model, ids):
    """32 greedy steps with the KV cache (float32); margin = top-1 minus top-2 raw logit."""
    r = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                       max_new_tokens=NGEN, do_sample=False, output_logits=True,
                       return_dict_in_generate=True, pad_token_id=0)
    out, margins = [], []
    for step in r.logits:
        lg = step[0].double().numpy()
        o = np.argsort(-lg)
        out.append(int(o[0]))
        margins.append(float(lg[o[0]] - lg[o[1]]))
    assert out == r.sequences[0, len(ids):].tolist()
    return out, margins


def main():
    root = os.path.expanduser(os.environ.get("KVZ_HF_DIR", "~/.cache/kvzip/hf"))
    dirs = sys.argv[1:] or [os.path.join(root, n) for n in ("smollm2-135m", "smollm2-135m-bf16", "qwen2.5-coder-0.5b", "gemma3-270m")]
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    for d in dirs:
        name = os.path.basename(os.path.normpath(d))
        tok = tokenizers.Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
        model.generation_config.eos_token_id = None  # always 32 steps, no logits processors
        n_vocab = model.config.vocab_size
        rng = np.random.default_rng(SEED)
        rand_ids = np.sort(rng.choice(n_vocab, NRAND, replace=False)).tolist()
        prompts = []
        noise_max = noise_mean = 0.0
        for text in prompts_for(model):
            ids = tok.encode(text, add_special_tokens=False).ids
            lg = logits_all(model, ids)
            hs = f16_kv_hooks(model)
            lg16 = logits_all(model, ids)
            for h in hs:
                h.remove()
            top = np.argsort(-lg, axis=1)[:, :TOPK]
            cols = np.concatenate([top, np.tile(rand_ids, (len(ids), 1))], axis=1)
            diff = np.abs(np.take_along_axis(lg, cols, 1) - np.take_along_axis(lg16, cols, 1))
            noise_max = max(noise_max, float(diff.max()))
            noise_mean = max(noise_mean, float(diff.mean()))
            g, m = greedy(model, ids)
            prompts.append({
                "text": text, "ids": ids,
                "top_ids": top.tolist(),
                "top_logits": [[round(float(x), 5) for x in lg[t, top[t]]] for t in range(len(ids))],
                "rand_logits": [[round(float(x), 5) for x in lg[t, rand_ids]] for t in range(len(ids))],
                "greedy": g, "margins": [round(x, 5) for x in m],
            })
        fx = {
            "generator": "tests/golden/gen/gen_hf_parity.py", "folder": name,
            "versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                         "tokenizers": tokenizers.__version__},
            "dtype": "float32 compute (weights as stored)", "attn_implementation": "eager", "seed": SEED,
            "topk": TOPK, "rand_ids": rand_ids,
            "f16_kv_noise": {"max": noise_max, "mean": noise_mean},
            "prompts": prompts,
        }
        out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", f"parity_hf_{name}.json")
        with open(out, "w") as f:
            json.dump(fx, f, separators=(",", ":"))
        print(f"{name}: {len(prompts)} prompts, f16 KV noise max {noise_max:.4f} mean {noise_mean:.5f} -> {out}")


if __name__ == "__main__":
    main()
