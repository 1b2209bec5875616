#!/usr/bin/env python3
"""Golden fixtures for kvz::dequantize_row (tests/unit/test_quant.cpp, GoldenDequant).

Independent implementation: the `gguf` Python package (gguf-py from llama.cpp).
  python 3.11, numpy 2.x, gguf==0.17.1  (venv /root/.cache/kvzip/ref/venv-hf)
  seed 20240611 (numpy.random.default_rng)
Run: /root/.cache/kvzip/ref/venv-hf/bin/python tests/golden/gen/gen_quant_fixture.py

Types gguf can quantize (F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): seeded normal data with
per-block scale variety plus an all-zero block and a constant block, quantized with
gguf.quants.quantize. K-quants (Q4_K, Q5_K, Q6_K), which gguf cannot quantize: random
bytes with sane fp16 scales. Expected values: gguf.quants.dequantize of those bytes.

Output per type T: tests/golden/data/quant_T.bin = raw blocks, then the expected f32
values (little-endian); tests/golden/data/quant_index.json lists n, byte counts and ids.
"""
import importlib.metadata
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT
from gguf.quants import quantize, dequantize

SEED = 20240611
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")


def float_rows(rng, n):
    x = rng.standard_normal(n).astype(np.float32)
    # per-32-block scale variety (1e-3 .. 10)
    scales = np.exp(rng.uniform(np.log(1e-3), np.log(10.0), n // 32)).astype(np.float32)
    x *= np.repeat(scales, 32)
    x[:32] = 0.0          # all-zero block
    x[32:64] = 0.75       # constant block (max == min)
    return x


def fp16_bytes(rng, n, lo, hi, signed=False):
    v = np.exp(rng.uniform(np.log(lo), np.log(hi), n)).astype(np.float16)
    if signed:
        v *= np.where(rng.integers(0, 2, n) == 1, 1, -1).astype(np.float16)
    return v.view(np.uint8).reshape(n, 2)


def random_kquant(rng, qtype, n_blocks):
    block = {QT.Q4_K: 144, QT.Q5_K: 176, QT.Q6_K: 210}[qtype]
    raw = rng.integers(0, 256, (n_blocks, block), dtype=np.uint8)
    if qtype in (QT.Q4_K, QT.Q5_K):
        raw[:, 0:2] = fp16_bytes(rng, n_blocks, 1e-3, 1e-1)   # d
        raw[:, 2:4] = fp16_bytes(rng, n_blocks, 1e-3, 1e-1)   # dmin
    else:
        raw[:, 208:210] = fp16_bytes(rng, n_blocks, 1e-3, 1e-1, signed=True)  # d
    return raw


def main():
    rng = np.random.default_rng(SEED)
    os.makedirs(OUT, exist_ok=True)
    index = {"generator": "tests/golden/gen/gen_quant_fixture.py", "seed": SEED,
             "gguf": importlib.metadata.version("gguf"),
             "numpy": np.__version__, "types": []}
    n = 256
    for name, qt in [("f16", QT.F16), ("bf16", QT.BF16), ("q4_0", QT.Q4_0), ("q4_1", QT.Q4_1),
                     ("q5_0", QT.Q5_0), ("q5_1", QT.Q5_1), ("q8_0", QT.Q8_0)]:
        raw = np.ascontiguousarray(quantize(float_rows(rng, n).reshape(1, n), qt)).view(np.uint8).reshape(-1)
        exp = dequantize(raw.reshape(1, -1), qt).reshape(-1).astype("<f4")
        index["types"].append(write(name, qt, n, raw, exp))
    for name, qt in [("q4_k", QT.Q4_K), ("q5_k", QT.Q5_K), ("q6_k", QT.Q6_K)]:
        nk = 512
        raw = random_kquant(rng, qt, nk // 256).reshape(-1)
        exp = dequantize(raw.reshape(1, -1), qt).reshape(-1).astype("<f4")
        assert np.all(np.isfinite(exp))
        index["types"].append(write(name, qt, nk, raw, exp))
    with open(os.path.join(OUT, "quant_index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")


def write(name, qt, n, raw, exp):
    assert exp.size == n
    path = os.path.join(OUT, f"quant_{name}.bin")
    with open(path, "wb") as f:
        assert raw.dtype == np.uint8
        f.write(raw.tobytes())
        f.write(exp.tobytes())
    return {"name": name, "type_id": int(qt), "n": n, "raw_bytes": int(raw.size), "file": f"quant_{name}.bin"}


if __name__ == "__main__":
    sys.exit(main())
