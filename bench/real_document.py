#!/usr/bin/env python3
"""Which model to use for real documents: eight questions over a text nobody here wrote.

The document is the Apache License 2.0 as Debian ships it (/usr/share/common-licenses/Apache-2.0,
about 2,600 tokens), eight questions whose answers are stated in it, each scored by inclusion of
the expected words (case-insensitive), from the full cache and from the cache KVzip compressed to
--ratio, per model:

    kvzip ask --context FILE --compare-full --ratio R -n 48 --json -q ... -m MODEL

Not a test: one run per model, a few minutes for the 1.5B model on 2 threads. Prints a Markdown
table (date, machine and kernel set in its first line) and writes --out as JSON.

    python3 bench/real_document.py --cli build/kvzip [-m smollm2-135m -m qwen2.5-coder-0.5b ...]
"""
import argparse
import datetime
import json
import platform
import subprocess
import sys
from pathlib import Path

# (question, words one of which the answer must contain: case-insensitive, except a word in
# capitals, which must appear so; no word is in its own question, so an echo scores nothing)
QUESTIONS = [
    ("In which month and year was Version 2.0 of this license published?", ["2004"]),
    ("What must modified files carry, according to the redistribution section?", ["prominent", "stating that"]),
    ("What is the name of the text file whose attribution notices must be kept?", ["NOTICE"]),
    ("Which kind of legal action makes the patent licenses granted to you terminate?", ["litigation", "lawsuit"]),
    ("At which web address can one obtain a copy of the License?", ["apache.org"]),
    ("On what basis is the Work provided, in the words of the warranty disclaimer?", ["as is"]),
    ("What is the number of the section titled Disclaimer of Warranty?", ["7", "seven"]),
    ("Which characters enclose the fields to replace in the appendix's boilerplate notice?", ["bracket", "[]"]),
]


def cpu_name() -> str:
    fam = model = ""
    name = platform.processor() or "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        k, _, v = line.partition(":")
        k, v = k.strip(), v.strip()
        if k == "model name":
            name = v
        elif k == "cpu family":
            fam = v
        elif k == "model" and not model:
            model = v
    return f"{name} (family {fam}, model {model})"


def kernel_set() -> str:
    """The set the engine's dispatch picks (src/kernels/dispatch.cpp) unless KVZ_ISA forces one."""
    import os
    if os.environ.get("KVZ_ISA"):
        return os.environ["KVZ_ISA"]
    flags = Path("/proc/cpuinfo").read_text()
    return "avx512vnni" if " avx512_vnni" in flags else "avx2" if " avx2" in flags else "ref"


def hit(answer: str, words) -> bool:
    return any((w in answer) if w.isupper() else (w.lower() in answer.lower()) for w in words)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cli", default="build/kvzip")
    ap.add_argument("-m", "--model", action="append", help="pull names or files (repeatable)")
    ap.add_argument("--context", default="/usr/share/common-licenses/Apache-2.0")
    ap.add_argument("--ratio", type=float, default=0.3)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--out", default="")
    ap.add_argument("--from", dest="from_", default="", help="score the runs of an earlier --out file again")
    a = ap.parse_args()
    models = a.model or ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    rows, records = [], []
    saved = json.loads(Path(a.from_).read_text()) if a.from_ else None
    earlier = saved["runs"] if saved else None
    for m in ([r["model"] for r in earlier] if earlier else models):
        cmd = [a.cli, "ask", "-m", m, "--context", a.context, "--compare-full", "--ratio", str(a.ratio), "-n", "48",
               "-t", str(a.threads), "--json"]
        for q, _ in QUESTIONS:
            cmd += ["-q", q]
        if earlier:
            j = next(r["record"] for r in earlier if r["model"] == m)
        else:
            print(f"real_document: {m} ...", file=sys.stderr, flush=True)
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                print(p.stderr, file=sys.stderr)
                return 1
            j = json.loads(p.stdout.strip().splitlines()[-1])
        full = sum(hit(x["full_answer"], w) for x, (_, w) in zip(j["answers"], QUESTIONS))
        comp = sum(hit(x["answer"], w) for x, (_, w) in zip(j["answers"], QUESTIONS))
        same = sum(x["same_as_full"] for x in j["answers"])
        ms = [x["ms_per_token"] for x in j["answers"] if x["ms_per_token"] > 0]
        rows.append((m, j["n_ctx"], full, comp, same, j["ratio_true"], j["kv_bytes_after"], j["seconds"]["prefill"],
                     j["seconds"]["score"], sum(ms) / max(1, len(ms))))
        records.append({"model": m, "record": j})
    date = saved["date"] if saved else datetime.date.today().isoformat()
    cpu = saved["cpu"] if saved else f"{cpu_name()}, {kernel_set()} kernels"
    threads = saved["threads"] if saved else a.threads
    print(f"{date}, {cpu}, {threads} threads, {Path(a.context).name}, KVzip ratio {a.ratio}")
    print()
    print("| model | context tokens | right, full cache | right, compressed | word for word | KV kept | prefill | "
          "scoring | decode, compressed |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m, n, full, comp, same, r, kvb, pre, sc, ms in rows:
        n_q = len(QUESTIONS)
        print(f"| {m} | {n} | {full}/{n_q} | {comp}/{n_q} | {same}/{n_q} | {100 * r:.1f} % ({kvb / 2**20:.1f} MiB) | "
              f"{pre:.1f} s | {sc:.1f} s | {ms:.1f} ms/token |")
    if a.out:
        Path(a.out).write_text(json.dumps({"date": date, "cpu": cpu, "threads": a.threads,
                                           "context": a.context, "ratio": a.ratio, "runs": records}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
