"""Moving clients off an instance: the SIGTERM drain, admin disconnects and bans.

Drain, in order (``roomlog serve`` runs it when SIGTERM arrives, after the
listening sockets are closed; the app's shutdown runs it again, a no-op then):

1. new writes are refused with UNAVAILABLE (retry elsewhere, same id);
2. every WebSocket gets a ``reconnect`` frame with advice (``retry_after``,
   spread so that clients do not all reconnect in the same millisecond);
3. writes already taken are committed and acknowledged, within
   ``drain_timeout``;
4. WebSockets are closed with 1001 (going away), SSE streams end, long-polls
   answer now; each client resumes from its last seq on another instance.

An admin disconnect (``disconnect_here``) closes a user's connections once; a
ban (``end_banned``, run whenever the ban list changes) ends everything open
for a grant it covers, and the ban list refuses the grant from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any, Protocol

from roomlog.bans import banned_error
from roomlog.errors import CloseCode, RoomlogError
from roomlog.identity import Grant
from roomlog.services import Services

__all__ = ["disconnect_here", "drain", "end_banned", "on_control"]

logger = logging.getLogger(__name__)

_SPREAD = 1.0  # seconds over which drained clients are told to come back
_CLOSE_CODES = {CloseCode.FORBIDDEN, CloseCode.UNAUTHORIZED, CloseCode.GOING_AWAY}


async def drain(s: Services, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    if not s.draining:
        s.draining = True
        logger.info("draining: %d WebSockets, %d SSE streams", len(s.sessions), len(s.streams))
    for session in list(s.sessions):
        session.send({"type": "reconnect", "reason": "server draining",
                      "retry_after": round(random.uniform(0, _SPREAD), 3)})
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(s.publisher.close(), max(0.0, deadline - loop.time()))
    # acks of the last commits are on their way out
    await _until(lambda: all(session.idle for session in s.sessions), deadline)
    for session in list(s.sessions):
        session.close(CloseCode.GOING_AWAY, "server draining: reconnect to another instance")
    for stream in list(s.streams):
        stream.stop()
    s.hub.wake_watchers()
    await _until(lambda: not (s.sessions or s.streams), deadline)  # close frames flushed


async def _until(done: Callable[[], bool], deadline: float) -> None:
    """Wait until ``done()`` or the deadline. Polled: a drain happens once per
    process lifetime, and the states it waits for have no event of their own."""
    loop = asyncio.get_running_loop()
    while not done() and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


def disconnect_here(s: Services, payload: dict[str, Any]) -> int:
    """Close this instance's connections of a user or with a connection id
    (an admin's ``disconnect`` broadcast); return how many closed."""
    target = payload.get("disconnect")
    if not isinstance(target, dict):
        return 0
    user, conn = target.get("user"), target.get("conn")
    try:
        code = CloseCode(target.get("code", CloseCode.FORBIDDEN))
    except ValueError:
        code = CloseCode.FORBIDDEN
    if code not in _CLOSE_CODES:
        code = CloseCode.FORBIDDEN
    reason = str(target.get("reason") or "disconnected by an admin")
    reason = reason.encode()[:120].decode(errors="ignore")  # a close reason fits 123 bytes
    closed = 0
    for session in list(s.sessions):
        who = session.principal
        if session.conn == conn or (user is not None and who is not None and who.user == user):
            session.close(code, reason)
            closed += 1
    for stream in list(s.streams):
        if stream.conn == conn or (user is not None and stream.viewer.user == user):
            stream.stop()
            closed += 1
    s.stats.disconnects += closed
    return closed


class Held(Protocol):
    """Something a client holds open under a grant: a WebSocket session (no grant
    before ``connect``), an SSE stream, a waiting long-poll."""

    @property
    def grant(self) -> Grant | None: ...

    def revoke(self, err: RoomlogError) -> bool:
        """End it, telling the client ``err``; False if it was ending already."""


def end_banned(s: Services) -> int:
    """End this instance's WebSockets (close 4003), SSE streams and long-polls
    (a BANNED answer) whose grant a ban in force covers; return how many."""
    ended = 0
    held_open: list[Held] = [*s.sessions, *s.streams, *s.polls]
    for held in held_open:
        ban = None if held.grant is None else s.revocation.blocking(held.grant)
        if ban is not None and held.revoke(banned_error(ban)):
            ended += 1
    s.stats.banned += ended
    return ended


def on_control(s: Services, payload: dict[str, Any]) -> None:
    """A broadcast from another instance: a disconnect, a ban made or lifted, or
    an instance's figures for the console."""
    if "disconnect" in payload:
        disconnect_here(s, payload)
    elif "ban" in payload:
        s.revocation.control(payload)
    elif "instance_report" in payload:
        s.instances.receive(payload["instance_report"], s.clock())
