"""Command benchmark of a queue room: guests vote while the DJ works the queue.

It starts the hub pinned to core 0 (``taskset -c 0``) on PostgreSQL (or
SQLite, or both: ``--db``), pins itself (the load generator) to core 1, and
opens one WebSocket per guest (``--guests``, role guest) plus one for the DJ
(role dj). Every phase uses a fresh room ``queue:bench-<phase>``:

set-up (not measured, except as the ``submit`` row)
    The DJ's first command, ``queue.settings``, claims the room and loosens its
    rules to the most they allow (request_cap_per_hour 1000,
    max_active_per_guest 50, submit_rate 60). Every guest subscribes to the
    room. Then ``--submitters`` guests (default: all; at most 1000, the room's
    hourly cap) submit one request each, ``--window`` at a time; the first
    room's burst is reported as the ``submit`` row (figures over the burst).
throughput
    Closed loop: ``--window`` guest commands are kept in flight (each answer
    sends the next, from a random idle guest: a guest has one command in flight
    at most) for ``--warmup`` + ``--duration`` seconds.
rate
    Open loop: ``--rate`` commands/s in all, sent on a clock whatever the
    answers do (``--rate`` minus ``--dj-rate`` from guests). A command due
    while every guest waits for an answer is not sent: the hub fell behind
    the offered rate, and the phase says how many.

The command mix, since the room takes few submissions (submit_rate, the
hourly cap): guests vote for random requests (never their own, never twice:
the generator tracks its votes from the acks) and unvote them, holding about
``--votes-per-guest`` votes each; meanwhile the DJ, one command at a time at
``--dj-rate``/s, accepts the most-voted pending request, and every tenth
command plays the head of the queue, every fifth (of the other ones) reorders
it. Rejections are counted per command and error code: a CONFLICT (double
vote) means the tracking is wrong; an INVALID_TRANSITION may come from a vote
racing the DJ's play of that request.

Figures, over each measured window: commands/s answered (ack or error) and
how many were ok or rejected; round trip (send to ack/error, of the commands
sent in the window) p50/p99/max; and the fan-out -- every guest is subscribed,
so each event is delivered to every guest: events delivered/s (summed over
guests), messages per WebSocket frame (frames carrying messages) and bytes per
message. CPU of the server, of the generator and of all ``postgres``
processes (% of one core, /proc/<pid>/stat), how busy each core was
(softirq included: loopback TCP). After each phase the generator waits for
every answer, then checks that each guest received every event from its
subscription to the room's head, gaplessly (a problem otherwise: ok = NO).

The target: at least 1,000 commands/s into one room on PostgreSQL with p99
round trip under 100 ms, judged on the ``rate`` phase (default 1,000/s).

Keeping the generator cheaper than the server
---------------------------------------------
Events of a queue room carry the whole pending order, so at 500 pending
requests each one is about 3.6 KB and a guest receives megabytes per second.
Guests therefore never parse a frame of messages: they read the seq of its
first and last message (``find`` of the room's message prefix from each end:
the hub delivers each subscriber contiguous seqs, which the generator checks
from frame to frame) and count last - first + 1. Only a guest with a command in
flight searches the frame for its command's id (which starts with a byte no
event holds, so the search is a memchr); then it parses just the ack object.
``--sample`` guests (spread evenly) also count the messages of every frame
with ``bytes.count`` and report any mismatch. The generator runs on
uvloop. How it was checked not to be the bottleneck (2 cores, 500 guests,
other work on the machine stopped):

* the hub's core saturates first: in the throughput phase server-cpu was
  84-98% of core 0 while the generator used 38-47% of core 1 (a phase whose
  generator core passes 85% is marked GEN);
* ``gen-lag`` is the p99 delay of the generator's own event loop (a 5 ms
  sleeper): an answer can wait that long in the socket before it is timed.
  It stayed at 2-5 ms against round trips of 150-740 ms (p50), also when the
  hub fell behind the rate phase and every guest was waiting;
* its ceiling is above what the hub reaches: with ``--submitters 50`` (events
  of ~360 B) it took 500,000 deliveries/s and 1,000 commands/s at 30-47% of
  its core; at 500 pending (~3.5 KB events) 390,000 deliveries/s (1.4 GB/s)
  at 47%. A slow reader costs the hub too (its sockets fill and the outbox
  falls back to the writer task): with a substring search for the answer
  instead of the memchr, the generator reached 77-88% in the rate phase and
  the hub on SQLite answered 600/s instead of 770/s;
* the ``--sample`` guests' full counts never disagreed with the seq counts,
  and every phase ended with every guest at the room's head, gaplessly.

Results depend on the room: at 500 pending requests the events are ten times
larger than at 50, and the hub's fan-out costs follow (see the B/msg column).

Everything runs on 127.0.0.1 only; each run is bounded (``--max-time``) and
stops by itself; the server is stopped and the PostgreSQL database dropped on
exit, error or Ctrl-C.

Example: ``python loadtest/queue.py --db both`` (about 70 seconds).
"""

from __future__ import annotations

import sys

# This file shares its name with the standard library's ``queue``, which asyncio's thread
# pool imports: put this folder after the standard library on the path.
sys.path.append(sys.path.pop(0))

import argparse
import asyncio
import contextlib
import gc
import os
import random
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from common import (
    MESSAGE_MARK,
    Buffer,
    CoreMeter,
    CpuMeter,
    RawClient,
    client_frame,
    percentile,
    wait_quiet,
)
from report import GEN_BOUND, fmt_ms, render_table
from servers import (
    HOST,
    PgDatabase,
    Server,
    free_port,
    hub_argv,
    hub_env,
    hub_token,
    kill_children,
    migrate,
    track,
    untrack,
)

SUBPROTOCOL = "realtime.v1.json"
QUIET_BUSY = 15.0  # % of a core: above this before a target, something else is running
# The room's rules, loosened to the most queue_args.SETTINGS_RANGES allows.
LOOSE_SETTINGS = {"request_cap_per_hour": 1000, "max_active_per_guest": 50, "submit_rate": 60}
TARGET_RATE = 1000.0  # commands/s into one room on PostgreSQL ...
TARGET_P99_MS = 100.0  # ... with p99 round trip under this
ANSWER_TIMEOUT = 30.0  # seconds for a set-up command's answer

ACK_HEAD = b'{"type":"ack",'  # how an ack starts: its "id" follows at once
# Every guest command id starts with this byte, which no event of the benchmark holds: a
# guest finds its answer in a frame with memchr (tens of GB/s) instead of a substring search.
ID_MARK = b"~"
ID_KEY = b'"id":"'
DUPLICATE_KEY = b'"duplicate":'  # the last key of an ack (its result holds no braces)

# Command kinds (indexes into NAMES)
SUBMIT, VOTE, UNVOTE, DJ = 0, 1, 2, 3
NAMES = ["request.submit", "request.vote", "request.unvote", "dj"]


def say(text: str) -> None:
    print(text, flush=True)


# ---------------------------------------------------------------------------
# Round trips


@dataclass
class Rtt:
    """Round trips of commands sent in [lo, hi) (perf_counter_ns)."""

    lo: int = 1 << 62
    hi: int = 1 << 62
    values: list[int] = field(default_factory=list)

    def arm(self) -> None:
        self.lo, self.hi, self.values = time.perf_counter_ns(), 1 << 62, []

    def disarm(self) -> None:
        self.hi = time.perf_counter_ns()

    def add(self, sent: int, now: int) -> None:
        if self.lo <= sent < self.hi:
            self.values.append(now - sent)


async def loop_lag(lags: list[int], period: float = 0.005) -> None:
    """How late the generator's event loop wakes a sleeper (ns), every ``period`` s: when
    it is busy, answers wait in the socket and round trips grow on the generator's side."""
    wanted = int(period * 1e9)
    while True:
        t = time.perf_counter_ns()
        await asyncio.sleep(period)
        lags.append(max(0, time.perf_counter_ns() - t - wanted))


# ---------------------------------------------------------------------------
# Guests: one connection each, subscribed to the room, one command in flight at most


class Guest:
    __slots__ = ("busy", "bytes", "client", "frames", "gaps", "ident", "index", "kind", "last_seq",
                 "load", "messages", "miscounts", "needle", "own", "room_messages", "sampled",
                 "sent_ns", "sub_seq", "subscribed", "target", "unexpected", "user", "voted")

    def __init__(self, index: int, client: RawClient, sampled: bool) -> None:
        self.index = index
        self.user = f"guest-{index}"
        self.client = client
        self.sampled = sampled  # count every frame's messages too, to check the seq count
        self.load: Load | None = None
        self.own = 0  # number of this guest's request in the current room (0: none)
        self.voted: set[int] = set()
        self.busy = False
        self.kind = 0
        self.target = 0
        self.ident = b""
        self.needle = b""  # '"id":"<ident>"': in its ack or error, in no message
        self.sent_ns = 0
        self.messages = 0  # all rooms, for the measured windows
        self.frames = 0  # frames carrying messages
        self.bytes = 0
        self.room_messages = 0  # since the subscription to the current room
        self.sub_seq = -1  # the room's seq at subscription; -1 until subscribed
        self.last_seq = -1  # seq of the last message received
        self.gaps = 0
        self.miscounts = 0
        self.subscribed: asyncio.Future[int] | None = None
        self.unexpected: list[Any] = []
        client.on_payload = self.on_payload

    def enter(self, load: Load) -> None:
        """Start over in a new room."""
        self.load = load
        self.own = 0
        self.voted = set()
        self.busy = False
        self.room_messages = 0
        self.sub_seq = self.last_seq = -1

    def on_payload(self, buf: Buffer, start: int, end: int) -> None:
        """Count messages by their first and last seq; find this guest's answer by its id."""
        now = time.perf_counter_ns()
        load = self.load
        if load is None or self.subscribed is not None:  # set-up: parse everything
            self._parse(buf, start, end, now, True)
            return
        prefix = load.message_prefix
        first = buf.find(prefix, start, end)
        n = 0
        if first >= 0:
            i = first + len(prefix)
            seq0 = int(buf[i : buf.find(b",", i, end)])
            last = buf.rfind(prefix, first, end)
            seq1 = seq0
            if last != first:
                i = last + len(prefix)
                seq1 = int(buf[i : buf.find(b",", i, end)])
            n = seq1 - seq0 + 1
            if seq0 != self.last_seq + 1:
                self.gaps += 1
            self.last_seq = seq1
            self.messages += n
            self.room_messages += n
            self.frames += 1
            self.bytes += end - start
            if self.sampled and buf.count(MESSAGE_MARK, start, end) != n:
                self.miscounts += 1
        if self.busy:
            at = buf.find(ID_MARK, start, end)
            while at >= 0 and not buf.startswith(self.needle, at - len(ID_KEY)):
                at = buf.find(ID_MARK, at + 1, end)  # not ours (never seen): look further
            if at >= 0:
                at -= len(ID_KEY)
                head = at - len(ACK_HEAD)
                if head >= start and buf[head:at] == ACK_HEAD:
                    close = buf.find(b"}", buf.find(DUPLICATE_KEY, at, end), end)
                    load.guest_answered(self, orjson.loads(memoryview(buf)[head : close + 1]),
                                        now)
                else:  # an error frame: rare, parse it all
                    self._parse(buf, start, end, now, False)
                return
        if not n:
            self._parse(buf, start, end, now, False)

    def _parse(self, buf: Buffer, start: int, end: int, now: int, count: bool) -> None:
        """The slow path: set-up frames, errors, anything unexpected."""
        obj = orjson.loads(memoryview(buf)[start:end])
        for item in obj if isinstance(obj, list) else (obj,):
            kind = item.get("type")
            if kind == "message":
                if count:
                    if item["seq"] != self.last_seq + 1:
                        self.gaps += 1
                    self.last_seq = item["seq"]
                    self.messages += 1
                    self.room_messages += 1
                continue
            if kind == "subscribed" and self.subscribed is not None:
                self.sub_seq = self.last_seq = int(item["seq"])
                if not self.subscribed.done():
                    self.subscribed.set_result(self.sub_seq)
                self.subscribed = None
            elif kind in ("ack", "error") and self.busy and \
                    item.get("id", "").encode() == self.ident:
                assert self.load is not None
                self.load.guest_answered(self, item, now)
            elif kind == "unsubscribed":
                pass
            else:
                if kind == "error" and self.subscribed is not None and \
                        not self.subscribed.done():
                    self.subscribed.set_exception(RuntimeError(f"subscribe failed: {item}"))
                    self.subscribed = None
                self.unexpected.append(item)


# ---------------------------------------------------------------------------
# The DJ: one command at a time, parses every frame (it is not subscribed)


class Dj:
    def __init__(self, client: RawClient) -> None:
        self.client = client
        self.user = "dj-bench"
        self._prefix = secrets.token_hex(4)
        self._count = 0
        self._waiting: dict[str, asyncio.Future[tuple[dict[str, Any], int]]] = {}
        self._subscribed: asyncio.Future[int] | None = None
        self.unexpected: list[Any] = []
        client.on_payload = self.on_payload

    def on_payload(self, buf: Buffer, start: int, end: int) -> None:
        now = time.perf_counter_ns()
        obj = orjson.loads(memoryview(buf)[start:end])
        for item in obj if isinstance(obj, list) else (obj,):
            kind = item.get("type")
            waiter = self._waiting.pop(item.get("id", ""), None)
            if waiter is not None:
                if not waiter.done():
                    waiter.set_result((item, now))
            elif kind == "subscribed" and self._subscribed is not None:
                if not self._subscribed.done():
                    self._subscribed.set_result(int(item["seq"]))
            elif kind not in ("message", "unsubscribed"):
                self.unexpected.append(item)

    async def command(self, room: str, name: str, args: dict[str, Any]
                      ) -> tuple[dict[str, Any], int, int]:
        """Send one command; (its ack or error, send time, receipt time)."""
        self._count += 1
        ident = f"{self._prefix}-{self._count}"
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[ident] = waiter
        sent = time.perf_counter_ns()
        self.client.send_json({"type": "command", "room": room, "name": name, "args": args,
                               "id": ident})
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT):
                item, now = await waiter
        finally:
            self._waiting.pop(ident, None)
        return item, sent, now

    async def head(self, room: str) -> int:
        """The room's head: subscribe (its state comes with its seq), then unsubscribe."""
        self._subscribed = asyncio.get_running_loop().create_future()
        self.client.send_json({"type": "subscribe", "room": room, "id": "head"})
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT):
                return await self._subscribed
        finally:
            self._subscribed = None
            self.client.send_json({"type": "unsubscribe", "room": room})


# ---------------------------------------------------------------------------
# The load on one room


class Load:
    """Sends the commands of one room and keeps the generator's view of it."""

    def __init__(self, room: str, args: argparse.Namespace, guests: list[Guest]) -> None:
        self.room = room
        self.args = args
        self.guests = guests
        r = room.encode()
        self.message_prefix = b'{"type":"message","room":"' + r + b'","seq":'
        head = b'{"type":"command","room":"' + r + b'","name":"'
        self.templates = [
            head + b'request.submit","args":{"song_id":"song-%d","title":"Song number %d",'
                   b'"artist":"Artist %d"},"id":"%s"}',
            head + b'request.vote","args":{"request_id":"r%d"},"id":"%s"}',
            head + b'request.unvote","args":{"request_id":"r%d"},"id":"%s"}',
        ]
        self.prefix = ID_MARK + secrets.token_hex(4).encode() + b"-"
        self.count = 0
        # The room as the generator sees it (only the DJ changes statuses).
        self.requests: list[int] = []  # request numbers
        self.owner: dict[int, Guest] = {}
        self.votable = bytearray(args.submitters + 2)  # by request number: pending/accepted
        self.votes: dict[int, int] = {}
        self.pending: set[int] = set()
        self.queue: list[int] = []  # accepted, in order
        self.playing = 0
        # Counters
        self.sent = 0
        self.answered = 0
        self.ok = 0
        self.rejected: Counter[tuple[str, str]] = Counter()
        self.skipped = 0  # commands due that no idle guest could make (generator's fault)
        self.all_busy = 0  # commands due while every guest waited for an answer
        self.rtt = Rtt()
        self.dj_rtt = Rtt()
        self.idle: list[Guest] = []
        self.todo: list[Guest] = []  # guests still to submit
        self.refill = False
        self.feed: Callable[[], bool] = self.feed_vote

    # -- sending -------------------------------------------------------------------

    def send(self, g: Guest, kind: int, target: int) -> None:
        self.count += 1
        ident = self.prefix + b"%d" % self.count
        g.ident, g.needle = ident, ID_KEY + ident + b'"'
        g.kind, g.target, g.busy = kind, target, True
        if kind == SUBMIT:
            payload = self.templates[SUBMIT] % (target, target, target % 97, ident)
        else:
            payload = self.templates[kind] % (target, ident)
        self.sent += 1
        g.sent_ns = time.perf_counter_ns()
        g.client.send_raw(client_frame(payload))

    def feed_submit(self) -> bool:
        """Submit mode: the next guest that has not submitted yet."""
        if not self.todo:
            return False
        g = self.todo.pop()
        self.send(g, SUBMIT, g.index)
        return True

    def feed_vote(self) -> bool:
        """Vote mode: a random idle guest votes or unvotes."""
        idle = self.idle
        if not idle:
            self.all_busy += 1
            return False
        for _ in range(4):
            if not idle:
                break
            i = random.randrange(len(idle))
            g = idle[i]
            idle[i] = idle[-1]
            idle.pop()
            choice = self.choose(g)
            if choice is not None:
                self.send(g, *choice)
                return True
            idle.append(g)
        self.skipped += 1
        return False

    def choose(self, g: Guest) -> tuple[int, int] | None:
        voted, votable = g.voted, self.votable
        if voted and (len(voted) >= self.args.votes_per_guest or random.random() < 0.5):
            r = random.choice(tuple(voted))
            if votable[r]:
                return UNVOTE, r
            voted.discard(r)  # played meanwhile: the vote can no longer be taken back
        reqs = self.requests
        for _ in range(8):
            r = reqs[random.randrange(len(reqs))]
            if r != g.own and votable[r] and r not in voted:
                return VOTE, r
        return None

    # -- answers -------------------------------------------------------------------

    def guest_answered(self, g: Guest, item: dict[str, Any], now: int) -> None:
        kind, target = g.kind, g.target
        g.busy = False
        self.answered += 1
        self.rtt.add(g.sent_ns, now)
        if item.get("type") == "ack":
            self.ok += 1
            result = item["result"]
            if kind == VOTE:
                g.voted.add(target)
                self.votes[target] = result["votes"]
            elif kind == UNVOTE:
                g.voted.discard(target)
                self.votes[target] = result["votes"]
            else:
                self.add_request(g, int(result["request_id"][1:]))
        else:
            code = str(item.get("code"))
            self.rejected[NAMES[kind], code] += 1
            if kind == VOTE and code == "CONFLICT":
                g.voted.add(target)
            elif kind == UNVOTE and code in ("CONFLICT", "INVALID_TRANSITION"):
                g.voted.discard(target)
        if kind != SUBMIT:
            self.idle.append(g)
        if self.refill:
            self.feed()  # if it cannot, the window shrinks by one (counted as skipped)

    def add_request(self, g: Guest, number: int) -> None:
        g.own = number
        self.owner[number] = g
        self.requests.append(number)
        if number >= len(self.votable):
            self.votable.extend(bytes(number + 1 - len(self.votable)))
        self.votable[number] = 1
        self.votes[number] = 0
        self.pending.add(number)

    # -- the DJ ----------------------------------------------------------------------

    def dj_action(self, i: int) -> tuple[str, dict[str, Any]] | None:
        """The DJ's i-th command, applied to the generator's view as it is sent."""
        k = i % 10
        if k == 9 and self.queue:
            r = self.queue.pop(0)
            self.votable[r] = 0
            self.playing = r
            return "request.play", {"request_id": f"r{r}"}
        if k in (4, 7) and len(self.queue) >= 2:
            r = random.choice(self.queue)
            position = random.randint(1, len(self.queue))
            self.queue.remove(r)
            self.queue.insert(position - 1, r)
            return "queue.reorder", {"request_id": f"r{r}", "position": position}
        if self.pending:
            votes = self.votes
            r = max(self.pending, key=lambda n: (votes[n], -n))
            self.pending.discard(r)
            self.queue.append(r)
            return "request.accept", {"request_id": f"r{r}"}
        return None

    def dj_answered(self, name: str, item: dict[str, Any], sent: int, now: int) -> None:
        self.answered += 1
        self.rtt.add(sent, now)
        self.dj_rtt.add(sent, now)
        if item.get("type") == "ack":
            self.ok += 1
        else:
            self.rejected[name, str(item.get("code"))] += 1


# ---------------------------------------------------------------------------
# Results


@dataclass
class Result:
    db: str
    phase: str
    elapsed: float = 0.0
    sent: float = 0.0  # commands/s sent
    answered: float = 0.0  # commands/s answered (ack or error)
    ok: int = 0
    rejected: int = 0
    rejections: dict[str, int] = field(default_factory=dict)  # "name code" -> count
    p50: float | None = None  # milliseconds
    p99: float | None = None
    max: float | None = None
    samples: int = 0
    dj_p50: float | None = None
    dj_p99: float | None = None
    lag_p99: float | None = None  # the generator's event-loop lag, milliseconds
    deliveries: float = 0.0  # per second
    per_frame: float = 0.0
    bytes_per_msg: float = 0.0
    server_cpu: float = 0.0
    server_sys: float = 0.0
    gen_cpu: float = 0.0
    db_cpu: float | None = None
    server_core: float = 0.0
    gen_core: float = 0.0
    softirq: float = 0.0
    steal: float = 0.0
    offered: float | None = None  # the rate phase's target commands/s
    window: int = 0  # commands kept in flight (throughput phase)
    unsent: int = 0  # commands due while every guest waited for an answer: hub behind
    problems: list[str] = field(default_factory=list)


def verdict(r: Result) -> str:
    if r.problems:
        return "NO"
    return "GEN" if r.gen_core > GEN_BOUND else "yes"


def describe(r: Result) -> str:
    rejections = ", ".join(f"{k} x{v}" for k, v in sorted(r.rejections.items())) or "none"
    text = (f"{r.phase}: {r.answered:,.0f} commands/s answered ({r.sent:,.0f}/s sent; "
            f"{r.ok:,} ok, {r.rejected:,} rejected: {rejections}); round trip p50 "
            f"{fmt_ms(r.p50)} p99 {fmt_ms(r.p99)} max {fmt_ms(r.max)} ({r.samples} samples; "
            f"DJ's p50 {fmt_ms(r.dj_p50)} p99 {fmt_ms(r.dj_p99)}; generator's loop lag p99 "
            f"{fmt_ms(r.lag_p99)}); "
            f"{r.deliveries:,.0f} deliveries/s, {r.per_frame:.1f} msgs/frame, "
            f"{r.bytes_per_msg:,.0f} B/msg; cpu server {r.server_cpu:.0f}% "
            f"(sys {r.server_sys:.0f}%) gen {r.gen_cpu:.0f}%")
    if r.db_cpu is not None:
        text += f" postgres {r.db_cpu:.0f}%"
    if r.unsent:
        text += (f"; {r.unsent:,} commands due were not sent: every guest was waiting for an "
                 f"answer (the hub fell behind {r.offered or 0:,.0f}/s)")
    return text + (f"; cores busy: server's {r.server_core:.0f}% (softirq {r.softirq:.0f}%), "
                   f"generator's {r.gen_core:.0f}%; steal {r.steal:.1f}%")


def table(results: list[Result]) -> str:
    rows = [["db", "phase", "cmds/s", "ok", "rejected", "rtt-p50", "rtt-p99", "rtt-max",
             "deliveries/s", "msgs/frame", "B/msg", "server-cpu", "gen-cpu", "pg-cpu", "core0",
             "core1", "gen-lag", "ok?"]]
    for r in results:
        rows.append([r.db, r.phase, f"{r.answered:,.0f}", f"{r.ok:,}", f"{r.rejected:,}",
                     fmt_ms(r.p50), fmt_ms(r.p99), fmt_ms(r.max), f"{r.deliveries:,.0f}",
                     f"{r.per_frame:.1f}", f"{r.bytes_per_msg:,.0f}", f"{r.server_cpu:.0f}%",
                     f"{r.gen_cpu:.0f}%", "-" if r.db_cpu is None else f"{r.db_cpu:.0f}%",
                     f"{r.server_core:.0f}%", f"{r.gen_core:.0f}%", fmt_ms(r.lag_p99),
                     verdict(r)])
    return render_table(rows, left=2)


def target_lines(results: list[Result]) -> list[str]:
    lines = []
    for r in results:
        if r.phase == "throughput":
            lines.append(f"{r.db}: {r.answered:,.0f} commands/s into one room with "
                         f"{r.window} in flight, p99 {fmt_ms(r.p99)} (throughput: closed "
                         f"loop; hub core {r.server_core:.0f}% busy)")
    for r in (r for r in results if r.phase == "rate"):
        offered = r.offered or 0.0
        kept_up = r.sent >= 0.99 * offered and r.answered >= 0.99 * r.sent and not r.problems
        figures = (f"{r.answered:,.0f}/s answered, {r.sent:,.0f}/s sent of {offered:,.0f}/s "
                   f"offered, p99 {fmt_ms(r.p99)}")
        if r.db == "postgres":
            ok = (offered >= TARGET_RATE and kept_up and r.p99 is not None
                  and r.p99 < TARGET_P99_MS)
            lines.append(f"target >= {TARGET_RATE:,.0f} commands/s into one room with p99 < "
                         f"{TARGET_P99_MS:.0f} ms on PostgreSQL: {'MET' if ok else 'NOT MET'} "
                         f"({figures})")
        else:
            lines.append(f"{r.db}: {figures} (rate: open loop)")
    return lines


# ---------------------------------------------------------------------------
# One server


@dataclass
class Counts:
    t: float
    sent: int
    answered: int
    ok: int
    rejected: Counter[tuple[str, str]]
    messages: int
    frames: int
    bytes: int


def counts(load: Load, guests: list[Guest]) -> Counts:
    return Counts(time.perf_counter(), load.sent, load.answered, load.ok, load.rejected.copy(),
                  sum(g.messages for g in guests), sum(g.frames for g in guests),
                  sum(g.bytes for g in guests))


class Bench:
    def __init__(self, args: argparse.Namespace, server: Server, db: str, pg_name: str | None,
                 guests: list[Guest], dj: Dj) -> None:
        self.args = args
        self.server = server
        self.db = db
        self.pg_name = pg_name
        self.guests = guests
        self.dj = dj

    # -- measuring ---------------------------------------------------------------------

    def meters(self) -> tuple[dict[str, CpuMeter], CoreMeter]:
        meters = {"server": CpuMeter([self.server.pid]), "gen": CpuMeter([os.getpid()])}
        if self.pg_name is not None:
            # Our database's backends and the shared processes, not other databases' clients.
            name = self.pg_name.encode()
            meters["db"] = CpuMeter(name=b"postgres",
                                    keep=lambda cmd: name in cmd or b"127.0.0.1(" not in cmd)
        for meter in meters.values():
            meter.start()
        cores = CoreMeter()
        cores.start()
        return meters, cores

    def result(self, phase: str, load: Load, c0: Counts, c1: Counts,
               meters: dict[str, CpuMeter], cores: CoreMeter) -> Result:
        args = self.args
        cpu = {key: meter.stop() for key, meter in meters.items()}
        cores.stop()
        r = Result(self.db, phase)
        elapsed = r.elapsed = c1.t - c0.t
        r.sent = (c1.sent - c0.sent) / elapsed
        r.answered = (c1.answered - c0.answered) / elapsed
        r.ok = c1.ok - c0.ok
        rejected = c1.rejected - c0.rejected
        r.rejected = sum(rejected.values())
        r.rejections = {f"{name} {code}": n for (name, code), n in rejected.items()}
        messages = c1.messages - c0.messages
        r.deliveries = messages / elapsed
        r.per_frame = messages / max(1, c1.frames - c0.frames)
        r.bytes_per_msg = (c1.bytes - c0.bytes) / max(1, messages)
        r.server_cpu, r.gen_cpu = cpu["server"], cpu["gen"]
        r.server_sys = meters["server"].system
        r.db_cpu = cpu.get("db")
        sc, gc_ = args.server_core, args.gen_core
        r.server_core, r.gen_core = cores.busy.get(sc, 0.0), cores.busy.get(gc_, 0.0)
        r.softirq = cores.softirq.get(sc, 0.0)
        r.steal = (cores.steal.get(sc, 0.0) + cores.steal.get(gc_, 0.0)) / 2
        return r

    def finish_rtt(self, r: Result, load: Load) -> None:
        values = sorted(load.rtt.values)
        r.samples = len(values)
        if values:
            r.p50, r.p99, r.max = (percentile(values, 0.50) / 1e6, percentile(values, 0.99) / 1e6,
                                   values[-1] / 1e6)
        dj = sorted(load.dj_rtt.values)
        if dj:
            r.dj_p50, r.dj_p99 = percentile(dj, 0.50) / 1e6, percentile(dj, 0.99) / 1e6

    def _start_profiler(self, phase: str) -> subprocess.Popen[bytes] | None:
        if not self.args.profile:
            return None
        out = Path(self.args.profile) / f"queue-{self.db}-{phase}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        return track(subprocess.Popen(
            ["taskset", "-c", str(self.args.gen_core), py_spy, "record", "--pid",
             str(self.server.pid), "--duration", str(int(self.args.duration)), "--rate", "200",
             "--nonblocking", "--format", "raw", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    @staticmethod
    async def _stop_profiler(profiler: subprocess.Popen[bytes] | None) -> None:
        if profiler is None:
            return
        try:
            await asyncio.wait_for(asyncio.to_thread(profiler.wait), 30)
        except TimeoutError:
            profiler.kill()
        untrack(profiler)

    # -- a room ------------------------------------------------------------------------

    async def open_room(self, phase: str, report_submit: bool) -> tuple[Load, Result | None]:
        """Claim and loosen a fresh room, subscribe every guest, let the submitters submit."""
        args, guests = self.args, self.guests
        room = f"queue:bench-{phase}"
        load = Load(room, args, guests)
        for g in guests:
            g.enter(load)
        item, _, _ = await self.dj.command(room, "queue.settings", LOOSE_SETTINGS)
        if item.get("type") != "ack":
            raise RuntimeError(f"queue.settings failed: {item}")
        loop = asyncio.get_running_loop()
        for g in guests:
            g.subscribed = loop.create_future()
            g.client.send_json({"type": "subscribe", "room": room, "id": "s"})
        async with asyncio.timeout(args.drain_timeout):
            await asyncio.gather(*(g.subscribed for g in guests if g.subscribed is not None))
        # Every guest submits one request (the submitters), args.window at a time.
        load.todo = list(reversed(guests[: args.submitters]))
        load.feed, load.refill = load.feed_submit, True
        meters, cores = self.meters()
        c0 = counts(load, guests)
        load.rtt.arm()
        for _ in range(min(args.window, len(load.todo))):
            load.feed()
        deadline = time.monotonic() + args.drain_timeout
        # Polling: the counters are bumped on the hot path, which should not also set events.
        while load.answered < args.submitters and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        c1 = counts(load, guests)
        load.rtt.disarm()
        load.refill = False
        result = None
        if report_submit:
            result = self.result("submit", load, c0, c1, meters, cores)
            self.finish_rtt(result, load)
        if load.answered < args.submitters:
            raise RuntimeError(f"only {load.answered} of {args.submitters} submits answered")
        if load.ok < args.submitters:
            raise RuntimeError(f"{args.submitters - load.ok} submits rejected: "
                               f"{dict(load.rejected)}")
        load.idle = list(guests)
        load.feed = load.feed_vote
        return load, result

    async def run_phase(self, phase: str, first: bool) -> list[Result]:
        args = self.args
        load, submit = await self.open_room(phase, first)
        results = [submit] if submit is not None else []
        if submit is not None:
            say("   " + describe(submit))
        stop_dj = asyncio.Event()
        dj_task = asyncio.create_task(self._dj_loop(load, stop_dj))
        pacer: asyncio.Task[None] | None = None
        if phase == "throughput":
            load.refill = True
            for _ in range(min(args.window, len(self.guests))):
                load.feed()
        else:
            pacer = asyncio.create_task(self._paced(load, max(1.0, args.rate - args.dj_rate)))
        profiler = None
        try:
            await asyncio.sleep(args.warmup)
            profiler = self._start_profiler(phase)
            meters, cores = self.meters()
            c0 = counts(load, self.guests)
            skipped0, busy0 = load.skipped, load.all_busy
            load.rtt.arm()
            load.dj_rtt.arm()
            lags: list[int] = []
            lag_task = asyncio.create_task(loop_lag(lags))
            await asyncio.sleep(args.duration)
            c1 = counts(load, self.guests)
            lag_task.cancel()
            load.rtt.disarm()
            load.dj_rtt.disarm()
            result = self.result(phase, load, c0, c1, meters, cores)
            lags.sort()
            result.lag_p99 = percentile(lags, 0.99) / 1e6 if lags else None
            skipped = load.skipped - skipped0
            result.unsent = load.all_busy - busy0
        finally:
            load.refill = False
            stop_dj.set()
            if pacer is not None:
                pacer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pacer
            with contextlib.suppress(asyncio.CancelledError):
                await dj_task
        if phase == "rate":
            result.offered = args.rate
        else:
            result.window = min(args.window, len(self.guests))
        if skipped:
            result.problems.append(f"{skipped} commands not sent: the idle guests tried had "
                                   "no vote or unvote to make (generator)")
        self.finish_rtt(result, load)
        await self._stop_profiler(profiler)
        await self._check(load, result)
        results.append(result)
        return results

    async def _dj_loop(self, load: Load, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        rate, begin, i = self.args.dj_rate, loop.time(), 0
        while not stop.is_set() and rate > 0:
            delay = begin + i / rate - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()
                if stop.is_set():
                    return
            action = load.dj_action(i)
            i += 1
            if action is not None:
                load.sent += 1
                item, sent, now = await self.dj.command(load.room, *action)
                load.dj_answered(action[0], item, sent, now)

    async def _paced(self, load: Load, rate: float) -> None:
        loop = asyncio.get_running_loop()
        begin, due_sent = loop.time(), 0
        while True:
            due = int((loop.time() - begin) * rate) - due_sent
            for _ in range(due):
                load.feed()
            due_sent += due
            await asyncio.sleep(0.001)

    async def _check(self, load: Load, result: Result) -> None:
        """Wait for every answer, then for every guest to have every event."""
        args, guests = self.args, self.guests
        deadline = time.monotonic() + args.drain_timeout
        while load.answered < load.sent and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if load.answered < load.sent:
            result.problems.append(f"{load.sent - load.answered} commands never answered")
        head = await self.dj.head(load.room)
        while any(g.last_seq < head for g in guests) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # anything extra shows up now
        short = [g for g in guests if g.last_seq != head]
        if short:
            result.problems.append(f"{len(short)} guests did not end at the head seq {head}, "
                                   f"e.g. {short[0].user} at {short[0].last_seq}")
        expected = sum(head - g.sub_seq for g in guests)
        got = sum(g.room_messages for g in guests)
        if got != expected:
            result.problems.append(f"delivered {got} of {expected} expected ({got - expected:+d})")
        gaps = sum(g.gaps for g in guests)
        if gaps:
            result.problems.append(f"{gaps} frames did not follow the guest's last seq")
        miscounts = sum(g.miscounts for g in guests)
        if miscounts:
            result.problems.append(f"{miscounts} sampled frames held other than last - first + 1 "
                                   "messages")
        lost = [g for g in guests if g.client.closed.done()]
        if lost or self.dj.client.closed.done():
            info = (lost[0] if lost else self.dj).client.close_info
            result.problems.append(f"{len(lost)} guests (DJ: {self.dj.client.closed.done()}) "
                                   f"disconnected, e.g. code={info.code} reason={info.reason!r}")
        unexpected = [item for g in guests for item in g.unexpected] + self.dj.unexpected
        if unexpected:
            result.problems.append(f"{len(unexpected)} unexpected frames, e.g. {unexpected[0]}")
        for g in guests:
            g.unexpected.clear()
            g.gaps = g.miscounts = 0
            g.client.send_json({"type": "unsubscribe", "room": load.room})
        self.dj.unexpected.clear()


# ---------------------------------------------------------------------------
# Connections


async def open_guest(port: int, index: int, sampled: bool) -> Guest:
    client = await RawClient.open(HOST, port, subprotocol=SUBPROTOCOL)
    try:
        client.send_json({"type": "connect", "token": hub_token(f"guest-{index}", role="guest")})
        await client.expect("connected")
    except BaseException:
        await client.close()
        raise
    return Guest(index, client, sampled)


async def open_guests(args: argparse.Namespace, port: int) -> list[Guest]:
    limit = asyncio.Semaphore(args.connect_concurrency)
    count, sample = args.guests, min(args.sample, args.guests)
    sampled = {i * count // sample for i in range(sample)} if sample else set()

    async def one(i: int) -> Guest:
        async with limit:
            return await open_guest(port, i, i in sampled)

    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(g.client.close() for g in done if isinstance(g, Guest)))
        raise


async def run_db(args: argparse.Namespace, db: str, workdir: Path) -> list[Result]:
    port = free_port()
    pg: PgDatabase | None = None
    server: Server | None = None
    guests: list[Guest] = []
    dj: Dj | None = None
    say(f"== hub / {db}: starting on 127.0.0.1:{port} (core {args.server_core})")
    try:
        busy = await wait_quiet([args.server_core, args.gen_core], args.wait_quiet, QUIET_BUSY)
        if busy:
            say("   !! the machine is busy with other work (" + ", ".join(
                f"core {c} {b:.0f}%" for c, b in busy.items()) + "): figures will be noisy")
        if db == "postgres":
            pg = PgDatabase(args.pg_dsn)
            await pg.create()
            env = hub_env(pg.url)
            await migrate(env)
        else:
            env = hub_env(f"sqlite+aiosqlite:///{workdir}/queue-{db}.db")
        server = Server(f"queue-{db}", hub_argv(port), port, workdir, env=env,
                        core=args.server_core)
        await server.ready()
        t0 = time.monotonic()
        guests = await open_guests(args, port)
        client = await RawClient.open(HOST, port, subprotocol=SUBPROTOCOL)
        client.send_json({"type": "connect", "token": hub_token("dj-bench", role="dj")})
        await client.expect("connected")
        dj = Dj(client)
        say(f"   {len(guests)} guests + 1 DJ connected in {time.monotonic() - t0:.1f}s")
        gc.collect()
        gc.freeze()  # the connections are long-lived: keep them out of GC passes
        bench = Bench(args, server, db, pg.name if pg is not None else None, guests, dj)
        results: list[Result] = []
        for i, phase in enumerate(args.phases):
            for result in await bench.run_phase(phase, i == 0):
                if result.phase != "submit":
                    say("   " + describe(result))
                for problem in result.problems:
                    say(f"   !! {problem}")
                results.append(result)
        return results
    finally:
        closing = [g.client.close() for g in guests]
        if dj is not None:
            closing.append(dj.client.close())
        with contextlib.suppress(Exception):
            await asyncio.gather(*closing, return_exceptions=True)
        gc.unfreeze()
        if server is not None:
            await server.stop()
        if pg is not None:
            await pg.drop()


# ---------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="postgres",
                        help="the hub's log database (default: postgres)")
    parser.add_argument("--guests", type=int, default=500,
                        help="guest connections, all subscribed to the room (default 500)")
    parser.add_argument("--submitters", type=int,
                        help="guests that submit a request at the start of each room "
                             "(default: all guests; at most 1000, the room's hourly cap)")
    parser.add_argument("--window", type=int, default=100,
                        help="guest commands in flight in the throughput phase and the "
                             "submit burst (default 100; at most --guests)")
    parser.add_argument("--rate", type=float, default=TARGET_RATE,
                        help=f"commands/s in the rate phase, the DJ's included (default "
                             f"{TARGET_RATE:,.0f})")
    parser.add_argument("--dj-rate", type=float, default=5.0,
                        help="DJ commands/s, one at a time (default 5; 0: no DJ load)")
    parser.add_argument("--votes-per-guest", type=int, default=5,
                        help="votes a guest holds at most; it unvotes as often as it votes "
                             "below that (default 5)")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="measured seconds per phase (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="unmeasured seconds before each phase's measurement (default 2)")
    parser.add_argument("--phases", default="throughput,rate",
                        help="comma-separated phases, each in a fresh room (default "
                             "throughput,rate); the first room's submit burst is reported too")
    parser.add_argument("--sample", type=int, default=20,
                        help="guests that also count every frame's messages (default 20)")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop",
                        help="event loop of the generator (default uvloop)")
    parser.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL admin DSN (loopback only); a fresh database is "
                             "created and dropped")
    parser.add_argument("--server-core", type=int, default=0, help="core for the server (0)")
    parser.add_argument("--gen-core", type=int, default=1,
                        help="core for this load generator (1)")
    parser.add_argument("--connect-concurrency", type=int, default=50,
                        help="guest connections opened at once (default 50)")
    parser.add_argument("--drain-timeout", type=float, default=30.0,
                        help="seconds to wait for answers and deliveries after a phase, and "
                             "for the subscriptions and submits before it (default 30)")
    parser.add_argument("--wait-quiet", type=float, default=60.0,
                        help="before each database, wait up to this many seconds for both "
                             f"cores to be under {QUIET_BUSY:g}%% busy (default 60)")
    parser.add_argument("--max-time", type=float,
                        help="hard limit on the whole run in seconds (default: 180 per "
                             "database)")
    parser.add_argument("--profile", metavar="DIR",
                        help="record the server with py-spy (raw collapsed stacks, one file "
                             "per database and phase) during each measured window into DIR")
    args = parser.parse_args(argv)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if not args.phases or set(args.phases) - {"throughput", "rate"}:
        parser.error("--phases takes throughput and/or rate")
    if len(set(args.phases)) != len(args.phases):
        parser.error("--phases: each phase once (each has its own room)")
    if args.submitters is None:
        args.submitters = min(args.guests, LOOSE_SETTINGS["request_cap_per_hour"])
    if not 2 <= args.guests <= 10_000:
        parser.error("--guests must be between 2 and 10000")
    if not 2 <= args.submitters <= min(args.guests, LOOSE_SETTINGS["request_cap_per_hour"]):
        parser.error("--submitters must be between 2 and min(--guests, 1000)")
    if not 1 <= args.window <= args.guests:
        parser.error("--window must be between 1 and --guests")
    if args.rate <= args.dj_rate or args.dj_rate < 0:
        parser.error("--rate must be above --dj-rate, which must not be negative")
    if args.votes_per_guest < 1 or args.sample < 0:
        parser.error("--votes-per-guest must be positive and --sample not negative")
    if args.duration <= 0 or args.warmup < 0:
        parser.error("--duration must be positive and --warmup not negative")
    return args


async def main(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if args.max_time is None:
        args.max_time = 180.0 * len(dbs)
    say(f"queue: {args.guests} guests ({args.submitters} submit a request) + 1 DJ in one room; "
        f"window {args.window}, rate {args.rate:,.0f}/s, DJ {args.dj_rate:g}/s; "
        f"{args.warmup:g}s warm-up + {args.duration:g}s per phase; "
        f"server on core {args.server_core}, generator on core {args.gen_core} ({args.loop})")
    results: list[Result] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="rt-queue-") as tmp:
        try:
            async with asyncio.timeout(args.max_time):
                for db in dbs:
                    try:
                        results += await run_db(args, db, Path(tmp))
                    except (RuntimeError, OSError, TimeoutError) as exc:
                        failed = True
                        say(f"!! hub/{db} failed: {exc!r}")
        except TimeoutError:
            failed = True
            say(f"!! stopped: --max-time {args.max_time:g}s reached")
    say("")
    say(table(results))
    for line in target_lines(results):
        say(line)
    for r in results:
        for problem in r.problems:
            say(f"!! {r.db}/{r.phase}: {problem}")
        if r.gen_core > GEN_BOUND:
            say(f"!! {r.db}/{r.phase}: the generator's core was {r.gen_core:.0f}% busy: the "
                "figure is a lower bound of the server's capacity")
    say("ok?: yes = every answer came and every guest got every event, gaplessly; NO = see !!; "
        f"GEN = the generator's core was over {GEN_BOUND:g}% busy")
    return 1 if failed or any(r.problems for r in results) else 0


def run() -> None:
    args = parse_args()
    try:
        os.sched_setaffinity(0, {args.gen_core})
    except OSError as exc:
        raise SystemExit(f"cannot pin the generator to core {args.gen_core}: {exc}") from None
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            code = runner.run(main(args))
    except KeyboardInterrupt:
        print("interrupted; server stopped", file=sys.stderr)
        code = 130
    finally:
        kill_children()
    sys.exit(code)


if __name__ == "__main__":
    run()
