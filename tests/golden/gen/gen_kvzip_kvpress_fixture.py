#!/usr/bin/env python3
"""KVzip scores from kvpress's KVzipPress, for the parity test tests/unit/test_kvzip_kvpress.cpp.

Independent implementation: kvpress (PyPI) `KVzipPress` on HF transformers, run in float32 on an
HF-format copy of the real SmolLM2-135M-Instruct Q4_1 GGUF (transformers dequantizes the GGUF
weights to float32; the copy is cached outside the repo, in ~/.cache/kvzip/hf/smollm2-135m).

The press runs the way kvpress runs it: the `with press(model):` context manager around the
prefill of the full id sequence; on exit it replays the context chunk by chunk, scores every
layer in its forward hooks and selects the pairs to mask. We capture `score_val` (its
[L, 1, H, n] score tensor, before the sink override) and the masked pairs.

Comparability with our engine (kvzip-spec §2.2, §3, §10; kvzap-and-presses.md §2):
  * Input ids: exactly the ids our engine prefills, enc(our ChatML KVzip prefix) ++ enc(context),
    made here with the GGUF's tokenizer; the test checks that our tokenizer gives the same
    prefix and postfix ids. kvpress would otherwise take prefix/suffix from the tokenizer's
    chat template (SmolLM2's default system prompt): we set `prefix_length = n_sys` and
    `_suffix_ids = enc(our postfix)` inside the `with` block, before the prefill.
  * Sink: kvpress puts only the first n_sink (default 4) keys into the scoring softmax; ours
    (like snu-mllab/KVzip) puts the whole system prompt there. We pass n_sink = n_sys, which
    makes the key sets identical. The default n_sink = 4 is also run and its agreement with
    the main run is recorded as "variant_n_sink_4" (a documented difference, not tested).
  * Forced sink scores: kvpress sets score_val[..., :n_sink] to max + 1; with n_sink = n_sys these
    are exactly the system-prompt positions, which our engine never scores. They are left out of
    the fixture (only the n_ctx context columns are stored).
  * Chunk: kvpress 2048, snu-mllab 2000. The test runs ours with chunk 2048.
  * Repeat prompt for chunk > 0: kvpress's text lacks the trailing space of "starting with ".
    The fixture stores the exact repeat-prompt ids kvpress used, and the test feeds those ids to
    our kvzip_score, so the replayed sequences are identical.
  * Precision: kvpress computes the scoring softmax in the model dtype; we load float32, so it
    is fp32 like ours. Our engine differs still in its weights' use (Q4_1 dot products) and an
    f16 KV cache; the bf16 run below bounds how much rounding alone moves kvpress's scores.
  * Selection: kvpress's global bottom-k over all layers, heads and positions (incl. the forced
    sink columns). The kept context pairs are recorded; the test compares against our global
    top-k with the same number of kept context pairs.

Noise estimates recorded in the JSON (same metrics as the test, computed by kvpress against
itself): bfloat16 vs float32 model dtype; chunk 2000 vs 2048 (our default vs kvpress's).

Scores are stored as float16 of ln(score) (-inf for exact zeros): the metrics are rank based and
ln keeps the small scores distinct, which float16 of the raw value would flush to zero. The
rank-correlation cost of that storage is recorded as "storage_spearman_min".

Usage (writes tests/golden/data/kvzip_kvpress_smollm2.bin and .json):
  ~/.cache/kvzip/ref/venv-kvpress/bin/python tests/golden/gen/gen_kvzip_kvpress_fixture.py [--short] [MODEL.gguf]

--short writes kvzip_kvpress_smollm2_short.{bin,json}: the same prose cut to ~640 tokens and
chunk 256 (three chunks, so the chunk > 0 repeat prompt is still exercised), for the sanitizer
stage, where the ~3,000-token run takes minutes (scripts/sanitize.sh; the test picks it under
KVZ_SANITIZE=1). KVzip scores depend on the whole context, so a shorter input needs its own run.
"""
import importlib.metadata as md
import json
import os
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.cache_utils import DynamicCache

from kvpress import KVzipPress

SEED = 20250
KEEP_RATIO = 0.3  # kept fraction (ours); kvpress's compression_ratio = 1 - KEEP_RATIO
CHUNK = 2048
N_CTX_TARGET = 3000
NAME = "kvzip_kvpress_smollm2"
SHORT = {"CHUNK": 256, "N_CTX_TARGET": 640, "NAME": "kvzip_kvpress_smollm2_short"}  # --short

# Our ChatML KVzip template (src/kv/kvzip_template.cpp, task "qa"); each piece is tokenized
# separately and concatenated (kvzip-spec §2.2).
PREFIX = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
          "Given the context, answer to the following question or request without explanation.\n\n")
POSTFIX = "<|im_end|>\n<|im_start|>assistant\n"
REPEAT_FIRST = "\n\nRepeat the previous context exactly."
REPEAT_NEXT = "\n\nRepeat the part of the previous context exactly, starting with"  # kvpress: no trailing space

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")


def context_text(tok):
    """Deterministic prose of checkable facts, grown sentence by sentence to ~N_CTX_TARGET tokens."""
    rng = np.random.default_rng(SEED)
    first = ["Amara", "Bertil", "Chiara", "Dmitri", "Elif", "Farouk", "Greta", "Hiroshi", "Ines", "Jonas",
             "Kalani", "Leontine", "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosalind", "Soren", "Tamsin"]
    last = ["Okafor", "Lindqvist", "Moretti", "Volkov", "Yildiz", "Haddad", "Brandt", "Tanaka", "Ferreira",
            "Keller", "Akana", "Dubois", "Alvarez", "Rahimi", "Nyberg", "Iyer", "Marchand", "Whitfield"]
    towns = ["Harlow Bay", "Millbrook", "Stonereach", "Quillfield", "Ashgrove", "Vantmoor", "Corriden",
             "Elmsworth", "Brightwater", "Kestrel Point", "Dunmore", "Fallowmere"]
    jobs = ["clockmaker", "marine biologist", "bookbinder", "glassblower", "surveyor", "beekeeper",
            "violin teacher", "cartographer", "pastry chef", "bridge engineer", "archivist", "ferry pilot"]
    things = ["a blue bicycle", "a copper kettle", "an old telescope", "a wooden canoe", "a brass compass",
              "a small greenhouse", "a red typewriter", "a stone cottage", "a sailing dinghy", "a pocket watch"]
    pets = ["a grey cat named Pepper", "a beagle named Rufus", "two goldfish", "a parrot named Kiwi",
            "a tortoise named Sheldon", "no pets", "a sheepdog named Bramble", "three hens"]
    parts = []
    n = 0
    i = 0
    while n < N_CTX_TARGET:
        name = f"{first[rng.integers(len(first))]} {last[rng.integers(len(last))]}"
        town, town2 = rng.choice(towns, 2, replace=False)
        s = (f"{name} was born in {town} in {1930 + int(rng.integers(80))} and works as a "
             f"{jobs[rng.integers(len(jobs))]}. ")
        s += f"{name.split()[0]} owns {things[rng.integers(len(things))]} and keeps {pets[rng.integers(len(pets))]}. "
        s += (f"Every {['spring', 'summer', 'autumn', 'winter'][rng.integers(4)]}, {name.split()[0]} travels "
              f"{int(rng.integers(3, 900))} kilometres to {town2} to visit a friend who collects "
              f"{int(rng.integers(2, 400))} old maps. ")
        if i % 5 == 4:
            s += f"The meeting code for group {i // 5} is {int(rng.integers(10000, 99999))}.\n\n"
        i += 1
        cand = "".join(parts) + s
        if len(tok.encode(cand, add_special_tokens=False)) > N_CTX_TARGET:
            break
        parts.append(s)
        n = len(tok.encode("".join(parts), add_special_tokens=False))
    return "".join(parts).rstrip()


def hf_copy(gguf_path):
    """HF-format float32 copy of the GGUF (cached), returns its directory."""
    out = os.path.expanduser("~/.cache/kvzip/hf/smollm2-135m")
    if not os.path.exists(os.path.join(out, "config.json")):
        d, name = os.path.split(gguf_path)
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, torch_dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
        os.makedirs(out, exist_ok=True)
        model.save_pretrained(out)
        tok.save_pretrained(out)
    return out


def run_kvpress(model, ids, n_sys, suffix_ids, chunk, n_sink, plus=False):
    """Returns (scores [L][H][n_ctx] float64 from score_val before the sink override,
    kept mask [L][H][n_ctx] bool from the press's own selection, repeat-prompt ids).
    plus: KVzip+ (kvzip_plus_normalization)."""
    press = KVzipPress(compression_ratio=1.0 - KEEP_RATIO, chunk_size=chunk, n_sink=n_sink,
                       kvzip_plus_normalization=plus)
    captured = {}
    orig_post = press.compress_post
    orig_prepare = press.prepare

    def post(m):
        captured["scores"] = press.score_val.detach().to(torch.float64).clone()
        orig_post(m)

    def prepare(m, t, **kw):
        pairs = orig_prepare(m, t, **kw)
        captured["repeat_inputs"] = [r[0].tolist() for _, r in pairs]
        return pairs

    press.compress_post = post
    press.prepare = prepare
    with torch.no_grad():
        with press(model):
            press.prefix_length = n_sys          # our KVzip prefix, not the chat template's
            press._suffix_ids = torch.tensor([suffix_ids])
            model.model(input_ids=torch.tensor([ids]), past_key_values=DynamicCache(config=model.config))
    L, H, n = model.config.num_hidden_layers, model.config.num_key_value_heads, len(ids)
    masked = np.zeros((L, H, n), dtype=bool)
    for il, layer in enumerate(model.model.layers):
        _, hi, si = layer.self_attn.masked_key_indices
        masked[il, hi.numpy(), si.numpy()] = True
        layer.self_attn.masked_key_indices = None
    s = captured["scores"][:, 0].numpy()
    return s[:, :, n_sys:], ~masked[:, :, n_sys:], captured["repeat_inputs"]


def ranks(x):
    """Ranks 0..n-1 with ties given their average rank (as the test does)."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    r = np.empty(len(x))
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and xs[j + 1] == xs[i]:
            j += 1
        r[order[i:j + 1]] = 0.5 * (i + j)
        i = j + 1
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    return float((ra * rb).sum() / np.sqrt((ra * ra).sum() * (rb * rb).sum()))


def topk_mask(s, k):
    flat = s.reshape(-1)
    m = np.zeros(flat.shape, dtype=bool)
    m[np.argsort(-flat, kind="stable")[:k]] = True
    return m.reshape(s.shape)


def compare(a, b, k):
    rho = [spearman(a[il, ih], b[il, ih]) for il in range(a.shape[0]) for ih in range(a.shape[1])]
    ka, kb = topk_mask(a, k), topk_mask(b, k)
    # Magnitude agreement where scores matter: median |ln a - ln b| over the pairs a keeps.
    ln_mad = float(np.median(np.abs(np.log(a[ka]) - np.log(np.maximum(b[ka], 1e-45)))))
    return {"ln_mad_kept": round(ln_mad, 5), "spearman_mean": round(float(np.mean(rho)), 5), "spearman_min": round(float(np.min(rho)), 5),
            "spearman_p05": round(float(np.percentile(rho, 5)), 5),
            "topk_overlap": round(float((ka & kb).sum() / k), 5)}


def main():
    args = sys.argv[1:]
    if "--short" in args:
        args.remove("--short")
        globals().update(SHORT)
    gguf = args[0] if args else os.path.expanduser(
        "~/.cache/kvzip/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf")
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    hf_dir = hf_copy(gguf)
    tok = AutoTokenizer.from_pretrained(hf_dir)
    enc = lambda s: tok.encode(s, add_special_tokens=False)

    sys_ids, post_ids = enc(PREFIX), enc(POSTFIX)
    text = context_text(tok)
    ctx_ids = enc(text)
    ids = sys_ids + ctx_ids
    n_sys, n_ctx = len(sys_ids), len(ctx_ids)
    print(f"n_sys {n_sys} n_ctx {n_ctx}", flush=True)

    def load(dtype):
        m = AutoModelForCausalLM.from_pretrained(hf_dir, torch_dtype=dtype, attn_implementation="sdpa")
        return m.eval()

    model = load(torch.float32)
    scores, kept, rep = run_kvpress(model, ids, n_sys, post_ids, CHUNK, n_sink=n_sys)
    k = int(kept.sum())
    print(f"kept context pairs {k} of {kept.size}", flush=True)
    # Our selection rule (global top-k) on kvpress's scores reproduces kvpress's own kept set?
    self_sel = float((topk_mask(scores, k) & kept).sum() / k)

    with np.errstate(divide="ignore"):
        stored = np.log(scores).astype(np.float16)
    storage = compare(scores, np.exp(stored.astype(np.float64)), k)

    L, H = scores.shape[:2]
    base = os.path.join(DATA, NAME)
    stored.tofile(base + ".bin")  # [L][H][n_ctx] f16, little-endian, ln(score)
    meta = {
        "generator": "tests/golden/gen/gen_kvzip_kvpress_fixture.py",
        "versions": {p: md.version(p) for p in ("kvpress", "torch", "transformers", "gguf", "numpy")},
        "model": os.path.basename(gguf) + " (HF float32 copy via transformers gguf_file)",
        "seed": SEED,
        "dtype": "float32",
        "attn_implementation": "sdpa",
        "kvpress": {"press": "KVzipPress", "compression_ratio": round(1.0 - KEEP_RATIO, 6), "chunk_size": CHUNK,
                    "n_sink": n_sys, "layerwise": False, "kvzip_plus_normalization": False,
                    "prefix_length": n_sys, "suffix": POSTFIX},
        "keep_ratio": KEEP_RATIO,
        "n_layer": L, "n_head_kv": H, "n_sys": n_sys, "n_ctx": n_ctx, "chunk": CHUNK,
        "sys_ids": sys_ids, "postfix_ids": post_ids, "ctx_ids": ctx_ids,
        "repeat_first_ids": enc(REPEAT_FIRST), "repeat_next_ids": enc(REPEAT_NEXT), "n_cue": 8,
        "repeat_inputs_len": [len(r) for r in rep],
        "kept_pairs": k,
        "kept_ratio_of_context": round(k / scores.size, 6),
        "kvpress_kept_vs_global_topk": round(self_sel, 6),
        "scores_file": NAME + ".bin: float16 ln(score), [n_layer][n_head_kv][n_ctx], little-endian",
        "storage_spearman_min": storage["spearman_min"],
        "storage_topk_overlap": storage["topk_overlap"],
        "storage_ln_mad_kept": storage["ln_mad_kept"],
    }
    # Sanity: the repeat inputs kvpress built are prompt ++ (cue) ++ postfix ++ chunk, as our driver builds them.
    assert rep[0] == meta["repeat_first_ids"] + post_ids + ctx_ids[:CHUNK]
    if len(rep) > 1:
        assert rep[1] == meta["repeat_next_ids"] + ctx_ids[CHUNK - 8:CHUNK] + post_ids + ctx_ids[CHUNK:2 * CHUNK]

    def write():
        with open(base + ".json", "w") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")

    write()
    # Noise estimates (kvpress against itself), slowest last; the JSON is rewritten after each.
    meta["noise"] = {}
    sbf, _, _ = run_kvpress(load(torch.bfloat16), ids, n_sys, post_ids, CHUNK, n_sink=n_sys)
    meta["noise"]["noise_bf16"] = compare(scores, sbf, k)
    write()
    alt = 2000 if CHUNK == 2048 else CHUNK - 6  # a shifted chunk grid: a structural change, for scale
    s_alt, _, _ = run_kvpress(model, ids, n_sys, post_ids, alt, n_sink=n_sys)
    meta["noise"][f"noise_chunk_{alt}"] = compare(scores, s_alt, k)
    write()
    s4, _, _ = run_kvpress(model, ids, n_sys, post_ids, CHUNK, n_sink=4)
    meta["noise"]["variant_n_sink_4"] = compare(scores, s4, k)
    write()
    print(json.dumps({k_: v for k_, v in meta.items() if "ids" not in k_}, indent=1))


if __name__ == "__main__":
    main()
