"""A real HTTP backend for command hooks, run by the tests (uvicorn, in a thread).

It verifies every call's signature with the ``standardwebhooks`` package (code we
did not write), records it, and answers as the test says: ``backend.answer`` is a
function from the call to a :class:`Reply` (allow, deny, a status, a delay). The
default allows. It runs on its own event loop in its own thread, so a test that
blocks (starting a server process) never stalls it.

Waits here are upper bounds for a broken hub, never assertions.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roomlog.signing import new_secret
from tests.e2e.support import free_port

WAIT = 15.0  # upper bound for an expected call to arrive


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=lambda: {"verdict": "allow"})
    delay: float = 0.0  # seconds before answering (a hook timeout: more than the hub waits)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Call:
    hook: str  # webhook-id: the command's hook id
    body: dict[str, Any]
    headers: dict[str, str]


def allow(data: dict[str, Any] | None = None) -> Reply:
    return Reply(body={"verdict": "allow", **({"data": data} if data is not None else {})})


def deny(code: str | None = None, message: str = "no", **extra: Any) -> Reply:
    body: dict[str, Any] = {"verdict": "deny", "message": message, **extra}
    if code is not None:
        body["code"] = code
    return Reply(body=body)


class Backend:
    """The operator's backend: ``url`` to configure, ``secret`` to sign with."""

    def __init__(self, secret: str | None = None) -> None:
        self.secret = secret or new_secret()
        self.port = free_port()
        self.calls: list[Call] = []
        self.bad_signatures = 0
        self.answer: Callable[[Call], Reply] = lambda call: allow()
        self.before_answer: Callable[[Call], None] | None = None  # e.g. kill the hub
        self._verifier = Webhook(self.secret)
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._release = threading.Event()  # ends every delay at once (stop)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def count(self, hook: str | None = None) -> int:
        with self._lock:
            return sum(1 for c in self.calls if hook is None or c.hook == hook)

    def wait_calls(self, n: int, hook: str | None = None, within: float = WAIT) -> None:
        """Block until ``n`` calls (of ``hook``, if given) arrived; AssertionError
        after ``within``."""
        deadline = time.monotonic() + within
        with self._arrived:
            while sum(1 for c in self.calls if hook is None or c.hook == hook) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"fewer than {n} hook calls arrived")
                self._arrived.wait(left)

    def of(self, room: str) -> list[Call]:
        """The calls about ``room``, in arrival order."""
        with self._lock:
            return [c for c in self.calls if c.body["room"] == room]

    async def _hook(self, request: Request) -> Response:
        raw = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body = self._verifier.verify(raw, headers)
        except Exception:  # any failure of the library's check is a bad signature
            with self._lock:
                self.bad_signatures += 1
            return Response(status_code=401)
        call = Call(headers["webhook-id"], body, headers)
        with self._arrived:
            self.calls.append(call)
            self._arrived.notify_all()
        reply = await asyncio.to_thread(self.answer, call)
        if self.before_answer is not None:
            await asyncio.to_thread(self.before_answer, call)
        if reply.delay:
            await asyncio.to_thread(self._release.wait, reply.delay)
        return Response(orjson.dumps(reply.body), status_code=reply.status,
                        headers=reply.headers, media_type="application/json")

    def start(self) -> Backend:
        app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + WAIT
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise AssertionError("the test backend did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(WAIT)


@contextmanager
def running_backend(secret: str | None = None) -> Iterator[Backend]:
    backend = Backend(secret).start()
    try:
        yield backend
    finally:
        backend.stop()
