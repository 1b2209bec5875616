#!/usr/bin/env python3
"""Load benchmark of `kvzip serve` beside llama.cpp's `llama-server` (scripts/bench-server.sh).

Not a test: it times things. Both servers run on loopback only, on the same GGUF file and
thread count, one after the other (never at the same time). The load is bounded: a fixed
number of requests per concurrency level and a wall-time limit per level.

kvzip: one document of about --doc-tokens tokens is uploaded once (POST /v1/contexts, KVzip,
--ratio kept), the server is restarted (the context comes back from disk), the first question
after the restart gives the cold time to first token, then 1, 4, 8 ... clients ask questions
over that context (context_id, update_cache=false) with --parallel slots.

llama-server: -np slots, continuous batching (its default), the document at the start of every
prompt with cache_prompt, so after a warm-up round every slot holds the document and only the
question is prefilled: the strongest setting llama-server has for this job.

Each request streams max_tokens tokens (ignore_eos, greedy) so both servers generate the same
number of tokens. Per level: aggregate generated tokens/s (all completion tokens / wall time of
the level), request latency and time to first token (p50, p99).

Memory (kvzip only): --mem-contexts documents uploaded and held in memory at once; the server's
resident set against the model file plus their compressed KV bytes.

Output: JSON and Markdown in bench/results/, a plot in docs/img/ (matplotlib, optional).
"""
import argparse
import datetime as dt
import http.client
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # loopback only, always

# ----------------------------------------------------------------------------- documents

FIRST = ["Amara", "Bruno", "Chen", "Dalia", "Emeka", "Farah", "Goran", "Hana", "Ivo", "Jun", "Kira", "Lars",
         "Mina", "Nico", "Oona", "Pavel", "Quinn", "Rosa", "Sami", "Tove", "Uma", "Viktor", "Wren", "Yara"]
CITY = ["Lisbon", "Oslo", "Nairobi", "Lima", "Hanoi", "Quebec", "Tbilisi", "Perth", "Bergen", "Cusco",
        "Dakar", "Kyoto", "Malmo", "Porto", "Split", "Turin"]
THING = ["violin", "telescope", "bicycle", "kettle", "compass", "lantern", "typewriter", "camera", "clock",
         "globe", "harp", "microscope", "sextant", "gramophone", "loom", "anvil"]
COLOR = ["red", "blue", "green", "amber", "violet", "silver", "black", "white", "orange", "teal"]


def make_document(n_records, seed):
    """Fact records and the questions that ask for them (deterministic for a seed)."""
    rng = random.Random(seed)
    lines, questions = [], []
    for i in range(n_records):
        who = f"{rng.choice(FIRST)} {chr(65 + rng.randrange(26))}."
        city, thing, color = rng.choice(CITY), rng.choice(THING), rng.choice(COLOR)
        year = rng.randrange(1890, 2020)
        lines.append(f"Record {i + 1}: In {year}, {who} of {city} bought a {color} {thing} at the harbour market "
                     f"and kept it in the workshop on the third floor.")
        questions.append(f"According to record {i + 1}, what did {who} of {city} buy?")
    return "\n".join(lines) + "\n", questions


# ----------------------------------------------------------------------------- HTTP


def request(port, method, path, body=None, timeout=900):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        return r.status, json.loads(data) if data else None
    finally:
        c.close()


def stream_chat(port, payload, timeout=900):
    """One streamed chat completion: (ttft_s, latency_s, completion_tokens, text, final JSON)."""
    t0 = time.perf_counter()
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    ttft, n_chunks, text, usage, last = None, 0, [], None, None
    try:
        c.request("POST", "/v1/chat/completions", body=json.dumps(payload), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {r.read()[:300]!r}")
        while True:
            line = r.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            ev = json.loads(data)
            last = ev
            if ev.get("usage"):
                usage = ev["usage"]
            for ch in ev.get("choices") or []:
                piece = (ch.get("delta") or {}).get("content")
                if piece:
                    if ttft is None:
                        ttft = time.perf_counter() - t0
                    n_chunks += 1
                    text.append(piece)
    finally:
        c.close()
    lat = time.perf_counter() - t0
    n = usage["completion_tokens"] if usage else n_chunks  # chunks count tokens when no usage comes
    return ttft if ttft is not None else lat, lat, n, "".join(text), last


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """A server process on a loopback port, its log in a file, stopped with SIGTERM."""

    def __init__(self, argv, port, log_path, health_timeout=600):
        self.port = port
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        t_end = time.time() + health_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {log_path}")
            try:
                st, _ = request(port, "GET", "/health", timeout=5)
                if st == 200:
                    break
            except OSError:
                pass
            if time.time() > t_end:
                self.stop()
                raise RuntimeError(f"server not healthy after {health_timeout} s; see {log_path}")
            time.sleep(0.1)

    def rss_bytes(self):
        rss = hwm = 0
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) * 1024
        return rss, hwm

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ----------------------------------------------------------------------------- load


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def run_level(port, make_payload, questions, clients, n_requests, time_limit):
    """clients threads send n_requests in all (or until time_limit); returns the level's figures."""
    lock = threading.Lock()
    next_i = [0]
    results, errors = [], []
    t_stop = time.perf_counter() + time_limit

    def worker():
        while True:
            with lock:
                i = next_i[0]
                if i >= n_requests or time.perf_counter() > t_stop:
                    return
                next_i[0] += 1
            try:
                ttft, lat, n, _, _ = stream_chat(port, make_payload(questions[i % len(questions)]))
                with lock:
                    results.append((ttft, lat, n))
            except Exception as e:  # a failed request is reported, not hidden
                with lock:
                    errors.append(str(e))

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    toks = sum(r[2] for r in results)
    return {
        "clients": clients, "requests": len(results), "errors": errors[:5], "n_errors": len(errors),
        "wall_s": wall, "completion_tokens": toks, "tokens_per_s": toks / wall if wall > 0 else 0,
        "latency_p50_s": pct([r[1] for r in results], 50), "latency_p99_s": pct([r[1] for r in results], 99),
        "ttft_p50_s": pct([r[0] for r in results], 50), "ttft_p99_s": pct([r[0] for r in results], 99),
    }


def run_levels(a, port, make_payload, questions, name):
    """Every concurrency level of a.clients in turn, each logged as it ends."""
    levels = []
    for n in a.clients:
        lv = run_level(port, make_payload, questions, n, a.requests_per_client * n, a.time_limit)
        log(f"{name} {n} clients: {lv['tokens_per_s']:.1f} tok/s, latency p50 {lv['latency_p50_s']:.2f} s, "
            f"TTFT p50 {lv['ttft_p50_s'] * 1e3:.0f} ms ({lv['requests']} requests, {lv['n_errors']} errors)")
        levels.append(lv)
    return levels


def log(msg):
    print(f"server_load: {msg}", file=sys.stderr, flush=True)


def wait_ready(port, cid, what):
    t0, last = time.time(), -1.0
    while True:
        st, c = request(port, "GET", f"/v1/contexts/{cid}")
        if st != 200:
            raise RuntimeError(f"GET context {cid}: HTTP {st} {c}")
        if c["state"] == "ready":
            return c
        if c["state"] == "failed":
            raise RuntimeError(f"upload failed: {c.get('error')}")
        p = c.get("progress", 0.0)
        if p - last >= 0.1:
            log(f"{what}: {c['state']} {p * 100:.0f}% ({time.time() - t0:.0f} s)")
            last = p
        time.sleep(0.5)


def bench_kvzip(a, doc, questions, tmp):
    port = free_port()
    ctx_dir = tmp / "contexts"
    argv = [str(a.kvzip), "serve", "-m", str(a.model), "-t", str(a.threads), "--port", str(port),
            "--parallel", str(max(a.clients)), "--context-dir", str(ctx_dir)]
    out = {"argv": argv}
    weights = a.model.stat().st_size

    def payload(q):
        return {"model": "m", "messages": [{"role": "user", "content": q}], "context_id": cid,
                "max_tokens": a.max_tokens, "temperature": 0, "ignore_eos": True, "stream": True,
                "stream_options": {"include_usage": True}}

    def upload(text, what):
        st, r = request(port, "POST", "/v1/contexts", {"text": text, "ratio": a.ratio})
        if st != 202:
            raise RuntimeError(f"{what}: HTTP {st} {r}")
        return wait_ready(port, r["id"], what)

    def held_memory(srv, ids, stage):
        """The resident set with the contexts `ids` in memory (each asked once just before)."""
        for i in ids:
            stream_chat(port, dict(payload(questions[0]), context_id=i, max_tokens=2))
        st, lst = request(port, "GET", "/v1/contexts")
        kv = sum(c["kv_bytes"] for c in lst["data"] if c["id"] in ids)
        time.sleep(2.5)  # the engine returns freed memory after a second without work (engine.cpp)
        rss, hwm = srv.rss_bytes()
        m = {"contexts": len(ids), "kv_bytes": kv, "rss_bytes": rss, "hwm_bytes": hwm,
             "rss_over_weights_plus_kv": rss / (weights + kv),
             "growth_over_kv": (rss - out["memory"]["rss_idle_bytes"]) / kv if kv else None}
        out["memory"][stage] = m
        log(f"memory {stage}: {len(ids)} contexts, KV {kv / 2**20:.1f} MiB, weights {weights / 2**20:.1f} MiB, "
            f"RSS {rss / 2**20:.1f} MiB = {m['rss_over_weights_plus_kv']:.2f}x (weights + KV)")

    # First server: the document (timed) and the other contexts of the memory figure are uploaded.
    srv = Server(argv, port, tmp / "kvzip-serve.log")
    try:
        rss_idle, _ = srv.rss_bytes()  # model loaded, nothing held
        out["memory"] = {"weights_file_bytes": weights, "rss_idle_bytes": rss_idle}
        t0 = time.perf_counter()
        c = upload(doc, "upload")
        cid = c["id"]
        out["upload_s"] = time.perf_counter() - t0
        out["context"] = {k: c.get(k) for k in ("n_ctx", "kv_bytes_full", "kv_bytes", "ratio_true", "method")}
        log(f"context ready: {c['n_ctx']} tokens, kept {c['ratio_true']:.3f}, {c['kv_bytes'] / 2**20:.1f} MiB "
            f"of {c['kv_bytes_full'] / 2**20:.1f} MiB, upload {out['upload_s']:.1f} s")
        ids = [cid]
        for k in range(1, a.mem_contexts):
            d, _ = make_document(a.records, a.seed + k)
            ids.append(upload(d, f"memory upload {k + 1}/{a.mem_contexts}")["id"])
        if len(ids) > 1:
            held_memory(srv, ids, "after_uploads")
    finally:
        srv.stop()

    # Restarts: the contexts come back from disk; each first question pays its load. The
    # figure is the median of --restarts restarts (one sample swings with the machine: a KVM
    # guest's first touch of memory it never used costs a host fault per page).
    samples = []
    for r in range(a.restarts):
        srv = Server(argv, port, tmp / "kvzip-serve.log")
        ttft, _, _, _, last = stream_chat(port, dict(payload(questions[0]), max_tokens=2))
        samples.append({"ttft_s": ttft, "question_prefill_ms": (last or {}).get("timings", {}).get("prefill_ms")})
        log(f"restart {r + 1}/{a.restarts}: first TTFT {ttft * 1e3:.0f} ms "
            f"(its question prefill {samples[-1]['question_prefill_ms']:.0f} ms)")
        if r + 1 < a.restarts:
            srv.stop()
    try:
        over = sorted(x["ttft_s"] * 1e3 - x["question_prefill_ms"] for x in samples)
        mid = samples[[x["ttft_s"] * 1e3 - x["question_prefill_ms"] for x in samples].index(over[len(over) // 2])]
        ttft = mid["ttft_s"]
        cold = {"ttft_s": ttft, "question_prefill_ms": mid["question_prefill_ms"], "restarts": samples,
                "over_prefill_ms_median": over[len(over) // 2]}
        warm = []
        for q in questions[1:6]:
            t, _, _, _, last = stream_chat(port, dict(payload(q), max_tokens=2))
            warm.append((t, (last or {}).get("timings", {}).get("prefill_ms")))
        cold["warm_ttft_p50_s"] = statistics.median(w[0] for w in warm)
        cold["warm_question_prefill_ms_p50"] = statistics.median(w[1] for w in warm if w[1] is not None)
        out["after_restart"] = cold
        log(f"after restart: first TTFT {ttft * 1e3:.0f} ms (its question prefill {cold['question_prefill_ms']:.0f} ms); "
            f"warm TTFT p50 {cold['warm_ttft_p50_s'] * 1e3:.0f} ms")
        if len(ids) > 1:
            held_memory(srv, ids, "after_restart")  # only loads from disk since this start
        if not a.memory_only:
            # warm-up, then the levels
            run_level(port, payload, questions, max(a.clients), max(a.clients), a.time_limit)
            out["levels"] = run_levels(a, port, payload, questions, "kvzip")
            if len(ids) > 1:
                held_memory(srv, ids, "after_levels")
    finally:
        srv.stop()
    return out


def bench_llama(a, doc, questions, n_doc_tokens, tmp):
    port = free_port()
    slot_ctx = n_doc_tokens + 256 + a.max_tokens
    np_ = max(a.clients)
    argv = [str(a.llama_server), "-m", str(a.model), "-t", str(a.threads), "-tb", str(a.threads),
            "--host", HOST, "--port", str(port), "-np", str(np_), "-c", str(np_ * slot_ctx),
            "--no-webui", "--log-disable"] + a.llama_args
    out = {"argv": argv}
    srv = Server(argv, port, tmp / "llama-server.log")

    def payload(q):
        return {"model": "m", "messages": [{"role": "user", "content": doc + "\n" + q}], "cache_prompt": True,
                "max_tokens": a.max_tokens, "temperature": 0, "ignore_eos": True, "stream": True,
                "stream_options": {"include_usage": True}}

    try:
        ttft, _, _, _, _ = stream_chat(port, dict(payload(questions[0]), max_tokens=2))
        out["first_ttft_s"] = ttft  # the document's whole prefill: llama-server keeps no context on disk
        log(f"llama-server first TTFT {ttft * 1e3:.0f} ms (prefills the document)")
        # warm-up: every slot prefills the document once
        run_level(port, payload, questions, np_, np_, a.time_limit * 4)
        out["levels"] = run_levels(a, port, payload, questions, "llama-server")
        out["rss_bytes"], out["hwm_bytes"] = srv.rss_bytes()
    finally:
        srv.stop()
    return out


# ----------------------------------------------------------------------------- report


def markdown(res):
    m = res["meta"]
    k, l = res["kvzip"], res.get("llama")
    lines = [f"# Server load: {m['model']}", "",
             f"{m['date']}, {m['cpu']}, {m['threads']} threads, kernel set {m['kernel_set']}, "
             f"load average at start {m['loadavg_start']}.", "",
             f"Document {k['context']['n_ctx']} tokens, KVzip kept {k['context']['ratio_true']:.3f} "
             f"({k['context']['kv_bytes'] / 2**20:.1f} of {k['context']['kv_bytes_full'] / 2**20:.1f} MiB), "
             f"upload {k['upload_s']:.1f} s. {m['max_tokens']} tokens per answer (ignore_eos, greedy).", "",
             ]
    if k.get("levels"):
        lines += ["| clients | kvzip tok/s | llama-server tok/s | ratio | kvzip latency p50 / p99 s "
                  "| llama latency p50 / p99 s | kvzip TTFT p50 / p99 ms | llama TTFT p50 / p99 ms |",
                  "|---|---|---|---|---|---|---|---|"]
    for i, kl in enumerate(k.get("levels", [])):
        ll = l["levels"][i] if l else None

        def f2(x, s=1.0, fmtx="{:.2f}"):
            return fmtx.format(x * s) if x is not None else "-"
        lines.append(f"| {kl['clients']} | {kl['tokens_per_s']:.1f} | {f2(ll and ll['tokens_per_s'], 1, '{:.1f}')} | "
                     f"{f2(ll and kl['tokens_per_s'] / ll['tokens_per_s'])} | "
                     f"{f2(kl['latency_p50_s'])} / {f2(kl['latency_p99_s'])} | "
                     f"{f2(ll and ll['latency_p50_s'])} / {f2(ll and ll['latency_p99_s'])} | "
                     f"{f2(kl['ttft_p50_s'], 1e3, '{:.0f}')} / {f2(kl['ttft_p99_s'], 1e3, '{:.0f}')} | "
                     f"{f2(ll and ll['ttft_p50_s'], 1e3, '{:.0f}')} / {f2(ll and ll['ttft_p99_s'], 1e3, '{:.0f}')} |")
    ar = k["after_restart"]
    rs = ar.get("restarts", [])
    each = ", ".join(f"{x['ttft_s'] * 1e3:.0f} ({x['question_prefill_ms']:.0f})" for x in rs)
    lines += ["", f"After a restart, the first question's TTFT: {ar['ttft_s'] * 1e3:.0f} ms "
              f"(its own question prefill {ar['question_prefill_ms']:.0f} ms; warm TTFT p50 "
              f"{ar['warm_ttft_p50_s'] * 1e3:.0f} ms)" +
              (f"; the median of {len(rs)} restarts by TTFT less question prefill, each TTFT (prefill) in ms: {each}."
               if len(rs) > 1 else ".")]
    if l:
        lines.append(f"llama-server's first TTFT (it prefills the document): {l['first_ttft_s'] * 1e3:.0f} ms.")
    mm = k.get("memory", {})
    stages = (("after_uploads", "after the uploads (first server)"),
              ("after_restart", "after a restart, each loaded from disk and asked once"),
              ("after_levels", "after the load levels (the slots have decoded)"))
    if any(st in mm for st, _ in stages):
        w = mm["weights_file_bytes"]
        lines += ["", f"Memory: weights file {w / 2**20:.1f} MiB, RSS right after the model loaded "
                  f"{mm['rss_idle_bytes'] / 2**20:.1f} MiB.", "",
                  "| compressed contexts held | KV MiB | RSS MiB | RSS / (weights + KV) | growth since load / KV "
                  "| peak RSS MiB |", "|---|---|---|---|---|---|"]
        for st, label in stages:
            if st in mm:
                x = mm[st]
                lines.append(f"| {x['contexts']}, {label} | {x['kv_bytes'] / 2**20:.1f} | {x['rss_bytes'] / 2**20:.1f} | "
                             f"{x['rss_over_weights_plus_kv']:.2f}x | {x['growth_over_kv']:.2f}x | "
                             f"{x['hwm_bytes'] / 2**20:.1f} |")
    if l:
        lines.append(f"llama-server RSS after its run: {l['rss_bytes'] / 2**20:.1f} MiB.")
    return "\n".join(lines) + "\n"


def plot(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not available: no plot")
        return False
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.8), squeeze=False)
    for ax, res in zip(axes[0], results):
        for key, label, style in (("kvzip", "kvzip serve (compressed context)", "o-"),
                                  ("llama", "llama-server (cached prompt)", "s--")):
            if res.get(key):
                lv = res[key]["levels"]
                ax.plot([x["clients"] for x in lv], [x["tokens_per_s"] for x in lv], style, label=label)
        ax.set_title(f"{res['meta']['model']}\n{res['kvzip']['context']['n_ctx']} context tokens, "
                     f"kept {res['kvzip']['context']['ratio_true']:.2f}", fontsize=9)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("generated tokens/s (all clients)")
        ax.set_xticks([x["clients"] for x in res["kvzip"]["levels"]])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    m = results[0]["meta"]
    fig.suptitle(f"{m['date'][:10]}, {m['cpu']}, {m['threads']} threads", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def kernel_set():
    """The kernel set the engine dispatches to on this CPU (src/kernels/dispatch.cpp's rule)."""
    flags = next((ln.split(":", 1)[1].split() for ln in open("/proc/cpuinfo") if ln.startswith("flags")), [])
    if all(f in flags for f in ("avx512f", "avx512bw", "avx512vl", "avx512_vnni")):
        return "AVX-512 VNNI"
    return "AVX2" if "avx2" in flags else "reference"


def cpu_name():
    info = {}
    for ln in open("/proc/cpuinfo"):
        if ":" in ln:
            k, v = (x.strip() for x in ln.split(":", 1))
            info.setdefault(k, v)
    return f"{info.get('model name', platform.processor())} (family {info.get('cpu family')} model {info.get('model')})"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", type=Path, action="append", required=True, help="GGUF file (repeatable)")
    ap.add_argument("--kvzip", type=Path, default=ROOT / "build" / "kvzip")
    ap.add_argument("--llama-server", type=Path, help="llama-server binary; omitted: kvzip only")
    ap.add_argument("-t", "--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--clients", default="1,4,8", help="concurrency levels (default 1,4,8)")
    ap.add_argument("--records", type=int, default=110, help="document records (110 = about 4K tokens)")
    ap.add_argument("--ratio", type=float, default=0.3, help="KVzip kept ratio")
    ap.add_argument("--max-tokens", type=int, default=64, help="tokens per answer")
    ap.add_argument("--requests-per-client", type=int, default=3, help="requests per level = this x clients")
    ap.add_argument("--time-limit", type=float, default=120, help="seconds per level at most")
    ap.add_argument("--mem-contexts", type=int, default=4, help="contexts held for the memory figure (1 = skip)")
    ap.add_argument("--memory-only", action="store_true",
                    help="kvzip only, no load levels: the upload, the restart and the memory figures")
    ap.add_argument("--restarts", type=int, default=3,
                    help="restarts for the cold time to first token (the median is reported)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--llama-args", default="", help="extra llama-server arguments, space-separated")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "server_throughput.png")
    a = ap.parse_args()
    a.clients = [int(x) for x in a.clients.split(",")]
    a.llama_args = a.llama_args.split()
    doc, questions = make_document(a.records, a.seed)
    cpu = cpu_name()
    all_res = []
    for model in a.model:
        a.model = model
        tmp = Path(tempfile.mkdtemp(prefix="kvzip-bench-server."))
        res = {"meta": {"date": dt.datetime.now().isoformat(timespec="seconds"), "host": platform.node(), "cpu": cpu,
                        "kernel_set": kernel_set(), "threads": a.threads, "model": model.name,
                        "max_tokens": a.max_tokens, "ratio": a.ratio, "records": a.records,
                        "loadavg_start": open("/proc/loadavg").read().split()[:3],
                        "kvzip_git": subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                                                    capture_output=True, text=True).stdout.strip()}}
        log(f"{model.name}: kvzip serve ...")
        res["kvzip"] = bench_kvzip(a, doc, questions, tmp)
        if a.llama_server and not a.memory_only:
            log(f"{model.name}: llama-server ...")
            res["llama"] = bench_llama(a, doc, questions, res["kvzip"]["context"]["n_ctx"], tmp)
        res["meta"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
        all_res.append(res)
        shutil.rmtree(tmp, ignore_errors=True)
        a.out.mkdir(parents=True, exist_ok=True)
        stem = a.out / f"{res['meta']['date'][:10]}-server-{'memory-' if a.memory_only else ''}{model.stem}"
        # not with_suffix: model names hold dots ("qwen2.5-coder-0.5b-...", "...Q4_1")
        Path(f"{stem}.json").write_text(json.dumps(res, indent=1) + "\n")
        Path(f"{stem}.md").write_text(markdown(res))
        print(markdown(res))
        log(f"wrote {stem}.json and .md")
    if a.plot and not a.memory_only and plot(all_res, a.plot):
        log(f"wrote {a.plot}")


if __name__ == "__main__":
    main()
