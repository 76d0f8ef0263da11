"""Paid requests in the pages, in Chromium, against a hub whose payment hook is the
operator's backend process, capturing at the test provider process.

A guest on a phone sees the price, pays (the provider issues the reference, as its
payment page would), submits with the reference and sees "paid, waiting for the DJ";
the DJ on a desktop sees the paid request and vetoes it; the guest sees the refund
coming, then refunded once the backend confirms it, also on a desktop. The reference
comes from the provider's payment page, as in the demo.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from roomlog.identity import Role
from roomlog.signing import new_secret
from tests.e2e.support import Server, issue_token
from tests.payments.processes import Proc, backend, provider
from tests.web.conftest import serving, watching
from tests.web.support import DESKTOP, PHONE, Pages, command, connected, expect, mine, shot


@pytest.fixture
def songapp(tmp_path: Path) -> Iterator[tuple[Proc, Proc, str]]:
    secret = new_secret()
    pay = provider(tmp_path / "songapp").start()
    app = backend(tmp_path / "songapp", pay.url, secret=secret,
                  token=issue_token("songapp", Role.SERVICE)).start()
    yield pay, app, secret
    app.kill()
    pay.kill()


@pytest.fixture
def paid_hub(tmp_path: Path, songapp: tuple[Proc, Proc, str]) -> Iterator[Server]:
    _, app, secret = songapp
    file = tmp_path / "backends.json"
    file.write_bytes(orjson.dumps({"backends": [{"name": "songapp", "hooks": [{
        "on": ["queue:request.submit"], "url": app.url + "/hook", "secret": secret,
        "timeout": 5}]}]}))
    yield from serving(tmp_path / "hub", backends_file=str(file))


@pytest.fixture
def paid_pages(browser: Any, paid_hub: Server) -> Iterator[Pages]:
    yield from watching(browser, paid_hub)


def test_a_guest_pays_the_dj_vetoes_the_guest_sees_the_refund(
        paid_pages: Pages, paid_hub: Server, songapp: tuple[Proc, Proc, str]) -> None:
    pay, app, _ = songapp
    room = f"queue:paid-{secrets.token_hex(4)}"
    command(paid_hub, room, "dj1", Role.DJ, "queue.settings", price=500, currency="EUR")
    guest = paid_pages.open("guest.html", "gina", Role.GUEST, viewport=PHONE, room=room)
    dj = paid_pages.open("dj.html", "dj1", Role.DJ, viewport=DESKTOP, room=room)
    connected(guest)
    connected(dj)
    expect(guest.get_by_test_id("price")).to_contain_text("€5.00")

    # The provider's payment page (a tab of the guest's phone) gives a reference.
    paying = paid_pages.context(viewport=PHONE).new_page()
    paying.goto(f"{pay.url}/?amount=500&currency=EUR")
    paying.get_by_role("button", name="Pay").click()
    expect(paying.locator("#out")).to_contain_text("Your payment reference: pay_")
    reference = paying.locator("#out").inner_text().rsplit(" ", 1)[-1]
    form = guest.get_by_test_id("request-form")
    form.get_by_label("Title").fill("Dancing Queen")
    form.get_by_label("Artist").fill("ABBA")
    form.get_by_label("Payment reference").fill(reference)
    form.get_by_test_id("submit").click()
    row = mine(guest, "Dancing Queen")
    expect(row.get_by_test_id("payment")).to_have_text("paid €5.00 · waiting for the DJ")
    shot(guest, "guest-paid-phone")

    pending = dj.get_by_test_id("pending").locator("li.item", has_text="Dancing Queen")
    expect(pending.get_by_test_id("paid")).to_have_text("paid €5.00")
    expect(dj.get_by_test_id("counters")).to_contain_text("waiting €5.00")
    shot(dj, "dj-paid-desktop")
    pending.get_by_test_id("veto").click()

    expect(row.get_by_test_id("payment")).to_have_text("refund of €5.00 on its way")
    expect(guest.get_by_test_id("toast-info").filter(
        has_text="Your payment of €5.00 will be refunded.")).to_have_count(1)

    # The operator's backend refunds at the provider and tells the hub.
    done = httpx.post(f"{app.url}/sync", json={"room": room, "hub": paid_hub.base},
                      timeout=15).json()
    assert done == {"refunded": 1, "failed": 0}
    expect(row.get_by_test_id("payment")).to_have_text("refunded €5.00")
    shot(guest, "guest-refunded-phone")

    # The same guest on a desktop sees the same.
    wide = paid_pages.open("guest.html", "gina", Role.GUEST, viewport=DESKTOP, room=room)
    connected(wide)
    expect(mine(wide, "Dancing Queen").get_by_test_id("payment")).to_have_text(
        "refunded €5.00")
    shot(wide, "guest-refunded-desktop")
