# GET /v1/contexts/{id}/kept: what a context's cache rows hold, checked against figures the
# server computes elsewhere (the engine's per-layer row counts, KV bytes, the policy's
# realised ratio); /v1/methods, GET /, `kvzip kept`'s file; errors OpenAI-shaped.
import json
import os
import re
import subprocess
import time

import pytest

from conftest import DOC, KVZIP, MODEL, Server


def get_kept(server, cid, heads=False):
    status, body = server.request("GET", f"/v1/contexts/{cid}/kept" + ("?heads=1" if heads else ""))
    assert status == 200, body
    return body


def bits(hexmap, n):
    return [(int(hexmap[t // 4], 16) >> (3 - t % 4)) & 1 for t in range(n)]


def check_against_context(kept, info):
    L, H, n, n_sys = kept["n_layer"], kept["n_head_kv"], kept["n_ctx"], kept["n_sys"]
    assert (L, H) == (30, 3)  # SmolLM2-135M
    assert n == info["n_ctx"] and n_sys == info["n_sys"]
    assert len(kept["tokens"]) == n
    assert len(kept["head_rows"]) == L and all(len(r) == H for r in kept["head_rows"])
    assert kept["sliding_window"] == [False] * L
    for l in range(L):
        for h in range(H):
            assert 0 <= kept["head_rows"][l][h] <= n
            assert kept["head_kept"][l][h] == pytest.approx(kept["head_rows"][l][h] / n, abs=1e-12)
        # The engine's own per-layer figure (row counts of each head, less the system prompt).
        assert kept["layer_kept"][l] == pytest.approx(info["layer_kept"][l], abs=1e-12)
        assert kept["layer_kept"][l] == pytest.approx(sum(kept["head_rows"][l]) / (H * n), abs=1e-12)
    total = sum(map(sum, kept["head_rows"]))
    assert total == kept["kept_rows"]
    # Every row is counted once: context rows + system-prompt rows are all the KV bytes held.
    assert (total + L * H * n_sys) * info["kv_bytes_full"] == info["kv_bytes"] * L * H * (n_sys + n)
    assert kept["ratio_true"] == pytest.approx(info["ratio_true"], abs=1e-12)  # the policy's mask
    assert sum(t["heads"] for t in kept["tokens"]) == total
    for t in kept["tokens"]:
        assert 0 <= t["heads"] <= L * H and t["kept"] == pytest.approx(t["heads"] / (L * H), abs=1e-12)
    # Heads keep different tokens (KVzip's non-uniform budget): not all tokens share one count.
    assert len({t["heads"] for t in kept["tokens"]}) > 3


def test_kept_matches_the_cache(server, ready_context):
    status, info = server.request("GET", f"/v1/contexts/{ready_context}")
    kept = get_kept(server, ready_context)
    assert kept["object"] == "context.kept" and kept["id"] == ready_context
    assert "kept_bitmaps" not in kept
    check_against_context(kept, info)
    # The pieces are the document, token by token.
    assert "".join(t["text"] for t in kept["tokens"]) == DOC


def test_pieces_of_a_non_ascii_text(server):
    text = "Zoë Müller vit à Kraków près de 東京; 🙂 était son mot favori. Ñandú, façade, naïve."
    cid = server.upload(text, ratio=0.5)
    assert server.wait_ready(cid)["state"] == "ready"
    kept = get_kept(server, cid)
    # Characters split over several tokens go to the token that completes them: the pieces
    # still concatenate to the text, and each is valid text on its own.
    assert "".join(t["text"] for t in kept["tokens"]) == text
    assert "\ufffd" not in "".join(t["text"] for t in kept["tokens"])


def test_kept_per_head_bitmaps(server, ready_context):
    kept = get_kept(server, ready_context, heads=True)
    n, L, H = kept["n_ctx"], kept["n_layer"], kept["n_head_kv"]
    maps = kept["kept_bitmaps"]
    assert len(maps) == L and all(len(r) == H for r in maps)
    per_token = [0] * n
    for l in range(L):
        for h in range(H):
            assert re.fullmatch(r"[0-9a-f]*", maps[l][h]) and len(maps[l][h]) == (n + 3) // 4
            b = bits(maps[l][h], n)
            assert sum(b) == kept["head_rows"][l][h]
            per_token = [a + x for a, x in zip(per_token, b)]
            if n % 4:  # the padding bits of the last digit are zero
                assert int(maps[l][h][-1], 16) & ((1 << (4 - n % 4)) - 1) == 0
    assert per_token == [t["heads"] for t in kept["tokens"]]
    # Different heads keep different sets (not one mask copied to all).
    assert len({m for r in maps for m in r}) > 1


def test_kept_follows_a_reprune_and_a_restart(tmp_path):
    s = Server(tmp_path / "contexts").start()
    try:
        cid = s.upload(ratio=0.2, retain_full=True)
        info = s.wait_ready(cid)
        low = get_kept(s, cid, heads=True)
        check_against_context(low, info)
        assert abs(low["ratio_true"] - 0.2) < 0.01
        status, body = s.request("POST", f"/v1/contexts/{cid}/compress", {"ratio": 0.7})
        assert status == 202, body
        for _ in range(1200):
            info = s.wait_ready(cid)
            if info["ratio"] == 0.7:
                break
            time.sleep(0.1)
        assert info["ratio"] == 0.7, info
        high = get_kept(s, cid, heads=True)
        check_against_context(high, info)
        assert abs(high["ratio_true"] - 0.7) < 0.01
        # A top-k of the same scores: what 20% kept, 70% keeps too. The re-prune scores the full
        # cache again, so near-ties may in principle fall the other way: allow 1%.
        n, inside, low_total = high["n_ctx"], 0, 0
        for l in range(high["n_layer"]):
            for h in range(high["n_head_kv"]):
                lo, hi = bits(low["kept_bitmaps"][l][h], n), bits(high["kept_bitmaps"][l][h], n)
                inside += sum(a and b for a, b in zip(lo, hi))
                low_total += sum(lo)
        assert inside >= 0.99 * low_total
    finally:
        assert s.stop() == 0, s.log_text()
    # After a restart the context comes from disk: the same rows, the same views.
    s = Server(tmp_path / "contexts").start()
    try:
        assert get_kept(s, cid, heads=True) == high
    finally:
        assert s.stop() == 0, s.log_text()


def test_kept_errors(server, ready_context):
    for path in ["/v1/contexts/ctx-0123456789abcdef/kept", "/v1/contexts/nonsense/kept"]:
        status, body = server.request("GET", path)
        assert status == 404, body
        assert body["error"] == {"message": body["error"]["message"], "type": "invalid_request_error",
                                 "param": "id", "code": "context_not_found"}
    status, body = server.request("GET", f"/v1/contexts/{ready_context}/kept?heads=banana")
    assert status == 400 and body["error"]["param"] == "heads" and body["error"]["code"] == "invalid_value"
    # Uploads are compressed one after another: behind a long one, a short one is still queued.
    # Under the sanitizers (KVZ_SANITIZE=1: prefill about 30 tokens/s) 4 copies are long enough.
    copies = 4 if os.environ.get("KVZ_SANITIZE") == "1" else 16
    long_id = server.upload("\n".join([DOC] * copies), ratio=0.3)
    short_id = server.upload(ratio=0.3)
    status, body = server.request("GET", f"/v1/contexts/{short_id}/kept")
    assert status == 409, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == "context_not_ready" and err["param"] == "id" and "not ready" in err["message"]
    # Deleting the long one mid-compression frees the queue at its next chunk: the short one
    # is compressed next, without waiting for the long one's whole prefill and scoring.
    assert server.request("DELETE", f"/v1/contexts/{long_id}")[0] == 200
    assert server.wait_ready(short_id)["state"] == "ready"
    assert server.request("GET", f"/v1/contexts/{long_id}")[0] == 404
    assert get_kept(server, short_id)["n_ctx"] > 0


def test_methods_and_the_page(server):
    status, body = server.request("GET", "/v1/methods")
    assert status == 200 and body["object"] == "list"
    names = [m["name"] for m in body["data"]]
    assert "kvzip" in names and "snapkv" in names
    snap = next(m for m in body["data"] if m["name"] == "snapkv")
    assert snap["description"] and snap["level"] and any(p["name"] == "window" for p in snap["params"])
    status, page = server.request("GET", "/")
    assert status == 200 and page.startswith("<!doctype html>") and "/v1/contexts/" in page
    assert "<!--KVZ_DATA-->" in page and 'id="kvz-data"' not in page  # served live: no data embedded
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing from elsewhere: works offline


def test_page_is_open_but_the_api_needs_the_key(tmp_path):
    s = Server(tmp_path / "contexts", "--api-key", "k3y").start()
    try:
        assert s.request("GET", "/")[0] == 200
        assert s.request("GET", "/v1/methods")[0] == 401
        status, body = s.request("GET", "/v1/contexts/ctx-0123456789abcdef/kept")
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        assert s.request("GET", "/v1/methods", headers={"Authorization": "Bearer k3y"})[0] == 200
    finally:
        assert s.stop() == 0, s.log_text()


def test_kvzip_kept_writes_the_views_offline(server, ready_context, tmp_path):
    out = tmp_path / "kept.html"
    r = subprocess.run([KVZIP, "kept", os.path.join(server.ctx_dir, ready_context + ".kvz"), "-o", str(out),
                        "-m", MODEL], capture_output=True, text=True, check=True)
    assert "wrote" in r.stdout
    html = out.read_text()
    m = re.search(r'<script id="kvz-data" type="application/json">(.*?)</script>', html, re.S)
    assert m, "no embedded data"
    data = json.loads(m.group(1))
    want = get_kept(server, ready_context, heads=True)
    del want["id"]
    assert data["kept"] == want
    assert data["context"]["id"] == ready_context and data["context"]["method"] == "kvzip"
    # The rest is the server's page itself.
    status, page = server.request("GET", "/")
    assert html.replace(m.group(0), "<!--KVZ_DATA-->") == page
    # A file the model cannot read is refused with a message, not a crash.
    bad = tmp_path / "bad.kvz"
    bad.write_bytes(b"KVZCTX1\0" + b"\1" * 64)
    r = subprocess.run([KVZIP, "kept", str(bad), "-o", str(tmp_path / "x.html"), "-m", MODEL],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "error" in r.stderr and not (tmp_path / "x.html").exists()
