"""The web app (clients/web/) and the browser client (clients/js/roomlog.js) in
headless Chromium against a real ``roomlog serve`` process.

* two browsers (contexts) on the guest and DJ pages see each other's actions live;
* a server restart: the pages reconnect and show every update made while they were
  away, and a request submitted while the server was down is sent when it is back;
* WebSockets refused: the pages long-poll, then switch back to the WebSocket, with
  nothing lost or shown twice;
* a rejected action is rolled back with a readable message;
* screenshots of every page, for review, in ``$ROOMLOG_SCREENSHOTS`` (default
  ``tests/web/screenshots/``).

Chromium: Debian's ``chromium`` package (``/usr/bin/chromium``, or
``$ROOMLOG_CHROMIUM``), driven by Playwright for Python (``pip install playwright``;
``playwright install`` is not needed). Every wait is an upper bound for a broken
build, never a timing assertion.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from roomlog.identity import Role
from tests.e2e.support import ROOT, Server, issue_token

try:
    from playwright import sync_api as playwright_api
except ImportError:  # fail (not skip) in the browser fixture, like a missing PostgreSQL
    playwright_api = None

CHROMIUM = os.environ.get("ROOMLOG_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("ROOMLOG_SCREENSHOTS") or Path(__file__).parent / "screenshots")
WAIT = 15_000  # ms: upper bound for anything the page should show
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}


def expect(actual: Any) -> Any:
    """Playwright's ``expect``; every wait is at most WAIT (an upper bound, not a timing)."""
    assert playwright_api is not None
    playwright_api.expect.set_options(timeout=WAIT)
    return playwright_api.expect(actual)


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
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


def _hub(workdir: Path, **settings: object) -> Server:
    return Server(workdir, None, web_dir=str(ROOT / "clients"), **settings)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Server]:
    srv = _hub(tmp_path / "hub").start()
    try:
        yield srv
    finally:
        srv.stop()
    srv.assert_clean_log()


class Pages:
    """Browser contexts opened by a test (one per person), closed at its end; uncaught
    exceptions in a page fail the test."""

    def __init__(self, browser: Any, server: Server) -> None:
        self.browser = browser
        self.server = server
        self.contexts: list[Any] = []
        self.errors: list[str] = []

    def open(self, page: str, user: str, role: Role, *, viewport: dict[str, int] = PHONE,
             **params: str) -> Any:
        context = self.browser.new_context(viewport=viewport)
        self.contexts.append(context)
        tab = context.new_page()
        tab.on("pageerror", lambda exc: self.errors.append(f"{page} ({user}): {exc}"))
        query = urlencode({"token": issue_token(user, role), "backoff": "200", **params})
        tab.goto(f"{self.server.base}/{page}?{query}")
        return tab

    def close(self) -> None:
        for context in self.contexts:
            with contextlib.suppress(Exception):
                context.close()


@pytest.fixture
def pages(browser: Any, hub: Server) -> Iterator[Pages]:
    opened = Pages(browser, hub)
    yield opened
    opened.close()
    assert not opened.errors, opened.errors


# ---------------------------------------------------------------------------
# helpers


def command(server: Server, room: str, user: str, role: Role, name: str,
            **args: Any) -> dict[str, Any]:
    """A command over HTTP, as another person's device (or a backend) would send it."""
    body = {"id": f"http-{secrets.token_hex(6)}", "name": name, "args": args}
    response = httpx.post(f"{server.base}/v1/rooms/{room}/commands", json=body, timeout=15,
                          headers={"authorization": f"Bearer {issue_token(user, role)}"})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def submit(server: Server, room: str, user: str, title: str, artist: str,
           note: str | None = None) -> str:
    args = {"song_id": f"song:{artist}--{title}".lower().replace(" ", "-"), "title": title,
            "artist": artist}
    if note:
        args["note"] = note
    ack = command(server, room, user, Role.GUEST, "request.submit", **args)
    return str(ack["result"]["request_id"])


def connected(tab: Any) -> None:
    expect(tab.get_by_test_id("connection")).to_have_attribute("data-state", "connected")


def request_form(tab: Any, title: str, artist: str, note: str = "") -> None:
    form = tab.get_by_test_id("request-form")
    form.get_by_placeholder("Song title").fill(title)
    form.get_by_placeholder("Artist").fill(artist)
    if note:
        form.get_by_placeholder("A note for the DJ (optional)").fill(note)
    form.get_by_role("button", name="Request it").click()


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
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    tab.evaluate("() => { document.querySelector('#toasts')?.remove(); window.scrollTo(0, 0); }")
    tab.screenshot(path=str(path), full_page=True)
    return path


# ---------------------------------------------------------------------------
# (a) two people, live


def test_guest_and_dj_see_each_other_live(pages: Pages, hub: Server) -> None:
    room = f"queue:web-{secrets.token_hex(4)}"
    guest = pages.open("guest.html", "gina", Role.GUEST, room=room)
    dj = pages.open("dj.html", "dj1", Role.DJ, viewport=DESKTOP, room=room)
    connected(guest)
    connected(dj)

    # guest submits -> the DJ sees it, with the note
    request_form(guest, "Dancing Queen", "ABBA", "for my sister")
    expect(mine(guest, "Dancing Queen").get_by_test_id("status")).to_have_text("#1 in line")
    pending = dj.get_by_test_id("pending").locator("li.item", has_text="Dancing Queen")
    expect(pending).to_contain_text("for my sister")

    # someone else's request, upvoted by the guest -> the DJ sees the vote and the order
    other = submit(hub, room, "olga", "Hey Jude", "The Beatles")
    vote = guest.get_by_test_id("others").locator(f'li[data-request-id="{other}"]') \
        .get_by_test_id("vote")
    vote.click()
    expect(vote).to_have_attribute("aria-pressed", "true")
    expect(dj.get_by_test_id("pending").locator("li.item").first).to_contain_text("Hey Jude")
    expect(dj.get_by_test_id("pending").locator(f'li[data-request-id="{other}"]')) \
        .to_contain_text("▲ 1")

    # DJ accepts -> the guest sees its status and position
    pending.get_by_test_id("accept").click()
    expect(mine(guest, "Dancing Queen").get_by_test_id("status")).to_have_text("#1 in the queue")
    expect(guest.get_by_test_id("up-next")).to_contain_text("Dancing Queen")

    # DJ plays it -> the guest's page says so
    dj.get_by_test_id("queue").locator("li.item", has_text="Dancing Queen") \
        .get_by_test_id("play").click()
    expect(guest.get_by_test_id("now-playing")).to_contain_text("Dancing Queen")
    expect(mine(guest, "Dancing Queen").get_by_test_id("status")).to_have_text("playing now")


# ---------------------------------------------------------------------------
# (b) the server restarts: reconnect, resume, nothing lost, nothing twice


def test_pages_resume_after_a_server_restart(pages: Pages, hub: Server) -> None:
    room = f"queue:web-{secrets.token_hex(4)}"
    guest = pages.open("guest.html", "gina", Role.GUEST, room=room)
    dj = pages.open("dj.html", "dj1", Role.DJ, viewport=DESKTOP, room=room)
    connected(guest)
    connected(dj)
    request_form(guest, "Dancing Queen", "ABBA")
    expect(dj.get_by_test_id("pending")).to_contain_text("Dancing Queen")
    first = dj.get_by_test_id("pending").locator("li.item").first.get_attribute("data-request-id")

    hub.stop()  # SIGTERM: the server drains (reconnect frame, 1001) and exits
    for tab in (guest, dj):
        expect(tab.get_by_test_id("connection")).not_to_have_attribute("data-state", "connected")
    # While it is down the guest asks for another song: kept in the outbox, shown as sending.
    request_form(guest, "Waterloo", "ABBA")
    expect(mine(guest, "Waterloo").get_by_test_id("status")).to_have_text("sending…")

    hub.start()  # same port, same database
    # Updates made by others right away, before or while the pages come back:
    command(hub, room, "dj1", Role.DJ, "request.accept", request_id=first)
    olga = submit(hub, room, "olga", "Hey Jude", "The Beatles")
    command(hub, room, "dj1", Role.DJ, "request.accept", request_id=olga)
    command(hub, room, "dj1", Role.DJ, "queue.reorder", request_id=olga, position=1)
    submit(hub, room, "olga", "Let It Be", "The Beatles")

    for tab in (guest, dj):
        connected(tab)
    expect(mine(guest, "Dancing Queen").get_by_test_id("status")).to_have_text("#2 in the queue")
    expect(mine(guest, "Waterloo").get_by_test_id("status")).not_to_have_text("sending…")
    expect(guest.get_by_test_id("up-next").locator("li.item")).to_have_text(
        [re.compile("Hey Jude"), re.compile("Dancing Queen")])
    queue = dj.get_by_test_id("queue").locator("li.item")
    expect(queue).to_have_count(2)
    expect(queue.nth(0)).to_contain_text("Hey Jude")
    expect(queue.nth(1)).to_contain_text("Dancing Queen")
    waiting = dj.get_by_test_id("pending").locator("li.item")
    expect(waiting).to_have_count(2)  # Let It Be, and Waterloo sent on reconnect: once each
    expect(dj.get_by_test_id("pending")).to_contain_text("Waterloo")
    expect(dj.get_by_test_id("pending")).to_contain_text("Let It Be")
    expect(guest.get_by_test_id("mine").locator("li.item")).to_have_count(2)
    # The page's view is what the server has (the fold of the events it delivered).
    state = httpx.get(f"{hub.base}/v1/rooms/{room}/state", timeout=15,
                      headers={"authorization": f"Bearer {issue_token('dj1', Role.DJ)}"}).json()
    assert [r["title"] for r in state["state"]["queue"]] == ["Hey Jude", "Dancing Queen"]
    assert sorted(r["title"] for r in state["state"]["pending"]) == ["Let It Be", "Waterloo"]


# ---------------------------------------------------------------------------
# WebSockets refused (a hostile proxy): long-polling, then back to the WebSocket


def test_long_polling_fallback_and_back(browser: Any, tmp_path: Path) -> None:
    srv = _hub(tmp_path / "hub", websockets="false").start()
    opened = Pages(browser, srv)
    try:
        room = f"queue:web-{secrets.token_hex(4)}"
        guest = opened.open("guest.html", "gina", Role.GUEST, room=room)
        dj = opened.open("dj.html", "dj1", Role.DJ, viewport=DESKTOP, room=room)
        for tab in (guest, dj):  # five refused WebSockets (backoff=200 ms), then polling
            expect(tab.get_by_test_id("connection")).to_have_attribute("data-state", "polling")
        request_form(guest, "Dancing Queen", "ABBA")  # an HTTP POST now
        pending = dj.get_by_test_id("pending").locator("li.item", has_text="Dancing Queen")
        pending.get_by_test_id("accept").click()
        expect(mine(guest, "Dancing Queen").get_by_test_id("status")) \
            .to_have_text("#1 in the queue")

        srv.settings["websockets"] = "true"  # the proxy lets WebSockets through again
        srv.restart()
        submit(srv, room, "olga", "Hey Jude", "The Beatles")
        for tab in (guest, dj):  # the background probe finds the WebSocket
            connected(tab)
        request_form(guest, "Waterloo", "ABBA")
        expect(dj.get_by_test_id("pending").locator("li.item")).to_have_count(2)
        expect(dj.get_by_test_id("pending")).to_contain_text("Hey Jude")
        expect(dj.get_by_test_id("pending")).to_contain_text("Waterloo")
        expect(dj.get_by_test_id("queue").locator("li.item")).to_have_count(1)
        expect(guest.get_by_test_id("mine").locator("li.item")).to_have_count(2)
        transports = [tab.evaluate("window.roomlogClient.transport") for tab in (guest, dj)]
        assert transports == ["websocket", "websocket"]
    finally:
        opened.close()
        srv.stop()
    assert not opened.errors, opened.errors
    srv.assert_clean_log()


# ---------------------------------------------------------------------------
# The phone loses its network (the browser's offline / online events)


def test_offline_then_online(pages: Pages, hub: Server) -> None:
    room = f"queue:web-{secrets.token_hex(4)}"
    guest = pages.open("guest.html", "gina", Role.GUEST, room=room)
    connected(guest)
    expect(guest.get_by_test_id("mine")).to_contain_text("Nothing requested yet.")  # loaded
    context = pages.contexts[-1]
    context.set_offline(True)
    expect(guest.get_by_test_id("connection")).to_have_attribute("data-state", "offline")
    request_form(guest, "Dancing Queen", "ABBA")  # kept until the network is back
    expect(mine(guest, "Dancing Queen").get_by_test_id("status")).to_have_text("sending…")
    expect(guest.get_by_test_id("connection")).to_contain_text("1 unsent")
    olga = submit(hub, room, "olga", "Hey Jude", "The Beatles")
    command(hub, room, "dj1", Role.DJ, "request.accept", request_id=olga)

    context.set_offline(False)
    connected(guest)
    expect(mine(guest, "Dancing Queen").get_by_test_id("status")).to_have_text("#1 in line")
    expect(guest.get_by_test_id("up-next")).to_contain_text("Hey Jude")
    expect(guest.get_by_test_id("connection")).not_to_contain_text("unsent")


# ---------------------------------------------------------------------------
# (c) rejected actions roll back with a readable message


def test_rejected_actions_roll_back_with_a_message(pages: Pages, hub: Server) -> None:
    room = f"queue:web-{secrets.token_hex(4)}"
    guest = pages.open("guest.html", "gina", Role.GUEST, room=room)
    connected(guest)
    request_form(guest, "Dancing Queen", "ABBA")
    expect(mine(guest, "Dancing Queen").get_by_test_id("status")).to_have_text("#1 in line")

    request_form(guest, "Dancing Queen", "ABBA")  # the same song again: DUPLICATE_REQUEST
    expect(guest.get_by_test_id("toast-error")).to_contain_text(
        "You already requested this song.")
    expect(guest.get_by_test_id("mine").locator("li.item")).to_have_count(1)

    # A DJ who does not own the queue: the accept shows at once, then is taken back.
    other = submit(hub, room, "olga", "Hey Jude", "The Beatles")
    command(hub, room, "dj1", Role.DJ, "request.accept", request_id=other)  # dj1 owns it
    mine_id = guest.get_by_test_id("mine").locator("li.item").first \
        .get_attribute("data-request-id")
    intruder = pages.open("dj.html", "dj2", Role.DJ, viewport=DESKTOP, room=room)
    connected(intruder)
    row = intruder.get_by_test_id("pending").locator(f'li[data-request-id="{mine_id}"]')
    row.get_by_test_id("accept").click()
    expect(intruder.get_by_test_id("toast-error")).to_contain_text(
        "You are not allowed to do that.")
    expect(row).to_be_visible()  # back among the pending requests
    expect(intruder.get_by_test_id("queue").locator("li.item")).to_have_count(1)
    expect(mine(guest, "Dancing Queen").get_by_test_id("status")).to_have_text("#1 in line")


# ---------------------------------------------------------------------------
# (d) every page, with data, for review; the repair pages live


def test_screenshots_of_every_page(pages: Pages, hub: Server) -> None:
    room = f"queue:club42-{secrets.token_hex(3)}"
    songs = [("olga", "Hey Jude", "The Beatles", None), ("gina", "Dancing Queen", "ABBA",
             "for my sister's birthday"), ("sam", "Blue Monday", "New Order", None),
             ("olga", "Le Freak", "Chic", "disco!"), ("sam", "Heroes", "David Bowie", None),
             ("gina", "Waterloo", "ABBA", None), ("ali", "Murder on the Dancefloor",
             "Sophie Ellis-Bextor", None)]
    ids = [submit(hub, room, user, title, artist, note) for user, title, artist, note in songs]
    for voter, target in [("sam", 1), ("ali", 1), ("olga", 1), ("ali", 4), ("gina", 4),
                          ("gina", 6)]:
        command(hub, room, voter, Role.GUEST, "request.vote", request_id=ids[target])
    for rid in (ids[0], ids[2], ids[5]):
        command(hub, room, "dj1", Role.DJ, "request.accept", request_id=rid)
    command(hub, room, "dj1", Role.DJ, "request.play", request_id=ids[0])

    guest = pages.open("guest.html", "gina", Role.GUEST, room=room)
    dj = pages.open("dj.html", "dj1", Role.DJ, viewport=DESKTOP, room=room)
    connected(guest)
    connected(dj)
    expect(guest.get_by_test_id("now-playing")).to_contain_text("Hey Jude")
    expect(dj.get_by_test_id("pending").locator("li.item")).to_have_count(4)
    shot(guest, "guest")
    shot(dj, "dj")

    # A repair ticket: the technician opens it on the console, the customer follows it.
    ticket = f"t-{secrets.token_hex(3)}"
    repair = f"repair:{ticket}"
    tech = pages.open("tech.html", "tech1", Role.TECHNICIAN, viewport=DESKTOP)
    connected(tech)
    tech.get_by_text("Open a new ticket").click()
    tech.get_by_test_id("new-ticket").fill(ticket)
    tech.get_by_test_id("new-customer").fill("cust1")
    tech.get_by_test_id("new-device").fill("iPhone 13 mini")
    tech.get_by_test_id("new-problem").fill("Cracked screen, no touch at the bottom")
    tech.get_by_test_id("create").click()
    expect(tech.get_by_test_id("tickets")).to_contain_text(ticket)
    expect(tech.get_by_test_id("ticket-status")).to_have_text("Received")

    def staff(name: str, **args: Any) -> None:
        command(hub, repair, "tech1", Role.TECHNICIAN, name, **args)

    staff("status.set", status="diagnosing")
    staff("note.add", text="Frame slightly bent, check the battery too", priority="normal",
          visibility="internal")
    staff("milestone.add", title="Opened and inspected", percent=20)
    staff("status.set", status="awaiting_approval", reason="The display must be replaced",
          quote={"amount": 129.5, "currency": "EUR",
                 "description": "New OLED display, seal and labour"})
    upload = httpx.post(f"{hub.base}/v1/rooms/{repair}/photos", content=png(hue=20),
                        headers={"authorization": f"Bearer {issue_token('tech1', Role.TECHNICIAN)}",
                                 "content-type": "image/png"}, timeout=15).json()
    staff("photo.add", category="damage", caption="Crack across the lower edge",
          upload_id=upload["upload_id"])

    customer = pages.open("repair.html", "cust1", Role.CUSTOMER, ticket=ticket)
    connected(customer)
    expect(customer.get_by_test_id("quote")).to_contain_text("129.50")
    expect(customer.get_by_test_id("photos").locator("img")).to_have_count(1)
    expect(customer.get_by_test_id("notes")).not_to_contain_text("battery")  # internal
    customer.get_by_placeholder("Ask or tell the shop something").fill(
        "Please keep my screen protector if you can")
    customer.get_by_role("button", name="Send note").click()
    expect(tech.get_by_test_id("notes")).to_contain_text("screen protector")
    shot(customer, "repair-customer")

    # The customer approves: the technician's console follows; the technician works on.
    customer.get_by_test_id("approve").click()
    expect(customer.get_by_test_id("status")).to_have_text("Repairing")
    expect(tech.get_by_test_id("ticket-status")).to_have_text("Repairing")
    tech.get_by_test_id("milestone-title").fill("Display replaced")
    tech.get_by_test_id("milestone-percent").fill("70")
    tech.get_by_test_id("milestone-add").click()
    expect(customer.get_by_test_id("progress")).to_have_attribute("data-value", "70")
    photo = tmp_path_png(hub.workdir)
    tech.get_by_test_id("photo-file").set_input_files(str(photo))
    tech.get_by_test_id("photo-caption").fill("New display fitted")
    tech.get_by_test_id("photo-add").click()
    expect(customer.get_by_test_id("photos").locator("img")).to_have_count(2)
    expect(tech.get_by_test_id("moves").locator("button")).to_have_count(2)  # QC, on hold
    shot(tech, "technician")
    shot(customer, "repair-customer-live")

    index = pages.open("", "gina", Role.GUEST, viewport=DESKTOP)
    expect(index.get_by_role("heading", name="Request a song")).to_be_visible()
    shot(index, "index")
    for name in ("guest", "dj", "repair-customer", "technician", "index"):
        assert (SHOTS / f"{name}.png").stat().st_size > 10_000


def tmp_path_png(directory: Path) -> Path:
    path = directory / "after.png"
    path.write_bytes(png(hue=140))
    return path
