# Fixtures of the server tests: a real `kvzip serve` on a free loopback port, started and
# stopped by the tests themselves, with its own context directory.
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

KVZIP = os.environ.get("KVZ_CLI", "")
MODEL = os.environ.get("KVZ_TEST_MODEL", os.path.expanduser("~/.cache/kvzip/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"))

# A short document with facts to ask about (the default 135M model answers from it).
DOC = "\n".join(
    f"Record {i + 1}: {n} lives in {c}, works as a {j}, and was born in {y}."
    for i, (n, c, j, y) in enumerate([
        ("Alice Moreau", "Lyon", "teacher", "1984"), ("Bruno Tanaka", "Osaka", "baker", "1979"),
        ("Chloe Smith", "Leeds", "pilot", "1991"), ("Dmitri Volkov", "Kazan", "chemist", "1968"),
        ("Elena Rossi", "Turin", "architect", "1975"), ("Farid Haddad", "Beirut", "surgeon", "1988")]))


class Client:
    """Plain HTTP to a server (or to nginx in front of several), for what the openai client
    does not cover (our contexts API, errors)."""

    def __init__(self, url=None):
        self.url = url

    def request(self, method, path, body=None, raw=None, headers=None, timeout=120):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                text = r.read().decode()
                return r.status, (json.loads(text) if r.headers.get_content_type() == "application/json" else text)
        except urllib.error.HTTPError as e:
            text = e.read().decode()
            try:
                return e.code, json.loads(text)
            except ValueError:
                return e.code, text

    def upload(self, text=DOC, **fields):
        status, body = self.request("POST", "/v1/contexts", {"text": text, **fields})
        assert status == 202, body
        return body["id"]

    def wait_ready(self, cid, timeout=300):
        deadline = time.time() + timeout
        while time.time() < deadline:
            status, body = self.request("GET", f"/v1/contexts/{cid}")
            assert status == 200, body
            if body["state"] in ("ready", "failed"):
                return body
            time.sleep(0.1)
        raise AssertionError(f"context {cid} not ready after {timeout} s")


class Server(Client):
    """One `kvzip serve` process; its log goes to a file next to its context directory.
    With `store` (e.g. redis://...), that store replaces the directory (which then only
    names the log)."""

    def __init__(self, ctx_dir, *extra, store=None, threads=2, port=0, env=None):
        super().__init__()
        self.env = env
        self.port = port
        self.ctx_dir = str(ctx_dir)
        self.extra = list(extra)
        self.store = store
        self.threads = threads
        self.proc = None
        self.url = None
        self.log_path = self.ctx_dir.rstrip("/") + ".log"

    def start(self, timeout=120):
        assert KVZIP, "KVZ_CLI is not set (the path of the kvzip binary)"
        self.log = open(self.log_path, "a")
        skip = len(self.log_text()) if os.path.exists(self.log_path) else 0  # earlier runs' lines
        where = ["--store", self.store] if self.store else ["--context-dir", self.ctx_dir]
        self.proc = subprocess.Popen(
            [KVZIP, "serve", "-m", MODEL, "--port", str(self.port), *where, "-t", str(self.threads), *self.extra],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=None if self.env is None else {**os.environ, **self.env})
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_text()}")
            m = re.findall(r"listening on (http://[0-9.]+:\d+)", self.log_text()[skip:])
            if m:
                self.url = m[-1]
                return self
            time.sleep(0.05)
        raise RuntimeError("server did not start:\n" + self.log_text())

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=120):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("srv") / "contexts").start()
    yield s
    assert s.stop() == 0, s.log_text()


@pytest.fixture(scope="module")
def ready_context(server):
    cid = server.upload(ratio=0.3)
    info = server.wait_ready(cid)
    assert info["state"] == "ready", info
    return cid


def ask_cli(context_file, questions, n=24):
    """Greedy answers of `kvzip ask --load` for the same stored context."""
    cmd = [KVZIP, "ask", "-m", MODEL, "--load", context_file, "-n", str(n), "-t", "2"]
    for q in questions:
        cmd += ["-q", q]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [m.rstrip() for m in re.findall(r"^  answer: (.*?)   \(", out, re.M)]


def parallel(fns):
    """Runs the callables at once, returns their results in order."""
    out = [None] * len(fns)
    errs = []

    def run(i, f):
        try:
            out[i] = f()
        except Exception as e:  # noqa: BLE001 - re-raised below
            errs.append(e)
    ts = [threading.Thread(target=run, args=(i, f)) for i, f in enumerate(fns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errs:
        raise errs[0]
    return out
