#!/usr/bin/env python3
"""Writes the fuzz seed corpora fuzz/corpus/<target>/ from real files, cut down to a few KB.

Sources (each seed that cannot be made because its source is absent is skipped, saying so):
  ~/.cache/kvzip/models/*/*.gguf   GGUF headers: every metadata key, arrays cut to their first
                                   256 entries, the whole tensor table, no tensor data
  ~/.cache/kvzip/hf/<name>/        config.json, tokenizer_config.json, generation_config.json,
                                   tokenizer.json (cut: the first 512 ids, the merges among
                                   them, the added tokens), model.safetensors (cut: its header
                                   rewritten for the first 1-D tensors, with their real bytes)
  tests/hostile/base-*             the valid tiny models (whole GGUF, HF folder)
  tests/golden/data/chat_templates.json   the four families' real chat templates
  --context FILE / --head-scores FILE     a context saved by `kvzip ask --save` and a file of
                                   `kvzip score-heads`: their payload (decompressed with the
                                   zstd command) behind the targets' selector bytes
and, for the context, head-score and request targets, a few inputs built here in the
formats of src/io/context_store.cpp, src/io/head_scores_file.cpp and the OpenAI API.

Standard library only (plus the zstd command for --context). Deterministic for the same
sources. Usage: python3 fuzz/make_corpus.py [--context FILE] [--head-scores FILE]
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HOME = os.path.expanduser("~")
MODELS = os.path.join(HOME, ".cache", "kvzip", "models")
HF = os.path.join(HOME, ".cache", "kvzip", "hf")
FINGERPRINT = 0x6B767A66757A7A31  # the fuzz targets' model fingerprint (fuzz/context.cpp)


def out_dir(target):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    return d


WRITTEN = {}  # target -> contents written, so that equal seeds are written once


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    if data in WRITTEN.setdefault(target, set()):
        return
    WRITTEN[target].add(data)
    with open(os.path.join(out_dir(target), name), "wb") as f:
        f.write(data)


def skip(what):
    print(f"make_corpus.py: skipped {what} (source absent)", file=sys.stderr)


# ------------------------------------------------------------------------------------ GGUF
SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q", 11: "<q", 12: "<d"}


class Cur:
    def __init__(self, b):
        self.b, self.p = b, 0

    def take(self, n):
        s = self.b[self.p:self.p + n]
        self.p += n
        return s

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def u64(self):
        return struct.unpack("<Q", self.take(8))[0]

    def string(self):
        return self.take(self.u64())


def read_value(c, t):
    """The raw bytes of one value of type t; arrays cut to 256 elements."""
    if t in SCALAR:
        return c.take(struct.calcsize(SCALAR[t]))
    if t == 8:
        s = c.string()
        return struct.pack("<Q", len(s)) + s
    if t == 9:
        et, n = c.u32(), c.u64()
        items = [read_value(c, et) for _ in range(n)]
        kept = items[:256]
        return struct.pack("<IQ", et, len(kept)) + b"".join(kept)
    raise ValueError(f"GGUF value type {t}")


def gguf_header(path):
    """A GGUF's header with arrays cut and no tensor data (the file ends after the table)."""
    with open(path, "rb") as f:
        head = f.read(64 << 20)  # the header of the models used here fits well within this
    c = Cur(head)
    magic, version, n_t, n_kv = c.take(4), c.u32(), c.u64(), c.u64()
    out = [magic, struct.pack("<IQQ", version, n_t, n_kv)]
    for _ in range(n_kv):
        key = c.string()
        t = c.u32()
        out.append(struct.pack("<Q", len(key)) + key + struct.pack("<I", t) + read_value(c, t))
    for _ in range(n_t):
        name = c.string()
        nd = c.u32()
        dims = c.take(8 * nd)
        out.append(struct.pack("<Q", len(name)) + name + struct.pack("<I", nd) + dims + c.take(4 + 8))
    return b"".join(out)


def make_gguf():
    found = False
    if os.path.isdir(MODELS):
        for name in sorted(os.listdir(MODELS)):
            d = os.path.join(MODELS, name)
            for fn in sorted(os.listdir(d)) if os.path.isdir(d) else []:
                if fn.endswith(".gguf"):
                    write("gguf", f"{name}-header.gguf", gguf_header(os.path.join(d, fn)))
                    found = True
    if not found:
        skip("GGUF headers")
    for base in ("base-gguf-llama", "base-gguf-gemma3"):
        shutil.copyfile(os.path.join(ROOT, "tests", "hostile", base, "model.gguf"),
                        os.path.join(out_dir("gguf"), f"{base}.gguf"))


# ----------------------------------------------------------------------------- safetensors
def cut_safetensors(path, n_keep=3):
    """The header rewritten for the first n_keep 1-D tensors, with their bytes."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data_at = 8 + n
        keep, blobs, off = {}, [], 0
        for k, v in header.items():
            if k == "__metadata__" or len(v["shape"]) != 1 or len(keep) == n_keep:
                continue
            b, e = v["data_offsets"]
            f.seek(data_at + b)
            blob = f.read(e - b)
            keep[k] = {"dtype": v["dtype"], "shape": v["shape"], "data_offsets": [off, off + len(blob)]}
            blobs.append(blob)
            off += len(blob)
    if "__metadata__" in header:
        keep = {"__metadata__": header["__metadata__"], **keep}
    h = json.dumps(keep, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def make_safetensors():
    for name in ("smollm2-135m", "smollm2-135m-bf16"):
        p = os.path.join(HF, name, "model.safetensors")
        if os.path.exists(p):
            write("safetensors", f"{name}-cut.safetensors", cut_safetensors(p))
        else:
            skip(p)
    shutil.copyfile(os.path.join(ROOT, "tests", "hostile", "base-hf", "model.safetensors"),
                    os.path.join(out_dir("safetensors"), "base-hf.safetensors"))


# -------------------------------------------------------------------------------- HF JSON
def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def cut_tokenizer(tok, n_ids=512, n_added=24):
    """tokenizer.json with the vocabulary cut to ids < n_ids, the merges whose parts and
    result are all kept, and the added tokens below n_ids plus the first n_added above it,
    renumbered from n_ids on (Qwen's <|im_start|> sits at 151644), so the ids stay dense."""
    tok = json.loads(json.dumps(tok))
    m = tok["model"]
    m["vocab"] = {k: v for k, v in m["vocab"].items() if v < n_ids}
    added, next_id = [], n_ids
    for a in tok.get("added_tokens", []):
        if a["id"] >= n_ids:
            if next_id >= n_ids + n_added:
                continue
            a = dict(a, id=next_id)
            next_id += 1
        added.append(a)
    if "added_tokens" in tok:
        tok["added_tokens"] = added
    keep = set(m["vocab"])
    merges = []
    for mg in m.get("merges", []):
        a, b = mg.split(" ", 1) if isinstance(mg, str) else mg
        if a in keep and b in keep and a + b in keep:
            merges.append(mg)
    m["merges"] = merges
    return tok


def bundle(folder, cut):
    b = {"tokenizer.json": cut_tokenizer(load_json(os.path.join(folder, "tokenizer.json")))
         if cut else load_json(os.path.join(folder, "tokenizer.json"))}
    for fn in ("tokenizer_config.json", "generation_config.json"):
        p = os.path.join(folder, fn)
        if os.path.exists(p):
            b[fn] = load_json(p)
    return json.dumps(b, ensure_ascii=False, separators=(",", ":"))


def make_hf_json():
    base = os.path.join(ROOT, "tests", "hostile", "base-hf")
    write("tokenizer", "base-hf.json", bundle(base, cut=False))
    write("config", "base-hf.json", open(os.path.join(base, "config.json"), "rb").read())
    for name in sorted(os.listdir(HF)) if os.path.isdir(HF) else []:
        d = os.path.join(HF, name)
        if os.path.exists(os.path.join(d, "config.json")):
            write("config", f"{name}.json", open(os.path.join(d, "config.json"), "rb").read())
        if os.path.exists(os.path.join(d, "tokenizer.json")) and not name.endswith("-bf16"):
            write("tokenizer", f"{name}-cut.json", bundle(d, cut=True))
            cfg = load_json(os.path.join(d, "tokenizer_config.json")) if os.path.exists(
                os.path.join(d, "tokenizer_config.json")) else {}
            if isinstance(cfg.get("chat_template"), str):
                write("chat_template", f"{name}.jinja", cfg["chat_template"])
    # Gemma 3-style config (a text_config wrapper with per-layer rope parameters), from the
    # hostile base config's sizes: the path HfSource takes for multimodal checkpoints.
    c = load_json(os.path.join(base, "config.json"))
    g = dict(c, model_type="gemma3_text", layer_types=["sliding_attention"] * c["num_hidden_layers"],
             sliding_window=512, query_pre_attn_scalar=8, final_logit_softcapping=30.0,
             rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                              "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}})
    write("config", "gemma3-wrapped.json", json.dumps({"model_type": "gemma3", "text_config": g}, indent=2))
    q = dict(c, model_type="qwen2", rope_theta=1000000.0, use_sliding_window=False,
             rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                           "original_max_position_embeddings": 8192})
    write("config", "qwen2-llama3-rope.json", json.dumps(q, indent=2))


def make_chat_templates():
    fam = load_json(os.path.join(ROOT, "tests", "golden", "data", "chat_templates.json"))["families"]
    for name, v in sorted(fam.items()):
        write("chat_template", f"golden-{name}.jinja", v["template"])


# ------------------------------------------------------------------- context, head scores
def f16(x):
    return struct.pack("<e", x)


def context_payload(n_layer, n_head_kv, d_head, kv_type, version, sys_ids, ctx_ids, lens, with_scores):
    """A payload as encode_context writes it (src/io/context_store.cpp)."""
    n_sys, n_ctx = len(sys_ids), len(ctx_ids)
    n_pos = n_sys + n_ctx
    b = struct.pack("<qqB", n_sys, n_pos, 1 if min(lens) < n_pos else 0)
    b += struct.pack("<Q", n_sys) + struct.pack(f"<{n_sys}i", *sys_ids)
    b += struct.pack("<Q", n_ctx) + struct.pack(f"<{n_ctx}i", *ctx_ids)
    scores = [((i * 7) % 11) / 10.0 for i in range(n_layer * n_head_kv * n_ctx)] if with_scores else []
    b += struct.pack("<iiq", n_layer if with_scores else 0, n_head_kv if with_scores else 0, n_ctx if with_scores else 0)
    b += struct.pack("<Q", len(scores)) + struct.pack(f"<{len(scores)}f", *scores)
    b += struct.pack("<iii", n_layer, n_head_kv, d_head)
    if version >= 2:
        b += struct.pack("<B", kv_type)
    row = (b"".join(f16(((i % 9) - 4) / 8.0) for i in range(d_head)) if kv_type == 0 else
           b"".join(f16(0.01) + bytes(((i * 5) % 256) for i in range(32)) for _ in range(d_head // 32)))
    for il in range(n_layer):
        for ih in range(n_head_kv):
            n = lens[(il * n_head_kv + ih) % len(lens)]
            pos = list(range(n_pos - n, n_pos))
            b += struct.pack("<q", n) + struct.pack(f"<{n}i", *pos) + row * n * 2
    return b


def make_context(cli_file):
    # Selector bytes: version (1 + byte % 3), model (even: tiny 2x2x32, odd: SmolLM2 30x3x64).
    tiny = [(3, 0, "f16-scored", [5, 6, 7], [10, 11, 12, 13, 14, 15], [9, 4], True),
            (3, 1, "q8_0-pruned", [1], [20, 21, 22, 23], [2, 5, 0], False),
            (2, 0, "v2-f16", [], [1, 2, 3], [3], False),
            (1, 0, "v1-f16", [7], [8, 9], [3, 1], True)]
    for version, kv_type, name, sys_ids, ctx_ids, lens, scored in tiny:
        p = context_payload(2, 2, 32, kv_type, version, sys_ids, ctx_ids, lens, scored)
        write("context", f"tiny-{name}.bin", bytes([version - 1, 0]) + p)
    # The smallest context the CLI saves for SmolLM2 keeps its 85-token system prompt whole:
    # about 370 KB compressed, over 1 MB of payload, which would dominate the corpus and slow
    # every execution; it is used only when asked for.
    if not cli_file:
        skip("a context saved by the CLI (--context)")
        return
    with open(cli_file, "rb") as f:
        d = f.read()
    version, info_n, n_raw, n_z = struct.unpack("<I", d[8:12])[0], *struct.unpack("<QQQ", d[20:44])
    assert version == 3, version
    frame = d[44 + info_n:44 + info_n + n_z]
    raw = subprocess.run(["zstd", "-d", "-c"], input=frame, stdout=subprocess.PIPE, check=True).stdout
    assert len(raw) == n_raw
    write("context", "smollm2-cli.bin", bytes([2, 1]) + raw)


def head_scores_body(n_layer, n_head_kv, source, scores):
    b = b"KVZHEAD1" + struct.pack("<QIII", FINGERPRINT, n_layer, n_head_kv, len(source)) + source
    return b + struct.pack(f"<{len(scores)}f", *scores)


def make_head_scores(cli_file):
    write("head_scores", "tiny.bin", b"\x00" + head_scores_body(2, 2, b"fuzz seed", [0.5, 0.25, 1.0, 0.0]))
    if not cli_file:
        skip("a head-score file of `kvzip score-heads` (--head-scores)")
        return
    with open(cli_file, "rb") as f:
        d = f.read()[:-8]  # the target appends the checksum
    d = d[:8] + struct.pack("<Q", FINGERPRINT) + d[16:]
    write("head_scores", "smollm2-cli.bin", b"\x01" + d)


# ---------------------------------------------------------------------------------- request
def make_requests():
    reqs = {
        "chat-basic": {"model": "smollm2", "messages": [{"role": "user", "content": "Hello!"}]},
        "chat-full": {"model": "kvzip", "messages": [{"role": "developer", "content": "Be brief."},
                                                     {"role": "user", "content": [{"type": "text", "text": "2+2?"}]},
                                                     {"role": "assistant", "content": "4"},
                                                     {"role": "user", "content": "and 3+3?"}],
                      "max_tokens": 16, "temperature": 0.7, "top_p": 0.9, "top_k": 40, "seed": 7,
                      "stop": ["\n\n", "User:"], "stream": True, "stream_options": {"include_usage": True},
                      "n": 1, "context_id": "ctx-1", "update_cache": True, "ignore_eos": False},
        "completion": {"model": "smollm2", "prompt": ["Once upon a time"], "max_completion_tokens": 32,
                       "stop": "."},
        "context": {"text": "The launch code is 7731.", "method": "kvzip", "ratio": 0.3, "level": "pair",
                    "kv_type": "q8_0", "retain_full": True, "params": {"chunk": 512, "name": "x"}},
        "context-messages": {"messages": [{"role": "user", "content": "a long document"}], "method": "snapkv",
                             "ratio": 1.0},
        "recompress": {"method": "kvzip", "ratio": 0.1, "level": "head"},
        "context-threshold": {"text": "The launch code is 7731.", "threshold": -4.5, "window": 64,
                              "params": {"dir": "/srv/kvzap"}},
    }
    for name, r in reqs.items():
        write("request", f"{name}.json", json.dumps(r))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--context", help="a context file saved by `kvzip ask --save`")
    ap.add_argument("--head-scores", help="a file written by `kvzip score-heads`")
    a = ap.parse_args()
    make_gguf()
    make_safetensors()
    make_chat_templates()
    make_hf_json()
    make_context(a.context)
    make_head_scores(a.head_scores)
    make_requests()


if __name__ == "__main__":
    main()
