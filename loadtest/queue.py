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
round trip under 50 ms (issue 13; it was 100 ms), judged on the ``rate`` phase (default 1,000/s).

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
import functools
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from common import MESSAGE_MARK, Buffer, CoreMeter, CpuMeter, RawClient, client_frame, percentile
from harness import (
    Window,
    add_db_option,
    add_loop_option,
    add_machine_options,
    add_timing_options,
    check_timing,
    connect,
    core_figures,
    finish,
    latency_ms,
    listed,
    measure,
    open_many,
    quiet,
    run_steps,
    run_tool,
    say,
    say_result,
    session,
    spread,
    start_meters,
    start_profiler,
    stop_profiler,
    write_json,
)
from paid import PaidResult, paid_table, paid_targets, run_paid
from report import GEN_BOUND, TARGET_RATE, QueueResult, describe_queue, queue_table, queue_targets
from servers import Server, free_port, hub_argv, hub_token

# The room's rules, loosened to the most queue_args.SETTINGS_RANGES allows.
LOOSE_SETTINGS = {"request_cap_per_hour": 1000, "max_active_per_guest": 50, "submit_rate": 60}
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


# ---------------------------------------------------------------------------
# The generator's own delay


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
        self.rtt = Window()  # round trips of the commands sent in the measured window
        self.dj_rtt = Window()
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
        return start_meters(self.server.pid, self.db, self.pg_name)

    def result(self, phase: str, load: Load, c0: Counts, c1: Counts,
               meters: dict[str, CpuMeter], cores: CoreMeter) -> QueueResult:
        cpu = {key: meter.stop() for key, meter in meters.items()}
        cores.stop()
        r = QueueResult(self.db, phase)
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
        r.server_core, r.gen_core, r.softirq, r.steal = core_figures(self.args, cores)
        return r

    @staticmethod
    def finish_rtt(r: QueueResult, load: Load) -> None:
        r.samples, r.p50, r.p99, r.max = latency_ms(load.rtt.values)
        _, r.dj_p50, r.dj_p99, _ = latency_ms(load.dj_rtt.values)

    # -- a room ------------------------------------------------------------------------

    async def open_room(self, phase: str, report_submit: bool) -> tuple[Load, QueueResult | None]:
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

    async def run_phase(self, phase: str, first: bool) -> list[QueueResult]:
        args = self.args
        load, submit = await self.open_room(phase, first)
        results = [submit] if submit is not None else []
        if submit is not None:
            say("   " + describe_queue(submit))
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
            profiler = start_profiler(self.args, self.server.pid, f"queue-{self.db}-{phase}")
            meters, cores = self.meters()
            c0 = counts(load, self.guests)
            skipped0, busy0 = load.skipped, load.all_busy
            load.rtt.arm()
            load.dj_rtt.arm()
            lags: list[int] = []
            lag_task = asyncio.create_task(loop_lag(lags))
            await measure(args, phase, lambda t: (
                f"{(load.answered - c0.answered) / t:,.0f} commands/s answered "
                f"({load.sent - c0.sent:,} sent) so far"))
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
        await stop_profiler(profiler)
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

    async def _check(self, load: Load, result: QueueResult) -> None:
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


async def open_guests(args: argparse.Namespace, port: int) -> list[Guest]:
    sampled = spread(args.guests, args.sample)

    async def one(i: int) -> Guest:
        client = await connect(port, hub_token(f"guest-{i}", role="guest"))
        return Guest(i, client, i in sampled)

    async def close(g: Guest) -> None:
        await g.client.close()

    return await open_many(args.guests, args.connect_concurrency, one, close)


async def run_db(args: argparse.Namespace, db: str, workdir: Path) -> list[QueueResult]:
    port = free_port()
    say(f"== hub / {db}: starting on 127.0.0.1:{port} (core {args.server_core})")
    async with session(args, workdir) as s:
        await quiet(args)
        env = await s.hub_env(db, f"queue-{db}")
        argv = hub_argv(port)
        if args.timeline:
            timeline = Path(args.timeline) / f"timeline-queue-{db}.json"
            timeline.parent.mkdir(parents=True, exist_ok=True)
            argv = [argv[0], str(Path(__file__).parent / "traced_hub.py"), *argv[3:]]
            env["ROOMLOG_TIMELINE"] = str(timeline)
        server = await s.start(f"queue-{db}", argv, port, env)
        t0 = time.monotonic()
        guests = await open_guests(args, port)
        s.closers += [g.client.close for g in guests]
        dj = Dj(await s.connect(port, hub_token("dj-bench", role="dj")))
        say(f"   {len(guests)} guests + 1 DJ connected in {time.monotonic() - t0:.1f}s")
        s.settle()
        bench = Bench(args, server, db, s.pg.name if s.pg is not None else None, guests, dj)
        results: list[QueueResult] = []
        for i, phase in enumerate(args.phases):
            for result in await bench.run_phase(phase, i == 0):
                # the submit row was described as it came
                say_result(None if result.phase == "submit" else describe_queue(result),
                           result.problems)
                results.append(result)
    if args.timeline:
        from fanout import say_timeline

        say_timeline(timeline)
    return results


# ---------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_db_option(parser, "postgres")
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
    add_timing_options(parser)
    parser.add_argument("--phases", default="throughput,rate",
                        help="comma-separated phases, each in a fresh room (default "
                             "throughput,rate); the first room's submit burst is reported too")
    parser.add_argument("--timeline", metavar="DIR",
                        help="run the hub under loadtest/traced_hub.py and print where a "
                             "command's time goes, stage by stage (use with --phases rate); "
                             "the raw marks go to DIR")
    parser.add_argument("--sample", type=int, default=20,
                        help="guests that also count every frame's messages (default 20)")
    parser.add_argument("--paid-rate", type=float, default=300.0,
                        help="submits/s of the paid step (free, then paid, on a hub with "
                             "the payment hook; see loadtest/paid.py; default 300; 0: skip)")
    parser.add_argument("--paid-seconds", type=float, default=3.0,
                        help="seconds of each room of the paid step (rate x seconds at most "
                             "1000, the room's hourly cap; default 3)")
    parser.add_argument("--paid-guests", type=int, default=200,
                        help="guest connections of the paid step (default 200)")
    parser.add_argument("--paid-unpinned", action="store_true",
                        help="run the test provider and backend on any core, not pinned to "
                             "the generator's")
    add_loop_option(parser, "event loop of the generator (default uvloop)")
    add_machine_options(
        parser, connections="guest", each="database", per="database",
        drain="seconds to wait for answers and deliveries after a phase, and for the "
              "subscriptions and submits before it (default 30)",
        profile="raw collapsed stacks, one file per database and phase")
    args = parser.parse_args(argv)
    listed(parser, args, "phases", ("throughput", "rate"))
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
    if args.paid_rate < 0 or args.paid_rate * args.paid_seconds > 1000:
        parser.error("--paid-rate x --paid-seconds must be between 0 and 1000 (the hourly cap)")
    if args.votes_per_guest < 1 or args.sample < 0:
        parser.error("--votes-per-guest must be positive and --sample not negative")
    check_timing(parser, args)
    return args


async def main(args: argparse.Namespace) -> int:
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    say(f"queue: {args.guests} guests ({args.submitters} submit a request) + 1 DJ in one room; "
        f"window {args.window}, rate {args.rate:,.0f}/s, DJ {args.dj_rate:g}/s; "
        f"{args.warmup:g}s warm-up + {args.duration:g}s per phase; "
        f"server on core {args.server_core}, generator on core {args.gen_core} ({args.loop})")
    results, failed = await run_steps(args, "rt-queue-", [
        (f"hub/{db}", functools.partial(run_db, args, db)) for db in dbs])
    paid: list[PaidResult] = []
    if args.paid_rate > 0:
        say(f"paid: {args.paid_guests} guests, free then paid submits at {args.paid_rate:g}/s "
            f"for {args.paid_seconds:g}s each, hook, backend and provider on this machine")
        paid, paid_failed = await run_steps(args, "rt-paid-", [
            (f"paid/{db}", functools.partial(run_paid, args, db)) for db in dbs])
        failed = failed or paid_failed
    say("")
    say(queue_table(results))
    for line in queue_targets(results):
        say(line)
    if paid:
        say("")
        say(paid_table(paid))
        for line in paid_targets(paid):
            say(line)
    write_json(args, "queue", [*results, *paid], failed)
    return finish([*results, *paid], failed, lambda r: f"{r.db}/{r.phase}",
                  "ok?: yes = every answer came and every guest got every event, gaplessly; "
                  "NO = see !!; GEN = the generator's core was over "
                  f"{GEN_BOUND:g}% busy")


def run() -> None:
    run_tool(parse_args(), main, "interrupted; server stopped")


if __name__ == "__main__":
    run()
