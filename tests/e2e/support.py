"""End-to-end test support: a real ``roomlog serve`` process, real sockets.

* :class:`Server` runs ``python -m roomlog serve --port <free port>`` as a
  subprocess with ``ROOMLOG_*`` settings from its keyword arguments, waits
  for ``/health/ready``, and can stop (SIGTERM), kill (SIGKILL) and restart
  it on the same port and database.
* :func:`issue_token` signs tokens with the test secret.
* :class:`WsClient` is a small WebSocket client (``roomlog.v1.json`` or
  ``roomlog.v1.msgpack``) that flattens coalesced frame arrays and waits
  with timeouts, so a broken server fails a test instead of hanging it.
* :class:`RawWs` speaks WebSocket over a bare socket that reads (and answers
  pings) only when told to: a slow or dead client on demand.

Timeouts here are upper bounds for a broken server, never assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import msgpack
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from roomlog.auth import Tokens
from roomlog.identity import Role
from tests.conftest import SECRET
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 15.0  # upper bound for one expected frame; only a broken server reaches it
START_TIMEOUT = 30.0

JSON = "roomlog.v1.json"
MSGPACK = "roomlog.v1.msgpack"

_TOKENS = Tokens(SECRET)

TEST_LIMITS = {"max_connections_per_user": 1000, "subscribe_rate": 10_000,
               "subscribe_burst": 10_000, "presence_rate": 10_000, "presence_burst": 10_000,
               "read_rate": 10_000, "read_burst": 10_000}


def issue_token(user: str = "alice", role: Role = Role.GUEST, *, ttl: float = 3600.0,
                secret: str | None = None) -> str:
    """A signed token for ``user``; ``secret`` forges one with another key."""
    tokens = _TOKENS if secret is None else Tokens(secret)
    return tokens.issue(user, role, ttl=ttl)


def bearer(user: str = "alice", role: Role = Role.GUEST) -> dict[str, str]:
    return {"authorization": f"Bearer {issue_token(user, role)}"}


def unique_room(kind: str = "chat") -> str:
    return f"{kind}:e2e-{secrets.token_hex(6)}"


# ---------------------------------------------------------------------------
# The server process


class ServerFailed(AssertionError):
    pass


class Server:
    """One ``roomlog serve`` subprocess; restartable on the same port and database."""

    def __init__(self, workdir: Path, database_url: str | None = None,
                 **settings: object) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url or f"sqlite+aiosqlite:///{workdir}/roomlog.db"
        self.port = free_port()
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "server.log"
        self.starts = 0

    # -- addresses ---------------------------------------------------------

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMLOG_")}
        env.update(
            ROOMLOG_DATABASE_URL=self.database_url,
            ROOMLOG_SECRET=SECRET,
            ROOMLOG_LOG_LEVEL="warning",
            ROOMLOG_SECRET_FILE=str(self.workdir / ".secret"),
            PYTHONUNBUFFERED="1",
        )
        # `TEST_WS_ENGINE=asgi pytest tests/e2e/...` runs the suite on the ASGI engine
        # (the default is the setting's: native).
        if os.environ.get("TEST_WS_ENGINE"):
            env["ROOMLOG_WS_ENGINE"] = os.environ["TEST_WS_ENGINE"]
        # Tests reuse a few user names and addresses for hundreds of requests; the
        # per-user limits other than writes are set high unless a test sets them
        # (tests/e2e/test_limits.py does).
        env.update({"ROOMLOG_" + name.upper(): str(value)
                    for name, value in TEST_LIMITS.items()})
        for name, value in self.settings.items():
            env["ROOMLOG_" + name.upper()] = str(value)
        return env

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def assert_clean_log(self) -> None:
        """No exception was logged by the server (it runs at log level warning)."""
        output = self.output()
        assert "Traceback" not in output and "ERROR" not in output, output[-4000:]

    # -- lifecycle ---------------------------------------------------------

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the process without waiting for it to be ready."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- start #{self.starts} on port {self.port}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "roomlog", "serve", "--port", str(self.port)],
                cwd=self.workdir, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
            )
        return self.proc

    def start(self) -> Server:
        self.launch()
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise ServerFailed(
                        f"server exited with {self.proc.returncode}:\n{self.output()}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(self.base + "/health/ready").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    self.kill()
                    raise ServerFailed(f"server not ready in {START_TIMEOUT}s:\n{self.output()}")
                time.sleep(0.05)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait for the process to exit; return its exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ServerFailed(
                f"server ignored SIGTERM for {timeout}s:\n{self.output()}") from None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush; what was committed must survive."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self, *, hard: bool = False) -> Server:
        if hard:
            self.kill()
        else:
            self.stop()
        return self.start()

    # async wrappers: never block the event loop of a test that holds sockets
    async def astart(self) -> Server:
        return await asyncio.to_thread(self.start)

    async def astop(self) -> int:
        return await asyncio.to_thread(self.stop)

    async def akill(self) -> None:
        await asyncio.to_thread(self.kill)

    async def arestart(self, *, hard: bool = False) -> Server:
        return await asyncio.to_thread(self.restart, hard=hard)


def migrate(database_url: str) -> None:
    """``python -m roomlog migrate`` on ``database_url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMLOG_")}
    env.update(ROOMLOG_DATABASE_URL=database_url, ROOMLOG_SECRET=SECRET)
    done = subprocess.run([sys.executable, "-m", "roomlog", "migrate"], env=env,
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


# ---------------------------------------------------------------------------
# WebSocket client


class WsClient:
    """A protocol-level client: frames in, frames out, nothing hidden.

    Received wire frames are flattened (the server may coalesce a backlog
    into one array) into a queue of server frames. :meth:`expect` and
    :meth:`messages` take frames out of that queue in order, waiting up to a
    timeout for more; frames they pass over stay queued for later calls.
    """

    def __init__(self, ws: ClientConnection, fmt: str) -> None:
        self.ws = ws
        self.fmt = fmt
        self.frames: deque[dict[str, Any]] = deque()
        self.close_code: int | None = None
        self.close_reason = ""
        self._ids = 0

    @property
    def binary(self) -> bool:
        return self.fmt == MSGPACK

    def next_id(self) -> str:
        self._ids += 1
        return f"c{self._ids}-{secrets.token_hex(3)}"

    # -- sending -----------------------------------------------------------

    def encode(self, frame: Any) -> str | bytes:
        if self.binary:
            return msgpack.packb(frame, use_bin_type=True)  # type: ignore[no-any-return]
        return orjson.dumps(frame).decode()

    async def send(self, frame: Any) -> None:
        await self.ws.send(self.encode(frame))

    async def send_raw(self, payload: str | bytes) -> None:
        await self.ws.send(payload)

    # -- receiving ---------------------------------------------------------

    def _decode(self, payload: str | bytes) -> list[dict[str, Any]]:
        if self.binary:
            assert isinstance(payload, bytes), "msgpack subprotocol must get binary frames"
            obj = msgpack.unpackb(payload, raw=False)
        else:
            assert isinstance(payload, str), "json subprotocol must get text frames"
            obj = orjson.loads(payload)
        items = obj if isinstance(obj, list) else [obj]
        assert all(isinstance(item, dict) and "type" in item for item in items), obj
        return items

    async def _fill(self) -> None:
        """Receive one wire frame into the queue; AssertionError when closed."""
        try:
            payload = await self.ws.recv()
        except ConnectionClosed as exc:
            self._closed(exc)
            raise AssertionError(
                f"connection closed ({self.close_code} {self.close_reason!r}) "
                f"while waiting; queued: {list(self.frames)[-5:]}") from None
        self.frames.extend(self._decode(payload))

    def _closed(self, exc: ConnectionClosed) -> None:
        if exc.rcvd is not None:
            self.close_code, self.close_reason = exc.rcvd.code, exc.rcvd.reason
        else:
            self.close_code = 1006

    async def next(self, within: float = TIMEOUT) -> dict[str, Any]:
        """The next server frame, whatever it is."""
        async def get() -> dict[str, Any]:
            while not self.frames:
                await self._fill()
            return self.frames.popleft()
        try:
            return await asyncio.wait_for(get(), within)
        except TimeoutError:
            raise AssertionError(f"no frame within {within}s") from None

    def __aiter__(self) -> WsClient:
        return self

    async def __anext__(self) -> dict[str, Any]:
        """``async for frame in client``: server frames one by one, until the close."""
        if not self.frames and self.close_code is not None:
            raise StopAsyncIteration
        try:
            return await self.next()
        except AssertionError:
            if self.close_code is not None and not self.frames:
                raise StopAsyncIteration from None
            raise

    async def expect(self, type: str, within: float = TIMEOUT, **fields: Any) -> dict[str, Any]:
        """The first queued or coming frame of ``type`` whose ``fields`` match.

        An ``error`` frame met while looking for something else fails the test.
        """
        def matches(frame: dict[str, Any]) -> bool:
            return frame["type"] == type and all(frame.get(k) == v for k, v in fields.items())

        async def find() -> dict[str, Any]:
            seen = 0
            while True:
                while seen < len(self.frames):
                    frame = self.frames[seen]
                    if matches(frame):
                        del self.frames[seen]
                        return frame
                    if frame["type"] == "error" and type != "error":
                        raise AssertionError(f"error frame while expecting {type}: {frame}")
                    seen += 1
                await self._fill()

        try:
            return await asyncio.wait_for(find(), within)
        except TimeoutError:
            raise AssertionError(f"no {type} frame {fields or ''} within {within}s; "
                                 f"queued: {list(self.frames)[-5:]}") from None

    async def messages(self, room: str, n: int, within: float = TIMEOUT) -> list[dict[str, Any]]:
        """The next ``n`` message frames of ``room`` (other frames stay queued).

        An ``error`` or ``reset`` frame for the room in between fails the test.
        """
        got: list[dict[str, Any]] = []

        async def collect() -> None:
            seen = 0
            while len(got) < n:
                while seen < len(self.frames) and len(got) < n:
                    frame = self.frames[seen]
                    if frame.get("room") == room and frame["type"] == "message":
                        got.append(frame)
                        del self.frames[seen]
                        continue
                    if frame["type"] == "error" or (frame["type"] == "reset"
                                                    and frame.get("room") == room):
                        raise AssertionError(f"{frame['type']} frame among messages: {frame}")
                    seen += 1
                if len(got) < n:
                    await self._fill()

        try:
            await asyncio.wait_for(collect(), within)
        except TimeoutError:
            raise AssertionError(f"got {len(got)} of {n} messages of {room} within {within}s; "
                                 f"last: {got[-1:]}") from None
        return got

    async def closed(self, within: float = TIMEOUT) -> int:
        """Read (and keep) frames until the server closes; return the close code."""
        async def drain() -> None:
            while True:
                try:
                    payload = await self.ws.recv()
                except ConnectionClosed as exc:
                    self._closed(exc)
                    return
                self.frames.extend(self._decode(payload))

        try:
            await asyncio.wait_for(drain(), within)
        except TimeoutError:
            raise AssertionError(f"server did not close within {within}s; "
                                 f"queued: {list(self.frames)[-5:]}") from None
        assert self.close_code is not None
        return self.close_code

    # -- protocol helpers ----------------------------------------------------

    async def connect(self, tok: str, **extra: Any) -> dict[str, Any]:
        await self.send({"type": "connect", "token": tok, **extra})
        return await self.expect("connected")

    async def subscribe(self, room: str, since: dict[str, Any] | None = None,
                        **extra: Any) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "subscribe", "room": room, **extra}
        if since is not None:
            frame["since"] = since
        await self.send(frame)
        return await self.expect("subscribed", room=room)

    async def publish(self, room: str, data: Any, ident: str | None = None) -> dict[str, Any]:
        ident = ident or self.next_id()
        await self.send({"type": "publish", "room": room, "data": data, "id": ident})
        return await self.expect("ack", id=ident)

    async def publish_many(self, room: str, datas: list[Any]) -> list[dict[str, Any]]:
        """Pipeline publishes (send all, then collect the acks)."""
        ids = [self.next_id() for _ in datas]
        for ident, data in zip(ids, datas, strict=True):
            await self.send({"type": "publish", "room": room, "data": data, "id": ident})
        return [await self.expect("ack", id=ident) for ident in ids]

    async def send_command(self, room: str, name: str, args: dict[str, Any] | None = None, *,
                           ident: str | None = None, expected_seq: int | None = None) -> str:
        """Send a ``command`` frame without waiting; its id (for :meth:`reply`)."""
        ident = ident or self.next_id()
        frame: dict[str, Any] = {"type": "command", "room": room, "name": name,
                                 "args": {} if args is None else args, "id": ident}
        if expected_seq is not None:
            frame["expected_seq"] = expected_seq
        await self.send(frame)
        return ident

    async def reply(self, ident: str, within: float = TIMEOUT) -> dict[str, Any]:
        """The ``ack`` or ``error`` frame answering the frame ``ident`` (others stay queued)."""
        async def find() -> dict[str, Any]:
            seen = 0
            while True:
                while seen < len(self.frames):
                    frame = self.frames[seen]
                    if frame.get("id") == ident and frame["type"] in ("ack", "error"):
                        del self.frames[seen]
                        return frame
                    seen += 1
                await self._fill()

        try:
            return await asyncio.wait_for(find(), within)
        except TimeoutError:
            raise AssertionError(f"no answer to {ident} within {within}s; "
                                 f"queued: {list(self.frames)[-5:]}") from None

    async def command(self, room: str, name: str, args: dict[str, Any] | None = None, *,
                      ident: str | None = None,
                      expected_seq: int | None = None) -> dict[str, Any]:
        """Run a command in a domain room: its ``ack`` or ``error`` frame."""
        ident = await self.send_command(room, name, args, ident=ident,
                                        expected_seq=expected_seq)
        return await self.reply(ident)

    async def ping(self) -> dict[str, Any]:
        ident = self.next_id()
        await self.send({"type": "ping", "id": ident})
        return await self.expect("pong", id=ident)

    async def close(self) -> None:
        await self.ws.close()

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        transport = self.ws.transport
        transport.abort()


async def open_client(url: str, *, fmt: str = JSON, token: str | None = None,
                      user: str = "alice", role: Role = Role.GUEST,
                      connect_frame: bool = True, **ws_options: Any) -> WsClient:
    """Open a WebSocket with subprotocol ``fmt`` and, unless told not to, connect."""
    ws_options.setdefault("max_size", None)
    ws_options.setdefault("open_timeout", TIMEOUT)
    ws = await connect(url, subprotocols=[Subprotocol(fmt)], **ws_options)
    assert ws.subprotocol == fmt
    client = WsClient(ws, fmt)
    if connect_frame:
        await client.connect(token or issue_token(user, role))
    return client


async def post_command(http: httpx.AsyncClient, srv: Server, room: str, name: str,
                       args: dict[str, Any] | None = None, *, user: str = "alice",
                       role: Role = Role.GUEST, ident: str | None = None,
                       expected_seq: int | None = None) -> httpx.Response:
    """``POST /v1/rooms/{room}/commands``: a command over HTTP (a fresh id unless given)."""
    body: dict[str, Any] = {"name": name, "args": {} if args is None else args,
                            "id": ident or f"h-{secrets.token_hex(6)}"}
    if expected_seq is not None:
        body["expected_seq"] = expected_seq
    return await http.post(f"{srv.base}/v1/rooms/{room}/commands", json=body,
                           headers=bearer(user, role))


async def get_state(http: httpx.AsyncClient, srv: Server, room: str, *, user: str = "alice",
                    role: Role = Role.GUEST) -> dict[str, Any]:
    """``GET /v1/rooms/{room}/state`` as ``user``: ``{room, epoch, seq, state}``."""
    reply = await http.get(f"{srv.base}/v1/rooms/{room}/state", headers=bearer(user, role))
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------
# A WebSocket over a bare socket: reads only when told, answers pings only if told


class RawWs:
    """A WebSocket client over a bare non-blocking socket (websockets' sans-I/O
    protocol). It touches the socket only inside its own calls: between them it
    reads nothing, and it answers pings only when ``answer_pings`` is set. A
    small ``rcvbuf`` keeps the TCP window small, so a client that stops reading
    pushes back on the server soon."""

    def __init__(self, sock: socket.socket, proto: ClientProtocol) -> None:
        self.sock = sock
        self.proto = proto
        self.handshake: Response | None = None
        self.frames: deque[Frame] = deque()  # data and close frames, in order
        self.eof = False
        self.answer_pings = False
        self.pings = 0

    @classmethod
    async def open(cls, port: int, *, subprotocol: str = JSON,
                   rcvbuf: int | None = None) -> RawWs:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if rcvbuf is not None:  # before connect, so the TCP window stays small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), TIMEOUT)
        proto = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/ws"),
                               subprotocols=[Subprotocol(subprotocol)], max_size=None)
        raw = cls(sock, proto)
        proto.send_request(proto.connect())
        await raw._flush()
        await raw._wait(lambda: raw.handshake is not None)
        assert raw.handshake is not None and raw.handshake.status_code == 101
        return raw

    async def _flush(self) -> None:
        data = b"".join(self.proto.data_to_send())
        if data:
            await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def read_once(self) -> None:
        """One recv() from the socket, parsed into events."""
        data = await asyncio.get_running_loop().sock_recv(self.sock, 65536)
        if data:
            self.proto.receive_data(data)
        else:
            self.eof = True
            self.proto.receive_eof()
        for event in self.proto.events_received():
            if isinstance(event, Response):
                self.handshake = event
            elif event.opcode is Opcode.PING:
                self.pings += 1
            elif event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CLOSE):
                self.frames.append(event)
        pending = self.proto.data_to_send()  # pongs and the close reply
        if self.answer_pings:
            data = b"".join(pending)
            if data:
                with contextlib.suppress(OSError):
                    await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def _wait(self, done: Callable[[], bool], within: float = TIMEOUT) -> None:
        async def loop() -> None:
            while not done():
                if self.eof:
                    raise AssertionError("connection ended")
                await self.read_once()
        await asyncio.wait_for(loop(), within)

    async def send_text(self, frame: dict[str, Any]) -> None:
        self.proto.send_text(orjson.dumps(frame))
        await self._flush()

    async def next_frames(self, within: float = TIMEOUT) -> list[dict[str, Any]]:
        """The server frames of the next data frame (flattened), or [] at a close."""
        await self._wait(lambda: bool(self.frames), within)
        frame = self.frames.popleft()
        if frame.opcode is Opcode.CLOSE:
            self.frames.appendleft(frame)
            return []
        obj = orjson.loads(frame.data)
        return obj if isinstance(obj, list) else [obj]

    async def expect(self, type: str, within: float = TIMEOUT) -> dict[str, Any]:
        async def find() -> dict[str, Any]:
            while True:
                items = await self.next_frames()
                if not items:
                    raise AssertionError(f"closed while expecting {type}")
                for item in items:
                    if item["type"] == type:
                        return item
        return await asyncio.wait_for(find(), within)

    async def until_closed(self, within: float = TIMEOUT) -> tuple[list[dict[str, Any]],
                                                                   int | None]:
        """Read everything until the server closes: (server frames, close code or None
        when the TCP connection ended without a close frame)."""
        items: list[dict[str, Any]] = []
        code: int | None = None

        async def drain() -> None:
            nonlocal code
            while True:
                while self.frames:
                    frame = self.frames.popleft()
                    if frame.opcode is Opcode.CLOSE:
                        code = self.proto.close_rcvd.code if self.proto.close_rcvd else 1005
                        return
                    obj = orjson.loads(frame.data)
                    items.extend(obj if isinstance(obj, list) else [obj])
                if self.eof:
                    return
                try:
                    await self.read_once()
                except ConnectionError:
                    self.eof = True

        await asyncio.wait_for(drain(), within)
        return items, code

    def close(self) -> None:
        self.sock.close()


class SseStream:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._events = self._parse()

    async def _parse(self) -> AsyncIterator[dict[str, Any]]:
        event: dict[str, Any] = {}
        data: list[str] = []
        async for line in self.response.aiter_lines():
            if line == "":
                if data:
                    event["data"] = orjson.loads("\n".join(data))
                    yield {"event": "message", **event}
                event, data = {}, []
            elif line.startswith(":"):
                continue  # a comment (keep-alive)
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    data.append(value)
                elif name in ("event", "id"):
                    event[name] = value

    async def next(self) -> dict[str, Any]:
        return await asyncio.wait_for(anext(self._events), TIMEOUT)


@contextlib.asynccontextmanager
async def sse(http: httpx.AsyncClient, srv: Server, room: str, *,
              headers: dict[str, str] | None = None,
              params: dict[str, Any] | None = None) -> AsyncIterator[SseStream]:
    async with http.stream("GET", f"{srv.base}/v1/rooms/{room}/events", headers=headers,
                           params=params) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        yield SseStream(response)
