"""A plain ``websockets`` fan-out server: the baseline that loadtest/fanout.py compares with.

It speaks just enough of the hub's protocol (``roomlog.v1.json``) for the
load test, with no persistence, no authentication and no validation:

* ``connect`` -> ``connected`` (any token),
* ``subscribe`` -> ``subscribed``,
* ``publish`` -> the message goes into the backlog of every subscriber of the
  room, and the publisher gets an ``ack`` with the message's seq,
* ``ping`` -> ``pong``.

Three fan-out modes (``--mode``):

plain (what the library's documentation shows; what issue 13 measured as "plain websockets")
    Each message is encoded once and written at once to every subscriber with
    ``websockets.broadcast``, one frame per message per subscriber; the ack is
    sent with ``await ws.send``. Nothing is coalesced: its saturated rate is what a
    straightforward server built on the library delivers.
coalesce (the default, the baseline of the load test)
    Each message is encoded once (orjson) and appended to every subscriber's
    backlog; one writer task per connection sends the whole backlog as one
    JSON-array frame (one frame alone as itself), the same coalescing the
    hub's outbox does.
direct (an experiment: what synchronous fan-out buys)
    Publishes are gathered per room until the end of the current event-loop
    iteration, joined into one JSON array once, and written synchronously
    (``protocol.send_text`` + ``send_data``, as ``websockets.broadcast`` does)
    to every subscriber whose backlog is empty and who is not mid-send; the
    others get the joined segment in their backlog for their writer task.
    No task wake-up per subscriber and one join per batch instead of one per
    subscriber.

``GET /health/ready`` answers 200.

Run: ``python loadtest/baseline_websockets.py --port 8765`` (127.0.0.1 only).
"""

from __future__ import annotations

import sys

# loadtest/queue.py shares its name with the standard library's ``queue``, which
# asyncio's thread pool imports: put this folder after the standard library.
sys.path.append(sys.path.pop(0))

import argparse
import asyncio
import contextlib
import signal
import time
from http import HTTPStatus
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

EPOCH = "baseline"


class Conn:
    """One client: its backlog (JSON objects, or comma-joined runs of them) and its writer."""

    __slots__ = ("backlog", "sending", "wake", "ws")

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.backlog: list[bytes] = []
        self.wake = asyncio.Event()
        self.sending = False

    def put(self, item: bytes) -> None:
        self.backlog.append(item)
        self.wake.set()

    def write_now(self, payload: bytes) -> bool:
        """Write a frame synchronously if nothing is queued before it; False if not."""
        ws = self.ws
        if self.backlog or self.sending or ws.protocol.state is not State.OPEN \
                or ws.send_in_progress is not None:
            return False
        ws.protocol.send_text(payload)
        ws.send_data()
        return True

    async def writer(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.backlog:
                items, self.backlog = self.backlog, []
                payload = items[0] if len(items) == 1 else b"[" + b",".join(items) + b"]"
                self.sending = True
                try:
                    await self.ws.send(payload, text=True)
                finally:
                    self.sending = False


class Hub:
    def __init__(self, mode: str) -> None:
        self.rooms: dict[str, set[Conn]] = {}
        self.seqs: dict[str, int] = {}
        self.direct = mode == "direct"
        self.plain = mode == "plain"
        self.pending: dict[str, list[bytes]] = {}  # direct mode: this iteration's messages

    def fan_out(self, room: str, message: bytes) -> None:
        if self.plain:
            broadcast([sub.ws for sub in self.rooms.get(room, ())], message.decode())
            return
        if not self.direct:
            for sub in self.rooms.get(room, ()):
                sub.put(message)
            return
        pending = self.pending.get(room)
        if pending is None:
            pending = self.pending[room] = []
            asyncio.get_running_loop().call_soon(self._flush, room)
        pending.append(message)

    def _flush(self, room: str) -> None:
        segment = b",".join(self.pending.pop(room))
        payload = b"[" + segment + b"]"
        for sub in self.rooms.get(room, ()):
            if not sub.write_now(payload):
                sub.put(segment)

    async def handle(self, ws: ServerConnection) -> None:
        conn = Conn(ws)
        writer = asyncio.create_task(conn.writer())
        joined: set[str] = set()
        try:
            async for raw in ws:  # ends quietly on a normal close
                frame: dict[str, Any] = orjson.loads(raw)
                kind = frame.get("type")
                ident = {"id": frame["id"]} if "id" in frame else {}
                if kind == "publish":
                    room = frame["room"]
                    seq = self.seqs[room] = self.seqs.get(room, 0) + 1
                    message = orjson.dumps({
                        "type": "message", "room": room, "seq": seq, "epoch": EPOCH,
                        "ts": int(time.time() * 1000), "by": "anonymous", "data": frame["data"]})
                    self.fan_out(room, message)
                    ack = orjson.dumps({"type": "ack", "room": room, "seq": seq,
                                        "epoch": EPOCH, "duplicate": False} | ident)
                    if self.plain:
                        await ws.send(ack.decode())
                    else:
                        conn.put(ack)
                elif kind == "subscribe":
                    room = frame["room"]
                    self.rooms.setdefault(room, set()).add(conn)
                    joined.add(room)
                    conn.put(orjson.dumps({"type": "subscribed", "room": room, "epoch": EPOCH,
                                           "head": self.seqs.get(room, 0), "replayed": 0}
                                          | ident))
                elif kind == "connect":
                    conn.put(orjson.dumps({"type": "connected", "user": "anonymous",
                                           "role": "admin", "expires": 0} | ident))
                elif kind == "ping":
                    conn.put(orjson.dumps({"type": "pong"} | ident))
        except ConnectionClosed:
            pass  # the client vanished: nothing to clean up beyond the finally
        finally:
            for room in joined:
                self.rooms.get(room, set()).discard(conn)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer


def _health(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/health/ready":
        return connection.respond(HTTPStatus.OK, "ready\n")
    return None


async def serve_forever(host: str, port: int, mode: str) -> None:
    hub = Hub(mode)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(hub.handle, host, port, subprotocols=["roomlog.v1.json"],  # type: ignore[list-item]
                     compression=None, process_request=_health, ping_interval=15,
                     ping_timeout=10, backlog=2048, max_size=1_048_576):
        await stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--mode", choices=["coalesce", "direct", "plain"], default="coalesce",
                        help="fan-out: writer task per connection (default), synchronous "
                             "writes of a per-iteration batch, or websockets.broadcast of "
                             "each message (see above)")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop",
                        help="event loop (uvloop, like uvicorn picks when it is installed)")
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("the baseline binds loopback addresses only")
    factory = None
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve_forever(args.host, args.port, args.mode))


if __name__ == "__main__":
    main()
