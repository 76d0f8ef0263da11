"""A webhook receiver for loadtest/webhooks.py: a real HTTP/1.1 server, kept lean.

``python loadtest/webhook_receiver.py --port P --secret whsec_...`` serves:

* ``POST /hook``: a delivery. It answers 204, or 500 for a share ``fail`` of the
  requests (chosen at random, recorded as failed). For each message of a 2xx
  delivery it records commit-to-receipt (receipt time minus the message's ``ts``,
  the commit time in ms) and publish-to-receipt (minus ``data.t``, the load
  generator's ``time.time_ns()`` when it sent the publish), and counts duplicates
  by message id. Every ``--verify-every``-th request's signature is checked (HMAC
  as Standard Webhooks define it); a mismatch is counted.
* ``GET /stats``: the figures as JSON; ``POST /reset?fail=0.1``: clear them, set
  the failure share.

Keep-alive connections, asyncio.Protocol, uvloop when installed: the receiver must
cost much less than the hub it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import random
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson


class State:
    def __init__(self, key: bytes, verify_every: int) -> None:
        self.key = key
        self.verify_every = verify_every
        self.reset(0.0)

    def reset(self, fail: float) -> None:
        self.fail = fail
        self.requests = 0
        self.failed = 0
        self.messages = 0
        self.duplicates = 0
        self.bad_signatures = 0
        self.seen: set[str] = set()
        self.first_ns = 0
        self.last_ns = 0
        self.commit_ms: list[float] = []
        self.publish_ms: list[float] = []

    def delivery(self, headers: dict[bytes, bytes], body: bytes) -> int:
        now = time.time_ns()
        self.requests += 1
        if self.verify_every and self.requests % self.verify_every == 0:
            signed = headers.get(b"webhook-id", b"") + b"." + \
                headers.get(b"webhook-timestamp", b"") + b"." + body
            mac = base64.b64encode(hmac.new(self.key, signed, hashlib.sha256).digest())
            if b"v1," + mac not in headers.get(b"webhook-signature", b"").split():
                self.bad_signatures += 1
        if self.fail and random.random() < self.fail:
            self.failed += 1
            return 500
        payload = orjson.loads(body)
        for message in payload["messages"]:
            if message["id"] in self.seen:
                self.duplicates += 1
                continue
            self.seen.add(message["id"])
            self.messages += 1
            self.commit_ms.append((now - message["ts"] * 1_000_000) / 1e6)
            sent = message["data"].get("t") if isinstance(message["data"], dict) else None
            if isinstance(sent, int):
                self.publish_ms.append((now - sent) / 1e6)
        if not self.first_ns:
            self.first_ns = now
        self.last_ns = now
        return 204

    def figures(self) -> dict[str, Any]:
        return {"requests": self.requests, "failed": self.failed, "messages": self.messages,
                "duplicates": self.duplicates, "bad_signatures": self.bad_signatures,
                "first_ns": self.first_ns, "last_ns": self.last_ns,
                "commit_ms": self.commit_ms, "publish_ms": self.publish_ms}


class Http(asyncio.Protocol):
    def __init__(self, state: State) -> None:
        self.state = state
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buf[:end]).split(b"\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0"))
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4:end + 4 + length])
            del self.buf[:end + 4 + length]
            self.answer(lines[0], headers, body)

    def answer(self, request_line: bytes, headers: dict[bytes, bytes], body: bytes) -> None:
        method, target, _ = request_line.decode().split(" ", 2)
        url = urlsplit(target)
        status, out = 404, b""
        if method == "POST" and url.path == "/hook":
            status = self.state.delivery(headers, body)
        elif method == "GET" and url.path == "/stats":
            status, out = 200, orjson.dumps(self.state.figures())
        elif method == "POST" and url.path == "/reset":
            fail = float(parse_qs(url.query).get("fail", ["0"])[0])
            self.state.reset(fail)
            status = 204
        elif method == "GET" and url.path == "/ready":
            status = 200
        reason = {200: b"OK", 204: b"No Content", 404: b"Not Found", 500: b"Error"}[status]
        head = b"HTTP/1.1 %d %s\r\ncontent-length: %d\r\n" % (status, reason, len(out))
        if out:
            head += b"content-type: application/json\r\n"
        assert self.transport is not None
        self.transport.write(head + b"\r\n" + out)


async def serve(port: int, secret: str, verify_every: int) -> None:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    state = State(key, verify_every)
    server = await asyncio.get_running_loop().create_server(
        lambda: Http(state), "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--verify-every", type=int, default=20)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.port, args.secret, args.verify_every))
    else:
        uvloop.run(serve(args.port, args.secret, args.verify_every))


if __name__ == "__main__":
    main()
