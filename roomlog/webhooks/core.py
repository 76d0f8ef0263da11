"""The delivery core: what to send next, what an answer means, when to retry. Pure.

One :class:`Cursor` per (endpoint, room): every seq up to ``seq`` of ``epoch``
has been delivered or filtered out. The adapter (``roomlog.webhooks.delivery``)
asks :func:`plan` for the next delivery of a room, posts it, and hands the
answer to :func:`succeeded` or :func:`failed`; nothing here awaits or reads a
clock, so every decision is tested without an event loop.

* **Order**: one delivery per room in flight; a room's cursor advances only on
  success, so seq N+1 is sent after N was acknowledged.
* **At least once**: a delivery is identified by its room, epoch and seqs
  (:func:`webhook_id`); a retry, a redelivery and a takeover by another instance
  send the same ids, and receivers dedupe on them.
* **Retry**: capped exponential backoff with full jitter; a ``Retry-After`` is
  honoured (up to the cap); a room failing for longer than the horizon
  disables its endpoint (:func:`expired`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from roomlog.protocol import Message

__all__ = ["Batch", "Cursor", "Retry", "backoff", "body", "expired", "failed", "plan",
           "succeeded", "webhook_id"]


@dataclass(frozen=True, slots=True)
class Retry:
    base: float = 1.0  # seconds before the first retry (before jitter)
    cap: float = 300.0  # the longest wait between two attempts
    horizon: float = 86_400.0  # failing longer than this disables the endpoint


@dataclass(frozen=True, slots=True)
class Cursor:
    epoch: str
    seq: int  # every seq <= this was delivered or filtered out
    failures: int = 0  # failed attempts of the pending delivery
    failing_since_ms: int | None = None  # its first failure
    due_ms: int = 0  # no attempt before this (a retry's wait)


@dataclass(frozen=True, slots=True)
class Batch:
    messages: list[Message]  # consecutive wanted messages, at most batch_max
    upto: int  # the cursor after success: the last seq looked at (sent or skipped)

    @property
    def id(self) -> str:
        return webhook_id(self.messages)


def message_id(message: Message) -> str:
    """One message's delivery id: ``{room}/{epoch}/{seq}`` (a room name has no '/')."""
    return f"{message.room}/{message.epoch}/{message.seq}"


def webhook_id(messages: Sequence[Message]) -> str:
    """A delivery's ``webhook-id``: the message id of one message, or
    ``{room}/{epoch}/{first}-{last}`` for a batch of several."""
    first, last = messages[0], messages[-1]
    if first is last:
        return message_id(first)
    return f"{first.room}/{first.epoch}/{first.seq}-{last.seq}"


def plan(cursor: Cursor, page: Sequence[Message], wanted: Callable[[Message], bool],
         batch_max: int) -> Batch:
    """The next delivery from ``page`` (messages after the cursor, in seq order): up to
    ``batch_max`` wanted messages. Unwanted ones are stepped over. An empty batch
    with ``upto > cursor.seq`` only moves the cursor (nothing to send)."""
    chosen: list[Message] = []
    upto = cursor.seq
    for message in page:
        if message.seq <= cursor.seq:
            continue
        if wanted(message):
            if len(chosen) == batch_max:
                break
            chosen.append(message)
        upto = message.seq
    return Batch(chosen, upto)


def succeeded(cursor: Cursor, upto: int) -> Cursor:
    return Cursor(cursor.epoch, max(cursor.seq, upto))


def failed(cursor: Cursor, now_ms: int, retry: Retry, *, retry_after: float | None,
           rand: float) -> Cursor:
    """The cursor after a failed attempt: when to try again."""
    failures = cursor.failures + 1
    wait = backoff(failures, retry, rand)
    if retry_after is not None:
        wait = max(wait, min(retry_after, retry.cap))
    since = cursor.failing_since_ms if cursor.failing_since_ms is not None else now_ms
    return replace(cursor, failures=failures, failing_since_ms=since,
                   due_ms=now_ms + int(wait * 1000))


def backoff(failures: int, retry: Retry, rand: float) -> float:
    """Seconds before attempt ``failures + 1``: ``base * 2**(failures-1)`` capped at
    ``cap``, with full jitter in its upper half (``rand`` in [0, 1)): never a
    stampede of endpoints retrying together, never much sooner than planned."""
    ceiling = min(retry.cap, retry.base * float(2 ** min(failures - 1, 40)))
    return ceiling / 2 + ceiling / 2 * rand


def expired(cursor: Cursor, now_ms: int, retry: Retry) -> bool:
    """Whether the room has failed for longer than the horizon: disable the endpoint."""
    return (cursor.failing_since_ms is not None
            and now_ms - cursor.failing_since_ms >= retry.horizon * 1000)


def body(endpoint_id: str, batch: Batch, now_ms: int) -> bytes:
    """The JSON a delivery posts. Each message carries its own ``id`` (what to dedupe
    on when deliveries are batched)."""
    first = batch.messages[0]
    payload: dict[str, Any] = {
        "type": "messages", "endpoint": endpoint_id, "room": first.room,
        "epoch": first.epoch, "timestamp": now_ms,
        "messages": [orjson.Fragment(_message(m)) for m in batch.messages]}
    return orjson.dumps(payload)


def _message(m: Message) -> bytes:
    head = orjson.dumps({"id": message_id(m), "seq": m.seq, "ts": m.ts, "by": m.by})
    return head[:-1] + b',"data":' + m.raw + b"}"
