#!/usr/bin/env python3
"""BLEU and ROUGE-L expectations from the reference's own packages, for
tests/unit/test_eval_metrics.cpp (EvalMetrics.GoldenAgainstNltkAndRouge).

Independent implementations, as the KVzip reference calls them (kvzip-spec §6.3):
  * nltk.translate.bleu_score.sentence_bleu([ref.split()], hyp.split(),
    smoothing_function=SmoothingFunction().method4)   (results/repo_qa_utils.py)
  * rouge.Rouge().get_scores(pred, ref, avg=True)["rouge-l"]["f"]   (results/metric.py)

Versions used: nltk 3.10.4, rouge 1.0.1, Python 3.11 (pip install nltk==3.10.4 rouge==1.0.1).
Cases are random word strings over a small vocabulary (so n-grams and LCS overlap), seeded
with 1234, plus a few code-like strings with punctuation and '.'-separated sentences.

Usage: python3 tests/golden/gen/eval_metrics.py > tests/golden/data/eval_metrics.json
"""
import json
import random

import nltk
import rouge
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from rouge import Rouge


def main():
    rng = random.Random(1234)
    vocab = ["a", "b", "c", "d", "e", "the", "cat", "x", "y", "def", "f(x):", "return", "+", "1"]
    cases = []
    for _ in range(150):
        def words(lo, hi):
            n = rng.randint(lo, hi)
            out = []
            for _ in range(n):
                w = rng.choice(vocab)
                out.append(w)
                if rng.random() < 0.1:
                    out.append(".")  # sentence breaks for ROUGE's split on '.'
            return " ".join(out).replace(" .", ".")
        cases.append((words(1, 18), words(1, 18)))
    cases += [
        ("def f(x):\n    return x + 1\n", "def f(x):\n    return x + 2\n"),
        ("The cat sat. On the mat. It slept.", "the cat sat on the mat. then it slept"),
        ("a a a a", "a"),
        ("a", "a a a a"),
    ]
    sm = SmoothingFunction().method4
    r = Rouge()
    out = []
    for hyp, ref in cases:
        bleu = sentence_bleu([ref.split()], hyp.split(), smoothing_function=sm) if hyp.split() else 0.0
        try:
            rl = r.get_scores(hyp, ref, avg=True)["rouge-l"]["f"]
        except Exception:  # the reference scores 0 when the package raises
            rl = 0.0
        out.append({"hyp": hyp, "ref": ref, "bleu": float(bleu), "rouge_l": float(rl)})
    print(json.dumps({"nltk": nltk.__version__, "rouge": getattr(rouge, "__version__", "1.0.1"), "seed": 1234,
                      "cases": out}, indent=1))


if __name__ == "__main__":
    main()
