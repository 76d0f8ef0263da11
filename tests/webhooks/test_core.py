"""The delivery core's decisions, without an event loop."""

from __future__ import annotations

import time

import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from roomlog.protocol import Message
from roomlog.signing import new_secret, signature_headers
from roomlog.webhooks import core
from roomlog.webhooks.core import Cursor, Retry


def msg(seq: int, data: object = None, room: str = "queue:q1", epoch: str = "e1") -> Message:
    return Message(room, seq, epoch, 1000 + seq, "u1", orjson.dumps(data or {"n": seq}))


def test_plan_takes_up_to_batch_max_after_the_cursor() -> None:
    page = [msg(s) for s in range(1, 8)]
    batch = core.plan(Cursor("e1", 2), page, lambda m: True, 3)
    assert [m.seq for m in batch.messages] == [3, 4, 5] and batch.upto == 5
    assert batch.id == "queue:q1/e1/3-5"
    single = core.plan(Cursor("e1", 0), page, lambda m: True, 1)
    assert single.id == "queue:q1/e1/1" and single.upto == 1


def test_plan_steps_over_unwanted_messages() -> None:
    page = [msg(1), msg(2, {"event": "x"}), msg(3), msg(4, {"event": "x"}), msg(5)]
    wanted = lambda m: m.data.get("event") == "x"  # noqa: E731
    first = core.plan(Cursor("e1", 0), page, wanted, 1)
    assert [m.seq for m in first.messages] == [2] and first.upto == 3
    nothing = core.plan(Cursor("e1", 4), page, wanted, 1)
    assert nothing.messages == [] and nothing.upto == 5  # only moves the cursor


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    retry = Retry(base=1.0, cap=30.0)
    assert core.backoff(1, retry, 0.0) == 0.5 and core.backoff(1, retry, 0.999) < 1.0
    assert core.backoff(3, retry, 0.0) == 2.0
    assert core.backoff(50, retry, 0.999) <= 30.0


def test_a_failure_schedules_a_retry_and_honours_retry_after_up_to_the_cap() -> None:
    retry = Retry(base=1.0, cap=60.0, horizon=3600.0)
    first = core.failed(Cursor("e1", 4), 10_000, retry, retry_after=None, rand=0.0)
    assert (first.failures, first.failing_since_ms, first.due_ms) == (1, 10_000, 10_500)
    second = core.failed(first, 11_000, retry, retry_after=20.0, rand=0.0)
    assert second.failing_since_ms == 10_000 and second.due_ms == 31_000
    capped = core.failed(first, 11_000, retry, retry_after=999.0, rand=0.0)
    assert capped.due_ms == 71_000
    assert core.succeeded(second, 6) == Cursor("e1", 6)  # healthy again


def test_the_horizon_counts_from_the_first_failure() -> None:
    retry = Retry(horizon=10.0)
    failing = Cursor("e1", 1, failures=3, failing_since_ms=1_000)
    assert not core.expired(failing, 10_999, retry)
    assert core.expired(failing, 11_000, retry)
    assert not core.expired(Cursor("e1", 1), 10**12, retry)


@pytest.mark.parametrize("batch_max", [1, 3])
def test_the_body_verifies_with_standardwebhooks(batch_max: int) -> None:
    secret = new_secret()
    batch = core.plan(Cursor("e1", 0), [msg(1), msg(2, {"event": "a", "x": [1]}), msg(3)],
                      lambda m: True, batch_max)
    body = core.body("wh_1", batch, 5_000)
    headers = signature_headers([new_secret(), secret], batch.id, int(time.time()), body)
    payload = Webhook(secret).verify(body, headers)
    assert payload["room"] == "queue:q1" and payload["epoch"] == "e1"
    assert [m["id"] for m in payload["messages"]] == [
        f"queue:q1/e1/{s}" for s in range(1, batch_max + 1)]
    assert payload["messages"][-1]["data"] == orjson.loads(batch.messages[-1].raw)
