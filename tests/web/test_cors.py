"""A page on another origin (a real HTTP server on another port) uses the hub from
Chromium: long-poll, SSE and commands, with the hub's CORS policy
(``ROOMLOG_CORS_ORIGINS``). A page of an origin the hub does not list can read
nothing: the browser blocks every answer."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from roomlog.identity import Role
from tests.e2e.support import Server, free_port, issue_token
from tests.web.conftest import serving, watching
from tests.web.support import Pages

_PAGE = (b"<!doctype html><html lang='en'><link rel='icon' href='data:,'>"
         b"<title>the club's own site</title><p>club</p></html>")


class Site:
    """Another origin's site: one page, served by a real HTTP server."""

    def __init__(self) -> None:
        self.port = free_port()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200 if self.path == "/" else 404)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(_PAGE)))
                self.end_headers()
                self.wfile.write(_PAGE)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def sites() -> Iterator[tuple[Site, Site]]:
    """The club's site (listed on the hub) and a stranger's (not listed)."""
    club, stranger = Site(), Site()
    yield club, stranger
    club.stop()
    stranger.stop()


@pytest.fixture
def cors_hub(tmp_path: Path, sites: tuple[Site, Site]) -> Iterator[Server]:
    yield from serving(tmp_path / "hub", cors_origins=sites[0].origin)


@pytest.fixture
def cors_pages(browser: Any, cors_hub: Server) -> Iterator[Pages]:
    yield from watching(browser, cors_hub)


# Runs in the other origin's page: SSE and a waiting long-poll on a queue room, then a
# command; returns what each transport saw.
_USE_THE_HUB = """
async ({hub, room, token}) => {
  const auth = {Authorization: `Bearer ${token}`};
  const base = `${hub}/v1/rooms/${encodeURIComponent(room)}`;
  const head = await (await fetch(`${base}/messages`, {headers: auth})).json();

  const sse = [];
  const source = new EventSource(`${base}/events?token=${encodeURIComponent(token)}`);
  const heard = new Promise((resolve, reject) => {
    source.addEventListener("message", (e) => { sse.push(JSON.parse(e.data)); resolve(); });
    source.onerror = () => reject(new Error("the EventSource failed"));
  });
  await new Promise((resolve) => source.addEventListener("subscribed", resolve));

  const polled = fetch(`${base}/messages?after=${head.next}&epoch=${head.epoch}&wait=10`,
                       {headers: auth}).then((r) => r.json());
  const reply = await fetch(`${base}/commands`, {
    method: "POST",
    headers: {...auth, "Content-Type": "application/json", "X-Request-Id": "club-page-1"},
    body: JSON.stringify({id: "cmd-1", name: "request.submit",
                          args: {song_id: "song:abba--waterloo", title: "Waterloo",
                                 artist: "ABBA"}}),
  });
  const ack = await reply.json();
  const page = await polled;
  await heard;
  source.close();
  const again = await fetch(`${base}/commands`, {method: "POST",
    headers: {...auth, "Content-Type": "application/json"},
    body: JSON.stringify({id: "cmd-1", name: "request.submit",
                          args: {song_id: "song:abba--waterloo", title: "Waterloo",
                                 artist: "ABBA"}})});
  const denied = await fetch(`${base}/messages`);  // no token: a coded error, readable
  return {status: reply.status, ack, requestId: reply.headers.get("X-Request-Id"),
          polled: page.frames, sse, again: await again.json(),
          denied: {status: denied.status, body: await denied.json(),
                   auth: denied.headers.get("WWW-Authenticate")}};
}
"""

_TRY_THE_HUB = """
async ({hub, room, token}) => {
  const base = `${hub}/v1/rooms/${encodeURIComponent(room)}`;
  const outcome = async (request) => {
    try { await request; return "read"; } catch (e) { return "blocked"; }
  };
  const sse = await new Promise((resolve) => {
    const source = new EventSource(`${base}/events?token=${encodeURIComponent(token)}`);
    source.addEventListener("subscribed", () => { source.close(); resolve("read"); });
    source.onerror = () => { source.close(); resolve("blocked"); };
  });
  return {
    poll: await outcome(fetch(`${base}/messages`,
                              {headers: {Authorization: `Bearer ${token}`}})),
    command: await outcome(fetch(`${base}/commands`, {method: "POST",
      headers: {Authorization: `Bearer ${token}`, "Content-Type": "application/json"},
      body: JSON.stringify({id: "x-1", name: "request.submit", args: {}})})),
    plain: await outcome(fetch(`${hub}/health/live`)),
    sse,
  };
}
"""


def test_a_listed_origin_uses_long_poll_sse_and_commands(
        cors_pages: Pages, cors_hub: Server, sites: tuple[Site, Site]) -> None:
    club, _ = sites
    room = f"queue:cors-{secrets.token_hex(3)}"
    tab = cors_pages.watch(cors_pages.context().new_page(), "club site")
    tab.goto(club.origin + "/")
    assert tab.evaluate("location.origin") == club.origin != cors_hub.base
    cors_pages.tolerate("status of 401")  # the deliberate request without a token
    seen = tab.evaluate(_USE_THE_HUB, {"hub": cors_hub.base, "room": room,
                                       "token": issue_token("gina", Role.GUEST)})

    assert seen["status"] == 200 and seen["ack"]["type"] == "ack"
    assert seen["ack"]["duplicate"] is False and seen["again"]["duplicate"] is True
    assert seen["requestId"] == "club-page-1"  # an exposed header, and ours was allowed
    seqs = seen["ack"]["seqs"]
    assert [f["seq"] for f in seen["polled"] if f["type"] == "message"][:len(seqs)] == seqs
    assert seen["sse"][0]["seq"] == seqs[0] and seen["sse"][0]["room"] == room
    assert seen["denied"]["status"] == 401
    assert seen["denied"]["body"]["error"]["code"] == "UNAUTHORIZED"
    assert seen["denied"]["auth"] == "Bearer"


def test_an_unlisted_origin_reads_nothing(cors_pages: Pages, cors_hub: Server,
                                         sites: tuple[Site, Site]) -> None:
    _, stranger = sites
    cors_pages.tolerate("CORS", "net::ERR_FAILED", "Failed to load resource")
    tab = cors_pages.watch(cors_pages.context().new_page(), "stranger's site")
    tab.goto(stranger.origin + "/")
    tried = tab.evaluate(_TRY_THE_HUB, {"hub": cors_hub.base,
                                        "room": f"queue:cors-{secrets.token_hex(3)}",
                                        "token": issue_token("eve", Role.GUEST)})
    assert tried == {"poll": "blocked", "command": "blocked", "plain": "blocked",
                     "sse": "blocked"}
