# KVzap uploads: "threshold" (streaming eviction while the context is prefilled, pairs whose
# predicted log-score is below it go) and "ratio" with method kvzap, both scored by the
# server's surrogate folder (--kvzap). The stored context must be the one `kvzip compress
# --method kvzap` makes from the same text with the same surrogate: same kept fraction, same
# bytes, same greedy answers.
import json
import os
import random
import re
import struct
import subprocess

import pytest

from conftest import DOC, KVZIP, MODEL, Server, ask_cli

# SmolLM2-135M, the test model: 30 layers, hidden size 576, 3 KV heads.
N_LAYER, D_IN, N_KV = 30, 576, 3
QUESTIONS = ["Where does Chloe Smith live?", "Who is the chemist?"]
# Four copies of the document: about 600 tokens, so the prefill runs in three batches of 256
# and KVzap evicts between them. Under the sanitizers (KVZ_SANITIZE=1: prefill about 30
# tokens/s) two copies in batches of 128, the same three batches.
SANITIZED = os.environ.get("KVZ_SANITIZE") == "1"
CHUNK = 128 if SANITIZED else 256
LONG = "\n".join([DOC] * (2 if SANITIZED else 4))


def write_linear_surrogate(folder):
    """A KVzap linear surrogate in kvpress's published layout (config.json +
    model.safetensors, untagged): fixed pseudo-random weights, and per-head biases far apart
    so that the heads keep clearly different shares of the context."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "kvzap", "input_dim": D_IN, "output_dim": N_KV, "hidden_dim": None, "n_modules": N_LAYER}))
    rng = random.Random(20261206)
    tensors, blobs, off = {}, [], 0
    for il in range(N_LAYER):
        for name, shape, values in (
                (f"layers.{il}.weight", [N_KV, D_IN], [rng.gauss(0.0, 0.01) for _ in range(N_KV * D_IN)]),
                (f"layers.{il}.bias", [N_KV], [-3.0, 0.0, 3.0])):
            blob = struct.pack(f"<{len(values)}f", *values)
            tensors[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(blob)]}
            blobs.append(blob)
            off += len(blob)
    header = json.dumps(tensors).encode()
    header += b" " * (-len(header) % 8)
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"".join(blobs))
    return folder


@pytest.fixture(scope="module")
def surrogate(tmp_path_factory):
    return write_linear_surrogate(tmp_path_factory.mktemp("kvzap") / "linear")


@pytest.fixture(scope="module")
def kvzap_server(tmp_path_factory, surrogate):
    s = Server(tmp_path_factory.mktemp("srv-kvzap") / "contexts", "--kvzap", str(surrogate),
               "--prefill-chunk", str(CHUNK)).start()
    yield s
    assert s.stop() == 0, s.log_text()


def compress_cli(tmp_path, surrogate, text, *rule):
    doc = tmp_path / "doc.txt"
    doc.write_text(text)
    out = tmp_path / "cli.kvz"
    # --batch CHUNK: the server prefills in chunks of CHUNK (--prefill-chunk) and KVzap
    # decides after each chunk, so the same batches make the same evictions.
    res = subprocess.run([KVZIP, "compress", "-m", MODEL, "--context", str(doc), "--method", "kvzap", *rule,
                          "--kvzap", str(surrogate), "--batch", str(CHUNK), "-t", "2", "-o", str(out), "--json"],
                         capture_output=True, text=True, check=True)
    return out, json.loads(res.stdout)


def chat_answer(server, cid, q):
    status, body = server.request("POST", "/v1/chat/completions", {
        "messages": [{"role": "user", "content": q}], "max_tokens": 24, "temperature": 0, "context_id": cid})
    assert status == 200, body
    return body["choices"][0]["message"]["content"].replace("\n", " ").replace("\r", " ").rstrip()


def test_threshold_upload_equals_kvzip_compress(kvzap_server, surrogate, tmp_path):
    cid = kvzap_server.upload(LONG, threshold=0.0, window=16)  # no method: a threshold is KVzap's
    info = kvzap_server.wait_ready(cid)
    assert info["state"] == "ready", info
    assert info["n_ctx"] > 2 * CHUNK
    assert info["method"] == "kvzap" and info["level"] == "threshold"
    assert info["threshold"] == 0.0 and info["window"] == 16 and "ratio" not in info
    assert 0.05 < info["ratio_true"] < 0.95 and info["kv_bytes"] < info["kv_bytes_full"]
    kept = info["layer_kept"]
    assert len(kept) == N_LAYER and max(kept) > min(kept)

    cli_file, rec = compress_cli(tmp_path, surrogate, LONG, "--threshold", "0", "--window", "16")
    assert rec["level"] == "threshold" and rec["threshold"] == 0.0
    assert rec["ratio_true"] == pytest.approx(info["ratio_true"], abs=1e-12)
    assert rec["kv_bytes_after"] == info["kv_bytes"] and rec["kv_bytes_before"] == info["kv_bytes_full"]
    served_file = os.path.join(kvzap_server.ctx_dir, cid + ".kvz")
    want = ask_cli(str(cli_file), QUESTIONS)
    assert ask_cli(served_file, QUESTIONS) == want
    assert [chat_answer(kvzap_server, cid, q) for q in QUESTIONS] == want

    # Per head the kept shares differ as the biases say: head 2 (bias +3) keeps far more than
    # head 0 (bias -3), whose pairs mostly go once they leave the window.
    status, view = kvzap_server.request("GET", f"/v1/contexts/{cid}/kept")
    assert status == 200, view
    grid = view["head_kept"]
    assert sum(row[2] for row in grid) > sum(row[0] for row in grid) + 0.3 * N_LAYER, grid

    # A lower threshold keeps more.
    cid2 = kvzap_server.upload(LONG, threshold=-2.0, window=16)
    assert kvzap_server.wait_ready(cid2)["ratio_true"] > info["ratio_true"]


def test_ratio_upload_with_the_servers_surrogate(kvzap_server, surrogate, tmp_path):
    cid = kvzap_server.upload(method="kvzap", ratio=0.4)
    info = kvzap_server.wait_ready(cid)
    assert info["state"] == "ready", info
    assert info["method"] == "kvzap" and info["ratio"] == 0.4 and abs(info["ratio_true"] - 0.4) < 0.01
    cli_file, rec = compress_cli(tmp_path, surrogate, DOC, "--ratio", "0.4")
    assert rec["kv_bytes_after"] == info["kv_bytes"]
    assert ask_cli(os.path.join(kvzap_server.ctx_dir, cid + ".kvz"), QUESTIONS) == ask_cli(str(cli_file), QUESTIONS)


BAD = [
    ({"threshold": 0, "method": "kvzip"}, "invalid_value", "threshold"),
    ({"threshold": 0, "ratio": 0.3}, "invalid_value", "ratio"),
    ({"threshold": "low"}, "invalid_type", "threshold"),
    ({"threshold": 0, "window": -1}, "invalid_value", "window"),
    ({"threshold": 0, "window": 1.5}, "invalid_type", "window"),
    ({"ratio": 0.3, "window": 16}, "invalid_value", "window"),
    ({"threshold": 0, "level": "head"}, "invalid_value", "level"),
    ({"threshold": 0, "retain_full": True}, "invalid_value", "retain_full"),
    ({"threshold": 0, "params": {"dir": "/nonexistent/kvzap"}}, "invalid_value", "params.dir"),
]


@pytest.mark.parametrize("fields,code,param", BAD)
def test_bad_kvzap_uploads(kvzap_server, fields, code, param):
    status, body = kvzap_server.request("POST", "/v1/contexts", {"text": DOC, **fields})
    assert status == 400, body
    assert body["error"]["code"] == code and body["error"]["param"] == param, body


def test_a_server_without_a_surrogate_refuses_kvzap(tmp_path):
    # HOME elsewhere: no default surrogate folder can be found.
    s = Server(tmp_path / "contexts", env={"HOME": str(tmp_path)}).start()
    try:
        assert "no KVzap surrogate" in s.log_text()
        for fields in ({"threshold": 0.0}, {"method": "kvzap", "ratio": 0.3}):
            status, body = s.request("POST", "/v1/contexts", {"text": DOC, **fields})
            assert status == 400 and body["error"]["code"] == "kvzap_surrogate_missing", body
            assert "kvzip train-kvzap" in body["error"]["message"]
    finally:
        assert s.stop() == 0, s.log_text()


def test_a_surrogate_for_another_shape_stops_the_start(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "kvzap", "input_dim": 8, "output_dim": 2,
                                                 "hidden_dim": None, "n_modules": 3}))
    res = subprocess.run([KVZIP, "serve", "-m", MODEL, "--port", "0", "--context-dir", str(tmp_path / "c"),
                          "--kvzap", str(bad)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res
    assert re.search(r"^kvzip: error: .*kvzap", res.stderr, re.M | re.I), res.stderr
