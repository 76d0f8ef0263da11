"""Fixtures of the browser tests: one Chromium for tests/web (Debian's ``chromium``,
driven by Playwright for Python; ``playwright install`` is not needed), a hub per test,
the pages a test opens (checked for console errors, page errors and failed requests),
and a token endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import ROOT, Server
from tests.web.support import CHROMIUM, Pages, TokenEndpoint, playwright_api


# One Chromium for the package, not the session: Playwright's sync API holds an event
# loop of its own while it runs, and asyncio tests collected after tests/web would fail.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if playwright_api is None:
        pytest.fail("pip install playwright (the test extra); `playwright install` is not "
                    "needed: the tests drive the system's Chromium")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium "
                    "(or set ROOMLOG_CHROMIUM)")
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM)
        try:
            yield chromium
        finally:
            chromium.close()


def web_hub(workdir: Path, **settings: object) -> Server:
    return Server(workdir, None, web_dir=str(ROOT / "clients"), **settings)


def serving(workdir: Path, **settings: object) -> Iterator[Server]:
    """A hub with the web app for one test; its log is checked at the end."""
    srv = web_hub(workdir, **settings).start()
    try:
        yield srv
    finally:
        srv.stop()
    srv.assert_clean_log()


def watching(browser: Any, server: Server) -> Iterator[Pages]:
    """The pages of one test; what went wrong in them fails it at the end."""
    opened = Pages(browser, server)
    yield opened
    opened.close()
    opened.check()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Server]:
    yield from serving(tmp_path / "hub")


@pytest.fixture
def pages(browser: Any, hub: Server) -> Iterator[Pages]:
    yield from watching(browser, hub)


@pytest.fixture
def token_endpoint() -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint().start()
    yield endpoint
    endpoint.stop()
