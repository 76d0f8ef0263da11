"""The release as a user gets it: the wheel built from this tree, installed into a fresh
virtualenv (pinned by constraints.txt), run from outside the source tree.

* ``roomlog serve`` from the wheel serves the web app at ``/`` and the browser client at
  ``/client/roomlog.js``: the copies packed into the wheel, byte for byte (the vendored
  chart library and its licence too); and ``/openapi.json`` with its docs page
  ``/docs`` and the vendored Swagger UI;
* ``roomlog demo`` from the wheel gives four pages that work in Chromium: each shows what
  was seeded, and the customer's approval reaches the technician's page live.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.support import ROOT, START_TIMEOUT, TIMEOUT, free_port
from tests.e2e.test_demo import Demo
from tests.web.support import expect

INSTALL_TIMEOUT = 600  # seconds: pip downloads what its cache lacks
_SOURCE = ["roomlog", "clients", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md"]


def run(*command: str | Path, cwd: Path | None = None,
        timeout: float = INSTALL_TIMEOUT) -> str:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ROOMLOG_", "PIP_CONSTRAINT", "VIRTUAL_ENV"))}
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{command}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel of this tree installed; its ``bin``."""
    work = tmp_path_factory.mktemp("release")
    tree = work / "tree"  # a copy: building in place would leave build/ in the clone
    for name in _SOURCE:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns(
                "__pycache__", "*.egg-info", "_clients", "node_modules", "screenshots"))
        else:
            shutil.copy2(source, tree / name)
    constraints = ROOT / "constraints.txt"
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-c", constraints,
        "-w", work / "dist", tree)
    (wheel,) = (work / "dist").glob("roomlog-*.whl")
    run(sys.executable, "-m", "venv", work / "venv")
    bin_dir = work / "venv" / "bin"
    run(bin_dir / "python", "-m", "pip", "install", "--quiet", "-c", constraints, wheel)
    return bin_dir


def test_the_wheel_serves_the_web_app(venv: Path, tmp_path: Path) -> None:
    where = run(venv / "python", "-c",
                "import roomlog, roomlog.webapp as w; print(roomlog.__file__, w.web_root(''))",
                cwd=tmp_path)
    module, root = where.split()
    assert "site-packages" in module and root == str(Path(module).parent / "_clients")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMLOG_")}
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([venv / "roomlog", "serve", "--port", str(port)], cwd=tmp_path,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(timeout=TIMEOUT) as http:
            _wait_ready(http, base, proc, log)
            index = http.get(f"{base}/")
            assert index.status_code == 200 and "roomlog" in index.text
            assert index.content == (ROOT / "clients/web/index.html").read_bytes()
            client = http.get(f"{base}/client/roomlog.js")
            assert client.status_code == 200
            assert client.content == (ROOT / "clients/js/roomlog.js").read_bytes()
            assert http.get(f"{base}/client/roomlog.d.ts").status_code == 200
            assert http.get(f"{base}/guest.html").status_code == 200
            # The analytics pages and the chart library they draw with, with its licence.
            for name in ("analytics.html", "repair-stats.html", "charts.js",
                         "vendor/uplot/uPlot.iife.min.js", "vendor/uplot/uPlot.min.css",
                         "vendor/uplot/LICENSE"):
                shipped = http.get(f"{base}/{name}")
                assert shipped.status_code == 200, name
                assert shipped.content == (ROOT / "clients/web" / name).read_bytes(), name
            assert http.get(f"{base}/test/").status_code == 404  # tests stay in the source
            # The API description and its docs page, with the vendored Swagger UI.
            assert http.get(f"{base}/openapi.json").json()["openapi"] == "3.1.0"
            assert http.get(f"{base}/docs").status_code == 200
            assets = ROOT / "roomlog/openapi/assets"
            for name in ("swagger-ui-bundle.js", "swagger-ui.css", "docs.js"):
                served = http.get(f"{base}/docs/assets/{name}")
                assert served.content == (assets / name).read_bytes(), name
    finally:
        proc.terminate()
        proc.wait(30)
    assert "no web app" not in log.read_text(), log.read_text()


def _wait_ready(http: httpx.Client, base: str, proc: subprocess.Popen[bytes],
                log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        with contextlib.suppress(httpx.TransportError):
            if http.get(f"{base}/health/ready").status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"not ready in {START_TIMEOUT}s:\n{log.read_text()}")


@pytest.fixture
def demo(venv: Path, tmp_path: Path) -> Iterator[Demo]:
    run_ = Demo([str(venv / "roomlog")], tmp_path)
    try:
        yield run_
    finally:
        code = run_.stop()
    assert code == 130 and "Traceback" not in run_.output, run_.output


def test_the_wheel_s_demo_gives_four_working_pages(demo: Demo, browser: Any) -> None:
    tabs = {}
    errors: list[str] = []
    for page, url in demo.links.items():
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        tab = context.new_page()
        tab.on("pageerror", lambda exc, page=page: errors.append(f"{page}: {exc}"))
        tab.goto(url)
        expect(tab.get_by_test_id("connection")).to_have_attribute("data-state", "connected")
        tabs[page] = tab
    guest, dj, customer, tech = (tabs[p] for p in ("guest.html", "dj.html", "repair.html",
                                                   "tech.html"))
    expect(guest.get_by_test_id("mine")).to_contain_text("One More Time")
    expect(guest.get_by_test_id("up-next")).to_contain_text("September")
    expect(dj.get_by_test_id("pending")).to_contain_text("Dancing On My Own")
    expect(dj.get_by_test_id("queue")).to_contain_text("September")
    expect(customer.get_by_test_id("quote")).to_contain_text("89")
    expect(tech.get_by_test_id("ticket-status")).to_have_attribute("class",
                                                                   "chip awaiting_approval")
    customer.get_by_test_id("approve").click()
    expect(tech.get_by_test_id("ticket-status")).to_have_attribute("class", "chip repairing")
    expect(customer.get_by_test_id("quote")).to_be_hidden()
    for tab in tabs.values():
        tab.context.close()
    assert not errors, errors
