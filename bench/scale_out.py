#!/usr/bin/env python3
"""Scale-out benchmark: `kvzip serve` replicas sharing a Redis context store (docs/scale-out.md).

Not a test: it times things. Everything runs on loopback, started and stopped here: a Redis
server (own temporary directory, append-only file on), replicas with --store redis://...,
and nginx from deploy/nginx.conf.in. Run it with the server tests' venv:

    $(scripts/server-test-env.sh) bench/scale_out.py [-m MODEL.gguf] [-t THREADS]

1. Fetch against warm. --contexts documents (about --records x 37 tokens each) are uploaded to
   replica A. For each, the same question is streamed to A (which compressed it, so holds it),
   to replica B for the first time (B must fetch the context's bytes from Redis, decode and
   verify them), and to B again (now held). Time to first token of each.
2. Aggregate throughput: --clients clients ask --requests-per-client questions each (greedy,
   --max-tokens tokens, ignore_eos) through nginx, first with one replica behind it, then two.
   Generated tokens over all clients / wall time.

The machine's load average is recorded before each part: figures taken on a busy machine say so.
Output: bench/results/<date>-scale-out.{json,md}.
"""
import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "server"))

import server_load as sl  # noqa: E402  (documents, streaming client, load levels)
from cluster import Nginx, Redis, missing_programs  # noqa: E402


def log(msg):
    print(f"scale_out: {msg}", file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def replica(a, store, tmp, name):
    port = sl.free_port()
    argv = [str(a.kvzip), "serve", "-m", str(a.model), "-t", str(a.threads), "--port", str(port),
            "--parallel", str(a.clients), "--store", store]
    return sl.Server(argv, port, tmp / f"replica-{name}.log")


def payload(a, cid, q):
    return {"model": "m", "messages": [{"role": "user", "content": q}], "max_tokens": a.max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}, "context_id": cid,
            "ignore_eos": True}


def ttft(a, port, cid, q):
    t, _, _, _, last = sl.stream_chat(port, payload(a, cid, q))
    return {"ttft_s": t, "question_prefill_ms": (last or {}).get("timings", {}).get("prefill_ms")}


def fetch_vs_warm(a, store, tmp):
    ra, rb = replica(a, store, tmp, "a"), replica(a, store, tmp, "b")
    try:
        rows = []
        for k in range(a.contexts):
            doc, questions = sl.make_document(a.records, seed=100 + k)
            st, body = sl.request(ra.port, "POST", "/v1/contexts", {"text": doc, "ratio": a.ratio})
            if st != 202:
                raise RuntimeError(f"upload: HTTP {st} {body}")
            info = sl.wait_ready(ra.port, body["id"], f"context {k + 1}/{a.contexts}")
            cid, q = body["id"], questions[0]
            row = {"context": cid, "n_ctx": info["n_ctx"], "kv_bytes": info["kv_bytes"], "load1": loadavg()}
            row["holder"] = ttft(a, ra.port, cid, q)
            row["fetch"] = ttft(a, rb.port, cid, q)  # B has never seen it: Redis -> decode -> answer
            row["held"] = ttft(a, rb.port, cid, q)
            log(f"context {k + 1}: {info['n_ctx']} tokens, {info['kv_bytes']} KV bytes; TTFT holder "
                f"{row['holder']['ttft_s'] * 1e3:.0f} ms, B fetching {row['fetch']['ttft_s'] * 1e3:.0f} ms, "
                f"B holding {row['held']['ttft_s'] * 1e3:.0f} ms")
            rows.append(row)
        return rows, rows[0]["context"], sl.make_document(a.records, seed=100)[1]
    finally:
        ra.stop()
        rb.stop()


def throughput(a, store, tmp, cid, questions, n_replicas):
    reps = [replica(a, store, tmp, f"t{n_replicas}-{i}") for i in range(n_replicas)]
    ng = None
    try:
        for r in reps:  # every replica holds the context before the clock starts
            sl.stream_chat(r.port, payload(a, cid, questions[0]))
        ng = Nginx(tmp / f"nginx-{n_replicas}", [f"127.0.0.1:{r.port}" for r in reps]).start()
        load1 = loadavg()
        lv = sl.run_level(ng.port, lambda q: payload(a, cid, q), questions, a.clients,
                          a.clients * a.requests_per_client, a.time_limit)
        lv.update({"replicas": n_replicas, "threads_per_replica": a.threads, "load1": load1})
        log(f"{n_replicas} replica(s): {lv['tokens_per_s']:.1f} tok/s over {a.clients} clients, latency p50 "
            f"{lv['latency_p50_s']:.2f} s ({lv['requests']} requests, {lv['n_errors']} errors)")
        return lv
    finally:
        if ng:
            ng.stop()
        for r in reps:
            r.stop()


def markdown(res):
    m = res["meta"]
    out = [f"# Scale-out benchmark, {m['date']}", "",
           f"{m['cpu']}, {m['cores']} cores, {m['kernels']} kernels; model {m['model']}; {m['threads']} threads per "
           f"replica; KVzip ratio {m['ratio']}; answers of {m['max_tokens']} tokens (greedy, ignore_eos). "
           f"Load average before: {m['load1_start']:.2f}.", "",
           "## Time to first token: fetching from Redis against holding the context", "",
           "| context tokens | KV bytes | holder (compressed it) | B, first use (fetch) | B, second use | "
           "question prefill |", "|---|---|---|---|---|---|"]
    for r in res["fetch_vs_warm"]:
        out.append(f"| {r['n_ctx']} | {r['kv_bytes']} | {r['holder']['ttft_s'] * 1e3:.0f} ms | "
                   f"{r['fetch']['ttft_s'] * 1e3:.0f} ms | {r['held']['ttft_s'] * 1e3:.0f} ms | "
                   f"{(r['held']['question_prefill_ms'] or 0):.0f} ms |")
    out += ["", "## Aggregate throughput through nginx", "",
            "| replicas | clients | requests | generated tok/s | latency p50 | latency p99 | TTFT p50 | errors |",
            "|---|---|---|---|---|---|---|---|"]
    for lv in res["throughput"]:
        out.append(f"| {lv['replicas']} | {lv['clients']} | {lv['requests']} | {lv['tokens_per_s']:.1f} | "
                   f"{lv['latency_p50_s']:.2f} s | {lv['latency_p99_s']:.2f} s | {lv['ttft_p50_s'] * 1e3:.0f} ms | "
                   f"{lv['n_errors']} |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", type=Path,
                    default=Path.home() / ".cache/kvzip/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--kvzip", type=Path, default=ROOT / "build" / "kvzip")
    ap.add_argument("-t", "--threads", type=int, default=os.cpu_count() or 2, help="compute threads per replica")
    ap.add_argument("--contexts", type=int, default=3, help="contexts for the fetch-vs-warm part")
    ap.add_argument("--records", type=int, default=55, help="document records (55 = about 2K tokens)")
    ap.add_argument("--ratio", type=float, default=0.3)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests-per-client", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--time-limit", type=float, default=300, help="seconds per throughput run at most")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    a = ap.parse_args()
    if missing_programs():
        sys.exit(f"scale_out: not installed: {', '.join(missing_programs())} (scripts/setup.sh)")
    date = dt.date.today().isoformat()
    res = {"meta": {"date": date, "cpu": sl.cpu_name(), "cores": os.cpu_count(), "kernels": sl.kernel_set(),
                    "model": a.model.name, "threads": a.threads, "ratio": a.ratio, "max_tokens": a.max_tokens,
                    "records": a.records, "load1_start": loadavg()}}
    with tempfile.TemporaryDirectory(prefix="kvzip-scale-out.") as t:
        tmp = Path(t)
        redis = Redis(tmp / "redis").start()
        try:
            rows, cid, questions = fetch_vs_warm(a, redis.url, tmp)
            res["fetch_vs_warm"] = rows
            res["throughput"] = [throughput(a, redis.url, tmp, cid, questions, n) for n in (1, 2)]
        finally:
            redis.stop()
    a.out.mkdir(parents=True, exist_ok=True)
    stem = a.out / f"{date}-scale-out"
    stem.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))
    log(f"wrote {stem}.json and .md")


if __name__ == "__main__":
    main()
