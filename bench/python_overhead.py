#!/usr/bin/env python3
"""Per-token decode overhead of the Python package against the CLI, on the same saved context.

Builds a context (the profile of tests/python plus filler records, about 1,000 tokens), prunes
it to 30% with KVzip, saves it, then answers the same question (greedy, the same tokens) with
`kvzip ask --load` (its printed decode ms/token) and with kvzip's Model.generate, several times
each, alternating. For Python two figures: the engine's own decode time per token (as the CLI
reports it) and the wall time of the generate() call less its query prefill, per fed-back
token, which includes everything the binding adds (GIL release and re-acquire, the token
callback's signal check, argument conversion). Not a test: run it on an idle machine.

    python bench/python_overhead.py --cli build/kvzip [--model PATH] [--threads 2] [--reps 5]
"""
import argparse
import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import kvzip


def stats(xs):
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs) if len(xs) > 1 else 0.0:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", required=True, help="the kvzip binary")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("-n", "--max-new-tokens", type=int, default=128)
    a = ap.parse_args()
    model = kvzip.Model(a.model, threads=a.threads)
    records = " ".join(f"Record {i}: the courier from harbour {i * 7} delivered {i * 13 % 97} crates of tea "
                       f"to warehouse {i + 40}." for i in range(40))
    context = ("This is my basic profile. My name is Kim and I live in Seoul. My major is computer science. "
               + records)
    question = "Write a long story about the couriers, the harbours and the warehouses."
    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "ctx.kvz")
        kv = model.prefill(context)
        kv.prune(0.3)
        kv.save(path)
        kv = kvzip.load_context(model, path)
        cli_ms, eng_ms, wall_ms = [], [], []
        n_tok = None
        for _ in range(a.reps):
            out = subprocess.run([a.cli, "ask", "-m", model.path, "--load", path, "-q", question, "-n",
                                  str(a.max_new_tokens), "-t", str(a.threads)],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=True).stdout
            cli_ms.append(float(re.search(r"\(([0-9.]+) ms/token\)", out).group(1)))
            t0 = time.perf_counter()
            model.generate(question, kv=kv, max_new_tokens=a.max_new_tokens)
            wall = time.perf_counter() - t0
            st = kv.last_stats
            fed = st["n_generated"] - 1
            n_tok = st["n_generated"]
            eng_ms.append(1e3 * st["decode_s"] / fed)
            wall_ms.append(1e3 * (wall - st["prefill_s"]) / fed)
    print(f"model {model.path}, {len(kv)} context tokens at {100 * kv.ratio_true:.0f}% kept, "
          f"{a.threads} threads, {n_tok} tokens per answer, {a.reps} runs each, os.cpu_count()={os.cpu_count()}")
    print(f"CLI  kvzip ask --load, decode ms/token:         {stats(cli_ms)}")
    print(f"Python generate, engine decode ms/token:        {stats(eng_ms)}")
    print(f"Python generate, wall ms/token (call - prefill): {stats(wall_ms)}")
    m_cli, m_wall = statistics.mean(cli_ms), statistics.mean(wall_ms)
    print(f"overhead of Python per token vs CLI: {100 * (m_wall - m_cli) / m_cli:+.2f}% "
          f"(engine-only: {100 * (statistics.mean(eng_ms) - m_cli) / m_cli:+.2f}%)")


if __name__ == "__main__":
    main()
