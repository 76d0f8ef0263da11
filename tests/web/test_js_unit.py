"""The JavaScript unit tests (``node --test``, no packages): the browser client's pure
parts, its reconnect/fallback/outbox logic against a fake WebSocket and its store and
token renewal (clients/js/test/), and the web pages' models and catalogues
(clients/web/test/). Node 18 or newer is needed, like npm for the browser tests: a
missing node fails here rather than skipping the tests."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.e2e.support import ROOT

NODE = shutil.which("node")
FILES = ["clients/js/test/", "clients/web/test/"]


def test_node_unit_tests() -> None:
    if NODE is None:  # fail, not skip: a missing tool must not hide the tests it runs
        pytest.fail("node (18 or newer) is not on PATH: apt-get install nodejs")
    done = subprocess.run([NODE, "--test", *FILES], cwd=ROOT,
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout and "# pass 0" not in done.stdout, done.stdout[-2000:]
