#!/usr/bin/env python3
"""AdaKV selection from kvpress's AdaKVPress, for tests/unit/test_presses.cpp (AdaKV parity).

Independent implementation: kvpress (PyPI) `AdaKVPress.compress`, fed fixed random scores through
a stub ScorerPress (no model involved): per layer it keeps the top floor(alpha * n_kept) pairs of
every head (the safeguard, at least one when alpha > 0), then masks the layer's H * (n - n_kept)
lowest-scoring remaining pairs regardless of head. We record the scores and the resulting keep
masks (not masked = kept); the test runs our policy (level adakv) on the same scores and expects
identical masks. Scores are distinct float32 values, so ties cannot make the two sides differ.

Usage (writes tests/golden/data/adakv_kvpress.json):
  ~/.cache/kvzip/ref/venv-kvpress/bin/python tests/golden/gen/gen_adakv_kvpress_fixture.py
"""
import importlib.metadata as md
import json
import os
from types import SimpleNamespace

import torch

from kvpress import AdaKVPress
from kvpress.presses.scorer_press import ScorerPress

SEED = 7
H, N = 4, 40
CASES = [(0.2, 0.5), (0.2, 0.8), (0.0, 0.5), (0.5, 0.7), (1.0, 0.5), (0.2, 0.97)]  # (alpha, compression_ratio)
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")


class FixedScores(ScorerPress):
    def __init__(self, scores, compression_ratio):
        super().__init__(compression_ratio=compression_ratio)
        self.fixed = scores

    def score(self, module, hidden_states, keys, values, attentions, kwargs):
        return self.fixed.clone()


def main():
    g = torch.Generator().manual_seed(SEED)
    cases = []
    for alpha, cr in CASES:
        # Skewed per head, so the safeguard matters: head h's scores scaled by 4^h.
        scores = torch.rand(1, H, N, generator=g) * (4.0 ** torch.arange(H)).view(1, H, 1)
        press = AdaKVPress(press=FixedScores(scores, cr), alpha_safeguard=alpha)
        module = SimpleNamespace(config=SimpleNamespace(_attn_implementation="sdpa"), masked_key_indices=None)
        keys = torch.zeros(1, H, N, 8)
        press.compress(module, None, keys, keys, None, {})
        keep = torch.ones(H, N, dtype=torch.bool)
        _, hi, si = module.masked_key_indices
        keep[hi, si] = False
        cases.append({"alpha": alpha, "compression_ratio": cr, "scores": scores[0].tolist(),
                      "keep": keep.int().tolist()})
    out = {"generator": "tests/golden/gen/gen_adakv_kvpress_fixture.py",
           "versions": {p: md.version(p) for p in ("kvpress", "torch")}, "seed": SEED, "n_head_kv": H, "n": N,
           "cases": cases}
    with open(os.path.join(DATA, "adakv_kvpress.json"), "w") as f:
        json.dump(out, f)
        f.write("\n")


if __name__ == "__main__":
    main()
