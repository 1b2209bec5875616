#!/usr/bin/env python3
"""Writes the hostile-input corpus under tests/hostile/ (docs/reliability.md, "Hostile inputs").

Every case is a folder holding a one-line README, `<what it is> -- expect: <error substring>`,
and either
  model.gguf  a whole tiny GGUF with one bad hyper-parameter, or
  *.json      the Hugging Face files that differ from base-hf/ (a tiny valid HF folder);
              the test copies base-hf/ and lays the case's files over it.
Folders named base-* are valid models: they must load (README: `-- expect: loads`).
tests/unit/test_hostile_inputs.cpp loads every folder and asserts a kvz::Error containing
the README's substring.

Standard library only, deterministic output. To add a case: add a line to GGUF_CASES or
HF_CASES, run `python3 tests/hostile/make.py`, commit the new folder.
"""
import json
import math
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# Tiny llama: 1 layer, n_embd 16, 2 heads of 8, 1 KV head, ffn 32, context 64; the vocabulary
# is the 256 GPT-2 byte symbols, "ab" (one merge) and two control tokens.
N_EMBD, N_HEAD, N_HEAD_KV, D_HEAD, N_FF, N_CTX = 16, 2, 1, 8, 32, 64


def byte_symbols():
    cps, n = [], 0
    for b in range(256):
        printable = 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF
        cps.append(b if printable else 256 + n)
        n += 0 if printable else 1
    return [chr(c) for c in cps]


TOKENS = byte_symbols() + ["ab", "<|im_start|>", "<|im_end|>"]
N_VOCAB = len(TOKENS)
BOS, EOS = N_VOCAB - 2, N_VOCAB - 1


def weights(n, seed):
    """n small deterministic values, exact in f16; periodic, so the files compress in git."""
    return [(((i + seed) * 7) % 13 - 6) / 32.0 for i in range(n)]


def f16_bytes(vals):
    return struct.pack("<%de" % len(vals), *vals)


def f32_bytes(vals):
    return struct.pack("<%df" % len(vals), *vals)


# ------------------------------------------------------------------------------------ GGUF
U32, I32, F32, BOOL, STRING, ARRAY = 4, 5, 6, 7, 8, 9
GGML_F32, GGML_F16 = 0, 1


def gguf_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def gguf_value(t, v):
    if t == U32:
        return struct.pack("<I", v)
    if t == F32:
        return struct.pack("<f", v)
    if t == STRING:
        return gguf_str(v)
    if t == ARRAY:
        et, items = v
        out = struct.pack("<IQ", et, len(items))
        return out + b"".join(gguf_value(et, x) if et != I32 else struct.pack("<i", x) for x in items)
    raise ValueError(t)


def gguf_file(kv, tensors):
    """kv: [(key, type, value)]; tensors: [(name, ggml type, shape with ne0 first, bytes)]."""
    align = 32
    out = struct.pack("<IIQQ", 0x46554747, 3, len(tensors), len(kv))
    for k, t, v in kv:
        out += gguf_str(k) + struct.pack("<I", t) + gguf_value(t, v)
    off = 0
    for name, t, shape, data in tensors:
        out += gguf_str(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
        out += struct.pack("<IQ", t, off)
        off += (len(data) + align - 1) // align * align
    out += b"\0" * (-len(out) % align)
    for _, _, _, data in tensors:
        out += data + b"\0" * (-len(data) % align)
    return out


def gguf_model(arch="llama", n_head=N_HEAD, n_head_kv=N_HEAD_KV, set_keys=None):
    """A valid tiny GGUF; set_keys {key: (type, value)} replaces or adds metadata. gemma3
    has 2 layers, local then global (sliding_window_pattern 2)."""
    a = arch + "."
    n_layer = 2 if arch == "gemma3" else 1
    d_head = D_HEAD
    kv = {
        "general.architecture": (STRING, arch),
        "general.name": (STRING, "hostile-tiny"),
        a + "block_count": (U32, n_layer),
        a + "context_length": (U32, N_CTX),
        a + "embedding_length": (U32, N_EMBD),
        a + "feed_forward_length": (U32, N_FF),
        a + "attention.head_count": (U32, n_head),
        a + "attention.head_count_kv": (U32, n_head_kv),
        a + "attention.key_length": (U32, d_head),
        a + "rope.freq_base": (F32, 10000.0),
        a + "attention.layer_norm_rms_epsilon": (F32, 1e-5),
        a + "rope.dimension_count": (U32, d_head),
        "tokenizer.ggml.model": (STRING, "gpt2"),
        "tokenizer.ggml.pre": (STRING, "default"),
        "tokenizer.ggml.tokens": (ARRAY, (STRING, TOKENS)),
        "tokenizer.ggml.token_type": (ARRAY, (I32, [1] * (N_VOCAB - 2) + [3, 3])),
        "tokenizer.ggml.merges": (ARRAY, (STRING, ["a b"])),
        "tokenizer.ggml.bos_token_id": (U32, BOS),
        "tokenizer.ggml.eos_token_id": (U32, EOS),
    }
    if arch == "gemma3":
        kv[a + "attention.sliding_window"] = (U32, 8)
        kv[a + "attention.sliding_window_pattern"] = (U32, 2)
        kv[a + "rope.freq_base_swa"] = (F32, 10000.0)
    kv.update(set_keys or {})
    dq, dkv = n_head * d_head, n_head_kv * d_head
    t = [("token_embd.weight", GGML_F16, [N_EMBD, N_VOCAB], f16_bytes(weights(N_EMBD * N_VOCAB, 1))),
         ("output_norm.weight", GGML_F32, [N_EMBD], f32_bytes([1.0] * N_EMBD))]
    mats = [("attn_q", N_EMBD, dq), ("attn_k", N_EMBD, dkv), ("attn_v", N_EMBD, dkv), ("attn_output", dq, N_EMBD),
            ("ffn_gate", N_EMBD, N_FF), ("ffn_up", N_EMBD, N_FF), ("ffn_down", N_FF, N_EMBD)]
    norms = [("attn_norm", N_EMBD), ("ffn_norm", N_EMBD)]
    if arch == "gemma3":
        norms += [("attn_q_norm", d_head), ("attn_k_norm", d_head), ("post_attention_norm", N_EMBD),
                  ("post_ffw_norm", N_EMBD)]
    for il in range(n_layer):
        p = f"blk.{il}."
        for name, n in norms:
            t.append((p + name + ".weight", GGML_F32, [n], f32_bytes([1.0] * n)))
        for i, (name, n_in, n_out) in enumerate(mats):
            t.append((p + name + ".weight", GGML_F16, [n_in, n_out], f16_bytes(weights(n_in * n_out, i + 2))))
    return gguf_file([(k, ty, v) for k, (ty, v) in kv.items()], t)


# -------------------------------------------------------------------------------------- HF
def safetensors_file(tensors):
    """tensors: [(name, dtype, shape, bytes)]."""
    header, off = {}, 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-(8 + len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(t[3] for t in tensors)


def hf_base():
    """{file name: bytes or JSON value} of a valid tiny HF llama folder."""
    dq, dkv = N_HEAD * D_HEAD, N_HEAD_KV * D_HEAD
    p = "model.layers.0."
    mats = [("self_attn.q_proj", N_EMBD, dq), ("self_attn.k_proj", N_EMBD, dkv), ("self_attn.v_proj", N_EMBD, dkv),
            ("self_attn.o_proj", dq, N_EMBD), ("mlp.gate_proj", N_EMBD, N_FF), ("mlp.up_proj", N_EMBD, N_FF),
            ("mlp.down_proj", N_FF, N_EMBD)]
    t = [("model.embed_tokens.weight", "F16", [N_VOCAB, N_EMBD], f16_bytes(weights(N_EMBD * N_VOCAB, 1))),
         ("model.norm.weight", "F32", [N_EMBD], f32_bytes([1.0] * N_EMBD)),
         (p + "input_layernorm.weight", "F32", [N_EMBD], f32_bytes([1.0] * N_EMBD)),
         (p + "post_attention_layernorm.weight", "F32", [N_EMBD], f32_bytes([1.0] * N_EMBD))]
    for i, (name, n_in, n_out) in enumerate(mats):
        t.append((p + name + ".weight", "F16", [n_out, n_in], f16_bytes(weights(n_in * n_out, i + 2))))
    config = {"model_type": "llama", "num_hidden_layers": 1, "hidden_size": N_EMBD, "num_attention_heads": N_HEAD,
              "num_key_value_heads": N_HEAD_KV, "head_dim": D_HEAD, "intermediate_size": N_FF,
              "max_position_embeddings": N_CTX, "rms_norm_eps": 1e-5,
              "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}, "vocab_size": N_VOCAB,
              "tie_word_embeddings": True, "use_sliding_window": False}
    vocab = {tok: i for i, tok in enumerate(TOKENS[:-2])}
    tokenizer = {
        "added_tokens": [{"id": BOS, "content": TOKENS[BOS], "special": True},
                         {"id": EOS, "content": TOKENS[EOS], "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "byte_fallback": False, "vocab": vocab,
                  "merges": [["a", "b"]]},
    }
    tokenizer_config = {"bos_token": TOKENS[BOS], "eos_token": {"content": TOKENS[EOS]}, "add_bos_token": False,
                        "chat_template": "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"}
    generation_config = {"bos_token_id": BOS, "eos_token_id": [EOS]}
    return {"model.safetensors": safetensors_file(t), "config.json": config, "tokenizer.json": tokenizer,
            "tokenizer_config.json": tokenizer_config, "generation_config.json": generation_config}


# ----------------------------------------------------------------------------------- cases
NAN, INF = float("nan"), float("inf")
EPS, BASE = "llama.attention.layer_norm_rms_epsilon", "llama.rope.freq_base"

# (folder, what it is, expected substring, gguf_model arguments)
GGUF_CASES = [
    ("gguf-rms-eps-nan", "rms_norm_eps is NaN", f"model.gguf: metadata key '{EPS}' = nan, expected a finite number > 0",
     {"set_keys": {EPS: (F32, NAN)}}),
    ("gguf-rms-eps-negative", "rms_norm_eps is negative",
     f"model.gguf: metadata key '{EPS}' = -0.5, expected a finite number > 0", {"set_keys": {EPS: (F32, -0.5)}}),
    ("gguf-rms-eps-zero", "rms_norm_eps is 0", f"model.gguf: metadata key '{EPS}' = 0, expected a finite number > 0",
     {"set_keys": {EPS: (F32, 0.0)}}),
    ("gguf-rope-base-zero", "rope.freq_base is 0",
     f"model.gguf: metadata key '{BASE}' = 0, expected a finite number > 1", {"set_keys": {BASE: (F32, 0.0)}}),
    ("gguf-rope-base-inf", "rope.freq_base is infinite",
     f"model.gguf: metadata key '{BASE}' = inf, expected a finite number > 1", {"set_keys": {BASE: (F32, INF)}}),
    ("gguf-rope-base-nan", "rope.freq_base is NaN",
     f"model.gguf: metadata key '{BASE}' = nan, expected a finite number > 1", {"set_keys": {BASE: (F32, NAN)}}),
    ("gguf-rope-linear-factor-inf", "linear rope scaling with an infinite factor",
     "model.gguf: metadata key 'llama.rope.scaling.factor' = inf, expected a finite number > 0",
     {"set_keys": {"llama.rope.scaling.type": (STRING, "linear"), "llama.rope.scaling.factor": (F32, INF)}}),
    ("gguf-heads-not-multiple", "3 attention heads over 2 KV heads",
     "model.gguf: metadata key 'llama.attention.head_count' = 3 is not a multiple of the 2 KV heads",
     {"n_head": 3, "n_head_kv": 2}),
    ("gguf-context-zero", "context_length is 0",
     "model.gguf: metadata key 'llama.context_length' = 0 is outside [1, 16777216]",
     {"set_keys": {"llama.context_length": (U32, 0)}}),
    ("gguf-bos-out-of-range", "bos token id one past the vocabulary",
     f"model.gguf: tokenizer.ggml.bos_token_id = {N_VOCAB} is out of range for a vocabulary of {N_VOCAB} tokens",
     {"set_keys": {"tokenizer.ggml.bos_token_id": (U32, N_VOCAB)}}),
    ("gguf-gemma3-window-zero", "gemma3 with a sliding window of 0 positions",
     "model.gguf: metadata key 'gemma3.attention.sliding_window' = 0, expected a positive window",
     {"arch": "gemma3", "set_keys": {"gemma3.attention.sliding_window": (U32, 0)}}),
    ("gguf-gemma3-swa-base-nan", "gemma3 with a NaN sliding-window rope base",
     "model.gguf: metadata key 'gemma3.rope.freq_base_swa' = nan, expected a finite number > 1",
     {"arch": "gemma3", "set_keys": {"gemma3.rope.freq_base_swa": (F32, NAN)}}),
    ("gguf-gemma3-softcap-inf", "gemma3 with an infinite final logit softcap",
     "model.gguf: metadata key 'gemma3.final_logit_softcapping' = inf, expected a finite number >= 0",
     {"arch": "gemma3", "set_keys": {"gemma3.final_logit_softcapping": (F32, INF)}}),
]


def origin(file, key, gguf_key):
    return f'{file}: "{key}" (metadata key \'{gguf_key}\')'


# (folder, what it is, file, JSON pointer ("" = the whole file), new value, expected substring)
HF_CASES = [
    ("hf-config-model-type-int", "config.json model_type is a number", "config.json", "/model_type", 5,
     'config.json: "model_type" is an integer (5), expected a string'),
    ("hf-config-use-sliding-window-string", "config.json use_sliding_window is a string", "config.json",
     "/use_sliding_window", "yes", 'config.json: "use_sliding_window" is a string ("yes"), expected a boolean'),
    ("hf-config-rope-parameters-string", "config.json rope_parameters is a string", "config.json",
     "/rope_parameters", "fast", 'config.json: "rope_parameters" is a string ("fast"), expected an object'),
    ("hf-config-rope-scaling-list", "config.json rope_scaling is a list", "config.json", "/rope_scaling", [8.0],
     'config.json: "rope_scaling" is an array ([8.0]), expected an object'),
    ("hf-config-rope-factor-string", "config.json rope_scaling.factor is a string", "config.json", "/rope_scaling",
     {"rope_type": "linear", "factor": "x"},
     'config.json: "rope_scaling.factor" is a string ("x"), expected a finite number'),
    ("hf-config-layer-types-ints", "config.json layer_types holds numbers", "config.json", "/layer_types", [1],
     'config.json: "layer_types[0]" is an integer (1), expected a string'),
    ("hf-config-tie-embeddings-string", "config.json tie_word_embeddings is a string", "config.json",
     "/tie_word_embeddings", "true", 'config.json: "tie_word_embeddings" is a string ("true"), expected a boolean'),
    ("hf-config-text-config-int", "config.json text_config is a number", "config.json", "/text_config", 3,
     'config.json: "text_config" is an integer (3), expected an object'),
    ("hf-config-layers-list", "config.json num_hidden_layers is a list", "config.json", "/num_hidden_layers", [1],
     'config.json: "num_hidden_layers" is an array ([1]), expected a number, boolean or string'),
    ("hf-config-rms-eps-negative", "config.json rms_norm_eps is negative", "config.json", "/rms_norm_eps", -1e-5,
     origin("config.json", "rms_norm_eps", "llama.attention.layer_norm_rms_epsilon") +
     " = -1e-05, expected a finite number > 0"),
    ("hf-config-rope-theta-zero", "config.json rope_parameters.rope_theta is 0", "config.json",
     "/rope_parameters/rope_theta", 0.0,
     origin("config.json", "rope_parameters.rope_theta", "llama.rope.freq_base") + " = 0, expected a finite number > 1"),
    ("hf-config-rope-theta-overflow", "config.json rope_theta is 1e999 (overflows a double)", "config.json",
     "/rope_theta", "1e999", "config.json: not valid JSON"),
    ("hf-tokenizer-dropout-string", "tokenizer.json model.dropout is a string", "tokenizer.json", "/model/dropout",
     "x", 'tokenizer.json: "model.dropout" is a string ("x"), expected a finite number'),
    ("hf-tokenizer-byte-fallback-int", "tokenizer.json model.byte_fallback is a number", "tokenizer.json",
     "/model/byte_fallback", 1, 'tokenizer.json: "model.byte_fallback" is an integer (1), expected a boolean'),
    ("hf-tokenizer-vocab-list", "tokenizer.json model.vocab is a list", "tokenizer.json", "/model/vocab", ["a"],
     'tokenizer.json: "model.vocab" is an array (["a"]), expected an object'),
    ("hf-tokenizer-added-content-int", "tokenizer.json added token content is a number", "tokenizer.json",
     "/added_tokens/0/content", 7, 'tokenizer.json: "added_tokens[0].content" is an integer (7), expected a string'),
    ("hf-tokenizer-prefix-space-string", "tokenizer.json ByteLevel add_prefix_space is a string", "tokenizer.json",
     "/pre_tokenizer/add_prefix_space", "no",
     'tokenizer.json: "pre_tokenizer.add_prefix_space" is a string ("no"), expected a boolean'),
    ("hf-tokconfig-chat-template-ints", "tokenizer_config.json chat_template is a list of numbers",
     "tokenizer_config.json", "/chat_template", [1, 2],
     'tokenizer_config.json: "chat_template[0]" is an integer (1), expected an object'),
    ("hf-tokconfig-add-bos-string", "tokenizer_config.json add_bos_token is a string", "tokenizer_config.json",
     "/add_bos_token", "yes", 'tokenizer_config.json: "add_bos_token" is a string ("yes"), expected a boolean'),
    ("hf-tokconfig-eos-token-int", "tokenizer_config.json eos_token is a number", "tokenizer_config.json",
     "/eos_token", 5,
     'tokenizer_config.json: "eos_token" is an integer (5), expected a string or an object with "content"'),
    ("hf-genconfig-array", "generation_config.json is an array", "generation_config.json", "", [1, 2],
     "generation_config.json: the top-level value is an array ([1,2]), expected an object"),
    ("hf-genconfig-eos-string", "generation_config.json eos_token_id is a string", "generation_config.json",
     "/eos_token_id", "2", 'generation_config.json: "eos_token_id" is a string ("2"), expected an integer'),
    ("hf-genconfig-eos-out-of-range", "generation_config.json eos_token_id past the embedding rows",
     "generation_config.json", "/eos_token_id", 5000,
     f'end-of-generation id 5000 (generation_config.json "eos_token_id") is outside the vocabulary [0, {N_VOCAB})'),
]


def dump_json(v):
    return json.dumps(v, indent=1, ensure_ascii=False) + "\n"


def set_pointer(doc, pointer, value):
    if pointer == "":
        return value
    keys = pointer.strip("/").split("/")
    node = doc
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


def write_case(name, what, expect, files):
    d = os.path.join(HERE, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    with open(os.path.join(d, "README"), "w") as f:
        f.write(f"{what} -- expect: {expect}\n")
    for fn, content in files.items():
        with open(os.path.join(d, fn), "wb") as f:
            f.write(content if isinstance(content, bytes) else dump_json(content).encode())


def main():
    for d in os.listdir(HERE):  # a case removed here disappears from the corpus too
        if os.path.isdir(os.path.join(HERE, d)) and (d.startswith(("base-", "gguf-", "hf-"))):
            shutil.rmtree(os.path.join(HERE, d))
    write_case("base-gguf-llama", "valid tiny llama GGUF", "loads", {"model.gguf": gguf_model()})
    write_case("base-gguf-gemma3", "valid tiny gemma3 GGUF (layer 0 local, layer 1 global)", "loads",
               {"model.gguf": gguf_model(arch="gemma3")})
    base = hf_base()
    write_case("base-hf", "valid tiny llama HF folder, the base the hf-* cases overlay", "loads", base)
    for name, what, expect, args in GGUF_CASES:
        write_case(name, what, expect, {"model.gguf": gguf_model(**args)})
    for name, what, fn, pointer, value, expect in HF_CASES:
        doc = json.loads(json.dumps(base[fn]))
        if value == "1e999":  # JSON text that Python's json module will not write
            text = dump_json(set_pointer(doc, pointer, "@@")).replace('"@@"', "1e999")
            write_case(name, what, expect, {fn: text.encode()})
        else:
            write_case(name, what, expect, {fn: set_pointer(doc, pointer, value)})


if __name__ == "__main__":
    main()
