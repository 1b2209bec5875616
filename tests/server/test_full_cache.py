# "full_cache": true answers from a context's retained unpruned cache (retain_full): the
# answer the compressed one is judged against, equal to `kvzip ask`'s full-cache answer.
import re
import subprocess

from conftest import DOC, KVZIP, MODEL


def test_full_cache_answers_equal_kvzip_ask(server, tmp_path):
    q = "Where does Chloe Smith live?"
    cid = server.upload(ratio=0.3, retain_full=True)
    assert server.wait_ready(cid)["state"] == "ready"

    def ask(**kw):
        status, body = server.request("POST", "/v1/chat/completions", {
            "messages": [{"role": "user", "content": q}], "max_tokens": 24, "temperature": 0, "context_id": cid, **kw})
        assert status == 200, body
        return body["choices"][0]["message"]["content"].replace("\n", " ").replace("\r", " ").rstrip()

    doc = tmp_path / "doc.txt"
    doc.write_text(DOC)
    out = subprocess.run([KVZIP, "ask", "-m", MODEL, "--context", str(doc), "-q", q, "-n", "24", "-t", "2",
                          "--ratio", "0.3", "--compare-full"], capture_output=True, text=True, check=True).stdout
    full = re.search(r"^  full cache:\s+(.*?)   \(", out, re.M).group(1).rstrip()
    compressed = re.search(r"^  compressed \(30%\): (.*?)   \[", out, re.M).group(1).rstrip()
    assert ask(full_cache=True) == full
    assert ask() == compressed


def test_full_cache_errors(server, ready_context):
    base = {"messages": [{"role": "user", "content": "Who?"}], "max_tokens": 4}
    status, body = server.request("POST", "/v1/chat/completions", {**base, "context_id": ready_context,
                                                                    "full_cache": True})
    assert status == 409 and body["error"]["code"] == "full_cache_not_retained" and body["error"]["param"] == "full_cache"
    status, body = server.request("POST", "/v1/chat/completions", {**base, "full_cache": True})
    assert status == 400 and body["error"]["param"] == "full_cache"
    status, body = server.request("POST", "/v1/chat/completions", {**base, "full_cache": "yes",
                                                                    "context_id": ready_context})
    assert status == 400 and body["error"]["code"] == "invalid_type" and body["error"]["param"] == "full_cache"
    status, body = server.request("POST", "/v1/chat/completions", {**base, "full_cache": True, "update_cache": True,
                                                                    "context_id": ready_context})
    assert status == 400 and body["error"]["param"] == "full_cache"
