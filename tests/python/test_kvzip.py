"""The kvzip package on the default model: the ModelKVzip workflow, answers identical to
`kvzip ask`, save/load (both ways with the CLI), the NumPy views, errors, threads, Ctrl-C."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import kvzip
from conftest import CONTEXT, QUESTIONS, THREADS, cli_answers, one_line, run_cli

N_NEW = 64  # `kvzip ask`'s default -n


def test_workflow(model):
    kv = model.prefill(CONTEXT, load_score=False)
    full_bytes = kv.kv_bytes
    assert kv.ratio_true == 1.0 and not kv.pruned and len(kv) > 100
    kv.prune(ratio=0.3)
    assert kv.pruned and abs(kv.ratio_true - 0.3) < 0.01
    assert kv.kv_bytes < 0.5 * full_bytes
    for q in QUESTIONS:
        ids = model.apply_template(q)
        assert all(isinstance(t, int) for t in ids)
        out = model.generate(ids, kv=kv, update_cache=False, max_new_tokens=N_NEW)
        assert out.strip()
        assert model.generate(q, kv=kv, max_new_tokens=N_NEW) == out  # text applies the template
        assert "".join(model.stream(ids, kv=kv, max_new_tokens=N_NEW)) == out
    assert "Kim" in model.generate(QUESTIONS[0], kv=kv, max_new_tokens=16)


def test_answers_identical_to_cli(model, model_path, cli, context_file):
    args = ["ask", "-m", model_path, "--context", str(context_file), "--ratio", "0.3", "--level", "pair",
            "-n", str(N_NEW), "-t", str(THREADS), "--compare-full"]
    for q in QUESTIONS:
        args += ["-q", q]
    out = run_cli(cli, *args)
    full_cli, comp_cli = cli_answers(out, "full cache:        "), cli_answers(out, "compressed (30%): ")
    assert len(full_cli) == len(QUESTIONS) and len(comp_cli) == len(QUESTIONS), out
    kv = model.prefill(CONTEXT)
    full = [one_line(model.generate(q, kv=kv, max_new_tokens=N_NEW)) for q in QUESTIONS]
    kv.prune(ratio=0.3, level="pair")
    comp = [one_line(model.generate(q, kv=kv, max_new_tokens=N_NEW)) for q in QUESTIONS]
    assert full == full_cli
    assert comp == comp_cli


def test_save_load_round_trip(model, model_path, cli, tmp_path):
    kv = model.prefill(CONTEXT)
    kv.prune(0.3)
    answers = [model.generate(q, kv=kv, max_new_tokens=N_NEW) for q in QUESTIONS]
    path = tmp_path / "ctx.kvz"
    kv.save(path)
    kv2 = kvzip.load_context(model, path)
    assert kv2.kv_bytes == kv.kv_bytes and kv2.ids == kv.ids and kv2.ratio_true == kv.ratio_true
    assert np.array_equal(kv2.kept, kv.kept)
    assert np.array_equal(kv2.scores, kv.scores)
    assert [model.generate(q, kv=kv2, max_new_tokens=N_NEW) for q in QUESTIONS] == answers
    # The CLI reads the package's file, and the package reads the CLI's.
    args = ["ask", "-m", model_path, "--load", str(path), "-n", str(N_NEW), "-t", str(THREADS)]
    for q in QUESTIONS:
        args += ["-q", q]
    assert cli_answers(run_cli(cli, *args), "  answer: ") == [one_line(a) for a in answers]
    ctx_file = tmp_path / "context.txt"
    ctx_file.write_text(CONTEXT, encoding="utf-8")
    cli_file = tmp_path / "cli.kvz"
    run_cli(cli, "ask", "-m", model_path, "--context", str(ctx_file), "--ratio", "0.3", "-n", "4", "-t",
            str(THREADS), "-q", QUESTIONS[0], "--save", str(cli_file))
    kv3 = kvzip.load_context(model, cli_file)
    assert np.array_equal(kv3.kept, kv.kept)
    assert [model.generate(q, kv=kv3, max_new_tokens=N_NEW) for q in QUESTIONS] == answers


def test_numpy_views(model):
    kv = model.prefill(CONTEXT)
    info = model.info
    s = kv.scores
    assert s.dtype == np.float32 and s.shape == (info["n_layer"], info["n_head_kv"], len(kv))
    assert np.isfinite(s).all() and s.max() > 0
    assert kv.scores is s  # one copy per scoring, then the same array
    with pytest.raises(ValueError):
        s[0, 0, 0] = 1.0
    assert kv.kept.dtype == np.bool_ and kv.kept.all()
    kv.prune(0.3)
    k = kv.kept
    assert k.shape == s.shape and not k.flags.writeable
    assert abs(k.mean() - kv.ratio_true) < 1e-12
    assert s[k].min() >= s[~k].max()  # pair level: one global top-k of the scores
    per_head = k.sum(axis=2)
    assert per_head.min() < per_head.max()  # heads keep different numbers of pairs
    assert np.array_equal(kv.scores, s)  # pruning does not change the scores


def test_update_cache(model):
    kv = model.prefill(CONTEXT)
    kv.prune(0.3)
    n_pos, nbytes = kv.info["n_pos"], kv.kv_bytes
    a = model.generate(QUESTIONS[0], kv=kv, max_new_tokens=8)
    assert kv.info["n_pos"] == n_pos and kv.kv_bytes == nbytes
    b = model.generate(QUESTIONS[0], kv=kv, update_cache=True, max_new_tokens=8)
    assert a == b
    assert kv.info["n_pos"] > n_pos and kv.kv_bytes > nbytes
    assert kv.last_stats["n_generated"] >= 1


def test_stream_early_exit_leaves_context(model):
    kv = model.prefill(CONTEXT)
    kv.prune(0.3)
    ref = model.generate(QUESTIONS[1], kv=kv, max_new_tokens=N_NEW)
    pieces = []
    for p in model.stream(QUESTIONS[1], kv=kv, update_cache=True, max_new_tokens=N_NEW):
        pieces.append(p)
        if len(pieces) == 2:
            break
    assert len(pieces) == 2 and ref.startswith("".join(pieces))
    assert model.generate(QUESTIONS[1], kv=kv, max_new_tokens=N_NEW) == ref  # cancelled: nothing kept


def test_methods_and_compress(model):
    ms = kvzip.methods()
    assert {"kvzip", "snapkv", "pyramidkv", "h2o", "tova", "streaming_llm"} <= set(ms)
    assert "window" in ms["snapkv"]["params"] and ms["kvzip"]["level"] == "pair"
    kv = model.prefill(CONTEXT, do_score=False)
    model.compress(kv, method="snapkv", ratio=0.3, window=16)
    assert abs(kv.ratio_true - 0.3) < 0.02 and kv.scores.shape[2] == len(kv)
    assert model.generate(QUESTIONS[0], kv=kv, max_new_tokens=8)
    kv2 = model.prefill(CONTEXT, do_score=False)
    with pytest.raises(ValueError, match="window"):
        model.compress(kv2, method="snapkv", ratio=0.3, window=-5)
    with pytest.raises(ValueError, match="no-such-press"):
        model.compress(kv2, method="no-such-press", ratio=0.3)


def test_threshold_and_head_level(model, tmp_path):
    kv = model.prefill(CONTEXT)
    thr = float(np.median(kv.scores))
    kv.prune(threshold=thr)
    assert np.array_equal(kv.kept, kv.scores >= thr)
    heads = tmp_path / "heads.kvzh"
    model.score_heads(heads, text=CONTEXT)
    kvh = model.prefill(CONTEXT, load_score=True, head_scores=heads)
    assert not kvh.info["has_scores"]  # no scoring pass
    kvh.prune(ratio=0.5)
    per_head = kvh.kept.mean(axis=2)
    assert set(np.unique(per_head)) <= {0.0, 1.0}  # whole heads kept or evicted
    assert abs(kvh.ratio_true - 0.5) < 0.02


def test_errors(model, tmp_path):
    with pytest.raises(kvzip.KvzipError, match="/nonexistent/model.gguf"):
        kvzip.Model("/nonexistent/model.gguf")
    with pytest.raises(kvzip.KvzipError, match="pull name"):
        kvzip.Model("no-such-model-name")
    kv = model.prefill(CONTEXT)
    for bad in (0.0, -0.5, 1.5, float("nan")):
        with pytest.raises(ValueError, match="ratio"):
            kv.prune(ratio=bad)
    with pytest.raises(ValueError, match="diagonal"):
        kv.prune(ratio=0.3, level="diagonal")
    kv.prune(0.3)
    with pytest.raises(kvzip.KvzipError, match="retain_full"):
        kv.prune(0.5)  # pruned once without retain_full
    with pytest.raises(kvzip.KvzipError, match="/nonexistent/ctx.kvz"):
        kvzip.load_context(model, "/nonexistent/ctx.kvz")
    bad = tmp_path / "bad.kvz"
    bad.write_bytes(b"KVZCTX1\0" + b"\x03\x00\x00\x00" + b"garbage" * 10)
    with pytest.raises(kvzip.KvzipError):
        kvzip.load_context(model, bad)
    with pytest.raises(ValueError, match="kv_type"):
        model.prefill(CONTEXT, kv_type="f32")
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(QUESTIONS[0], kv=kv, max_new_tokens=0)
    with pytest.raises(ValueError, match="context"):
        model.generate(QUESTIONS[0])
    with pytest.raises(ValueError, match="vocabulary|outside"):
        model.generate([10**9], kv=kv)


def _other_model_path(default: str):
    root = Path(os.environ.get("KVZ_MODELS_DIR", Path.home() / ".cache/kvzip/models"))
    for p in (root / "gemma3-270m/gemma-3-270m-q4_k_m.gguf",
              root / "qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"):
        if p.exists() and str(p) != default:
            return str(p)
    return None


def test_context_from_another_model(model, model_path, tmp_path):
    other = _other_model_path(model_path)
    if other is None:
        pytest.skip("no second model cached (scripts/pull-model.sh gemma3-270m): cannot test a foreign context")
    kv = model.prefill(CONTEXT)
    kv.prune(0.3)
    path = tmp_path / "ctx.kvz"
    kv.save(path)
    m2 = kvzip.Model(other, threads=THREADS)
    with pytest.raises(kvzip.KvzipError) as e:
        kvzip.load_context(m2, path)
    assert str(path) in str(e.value) and "model" in str(e.value)
    with pytest.raises(ValueError, match="another Model"):
        m2.generate(QUESTIONS[0], kv=kv)


def test_two_threads_two_contexts(model):
    kvs = []
    for _ in range(2):
        kv = model.prefill(CONTEXT)
        kv.prune(0.3)
        kvs.append(kv)
    expected = [model.generate(q, kv=kv, max_new_tokens=N_NEW) for q, kv in zip(QUESTIONS, kvs)]
    results, spans = [None, None], [None, None]
    barrier = threading.Barrier(2)

    def work(i):
        barrier.wait()
        t0 = time.perf_counter()
        results[i] = model.generate(QUESTIONS[i], kv=kvs[i], max_new_tokens=N_NEW)
        spans[i] = (t0, time.perf_counter())

    ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert results == expected
    # Both generations ran at the same time: the GIL is released during compute.
    (a0, a1), (b0, b1) = spans
    overlap = min(a1, b1) - max(a0, b0)
    assert overlap > 0.5 * min(a1 - a0, b1 - b0), spans


def test_ctrl_c_interrupts_prefill(model_path):
    # A long prefill in a child process; SIGINT after 1 s must stop it between batches.
    code = textwrap.dedent(f"""
        import os, signal, threading, time, sys
        import kvzip
        m = kvzip.Model({model_path!r}, threads={THREADS})
        text = " ".join(f"Record {{i}}: the courier delivered {{i * 7 % 97}} crates to warehouse {{i}}." for i in range(260))
        n = len(m.encode(text))
        threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        t0 = time.perf_counter()
        try:
            m.prefill(text, do_score=False)
            print("finished", n, time.perf_counter() - t0)
        except KeyboardInterrupt:
            print("interrupted", n, time.perf_counter() - t0)
    """)
    r = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    what, n, secs = r.stdout.split()
    assert what == "interrupted", r.stdout
    assert int(n) > 4000  # about 10 prefill batches: the interrupt came between them
    # The interrupt lands at the first batch boundary after 1 s. Under the sanitizers (KVZ_SANITIZE=1,
    # about 30 tokens/s) one batch takes up to ~17 s and the whole prefill ~3 minutes, so the bound
    # grows with them; it still fails a prefill that ignores the signal.
    limit = 40.0 if os.environ.get("KVZ_SANITIZE") == "1" else 5.0
    assert float(secs) < limit, r.stdout


def test_compose_two_contexts(model, cli, model_path, tmp_path):
    other = ("My neighbour Arturo keeps bees on the roof of our building. He sells the honey at the "
             "Saturday market for twelve dollars a jar, and his bees are called the Roof Choir.")
    a = model.prefill(CONTEXT, load_score=False).prune(ratio=0.5)
    b = model.prefill(other, load_score=False).prune(ratio=0.5)
    a_before = (a.info, a.kv_bytes)
    ab = kvzip.compose(model, [a, b])
    assert ab.n_ctx == a.n_ctx + b.n_ctx and ab.pruned
    assert ab.info["n_pos"] == a.info["n_pos"] + b.n_ctx
    q = "How much does a jar of honey cost?"
    ans = model.generate(q, kv=[a, b], max_new_tokens=24)
    assert ans == model.generate(q, kv=ab, max_new_tokens=24)  # a list composes per call
    assert (a.info, a.kv_bytes) == a_before  # the inputs are not changed
    # The CLI composes the saved files to the same answer.
    a.save(tmp_path / "a.kvz")
    b.save(tmp_path / "b.kvz")
    out = run_cli(cli, "ask", "-m", model_path, "--load", str(tmp_path / "a.kvz"), "--load", str(tmp_path / "b.kvz"),
                  "-q", q, "-n", "24", "-t", str(THREADS))
    assert cli_answers(out, "  answer: ") == [one_line(ans)]
    with pytest.raises(ValueError, match="update_cache"):
        model.generate(q, kv=[a, b], update_cache=True)
    with pytest.raises(TypeError, match=r"contexts\[1\]"):
        kvzip.compose(model, [a, "b"])
    model.generate("Tell me more.", kv=b, update_cache=True, max_new_tokens=4)  # b now holds a turn
    with pytest.raises(kvzip.KvzipError, match="conversation"):
        kvzip.compose(model, [a, b])
