"""Standard Webhooks signatures: ours verify with the standardwebhooks package (code we
did not write), and our verify refuses what it must."""

from __future__ import annotations

import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from roomlog.signing import SignatureError, new_secret, signature_headers, verify

BODY = b'{"type":"message","room":"queue:a","seq":7}'


def test_a_signature_verifies_with_the_reference_library() -> None:
    secret = new_secret()
    headers = signature_headers([secret], "queue:a/e1/7", int(time.time()), BODY)
    assert Webhook(secret).verify(BODY, headers) == {"type": "message", "room": "queue:a",
                                                     "seq": 7}


def test_while_rotating_both_secrets_verify() -> None:
    old, new = new_secret(), new_secret()
    headers = signature_headers([new, old], "m1", int(time.time()), BODY)
    for secret in (old, new):
        Webhook(secret).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_verify_refuses_a_changed_body_another_secret_and_a_stale_timestamp() -> None:
    secret = new_secret()
    now = 1_800_000_000
    headers = signature_headers([secret], "m1", now, BODY)
    assert verify(secret, headers, BODY, now=now) == "m1"
    with pytest.raises(SignatureError):
        verify(secret, headers, BODY + b" ", now=now)
    with pytest.raises(SignatureError):
        verify(new_secret(), headers, BODY, now=now)
    with pytest.raises(SignatureError, match="away from now"):
        verify(secret, headers, BODY, now=now + 301)
    with pytest.raises(SignatureError, match="required"):
        verify(secret, {}, BODY, now=now)


def test_signing_needs_a_secret() -> None:
    with pytest.raises(SignatureError):
        signature_headers([], "m1", 1, BODY)
