"""The command-hook contract: request bodies, reading answers, stored outcomes. Pure."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from roomlog.errors import ErrorCode
from roomlog.hooks.contract import (
    Allow,
    Deny,
    HookFailure,
    hook_id,
    parse_reply,
    recall_error,
    refusal_record,
    request_body,
    verdict_record,
)
from roomlog.identity import Principal, Role


def reply(body: Any, status: int = 200, **headers: str) -> Allow | Deny:
    return parse_reply(status, headers, orjson.dumps(body))


def test_the_hook_id_names_the_command_not_the_attempt() -> None:
    first = hook_id("queue:a", "e1", "u1", "c1")
    assert first == hook_id("queue:a", "e1", "u1", "c1") and first.startswith("hk_")
    others = {hook_id("queue:b", "e1", "u1", "c1"), hook_id("queue:a", "e2", "u1", "c1"),
              hook_id("queue:a", "e1", "u2", "c1"), hook_id("queue:a", "e1", "u1", "c2"),
              hook_id("queue:a", "e1\nu1", "", "c1")}
    assert first not in others and len(others) == 5


def test_request_body() -> None:
    guest, app = Principal("g1", Role.GUEST), Principal("app", Role.SERVICE)
    body = orjson.loads(request_body(
        hook="hk_1", room="queue:x", epoch="e", seq=4, ident="c1", name="request.submit",
        args={"song_id": "s"}, who=guest, sender=app, state={"open": True}, now_ms=5))
    assert body == {"type": "command", "hook": "hk_1", "room": "queue:x", "kind": "queue",
                    "epoch": "e", "seq": 4, "ts": 5,
                    "command": {"id": "c1", "name": "request.submit", "args": {"song_id": "s"}},
                    "principal": {"user": "g1", "role": "guest"},
                    "sender": {"user": "app", "role": "service"}, "state": {"open": True}}
    publish = orjson.loads(request_body(
        hook="hk_2", room="chat:x", epoch="e", seq=0, ident="p", name="publish",
        args={"data": 1}, who=guest, sender=None, state={}, now_ms=5))
    assert publish["type"] == "publish" and "sender" not in publish


def test_allow_and_its_data() -> None:
    assert reply({"verdict": "allow"}) == Allow({})
    assert reply({"verdict": "allow", "data": {"amount": 5}}, status=201) == Allow({"amount": 5})


@pytest.mark.parametrize("code, expected, details", [
    ("FORBIDDEN", ErrorCode.FORBIDDEN, None),
    ("CONFLICT", ErrorCode.CONFLICT, None),
    ("DENIED", ErrorCode.DENIED, None),
    (None, ErrorCode.DENIED, None),
    ("PAYMENT_DECLINED", ErrorCode.PAYMENT_DECLINED, None),
    ("PAYMENT_ALREADY_USED", ErrorCode.PAYMENT_ALREADY_USED, None),
    ("CARD_EXPIRED", ErrorCode.DENIED, {"code": "CARD_EXPIRED"}),
    # Codes that tell a client to retry the same id are no verdict: DENIED.
    ("UNAVAILABLE", ErrorCode.DENIED, {"code": "UNAVAILABLE"}),
    ("RATE_LIMITED", ErrorCode.DENIED, {"code": "RATE_LIMITED"}),
])
def test_deny_codes_map_onto_the_fixed_list(code: str | None, expected: ErrorCode,
                                            details: dict[str, str] | None) -> None:
    body: dict[str, Any] = {"verdict": "deny", "message": "no"}
    if code is not None:
        body["code"] = code
    assert reply(body) == Deny(expected, "no", details)


def test_a_deny_keeps_details_and_a_short_message() -> None:
    denied = reply({"verdict": "deny", "code": "X_Y", "message": "m" * 900,
                    "details": {"a": 1}})
    assert isinstance(denied, Deny)
    assert denied.details == {"a": 1, "code": "X_Y"} and len(denied.message) == 500
    assert reply({"verdict": "deny"}) == Deny(ErrorCode.DENIED,
                                              "the backend refused this command", None)


@pytest.mark.parametrize("status, body, kind", [
    (500, {"verdict": "allow"}, "status"),
    (302, {"verdict": "allow"}, "status"),
    (200, "not json", "body"),
    (200, ["verdict", "allow"], "body"),
    (200, {"verdict": "maybe"}, "body"),
    (200, {}, "body"),
    (200, {"verdict": "allow", "data": [1]}, "body"),
    (200, {"verdict": "deny", "code": "lower"}, "body"),
    (200, {"verdict": "deny", "code": 7}, "body"),
    (200, {"verdict": "deny", "message": 7}, "body"),
    (200, {"verdict": "deny", "details": "x"}, "body"),
])
def test_anything_else_is_a_failure(status: int, body: Any, kind: str) -> None:
    raw = body.encode() if isinstance(body, str) else orjson.dumps(body)
    with pytest.raises(HookFailure) as failure:
        parse_reply(status, {}, raw)
    assert failure.value.kind == kind


@pytest.mark.parametrize("header, expected", [
    ("7", 7.0), ("0.5", 0.5), ("3600", 60.0), ("-3", 0.0), ("soon", None), ("nan", None)])
def test_retry_after_of_a_failing_hook(header: str, expected: float | None) -> None:
    with pytest.raises(HookFailure) as failure:
        parse_reply(503, {"retry-after": header}, b"")
    assert failure.value.retry_after == expected


def test_stored_outcomes() -> None:
    deny = Deny(ErrorCode.DENIED, "card declined", {"code": "PAYMENT_DECLINED"})
    stored = orjson.loads(refusal_record(deny))
    assert stored["verdict"] == {"allow": False, "code": "DENIED"}
    error = recall_error(stored)
    assert error is not None and (error.code, error.message, error.details) == (
        ErrorCode.DENIED, "card declined", {"code": "PAYMENT_DECLINED"})
    assert recall_error({"seqs": [1], "result": {}}) is None
    assert verdict_record(Allow({"a": 1}, failed_open=True)) == {
        "allow": True, "data": {"a": 1}, "failed_open": True}
