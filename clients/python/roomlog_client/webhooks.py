"""Receiving the hub's webhooks: check the signature, then dedupe on the ids.

    from roomlog_client.webhooks import WebhookError, verify

    def receive(body: bytes, headers: Mapping[str, str]) -> None:
        try:
            delivery = verify(SECRET, body, headers)  # whsec_... from the admin API
        except WebhookError:
            return 401
        for message in delivery.messages:
            if seen(message.id):  # (room, epoch, seq): a redelivery has the same id
                continue
            handle(message.room, message.seq, message.data)
        return 204  # any 2xx within the hub's timeout (5 s): answer first, work later

Signatures follow Standard Webhooks (https://www.standardwebhooks.com/): the HMAC-
SHA256 of ``{webhook-id}.{webhook-timestamp}.{body}`` keyed with the secret's bytes,
in ``webhook-signature`` as ``v1,<base64>``; several, space-separated, while a secret
rotates. Any Standard Webhooks library verifies them too. Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Delivery", "WebhookError", "WebhookMessage", "verify"]

TOLERANCE = 300.0  # seconds between the signature's timestamp and this clock


class WebhookError(ValueError):
    """The request is not a delivery signed with this secret (answer 401, not 2xx)."""


@dataclass(frozen=True, slots=True)
class WebhookMessage:
    id: str  # "{room}/{epoch}/{seq}": dedupe on it
    room: str
    epoch: str
    seq: int
    ts: int  # commit time, ms since the Unix epoch
    by: str
    data: Any


@dataclass(frozen=True, slots=True)
class Delivery:
    webhook_id: str  # the delivery's id: the one message's id, or "{room}/{epoch}/{a}-{b}"
    endpoint: str
    room: str
    epoch: str
    messages: list[WebhookMessage]  # consecutive matches of the endpoint's filters, by seq


def verify(secret: str | Sequence[str], body: bytes, headers: Mapping[str, str], *,
           now: float | None = None, tolerance: float = TOLERANCE) -> Delivery:
    """Check a delivery's signature (with any of ``secret``, e.g. the old and the new one
    while you rotate) and timestamp; return its messages. Raises :class:`WebhookError`."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id = lower["webhook-id"]
        stamp = int(lower["webhook-timestamp"])
        offered = [s.partition(",")[2] for s in lower["webhook-signature"].split()
                   if s.startswith("v1,")]
    except (KeyError, ValueError):
        raise WebhookError("missing or malformed webhook-* headers") from None
    clock = time.time() if now is None else now
    if abs(clock - stamp) > tolerance:
        raise WebhookError(f"the timestamp is {clock - stamp:.0f}s away from this clock")
    signed = f"{msg_id}.{stamp}.".encode() + body
    secrets = [secret] if isinstance(secret, str) else list(secret)
    for key in secrets:
        expected = base64.b64encode(hmac.new(_key(key), signed, hashlib.sha256).digest()).decode()
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            break
    else:
        raise WebhookError("no signature matches the secret")
    try:
        payload = json.loads(body)
        room, epoch = str(payload["room"]), str(payload["epoch"])
        messages = [WebhookMessage(str(m["id"]), room, epoch, int(m["seq"]), int(m["ts"]),
                                   str(m["by"]), m.get("data")) for m in payload["messages"]]
        return Delivery(msg_id, str(payload.get("endpoint", "")), room, epoch, messages)
    except (ValueError, KeyError, TypeError) as exc:
        raise WebhookError(f"the body is not a delivery: {exc}") from None


def _key(secret: str) -> bytes:
    body = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(body, validate=True)
    except ValueError:
        raise WebhookError("a secret is 'whsec_' followed by base64") from None
