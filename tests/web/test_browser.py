"""The web app (clients/web/) and the browser client (clients/js/roomlog.js) live, in
headless Chromium against a real ``roomlog serve`` process.

* two people (a guest on a phone, the DJ on a desktop) see each other's actions live;
* a server restart: the pages reconnect and show every update made while they were
  away; while the link is down the actions are off and the page says why;
* WebSockets refused: the pages long-poll, then switch back to the WebSocket, with
  nothing lost or shown twice;
* the phone's network goes away and comes back.

Every wait is an upper bound for a broken build, never a timing assertion.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

from roomlog.identity import Role
from tests.e2e.support import Server
from tests.web.conftest import web_hub
from tests.web.support import (
    DESKTOP,
    Pages,
    command,
    connected,
    expect,
    mine,
    request_form,
    room_state,
    submit,
)

# What the browser logs when the hub is away (or refuses WebSockets) on purpose.
LINK_DOWN = (r"WebSocket connection to .* failed", r"ERR_CONNECTION_REFUSED",
             r"ERR_INTERNET_DISCONNECTED", r"status of 403")


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

    # DJ accepts -> the guest sees its status and position, and a green notice
    pending.get_by_test_id("accept").click()
    expect(mine(guest, "Dancing Queen").get_by_test_id("status")).to_have_text("#1 in the queue")
    expect(guest.get_by_test_id("up-next")).to_contain_text("Dancing Queen")
    expect(guest.get_by_test_id("toast-ok")).to_contain_text("The DJ accepted “Dancing Queen”")

    # DJ plays it -> the guest's page says so
    dj.get_by_test_id("queue").locator("li.item", has_text="Dancing Queen") \
        .get_by_test_id("play").click()
    expect(guest.get_by_test_id("now-playing")).to_contain_text("Dancing Queen")
    expect(mine(guest, "Dancing Queen").get_by_test_id("status")).to_have_text("playing now")


def test_pages_resume_after_a_server_restart(pages: Pages, hub: Server) -> None:
    pages.tolerate(*LINK_DOWN)
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
        # While it is down the actions are off, and the page says why.
        expect(tab.get_by_test_id("gate")).to_contain_text("Reconnecting")
    expect(guest.get_by_test_id("submit")).to_be_disabled()
    expect(guest.get_by_test_id("submit")).to_have_attribute("aria-describedby", "gate")
    expect(dj.get_by_test_id("accept").first).to_be_disabled()

    hub.start()  # same port, same database
    # Updates made by others right away, before or while the pages come back:
    command(hub, room, "dj1", Role.DJ, "request.accept", request_id=first)
    olga = submit(hub, room, "olga", "Hey Jude", "The Beatles")
    command(hub, room, "dj1", Role.DJ, "request.accept", request_id=olga)
    command(hub, room, "dj1", Role.DJ, "queue.reorder", request_id=olga, position=1)
    submit(hub, room, "olga", "Let It Be", "The Beatles")

    for tab in (guest, dj):
        connected(tab)
        expect(tab.get_by_test_id("gate")).to_be_hidden()
    expect(mine(guest, "Dancing Queen").get_by_test_id("status")).to_have_text("#2 in the queue")
    expect(guest.get_by_test_id("up-next").locator("li.item")).to_have_text(
        [re.compile("Hey Jude"), re.compile("Dancing Queen")])
    queue = dj.get_by_test_id("queue").locator("li.item")
    expect(queue).to_have_count(2)
    expect(queue.nth(0)).to_contain_text("Hey Jude")
    expect(queue.nth(1)).to_contain_text("Dancing Queen")
    expect(dj.get_by_test_id("pending").locator("li.item")).to_have_count(1)
    expect(dj.get_by_test_id("pending")).to_contain_text("Let It Be")
    # And the guest can act again.
    request_form(guest, "Waterloo", "ABBA")
    expect(dj.get_by_test_id("pending").locator("li.item")).to_have_count(2)
    expect(guest.get_by_test_id("mine").locator("li.item")).to_have_count(2)
    state = room_state(hub, room)
    assert [r["title"] for r in state["queue"]] == ["Hey Jude", "Dancing Queen"]
    assert sorted(r["title"] for r in state["pending"]) == ["Let It Be", "Waterloo"]


def test_long_polling_fallback_and_back(browser: Any, tmp_path: Path) -> None:
    srv = web_hub(tmp_path / "hub", websockets="false").start()
    opened = Pages(browser, srv)
    opened.tolerate(*LINK_DOWN)
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
    opened.check()
    srv.assert_clean_log()


def test_offline_then_online(pages: Pages, hub: Server) -> None:
    pages.tolerate(*LINK_DOWN)
    room = f"queue:web-{secrets.token_hex(4)}"
    guest = pages.open("guest.html", "gina", Role.GUEST, room=room)
    connected(guest)
    expect(guest.get_by_test_id("mine")).to_contain_text("Nothing requested yet.")  # loaded
    context = pages.contexts[-1]
    context.set_offline(True)
    expect(guest.get_by_test_id("connection")).to_have_attribute("data-state", "offline")
    expect(guest.get_by_test_id("gate")).to_contain_text("You are offline")
    expect(guest.get_by_test_id("gate")).to_have_attribute("data-kind", "warn")
    # What the guest types stays; sending waits for the network.
    form = guest.get_by_test_id("request-form")
    form.get_by_label("Title").fill("Dancing Queen")
    form.get_by_label("Artist").fill("ABBA")
    expect(guest.get_by_test_id("submit")).to_be_disabled()
    olga = submit(hub, room, "olga", "Hey Jude", "The Beatles")
    command(hub, room, "dj1", Role.DJ, "request.accept", request_id=olga)

    context.set_offline(False)
    connected(guest)
    expect(guest.get_by_test_id("up-next")).to_contain_text("Hey Jude")
    expect(form.get_by_label("Title")).to_have_value("Dancing Queen")
    guest.get_by_test_id("submit").click()
    expect(mine(guest, "Dancing Queen").get_by_test_id("status")).to_have_text("#1 in line")
    expect(form.get_by_label("Title")).to_have_value("")  # taken: the form is cleared
    expect(guest.get_by_test_id("connection")).not_to_contain_text("unsent")
