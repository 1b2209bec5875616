# Scale-out (docs/scale-out.md): two `kvzip serve` replicas sharing one Redis store, nginx in
# front, all on loopback and started here. Upload once through nginx, the same greedy answers
# from every replica; kill -9 a replica during a stream and during a compression; restart
# Redis; a replica started later; a delete that reaches every replica. Skipped, saying so,
# only when redis-server or nginx is not installed (scripts/setup.sh installs both).
import ctypes
import ctypes.util
import os
import signal
import struct
import time

import openai
import pytest

from cluster import Nginx, Redis, missing_programs
from conftest import DOC, Client, Server, ask_cli

pytestmark = pytest.mark.skipif(bool(missing_programs()),
                                reason=f"not installed: {', '.join(missing_programs())} (scripts/setup.sh installs them)")

CLAIM_MS = 3000
CHUNK = 65536  # small chunks, so that a context spans several
QUESTIONS = ["Where does Chloe Smith live?", "What is Bruno Tanaka's job?", "Who is the chemist?"]
LONG_DOC = (DOC + "\n") * 20  # several seconds of prefill and scoring on 2 cores


class Cluster:
    def __init__(self, tmp):
        self.tmp = tmp
        self.redis = Redis(tmp / "redis").start()
        self.store = f"{self.redis.url}?chunk={CHUNK}&claim_ms={CLAIM_MS}"
        self.replicas = [self.start_replica(name) for name in "ab"]
        self.nginx = Nginx(tmp / "nginx", [hostport(r) for r in self.replicas]).start()
        self.front = Client(self.nginx.url)

    def start_replica(self, name, port=0):
        return Server(self.tmp / f"replica-{name}", store=self.store, port=port).start()

    def restart(self, i):
        """A replica that was killed comes back on the same port (nginx's upstream list)."""
        port = int(hostport(self.replicas[i]).split(":")[1])
        self.replicas[i] = self.start_replica("ab"[i], port)

    def stop(self):
        self.nginx.stop()
        for r in self.replicas:
            r.stop()
        self.redis.stop()


def hostport(server):
    return server.url.split("//")[1]


_xxh = ctypes.CDLL(ctypes.util.find_library("xxhash") or "libxxhash.so.0")
_xxh.XXH3_64bits.restype = ctypes.c_uint64
_xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def file_parts(b):
    """A context file (format v4): its XXH3-64 checksum verified (libxxhash, the library the
    engine links), (fingerprint, payload bytes, stored payload: a zstd frame, or raw when n_z == n_raw)."""
    assert b[:8] == b"KVZCTX1\0" and struct.unpack_from("<I", b, 8)[0] == 4
    fp, n_info, n_raw, n_z = struct.unpack_from("<QQQQ", b, 12)
    assert len(b) == 44 + n_info + n_z + 8
    body = b[:-8]
    assert struct.unpack_from("<Q", b, len(b) - 8)[0] == _xxh.XXH3_64bits(body, len(body)), "checksum mismatch"
    return fp, n_raw, b[44 + n_info:44 + n_info + n_z]


def ask(url, cid, q, max_tokens=24, **kw):
    c = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300)
    r = c.chat.completions.create(model="m", messages=[{"role": "user", "content": q}], max_tokens=max_tokens,
                                  temperature=0, extra_body={"context_id": cid, **kw})
    return r.choices[0].message.content.replace("\n", " ").replace("\r", " ").rstrip()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    yield c
    c.stop()


@pytest.fixture(scope="module")
def shared_ctx(cluster):
    cid = cluster.front.upload(ratio=0.3)  # nginx hands it to one replica
    info = cluster.front.wait_ready(cid)   # the polls go round robin: both report its state
    assert info["state"] == "ready", info
    return cid


@pytest.fixture(scope="module")
def answers(cluster, shared_ctx):
    return [ask(cluster.replicas[0].url, shared_ctx, q) for q in QUESTIONS]


def test_upload_through_nginx_same_answers_everywhere(cluster, shared_ctx, answers, tmp_path):
    for r in cluster.replicas[1:]:
        assert [ask(r.url, shared_ctx, q) for q in QUESTIONS] == answers
    assert [ask(cluster.front.url, shared_ctx, q) for q in QUESTIONS] == answers
    for r in cluster.replicas:  # each fetched it from the store on first use and holds it now
        status, info = r.request("GET", f"/v1/contexts/{shared_ctx}")
        assert status == 200 and info["state"] == "ready" and info["in_memory"], info
    # The store's bytes are a context file: `kvzip ask --load` answers the same from them.
    path = tmp_path / f"{shared_ctx}.kvz"
    r = cluster.redis.client()
    path.write_bytes(r.context_bytes(shared_ctx))
    assert int(r.hgetall(f"kvzip:ctx:{shared_ctx}")["chunks"]) > 1
    assert ask_cli(str(path), QUESTIONS) == answers


def test_store_bytes_equal_a_single_servers_file(cluster, shared_ctx, tmp_path):
    blob = cluster.redis.client().context_bytes(shared_ctx)
    single = Server(tmp_path / "single").start()
    try:
        cid = single.upload(ratio=0.3)
        assert single.wait_ready(cid)["state"] == "ready"
    finally:
        assert single.stop() == 0
    with open(tmp_path / "single" / f"{cid}.kvz", "rb") as f:
        file = f.read()
    # Byte for byte the same cache (fingerprint, payload, zstd frame); the info block differs
    # only by what it records of the run (id, creation time, timings).
    assert file_parts(blob) == file_parts(file)


def test_a_replica_started_later_serves_existing_contexts(cluster, shared_ctx, answers):
    c = cluster.start_replica("late")
    try:
        status, info = c.request("GET", f"/v1/contexts/{shared_ctx}")
        assert status == 200 and info["state"] == "ready" and not info["in_memory"], info
        assert shared_ctx in [x["id"] for x in c.request("GET", "/v1/contexts")[1]["data"]]
        assert [ask(c.url, shared_ctx, q) for q in QUESTIONS] == answers  # no upload: fetched
        assert c.request("GET", f"/v1/contexts/{shared_ctx}")[1]["in_memory"]
    finally:
        assert c.stop() == 0


def test_a_delete_reaches_every_replica(cluster):
    a, b = cluster.replicas
    cid = a.upload(ratio=0.3)
    assert b.wait_ready(cid)["state"] == "ready"  # b sees a's upload through the store
    for r in (a, b):
        assert ask(r.url, cid, QUESTIONS[0])  # both hold it in memory now
    status, body = b.request("DELETE", f"/v1/contexts/{cid}")
    assert status == 200 and body["deleted"], body
    for r in (a, b, cluster.front):
        assert r.request("GET", f"/v1/contexts/{cid}")[0] == 404
        status, body = r.request("POST", "/v1/chat/completions", {
            "context_id": cid, "messages": [{"role": "user", "content": QUESTIONS[0]}], "max_tokens": 4})
        assert status == 404 and body["error"]["code"] == "context_not_found", body
    assert cid not in [x["id"] for x in a.request("GET", "/v1/contexts")[1]["data"]]
    r = cluster.redis.client()
    assert r("KEYS", f"kvzip:*{cid}*") == [] and r("SISMEMBER", "kvzip:contexts", cid) == 0
    assert b.request("DELETE", f"/v1/contexts/{cid}")[0] == 404


def test_kill9_during_a_stream_then_the_retry_succeeds(cluster, shared_ctx):
    c = openai.OpenAI(base_url=cluster.front.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    req = dict(model="m", messages=[{"role": "user", "content": "Tell me about every record, one by one."}],
               max_tokens=200, temperature=0, extra_body={"context_id": shared_ctx, "ignore_eos": True})
    stream = c.chat.completions.create(stream=True, **req)
    it = iter(stream)
    got = ""
    while not got:
        ch = next(it)
        got += (ch.choices[0].delta.content or "") if ch.choices else ""
    busy = [i for i, r in enumerate(cluster.replicas) if r.request("GET", "/health")[1]["slots_busy"] > 0]
    assert len(busy) == 1, busy
    cluster.replicas[busy[0]].stop(signal.SIGKILL)
    # The client gets a clean error: the stream breaks off without its final event.
    # (The client's transport error, whichever HTTP library it is built on; never an answer
    # that looks complete.)
    with pytest.raises(Exception) as broke:
        for ch in it:
            assert not (ch.choices and ch.choices[0].finish_reason), ch
            got += (ch.choices[0].delta.content or "") if ch.choices else ""
    assert not isinstance(broke.value, AssertionError), broke.value
    # The same request again through nginx: the live replica answers it, the same greedy text.
    r = c.chat.completions.create(**req)
    assert r.choices[0].finish_reason == "length" and r.choices[0].message.content.startswith(got)
    cluster.restart(busy[0])


def test_kill9_during_a_compression(cluster, shared_ctx, answers):
    a, b = cluster.replicas
    r = cluster.redis.client()
    before = r.context_bytes(shared_ctx)
    cid = a.upload(text=LONG_DOC, ratio=0.3)
    # b shows the progress a writes to the store, and refuses to answer from it yet.
    deadline = time.time() + 120
    while True:
        info = b.request("GET", f"/v1/contexts/{cid}")[1]
        if info["state"] in ("prefilling", "scoring") and info["progress"] > 0:
            break
        assert info["state"] != "ready" and time.time() < deadline, info  # LONG_DOC takes longer than this
        time.sleep(0.05)
    status, body = b.request("POST", "/v1/chat/completions", {
        "context_id": cid, "messages": [{"role": "user", "content": QUESTIONS[0]}]})
    assert status == 409 and body["error"]["code"] == "context_not_ready", body
    a.stop(signal.SIGKILL)
    # a's claim expires; the next replica to look marks the upload failed and says why.
    deadline = time.time() + CLAIM_MS / 1000 + 30
    while (info := b.request("GET", f"/v1/contexts/{cid}")[1])["state"] != "failed":
        assert time.time() < deadline, info
        time.sleep(0.1)
    assert "stopped before finishing" in info["error"] and "upload the document again" in info["error"], info
    status, body = b.request("POST", "/v1/chat/completions", {
        "context_id": cid, "messages": [{"role": "user", "content": QUESTIONS[0]}]})
    assert status == 409 and body["error"]["code"] == "context_failed", body
    # Nothing half-written: no chunk of it outlives its expiry; the ready context is unchanged.
    for key in r("KEYS", f"kvzip:blob:{cid}:*"):
        assert r("PTTL", key) > 0, key
    assert r.context_bytes(shared_ctx) == before
    # nginx routes around the dead replica.
    assert ask(cluster.front.url, shared_ctx, QUESTIONS[0]) == answers[0]
    cluster.restart(0)
    listed = {x["id"]: x for x in cluster.replicas[0].request("GET", "/v1/contexts")[1]["data"]}
    assert listed[cid]["state"] == "failed" and listed[shared_ctx]["state"] == "ready"


def test_redis_restart_keeps_every_ready_context(cluster, shared_ctx, answers):
    ready = {x["id"] for x in cluster.front.request("GET", "/v1/contexts")[1]["data"] if x["state"] == "ready"}
    assert shared_ctx in ready
    r = cluster.redis.client()
    before = {cid: r.context_bytes(cid) for cid in ready}
    r.close()
    assert cluster.redis.stop() == 0
    cluster.redis.start()  # the same port and directory: the append-only file is read back
    r = cluster.redis.client()
    assert {cid: r.context_bytes(cid) for cid in ready} == before
    for rep in cluster.replicas:  # they reconnect by themselves
        listed = {x["id"]: x["state"] for x in rep.request("GET", "/v1/contexts")[1]["data"]}
        assert all(listed.get(cid) == "ready" for cid in ready), listed
        assert ask(rep.url, shared_ctx, QUESTIONS[1]) == answers[1]
    late = cluster.start_replica("after-redis-restart")  # fetches from the restarted store
    try:
        assert [ask(late.url, shared_ctx, q) for q in QUESTIONS] == answers
    finally:
        assert late.stop() == 0
