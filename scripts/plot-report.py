#!/usr/bin/env python3
"""Plots for `kvzip report`: score and fidelity against the KV-cache ratio.

Usage: plot-report.py SUMMARY_CSV OUT_DIR

Reads the summary.csv that `kvzip report` writes and draws, one panel per task and one
line per method (like the KVzip paper's per-task figure):
  scores.png          task score (0-100) vs kept ratio
  fidelity.png        mean KL(full || compressed) per answer token vs kept ratio (log scale)
  fidelity_flips.png  argmax flip rate of the teacher-forced full-cache answer vs kept ratio
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
    print(f"plot-report.py: wrote scores.png, fidelity.png, fidelity_flips.png to {out}")


if __name__ == "__main__":
    main()
