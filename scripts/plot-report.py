#!/usr/bin/env python3
"""Plots for `kvzip report`: score and fidelity against the KV-cache ratio.

Usage: plot-report.py SUMMARY_CSV OUT_DIR

Reads the summary.csv that `kvzip report` writes and draws, one panel per task and one
line per method (like the KVzip paper's per-task figure):
  scores.png          task score (0-100) vs kept ratio
  fidelity.png        mean KL(full || compressed) per answer token vs kept ratio (log scale)
  fidelity_flips.png  argmax flip rate of the teacher-forced full-cache answer vs kept ratio
  head_kept.png       when head_kept.csv sits beside the summary: one layer x KV-head map of
                      kept fractions per method (at its ratio nearest 0.3, mean over tasks)
Needs matplotlib (scripts/eval.sh installs it into ~/.cache/kvzip/bench-venv).
"""
import csv
import math
import os
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(path):
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            for k in ("ratio", "score", "r_true", "kv_frac", "same_as_full", "mean_abs_dp", "max_abs_dp",
                      "flip_rate", "mean_kl"):
                r[k] = float(r[k])
            rows.append(r)
    return rows


def grid(rows, field, title, ylabel, out, logy=False, ylim=None):
    models = sorted({r["model"] for r in rows})
    tasks = []
    for r in rows:
        if r["task"] not in tasks:
            tasks.append(r["task"])
    n = len(tasks)
    cols = min(4, n)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.4 * cols, 2.8 * nrows), squeeze=False)
    for i, task in enumerate(tasks):
        ax = axes[i // cols][i % cols]
        series = defaultdict(list)
        for r in rows:
            if r["task"] == task:
                # x is the kept fraction actually realised (r_true): it equals the requested
                # ratio for top-k methods and is what a threshold method (kvzap@TAU) reached;
                # the points of a threshold sweep form one curve.
                method = "kvzap@TAU (threshold sweep)" if r["method"].startswith("kvzap@") else r["method"]
                label = method if len(models) == 1 else f'{method} ({r["model"]})'
                series[label].append((r["r_true"], r[field]))
        for label, pts in sorted(series.items()):
            pts.sort(key=lambda p: p[0])
            xs = [p[0] for p in pts]
            ys = [p[1] for p in pts]
            if logy:  # KL is 0 at ratio 1.0 by construction: leave such points out
                kept = [(x, y) for x, y in zip(xs, ys) if y > 0]
                xs, ys = [k[0] for k in kept], [k[1] for k in kept]
            ax.plot(xs, ys, marker="o", markersize=3, label=label)
        ax.set_title(task, fontsize=9)
        ax.set_xlim(0, 1.05)
        if ylim:
            ax.set_ylim(*ylim)
        if logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        if i % cols == 0:
            ax.set_ylabel(ylabel, fontsize=8)
        if i // cols == nrows - 1:
            ax.set_xlabel("KV cache ratio (kept, realised)", fontsize=8)
    for j in range(n, nrows * cols):
        axes[j // cols][j % cols].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=max(1, len(labels)), fontsize=8, frameon=False)
    fig.suptitle(f"{title} - {', '.join(models)}", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    fig.savefig(out, dpi=110)
    plt.close(fig)


def head_kept(path, out):
    """Layer x KV-head maps of the kept fraction: the non-uniform budget made visible."""
    cells = defaultdict(lambda: defaultdict(list))  # (model, method, ratio) -> (layer, head) -> [kept]
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            cells[(r["model"], r["method"], float(r["ratio"]))][(int(r["layer"]), int(r["head"]))].append(
                float(r["kept"]))
    pick = {}  # (model, method) -> the ratio nearest 0.3
    for model, method, ratio in cells:
        k = (model, method)
        if k not in pick or abs(ratio - 0.3) < abs(pick[k] - 0.3):
            pick[k] = ratio
    panels = sorted(pick.items())
    if not panels:
        return False
    cols = min(4, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(2.6 * cols, 3.4 * nrows), squeeze=False)
    im = None
    for i, ((model, method), ratio) in enumerate(panels):
        ax = axes[i // cols][i % cols]
        c = cells[(model, method, ratio)]
        n_l = 1 + max(l for l, _ in c)
        n_h = 1 + max(h for _, h in c)
        grid_v = [[sum(c[(l, h)]) / len(c[(l, h)]) if (l, h) in c else float("nan") for h in range(n_h)]
                  for l in range(n_l)]
        im = ax.imshow(grid_v, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        label = method if len({m for m, _ in pick}) == 1 else f"{method} ({model})"
        ax.set_title(f"{label} @ {ratio:g}", fontsize=9)
        ax.set_xlabel("KV head", fontsize=8)
        if i % cols == 0:
            ax.set_ylabel("layer", fontsize=8)
        ax.tick_params(labelsize=7)
    for j in range(len(panels), nrows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="kept fraction of the context")
    fig.suptitle("Kept fraction per layer and KV head", fontsize=10)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rows = load(sys.argv[1])
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)
    grid(rows, "score", "Task score vs KV cache ratio", "score", os.path.join(out, "scores.png"), ylim=(-3, 103))
    grid(rows, "mean_kl", "Fidelity: mean KL(full || compressed) per answer token", "KL (nats)",
         os.path.join(out, "fidelity.png"), logy=True)
    grid(rows, "flip_rate", "Fidelity: argmax flips of the full-cache answer", "flip rate",
         os.path.join(out, "fidelity_flips.png"), ylim=(-0.02, 1.02))
    made = "scores.png, fidelity.png, fidelity_flips.png"
    hk = os.path.join(os.path.dirname(os.path.abspath(sys.argv[1])), "head_kept.csv")
    if os.path.exists(hk) and head_kept(hk, os.path.join(out, "head_kept.png")):
        made += ", head_kept.png"
    print(f"plot-report.py: wrote {made} to {out}")


if __name__ == "__main__":
    main()
