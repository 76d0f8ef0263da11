"""Asking a command hook: a signed POST through the Outbound port, then a verdict.

:class:`Hooks` holds the hooks of the backends file, finds the one for a command
(``find``) and asks it (``ask``). A call that gives no verdict (no answer within
the hook's timeout, a refused connection, a status other than 2xx, a body that
is not a verdict) is a failure: the caller gets UNAVAILABLE, with the backend's
Retry-After when it sent one, and retries with the same command id; a hook
configured to fail open gives ``Allow(failed_open=True)`` instead.

Hook URLs come from the operator's file, never from an API, so the private
address policy of the Outbound adapter does not apply to them: backends usually
live on the operator's own network.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from roomlog.backends import HookSpec
from roomlog.errors import Unavailable
from roomlog.hooks.contract import Allow, HookFailure, Verdict, parse_reply
from roomlog.outbound import Outbound, OutboundError
from roomlog.signing import signature_headers
from roomlog.stats import Histogram

__all__ = ["Hooks"]

logger = logging.getLogger(__name__)

_WARN_EVERY = 10.0  # seconds between warnings of one failing backend
_RETRY_AFTER = 1.0  # seconds a client waits after a failed hook without Retry-After


class Hooks:
    """The configured hooks; one Outbound per hook, so a slow backend holds only
    its own connections."""

    def __init__(self, specs: Sequence[HookSpec], *, outbound: Callable[[HookSpec], Outbound],
                 timeout: float, max_body: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._by_command = {on: spec for spec in specs for on in spec.on}
        self._outbound = {spec: outbound(spec) for spec in specs}
        self._timeout = timeout
        self._max_body = max_body
        self._clock = clock
        self._warned: dict[str, float] = {}
        self.calls: dict[tuple[str, str], int] = {}  # (backend, allow|deny|failed|failed_open)
        self.latency = Histogram()  # seconds from asking to the verdict (or failure)

    def find(self, kind: str, name: str) -> HookSpec | None:
        """The hook deciding ``name`` (``publish`` for a plain room) in ``kind`` rooms."""
        return self._by_command.get((kind, name))

    async def ask(self, spec: HookSpec, hook: str, body: bytes) -> Verdict:
        """The backend's verdict on one command. Raises Unavailable when the call
        failed and the hook does not fail open."""
        headers = {"content-type": "application/json",
                   **signature_headers(spec.secrets, hook, int(self._clock()), body)}
        started = time.perf_counter()
        try:
            reply = await self._outbound[spec].post(
                spec.url, body, headers, within=spec.timeout or self._timeout,
                max_body=self._max_body + 1)
            if len(reply.body) > self._max_body:
                raise HookFailure("body", f"the answer is above {self._max_body} bytes")
            verdict = parse_reply(reply.status, reply.headers, reply.body)
        except OutboundError as exc:
            failure = HookFailure(exc.kind, exc.message)
        except HookFailure as exc:
            failure = exc
        else:
            self._count(spec, "allow" if isinstance(verdict, Allow) else "deny", started)
            return verdict
        self._warn(spec, hook, failure)
        if spec.fail_open:
            self._count(spec, "failed_open", started)
            return Allow(failed_open=True)
        self._count(spec, "failed", started)
        raise Unavailable(f"the backend that decides this did not answer ({failure.kind}); "
                          "retry with the same id",
                          retry_after=failure.retry_after or _RETRY_AFTER)

    def _count(self, spec: HookSpec, outcome: str, started: float) -> None:
        key = (spec.backend, outcome)
        self.calls[key] = self.calls.get(key, 0) + 1
        self.latency.observe(time.perf_counter() - started)

    def _warn(self, spec: HookSpec, hook: str, failure: HookFailure) -> None:
        """One warning per backend every ``_WARN_EVERY`` seconds: a backend that is
        down must not bury the log under one line per command."""
        now = time.monotonic()
        if now - self._warned.get(spec.backend, -_WARN_EVERY) < _WARN_EVERY:
            return
        self._warned[spec.backend] = now
        logger.warning("command hook of %s at %s failed (%s: %s), e.g. call %s; %s",
                       spec.backend, spec.url, failure.kind, failure.message, hook,
                       "failing open" if spec.fail_open else "clients get UNAVAILABLE")

    async def close(self) -> None:
        for outbound in self._outbound.values():
            await outbound.close()
