"""The JavaScript unit tests (``node --test``, no packages): the browser client's pure
parts and its reconnect/fallback/outbox logic against a fake WebSocket
(clients/js/test/), and the web pages' models (clients/web/test/)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.e2e.support import ROOT

NODE = shutil.which("node")
FILES = ["clients/js/test/roomlog.test.mjs", "clients/web/test/models.test.mjs"]


def test_node_unit_tests() -> None:
    if NODE is None:  # fail, not skip: a missing tool must not hide the tests it runs
        pytest.fail("node (18 or newer) is not on PATH: apt-get install nodejs")
    done = subprocess.run([NODE, "--test", *FILES], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
