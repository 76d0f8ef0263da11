"""What the browser tests share: the browser contexts of a test and what went wrong in
them, a real token endpoint (the operator's backend), axe-core, and helpers to act as
other people over HTTP.

Every page a test opens is watched: a ``console.error``, an uncaught exception or a
request that failed on the network fails the test, unless the test says it expects it
(``pages.tolerate(...)``: a server restart makes the browser log the refused
WebSocket). Requests the page cancelled itself (``net::ERR_ABORTED``: a long-poll cut
short, a reload) are not failures.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import struct
import subprocess
import threading
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from roomlog.identity import Role
from tests.e2e.support import Server, free_port, issue_token

try:
    from playwright import sync_api as playwright_api
except ImportError:  # fail (not skip) in the browser fixture, like a missing PostgreSQL
    playwright_api = None

CHROMIUM = os.environ.get("ROOMLOG_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("ROOMLOG_SCREENSHOTS") or Path(__file__).parent / "screenshots")
AXE_DIR = Path(__file__).parent / "axe"
WAIT = 15_000  # ms: upper bound for anything the page should show
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}
SIZES = {"phone": PHONE, "desktop": DESKTOP}
PAGE_ROLES = {"guest": Role.GUEST, "dj": Role.DJ, "customer": Role.CUSTOMER,
              "technician": Role.TECHNICIAN}


def expect(actual: Any) -> Any:
    """Playwright's ``expect``; every wait is at most WAIT (an upper bound, not a timing)."""
    assert playwright_api is not None
    playwright_api.expect.set_options(timeout=WAIT)
    return playwright_api.expect(actual)


class Pages:
    """Browser contexts opened by a test (one per person), closed at its end."""

    def __init__(self, browser: Any, server: Server) -> None:
        self.browser = browser
        self.server = server
        self.contexts: list[Any] = []
        self.problems: list[str] = []
        self.tolerated: list[re.Pattern[str]] = []

    def tolerate(self, *patterns: str) -> None:
        """Console errors and failed requests matching these are expected in this test."""
        self.tolerated += [re.compile(p) for p in patterns]

    def _problem(self, text: str) -> None:
        if not any(p.search(text) for p in self.tolerated):
            self.problems.append(text)

    def watch(self, tab: Any, name: str) -> Any:
        tab.on("pageerror", lambda exc: self._problem(f"{name}: page error: {exc}"))
        tab.on("console", lambda m: m.type == "error"
               and self._problem(f"{name}: console.error: {m.text}"))
        tab.on("requestfailed", lambda r: r.failure != "net::ERR_ABORTED"
               and self._problem(f"{name}: request failed: {r.url} {r.failure}"))
        return tab

    def context(self, *, viewport: dict[str, int] = PHONE, locale: str = "en-US") -> Any:
        context = self.browser.new_context(viewport=viewport, locale=locale)
        self.contexts.append(context)
        return context

    def open(self, page: str, user: str | None, role: Role | None = None, *,
             viewport: dict[str, int] = PHONE, locale: str = "en-US", context: Any = None,
             token: str | None = None, in_query: bool = False,
             before: Callable[[Any], None] | None = None, **params: str) -> Any:
        """``page`` (guest.html...) as ``user``: the token in the link's fragment (or
        query); no user: no token (a token endpoint, or the form, provides one).
        ``before(tab)`` runs before the page loads (routes, init scripts)."""
        context = context or self.context(viewport=viewport, locale=locale)
        tab = self.watch(context.new_page(), f"{page or 'index'} ({user})")
        if before is not None:
            before(tab)
        query = {"backoff": "200", **params}
        if user is not None and token is None:
            token = issue_token(user, role or Role.GUEST)
        if token is not None and in_query:
            query["token"] = token
        url = f"{self.server.base}/{page}?{urlencode(query)}"
        if token is not None and not in_query:
            url += f"#token={token}"
        tab.goto(url)
        return tab

    def close(self) -> None:
        for context in self.contexts:
            with contextlib.suppress(Exception):
                context.close()

    def check(self) -> None:
        assert not self.problems, "\n".join(self.problems)


# ---------------------------------------------------------------------------
# the operator's token endpoint


class TokenEndpoint:
    """A real HTTP token endpoint, as an operator's backend would run it (on another
    origin than the hub: CORS with credentials). POST {page, ...} -> {token}: the role
    follows the page; the user is the one "signed in" (``users[page]``). ``refuse``
    answers 401 (signed out), ``fail`` 503 (a passing failure)."""

    def __init__(self, ttl: float = 3600.0) -> None:
        self.ttl = ttl
        self.users: dict[str, str] = {}
        self.issued: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.refuse = False
        self.fail = False
        self.port = free_port()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _cors(self) -> None:
                self.send_header("access-control-allow-origin", self.headers.get("origin") or "*")
                self.send_header("access-control-allow-credentials", "true")
                self.send_header("access-control-allow-methods", "POST")
                self.send_header("access-control-allow-headers", "content-type")
                self.send_header("vary", "origin")

            def do_OPTIONS(self) -> None:  # the CORS preflight
                self.send_response(204)
                self._cors()
                self.end_headers()

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])) or b"{}")
                endpoint.requests.append(body)
                status, answer = endpoint.answer(body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self._cors()
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/roomlog-token"

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.refuse:
            return 401, {"error": "signed out", "login_url": "https://shop.example/login"}
        if self.fail:
            return 503, {"error": "try later"}
        page = str(body.get("page"))
        user = self.users.get(page, f"{page}-user")
        token = issue_token(user, PAGE_ROLES[page], ttl=self.ttl)
        self.issued.append({"page": page, "user": user, "token": token})
        return 200, {"token": token}

    def start(self) -> TokenEndpoint:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------
# axe-core, from the npm registry (pinned by tests/web/axe/package-lock.json)


def axe_script() -> Path:
    """axe.min.js, installed with ``npm ci`` from the lockfile when missing or stale."""
    lock = json.loads((AXE_DIR / "package-lock.json").read_text())
    wanted = lock["packages"]["node_modules/axe-core"]["version"]
    installed = AXE_DIR / "node_modules" / "axe-core" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != wanted:
        npm = shutil.which("npm")
        assert npm, "npm is needed to install axe-core for the accessibility checks"
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=AXE_DIR,
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"


def axe_violations(tab: Any) -> list[str]:
    """Serious and critical axe-core violations of the page as it is now."""
    if not tab.evaluate("typeof window.axe !== 'undefined'"):
        tab.add_script_tag(path=str(axe_script()))
    result = tab.evaluate("""async () => {
        const r = await axe.run(document, { resultTypes: ["violations"] });
        return r.violations.filter((v) => v.impact === "serious" || v.impact === "critical")
          .map((v) => `${v.impact} ${v.id}: ${v.help} -- `
            + v.nodes.slice(0, 4).map((n) => n.target.join(" ")).join(" | "));
    }""")
    return list(result)


# ---------------------------------------------------------------------------
# other people, over HTTP


def command(server: Server, room: str, user: str, role: Role, name: str,
            **args: Any) -> dict[str, Any]:
    """A command over HTTP, as another person's device (or a backend) would send it."""
    body = {"id": f"http-{secrets.token_hex(6)}", "name": name, "args": args}
    response = httpx.post(f"{server.base}/v1/rooms/{room}/commands", json=body, timeout=15,
                          headers={"authorization": f"Bearer {issue_token(user, role)}"})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def room_state(server: Server, room: str, user: str = "dj1",
               role: Role = Role.DJ) -> dict[str, Any]:
    response = httpx.get(f"{server.base}/v1/rooms/{room}/state", timeout=15,
                         headers={"authorization": f"Bearer {issue_token(user, role)}"})
    assert response.status_code == 200, response.text
    return response.json()["state"]  # type: ignore[no-any-return]


def submit(server: Server, room: str, user: str, title: str, artist: str,
           note: str | None = None) -> str:
    args = {"song_id": f"song:{artist}--{title}".lower().replace(" ", "-"), "title": title,
            "artist": artist}
    if note:
        args["note"] = note
    ack = command(server, room, user, Role.GUEST, "request.submit", **args)
    return str(ack["result"]["request_id"])


STEPS = ["received", "diagnosing", "awaiting_approval", "repairing", "quality_check"]


def open_ticket(server: Server, up_to: str = "received", *, customer: str = "cust1",
                amount: float = 89.0, problem: str = "No touch") -> str:
    """A repair ticket of ``customer`` (technician tech1), moved along the workflow up
    to ``up_to`` (a quote of ``amount`` EUR on the way, approved by the customer)."""
    ticket = f"t-{secrets.token_hex(3)}"
    room = f"repair:{ticket}"
    command(server, room, "tech1", Role.TECHNICIAN, "ticket.create", customer_id=customer,
            device="Pixel 7", problem=problem, technicians=["tech1"])
    for status in STEPS[1:STEPS.index(up_to) + 1]:
        if status == "repairing":
            command(server, room, customer, Role.CUSTOMER, "quote.approve")
            continue
        extra = {"quote": {"amount": amount, "currency": "EUR"}} \
            if status == "awaiting_approval" else {}
        command(server, room, "tech1", Role.TECHNICIAN, "status.set", status=status, **extra)
    return ticket


def connected(tab: Any) -> None:
    expect(tab.get_by_test_id("connection")).to_have_attribute("data-state", "connected")


def request_form(tab: Any, title: str, artist: str, note: str = "") -> None:
    form = tab.get_by_test_id("request-form")
    form.get_by_label("Title").fill(title)
    form.get_by_label("Artist").fill(artist)
    if note:
        form.get_by_label("Note").fill(note)
    form.get_by_test_id("submit").click()


def mine(tab: Any, title: str) -> Any:
    return tab.get_by_test_id("mine").locator("li.item", has_text=title)


def png(width: int = 320, height: int = 240, hue: int = 0) -> bytes:
    """A small gradient PNG (a stand-in for a phone photo)."""
    rows = []
    for y in range(height):
        row = bytearray([0])
        for x in range(width):
            row += bytes([(hue + x * 200 // width) % 256, 90 + y * 120 // height,
                          (200 - x * 120 // width) % 256])
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


def shot(tab: Any, name: str) -> Path:
    """A full-page screenshot for review (toasts removed, scrolled to the top)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    tab.evaluate("() => { document.querySelector('#toasts')?.remove(); window.scrollTo(0, 0); }")
    tab.screenshot(path=str(path), full_page=True)
    return path
