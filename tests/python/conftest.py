"""Fixtures of the kvzip package tests: the default model (KVZ_TEST_MODEL, set by run.sh),
the kvzip binary (KVZ_CLI) and a short context file."""
import os
import subprocess
from pathlib import Path

import pytest

import kvzip

THREADS = 2  # the CLI runs with -t 2 too: same thread count, same arithmetic

CONTEXT = (
    "This is my basic profile. My name is Kim and I live in Seoul. My major is computer science. "
    "I work at a small robotics company called Tidewater Labs, where I build control software for "
    "warehouse arms. My sister Mina is a doctor in Busan. On weekends I play the cello in a community "
    "orchestra, and my favourite composer is Dvorak. I have a grey cat named Pebble who is seven years "
    "old. Last year I ran the Seoul marathon in four hours and twelve minutes. I am learning Spanish "
    "because I plan to move to Valencia in two years."
)
QUESTIONS = ["What is my name?", "What is the name of my cat?"]


def default_model_path() -> str:
    p = os.environ.get("KVZ_TEST_MODEL") or str(
        Path.home() / ".cache/kvzip/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf")
    if not Path(p).exists():
        pytest.skip(f"no model at {p} (scripts/pull-model.sh smollm2-135m)")
    return p


@pytest.fixture(scope="session")
def model_path() -> str:
    return default_model_path()


@pytest.fixture(scope="session")
def model(model_path) -> kvzip.Model:
    return kvzip.Model(model_path, threads=THREADS)


@pytest.fixture(scope="session")
def cli() -> str:
    p = os.environ.get("KVZ_CLI")
    if not p or not Path(p).exists():
        pytest.fail("KVZ_CLI must name the kvzip binary (tests/python/run.sh sets it)")
    return p


@pytest.fixture()
def context_file(tmp_path) -> Path:
    f = tmp_path / "context.txt"
    f.write_text(CONTEXT, encoding="utf-8")
    return f


def run_cli(cli: str, *args: str) -> str:
    r = subprocess.run([cli, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
    assert r.returncode == 0, f"kvzip {' '.join(args)} failed:\n{r.stderr}"
    return r.stdout


def cli_answers(out: str, marker: str) -> list:
    """The answers the CLI printed after `marker`, without its '   [same]' / timing tails."""
    got = []
    for line in out.splitlines():
        i = line.find(marker)
        if i < 0:
            continue
        a = line[i + len(marker):]
        for tail in ("   [", "   ("):
            j = a.rfind(tail)
            if j >= 0:
                a = a[:j]
        got.append(a)
    return got


def one_line(s: str) -> str:
    return s.replace("\n", " ").replace("\r", " ")
