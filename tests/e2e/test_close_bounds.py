"""A client that stops reading is really gone, and a refused frame is named (issue
#10, section 4).

* After the server decides to close a WebSocket (4008 for a slow reader), the close
  frame is queued behind the backlog at once; a client that reads again within
  ``ws_close_timeout`` gets its backlog and then 4008.
* A client that does not read is aborted after ``ws_close_timeout``: the server's
  side of its TCP connection is gone (file descriptor and buffers freed).
* A frame above ``max_frame_bytes`` reaches the client as close 1009, not as a reset
  (1006), which a client would answer by resending the frame forever.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from roomlog.identity import Role
from tests.e2e.conftest import MakeServer
from tests.e2e.support import RawWs, Server, bearer, issue_token, open_client, unique_room

PAD = "x" * 4000


def server_holds(server_port: int, client_port: int) -> bool:
    """Whether the server's end of the TCP connection from ``client_port`` exists
    (any state but TIME_WAIT and CLOSE). Closed without a reset, a socket whose
    client does not read stays in FIN_WAIT1, orphaned, holding its send buffer."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if (int(local.rsplit(":", 1)[1], 16) == server_port
                    and int(remote.rsplit(":", 1)[1], 16) == client_port
                    and state not in ("06", "07")):  # TIME_WAIT, CLOSE
                return True
    return False


async def drop_slow_reader(srv: Server, http: httpx.AsyncClient) -> tuple[RawWs, str]:
    """A subscriber that stops reading, flooded until the server drops it (its
    subscription goes); it and its room."""
    room = unique_room()
    slow = await RawWs.open(srv.port, rcvbuf=4096)
    await slow.send_text({"type": "connect", "token": issue_token("slow")})
    await slow.expect("connected")
    await slow.send_text({"type": "subscribe", "room": room})
    await slow.expect("subscribed")
    pub = await open_client(srv.ws_url, user="backend", role=Role.SERVICE)

    async def subscribers() -> int:
        reply = await http.get(f"{srv.base}/v1/rooms/{room}", headers=bearer())
        return int(reply.json()["subscribers"])

    sent = 0
    while await subscribers():
        assert sent < 20_000, "the slow reader was never dropped"
        await pub.publish_many(room, [{"pad": PAD} for _ in range(20)])
        sent += 20
    await pub.close()
    return slow, room


async def test_a_client_that_stops_reading_is_aborted_after_the_close_timeout(
    make_server: MakeServer, http: httpx.AsyncClient,
) -> None:
    srv = await make_server(outbox_max_messages=100, outbox_max_bytes=200_000,
                            ws_close_timeout=1, publish_rate=100_000, publish_burst=100_000,
                            ping_interval=600)
    slow, _ = await drop_slow_reader(srv, http)
    port = slow.sock.getsockname()[1]
    deadline = time.monotonic() + 30  # an upper bound for a broken server only
    while server_holds(srv.port, port):
        assert time.monotonic() < deadline, "the server still holds the slow client's socket"
        await asyncio.sleep(0.1)
    slow.close()


async def test_a_slow_client_that_reads_again_gets_its_backlog_then_4008(
    make_server: MakeServer, http: httpx.AsyncClient,
) -> None:
    srv = await make_server(outbox_max_messages=100, outbox_max_bytes=200_000,
                            ws_close_timeout=60, publish_rate=100_000, publish_burst=100_000,
                            ping_interval=600)  # it answers no pings: only 4008 may end it
    slow, _ = await drop_slow_reader(srv, http)
    await asyncio.sleep(3)  # a phone back from a tunnel: longer than any flush wait
    frames, code = await slow.until_closed(within=60)
    slow.close()
    assert code == 4008
    seqs = [f["seq"] for f in frames if f["type"] == "message"]
    assert seqs == list(range(1, len(seqs) + 1)) and [f for f in frames
                                                     if f["type"] != "message"] == []


async def test_an_oversize_frame_gets_close_1009(server: Server) -> None:
    for _ in range(8):
        client = await open_client(server.ws_url, user="big")
        await client.send_raw("x" * 8_388_608)  # still sending when the server refuses
        assert await client.closed() == 1009


async def test_a_client_that_stops_reading_and_answering_pings_is_gone(
    make_server: MakeServer, http: httpx.AsyncClient,
) -> None:
    """Its backlog stays under the outbox bound (it is not dropped with 4008), but it
    answers no ping: its session ends (the subscription goes) and its socket is reset."""
    srv = await make_server(ping_interval=1, ping_timeout=1, ws_close_timeout=1)
    room = unique_room()
    slow = await RawWs.open(srv.port, rcvbuf=4096)  # answers no pings, reads nothing
    await slow.send_text({"type": "connect", "token": issue_token("silent")})
    await slow.expect("connected")
    await slow.send_text({"type": "subscribe", "room": room})
    await slow.expect("subscribed")
    pub = await open_client(srv.ws_url, user="backend", role=Role.SERVICE)
    await pub.publish_many(room, [{"pad": PAD} for _ in range(100)])  # fills its socket
    port = slow.sock.getsockname()[1]

    async def subscribers() -> int:
        reply = await http.get(f"{srv.base}/v1/rooms/{room}", headers=bearer())
        return int(reply.json()["subscribers"])

    deadline = time.monotonic() + 30  # an upper bound for a broken server only
    while await subscribers() or server_holds(srv.port, port):
        assert time.monotonic() < deadline, "the silent client is still held"
        await asyncio.sleep(0.2)
    slow.close()
    await pub.close()
