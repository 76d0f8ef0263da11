"""Shared pieces of the load tests: a lean WebSocket client, CPU meters, stats.

:class:`RawClient` is a minimal RFC 6455 client on ``asyncio.Protocol``: it
speaks just enough WebSocket (handshake, masked client frames, unmasked server
frames, ping/pong, close, continuation frames) to drive the hub. It hands each
received text/binary payload to a callback as ``(buffer, start, end)`` without
copying it, so a subscriber can count the messages in a frame with
``buffer.count(MESSAGE_MARK, start, end)`` instead of decoding JSON. That keeps
the load generator far cheaper per delivery than the server it measures.

Only loopback addresses are accepted as targets.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import orjson

__all__ = [
    "MESSAGE_MARK",
    "Buffer",
    "CoreMeter",
    "CpuMeter",
    "PayloadHandler",
    "RawClient",
    "check_loopback",
    "client_frame",
    "http_status",
    "percentile",
    "proc_cpu_times",
    "proc_rss_kib",
    "wait_quiet",
    "wait_ready",
]

#: How every message frame starts (orjson writes no spaces): count it to count messages.
MESSAGE_MARK = b'"type":"message"'

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SETUP_TIMEOUT = 30.0  # seconds for a handshake or an expected set-up frame
CLOSE_TIMEOUT = 2.0  # seconds a closing client waits for the server to end TCP
HTTP_TIMEOUT = 2.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")

Buffer = bytes | bytearray
PayloadHandler = Callable[[Buffer, int, int], None]


def check_loopback(host: str) -> str:
    """Refuse any target that is not a loopback address."""
    if host == "localhost":
        return "127.0.0.1"
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"refusing to load {host}: only loopback addresses are allowed")
    return host


# ---------------------------------------------------------------------------
# CPU use and memory, from /proc/<pid>/stat and /proc/<pid>/status


def proc_cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all its threads; zeros if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0.0, 0.0
    # Fields after the command name, which is in parentheses and may hold spaces.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[11]) / _CLK_TCK, int(fields[12]) / _CLK_TCK  # utime, stime


def proc_rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (VmRSS); 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])  # "VmRSS:   123456 kB"
    except OSError:
        pass
    return 0


def _pids_named(name: bytes) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm", "rb") as f:
                    if f.read().strip() == name:
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


class CpuMeter:
    """CPU time of some processes between :meth:`start` and :meth:`stop`, as % of a core.

    ``name`` (e.g. b"postgres") measures every process with that command name
    instead of fixed pids: PostgreSQL forks a backend per connection. ``keep``, if
    given, narrows those to the ones whose command line (NUL-separated, as in
    /proc/<pid>/cmdline) it accepts, e.g. the backends of one database.
    """

    def __init__(self, pids: list[int] | None = None, name: bytes | None = None,
                 keep: Callable[[bytes], bool] | None = None) -> None:
        self._pids = pids or []
        self._name = name
        self._keep = keep
        self._t0 = 0.0
        self._cpu0: dict[int, tuple[float, float]] = {}
        self.user = 0.0  # % of one core in user mode, after stop()
        self.system = 0.0  # % of one core in the kernel, after stop()

    def _sample(self) -> dict[int, tuple[float, float]]:
        pids = _pids_named(self._name) if self._name is not None else self._pids
        if self._keep is not None:
            pids = [pid for pid in pids if self._keep(_cmdline(pid))]
        return {pid: proc_cpu_times(pid) for pid in pids}

    def start(self) -> None:
        self._cpu0 = self._sample()
        self._t0 = time.monotonic()

    def stop(self) -> float:
        """Percent of one core used since start() (user + system)."""
        elapsed = time.monotonic() - self._t0
        cpu1 = self._sample()
        user = sum(u - self._cpu0.get(p, (0.0, 0.0))[0] for p, (u, _) in cpu1.items())
        system = sum(s - self._cpu0.get(p, (0.0, 0.0))[1] for p, (_, s) in cpu1.items())
        if elapsed <= 0:
            return 0.0
        self.user, self.system = 100.0 * user / elapsed, 100.0 * system / elapsed
        return self.user + self.system


def _core_times() -> dict[int, list[int]]:
    """Per-core jiffies from /proc/stat: user nice system idle iowait irq softirq steal."""
    cores = {}
    with open("/proc/stat", "rb") as f:
        for line in f:
            if line.startswith(b"cpu") and line[3:4].isdigit():
                name, *values = line.split()
                cores[int(name[3:])] = [int(v) for v in values[:8]]
    return cores


class CoreMeter:
    """How busy each core was between :meth:`start` and :meth:`stop`, whoever ran there.

    Unlike :class:`CpuMeter` this includes interrupt and softirq time (loopback
    TCP is partly processed there, charged to no process) and shows steal
    time, the hypervisor's share: machine noise.
    """

    def __init__(self) -> None:
        self._t0: dict[int, list[int]] = {}
        self.busy: dict[int, float] = {}  # % of the core, everything but idle and iowait
        self.softirq: dict[int, float] = {}
        self.steal: dict[int, float] = {}

    def start(self) -> None:
        self._t0 = _core_times()

    def stop(self) -> None:
        t1 = _core_times()
        for core, now in t1.items():
            delta = [b - a for a, b in zip(self._t0.get(core, now), now, strict=True)]
            total = sum(delta) or 1
            self.busy[core] = 100.0 * (total - delta[3] - delta[4]) / total
            self.softirq[core] = 100.0 * delta[6] / total
            self.steal[core] = 100.0 * delta[7] / total


# ---------------------------------------------------------------------------
# Small helpers


def percentile(sorted_values: list[int], fraction: float) -> int:
    """Nearest-rank percentile of an ascending list (0 if empty)."""
    if not sorted_values:
        return 0
    rank = max(0, min(len(sorted_values) - 1, int(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


async def http_status(host: str, port: int, path: str) -> int:
    """Status code of a plain HTTP/1.1 GET, or 0 if there is no answer in HTTP_TIMEOUT."""
    try:
        async with asyncio.timeout(HTTP_TIMEOUT):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
                             "Connection: close\r\n\r\n".encode())
                line = await reader.readline()
            finally:
                writer.close()
        parts = line.split()
        return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
    except (OSError, TimeoutError):
        return 0


async def wait_quiet(cores: list[int], max_wait: float, busy_limit: float) -> dict[int, float]:
    """Wait (up to ``max_wait`` s, sampling each second) until every core in ``cores`` is
    under ``busy_limit`` % busy: other work skews a benchmark. Returns {} once they are
    quiet, else how busy they still were when the time ran out."""
    deadline = time.monotonic() + max_wait
    while True:
        meter = CoreMeter()
        meter.start()
        await asyncio.sleep(1.0)
        meter.stop()
        busy = {c: meter.busy.get(c, 0.0) for c in cores}
        if all(b < busy_limit for b in busy.values()):
            return {}
        if time.monotonic() >= deadline:
            return busy


async def wait_ready(host: str, port: int, path: str, alive: Callable[[], bool]) -> None:
    """Poll GET path until it answers 200 (wrap in asyncio.timeout); fail if ``alive()``
    turns false."""
    while True:
        if not alive():
            raise RuntimeError("the server exited during start-up")
        if await http_status(host, port, path) == 200:
            return
        await asyncio.sleep(0.1)


# ---------------------------------------------------------------------------
# The raw WebSocket client


def _mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return b""
    k = int.from_bytes((key * (n // 4 + 1))[:n], "little")
    return (int.from_bytes(data, "little") ^ k).to_bytes(n, "little")


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One masked, final client frame (text by default)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = os.urandom(4)
    return head + key + _mask(payload, key)


@dataclass
class CloseInfo:
    code: int | None = None
    reason: str = ""
    lost: bool = False  # the TCP connection ended


class RawClient(asyncio.Protocol):
    """A minimal WebSocket client. Use :meth:`open`; set :attr:`on_payload`.

    Until ``on_payload`` is replaced, received frames are decoded as JSON and
    queued (an array counts as its items), for :meth:`recv` during set-up.
    """

    def __init__(self, host: str, path: str, subprotocol: str | None) -> None:
        self._host = host
        self._path = path
        self._subprotocol = subprotocol
        self._key = base64.b64encode(os.urandom(16))
        self._buf = bytearray()
        self._fragments: bytearray | None = None
        self._open = False
        self._close_sent = False
        self.transport: asyncio.Transport | None = None
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[CloseInfo] = asyncio.get_running_loop().create_future()
        self.close_info = CloseInfo()
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.on_payload: PayloadHandler = self._queue_payload

    @classmethod
    async def open(cls, host: str, port: int, path: str = "/ws",
                   subprotocol: str | None = "roomlog.v1.json") -> RawClient:
        """Connect and complete the handshake within SETUP_TIMEOUT."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(SETUP_TIMEOUT):
            _, client = await loop.create_connection(
                lambda: cls(host, path, subprotocol), host, port)
            await client.handshake
        return client

    # -- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        lines = [f"GET {self._path} HTTP/1.1", f"Host: {self._host}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {self._key.decode()}",
                 "Sec-WebSocket-Version: 13"]
        if self._subprotocol:
            lines.append(f"Sec-WebSocket-Protocol: {self._subprotocol}")
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    def connection_lost(self, exc: Exception | None) -> None:
        self.close_info.lost = True
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionError(f"closed during handshake: {exc}"))
        if not self.closed.done():
            self.closed.set_result(self.close_info)

    def data_received(self, data: bytes) -> None:
        if not self._open and self.handshake.done():
            return  # the handshake was refused: what follows is no WebSocket
        buf = self._buf
        buf += data
        if not self._open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self._check_handshake(bytes(buf[:end]))
            del buf[: end + 4]
            if not self._open:
                return
        pos, n = 0, len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                if n - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if b1 & 0x80:
                self._fail("the server sent a masked frame")
                return
            start, end = pos + head, pos + head + length
            if end > n:
                break
            opcode, fin = b0 & 0x0F, b0 & 0x80
            if opcode in (1, 2):
                if fin:
                    self.on_payload(buf, start, end)
                else:
                    self._fragments = bytearray(buf[start:end])
            elif opcode == 0 and self._fragments is not None:
                self._fragments += buf[start:end]
                if fin:
                    whole, self._fragments = self._fragments, None
                    self.on_payload(whole, 0, len(whole))
            elif opcode == 9:  # ping
                self._write(client_frame(bytes(buf[start:end]), 0xA))
            elif opcode == 8:  # close: echo it and let the server close TCP
                body = bytes(buf[start:end])
                if len(body) >= 2:
                    self.close_info.code = int.from_bytes(body[:2], "big")
                    self.close_info.reason = body[2:].decode(errors="replace")
                if not self._close_sent:
                    self._close_sent = True
                    self._write(client_frame(body[:2], 0x8))
                if not self.closed.done():
                    self.closed.set_result(self.close_info)
            pos = end
        if pos:
            del buf[:pos]

    def _check_handshake(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        accept = base64.b64encode(hashlib.sha1(self._key + _GUID).digest())
        if not lines[0].startswith(b"HTTP/1.1 101"):
            self._fail(f"handshake refused: {lines[0].decode(errors='replace')}")
        elif headers.get(b"sec-websocket-accept") != accept:
            self._fail("bad Sec-WebSocket-Accept")
        elif self._subprotocol and headers.get(b"sec-websocket-protocol") != \
                self._subprotocol.encode():
            self._fail(f"subprotocol {self._subprotocol} not accepted")
        else:
            self._open = True
            self.handshake.set_result(None)

    def _fail(self, why: str) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionError(why))
        self.close_info.reason = why
        if self.transport is not None:
            self.transport.close()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # -- API ---------------------------------------------------------------------

    def _queue_payload(self, buf: Buffer, start: int, end: int) -> None:
        obj = orjson.loads(memoryview(buf)[start:end])
        for item in obj if isinstance(obj, list) else [obj]:
            self._inbox.put_nowait(item)

    def send_json(self, obj: Any) -> None:
        self._write(client_frame(orjson.dumps(obj)))

    def send_text(self, payload: bytes) -> None:
        self._write(client_frame(payload))

    def send_raw(self, frames: bytes) -> None:
        """Write already framed bytes (several client frames at once)."""
        self._write(frames)

    async def recv(self) -> Any:
        """The next queued server frame (set-up only, before on_payload is replaced)."""
        async with asyncio.timeout(SETUP_TIMEOUT):
            return await self._inbox.get()

    async def expect(self, kind: str) -> dict[str, Any]:
        """Wait for a frame of one type; an error frame raises."""
        while True:
            frame = await self.recv()
            if isinstance(frame, dict):
                if frame.get("type") == kind:
                    return frame
                if frame.get("type") == "error":
                    raise RuntimeError(f"server error while waiting for {kind}: {frame}")

    async def close(self) -> None:
        """Send a close frame, wait briefly for the server to end TCP, then drop it."""
        if self.transport is None or self.transport.is_closing():
            return
        if not self._close_sent:
            self._close_sent = True
            self._write(client_frame((1000).to_bytes(2, "big"), 0x8))
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.shield(self.closed)
        except TimeoutError:
            pass
        finally:
            self.transport.close()
