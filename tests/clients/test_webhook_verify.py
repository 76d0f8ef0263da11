"""The Python client's webhook verify helper: signatures made by the hub's signing
and by the ``standardwebhooks`` package (code we did not write) pass; tampering, a
wrong secret, a stale timestamp and a body that is no delivery do not."""

from __future__ import annotations

import datetime
import time

import orjson
import pytest
from roomlog_client.webhooks import WebhookError, verify
from standardwebhooks.webhooks import Webhook

from roomlog.protocol import Message
from roomlog.signing import new_secret, signature_headers
from roomlog.webhooks import core

NOW = 1_800_000_000


def delivery(batch_max: int = 1) -> tuple[str, bytes]:
    page = [Message("queue:q1", s, "e1", 1000 + s, "g1", orjson.dumps({"event": "x", "n": s}))
            for s in (1, 2, 3)]
    batch = core.plan(core.Cursor("e1", 0), page, lambda m: True, batch_max)
    return batch.id, core.body("wh_1", batch, NOW * 1000)


def test_a_delivery_signed_by_the_hub_verifies_with_either_secret_while_rotating() -> None:
    old, new = new_secret(), new_secret()
    msg_id, body = delivery(batch_max=2)
    headers = {"Webhook-Id": msg_id, **signature_headers([new, old], msg_id, NOW, body)}
    for secret in (old, new, [new_secret(), old]):
        got = verify(secret, body, headers, now=NOW + 10)
        assert got.webhook_id == msg_id == "queue:q1/e1/1-2" and got.room == "queue:q1"
        assert [(m.id, m.seq, m.data["n"]) for m in got.messages] == [
            ("queue:q1/e1/1", 1, 1), ("queue:q1/e1/2", 2, 2)]


def test_a_signature_made_by_standardwebhooks_verifies() -> None:
    secret = new_secret()
    msg_id, body = delivery()
    stamp = int(time.time())
    signature = Webhook(secret).sign(msg_id, datetime.datetime.fromtimestamp(
        stamp, tz=datetime.UTC), body)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(stamp),
               "webhook-signature": signature}
    assert verify(secret, body, headers).messages[0].id == "queue:q1/e1/1"


@pytest.mark.parametrize("spoil", ["body", "secret", "stale", "headers", "not-a-delivery"])
def test_anything_else_is_refused(spoil: str) -> None:
    secret = new_secret()
    msg_id, body = delivery()
    if spoil == "not-a-delivery":
        body = b'{"hello": 1}'
    headers = signature_headers([secret], msg_id, NOW, body)
    if spoil == "body":
        body = body.replace(b'"n":1', b'"n":9')
    if spoil == "headers":
        del headers["webhook-timestamp"]
    with pytest.raises(WebhookError):
        verify(new_secret() if spoil == "secret" else secret, body, headers,
               now=NOW + (1000 if spoil == "stale" else 0))
