# The web page in a real browser: loaded from a server started here, a document uploaded
# through the page's file input, compressed, a question answered from the compressed and
# the full cache, the three views checked against GET /v1/contexts/{id}/kept, the ratio
# slider re-pruning, and `kvzip kept`'s offline file showing the same views without a server.
import json
import os
import re
import subprocess

import pytest

from conftest import srv

# A document with more records than the server tests' one, so the views have some text.
DOC = "\n".join(
    f"Record {i + 1}: {n} lives in {c}, works as a {j}, and was born in {y}."
    for i, (n, c, j, y) in enumerate([
        ("Alice Moreau", "Lyon", "teacher", "1984"), ("Bruno Tanaka", "Osaka", "baker", "1979"),
        ("Chloe Smith", "Leeds", "pilot", "1991"), ("Dmitri Volkov", "Kazan", "chemist", "1968"),
        ("Elena Rossi", "Turin", "architect", "1975"), ("Farid Haddad", "Beirut", "surgeon", "1988"),
        ("Greta Lind", "Uppsala", "nurse", "1993"), ("Hugo Alves", "Porto", "lawyer", "1981"),
        ("Ines Dubois", "Nantes", "florist", "1970"), ("Jonas Berg", "Bergen", "fisher", "1965")]))
QUESTION = "Where does Chloe Smith live?"
MAX_TOKENS = 24
SHOT_DIR = os.environ.get("KVZ_WEB_SCREENSHOTS", "")


def shot(browser, tmp_path, name, selector=None):
    """A screenshot of one view: a real PNG of some size, also written to $KVZ_WEB_SCREENSHOTS."""
    data = browser.screenshot(tmp_path / name, selector)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, name
    if SHOT_DIR:
        with open(os.path.join(SHOT_DIR, name), "wb") as f:
            f.write(data)


def answer(server, cid, **kw):
    status, body = server.request("POST", "/v1/chat/completions", {
        "messages": [{"role": "user", "content": QUESTION}], "max_tokens": MAX_TOKENS, "temperature": 0,
        "context_id": cid, **kw})
    assert status == 200, body
    return body["choices"][0]["message"]["content"]


def check_views(browser, kept):
    """The three views hold what GET .../kept says, element by element."""
    L, H = kept["n_layer"], kept["n_head_kv"]
    assert browser.js("document.querySelectorAll('#text-view .tok').length") == kept["n_ctx"]
    assert browser.js("document.getElementById('text-view').textContent") == "".join(t["text"] for t in kept["tokens"])
    shown = browser.js("[...document.querySelectorAll('#text-view .tok')].map(s => +s.dataset.kept)")
    assert shown == pytest.approx([t["kept"] for t in kept["tokens"]], abs=1e-12)
    cells = browser.js("[...document.querySelectorAll('#grid .cell')].map(c => [+c.dataset.layer, +c.dataset.head, "
                       "+c.dataset.kept])")
    assert len(cells) == L * H
    for l, h, f in cells:
        assert f == pytest.approx(kept["head_kept"][l][h], abs=1e-12)
    bars = browser.js("[...document.querySelectorAll('#bars .bar')].map(b => +b.dataset.kept)")
    assert bars == pytest.approx(kept["layer_kept"], abs=1e-12)


def test_page_upload_ask_views(browser, web_server, tmp_path):
    doc_file = tmp_path / "registry.txt"
    doc_file.write_text(DOC)
    browser.navigate(web_server.url + "/")
    browser.wait_for("document.body.dataset.ready === '1' && document.querySelectorAll('#method option').length > 0",
                     timeout=60, what="the method list")
    assert "kvzip" in browser.js("[...document.querySelectorAll('#method option')].map(o => o.value)")
    # Upload through the file input, as a user picking a file does.
    browser.set_files("#doc-file", [doc_file])
    browser.wait_for("document.getElementById('doc').value.length > 0", timeout=30, what="the file to be read")
    assert browser.js("document.getElementById('doc').value") == DOC
    browser.js("document.getElementById('ratio').value = '0.3'")
    browser.js("document.getElementById('compress').click()")
    browser.wait_for("!document.getElementById('views').hidden && document.querySelectorAll('#text-view .tok').length",
                     what="the context to be compressed and its views drawn")
    assert browser.js("document.getElementById('progress').dataset.state") == "ready"
    cid = browser.js("document.getElementById('ctx-id').textContent")
    status, info = web_server.request("GET", f"/v1/contexts/{cid}")
    assert status == 200 and info["state"] == "ready" and info["retain_full"] is True and info["ratio"] == 0.3
    status, kept = web_server.request("GET", f"/v1/contexts/{cid}/kept?heads=1")
    assert status == 200
    assert "".join(t["text"] for t in kept["tokens"]) == DOC
    check_views(browser, kept)

    # A question: both answers stream side by side; each equals the server's own greedy answer.
    browser.js(f"document.getElementById('question').value = {json.dumps(QUESTION)}")
    browser.js(f"document.getElementById('max-tokens').value = '{MAX_TOKENS}'")
    browser.js("document.getElementById('ask-form').requestSubmit()")
    browser.wait_for("document.getElementById('answer-compressed').dataset.done === '1' && "
                     "document.getElementById('answer-full').dataset.done === '1'", what="both answers")
    got_c = browser.js("document.getElementById('answer-compressed').textContent")
    got_f = browser.js("document.getElementById('answer-full').textContent")
    assert got_c and got_f
    assert got_c == answer(web_server, cid)
    assert got_f == answer(web_server, cid, full_cache=True)
    stats = browser.js("document.getElementById('stats-compressed').textContent")
    assert re.search(r"\d+ tokens · decode [0-9.]+ tok/s · question prefill \d+ ms · KV [0-9.]+ (B|KiB|MiB|GiB)", stats), stats
    assert "KV" in browser.js("document.getElementById('stats-full').textContent")

    shot(browser, tmp_path, "web-page.png")
    shot(browser, tmp_path, "web-text.png", "#view-text")
    shot(browser, tmp_path, "web-grid.png", "#view-grid")
    shot(browser, tmp_path, "web-bars.png", "#view-bars")

    # One head selected in the grid: the text shows exactly that head's kept tokens.
    l, h = max(((l, h) for l in range(kept["n_layer"]) for h in range(kept["n_head_kv"])),
               key=lambda lh: -abs(kept["head_kept"][lh[0]][lh[1]] - 0.5))
    browser.js(f"document.querySelector('#grid .cell[data-layer=\"{l}\"][data-head=\"{h}\"]').click()")
    n_in = browser.js("document.querySelectorAll('#text-view .tok.in-head').length")
    assert n_in == kept["head_rows"][l][h]
    flags = browser.js("[...document.querySelectorAll('#text-view .tok')].map(s => s.classList.contains('in-head'))")
    bits = kept["kept_bitmaps"][l][h]
    assert flags == [bool((int(bits[t // 4], 16) >> (3 - t % 4)) & 1) for t in range(kept["n_ctx"])]

    # The ratio slider re-prunes the retained full cache; the views follow.
    browser.js("(() => { const r = document.getElementById('reprune'); r.value = '0.6';"
               " r.dispatchEvent(new Event('change')); })()")
    browser.wait_for("document.getElementById('reprune-state').dataset.state === 'done'", what="the re-prune")
    status, kept6 = web_server.request("GET", f"/v1/contexts/{cid}/kept?heads=1")
    assert status == 200 and abs(kept6["ratio_true"] - 0.6) < 0.01 and kept6["kept_rows"] > kept["kept_rows"]
    check_views(browser, kept6)


def test_offline_file_shows_the_same_views(browser, web_server, tmp_path):
    cid = web_server.upload(DOC, ratio=0.3)
    assert web_server.wait_ready(cid)["state"] == "ready"
    out = tmp_path / "kept.html"
    subprocess.run([srv.KVZIP, "kept", os.path.join(web_server.ctx_dir, cid + ".kvz"), "-o", str(out),
                    "-m", srv.MODEL], check=True, capture_output=True)
    status, kept = web_server.request("GET", f"/v1/contexts/{cid}/kept?heads=1")
    assert status == 200
    browser.navigate(out.as_uri())
    browser.wait_for("document.body.dataset.ready === '1'", timeout=30, what="the offline page")
    check_views(browser, kept)
    # No server here: the upload and question panels are hidden, the context's description shown.
    assert browser.js("getComputedStyle(document.getElementById('upload-panel')).display") == "none"
    assert browser.js("getComputedStyle(document.getElementById('ask-panel')).display") == "none"
    assert browser.js("document.getElementById('ctx-id').textContent") == cid
    assert browser.js("document.getElementById('error').hidden")


def test_page_with_api_key(browser, tmp_path):
    s = srv.Server(tmp_path / "contexts", "--api-key", "s3cret").start()
    try:
        browser.navigate(s.url + "/")
        browser.wait_for("document.body.dataset.ready === '1'", timeout=60)
        assert "API key" in browser.js("document.getElementById('error').textContent")
        browser.js("(() => { const k = document.getElementById('api-key'); k.value = 's3cret';"
                   " k.dispatchEvent(new Event('change')); })()")
        browser.wait_for("document.querySelectorAll('#method option').length > 0", timeout=30, what="methods with the key")
        # The page fills the methods, then lists the contexts, and only then clears the error:
        # wait for the whole refresh (with a wrong key the error would stay and this times out).
        browser.wait_for("document.getElementById('error').hidden", timeout=30, what="the API-key error cleared")
        assert browser.js("document.getElementById('error').textContent") == ""
    finally:
        browser.js("localStorage.clear()")
        assert s.stop() == 0, s.log_text()
