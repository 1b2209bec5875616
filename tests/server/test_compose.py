# context_ids: one question over several stored contexts, composed per request
# (docs/composition.md). The answers equal `kvzip ask --load a.kvz --load b.kvz` (greedy, the
# same files); the responses name the ids; every bad id or combination is a 4xx naming it.
import os
import re
import subprocess

import openai
import pytest

from conftest import KVZIP, MODEL

DOC_B = "\n".join(
    f"Note {i + 1}: the ferry {name} sails from {port} every {day} with {n} passengers."
    for i, (name, port, day, n) in enumerate([
        ("Aurora", "Bergen", "Monday", "120"), ("Bellis", "Cadiz", "Tuesday", "85"),
        ("Corvid", "Dover", "Friday", "240"), ("Delphine", "Split", "Sunday", "60")]))
QUESTIONS = ["Where does Chloe Smith live?", "From which port does the ferry Corvid sail?"]


@pytest.fixture(scope="module")
def two(server):
    a = server.upload(ratio=0.5)
    b = server.upload(text=DOC_B, ratio=0.5)
    for cid in (a, b):
        assert server.wait_ready(cid)["state"] == "ready"
    return a, b


def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300)


def composed_cli(server, ids, questions, n=24):
    cmd = [KVZIP, "ask", "-m", MODEL, "-n", str(n), "-t", "2"]
    for cid in ids:
        cmd += ["--load", os.path.join(server.ctx_dir, cid + ".kvz")]
    for q in questions:
        cmd += ["-q", q]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [m.rstrip() for m in re.findall(r"^  answer: (.*?)   \(", out, re.M)]


def test_chat_over_two_contexts_equals_kvzip_ask(server, two):
    got = []
    for q in QUESTIONS:
        r = client(server).chat.completions.create(model="m", messages=[{"role": "user", "content": q}],
                                                   max_tokens=24, temperature=0,
                                                   extra_body={"context_ids": list(two)})
        assert r.model_extra["context_ids"] == list(two)
        assert "context_id" not in r.model_extra  # nothing stored: no derived context
        got.append(r.choices[0].message.content.replace("\n", " ").rstrip())
    assert got == composed_cli(server, two, QUESTIONS)


def test_streaming_and_completions_over_two_contexts(server, two):
    kw = dict(model="m", messages=[{"role": "user", "content": QUESTIONS[1]}], max_tokens=16, temperature=0,
              extra_body={"context_ids": [two[1], two[0]]})
    whole = client(server).chat.completions.create(**kw).choices[0].message.content
    chunks = list(client(server).chat.completions.create(stream=True, **kw))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole
    assert chunks[-1].model_extra["context_ids"] == [two[1], two[0]]
    r = client(server).completions.create(model="m", prompt=" The ferry Corvid", max_tokens=8, temperature=0,
                                          extra_body={"context_ids": list(two)})
    assert r.choices[0].text and r.model_extra["context_ids"] == list(two)


def test_one_id_is_the_plain_context(server, two):
    r = client(server).chat.completions.create(model="m", messages=[{"role": "user", "content": QUESTIONS[0]}],
                                               max_tokens=12, temperature=0, extra_body={"context_ids": [two[0]]})
    plain = client(server).chat.completions.create(model="m", messages=[{"role": "user", "content": QUESTIONS[0]}],
                                                   max_tokens=12, temperature=0, extra_body={"context_id": two[0]})
    assert r.choices[0].message.content == plain.choices[0].message.content
    assert r.model_extra["context_id"] == two[0]


@pytest.mark.parametrize("extra,status,param,code", [
    ({"context_ids": []}, 400, "context_ids", None),
    ({"context_ids": "abc"}, 400, "context_ids", None),
    ({"context_ids": ["x"] * 17}, 400, "context_ids", None),
    ({"context_ids": [1, 2]}, 400, "context_ids[0]", None),
    ({"context_ids": ["A"], "context_id": "A"}, 400, "context_ids", None),
    ({"context_ids": ["A", "B"], "update_cache": True}, 400, "update_cache", None),
    ({"context_ids": ["A", "B"], "full_cache": True}, 400, "full_cache", None),
    ({"context_ids": ["A", "ctx-doesnotexist"]}, 404, "context_ids[1]", "context_not_found"),
])
def test_bad_context_ids_name_the_param(server, two, extra, status, param, code):
    ids = {"A": two[0], "B": two[1]}
    body = {k: ([ids.get(x, x) for x in v] if isinstance(v, list) else ids.get(v, v)) for k, v in extra.items()}
    s, r = server.request("POST", "/v1/chat/completions",
                          {"model": "m", "messages": [{"role": "user", "content": "hi"}], **body})
    assert s == status, r
    err = r["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert err["param"] == param, err
    if code:
        assert err["code"] == code, err
