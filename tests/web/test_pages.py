"""Every page, at a phone's size (390x844) and a desktop's (1280x860), with data: no
console error, no failed request, no serious or critical axe-core violation, nothing
wider than the screen, titles shown whole; and every action reachable by keyboard.

Screenshots of each page at each size go to ``tests/web/screenshots/`` (or
``$ROOMLOG_SCREENSHOTS``), for review: ``<page>-<size>.png``.
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from roomlog.identity import Role
from tests.e2e.support import Server, issue_token
from tests.web.support import (
    SIZES,
    Pages,
    axe_violations,
    command,
    connected,
    expect,
    open_ticket,
    png,
    shot,
    submit,
)

SONGS = [("olga", "Hey Jude", "The Beatles", None),
         ("gina", "Dancing Queen", "ABBA", "for my sister's birthday"),
         ("sam", "Blue Monday", "New Order", None),
         ("olga", "Bohemian Rhapsody", "Queen", "the long one, please!"),
         ("sam", "Heroes", "David Bowie", None),
         ("gina", "Waterloo", "ABBA", None),
         ("ali", "Murder on the Dancefloor", "Sophie Ellis-Bextor", None),
         ("kim", "Supercalifragilisticexpialidocious (Extended Dance Remix)",
          "Julie Andrews & Dick Van Dyke", None)]


def seed_queue(hub: Server) -> str:
    room = f"queue:club42-{secrets.token_hex(3)}"
    ids = [submit(hub, room, user, title, artist, note) for user, title, artist, note in SONGS]
    for voter, target in [("sam", 1), ("ali", 1), ("olga", 1), ("ali", 4), ("gina", 4),
                          ("gina", 6), ("kim", 3)]:
        command(hub, room, voter, Role.GUEST, "request.vote", request_id=ids[target])
    for rid in (ids[0], ids[2], ids[5]):
        command(hub, room, "dj1", Role.DJ, "request.accept", request_id=rid)
    command(hub, room, "dj1", Role.DJ, "request.play", request_id=ids[0])
    return room


def seed_ticket(hub: Server) -> str:
    ticket = f"t-{secrets.token_hex(3)}"
    repair = f"repair:{ticket}"

    def staff(name: str, **args: Any) -> None:
        command(hub, repair, "tech1", Role.TECHNICIAN, name, **args)

    staff("ticket.create", customer_id="cust1", device="iPhone 13 mini",
          problem="Cracked screen, no touch at the bottom", technicians=["tech1"])
    staff("status.set", status="diagnosing")
    staff("note.add", text="Frame slightly bent, check the battery too", priority="normal",
          visibility="internal")
    staff("milestone.add", title="Opened and inspected", percent=20)
    staff("note.add", text="We will call you once the display is in", priority="normal",
          visibility="customer")
    staff("status.set", status="awaiting_approval", reason="The display must be replaced",
          quote={"amount": 129.5, "currency": "EUR",
                 "description": "New OLED display, seal and labour"})
    upload = httpx.post(f"{hub.base}/v1/rooms/{repair}/photos", content=png(hue=20),
                        headers={"authorization": f"Bearer {issue_token('tech1', Role.TECHNICIAN)}",
                                 "content-type": "image/png"}, timeout=15).json()
    staff("photo.add", category="damage", caption="Crack across the lower edge",
          upload_id=upload["upload_id"])
    command(hub, repair, "cust1", Role.CUSTOMER, "note.add",
            text="Please keep my screen protector if you can", priority="normal")
    return ticket


def fits(tab: Any) -> None:
    """Nothing is wider than the screen (no sideways scrolling on a phone)."""
    overflow = tab.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{tab.url}: {overflow} px wider than the screen"


def review(tab: Any, name: str) -> None:
    """A screenshot (first: it is there to look at when a check fails), and the checks
    every page passes."""
    shot(tab, name)
    fits(tab)
    assert axe_violations(tab) == [], name


@pytest.mark.parametrize("size", list(SIZES))
def test_every_page_at_phone_and_desktop_size(pages: Pages, hub: Server, size: str) -> None:
    viewport = SIZES[size]
    room = seed_queue(hub)

    guest = pages.open("guest.html", "gina", Role.GUEST, viewport=viewport, room=room)
    connected(guest)
    expect(guest.get_by_test_id("now-playing")).to_contain_text("Hey Jude")
    expect(guest.get_by_test_id("others").locator("li.item")).to_have_count(4)
    review(guest, f"guest-{size}")

    dj = pages.open("dj.html", "dj1", Role.DJ, viewport=viewport, room=room)
    connected(dj)
    titles = dj.get_by_test_id("pending").get_by_test_id("title")
    expect(titles).to_have_count(5)
    # Every title is shown whole, in a column wide enough to read it (the DJ console on a
    # phone had a 0 px title column and cut "Bohemian Rhapsody" to "Bohe… Rhap…").
    for t in dj.get_by_test_id("title").all():
        box = t.evaluate("e => ({w: e.clientWidth, sw: e.scrollWidth, "
                         "row: e.closest('li').clientWidth, text: e.textContent})")
        assert box["w"] >= 0.45 * box["row"], box
        assert box["sw"] <= box["w"], box
    review(dj, f"dj-{size}")

    ticket = seed_ticket(hub)
    customer = pages.open("repair.html", "cust1", Role.CUSTOMER, viewport=viewport,
                          ticket=ticket)
    connected(customer)
    expect(customer.get_by_test_id("quote")).to_contain_text("129.50")
    expect(customer.get_by_test_id("photos").locator("img")).to_have_count(1)
    expect(customer.get_by_test_id("notes")).not_to_contain_text("battery")  # internal
    review(customer, f"repair-customer-{size}")

    tech = pages.open("tech.html", "tech1", Role.TECHNICIAN, viewport=viewport, ticket=ticket)
    connected(tech)
    expect(tech.get_by_test_id("ticket-status")).to_have_text("Waiting for the customer's approval")
    expect(tech.get_by_test_id("notes")).to_contain_text("battery")
    expect(tech.get_by_test_id("photos").locator("img")).to_have_count(1)
    review(tech, f"technician-{size}")

    stranger = pages.open("repair.html", "cust2", Role.CUSTOMER, viewport=viewport,
                          ticket=ticket)
    expect(stranger.get_by_test_id("not-available")).to_contain_text(
        "This repair is not available to you")
    review(stranger, f"repair-not-available-{size}")

    setup = pages.open("guest.html", None, viewport=viewport)
    expect(setup.get_by_test_id("setup")).to_be_visible()
    review(setup, f"guest-setup-{size}")

    index = pages.open("", None, viewport=viewport)
    expect(index.get_by_role("heading", name="Request a song")).to_be_visible()
    review(index, f"index-{size}")


def focus_by_tab(tab: Any, target: Any, limit: int = 80) -> None:
    """Press Tab until `target` has the focus: it is reachable by keyboard."""
    for _ in range(limit):
        if target.evaluate("e => document.activeElement === e"):
            return
        tab.keyboard.press("Tab")
    raise AssertionError(f"never reached by Tab: {target}")


def test_every_action_by_keyboard(pages: Pages, hub: Server) -> None:
    room = f"queue:keys-{secrets.token_hex(3)}"
    other = submit(hub, room, "olga", "Hey Jude", "The Beatles")
    guest = pages.open("guest.html", "gina", Role.GUEST, room=room)
    connected(guest)
    focus_by_tab(guest, guest.get_by_label("Title"))
    guest.keyboard.type("Dancing Queen")
    guest.keyboard.press("Tab")
    guest.keyboard.type("ABBA")
    # The button is live once the room's state is read, which on a busy machine can
    # come after "connected": a user, like this test, presses Enter when it is.
    expect(guest.get_by_test_id("submit")).to_be_enabled()
    guest.keyboard.press("Enter")  # submits the form
    expect(guest.get_by_test_id("mine")).to_contain_text("Dancing Queen")
    vote = guest.get_by_test_id("vote")
    focus_by_tab(guest, vote)
    guest.keyboard.press("Enter")
    expect(vote).to_have_attribute("aria-pressed", "true")

    dj = pages.open("dj.html", "dj1", Role.DJ, room=room)
    connected(dj)
    row = dj.get_by_test_id("pending").locator(f'li[data-request-id="{other}"]')
    focus_by_tab(dj, row.get_by_test_id("accept"))
    dj.keyboard.press("Enter")
    expect(dj.get_by_test_id("queue")).to_contain_text("Hey Jude")
    focus_by_tab(dj, dj.get_by_test_id("queue").get_by_test_id("play"))
    dj.keyboard.press("Space")
    expect(dj.get_by_test_id("now-playing")).to_contain_text("Hey Jude")

    ticket = open_ticket(hub)
    tech = pages.open("tech.html", "tech1", Role.TECHNICIAN)
    connected(tech)
    entry = tech.get_by_test_id("tickets").get_by_role("button", name=ticket)
    focus_by_tab(tech, entry)
    tech.keyboard.press("Enter")
    expect(tech.get_by_test_id("ticket-status")).to_have_text("Received")
    focus_by_tab(tech, tech.get_by_test_id("moves").get_by_role("button").first)
    tech.keyboard.press("Enter")
    expect(tech.get_by_test_id("ticket-status")).to_have_text("Diagnosing")
