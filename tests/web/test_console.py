"""The operator's console in the browser (issue 16, "The console"), against real servers.

* At a phone's size and a desktop's: the overview lists the instance, a ticket is
  found by name, its log is shown, and time travel shows the right state at three
  seqs for the customer and for the technician; the customer's view never holds the
  internal marker. The reset dialog says what is lost. No console error, no serious
  axe-core violation, nothing wider than the screen; screenshots for review.
* Two instances on PostgreSQL and Redis: the overview lists both; a ban made in the
  console (on one) closes the banned guest's page on the other within the documented
  bound (at once by the bus broadcast; ``ban_reload_interval`` if that is lost), the
  audit trail shows who did it, and lifting it is audited too.
* A token of another role gets the "for administrators" page.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from roomlog.identity import Role
from tests.e2e.support import ROOT, Server, migrate
from tests.redis_server import RedisServer
from tests.web.conftest import watching
from tests.web.support import SIZES, Pages, axe_violations, command, connected, expect, shot

MARKER = "INTERNAL-MARKER-16"


def seed_ticket(hub: Server) -> str:
    """A ticket: 1 created (internal supplier), 2 diagnosing, 3 an internal note,
    4 on hold (internal reason), 5 diagnosing again, 6 a note for the customer."""
    room = f"repair:t-{secrets.token_hex(3)}"

    def tech(name: str, **args: Any) -> None:
        command(hub, room, "tech1", Role.TECHNICIAN, name, **args)

    tech("ticket.create", customer_id="cust1", device="Pixel 7", problem="No touch",
         technicians=["tech1"], internal={"supplier": MARKER})
    tech("status.set", status="diagnosing")
    tech("note.add", text=f"Bent frame {MARKER}", visibility="internal")
    tech("status.set", status="on_hold", reason="Waiting for a part",
         internal_reason=f"supplier late {MARKER}")
    tech("status.set", status="diagnosing")
    tech("note.add", text="The part is here", visibility="customer")
    return room


def open_console(pages: Pages, *, viewport: dict[str, int], server: Server | None = None
                 ) -> Any:
    tab = pages.open("console.html", "root", Role.ADMIN, viewport=viewport)
    connected(tab)
    return tab


def travel(tab: Any, seq: int, audience: str) -> tuple[str, str]:
    form = tab.get_by_test_id("travel-form")
    form.get_by_label("Seq").fill(str(seq))
    form.get_by_label("As").select_option(audience)
    form.get_by_role("button", name="Show").click()
    summary = tab.get_by_test_id("travel-summary")
    expect(summary).to_contain_text(f"at seq {seq} of 6, as {audience}")
    return summary.inner_text(), tab.get_by_test_id("travel").inner_text()


def review(tab: Any, name: str) -> None:
    shot(tab, name)
    overflow = tab.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{name}: {overflow} px wider than the screen"
    assert axe_violations(tab) == [], name


@pytest.mark.parametrize("size", list(SIZES))
def test_time_travel_in_the_console(pages: Pages, hub: Server, size: str) -> None:
    room = seed_ticket(hub)
    tab = open_console(pages, viewport=SIZES[size])
    expect(tab.get_by_test_id("instances").locator("tbody tr")).to_have_count(1)

    search = tab.get_by_test_id("room-search")
    search.get_by_label("Name contains").fill(room.split(":")[1])
    search.get_by_role("button", name="Search").click()
    tab.get_by_test_id("rooms").get_by_role("button", name=room).click()
    detail = tab.get_by_test_id("room-detail")
    expect(detail).to_contain_text("Head")
    expect(tab.get_by_test_id("room-log").locator("li.item")).to_have_count(6)
    detail.get_by_role("button", name="Time travel").click()
    expect(tab.get_by_test_id("travel-summary")).to_contain_text("at seq 6 of 6")

    for seq, status in ((1, "received"), (4, "on_hold"), (5, "diagnosing")):
        summary, shown = travel(tab, seq, "customer")
        assert "(cust1)" in summary and MARKER not in shown
        assert f'"status": "{status}"' in shown
        summary, shown = travel(tab, seq, "technician")
        assert "(tech1)" in summary and MARKER in shown
        assert f'"status": "{status}"' in shown
    travel(tab, 3, "customer")
    expect(tab.get_by_test_id("travel-hidden")).to_be_visible()
    travel(tab, 4, "technician")
    expect(tab.get_by_test_id("travel-event")).to_contain_text("status.changed by tech1")
    tab.get_by_test_id("travel").scroll_into_view_if_needed()
    review(tab, f"console-{size}")

    detail.get_by_test_id("reset-room").click()
    dialog = tab.get_by_test_id("reset-dialog")
    expect(dialog).to_contain_text("drops 6 messages (seq 1 to 6)")
    expect(dialog).to_contain_text("state")
    go = dialog.get_by_role("button", name="Reset the room")
    expect(go).to_be_disabled()
    dialog.get_by_label("Type the room's name to confirm").fill(room)
    expect(go).to_be_enabled()
    shot(tab, f"console-reset-{size}")
    assert axe_violations(tab) == [], "reset dialog"
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)


def test_other_roles_get_the_page_for_administrators(pages: Pages, hub: Server) -> None:
    tab = pages.open("console.html", "dj1", Role.DJ)
    expect(tab.get_by_test_id("not-available")).to_contain_text("For administrators")


def test_the_console_in_spanish(pages: Pages, hub: Server) -> None:
    seed_ticket(hub)
    tab = pages.open("console.html", "root", Role.ADMIN, locale="es-ES")
    connected(tab)
    expect(tab.locator("#overview h2")).to_have_text("Instancias")
    expect(tab.get_by_test_id("instances").locator("tbody tr")).to_have_count(1)
    expect(tab.locator("#travel h2")).to_have_text("Viaje en el tiempo")
    review(tab, "console-es-phone")


@pytest.fixture
def pair(tmp_path: Path, own_pg_url: str, redis_server: RedisServer) -> Iterator[list[Server]]:
    """Two hubs with the web app on one PostgreSQL database and one Redis."""
    migrate(own_pg_url)
    servers = [Server(tmp_path / f"hub-{i}", own_pg_url, redis_url=redis_server.url,
                      web_dir=str(ROOT / "clients"), console_report_interval=0.5)
               for i in (1, 2)]
    try:
        for srv in servers:
            srv.launch()
        for srv in servers:
            srv.wait_ready()
        yield servers
    finally:
        for srv in servers:
            srv.stop()
    for srv in servers:
        srv.assert_clean_log()


def test_a_ban_in_the_console_holds_on_another_instance(browser: Any,
                                                        pair: list[Server]) -> None:
    one, two = pair
    console_pages = watching(browser, one)
    guest_pages = watching(browser, two)
    admin_view = next(console_pages)
    guest_view = next(guest_pages)
    try:
        user = f"mallory-{secrets.token_hex(2)}"
        guest = guest_view.open("guest.html", user, Role.GUEST, room="queue:club")
        connected(guest)
        guest_view.tolerate("WebSocket", "4003")
        tab = admin_view.open("console.html", "root", Role.ADMIN,
                              viewport=SIZES["desktop"])
        connected(tab)
        instances = tab.get_by_test_id("instances").locator("tbody tr")
        expect(instances).to_have_count(2)  # each instance's report reached the other

        form = tab.get_by_test_id("ban-form")
        form.get_by_label("User id").fill(user)
        form.get_by_label("Reason").fill("spamming the queue")
        form.get_by_role("button", name="Ban").click()
        # At once over the bus; within ban_reload_interval (5 s) were the broadcast lost.
        expect(guest.get_by_test_id("connection")).to_have_attribute("data-state", "closed")
        expect(guest.get_by_test_id("gate")).to_contain_text("disconnected by an administrator")

        audit = tab.get_by_test_id("audit")
        expect(audit.locator("li[data-action=ban]")).to_contain_text(
            f"root (admin) banned {user}")
        expect(audit.locator("li[data-action=ban]")).to_contain_text("spamming the queue")
        bans = tab.get_by_test_id("bans")
        expect(bans).to_contain_text(user)
        shot(tab, "console-cluster-desktop")
        assert axe_violations(tab) == [], "console with two instances"
        bans.locator("li", has_text=user).get_by_role("button", name="Lift").click()
        expect(audit.locator("li[data-action=unban]")).to_contain_text(
            f"root (admin) lifted the ban of {user}")
    finally:
        for gen in (console_pages, guest_pages):
            next(gen, None)
