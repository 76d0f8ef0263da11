"""Tokens of the pages: out of the URL at once; renewed from the operator's token
endpoint (a real HTTP server on another origin, configured on the hub with
ROOMLOG_WEB_TOKEN_URL) before they expire, for as long as a DJ set lasts; and when a
token is over, the actions are off and the page says what to do."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from roomlog.identity import Role
from tests.e2e.support import Server, issue_token
from tests.web.conftest import serving, watching
from tests.web.support import (
    DESKTOP,
    Pages,
    TokenEndpoint,
    connected,
    expect,
    request_form,
    shot,
    submit,
)


@pytest.fixture
def backend_hub(tmp_path: Path, token_endpoint: TokenEndpoint) -> Iterator[Server]:
    """A hub whose pages get their tokens from the token endpoint."""
    yield from serving(tmp_path / "hub", web_token_url=token_endpoint.url)


@pytest.fixture
def backend_pages(browser: Any, backend_hub: Server) -> Iterator[Pages]:
    yield from watching(browser, backend_hub)


def test_a_token_in_the_link_leaves_the_address_at_once(pages: Pages, hub: Server) -> None:
    room = f"queue:tok-{secrets.token_hex(3)}"
    token = issue_token("gina", Role.GUEST)
    guest = pages.open("guest.html", "gina", Role.GUEST, token=token, in_query=True, room=room)
    connected(guest)
    assert token not in guest.url and "token=" not in guest.url, guest.url
    assert guest.evaluate("location.href").endswith(f"room={room.replace(':', '%3A')}")
    # Replaced, not pushed: the tab's history is the blank page it started on and this one.
    assert guest.evaluate("history.length") == 2
    # It is kept for this tab only (sessionStorage), under the page's own key.
    assert guest.evaluate("sessionStorage.getItem('roomlog.token:guest')") == token
    assert guest.evaluate("localStorage.length") <= 2  # the room and the language, not it
    assert token not in guest.evaluate("JSON.stringify(localStorage)")
    guest.reload()
    connected(guest)
    request_form(guest, "Waterloo", "ABBA")
    expect(guest.get_by_test_id("mine")).to_contain_text("Waterloo")

    fragment = pages.open("guest.html", "olga", Role.GUEST, room=room)  # #token=
    connected(fragment)
    assert "token" not in fragment.url, fragment.url


def test_a_dj_set_runs_for_hours_on_short_lived_tokens(
        backend_pages: Pages, backend_hub: Server, token_endpoint: TokenEndpoint) -> None:
    """Tokens of 5 s renewed in the page (no reload, no reconnect): the 1-hour default
    over a 4-hour set, sped up (a renewal leaves a fifth of the life as margin: a
    second here, 12 minutes with real tokens)."""
    token_endpoint.ttl = 5
    token_endpoint.users["dj"] = "dj1"
    room = f"queue:set-{secrets.token_hex(3)}"
    first = submit(backend_hub, room, "olga", "Hey Jude", "The Beatles")
    dj = backend_pages.open("dj.html", None, viewport=DESKTOP, room=room)  # no token in it
    connected(dj)
    dj.evaluate("""() => {
        window.changes = [];
        window.roomlogClient.on("state", (e) => window.changes.push(e.state));
    }""")
    issued = len(token_endpoint.issued)
    # Four renewals: each token replaced before it expired, on the open WebSocket.
    for _ in range(200):  # an upper bound of ~40 s; four 5-second tokens take ~14 s
        if len(token_endpoint.issued) >= issued + 4:
            break
        dj.wait_for_timeout(200)
    assert len(token_endpoint.issued) >= issued + 4, token_endpoint.issued
    assert dj.evaluate("window.changes") == [], "the link never dropped"
    assert dj.evaluate("window.roomlogClient.closeCode") is None
    used = dj.evaluate("window.roomlogClient.token")
    assert used in [x["token"] for x in token_endpoint.issued[issued:]]
    assert all(r["page"] == "dj" and r["room"] == room for r in token_endpoint.requests)
    # Still acting, as dj1, with the latest token.
    dj.get_by_test_id("pending").locator(f'li[data-request-id="{first}"]') \
        .get_by_test_id("accept").click()
    expect(dj.get_by_test_id("queue")).to_contain_text("Hey Jude")
    expect(dj.get_by_test_id("gate")).to_be_hidden()
    assert "4001" not in backend_hub.output()


def test_an_expired_link_turns_the_actions_off_and_says_why(pages: Pages, hub: Server) -> None:
    room = f"queue:exp-{secrets.token_hex(3)}"
    # Long enough to load and connect on a busy machine, short enough to wait out.
    token = issue_token("gina", Role.GUEST, ttl=8)
    guest = pages.open("guest.html", "gina", Role.GUEST, token=token, room=room)
    connected(guest)
    expect(guest.get_by_test_id("submit")).to_be_enabled()
    # The hub closes the socket with 4001 when the token expires; no endpoint to renew it.
    gate = guest.get_by_test_id("gate")
    expect(gate).to_contain_text("This link has expired")
    expect(gate).to_have_attribute("data-kind", "bad")
    expect(guest.get_by_test_id("connection")).to_have_attribute("data-state", "closed")
    expect(guest.get_by_test_id("submit")).to_be_disabled()
    expect(guest.get_by_test_id("submit")).to_have_attribute("aria-describedby", "gate")
    assert guest.evaluate("sessionStorage.getItem('roomlog.token:guest')") is None
    shot(guest, "guest-link-expired-phone")
    gate.get_by_role("button", name="Enter a new token").click()
    expect(guest.get_by_test_id("setup")).to_be_visible()  # not the dead token again


def test_signed_out_at_the_backend(backend_pages: Pages, token_endpoint: TokenEndpoint) -> None:
    backend_pages.tolerate(r"status of 401")
    token_endpoint.refuse = True
    guest = backend_pages.open("guest.html", None, room="queue:out")
    gate = guest.get_by_test_id("gate")
    expect(gate).to_contain_text("Your session has ended. Sign in again")
    expect(gate.get_by_role("link", name="Sign in")).to_have_attribute(
        "href", "https://shop.example/login")
    expect(guest.get_by_test_id("connection")).to_have_attribute("data-state", "closed")


def test_a_token_endpoint_that_fails_for_a_while(
        backend_pages: Pages, token_endpoint: TokenEndpoint) -> None:
    backend_pages.tolerate(r"status of 503")
    token_endpoint.fail = True
    guest = backend_pages.open("guest.html", None, room="queue:later")
    gate = guest.get_by_test_id("gate")
    expect(gate).to_contain_text("Your session could not be renewed yet")
    expect(guest.get_by_test_id("submit")).to_have_count(0)  # nothing to act on without one
    token_endpoint.fail = False
    connected(guest)  # retried on the backoff schedule (200 ms here)
    expect(gate).to_be_hidden()
    expect(guest.get_by_test_id("submit")).to_be_enabled()
