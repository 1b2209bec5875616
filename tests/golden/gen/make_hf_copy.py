#!/usr/bin/env python3
"""Hugging Face-format copy of a GGUF model, for kvzip's safetensors/tokenizer.json tests.

transformers (PyPI) dequantizes the GGUF weights (`from_pretrained(dir, gguf_file=...)`,
which also undoes llama.cpp's q/k row permutation, so the copy has HF's rotate-half
layout) and writes config.json, generation_config.json, model.safetensors, tokenizer.json
and tokenizer_config.json with `save_pretrained`. Nothing here is committed: the folders
live in ~/.cache/kvzip/hf/<name> (scripts/make-hf-models.sh drives this).

tokenizer.json is then replaced by the shape the model's ORIGINAL Hugging Face repository
ships (BPE with the original normalizer/pre-tokenizer, added tokens), rebuilt from the GGUF
vocabulary by gen_tokenizer_fixture.py's *_reference builders: transformers' GGUF
conversion writes a different tokenizer (a Unigram model for Gemma 3, a CodeLlama-style
byte-fallback BPE without the digit split for SmolLM2) that no real checkpoint ships.
tokenizer_config.json gets the GGUF's bos/eos tokens and chat template. The committed
tokenizer fixtures (tests/golden/data/tokenizer_*.json) hold exactly these tokenizers' ids.

Usage: python make_hf_copy.py MODEL.gguf OUT_DIR {float32,bfloat16}
       python make_hf_copy.py --tokenizer-only MODEL.gguf OUT_DIR
Versions used for the committed fixtures: transformers 5.2.0, torch 2.15.0, gguf 0.17.1,
tokenizers 0.22.2 (~/.cache/kvzip/ref/venv-kvpress).
"""
import os
import shutil
import sys


def write_tokenizer(gguf_path, out):
    """Original-shape tokenizer.json + tokenizer_config.json bos/eos/chat_template."""
    import json

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import gen_tokenizer_fixture as g

    f = g.read_gguf(gguf_path)
    arch = g.gguf.GGUFReader(gguf_path).fields["general.architecture"].contents()
    build = {"llama": g.smollm2_reference, "qwen2": g.qwen2_reference, "gemma3": g.gemma3_reference}[arch]
    build(f).save(os.path.join(out, "tokenizer.json"))
    tokens = list(f["tokenizer.ggml.tokens"])
    cpath = os.path.join(out, "tokenizer_config.json")
    cfg = json.load(open(cpath)) if os.path.exists(cpath) else {}
    for key, name in (("bos_token", "tokenizer.ggml.bos_token_id"), ("eos_token", "tokenizer.ggml.eos_token_id")):
        if name in f:
            cfg[key] = tokens[int(f[name])]
            cfg[key + "_id"] = int(f[name])
    cfg["add_bos_token"] = bool(f.get("tokenizer.ggml.add_bos_token", False))
    tmpl = f.get("tokenizer.chat_template")
    jinja = os.path.join(out, "chat_template.jinja")
    if os.path.exists(jinja):
        os.remove(jinja)
    if tmpl:
        cfg["chat_template"] = tmpl
    else:
        cfg.pop("chat_template", None)
    json.dump(cfg, open(cpath, "w"), indent=2, ensure_ascii=False)
    open(os.path.join(out, "kvzip_tokenizer.txt"), "w").write(
        "tokenizer.json rebuilt by tests/golden/gen/make_hf_copy.py (original tokenizer.json shape)\n")


def main():
    if sys.argv[1] == "--tokenizer-only":
        write_tokenizer(sys.argv[2], sys.argv[3])
        return
    gguf_path, out, dtype_name = sys.argv[1], sys.argv[2], sys.argv[3]
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype_name]
    d, name = os.path.split(os.path.abspath(gguf_path))
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=dtype)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    write_tokenizer(os.path.abspath(gguf_path), tmp)
    # Written last and atomically: a folder with config.json is complete.
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    print(out)


if __name__ == "__main__":
    main()
