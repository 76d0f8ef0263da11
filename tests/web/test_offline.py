"""A guest on a phone goes through a tunnel: writes the hub took without the phone
hearing back, writes the tunnel swallowed, a reload with no network (the service
worker serves the app shell), and the way out: everything applied once, with the ids
it was first sent with. And the installable pages: manifest, icons, offline shell.

The tunnel is a Playwright WebSocket route between the page and the hub that can drop
what goes either way (the link looks alive, as a dead radio link does), then
``context.set_offline`` for the network itself.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from roomlog.identity import Role
from tests.e2e.support import Server
from tests.web.support import (
    Pages,
    command,
    connected,
    expect,
    mine,
    open_ticket,
    request_form,
    room_state,
    shot,
    submit,
)

OFFLINE = (r"ERR_INTERNET_DISCONNECTED", r"WebSocket connection to .* failed")


class Tunnel:
    """The page's WebSocket to the hub, through Playwright: each way can be cut."""

    def __init__(self) -> None:
        self.up = True  # page -> hub passes
        self.down = True  # hub -> page passes
        self.sent: list[dict[str, Any]] = []  # frames the page sent (passed or not)
        self.acks: list[dict[str, Any]] = []  # acks the hub sent (passed or not)

    @staticmethod
    def frames(message: str | bytes) -> list[dict[str, Any]]:
        decoded = json.loads(message)
        return decoded if isinstance(decoded, list) else [decoded]

    def route(self, ws: Any) -> None:
        hub = ws.connect_to_server()

        def up(message: str | bytes) -> None:
            self.sent += self.frames(message)
            if self.up:
                hub.send(message)

        def down(message: str | bytes) -> None:
            self.acks += [f for f in self.frames(message) if f.get("type") == "ack"]
            if self.down:
                ws.send(message)

        ws.on_message(up)
        hub.on_message(down)

    def commands(self) -> list[dict[str, Any]]:
        return [f for f in self.sent if f.get("type") == "command"]


def app_shell_ready(tab: Any) -> None:
    """The service worker controls the page: the shell is cached for offline loads."""
    tab.wait_for_function("navigator.serviceWorker.controller !== null")


def installable(context: Any, tab: Any, hub: Server, *, start_url: str) -> None:
    """A manifest Chromium reads without error, nothing against installing it but the
    test browser's incognito context, and real PNG icons of the sizes they claim."""
    cdp = context.new_cdp_session(tab)  # after the offline parts: it resets navigator.onLine
    manifest = cdp.send("Page.getAppManifest")
    assert manifest["errors"] == [], manifest["errors"]
    parsed = json.loads(manifest["data"])
    assert parsed["display"] == "standalone" and parsed["start_url"] == start_url
    assert {i["sizes"] for i in parsed["icons"]} == {"192x192", "512x512"}
    assert any(i.get("purpose") == "maskable" for i in parsed["icons"])
    errors = cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]
    assert [e["errorId"] for e in errors if e["errorId"] != "in-incognito"] == [], errors
    for icon in parsed["icons"]:
        body = tab.request.get(f"{hub.base}/{icon['src']}").body()
        assert body[:8] == b"\x89PNG\r\n\x1a\n"
        width = int.from_bytes(body[16:20], "big")
        assert f"{width}x{width}" == icon["sizes"]


def test_a_guest_through_a_tunnel_and_a_reload_finds_everything_applied_once(
        pages: Pages, hub: Server) -> None:
    pages.tolerate(*OFFLINE)
    room = f"queue:tunnel-{secrets.token_hex(3)}"
    hey_jude = submit(hub, room, "olga", "Hey Jude", "The Beatles")
    tunnel = Tunnel()
    guest = pages.open("guest.html", "gina", Role.GUEST, room=room,
                       before=lambda tab: tab.route_web_socket(re.compile(r"/ws$"), tunnel.route))
    context = pages.contexts[-1]
    connected(guest)
    app_shell_ready(guest)
    request_form(guest, "Waterloo", "ABBA")
    expect(mine(guest, "Waterloo").get_by_test_id("status")).to_have_text("#2 in line")

    # Into the tunnel. The hub takes the next request, but its answer never arrives.
    tunnel.down = False
    request_form(guest, "Dancing Queen", "ABBA")
    expect(mine(guest, "Dancing Queen").get_by_test_id("status")).to_have_text("sending…")
    titles = lambda: [r["title"] for r in room_state(hub, room)["pending"]]  # noqa: E731
    guest.wait_for_function("true")  # let the frame leave
    for _ in range(50):
        if "Dancing Queen" in titles():
            break
        guest.wait_for_timeout(100)
    assert titles().count("Dancing Queen") == 1, "the hub applied it"
    # Then nothing gets through at all: the vote is lost on the way.
    tunnel.up = False
    vote = guest.get_by_test_id("others").locator(f'li[data-request-id="{hey_jude}"]') \
        .get_by_test_id("vote")
    vote.click()
    expect(vote).to_have_attribute("aria-pressed", "true")  # shown at once, in flight
    expect(guest.get_by_test_id("connection")).to_contain_text("2 unsent")
    unsent = guest.evaluate("window.roomlogClient.pending.map((f) => [f.id, f.name])")
    assert [name for _, name in unsent] == ["request.submit", "request.vote"]

    # The phone loses its network and the guest reloads: the shell comes from the
    # service worker, the unsent writes from IndexedDB.
    context.set_offline(True)
    guest.reload()
    expect(guest.get_by_test_id("connection")).to_have_attribute("data-state", "offline")
    expect(guest.get_by_test_id("gate")).to_contain_text("You are offline")
    expect(guest.get_by_test_id("connection")).to_contain_text("2 unsent")
    assert guest.evaluate("window.roomlogClient.pending.map((f) => [f.id, f.name])") == unsent
    expect(mine(guest, "Dancing Queen").get_by_test_id("status")).to_have_text(
        "waiting to be sent")
    shot(guest, "guest-offline-after-reload-phone")

    # Out of the tunnel.
    before = len(tunnel.sent)
    tunnel.up = tunnel.down = True
    context.set_offline(False)
    connected(guest)
    expect(guest.get_by_test_id("connection")).not_to_contain_text("unsent")
    expect(mine(guest, "Dancing Queen").get_by_test_id("status")).to_have_text(
        re.compile(r"#\d in line"))
    expect(vote).to_have_attribute("aria-pressed", "true")

    resent = [(f["id"], f["name"]) for f in tunnel.sent[before:] if f.get("type") == "command"]
    assert resent == [tuple(x) for x in unsent], "sent again once each, with their first ids"
    acks = {a["id"]: a for a in tunnel.acks}
    assert acks[unsent[0][0]]["duplicate"] is True, "the hub had the request: not applied again"
    assert acks[unsent[1][0]]["duplicate"] is False
    state = room_state(hub, room)
    mine_titles = sorted(r["title"] for r in state["pending"] if r["user"] == "gina")
    assert mine_titles == ["Dancing Queen", "Waterloo"]
    assert {r["title"]: r["votes"] for r in state["pending"]}["Hey Jude"] == 1
    expect(guest.get_by_test_id("mine").locator("li.item")).to_have_count(2)
    installable(context, guest, hub, start_url="guest.html")


def test_the_customer_page_is_an_installable_app_that_opens_offline(
        pages: Pages, hub: Server) -> None:
    pages.tolerate(*OFFLINE)
    ticket = open_ticket(hub)
    customer = pages.open("repair.html", "cust1", Role.CUSTOMER, ticket=ticket)
    context = pages.contexts[-1]
    connected(customer)
    expect(customer.get_by_test_id("status")).to_have_text("Received")
    app_shell_ready(customer)

    # Offline, the installed app still opens (on the last ticket), and says it is offline.
    context.set_offline(True)
    customer.goto(f"{hub.base}/repair.html")
    expect(customer.get_by_role("heading", name="Your repair")).to_be_visible()
    expect(customer.get_by_test_id("gate")).to_contain_text("You are offline")
    # Online again, it reads the ticket from the hub.
    command(hub, f"repair:{ticket}", "tech1", Role.TECHNICIAN, "status.set",
            status="diagnosing")
    context.set_offline(False)
    connected(customer)
    expect(customer.get_by_test_id("status")).to_have_text("Diagnosing")
    assert ticket in customer.url  # the last ticket, remembered (not secret)
    installable(context, customer, hub, start_url="repair.html")
