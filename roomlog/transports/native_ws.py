"""``/ws`` served below ASGI: a protocol class of our own drives a :class:`Session`.

``roomlog serve`` passes :meth:`NativeWebSocket.configured` as uvicorn's ``ws``
protocol class (``ws_engine = native``, the default). uvicorn's HTTP protocol
hands it every upgrade request: ``/ws`` is served here; any other path goes on,
bytes and socket, to the ASGI protocol (:class:`DirectSendProtocol`), so the
app's other routes and other ASGI servers see no difference.

Why (issue #13): through ASGI an idle connection held three tasks, a receive
queue, a scope, the request's headers twice, five events and two timers: about
40 KiB. Here it holds one protocol object, its session and outbox, and a seat in
the process's shared heartbeat (:mod:`roomlog.transports.heartbeats`). A task
exists only while inbound frames are being handled. Frames come from
:class:`roomlog.wsframes.FrameReader`; outbound frames are written at once
(unmasked server frames are the same bytes for every subscriber: framed once).

Behaviour is the ASGI path's, and the same tests check it:

* the handshake passes the same gates in the same order: a bad upgrade is 400
  (426 for a version other than 13), connections per address (accept, close
  4029), admission (503 and ``Retry-After`` while saturated), ``websockets`` off
  (403, counted ``websockets_off``), subprotocols (``roomlog.v1.json`` /
  ``roomlog.v1.msgpack``; 403 if only others are offered). The answer carries
  ``X-Request-Id``; the client address honours ``forwarded_allow_ips``;
* inbound: one message is handled at a time and reading pauses while one waits
  (backpressure, as uvicorn); a refused frame (1009, 1007, 1002) gets its close
  frame and a half-close, and what the client still sends is read and dropped;
* closing is bounded (``ws_close_timeout``): a close frame goes out behind what
  is buffered, at once, and a connection still open ``ws_close_timeout`` later
  is reset (``SO_LINGER`` 0), its buffers freed; a client that answers no ping
  within ``ping_timeout`` gets 1011, its session ends at once;
* a slow client overflows its outbox and is closed with 4008 behind its backlog;
* server shutdown: 1012 (uvicorn's ``shutdown``), after the drain's 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import socket
import struct
from typing import Any, ClassVar, cast

from roomlog import logs
from roomlog.admission import Admission
from roomlog.errors import CloseCode, RoomlogError
from roomlog.limits import Release
from roomlog.protocol import SUBPROTOCOLS, Format
from roomlog.services import Services
from roomlog.session import Session
from roomlog.transports.context import new_request_id
from roomlog.transports.heartbeats import Heartbeats, ping_payload
from roomlog.wsframes import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    FrameReader,
    HandshakeError,
    Request,
    WsError,
    accept_key,
    close_frame,
    frame,
    parse_request,
    response,
)

__all__ = ["NativeWebSocket", "WsEndpoint"]

logger = logging.getLogger(__name__)
access = logging.getLogger("uvicorn.error")  # where uvicorn's WebSocket protocol says it

PATH = "/ws"

_last: list[Any] = [None, 0, b""]  # payload, opcode, its frame: the fan-out in progress


def _framed(payload: bytes, opcode: int) -> bytes:
    if _last[0] is not payload or _last[1] != opcode:
        _last[:] = [payload, opcode, frame(opcode, payload)]
    wire: bytes = _last[2]
    return wire


class WsEndpoint:
    """What every native connection of one server shares: the services, admission,
    the heartbeats, the trusted proxies and the ASGI protocol for other paths."""

    def __init__(self, services: Services, admission: Admission, asgi: type[asyncio.Protocol],
                 *, close_timeout: float) -> None:
        s = services.settings
        self.services = services
        self.admission = admission
        self.asgi = asgi
        self.close_timeout = close_timeout
        self.max_size = s.max_frame_bytes
        self.heartbeats = Heartbeats(s.ping_interval, s.ping_timeout)
        self.trusted: Any = None  # uvicorn's _TrustedHosts, from the first connection's config

    def client_host(self, peer: str | None, request: Request, config: Any) -> str | None:
        """The client's address: a trusted proxy's ``X-Forwarded-For`` (as uvicorn's
        ProxyHeadersMiddleware does for the ASGI path), else the peer."""
        if not getattr(config, "proxy_headers", False) or peer is None:
            return peer
        if self.trusted is None:
            from uvicorn.middleware.proxy_headers import _TrustedHosts

            self.trusted = _TrustedHosts(config.forwarded_allow_ips)
        if peer not in self.trusted:
            return peer
        forwarded = [v for k, v in request.headers if k == b"x-forwarded-for"]
        if not forwarded:
            return peer
        host, _ = self.trusted.get_trusted_client_address(b", ".join(forwarded).decode("latin1"))
        return str(host) if host else peer


# connection states
_HANDSHAKE, _OPEN, _CLOSING, _GONE = 0, 1, 2, 3


class NativeWebSocket(asyncio.Protocol):
    """One WebSocket connection (see the module docstring)."""

    endpoint: ClassVar[WsEndpoint]

    __slots__ = ("_closing", "_config", "_next", "_read_paused", "_reader", "_release", "_rid",
                 "_server_state", "_state", "_task", "_timer", "_transport", "_writable",
                 "beat_slot", "opcode", "ping_at", "session")

    @classmethod
    def configured(cls, endpoint: WsEndpoint) -> type[NativeWebSocket]:
        """This protocol serving ``endpoint`` (uvicorn takes a class)."""
        return type(cls.__name__, (cls,), {"endpoint": endpoint, "__slots__": ()})

    def __init__(self, config: Any, server_state: Any, app_state: Any = None,
                 _loop: Any = None) -> None:
        self._config = config
        self._server_state = server_state
        self._transport: asyncio.Transport | None = None
        self._state = _HANDSHAKE
        self._reader: FrameReader | None = None
        self._next: str | bytes | None = None  # the message waiting for the handler
        self._task: asyncio.Task[None] | None = None  # the handler, while there is work
        self._timer: asyncio.TimerHandle | None = None  # the abort after closing
        self._read_paused = False
        self._writable = True
        self._release: Release | None = None  # this connection counted for its address
        self._rid = ""
        self._closing = ""  # why it ends, for the log line
        self.session: Session | None = None
        self.opcode = TEXT
        self.ping_at = 0.0
        self.beat_slot = -1
        self.endpoint.services.stats.websocket_objects += 1

    def __del__(self) -> None:
        self.endpoint.services.stats.websocket_objects -= 1

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._server_state.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self._state == _OPEN or (self._state == _CLOSING and self._reader is not None):
            assert self._reader is not None
            self._reader.feed(data)
            if self._next is None:
                self._parse()
            elif not self._read_paused and self._transport is not None:
                self._read_paused = True
                self._transport.pause_reading()
        elif self._state == _HANDSHAKE:
            self._handshake(data)
        # else: closing after a refused frame, or gone: read and dropped

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself: connection_lost follows

    def pause_writing(self) -> None:
        self._writable = False

    def resume_writing(self) -> None:
        self._writable = True
        if self.session is not None and self._state == _OPEN:
            self.session.outbox.flush()  # what the direct send could not take

    def connection_lost(self, exc: Exception | None) -> None:
        self._state = _GONE
        self._transport = None
        self._reader = None
        self._next = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._server_state.connections.discard(self)
        self._end()

    # -- uvicorn's server calls this on shutdown -------------------------------------

    def shutdown(self) -> None:
        if self._state == _OPEN:
            self._send_close(int(CloseCode.SERVICE_RESTART), "")
        if self._transport is not None:
            self._transport.close()

    # -- the handshake ---------------------------------------------------------------

    def _handshake(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        config, state = self._config, self._server_state
        try:
            request = parse_request(data.split(b"\r\n\r\n", 1)[0])
        except HandshakeError as err:
            self._refuse(err.status, err.message.encode() + b"\n",
                         [(b"sec-websocket-version", b"13")] if err.status == 426 else [])
            return
        if request.path != PATH:  # not ours: the ASGI app answers, as before
            self._config = self._server_state = None
            state.connections.discard(self)
            asgi = self.endpoint.asgi(config=config, server_state=state,  # type: ignore[call-arg]
                                      app_state={})
            asgi.connection_made(transport)
            transport.set_protocol(asgi)
            asgi.data_received(data)
            return
        self._config = None
        self._accept(request, config)

    def _accept(self, request: Request, config: Any) -> None:
        endpoint = self.endpoint
        services = endpoint.services
        stats = services.stats
        rid = new_request_id(request.header(b"x-request-id"))
        self._rid = rid  # bound in the handler task (its own context), not here
        assert self._transport is not None
        peer = self._transport.get_extra_info("peername")
        host = endpoint.client_host(peer[0] if peer else None, request, config)
        chosen = next((p for p in request.subprotocols if p in SUBPROTOCOLS), None)
        try:
            self._release = services.limits.open_address(host)
        except RoomlogError:
            self._open(request, chosen, rid)
            self._send_close(int(CloseCode.LIMITED), "too many connections from this address")
            return
        if endpoint.admission.saturated():
            wait, body = endpoint.admission.refusal()
            self._refuse(503, body, [(b"retry-after", str(wait).encode()),
                                     (b"content-type", b"application/json")])
            return
        if not services.settings.websockets:  # refused like a proxy that blocks them
            stats.connections_refused["websockets_off"] += 1
            self._refuse(403, b"", [])
            return
        if request.subprotocols and chosen is None:
            stats.connections_refused["subprotocol"] += 1
            self._refuse(403, b"", [])
            return
        self._open(request, chosen, rid)
        self._log(access, logging.INFO, None, '%s - "WebSocket %s" [accepted]', host, PATH)
        fmt = SUBPROTOCOLS[chosen] if chosen else Format.JSON
        self.opcode = BINARY if fmt is Format.MSGPACK else TEXT
        self.session = session = Session(fmt, services, self._request_close, self._direct)
        services.sessions.add(session)
        endpoint.heartbeats.add(self)

    def _open(self, request: Request, chosen: str | None, rid: str) -> None:
        """Write the 101 answer: from here on the connection speaks WebSocket."""
        assert self._transport is not None and self._server_state is not None
        headers = [*self._server_state.default_headers,
                   (b"upgrade", b"websocket"), (b"connection", b"Upgrade"),
                   (b"sec-websocket-accept", accept_key(request.key))]
        if chosen:
            headers.append((b"sec-websocket-protocol", chosen.encode()))
        headers.append((b"x-request-id", rid.encode()))
        self._transport.write(response(101, headers))
        self._state = _OPEN
        self._reader = FrameReader(self.endpoint.max_size)

    def _refuse(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        """Answer the handshake with an HTTP error and close."""
        assert self._transport is not None and self._server_state is not None
        self._log(access, logging.INFO, None, '"WebSocket %s" %d', PATH, status)
        if self._rid:
            headers = [*headers, (b"x-request-id", self._rid.encode())]
        if not any(k == b"content-type" for k, _ in headers):
            headers.append((b"content-type", b"text/plain; charset=utf-8"))
        self._transport.write(response(status, [*self._server_state.default_headers, *headers],
                                       body))
        self._state = _CLOSING
        self._transport.close()

    # -- inbound -------------------------------------------------------------------

    def _parse(self) -> None:
        """Handle control frames; move at most one message to the handler, and pause
        reading while it waits there."""
        reader = self._reader
        while self._next is None and reader is not None:
            try:
                got = reader.next()
            except WsError as err:
                self._failed(err)
                return
            if got is None:
                break
            opcode, payload = got
            if opcode == PING:
                assert isinstance(payload, bytes)
                self._write(frame(PONG, payload))
            elif opcode == PONG:
                if self.ping_at and payload == ping_payload(self.ping_at):
                    self.ping_at = 0.0
            elif opcode == CLOSE:
                assert isinstance(payload, bytes)
                self._closed_by_client(payload)
                return
            elif self._state == _OPEN:  # after our close frame, messages are dropped
                self._next = payload
        transport = self._transport
        if transport is None:
            return
        if self._next is not None:
            if self._task is None:
                self._task = asyncio.get_running_loop().create_task(self._handle())
            if not self._read_paused:
                self._read_paused = True
                transport.pause_reading()
        elif self._read_paused:
            self._read_paused = False
            transport.resume_reading()

    async def _handle(self) -> None:
        """Hand waiting messages to the session, one at a time, then end: no task
        stays while the connection is idle."""
        session = self.session
        assert session is not None
        logs.bind(request=self._rid, conn=session.conn)
        try:
            while self._next is not None:
                payload, self._next = self._next, None
                await session.handle(payload)
                self._parse()
        except Exception:  # a bug in handling a frame: say so, on both ends
            logger.exception("WebSocket reader failed")
            session.close(CloseCode.INTERNAL, "internal error")
        finally:
            self._task = None

    def _closed_by_client(self, payload: bytes) -> None:
        if self._state == _OPEN:  # echo it, as RFC 6455 asks, then close
            self._write(frame(CLOSE, payload))
            self._state = _CLOSING
            self._closing = "client left"
        self._reader = None
        self._next = None
        if self._transport is not None:
            self._transport.close()
            self._abort_later()
        self._end()

    def _failed(self, err: WsError) -> None:
        """A refused frame: close frame, half-close, read and drop the rest."""
        self._send_close(err.code, err.reason)
        self._reader = None
        transport = self._transport
        if transport is not None:
            if transport.can_write_eof():
                transport.write_eof()
            else:
                transport.close()

    # -- outbound ------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._transport is not None and self._state != _GONE:
            self._transport.write(data)

    def _direct(self, payload: bytes) -> bool:
        """The outbox's direct send: one frame now, or False while the socket does
        not take more (the outbox keeps it; :meth:`resume_writing` flushes)."""
        if not self._writable or self._state != _OPEN or self._transport is None:
            return False
        self._transport.write(_framed(payload, self.opcode))
        return True

    def send_ping(self, wire: bytes, at: float) -> None:
        if self._state == _OPEN and self._transport is not None:
            self.ping_at = at
            self._transport.write(wire)

    def keepalive_timeout(self) -> None:
        """No pong in time: 1011, the session ends now, the socket is reset after
        the close timeout."""
        self.ping_at = 0.0
        if self._state == _OPEN:
            logger.debug("WebSocket keepalive ping timeout")
            self._send_close(1011, "keepalive ping timeout")

    def _log(self, log: logging.Logger, level: int, conn: str | None, msg: str,
             *args: object) -> None:
        """Log with this connection's request and connection ids: its callbacks run
        outside its handler task, which binds them (no context kept per connection)."""
        if log.isEnabledFor(level):
            contextvars.copy_context().run(self._log_bound, log, level, conn, msg, args)

    def _log_bound(self, log: logging.Logger, level: int, conn: str | None, msg: str,
                   args: tuple[object, ...]) -> None:
        logs.bind(request=self._rid or None, conn=conn)
        log.log(level, msg, *args)

    # -- closing -------------------------------------------------------------------

    def _request_close(self, code: CloseCode, reason: str) -> None:
        """The session's close callback."""
        if self._state == _OPEN:
            session = self.session
            if session is not None and code is not CloseCode.SLOW:
                self._writable = True  # its last frames (the error saying why) go first,
                session.outbox.flush()  # behind what is buffered: bounded by the outbox
            self._send_close(int(code), reason)

    def _send_close(self, code: int, reason: str) -> None:
        """Our close frame, behind what is buffered; the session ends now, the socket
        at the latest ``ws_close_timeout`` later."""
        self._write(close_frame(code, reason))
        self._state = _CLOSING
        self._closing = f"closed {code} ({reason})"
        if self._read_paused and self._transport is not None:  # to read the client's close
            self._read_paused = False
            self._transport.resume_reading()
        self._abort_later()
        self._end()

    def _abort_later(self) -> None:
        if self._timer is None and self._transport is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.endpoint.close_timeout, self._abort)

    def _abort(self) -> None:
        """Give up on the client: free the socket now, unsent bytes and all."""
        self._timer = None
        transport = self._transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:  # a reset, not a FIN the kernel keeps retrying with
            with contextlib.suppress(OSError):  # the send buffer held, for minutes
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    def _end(self) -> None:
        """The session ends (once): its subscriptions, counts and callbacks go."""
        endpoint = self.endpoint
        endpoint.heartbeats.discard(self)
        self._next = None
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        session, self.session = self.session, None
        if session is not None:
            who = session.principal
            self._log(logger, logging.DEBUG, session.conn, "WebSocket of %s ends: %s",
                      who.user if who else "nobody yet", self._closing or "client left")
            session.close(CloseCode.NORMAL, "")
            endpoint.services.sessions.discard(session)
            session.outbox.close()  # lets go of the session's callbacks (no cycle)
        release, self._release = self._release, None
        if release is not None:
            release()
