#!/usr/bin/env python3
"""One document, several compression methods and kept ratios: how often the answer from the
compressed cache still contains the fact (and equals the full-cache answer), and the KV bytes.

    python examples/compare_methods.py [MODEL] [--ratios 0.5,0.3,0.1] [--methods kvzip,snapkv,...]
"""
import argparse
import time

import kvzip

FACTS = [
    ("Kim", "lives in", "Seoul"), ("Mina", "works as", "a doctor"), ("Pebble", "is", "a grey cat"),
    ("Jun", "plays", "the cello"), ("Tidewater Labs", "builds", "warehouse robots"),
    ("Hana", "moved to", "Valencia"), ("Oskar", "collects", "old maps"), ("Ravi", "teaches", "chemistry"),
]
QUESTIONS = [
    ("Where does Kim live?", "Seoul"), ("What does Mina work as?", "doctor"), ("What is Pebble?", "cat"),
    ("What does Jun play?", "cello"), ("What does Tidewater Labs build?", "robots"),
    ("Where did Hana move to?", "Valencia"), ("What does Oskar collect?", "maps"),
    ("What does Ravi teach?", "chemistry"),
]


def document() -> str:
    lines = []
    for i, (who, verb, what) in enumerate(FACTS):
        lines.append(f"Note {i + 1}. {who} {verb} {what}. The note was filed on day {3 * i + 2} of the month "
                     f"by the records office, together with a routine report about the weather and the trains.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default="smollm2-135m")
    ap.add_argument("--ratios", default="1.0,0.5,0.3,0.1")
    ap.add_argument("--methods", default="kvzip,snapkv,pyramidkv,h2o,tova,streaming_llm,knorm,random")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    a = ap.parse_args()
    model = kvzip.Model(a.model, threads=a.threads)
    text = document()
    known = kvzip.methods()
    methods = [m for m in a.methods.split(",") if m in known]
    ratios = [float(r) for r in a.ratios.split(",")]

    full = model.prefill(text, do_score=False)
    reference = [model.generate(q, kv=full, max_new_tokens=a.max_new_tokens) for q, _ in QUESTIONS]
    print(f"{len(full)} context tokens, full cache {full.kv_bytes} bytes; "
          f"full-cache answers with the fact: {sum(f in r for r, (_, f) in zip(reference, QUESTIONS))}/{len(QUESTIONS)}")
    print(f"{'method':<15} {'ratio':>5} {'kept':>6} {'KV bytes':>10} {'facts':>6} {'same':>5} {'score s':>8}")
    for method in methods:
        for r in ratios:
            t0 = time.perf_counter()
            kv = model.prefill(text, do_score=False)
            if method == "kvzip":
                kv.score()
                kv.prune(ratio=r)
            else:
                model.compress(kv, method=method, ratio=r)
            dt = time.perf_counter() - t0
            answers = [model.generate(q, kv=kv, max_new_tokens=a.max_new_tokens) for q, _ in QUESTIONS]
            facts = sum(f in ans for ans, (_, f) in zip(answers, QUESTIONS))
            same = sum(x == y for x, y in zip(answers, reference))
            print(f"{method:<15} {r:>5.2f} {kv.ratio_true:>6.3f} {kv.kv_bytes:>10} {facts:>3}/{len(QUESTIONS)} "
                  f"{same:>2}/{len(QUESTIONS)} {dt:>8.2f}")


if __name__ == "__main__":
    main()
