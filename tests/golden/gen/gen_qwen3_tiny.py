#!/usr/bin/env python3
"""A tiny random-weight Qwen3 made with transformers, in both formats, and its reference logits.

No real Qwen3 checkpoint is available here, so the architecture is checked on a synthetic one:
Qwen3Config(2 layers, hidden 64, 4 heads, 2 KV heads, head_dim 16, intermediate 96) with the
SmolLM2 tokenizer's vocabulary (49,152 tokens), seed 20251123. transformers' init (std 0.02)
would leave every logit near zero, so after init every matrix is redrawn N(0, 0.1) and every
norm weight (incl. q_norm/k_norm, which would otherwise be all ones and hide a missing norm)
1 + N(0, 0.2).

Outputs (nothing of the model is committed; scripts/make-hf-models.sh runs this):
  ~/.cache/kvzip/hf/qwen3-tiny/          save_pretrained (model.safetensors f32, config.json)
                                          + the SmolLM2 folder's tokenizer files
  ~/.cache/kvzip/hf/qwen3-tiny.gguf      the same weights written by the `gguf` package's
                                          GGUFWriter with llama.cpp's qwen3 keys and names
                                          (q/k NOT permuted: llama.cpp's qwen3 uses NeoX RoPE)
  tests/golden/data/parity_qwen3_tiny.json (with --fixture): transformers float32 eager logits,
                                          top-8 + 8 random ids at every position, f16-KV noise.

Usage: ~/.cache/kvzip/ref/venv-kvpress/bin/python tests/golden/gen/gen_qwen3_tiny.py [--fixture]
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from transformers import Qwen3Config, Qwen3ForCausalLM

SEED = 20251123
HF = os.path.expanduser(os.environ.get("KVZ_HF_DIR", "~/.cache/kvzip/hf"))
OUT = os.path.join(HF, "qwen3-tiny")
TOK_SRC = os.path.join(HF, "smollm2-135m")
SMOL_GGUF = os.path.expanduser(os.path.join(os.environ.get("KVZ_MODELS_DIR", "~/.cache/kvzip/models"),
                                            "smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf"))
PROMPTS = ["The capital of France is", "def f(x):\n    return x * 2\n\nprint(f(21))",
           "Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday, Monday,"]
TOPK, NRAND = 8, 8


def make_model():
    torch.manual_seed(SEED)
    cfg = Qwen3Config(vocab_size=49152, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
                      rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
                      bos_token_id=1, eos_token_id=2)
    model = Qwen3ForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.1 * torch.randn_like(p))
    return model


def write_gguf(model, path):
    import gguf

    cfg = model.config
    r = gguf.GGUFReader(SMOL_GGUF)
    w = gguf.GGUFWriter(path, "qwen3")
    w.add_name("qwen3-tiny")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_rope_freq_base(1000000.0)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(r.fields["tokenizer.ggml.tokens"].contents())
    w.add_token_types(r.fields["tokenizer.ggml.token_type"].contents())
    w.add_token_merges(r.fields["tokenizer.ggml.merges"].contents())
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    layer = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
             "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for name, p in model.state_dict().items():
        if name == "lm_head.weight":
            continue  # tied
        if name in names:
            gname = names[name]
        else:
            _, _, il, rest = name.split(".", 3)
            gname = f"blk.{il}.{layer[rest.rsplit('.', 1)[0]]}.weight"
        w.add_tensor(gname, p.detach().numpy().astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@torch.no_grad()
def logits_all(model, ids):
    return model(torch.tensor([ids])).logits[0].double().numpy()


def write_fixture(model):
    import tokenizers

    tok = tokenizers.Tokenizer.from_file(os.path.join(OUT, "tokenizer.json"))
    rng = np.random.default_rng(SEED)
    rand_ids = np.sort(rng.choice(model.config.vocab_size, NRAND, replace=False)).tolist()
    prompts, nmax, nmean = [], 0.0, 0.0
    for text in PROMPTS:
        ids = tok.encode(text, add_special_tokens=False).ids
        lg = logits_all(model, ids)
        hs = [getattr(l.self_attn, n).register_forward_hook(lambda m, i, o: o.half().float())
              for l in model.model.layers for n in ("k_norm", "v_proj")]
        lg16 = logits_all(model, ids)
        for h in hs:
            h.remove()
        top = np.argsort(-lg, axis=1)[:, :TOPK]
        cols = np.concatenate([top, np.tile(rand_ids, (len(ids), 1))], axis=1)
        d = np.abs(np.take_along_axis(lg, cols, 1) - np.take_along_axis(lg16, cols, 1))
        nmax, nmean = max(nmax, float(d.max())), max(nmean, float(d.mean()))
        prompts.append({"text": text, "ids": ids, "top_ids": top.tolist(),
                        "top_logits": [[round(float(x), 6) for x in lg[t, top[t]]] for t in range(len(ids))],
                        "rand_logits": [[round(float(x), 6) for x in lg[t, rand_ids]] for t in range(len(ids))]})
    fx = {"generator": "tests/golden/gen/gen_qwen3_tiny.py", "seed": SEED,
          "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
          "attn_implementation": "eager", "topk": TOPK, "rand_ids": rand_ids,
          # k is rounded after k_norm (our cache holds post-norm, post-RoPE k in f16).
          "f16_kv_noise": {"max": nmax, "mean": nmean}, "prompts": prompts}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "parity_qwen3_tiny.json")
    with open(path, "w") as f:
        json.dump(fx, f, separators=(",", ":"))
    print(f"qwen3-tiny fixture: f16 KV noise max {nmax:.2e} mean {nmean:.2e} -> {path}")


def main():
    model = make_model()
    model.config._attn_implementation = "eager"
    tmp = OUT + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOK_SRC, f), tmp)
    write_gguf(model, OUT + ".gguf")
    shutil.rmtree(OUT, ignore_errors=True)
    os.rename(tmp, OUT)
    if "--fixture" in sys.argv:
        write_fixture(model)


if __name__ == "__main__":
    main()
