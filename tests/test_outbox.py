"""The outbox: bound, coalescing, and the direct/writer hand-over keeping order."""

from __future__ import annotations

import asyncio

import orjson

from roomlog.outbox import Flusher, Outbox
from roomlog.protocol import Format


def frames(payloads: list[bytes]) -> list[int]:
    out: list[int] = []
    for payload in payloads:
        decoded = orjson.loads(payload)
        out += decoded if isinstance(decoded, list) else [decoded]
    return out


class Socket:
    """A transport whose writability the test controls."""

    def __init__(self) -> None:
        self.writable = True
        self.wire: list[bytes] = []
        self.resumed = asyncio.Event()

    def direct(self, payload: bytes) -> bool:
        if not self.writable:
            return False
        self.wire.append(payload)
        return True

    async def send(self, payload: bytes) -> None:  # the awaited path waits to be writable
        await self.resumed.wait()
        self.wire.append(payload)


def make(socket: Socket, **limits: int) -> tuple[Outbox, list[bool]]:
    overflowed: list[bool] = []
    outbox = Outbox(Format.JSON, max_frames=limits.get("frames", 100),
                    max_bytes=limits.get("bytes", 10_000), coalesce=limits.get("coalesce", 4),
                    on_overflow=lambda: overflowed.append(True), direct=socket.direct,
                    flusher=Flusher())
    return outbox, overflowed


async def test_one_flush_per_loop_turn_coalesces() -> None:
    socket = Socket()
    outbox, _ = make(socket)
    for i in range(6):
        outbox.put(b"%d" % i)
    assert socket.wire == []  # nothing written until the turn ends
    await asyncio.sleep(0)
    assert socket.wire == [b"[0,1,2,3]", b"[4,5]"]  # at most `coalesce` per frame
    await asyncio.wait_for(outbox.drained(), 1)


async def test_unwritable_socket_hands_over_to_the_writer_in_order() -> None:
    socket = Socket()
    outbox, _ = make(socket, coalesce=100)
    writer = asyncio.create_task(outbox.run(socket.send))
    outbox.put(b"1")
    await asyncio.sleep(0)
    socket.writable = False
    outbox.extend([b"2", b"3"])
    await asyncio.sleep(0)  # direct refused: the writer now waits for the socket
    outbox.put(b"4")  # queued behind the writer's send, not written around it
    await asyncio.sleep(0)
    socket.writable = True
    outbox.put(b"5")
    socket.resumed.set()
    await asyncio.wait_for(outbox.drained(), 1)
    assert frames(socket.wire) == [1, 2, 3, 4, 5]
    writer.cancel()


async def test_overflow_closes_and_drops_the_backlog() -> None:
    socket = Socket()
    socket.writable = False
    outbox, overflowed = make(socket, frames=3)
    outbox.extend([b"1", b"2", b"3"])
    assert not overflowed
    outbox.put(b"4")
    assert overflowed == [True] and outbox.closed and len(outbox) == 0
    outbox.put(b"5")  # ignored once closed
    assert len(outbox) == 0


async def test_byte_bound_and_fits() -> None:
    socket = Socket()
    socket.writable = False
    outbox, overflowed = make(socket, bytes=10)
    assert outbox.fits(2, 10) and not outbox.fits(1, 11)
    outbox.put(b"12345")
    assert not outbox.fits(1, 6)
    outbox.put(b"123456")
    assert overflowed


async def test_without_direct_send_the_writer_task_drains() -> None:
    wire: list[bytes] = []

    async def send(payload: bytes) -> None:
        wire.append(payload)

    outbox = Outbox(Format.JSON, max_frames=10, max_bytes=1000, coalesce=10,
                    on_overflow=lambda: None)
    writer = asyncio.create_task(outbox.run(send))
    outbox.extend([b"1", b"2"])
    await asyncio.wait_for(outbox.drained(), 1)
    assert wire == [b"[1,2]"]
    outbox.close()
    await asyncio.wait_for(writer, 1)


async def test_outboxes_with_the_same_frames_share_one_payload() -> None:
    flusher = Flusher()
    sockets = [Socket() for _ in range(3)]
    outboxes = [Outbox(Format.JSON, max_frames=10, max_bytes=1000, coalesce=10,
                       on_overflow=lambda: None, direct=s.direct, flusher=flusher)
                for s in sockets]
    first, middle, other, last = b"1", b"2", b"9", b"3"
    outboxes[0].extend([first, middle, last])
    outboxes[1].extend([first, middle, last])
    outboxes[2].extend([first, other, last])  # same ends and length, another middle
    await asyncio.sleep(0)
    assert sockets[0].wire == [b"[1,2,3]"] and sockets[2].wire == [b"[1,9,3]"]
    assert sockets[0].wire[0] is sockets[1].wire[0]  # built once, written twice


async def test_an_offer_to_an_idle_outbox_is_written_at_once_and_never_jumps_the_queue() -> None:
    socket = Socket()
    outbox, _ = make(socket, coalesce=100)
    writer = asyncio.create_task(outbox.run(socket.send))
    built: list[int] = []

    def payload(data: bytes) -> bytes:
        built.append(1)
        return data

    outbox.offer([b"1", b"2"], 2, lambda: payload(b"[1,2]"))
    assert socket.wire == [b"[1,2]"] and len(outbox) == 0  # at once, not at the turn's end
    outbox.put(b"3")  # queued for the flush at the end of the turn ...
    outbox.offer([b"4"], 1, lambda: payload(b"4"))  # ... so this one queues behind it
    assert len(built) == 1
    socket.writable = False
    await asyncio.sleep(0)
    outbox.offer([b"5"], 1, lambda: payload(b"5"))  # the writer waits: queued, in order
    socket.writable = True
    socket.resumed.set()
    await asyncio.wait_for(outbox.drained(), 1)
    assert frames(socket.wire) == [1, 2, 3, 4, 5]
    writer.cancel()
