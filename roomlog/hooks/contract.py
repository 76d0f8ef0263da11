"""The command-hook contract: what the hub sends, what a backend answers. Pure; no I/O.

``docs/backends.md`` is the reference for backend authors; this module is its one
implementation.

The request (``POST``, JSON, signed the Standard Webhooks way with the hook's
secrets; ``webhook-id`` is the call's ``hook`` id)::

    {"type": "command" | "publish", "hook": "hk_...", "room", "kind", "epoch", "seq",
     "command": {"id", "name", "args"}, "principal": {"user", "role"},
     "sender": {"user", "role"} (only for on_behalf_of), "state": {...}, "ts"}

``hook`` names the command, not the attempt: every call for one command id of one
sender in one room (and epoch) has the same one, on every instance. A backend must
answer the same for the same ``hook`` id: the hub may call again for a command it
has not committed (its instance crashed after the answer, two instances received the
command at once), and commits only the first answer that reaches the room's lock.

The answer: status 2xx and a JSON object, either
``{"verdict": "allow", "data"?: {...}}`` or
``{"verdict": "deny", "code"?: "...", "message"?: "...", "details"?: {...}}``.
Anything else (another status, no answer within the timeout, a body that is not one
of these) is a failed call: :class:`HookFailure`.

A deny reaches the client as a coded error. ``code`` is kept when it is one of
:data:`DENY_CODES`; any other code (or none) becomes ``DENIED`` with the backend's
code in ``details.code``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Principal

__all__ = [
    "DENY_CODES",
    "Allow",
    "Deny",
    "HookFailure",
    "Verdict",
    "hook_id",
    "parse_reply",
    "recall_error",
    "refusal_record",
    "request_body",
    "verdict_record",
]

# The codes a backend may deny with, as they are; any other becomes DENIED. A code
# that tells the client to retry with the same id (UNAVAILABLE, RATE_LIMITED) is not
# among them: a verdict is final for its command id. A backend that cannot decide
# now answers 503 (optionally with Retry-After) instead.
DENY_CODES = frozenset({ErrorCode.DENIED, ErrorCode.FORBIDDEN, ErrorCode.INVALID_ARGS,
                        ErrorCode.NOT_FOUND, ErrorCode.CONFLICT, ErrorCode.PAYMENT_DECLINED,
                        ErrorCode.PAYMENT_ALREADY_USED})

MAX_MESSAGE = 500  # characters of a deny's message kept
MAX_RETRY_AFTER = 60.0  # seconds: a longer Retry-After from a failing hook is capped
_CODE_RE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")

Failure = Literal["timeout", "connect", "status", "body", "refused_address", "protocol"]


@dataclass(frozen=True, slots=True)
class Allow:
    data: dict[str, Any] = field(default_factory=dict)
    failed_open: bool = False  # the hook failed and is configured to fail open


@dataclass(frozen=True, slots=True)
class Deny:
    code: ErrorCode
    message: str
    details: dict[str, Any] | None = None

    def error(self) -> RoomlogError:
        return RoomlogError(self.code, self.message, details=self.details)


Verdict = Allow | Deny


class HookFailure(Exception):
    """The hook gave no verdict: ``kind`` says why (for logs and metrics);
    ``retry_after`` is the backend's Retry-After, if it sent one."""

    def __init__(self, kind: Failure, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind: Failure = kind
        self.message = message
        self.retry_after = retry_after


def hook_id(room: str, epoch: str, sender: str, ident: str) -> str:
    """The id of every call for one command: the same on each retry and instance."""
    digest = hashlib.sha256("\n".join((room, epoch, sender, ident)).encode()).hexdigest()
    return "hk_" + digest[:32]


def _principal(who: Principal) -> dict[str, str]:
    return {"user": who.user, "role": who.role.value}


def request_body(*, hook: str, room: str, epoch: str, seq: int, ident: str, name: str,
                 args: Any, who: Principal, sender: Principal | None,
                 state: dict[str, Any], now_ms: int) -> bytes:
    """The JSON body of a hook call (see the module docstring). A plain room's
    publish is ``type: publish``, ``name: publish``, ``args: {"data": ...}``."""
    body: dict[str, Any] = {
        "type": "publish" if name == "publish" else "command",
        "hook": hook, "room": room, "kind": room.split(":", 1)[0], "epoch": epoch, "seq": seq,
        "command": {"id": ident, "name": name, "args": args},
        "principal": _principal(who), "state": state, "ts": now_ms,
    }
    if sender is not None:
        body["sender"] = _principal(sender)
    return orjson.dumps(body)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("retry-after", "")
    try:
        value = float(raw)
    except ValueError:
        return None
    return min(max(value, 0.0), MAX_RETRY_AFTER) if value == value else None  # NaN


def parse_reply(status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
    """The backend's verdict, or :class:`HookFailure` saying what is wrong with the
    answer. ``headers`` keys are lowercase."""
    if not 200 <= status < 300:
        raise HookFailure("status", f"the hook answered HTTP {status}",
                          retry_after=_retry_after(headers))
    try:
        reply = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise HookFailure("body", "the hook's answer is not JSON") from None
    if not isinstance(reply, dict):
        raise HookFailure("body", "the hook's answer must be a JSON object")
    verdict = reply.get("verdict")
    if verdict == "allow":
        data = reply.get("data", {})
        if not isinstance(data, dict):
            raise HookFailure("body", "an allow's 'data' must be an object")
        return Allow(data)
    if verdict == "deny":
        return _deny(reply)
    raise HookFailure("body", "the hook's answer needs 'verdict': 'allow' or 'deny'")


def _deny(reply: dict[str, Any]) -> Deny:
    code, message, details = reply.get("code"), reply.get("message", ""), reply.get("details")
    if code is not None and (not isinstance(code, str) or not _CODE_RE.fullmatch(code)):
        raise HookFailure("body", "a deny's 'code' must be A-Z, 0-9 and _ (at most 64)")
    if not isinstance(message, str):
        raise HookFailure("body", "a deny's 'message' must be a string")
    if details is not None and not isinstance(details, dict):
        raise HookFailure("body", "a deny's 'details' must be an object")
    message = message[:MAX_MESSAGE] or "the backend refused this command"
    if code in {c.value for c in DENY_CODES}:
        return Deny(ErrorCode(code), message, details)
    extra = {"code": code} if code else {}
    return Deny(ErrorCode.DENIED, message, {**(details or {}), **extra} or None)


# -- what is stored with a command's result ---------------------------------------


def verdict_record(verdict: Verdict) -> dict[str, Any]:
    """The verdict as the command's stored outcome keeps it (audit, promise 8)."""
    if isinstance(verdict, Allow):
        return {"allow": True, "data": verdict.data, "failed_open": verdict.failed_open}
    return {"allow": False, "code": verdict.code.value}


def refusal_record(deny: Deny) -> bytes:
    """The stored outcome of a denied command or publish (its remembered result)."""
    error: dict[str, Any] = {"code": deny.code.value, "message": deny.message}
    if deny.details:
        error["details"] = deny.details
    return orjson.dumps({"error": error, "verdict": verdict_record(deny)})


def recall_error(stored: dict[str, Any]) -> RoomlogError | None:
    """The error a stored outcome holds (a denied command), or None (a success)."""
    error = stored.get("error")
    if not isinstance(error, dict):
        return None
    return RoomlogError(ErrorCode(error["code"]), str(error["message"]),
                        details=error.get("details"))
