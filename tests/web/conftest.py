# Fixtures of the browser tests: the server helpers of tests/server/conftest.py (a real
# `kvzip serve` on a free loopback port) and one headless Chromium for the module.
import importlib.util
import os

import pytest

from cdp import Browser

_spec = importlib.util.spec_from_file_location(
    "server_conftest", os.path.join(os.path.dirname(__file__), "..", "server", "conftest.py"))
srv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(srv)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser(tmp_path_factory.mktemp("chromium"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def web_server(tmp_path_factory):
    # Two slots: the compressed and the full-cache answer stream side by side.
    s = srv.Server(tmp_path_factory.mktemp("web") / "contexts", "--parallel", "2").start()
    yield s
    assert s.stop() == 0, s.log_text()
