"""Signatures of outgoing requests, the Standard Webhooks way. Pure; no I/O.

Webhook deliveries and command-hook calls carry three headers
(https://www.standardwebhooks.com/):

* ``webhook-id``: the delivery's id, the same on every retry (receivers dedupe on it);
* ``webhook-timestamp``: Unix seconds when this attempt was signed;
* ``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256>`` signatures of
  ``{id}.{timestamp}.{body}``, one per secret in use (several while a secret rotates).

A secret is ``whsec_`` followed by the base64 of its key bytes; the HMAC key is those
bytes. Receivers verify with any Standard Webhooks library, or :func:`verify` here.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from collections.abc import Mapping, Sequence

__all__ = ["PREFIX", "SignatureError", "new_secret", "sign", "signature_headers", "verify"]

PREFIX = "whsec_"
_KEY_BYTES = 24
_TOLERANCE = 300  # seconds a receiver accepts between the timestamp and its clock


class SignatureError(ValueError):
    """A signature is missing, stale, or made with another secret."""


def new_secret() -> str:
    """A fresh random secret, ``whsec_`` + base64 of 24 random bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode()


def _key(secret: str) -> bytes:
    body = secret[len(PREFIX):] if secret.startswith(PREFIX) else secret
    try:
        return base64.b64decode(body, validate=True)
    except ValueError:
        raise SignatureError("a secret is 'whsec_' followed by base64") from None


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of ``{msg_id}.{timestamp}.{body}``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.digest(_key(secret), signed, "sha256")  # one C call
    return "v1," + base64.b64encode(digest).decode()


def signature_headers(secrets_: Sequence[str], msg_id: str, timestamp: int,
                      body: bytes) -> dict[str, str]:
    """The three headers of a request signed with every secret in ``secrets_``."""
    if not secrets_:
        raise SignatureError("at least one secret is needed to sign")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets_),
    }


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: float,
           tolerance: float = _TOLERANCE) -> str:
    """Check a request signed by :func:`signature_headers`; return its ``webhook-id``.

    ``headers`` keys must be lowercase. Raises :class:`SignatureError` if a header is
    missing, the timestamp is further than ``tolerance`` seconds from ``now``, or no
    signature matches ``secret``.
    """
    try:
        msg_id = headers["webhook-id"]
        timestamp = int(headers["webhook-timestamp"])
        offered = headers["webhook-signature"].split()
    except (KeyError, ValueError):
        raise SignatureError("webhook-id, webhook-timestamp and webhook-signature "
                             "headers are required") from None
    if abs(now - timestamp) > tolerance:
        raise SignatureError(f"the timestamp is {now - timestamp:.0f}s away from now")
    expected = sign(secret, msg_id, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
        raise SignatureError("no signature matches the secret")
    return msg_id
