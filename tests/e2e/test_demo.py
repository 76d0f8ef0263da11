"""``roomlog demo``: seeded rooms, printed links that open, tokens the pages can renew,
commands that work on what was seeded, and a second run that keeps the rooms.

:class:`Demo` runs the command as a person would (also from an installed wheel:
tests/release/test_wheel.py) and reads the links it prints.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from tests.e2e.support import START_TIMEOUT, TIMEOUT, Server

PAGES = ("guest.html", "dj.html", "repair.html", "tech.html")


class Demo:
    """``roomlog demo --port 0`` in a subprocess (the port it got is in its links: no
    race for a free port); ``links`` maps page file -> printed URL."""

    def __init__(self, command: Sequence[str], workdir: Path, *extra: str) -> None:
        self.port = 0
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMLOG_")}
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen([*command, "demo", "--port", str(self.port), *extra],
                                     cwd=workdir, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        lines: queue.Queue[str | None] = queue.Queue()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._pumps = [threading.Thread(target=_pump, args=(stream, into, feed), daemon=True)
                       for stream, into, feed in ((self.proc.stdout, self.stdout, lines),
                                                  (self.proc.stderr, self.stderr, None))]
        for pump in self._pumps:
            pump.start()
        self.links: dict[str, str] = {}
        while True:  # until the last line of the announcement
            try:
                line = lines.get(timeout=START_TIMEOUT)
            except queue.Empty:
                self.stop()
                raise AssertionError(f"no links within {START_TIMEOUT}s:\n{self.output}") from None
            if line is None:
                code = self.proc.wait()
                for pump in self._pumps:
                    pump.join(5)
                raise AssertionError(f"demo exited with {code}:\n{self.output}")
            for url in re.findall(r"http://\S+", line):
                parts = urlsplit(url)
                self.port = parts.port or self.port
                if parts.path.lstrip("/") in PAGES:
                    self.links[parts.path.lstrip("/")] = url
            if line.startswith("Every page:"):
                break

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)

    def token(self, page: str) -> str:
        return parse_qs(urlsplit(self.links[page]).fragment)["token"][0]

    def headers(self, page: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token(page)}"}

    def stop(self) -> int:
        """Ctrl-C, as a person ends it; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise
        return self.proc.returncode


def _pump(stream: Any, into: list[str], feed: queue.Queue[str | None] | None) -> None:
    for line in stream:
        into.append(line)
        if feed is not None:
            feed.put(line)
    if feed is not None:
        feed.put(None)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    run = Demo([sys.executable, "-m", "roomlog"], tmp_path)
    try:
        yield run
    finally:
        code = run.stop()
    assert code == 130 and "Traceback" not in run.output, run.output


def state(http: httpx.Client, demo: Demo, room: str, page: str) -> dict[str, Any]:
    reply = http.get(f"{demo.base}/v1/rooms/{room}/state", headers=demo.headers(page))
    assert reply.status_code == 200, reply.text
    return reply.json()["state"]  # type: ignore[no-any-return]


def command(http: httpx.Client, demo: Demo, room: str, page: str, ident: str, name: str,
            **args: Any) -> dict[str, Any]:
    reply = http.post(f"{demo.base}/v1/rooms/{room}/commands", headers=demo.headers(page),
                      json={"id": ident, "name": name, "args": args})
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


def test_demo_seeds_serves_and_links_four_pages(demo: Demo) -> None:
    assert sorted(demo.links) == sorted(PAGES)
    assert "seeded queue:demo and repair:t-100" in demo.output
    with httpx.Client(timeout=TIMEOUT) as http:
        for url in demo.links.values():
            page = http.get(url)
            assert page.status_code == 200 and "<script" in page.text, url
        assert http.get(f"{demo.base}/client/roomlog.js").status_code == 200

        queue_state = state(http, demo, "queue:demo", "dj.html")
        assert queue_state["owner"] == "dj1" and queue_state["open"]
        assert [r["title"] for r in queue_state["queue"]] == ["September"]
        assert sorted(r["title"] for r in queue_state["pending"]) == [
            "Dancing On My Own", "Dreams", "One More Time"]
        ticket = state(http, demo, "repair:t-100", "repair.html")  # as the customer
        assert ticket["status"] == "awaiting_approval" and ticket["technicians"] == ["tech1"]
        assert ticket["quote"]["amount"] == 89 and ticket["quote"]["status"] == "pending"
        assert "internal" not in ticket  # the customer's view

        # What people do next, with the printed tokens
        played = command(http, demo, "queue:demo", "dj.html", "t-play", "request.play",
                         request_id=queue_state["queue"][0]["id"])
        assert played["result"]
        command(http, demo, "queue:demo", "guest.html", "t-submit", "request.submit",
                song_id="around-the-world", title="Around the World", artist="Daft Punk")
        command(http, demo, "repair:t-100", "repair.html", "t-approve", "quote.approve")
        command(http, demo, "repair:t-100", "tech.html", "t-milestone", "milestone.add",
                title="Port replaced", percent=80)
        assert state(http, demo, "repair:t-100", "tech.html")["status"] == "repairing"


def test_demo_token_endpoint_renews_page_tokens_only(demo: Demo) -> None:
    with httpx.Client(timeout=TIMEOUT) as http:
        given = http.get(f"{demo.base}/demo/token", params={"user": "cust1", "role": "customer"})
        assert given.status_code == 200 and given.headers["cache-control"] == "no-store"
        body = given.json()
        assert set(body) == {"token", "expires"} and body["expires"] > 0
        ticket = http.get(f"{demo.base}/v1/rooms/repair:t-100/state",
                          headers={"authorization": f"Bearer {body['token']}"})
        assert ticket.status_code == 200, ticket.text
        for params in ({"user": "boss", "role": "admin"}, {"user": "svc", "role": "service"},
                       {"user": "", "role": "guest"}, {"user": "a b", "role": "guest"}):
            refused = http.get(f"{demo.base}/demo/token", params=params)
            assert refused.status_code == 400, (params, refused.text)
        # as the web app's getToken asks: the page, and the user of its last token
        assert http.get(f"{demo.base}/config.json").json() == {"token_url": "/demo/token"}
        for page, user, role in (("guest", None, "guest"), ("technician", None, "technician"),
                                 ("dj", "dj2", "dj"), ("customer", "cust1", "customer")):
            body = {"page": page, "room": "x"} | ({"user": user} if user else {})
            renewed = http.post(f"{demo.base}/demo/token", json=body)
            assert renewed.status_code == 200, renewed.text
            claims = jwt.decode(renewed.json()["token"], options={"verify_signature": False})
            assert claims["role"] == role and (user is None or claims["sub"] == user)
        for body in ({"page": "admin"}, {"page": "guest", "user": "a b"}, ["guest"]):
            assert http.post(f"{demo.base}/demo/token", json=body).status_code == 400, body


def test_a_second_run_keeps_the_rooms(tmp_path: Path) -> None:
    first = Demo([sys.executable, "-m", "roomlog"], tmp_path)
    try:
        with httpx.Client(timeout=TIMEOUT) as http:
            command(http, first, "queue:demo", "guest.html", "kept", "request.submit",
                    song_id="kept", title="Kept", artist="Me")
    finally:
        assert first.stop() == 130
    second = Demo([sys.executable, "-m", "roomlog"], tmp_path)
    try:
        assert "kept the rooms of an earlier run" in second.output
        with httpx.Client(timeout=TIMEOUT) as http:
            titles = [r["title"] for r in state(http, second, "queue:demo", "dj.html")["pending"]]
            assert "Kept" in titles and titles.count("One More Time") == 1
    finally:
        assert second.stop() == 130
    fresh = Demo([sys.executable, "-m", "roomlog"], tmp_path, "--fresh")
    try:
        assert "seeded queue:demo and repair:t-100" in fresh.output
    finally:
        assert fresh.stop() == 130


def test_demo_is_not_on_an_ordinary_server(tmp_path: Path) -> None:
    srv = Server(tmp_path / "hub").start()
    try:
        reply = httpx.get(f"{srv.base}/demo/token", params={"user": "u1", "role": "guest"},
                          timeout=TIMEOUT)
        assert reply.status_code == 404
    finally:
        srv.stop()
