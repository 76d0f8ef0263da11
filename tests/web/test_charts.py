"""The analytics pages against a real hub with a seeded log: every chart shows the series
the hand-made log implies (``window.roomlogCharts``, what the charts were drawn from, and
the uPlot canvases on the page), the tiles, the SLA breaches highlighted, the CSV of what
is shown; at a phone's size and a desktop's, with no console error and no serious axe-core
violation; screenshots ``analytics-<size>.png``, ``repair-stats-<size>.png`` (and ``-es``).

The numbers themselves are unit-tested against hand-made logs in
tests/rooms/test_queue_analytics.py and tests/rooms/test_repair_stats.py; the charts' data
from a report in clients/web/test/stats-model.test.mjs.
"""

from __future__ import annotations

import csv
import io
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from roomlog.identity import Role
from tests.e2e.support import Server
from tests.web.conftest import serving, watching
from tests.web.support import SIZES, Pages, command, connected, expect, submit
from tests.web.test_pages import review

# (guest, title, artist); request ids are in this order
SONGS = [("ann", "Hey Jude", "The Beatles"), ("bob", "Dancing Queen", "ABBA"),
         ("cat", "Waterloo", "ABBA"), ("ann", "Let It Be", "The Beatles"),
         ("dan", "Blue Monday", "New Order"), ("bob", "Bohemian Rhapsody", "Queen")]
VOTES = [("bob", 0), ("cat", 0), ("dan", 0), ("ann", 1), ("cat", 5)]
KOLKATA = 330  # minutes east of UTC, all year


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One hub for the module (the pages only read): any time in received is a breach."""
    yield from serving(tmp_path_factory.mktemp("charts"), repair_sla="received=0.001")


@pytest.fixture
def pages(browser: Any, hub: Server) -> Iterator[Pages]:
    yield from watching(browser, hub)


@pytest.fixture(scope="module")
def queue(hub: Server) -> dict[str, Any]:
    """A set: six requests, five upvotes, two accepted and played, three vetoed."""
    room = f"queue:charts-{secrets.token_hex(3)}"
    started = time.time()
    command(hub, room, "dj1", Role.DJ, "queue.open")  # the DJ's room
    ids = [submit(hub, room, user, title, artist) for user, title, artist in SONGS]
    for voter, target in VOTES:
        command(hub, room, voter, Role.GUEST, "request.vote", request_id=ids[target])
    dj = {"user": "dj1", "role": Role.DJ}
    for i in (0, 1):
        command(hub, room, **dj, name="request.accept", request_id=ids[i])
    command(hub, room, **dj, name="request.veto", request_id=ids[2], reason="Not tonight")
    command(hub, room, **dj, name="request.veto", request_id=ids[4], reason=" not  tonight")
    command(hub, room, **dj, name="request.veto", request_id=ids[5])
    command(hub, room, **dj, name="request.play", request_id=ids[0])
    command(hub, room, **dj, name="request.play", request_id=ids[1])  # Hey Jude played
    return {"room": room, "started": started, "ended": time.time()}


@pytest.fixture(scope="module")
def tickets(hub: Server) -> dict[str, str]:
    """A: repaired by tech1 after a failed QA check, collected. B: tech2's quote declined.
    C: tech1's, still received."""
    names = {k: f"t-{k.lower()}{secrets.token_hex(3)}" for k in "ABC"}

    def run(key: str, user: str, role: Role, name: str, **args: Any) -> None:
        command(hub, f"repair:{names[key]}", user, role, name, **args)

    quote = {"amount": 89.0, "currency": "EUR"}
    tech1, tech2, cust = (("tech1", Role.TECHNICIAN), ("tech2", Role.TECHNICIAN),
                          ("cust1", Role.CUSTOMER))
    run("A", *tech1, "ticket.create", customer_id="cust1", device="Pixel 7", problem="No touch",
        technicians=["tech1"])
    run("A", *tech1, "status.set", status="diagnosing")
    run("A", *tech1, "status.set", status="awaiting_approval", quote=quote)
    run("A", *cust, "quote.approve")
    run("A", *tech1, "status.set", status="quality_check")
    run("A", *tech1, "qa.record", item="Screen", passed=False, note="dead pixels")
    run("A", *tech1, "qa.record", item="Screen", passed=True)
    run("A", *tech1, "status.set", status="ready_for_pickup")
    run("A", *tech1, "status.set", status="collected")
    run("B", *tech2, "ticket.create", customer_id="cust1", device="iPad", problem="Battery",
        technicians=["tech2"])
    run("B", *tech2, "status.set", status="diagnosing")
    run("B", *tech2, "status.set", status="awaiting_approval", quote=quote)
    run("B", *cust, "quote.decline", reason="too much")
    run("C", *tech1, "ticket.create", customer_id="cust2", device="Laptop", problem="Hinge",
        technicians=["tech1"])
    run("B", *tech2, "note.add", text="Called the customer", priority="normal",
        visibility="internal")  # C is then some time in received, as of this entry
    return names


def charts(tab: Any) -> dict[str, Any]:
    return tab.evaluate("() => JSON.parse(JSON.stringify(window.roomlogCharts))")


def series(chart: dict[str, Any]) -> dict[str, list[Any]]:
    return {s["key"]: s["values"] for s in chart["series"]}


def local_hours(start: float, end: float, offset_min: int) -> set[int]:
    return {int((t + offset_min * 60) // 3600 % 24) for t in (start, end)}


@pytest.mark.parametrize("size", list(SIZES))
def test_dj_analytics_charts_of_a_seeded_set(pages: Pages, hub: Server, queue: dict[str, Any],
                                             size: str, tmp_path: Path) -> None:
    context = pages.browser.new_context(viewport=SIZES[size], locale="en-US",
                                        timezone_id="Asia/Kolkata", accept_downloads=True)
    pages.contexts.append(context)
    tab = pages.open("analytics.html", "dj1", Role.DJ, context=context, room=queue["room"])
    connected(tab)
    expect(tab.get_by_test_id("report")).to_have_attribute("data-state", "ready")
    expect(tab.get_by_test_id("tile-requests")).to_contain_text("6")
    expect(tab.get_by_test_id("tile-accepted")).to_contain_text("40%")
    expect(tab.get_by_test_id("tile-vetoed")).to_contain_text("60%")
    expect(tab.get_by_test_id("tile-votes")).to_contain_text("5")
    drawn = charts(tab)

    over_time = series(drawn["requests-over-time"])
    assert (sum(over_time["requests"]), sum(over_time["votes"])) == (6, 5)
    by_hour = drawn["requests-by-hour"]
    assert by_hour["labels"] == [f"{h:02d}" for h in range(24)]
    hours = series(by_hour)["requests"]
    assert sum(hours) == 6  # in the reader's clock: Kolkata, UTC+5:30
    assert {h for h, n in enumerate(hours) if n} <= local_hours(queue["started"],
                                                                 queue["ended"], KOLKATA)
    assert drawn["decisions"]["labels"] == ["Waiting", "In the queue", "Playing", "Played",
                                            "Vetoed", "Cancelled by the guest"]
    assert series(drawn["decisions"])["requests"] == [1, 0, 1, 1, 3, 0]
    assert drawn["veto-reasons"]["labels"] == ["Not tonight", "(no reason given)"]
    assert series(drawn["veto-reasons"])["vetoed"] == [2, 1]
    assert drawn["top-songs"]["labels"] == [
        "Hey Jude · The Beatles", "Dancing Queen · ABBA", "Bohemian Rhapsody · Queen",
        "Waterloo · ABBA", "Blue Monday · New Order", "Let It Be · The Beatles"]
    assert series(drawn["top-songs"]) == {"requests": [1] * 6, "votes": [3, 1, 1, 0, 0, 0]}
    assert drawn["top-artists"]["labels"] == ["The Beatles", "ABBA", "Queen", "New Order"]
    assert series(drawn["top-artists"]) == {"requests": [2, 2, 1, 1], "votes": [3, 1, 1, 0]}
    assert drawn["top-guests"]["labels"] == ["ann", "bob", "cat", "dan"]
    assert series(drawn["top-guests"]) == {"requests": [2, 2, 1, 1], "votes": [3, 2, 0, 0]}
    # uPlot drew the two charts with a numeric axis (canvas), with their legend's series.
    for chart in ("requests-over-time", "requests-by-hour"):
        canvas = tab.get_by_test_id(f"chart-{chart}").locator("canvas")
        expect(canvas).to_have_count(1)
        assert canvas.evaluate("c => c.width > 100 && c.height > 100")
    expect(tab.get_by_test_id("chart-requests-over-time").locator(".u-legend")).to_contain_text(
        "Upvotes")
    expect(tab.get_by_test_id("earnings")).to_be_hidden()  # until paid requests exist
    review(tab, f"analytics-{size}")

    # The CSV is the report shown: the same range, the same numbers.
    with tab.expect_download() as download:
        tab.get_by_test_id("csv").click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert path.name.startswith("analytics-queue-charts-") and path.name.endswith("-all.csv")
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    summary = {r["key"]: r["value"] for r in rows if r["section"] == "summary"}
    assert (summary["requests"], summary["acceptance_rate"], summary["votes"],
            summary["utc_offset_min"]) == ("6", "0.4", "5", str(KOLKATA))
    assert [(r["key"], r["requests"]) for r in rows if r["section"] == "veto_reason"] == [
        ("Not tonight", "2"), ("", "1")]


def test_the_set_picker_and_the_spanish_page(pages: Pages, queue: dict[str, Any]) -> None:
    tab = pages.open("analytics.html", "admin1", Role.ADMIN, locale="es-ES",
                     viewport=SIZES["desktop"], room=queue["room"], set="1")
    expect(tab.get_by_test_id("report")).to_have_attribute("data-state", "ready")
    expect(tab.get_by_test_id("set")).to_have_value("1")
    expect(tab.get_by_test_id("shown")).to_contain_text("Sesión 1")
    expect(tab.get_by_test_id("chart-decisions")).to_contain_text("Qué pasó con las peticiones")
    assert series(charts(tab)["decisions"])["requests"] == [1, 0, 1, 1, 3, 0]
    review(tab, "analytics-desktop-es")
    # Days in the future: nothing; the picker's set is let go.
    tab.get_by_test_id("from").fill("2099-01-01")
    tab.get_by_role("button", name="Mostrar").click()
    expect(tab.get_by_test_id("tile-requests")).to_contain_text("0")
    expect(tab.get_by_test_id("set")).to_have_value("")
    assert "from=2099-01-01" in tab.url
    expect(tab.get_by_test_id("chart-requests-by-hour")).to_contain_text("Nada en este periodo")


def test_analytics_are_not_for_guests(pages: Pages, queue: dict[str, Any]) -> None:
    pages.tolerate("403")  # the browser logs the refused request
    tab = pages.open("analytics.html", "ann", Role.GUEST, room=queue["room"])
    expect(tab.get_by_test_id("not-available")).to_contain_text("not available to you")


@pytest.mark.parametrize("size", list(SIZES))
def test_repair_statistics_of_seeded_tickets(pages: Pages, tickets: dict[str, str],
                                             size: str) -> None:
    tab = pages.open("repair-stats.html", "admin1", Role.ADMIN, viewport=SIZES[size])
    connected(tab)
    expect(tab.get_by_test_id("report")).to_have_attribute("data-state", "ready")
    expect(tab.get_by_test_id("tile-tickets")).to_contain_text("3")
    expect(tab.get_by_test_id("tile-approval")).to_contain_text("50%")
    expect(tab.get_by_test_id("tile-qa")).to_contain_text("1")
    drawn = charts(tab)

    status = drawn["by-status"]
    counts = dict(zip(status["labels"], series(status)["tickets"], strict=True))
    assert (counts["Received"], counts["Collected"], sum(counts.values())) == (1, 1, 3)
    assert drawn["quotes"]["labels"] == ["Approved", "Declined", "Waiting for the customer"]
    assert series(drawn["quotes"])["quotes"][:2] == [1, 1]
    assert drawn["qa-items"]["labels"] == ["Screen"]
    assert series(drawn["qa-items"]) == {"failed": [1]}
    per_day = series(drawn["tickets-per-day"])
    assert (sum(per_day["created"]), sum(per_day["repaired"])) == (3, 1)
    in_status = drawn["time-in-status"]
    assert in_status["labels"][:2] == ["Received", "Diagnosing"]
    medians = dict(zip(in_status["labels"], series(in_status)["median"], strict=True))
    assert medians["Received"] is not None and medians["On hold"] is None
    limits = series(in_status)["limit"]  # as the page writes them: received's alone
    assert limits[0] == "0 sec" and set(limits[1:]) == {""}
    # Every ticket spent some time in received: three breaches; only C is still there.
    breaches = tab.get_by_test_id("breach")
    expect(breaches).to_have_count(3)
    expect(tab.locator("tr.breach.current")).to_have_count(1)
    expect(tab.locator("tr.breach.current")).to_have_attribute("data-ticket", tickets["C"])
    expect(tab.get_by_test_id("chart-time-in-status").locator("tr.over")).to_contain_text(
        "3 breaches")
    rows = tab.get_by_test_id("technician")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("tech1")
    cells = rows.first.locator("td").all_inner_texts()
    assert cells[:3] == ["2", "1", "1"] and cells[4] == "1"  # tickets, open, repaired; QA
    review(tab, f"repair-stats-{size}")


def test_repair_statistics_are_for_admins(pages: Pages) -> None:
    pages.tolerate("403")
    tab = pages.open("repair-stats.html", "tech1", Role.TECHNICIAN)
    expect(tab.get_by_test_id("not-available")).to_contain_text("not available to you")


def test_the_numbers_follow_the_live_room(pages: Pages, hub: Server) -> None:
    room = f"queue:live-{secrets.token_hex(3)}"
    submit(hub, room, "ann", "Hey Jude", "The Beatles")
    tab = pages.open("analytics.html", "admin1", Role.ADMIN, room=room, refresh="1000")
    connected(tab)
    expect(tab.get_by_test_id("tile-requests")).to_contain_text("1")
    submit(hub, room, "bob", "Waterloo", "ABBA")  # the page reloads the report after it
    expect(tab.get_by_test_id("tile-requests")).to_contain_text("2")
    expect(tab.get_by_test_id("chart-top-artists")).to_contain_text("ABBA")


def test_repair_statistics_in_spanish(pages: Pages, tickets: dict[str, str]) -> None:
    tab = pages.open("repair-stats.html", "admin1", Role.ADMIN, locale="es-ES")
    expect(tab.get_by_test_id("report")).to_have_attribute("data-state", "ready")
    expect(tab.get_by_test_id("breaches")).to_contain_text("Incumplimientos del SLA")
    expect(tab.locator("tr.breach.current")).to_contain_text("sigue ahí")
    expect(tab.get_by_test_id("chart-time-in-status")).to_contain_text("Recibido")
    review(tab, "repair-stats-phone-es")
