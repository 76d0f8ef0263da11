"""The console's pure parts: instance reports kept and aged, log filters, webhook rows."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
import pytest

from roomlog.console.instances import webhook_rows
from roomlog.console.logpage import LogFilter, parse_filter
from roomlog.console.reports import MAX_INSTANCES, Instances
from roomlog.errors import ProtocolError
from roomlog.protocol import Message


def test_reports_age_into_silence_then_out() -> None:
    seen = Instances(interval=2.0)
    seen.receive({"instance": "a", "rooms": 1}, now=100.0)
    seen.receive({"instance": "b", "rooms": 2}, now=104.0)
    seen.receive({"instance": "a", "rooms": 3}, now=105.0)  # the latest one wins
    assert [(r["instance"], r["rooms"], r["stale"]) for r in seen.listing(106.0)] == [
        ("a", 3, False), ("b", 2, False)]
    assert [r["stale"] for r in seen.listing(111.0)] == [False, True]  # b: 7 s > 3 intervals
    assert [r["instance"] for r in seen.listing(124.5)] == ["a"]  # b: 20.5 s > 10 intervals


def test_reports_that_are_not_reports_are_ignored_and_the_table_is_bounded() -> None:
    seen = Instances(interval=1.0)
    for junk in (None, "x", {"instance": 3}, {"rooms": 1}):
        seen.receive(junk, now=0.0)
    assert seen.listing(0.0) == []
    for i in range(MAX_INSTANCES + 5):
        seen.receive({"instance": f"i{i:05}"}, now=0.0)
    listed = seen.listing(0.0)
    assert len(listed) == MAX_INSTANCES and listed[0]["instance"] == "i00005"


def message(seq: int, by: str, data: object) -> Message:
    return Message("queue:q", seq, "e", 0, by, orjson.dumps(data))


def test_log_filters_match_author_event_family_and_text() -> None:
    vetoed = message(3, "dave", {"event": "request.vetoed", "reason": "Too LOUD"})
    plain = message(4, "gina", "just text")
    assert LogFilter().empty and LogFilter().matches(plain)
    assert LogFilter(by="dave").matches(vetoed) and not LogFilter(by="dav").matches(vetoed)
    assert LogFilter(event="request").matches(vetoed)
    assert LogFilter(event="request.vetoed").matches(vetoed)
    assert not LogFilter(event="request.veto").matches(vetoed)
    assert not LogFilter(event="request").matches(plain)
    assert parse_filter({"text": "too loud"}).matches(vetoed)
    assert parse_filter({"text": "TOO"}).matches(vetoed)
    assert parse_filter({"by": "", "event": ""}).empty


def test_a_filter_too_long_is_refused() -> None:
    with pytest.raises(ProtocolError):
        parse_filter({"text": "x" * 201})


@dataclass
class _Stats:
    delivered: int
    failed: int
    lag_seconds: float


@dataclass
class _Worker:
    retrying: int
    lag_messages: int


@dataclass
class _Deliverer:
    stats: dict[str, _Stats] = field(default_factory=dict)
    workers: dict[str, _Worker] = field(default_factory=dict)


def test_webhook_rows_are_the_endpoints_this_instance_delivers() -> None:
    here = _Deliverer({"wh_b": _Stats(7, 2, 1.23456), "wh_a": _Stats(3, 0, 0.0),
                       "wh_gone": _Stats(1, 0, 0.0)},  # its lease moved to another instance
                      {"wh_a": _Worker(0, 0), "wh_b": _Worker(1, 4)})
    assert webhook_rows(here) == [
        {"endpoint": "wh_a", "delivered": 3, "failed": 0, "retrying": 0, "lag_messages": 0,
         "lag_seconds": 0.0},
        {"endpoint": "wh_b", "delivered": 7, "failed": 2, "retrying": 1, "lag_messages": 4,
         "lag_seconds": 1.235}]

