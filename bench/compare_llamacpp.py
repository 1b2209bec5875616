#!/usr/bin/env python3
"""Side-by-side throughput of kvzip and llama.cpp on one GGUF, same threads, same run.

Runs `kvzip bench` and llama.cpp's `llama-bench` alternately (ours, theirs, ours, theirs, ...)
for --rounds rounds so that drift on a shared machine hits both alike, takes the median of
each case over the rounds, and writes:
  bench/results/<date>-<host>.json   every sample of both tools plus the summary
  bench/results/<date>-<host>.md     the Markdown table (also printed)
  docs/img/decode_vs_depth.png       decode ms/token against context depth

Python 3 standard library only. The plot needs matplotlib; when this interpreter lacks it, the
plot is drawn by ~/.cache/kvzip/bench-venv/bin/python (created by scripts/bench.sh) through
`--plot-only`, and skipped with a note when neither is available.

Example:
  bench/compare_llamacpp.py -m ~/.cache/kvzip/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf -t 2 --rounds 2
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = Path.home()
DEFAULT_MODEL = HOME / ".cache/kvzip/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_LLAMA = HOME / ".cache/kvzip/llama.cpp-0.3.36/bin/llama-bench"
VENV_PY = HOME / ".cache/kvzip/bench-venv/bin/python"


def log(msg: str) -> None:
    print(f"[compare] {msg}", file=sys.stderr, flush=True)


def ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


# --------------------------------------------------------------------------- running
def run_ours(a, round_i: int, out_dir: Path) -> dict:
    cases = [f"pp{p}" for p in a.prompts] + [f"tg{a.n_gen}@d{d}" for d in a.depths]
    cases += [f"kvzip@d{d}" for d in a.kvzip_depths]
    if round_i == 0:
        cases.insert(0, "bandwidth")
    jpath = out_dir / f".ours-{os.getpid()}-{round_i}.json"
    cmd = [str(a.kvzip), "bench", "-m", str(a.model), "-t", str(a.threads), "-r", str(a.reps),
           "--cases", ",".join(cases), "--ratios", a.ratios, "--kvzip-gen", str(a.n_gen), "--kv-type", a.kv_type, "--json", str(jpath)]
    log("ours:   " + " ".join(cmd))
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    res = json.loads(jpath.read_text())
    jpath.unlink()
    res["cmd"] = cmd
    res["elapsed_s"] = time.time() - t0
    return res


def llama_fa_values(llama: Path) -> list[str]:
    """This llama-bench's spelling of flash attention off/on (0/1 in older builds, on/off later)."""
    h = subprocess.run([str(llama), "--help"], capture_output=True, text=True).stdout
    for line in h.splitlines():
        if "--flash-attn" in line and ("on|off" in line or "<on|off|auto>" in line):
            return ["off", "on"]
    return ["0", "1"]


def run_theirs(a, fa: list[str]) -> list[dict]:
    # Two invocations: llama-bench crosses -p and -d, and prefill at 16K depth is not a case here.
    runs = []
    if a.prompts:
        runs.append(["-p", ",".join(map(str, a.prompts)), "-n", "0"])
    if a.depths:
        runs.append(["-p", "0", "-n", str(a.n_gen), "-d", ",".join(map(str, a.depths))])
    out = []
    for extra in runs:
        cmd = [str(a.llama_bench), "-m", str(a.model), "-t", str(a.threads), "-fa", ",".join(fa), "-r", str(a.reps),
               "-ctk", a.kv_type, "-ctv", a.kv_type, "-o", "json"] + extra
        log("theirs: " + " ".join(cmd))
        p = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
        for row in json.loads(p.stdout):
            row["cmd"] = cmd
            out.append(row)
    return out


# --------------------------------------------------------------------------- summarising
def theirs_case(row: dict) -> tuple[str, int]:
    fa = row.get("flash_attn")
    fa = 1 if fa in (True, 1, "1", "on", "true") else 0
    if row["n_gen"] == 0:
        return f"pp{row['n_prompt']}", fa
    return f"tg{row['n_gen']}@d{row.get('n_depth', 0)}", fa


def summarise(a, ours_runs: list[dict], theirs_runs: list[list[dict]]) -> dict:
    by_case: dict[str, dict] = {}
    for run in ours_runs:
        for r in run["results"]:
            c = by_case.setdefault(r["case"], {"case": r["case"], "kind": r["kind"], "depth": r["depth"],
                                                "ratio": r["ratio"], "ours": [], "gbs": [], "kv_bytes": [],
                                                "rss": [], "ratio_true": r["ratio_true"], "fa0": [], "fa1": []})
            c["ours"].append(r["mean"])
            if r.get("gbs_used") is not None:
                c["gbs"].append(r["gbs_used"])
            c["kv_bytes"].append(r["kv_bytes"])
            c["rss"].append(r["peak_rss_bytes"])
    for run in theirs_runs:
        for row in run:
            name, fa = theirs_case(row)
            c = by_case.setdefault(name, {"case": name, "kind": "pp" if row["n_gen"] == 0 else "tg",
                                          "depth": row.get("n_depth", 0), "ratio": None, "ours": [], "gbs": [],
                                          "kv_bytes": [], "rss": [], "ratio_true": None, "fa0": [], "fa1": []})
            c[f"fa{fa}"].append(row["avg_ts"])
    med = lambda v: statistics.median(v) if v else None
    for c in by_case.values():
        for k in ("ours", "fa0", "fa1", "gbs", "kv_bytes", "rss"):
            c[k + "_median"] = med(c[k])
    bw = [r["mean"] for run in ours_runs for r in run["results"] if r["kind"] == "bandwidth"]
    bw_peak = max((s for run in ours_runs for r in run["results"] if r["kind"] == "bandwidth" for s in r["samples"]),
                  default=None)
    first = ours_runs[0]
    # llama.cpp's bytes per decoded token, by the same count as ours: all weights + the KV
    # cache it reads (depth + half the generated tokens, on average); K and V, 2 bytes a value
    # in f16, 34 per 32 values in q8_0.
    per_value = 2.0 if a.kv_type == "f16" else 34 / 32
    kv_row = 2 * per_value * first["n_layer"] * first["n_head_kv"] * first["d_head"]
    for c in by_case.values():
        if c["kind"] == "tg":
            bytes_tok = first["weight_bytes_per_token"] + kv_row * (c["depth"] + a.n_gen / 2)
            best = max([x for x in (c["fa0_median"], c["fa1_median"]) if x is not None], default=None)
            c["llama_gbs"] = bytes_tok * best / 1e9 if best else None
    return {"cases": by_case, "bandwidth_gbs_mean": med(bw), "bandwidth_gbs_peak": bw_peak,
            "kv_bytes_per_token": kv_row, "weight_bytes_per_token": first["weight_bytes_per_token"]}


def fmt_num(v, nd=1):
    return "—" if v is None else f"{v:.{nd}f}"


def llama_flags(meta: dict) -> str:
    """The ISA flags line of llama-bench's BUILD_INFO (scripts/build-llama-bench.sh)."""
    for line in (meta.get("llama_build") or "").splitlines():
        if line.startswith("flags:"):
            return " ".join(f for f in line[len("flags:"):].split() if f.startswith("-DGGML_") or f.startswith("GGML_"))
    return "flags not recorded"


def markdown(a, s: dict, meta: dict) -> str:
    cases = s["cases"]
    bw = s["bandwidth_gbs_peak"]
    lines = [
        f"Model `{Path(a.model).name}`, {a.threads} threads, {a.rounds} alternating rounds "
        f"(kvzip -r {a.reps}, llama-bench -r {a.reps} per round), median over rounds. "
        f"KV cache {a.kv_type} in both. CPU: {meta['cpu']}; our kernel set: {meta.get('kernels') or 'not recorded'}; "
        f"llama.cpp built with {llama_flags(meta)}. "
        f"Read bandwidth measured in this run: "
        f"{fmt_num(bw)} GB/s (best pass; median of means {fmt_num(s['bandwidth_gbs_mean'])} GB/s).",
        "",
        "| case | ours tok/s | llama.cpp fa=0 | llama.cpp fa=1 | ours ÷ best llama.cpp | ours GB/s read (% of peak) "
        "| llama.cpp GB/s (best) | ours KV MiB | ours peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    order = [f"pp{p}" for p in a.prompts] + [f"tg{a.n_gen}@d{d}" for d in a.depths]
    for d in a.kvzip_depths:
        order += [f"tg{a.n_gen}@d{d}+kvzip{r}" for r in a.ratios.split(",")]
    for name in order:
        c = cases.get(name)
        if not c:
            continue
        o = c["ours_median"]
        ref = c if c["kind"] != "tg-kvzip" else cases.get(f"tg{a.n_gen}@d{c['depth']}", {})
        best = max([x for x in (ref.get("fa0_median"), ref.get("fa1_median")) if x is not None], default=None)
        ratio = f"{o / best:.2f}×" if (o and best) else "—"
        gbs = c["gbs_median"]
        gbs_s = f"{gbs:.1f} ({100 * gbs / bw:.0f}%)" if (gbs and bw) else "—"
        label = name
        if c["kind"] == "tg-kvzip":
            label += f" (kept {100 * c['ratio_true']:.0f}%)"
            ratio += " (vs llama.cpp at full cache)"
        lines.append(
            f"| {label} | {fmt_num(o)} | {fmt_num(ref.get('fa0_median') if c['kind'] == 'tg-kvzip' else c['fa0_median'])} "
            f"| {fmt_num(ref.get('fa1_median') if c['kind'] == 'tg-kvzip' else c['fa1_median'])} | {ratio} | {gbs_s} "
            f"| {fmt_num(c.get('llama_gbs'))} | {fmt_num((c['kv_bytes_median'] or 0) / 2**20)} "
            f"| {fmt_num((c['rss_median'] or 0) / 2**20)} |")
    for d in a.kvzip_depths:
        sc = cases.get(f"kvzip-score@d{d}")
        full = cases.get(f"tg{a.n_gen}@d{d}")
        if sc:
            lines.append("")
            lines.append(f"KVzip scoring at depth {d}: {sc['ours_median']:.2f}× the prefill time (median over rounds).")
        if full and full["ours_median"]:
            for r in a.ratios.split(","):
                k = cases.get(f"tg{a.n_gen}@d{d}+kvzip{r}")
                if k and k["ours_median"]:
                    lines.append(f"Decode at depth {d}, KVzip ratio {r}: {k['ours_median'] / full['ours_median']:.2f}× "
                                 f"our full-cache decode.")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- plotting
def plot(result: dict, png: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    cases = result["summary"]["cases"]
    n_gen = result["args"]["n_gen"]
    depths = result["args"]["depths"]
    fig, ax = plt.subplots(figsize=(7, 4.5))

    def series(key):
        xs, ys = [], []
        for d in depths:
            c = cases.get(f"tg{n_gen}@d{d}")
            if c and c.get(key):
                xs.append(d)
                ys.append(1e3 / c[key])
        return xs, ys

    for key, label, style in (("ours_median", "kvzip, full cache", "o-"), ("fa0_median", "llama.cpp fa=0", "s--"),
                              ("fa1_median", "llama.cpp fa=1", "^--")):
        xs, ys = series(key)
        if xs:
            ax.plot(xs, ys, style, label=label)
    for r, style in (("0.3", "D"), ("0.1", "v")):
        xs, ys = [], []
        for d in result["args"]["kvzip_depths"]:
            c = cases.get(f"tg{n_gen}@d{d}+kvzip{r}")
            if c and c.get("ours_median"):
                xs.append(d)
                ys.append(1e3 / c["ours_median"])
        if xs:
            ax.plot(xs, ys, style, markersize=9, label=f"kvzip, KVzip ratio {r}")
    ys_all = [y for line in ax.get_lines() for y in line.get_ydata()]
    if ys_all and max(ys_all) > 20 * min(ys_all):
        ax.set_yscale("log")  # a slow outlier would flatten every other series
    ax.set_xlabel("context depth (tokens in the KV cache)")
    ax.set_ylabel(f"decode ms/token (tg{n_gen}, median)")
    ax.set_title(f"{Path(result['args']['model']).name}, {result['args']['threads']} threads, "
                 f"KV {result['args'].get('kv_type', 'f16')}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    return True


def plot_any(result_path: Path, png: Path) -> None:
    result = json.loads(result_path.read_text())
    if plot(result, png):
        log(f"plot: {png}")
        return
    if VENV_PY.exists():
        subprocess.run([str(VENV_PY), __file__, "--plot-only", str(result_path), "--png", str(png)], check=True)
        return
    log("matplotlib not available (run scripts/bench.sh once to create ~/.cache/kvzip/bench-venv); no plot")


# --------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("-t", "--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (median over them)")
    ap.add_argument("-r", "--reps", type=int, default=1, help="repetitions inside each tool invocation")
    ap.add_argument("--prompts", type=ints, default=[512, 4096], help="prefill sizes (ppN)")
    ap.add_argument("--depths", type=ints, default=[0, 4096, 16384], help="decode depths (tgN@dD)")
    ap.add_argument("--kvzip-depths", type=ints, default=None, help="depths of the KVzip cases (default: largest depth)")
    ap.add_argument("--ratios", default="0.5,0.3,0.1")
    ap.add_argument("-n", "--n-gen", type=int, default=64)
    ap.add_argument("--kv-type", choices=["f16", "q8_0"], default="f16",
                    help="KV cache type on both sides (kvzip --kv-type; llama-bench -ctk/-ctv, which takes a "
                         "quantized V cache with flash attention only, so q8_0 runs fa=1 alone)")
    ap.add_argument("--kvzip", type=Path, default=ROOT / "build/kvzip", help="kvzip binary")
    ap.add_argument("--llama-bench", type=Path, default=DEFAULT_LLAMA)
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default bench/results/<date>-<host>.json)")
    ap.add_argument("--png", type=Path, default=ROOT / "docs/img/decode_vs_depth.png")
    ap.add_argument("--plot-only", type=Path, default=None, help="redraw the plot from a result JSON and exit")
    a = ap.parse_args()

    if a.plot_only:
        if not plot(json.loads(a.plot_only.read_text()), a.png):
            log("matplotlib is not importable by this interpreter")
            return 1
        log(f"plot: {a.png}")
        return 0

    if a.kvzip_depths is None:
        a.kvzip_depths = [max(a.depths)] if a.depths and max(a.depths) > 0 else []
    for p, what in ((a.model, "model"), (a.kvzip, "kvzip binary (scripts/build.sh)"),
                    (a.llama_bench, "llama-bench (scripts/build-llama-bench.sh)")):
        if not p.exists():
            log(f"error: {what} not found: {p}")
            return 2

    stamp = dt.datetime.now().strftime("%Y-%m-%d-%H%M")
    host = socket.gethostname().split(".")[0]
    out = a.out or ROOT / f"bench/results/{stamp}-{host}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    fa = llama_fa_values(a.llama_bench)
    if a.kv_type != "f16":
        fa = fa[1:]

    t0 = time.time()
    load0 = os.getloadavg()
    ours_runs, theirs_runs = [], []
    for i in range(a.rounds):
        log(f"round {i + 1}/{a.rounds}")
        ours_runs.append(run_ours(a, i, out.parent))
        theirs_runs.append(run_theirs(a, fa))
    load1 = os.getloadavg()

    cpu = ours_runs[0].get("cpu", platform.processor())
    kernels = ours_runs[0].get("kernels")
    lscpu = shutil.which("lscpu")
    meta = {
        "date": dt.datetime.now().isoformat(timespec="seconds"), "host": host, "cpu": cpu, "kernels": kernels,
        "nproc": os.cpu_count(), "loadavg_start": load0, "loadavg_end": load1, "wall_s": time.time() - t0,
        "lscpu": subprocess.run([lscpu], capture_output=True, text=True).stdout if lscpu else None,
        "llama_build": (a.llama_bench.parent.parent / "BUILD_INFO.llama-bench").read_text()
        if (a.llama_bench.parent.parent / "BUILD_INFO.llama-bench").exists() else None,
        "llama_build_commit": theirs_runs[0][0].get("build_commit") if theirs_runs and theirs_runs[0] else None,
        "kvzip_git": subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                                    text=True).stdout.strip(),
    }
    summary = summarise(a, ours_runs, theirs_runs)
    args = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}
    result = {"meta": meta, "args": args, "summary": summary, "ours": ours_runs, "llama_bench": theirs_runs}
    out.write_text(json.dumps(result, indent=1))
    md = markdown(a, summary, meta)
    out.with_suffix(".md").write_text(md)
    print(md)
    log(f"results: {out} and {out.with_suffix('.md')}; load average {load0[0]:.1f} -> {load1[0]:.1f}")
    plot_any(out, a.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
