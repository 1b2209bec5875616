# The contexts API and the server's promises: upload once, ask many times at once with the
# same answers as `kvzip ask --load`, derived contexts for update_cache, re-pruning,
# persistence across restarts and kill -9, clean errors for bad input, disconnects.
import glob
import json
import os
import signal
import socket
import time

import openai
import pytest

from conftest import DOC, Server, ask_cli, parallel

QUESTIONS = ["Where does Chloe Smith live?", "What is Bruno Tanaka's job?", "When was Elena Rossi born?",
             "Who is the chemist?", "Where does Alice Moreau live?", "What does Farid Haddad do?"]


def chat(server, cid, q, **kw):
    c = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300)
    r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": q}], max_tokens=24,
                                  temperature=0, extra_body={"context_id": cid, **kw})
    return r


def one_line(s):
    return s.replace("\n", " ").replace("\r", " ").rstrip()


def test_upload_reports_state_then_ready(server):
    cid = server.upload(ratio=0.3)
    status, body = server.request("GET", f"/v1/contexts/{cid}")
    assert status == 200 and body["state"] in ("queued", "prefilling", "scoring", "ready")
    info = server.wait_ready(cid)
    assert info["method"] == "kvzip" and info["ratio"] == 0.3 and abs(info["ratio_true"] - 0.3) < 0.01
    assert info["kv_bytes"] < info["kv_bytes_full"] and info["n_ctx"] > 100
    assert len(info["layer_kept"]) == 30 and max(info["layer_kept"]) > min(info["layer_kept"])  # non-uniform
    assert os.path.exists(os.path.join(server.ctx_dir, cid + ".kvz"))
    status, listing = server.request("GET", "/v1/contexts")
    assert cid in [c["id"] for c in listing["data"]]


def test_concurrent_questions_equal_kvzip_ask(server, ready_context):
    answers = parallel([lambda q=q: chat(server, ready_context, q) for q in QUESTIONS])
    got = [one_line(a.choices[0].message.content) for a in answers]
    want = ask_cli(os.path.join(server.ctx_dir, ready_context + ".kvz"), QUESTIONS)
    assert got == want
    for a in answers:
        assert a.model_extra["context_id"] == ready_context  # update_cache false: the same context
    # The batched decode really ran: more than one slot per step on average.
    status, metrics = server.request("GET", "/metrics")
    mean = float([l for l in metrics.splitlines() if l.startswith("kvzip_decode_batch_mean")][0].split()[1])
    assert mean > 1.0, metrics


def test_update_cache_derives_a_new_context(server, ready_context):
    before = one_line(chat(server, ready_context, QUESTIONS[0]).choices[0].message.content)
    r = chat(server, ready_context, "Remember the word banana.", update_cache=True)
    new_id = r.model_extra["context_id"]
    assert new_id != ready_context
    info = server.wait_ready(new_id)
    assert info["parent"] == ready_context and info["turns"] == 1 and info["n_pos"] > 0
    # The original is untouched (copy-on-write): the same question, the same answer.
    assert one_line(chat(server, ready_context, QUESTIONS[0]).choices[0].message.content) == before
    # The derived one goes on from the longer cache.
    assert chat(server, new_id, "What word should you remember?").usage.prompt_tokens > 0


def test_recompress_needs_the_full_cache(server, ready_context):
    status, body = server.request("POST", f"/v1/contexts/{ready_context}/compress", {"ratio": 0.1})
    assert status == 409 and body["error"]["code"] == "full_cache_not_retained"
    cid = server.upload(ratio=0.5, retain_full=True)
    first = server.wait_ready(cid)
    status, body = server.request("POST", f"/v1/contexts/{cid}/compress", {"ratio": 0.1, "method": "snapkv"})
    assert status == 202, body
    for _ in range(600):
        info = server.wait_ready(cid)
        if info["ratio"] == 0.1:
            break
        time.sleep(0.1)
    assert info["method"] == "snapkv" and abs(info["ratio_true"] - 0.1) < 0.01
    assert info["kv_bytes"] < first["kv_bytes"]
    assert chat(server, cid, QUESTIONS[1]).choices[0].message.content is not None


def test_other_methods_and_q8_cache(server):
    cid = server.upload(method="snapkv", ratio=0.4, kv_type="q8_0", params={"window": 16})
    info = server.wait_ready(cid)
    assert info["state"] == "ready" and info["kv_type"] == "q8_0" and info["method"] == "snapkv"
    assert chat(server, cid, QUESTIONS[2]).usage.completion_tokens > 0


def test_delete_and_an_upload_racing_a_delete(server, ready_context):
    cid = server.upload(ratio=0.3)
    status, body = server.request("DELETE", f"/v1/contexts/{cid}")  # while it is queued or compressing
    assert status == 200 and body["deleted"] is True
    assert server.request("GET", f"/v1/contexts/{cid}")[0] == 404
    time.sleep(3)  # the engine finishes or abandons it; nothing may reappear
    assert server.request("GET", f"/v1/contexts/{cid}")[0] == 404
    assert not glob.glob(os.path.join(server.ctx_dir, cid + ".kvz*"))
    assert server.request("DELETE", f"/v1/contexts/{cid}")[0] == 404
    assert server.request("GET", f"/v1/contexts/{ready_context}")[0] == 200  # others untouched


BAD = [
    ("POST", "/v1/chat/completions", b"{not json", 400, "invalid_json", None),
    ("POST", "/v1/chat/completions", b"[1, 2]", 400, None, None),
    ("POST", "/v1/chat/completions", b'{"messages": "hi"}', 400, "invalid_type", "messages"),
    ("POST", "/v1/chat/completions", b'{"messages": [{"role": "user", "content": 5}]}', 400, "invalid_type",
     "messages[0].content"),
    ("POST", "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": "9"}', 400,
     "invalid_type", "max_tokens"),
    ("POST", "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}], "temperature": 9}', 400,
     "invalid_value", "temperature"),
    ("POST", "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}], "stop": [1]}', 400,
     "invalid_type", "stop[0]"),
    ("POST", "/v1/completions", b'{"max_tokens": 3}', 400, "missing", "prompt"),
    ("POST", "/v1/contexts", b'{"text": 12}', 400, "invalid_type", "text"),
    ("POST", "/v1/contexts", b'{"text": "abc", "ratio": 0}', 400, "invalid_value", "ratio"),
    ("POST", "/v1/contexts", b'{"text": "abc", "method": "nope"}', 400, "invalid_value", "method"),
    ("POST", "/v1/contexts", b'{"text": "abc", "params": {"window": -5}, "method": "snapkv"}', 400, "invalid_value",
     "params"),
    ("POST", "/v1/contexts", b'{"text": "abc", "level": "sideways"}', 400, "invalid_value", "level"),
    ("POST", "/v1/contexts", b'{"text": "   "}', 400, "invalid_value", "text"),
    ("GET", "/v1/contexts/ctx-0123456789abcdef", None, 404, "context_not_found", None),
    ("GET", "/v1/contexts/../../etc/passwd", None, 404, None, None),
    ("GET", "/v1/nothing-here", None, 404, None, None),
]


@pytest.mark.parametrize("method,path,raw,status,code,param", BAD)
def test_bad_input_gets_openai_shaped_errors(server, method, path, raw, status, code, param):
    got, body = server.request(method, path, raw=raw)
    assert got == status, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if code:
        assert err["code"] == code, err
    if param:
        assert err["param"] == param, err


def test_huge_body_is_refused_and_the_server_stays_up(server):
    status, body = server.request("POST", "/v1/contexts", raw=b'{"text": "' + b"a" * (65 << 20) + b'"}')
    assert status == 413 and body["error"]["code"] == "body_too_large"
    assert server.request("GET", "/health")[0] == 200


def test_question_longer_than_the_window(server, ready_context):
    status, body = server.request("POST", "/v1/chat/completions", {
        "context_id": ready_context, "messages": [{"role": "user", "content": "word " * 9000}]})
    assert status == 400 and body["error"]["code"] == "context_length_exceeded"


def test_client_disconnecting_mid_stream_frees_its_slot(server, ready_context):
    host, port = server.url.split("//")[1].split(":")
    body = json.dumps({"context_id": ready_context, "stream": True, "max_tokens": 4000, "temperature": 1.0,
                       "messages": [{"role": "user", "content": "Write a very long essay about every record."}]})
    s = socket.create_connection((host, int(port)))
    s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
    got = b""
    while b"data:" not in got:  # headers first, then the first event
        chunk = s.recv(4096)
        assert chunk, got
        got += chunk
    s.close()
    for _ in range(200):
        if server.request("GET", "/health")[1]["slots_busy"] == 0:
            break
        time.sleep(0.05)
    assert server.request("GET", "/health")[1]["slots_busy"] == 0


def test_metrics(server):
    status, text = server.request("GET", "/metrics")
    assert status == 200
    for name in ("kvzip_requests_total{", "kvzip_prompt_tokens_total", "kvzip_generated_tokens_total",
                 "kvzip_prefill_tokens_per_second", "kvzip_decode_tokens_per_second", "kvzip_queue_depth",
                 'kvzip_contexts{state="ready"}', 'kvzip_kv_bytes_held{kind="compressed"}'):
        assert name in text, name


def test_api_key(tmp_path):
    s = Server(tmp_path / "ctx", "--api-key", "sesame").start()
    try:
        status, body = s.request("GET", "/v1/models")
        assert status == 401 and body["error"]["type"] == "authentication_error"
        assert s.request("GET", "/v1/models", headers={"Authorization": "Bearer sesame"})[0] == 200
        assert s.request("GET", "/health")[0] == 200  # health stays open for load balancers
    finally:
        s.stop()


def test_memory_budget_refuses_before_allocating(tmp_path):
    s = Server(tmp_path / "ctx", "--mem-budget", "1M").start()
    try:
        status, body = s.request("POST", "/v1/contexts", {"text": DOC})
        assert status == 400 and body["error"]["code"] == "context_too_large"
        assert s.request("GET", "/v1/contexts")[1]["data"] == []
    finally:
        s.stop()


def test_persistence_restart_kill9_and_sigterm(tmp_path):
    d = tmp_path / "ctx"
    s = Server(d).start()
    cid = s.upload(ratio=0.3)
    assert s.wait_ready(cid)["state"] == "ready"
    before = [one_line(chat(s, cid, q).choices[0].message.content) for q in QUESTIONS[:2]]
    data = open(os.path.join(d, cid + ".kvz"), "rb").read()
    # kill -9 while another upload is being compressed: the ready context survives whole.
    long_doc = (DOC + "\n") * 20
    s.upload(text=long_doc, ratio=0.3)
    time.sleep(0.5)
    s.stop(signal.SIGKILL)
    assert open(os.path.join(d, cid + ".kvz"), "rb").read() == data
    s = Server(d).start()
    listed = s.request("GET", "/v1/contexts")[1]["data"]
    assert [c["id"] for c in listed] == [cid] and listed[0]["state"] == "ready"
    assert not glob.glob(os.path.join(d, "*.tmp"))
    assert [one_line(chat(s, cid, q).choices[0].message.content) for q in QUESTIONS[:2]] == before
    # SIGTERM during a streamed answer: the answer completes, the server exits 0.
    c = openai.OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=0, timeout=300)
    stream = c.chat.completions.create(model="m", messages=[{"role": "user", "content": QUESTIONS[0]}],
                                       max_tokens=24, temperature=0, stream=True, extra_body={"context_id": cid})
    first = next(iter(stream))
    s.proc.send_signal(signal.SIGTERM)
    rest = list(stream)
    text = (first.choices[0].delta.content or "") + "".join(ch.choices[0].delta.content or "" for ch in rest if ch.choices)
    assert one_line(text) == before[0]
    assert s.stop() == 0
    s = Server(d).start()
    try:
        assert [c["id"] for c in s.request("GET", "/v1/contexts")[1]["data"]] == [cid]
    finally:
        s.stop()


def test_a_context_of_another_model_is_skipped_and_kept(tmp_path):
    d = tmp_path / "ctx"
    os.makedirs(d)
    foreign = os.path.join(d, "ctx-00000000000000aa.kvz")
    with open(foreign, "wb") as f:  # a valid header of another model (fingerprint 1)
        f.write(b"KVZCTX1\0" + (3).to_bytes(4, "little") + (1).to_bytes(8, "little") + bytes(32))
    s = Server(d).start()
    try:
        assert s.request("GET", "/v1/contexts")[1]["data"] == []
        assert "made for another model" in s.log_text()
        assert os.path.exists(foreign)
    finally:
        s.stop()
