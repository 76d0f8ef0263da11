"""Endpoints: an admin's input, room patterns and event filters."""

from __future__ import annotations

import orjson
import pytest

from roomlog.errors import ProtocolError
from roomlog.protocol import Message
from roomlog.signing import new_secret
from roomlog.webhooks.endpoint import Endpoint, Secret, parse_change, parse_new, wants


def endpoint(rooms: tuple[str, ...] = ("*",), events: tuple[str, ...] = ()) -> Endpoint:
    return Endpoint("wh_1", "https://example.com/h", "", rooms, events,
                    (Secret(new_secret(), 0),), True, 1, 0, 0)


def msg(room: str, data: object) -> Message:
    return Message(room, 1, "e", 0, "u", orjson.dumps(data))


def test_patterns_select_rooms_by_kind_prefix_or_name() -> None:
    e = endpoint(("queue:*", "chat:team-*", "repair:t1"))
    assert e.follows("queue:a") and e.follows("chat:team-x") and e.follows("repair:t1")
    assert not e.follows("chat:lobby") and not e.follows("repair:t10")
    assert endpoint().follows("user:u1")


def test_events_match_the_event_name_or_the_type_in_any_room_kind() -> None:
    e = endpoint(events=("request.submitted", "refund.due"))
    assert wants(e, msg("queue:q", {"event": "request.submitted", "request": {}}))
    assert wants(e, msg("user:u1", {"event": "refund.due"}))
    assert wants(e, msg("chat:c", {"type": "refund.due"}))
    assert not wants(e, msg("queue:q", {"event": "request.played"}))
    assert not wants(e, msg("chat:c", [1, 2]))
    assert wants(endpoint(), msg("chat:c", "anything"))


def test_a_new_endpoint_needs_a_url_and_rooms_and_gets_a_secret() -> None:
    new = parse_new({"url": "https://example.com/h", "rooms": ["queue:*"]}, default_batch=1)
    assert new.secret.startswith("whsec_") and new.enabled and new.batch_max == 1
    given = new_secret()
    assert parse_new({"url": "http://h.example/x", "rooms": ["*"], "secret": given,
                      "batch_max": 50}, default_batch=1).secret == given


@pytest.mark.parametrize("body", [
    {"rooms": ["*"]},
    {"url": "https://example.com", "rooms": []},
    {"url": "ftp://example.com", "rooms": ["*"]},
    {"url": "https://user:pw@example.com", "rooms": ["*"]},
    {"url": "https://example.com:99999/", "rooms": ["*"]},
    {"url": "https://example.com", "rooms": ["queue*"]},
    {"url": "https://example.com", "rooms": ["Queue:*"]},
    {"url": "https://example.com", "rooms": ["*"], "events": ["bad event"]},
    {"url": "https://example.com", "rooms": ["*"], "batch_max": 0},
    {"url": "https://example.com", "rooms": ["*"], "batch_max": True},
    {"url": "https://example.com", "rooms": ["*"], "enabled": "yes"},
    {"url": "https://example.com", "rooms": ["*"], "secret": "whsec_short"},
    {"url": "https://example.com", "rooms": ["*"], "secret": "not-a-secret"},
    {"url": "https://example.com", "rooms": ["*"], "surprise": 1},
    {"url": "https://example.com", "rooms": ["*"], "description": "a\x00b"},
])
def test_hostile_input_is_a_coded_error(body: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        parse_new(body, default_batch=1)


def test_an_update_re_enables_and_clears_the_disabling() -> None:
    from dataclasses import replace
    off = replace(endpoint(), enabled=False, disabled_ms=5, disabled_reason="horizon")
    on = parse_change({"enabled": True}).apply(off, 10)
    assert on.enabled and on.disabled_reason is None and on.version == 2
