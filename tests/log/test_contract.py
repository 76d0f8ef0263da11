"""The Log port's contract, run against every adapter: SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from roomlog.errors import Unavailable
from roomlog.log import Append, RoomTxn, Snapshot
from roomlog.log.sql import SqlLog
from tests.conftest import ADMIN_DSN
from tests.log.conftest import LogFactory, stored_rooms


def item(actor: str = "u1", data: bytes = b"{}", ident: str | None = None) -> Append:
    return Append(actor, data, ident)


async def test_seqs_are_gapless_under_50_concurrent_appenders(make_log: LogFactory,
                                                               room: str) -> None:
    # Two logs (two engines, two pools) stand for two server processes racing.
    logs = [await make_log(), await make_log()]

    async def appender(n: int) -> list[int]:
        log = logs[n % 2]
        seqs = []
        for i in range(4):
            results, _ = await log.append(room, [item(f"u{n}", b"%d" % i)], now_ms=1)
            seqs.append(results[0].seq)
        return seqs

    per_appender = await asyncio.gather(*(appender(n) for n in range(50)))
    everything = sorted(s for seqs in per_appender for s in seqs)
    assert everything == list(range(1, 201))
    for seqs in per_appender:  # each appender sees its own appends in order
        assert seqs == sorted(seqs)
    page = await logs[0].read(room, 0, 1000)
    assert [m.seq for m in page.messages] == list(range(1, 201))
    assert page.info.head == 200


async def test_a_batch_is_one_contiguous_run(make_log: LogFactory, room: str) -> None:
    log = await make_log()
    results, stored = await log.append(room, [item(data=b"%d" % i) for i in range(5)], now_ms=7)
    assert [r.seq for r in results] == [1, 2, 3, 4, 5]
    assert [m.seq for m in stored] == [1, 2, 3, 4, 5]
    assert {m.epoch for m in stored} == {results[0].epoch}
    assert [m.data for m in stored] == [0, 1, 2, 3, 4]
    assert all(m.ts == 7 and m.by == "u1" for m in stored)


async def test_a_retried_id_returns_the_first_result_and_stores_nothing(
        make_log: LogFactory, room: str) -> None:
    first, other = await make_log(), await make_log()
    (a,), _ = await first.append(room, [item(ident="c1")], now_ms=1)
    (b,), stored = await other.append(room, [item(ident="c1", data=b'"changed"')], now_ms=2)
    assert (b.seq, b.epoch, b.ts, b.duplicate) == (a.seq, a.epoch, a.ts, True)
    assert stored == []
    # The same id from another user, or in one batch twice, is told apart correctly.
    results, stored = await first.append(
        room, [item("u2", ident="c1"), item("u2", ident="c1"), item(ident="c2")], now_ms=3)
    assert [(r.seq, r.duplicate) for r in results] == [(2, False), (2, True), (3, False)]
    assert [m.seq for m in stored] == [2, 3]
    assert (await first.info(room)).head == 3


async def test_an_id_remembered_as_refused_comes_back_as_its_refusal(
        make_log: LogFactory, room: str) -> None:
    """A command hook's deny of a publish is remembered with the id and no message;
    appending that id later stores nothing and hands the refusal back."""
    log = await make_log()

    async def refuse(txn: RoomTxn) -> None:
        txn.remember("u1", "denied", txn.head, b'{"error": {}}')

    await log.transact(room, 1, refuse)
    (result,), stored = await log.append(room, [item(ident="denied")], now_ms=2)
    assert (result.duplicate, result.refusal, stored) == (True, b'{"error": {}}', [])
    (fresh,), _ = await log.append(room, [item(ident="fresh")], now_ms=3)
    assert (fresh.seq, fresh.refusal) == (1, None)
    (again,), _ = await log.append(room, [item(ident="fresh")], now_ms=4)
    assert (again.seq, again.duplicate, again.refusal) == (1, True, None)


async def test_concurrent_retries_of_one_id_store_it_once(make_log: LogFactory,
                                                         room: str) -> None:
    logs = [await make_log(), await make_log()]
    results = await asyncio.gather(
        *(logs[i % 2].append(room, [item(ident="same")], now_ms=1) for i in range(20)))
    assert {r[0][0].seq for r in results} == {1}
    assert sum(len(stored) for _, stored in results) == 1


async def test_reads_page_in_order(make_log: LogFactory, room: str) -> None:
    log = await make_log()
    await log.append(room, [item(data=b"%d" % i) for i in range(25)], now_ms=1)
    seen, after = [], 0
    while True:
        page = await log.read(room, after, 10)
        assert not page.trimmed
        if not page.messages:
            break
        seen += [m.data for m in page.messages]
        after = page.messages[-1].seq
    assert seen == list(range(25))


async def test_a_new_room_is_empty_with_an_epoch(make_log: LogFactory, room: str) -> None:
    log = await make_log()
    info = await log.info(room)
    assert (info.head, info.trimmed) == (0, 0)
    assert info.epoch
    page = await log.read(room, 0, 10)
    assert page.messages == [] and not page.trimmed and page.info.epoch == info.epoch


async def test_a_new_room_read_at_once_by_many_is_created_once(make_log: LogFactory,
                                                                  room: str) -> None:
    # Two processes, each with many readers of a room nobody has used yet: every
    # reader must find the row, also while another one's insert is not committed.
    logs = [await make_log(), await make_log()]
    for attempt in range(20):
        name = f"{room}-{attempt}"
        infos = await asyncio.gather(*(logs[i % 2].info(name) for i in range(60)))
        assert len({info.epoch for info in infos}) == 1
        assert all(info.head == 0 for info in infos)


async def test_heads_reads_existing_rooms_in_one_call_and_creates_none(
        make_log: LogFactory, room: str) -> None:
    log = await make_log()
    other, never = room + "-b", room + "-never"
    await log.append(room, [item(), item()], now_ms=1)
    await log.append(other, [item()], now_ms=1)
    heads = await log.heads([room, other, never])
    assert set(heads) == {room, other}
    assert (heads[room].head, heads[other].head) == (2, 1)
    assert heads[room].epoch == (await log.info(room)).epoch
    assert await log.heads([never]) == {}  # a check never creates the room
    many = [f"{room}-{i}" for i in range(1200)]  # more names than one query takes
    assert await log.heads(many) == {}


async def test_retention_by_count_trims_and_says_so(make_log: LogFactory, room: str) -> None:
    log = await make_log(retention_max_messages=10)
    await log.append(room, [item() for _ in range(25)], now_ms=1)
    info = await log.info(room)
    assert (info.head, info.trimmed) == (25, 15)
    assert (await log.read(room, 3, 100)).trimmed  # the range after 3 is gone
    kept = await log.read(room, 15, 100)
    assert not kept.trimmed and [m.seq for m in kept.messages] == list(range(16, 26))


async def test_retention_by_count_deletes_what_it_trims_append_by_append(
        make_log: LogFactory, room: str) -> None:
    """Appends one at a time (on PostgreSQL, one statement each: ``pg_append``)
    move the trim point with the head and delete every row behind it."""
    log = await make_log(retention_max_messages=4)
    for n in range(11):
        await log.append(room, [item(ident=f"c{n}")], now_ms=1)
    await log.append(room, [item(), item()], now_ms=1)
    info = await log.info(room)
    assert (info.head, info.trimmed) == (13, 9)
    engine = create_async_engine(log.url)
    try:
        async with engine.connect() as conn:
            seqs = (await conn.execute(sa.text(
                "SELECT m.seq FROM rt_messages m JOIN rt_rooms r ON r.id = m.room_id "
                "WHERE r.name = :room ORDER BY m.seq"), {"room": room})).scalars().all()
    finally:
        await engine.dispose()
    assert seqs == [10, 11, 12, 13]


async def test_appends_race_whole_transactions_of_the_same_room(make_log: LogFactory,
                                                                room: str) -> None:
    """Plain appends (one statement each on PostgreSQL) and transactions that read
    between their writes, from two logs, take the room's lock in turn: gapless, and a
    transaction's two messages stay next to each other."""
    logs = [await make_log(), await make_log()]
    await logs[0].append(room, [item()], now_ms=1)

    async def pair(txn: RoomTxn) -> None:
        txn.append("u", b'"a"')
        await txn.events(txn.head)
        txn.append("u", b'"b"')

    async def writer(n: int) -> None:
        for i in range(6):
            if (n + i) % 3:
                await logs[n % 2].append(room, [item(ident=f"w{n}-{i}")], now_ms=1)
            else:
                await logs[n % 2].transact(room, 1, pair)

    await asyncio.gather(*(writer(n) for n in range(10)))
    page = await logs[1].read(room, 0, 1000)
    assert [m.seq for m in page.messages] == list(range(1, 82))  # 1 + 10 x (4 + 2 x 2)
    raws = [m.raw for m in page.messages]
    assert raws.count(b'"a"') == raws.count(b'"b"') == 20
    for i, raw in enumerate(raws):
        if raw == b'"a"':
            assert raws[i + 1] == b'"b"'


async def test_append_many_stores_each_rooms_items_in_order(make_log: LogFactory,
                                                            room: str) -> None:
    """Several rooms at once (on PostgreSQL one statement when every room has a row,
    the general transaction when one is new or an id was seen before)."""
    log = await make_log()
    a, b, c = f"{room}-a", f"{room}-b", f"{room}-c"
    await log.append(a, [item()], now_ms=1)
    await log.append(b, [item(ident="seen")], now_ms=1)
    results, stored = await log.append_many({a: [item(ident="x"), item()], b: [item()]},
                                            now_ms=2)
    assert {r: [(x.seq, x.duplicate) for x in rs] for r, rs in results.items()} == {
        a: [(2, False), (3, False)], b: [(2, False)]}
    assert {r: [m.seq for m in ms] for r, ms in stored.items()} == {a: [2, 3], b: [2]}
    results, stored = await log.append_many(  # b's id was seen, c is new
        {a: [item()], b: [item(ident="seen"), item()], c: [item()]}, now_ms=3)
    assert {r: [(x.seq, x.duplicate) for x in rs] for r, rs in results.items()} == {
        a: [(4, False)], b: [(1, True), (3, False)], c: [(1, False)]}
    assert {r: [m.seq for m in ms] for r, ms in stored.items()} == {a: [4], b: [3], c: [1]}
    for name, head in ((a, 4), (b, 3), (c, 1)):
        page = await log.read(name, 0, 100)
        assert [m.seq for m in page.messages] == list(range(1, head + 1))


async def test_append_many_and_transactions_race_without_deadlock(make_log: LogFactory,
                                                                  room: str) -> None:
    """Batches over several rooms, given in any order, and transactions over the
    same rooms, from two logs: each room's lock taken in name order by all of them,
    so none waits in a cycle (PostgreSQL would break one after a second), and every
    room stays gapless."""
    logs = [await make_log(), await make_log()]
    names = [f"{room}-{i}" for i in range(5)]
    await logs[0].append_many({n: [item()] for n in names}, now_ms=1)

    async def work(txns: Sequence[RoomTxn]) -> None:
        for txn in txns:
            txn.append("u", b"{}")
            await txn.events(txn.head)

    async def writer(n: int) -> None:
        for i in range(6):
            chosen = names[(n + i) % 5:] + names[:(n + i) % 5]
            if (n + i) % 3:
                batch = {c: [item(ident=f"{n}-{i}")] for c in chosen[::-1][:3]}
                await logs[n % 2].append_many(batch, now_ms=1)
            else:
                await logs[n % 2].transact_many(chosen[:3], 1, work)

    async with asyncio.timeout(20):
        await asyncio.gather(*(writer(n) for n in range(8)))
    total = 0
    for name in names:
        page = await logs[1].read(name, 0, 1000)
        assert [m.seq for m in page.messages] == list(range(1, page.info.head + 1))
        total += page.info.head
    assert total == 5 + 8 * 6 * 3


async def test_retention_by_age(make_log: LogFactory, room: str) -> None:
    log = await make_log()
    await log.append(room, [item() for _ in range(3)], now_ms=1_000)
    await log.append(room, [item() for _ in range(2)], now_ms=5_000)
    assert await log.trim_before(2_000) >= 3
    info = await log.info(room)
    assert (info.head, info.trimmed) == (5, 3)
    assert (await log.read(room, 0, 10)).trimmed
    assert [m.seq for m in (await log.read(room, 3, 10)).messages] == [4, 5]


async def test_reset_starts_a_new_epoch(make_log: LogFactory, room: str) -> None:
    log = await make_log()
    (old,), _ = await log.append(room, [item(ident="x")], now_ms=1)
    info = await log.reset(room)
    assert info.epoch != old.epoch and info.head == 0
    assert (await log.read(room, 0, 10)).messages == []
    (new,), _ = await log.append(room, [item(ident="x")], now_ms=2)
    assert (new.seq, new.epoch, new.duplicate) == (1, info.epoch, False)


async def test_ids_expire_after_their_ttl(make_log: LogFactory, room: str) -> None:
    log = await make_log()
    await log.append(room, [item(ident="late")], now_ms=1_000)
    assert await log.expire_ids(2_000) >= 1
    (again,), _ = await log.append(room, [item(ident="late")], now_ms=3_000)
    assert (again.seq, again.duplicate) == (2, False)


async def test_unmigrated_database_is_refused_with_advice(tmp_path: object) -> None:
    log = SqlLog(f"sqlite+aiosqlite:///{tmp_path}/fresh.db", migrate=False)
    with pytest.raises(SystemExit, match="roomlog migrate"):
        await log.open()


async def _cut_connections(url: str) -> None:
    """Terminate every connection to the database of ``url``, as a restart would."""
    database = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()", database)
    finally:
        await admin.close()


async def test_cut_pooled_connections_are_replaced_before_use(own_pg_url: str,
                                                               room: str) -> None:
    """A database restart cuts every pooled connection: the next writes and reads
    get fresh ones (pre-ping), not UNAVAILABLE."""
    log = SqlLog(own_pg_url, migrate=True)
    await log.open()
    try:
        await log.append(room, [item()], now_ms=1)
        await log.read(room, 0, 10)
        await _cut_connections(own_pg_url)
        for n in range(20):
            await log.append(room, [item(ident=f"after-{n}")], now_ms=2)
        await log.check()
        page = await log.read(room, 0, 100)
        assert [m.seq for m in page.messages] == list(range(1, 22))
    finally:
        await log.close()


async def test_database_failure_is_unavailable_then_recovers(own_pg_url: str,
                                                             room: str) -> None:
    log = SqlLog(own_pg_url, migrate=True)
    await log.open()
    try:
        await log.append(room, [item()], now_ms=1)

        async def cut_midway(txn: RoomTxn) -> None:
            txn.append("u1", b"{}")
            await _cut_connections(own_pg_url)  # this transaction's own connection too
            await txn.events(0)

        with pytest.raises(Unavailable) as failed:
            await log.transact(room, 2, cut_midway)
        assert failed.value.retry_after
        # The pool replaces dead connections: the log works again, seqs still gapless.
        await log.append(room, [item()], now_ms=3)
        page = await log.read(room, 0, 100)
        assert [m.seq for m in page.messages] == [1, 2]
    finally:
        await log.close()


async def test_transact_writes_everything_or_nothing(make_log: LogFactory, room: str) -> None:
    log = await make_log()
    inbox = "user:" + room.split(":")[1]

    async def work(txn: RoomTxn) -> int:
        first = txn.append("dj", b'{"event":"a"}')
        txn.append("dj", b'{"event":"b"}')
        txn.remember("dj", "cmd-1", txn.head, b'{"result":{"id":"r1"}}')
        txn.notify(inbox, "dj", b'{"notice":"n"}')
        txn.save_snapshot(txn.head, b'{"state":2}')
        return first.seq

    first, stored = await log.transact(room, 5, work)
    assert first == 1
    assert [m.seq for m in stored[room]] == [1, 2] and [m.seq for m in stored[inbox]] == [1]
    assert (await log.info(inbox)).head == 1

    async def check(txn: RoomTxn) -> None:
        assert txn.head == 2
        prior = await txn.prior([("dj", "cmd-1"), ("other", "cmd-1")])
        assert list(prior) == [("dj", "cmd-1")]
        assert prior[("dj", "cmd-1")].result == b'{"result":{"id":"r1"}}'
        assert await txn.snapshot() == Snapshot(2, b'{"state":2}')
        assert [m.raw for m in await txn.events(1)] == [b'{"event":"b"}']
        txn.append("dj", b"3")
        raise RuntimeError("the work failed")

    with pytest.raises(RuntimeError):
        await log.transact(room, 6, check)
    assert (await log.info(room)).head == 2  # nothing of the failed work was written


async def test_transact_many_commits_several_rooms_and_their_notices_as_one(
        make_log: LogFactory, room: str) -> None:
    log = await make_log()
    await log.append(room + "-b", [item()], now_ms=1)  # one room exists, one is new
    names = [room + "-b", room + "-a"]
    feed = "user:" + room.split(":")[1] + "-feed"

    async def work(txns: Sequence[RoomTxn]) -> list[str]:
        for txn in txns:
            txn.append("u", b'{"in":"%s"}' % txn.room[-1:].encode())
            txn.remember("u", "c-" + txn.room[-1:], txn.head, b"{}")
            txn.notify(feed, "u", txn.room[-1:].encode())
        return [txn.room for txn in txns]

    order, stored = await log.transact_many(names, 5, work)
    assert order == names  # each room's transaction, in the order given
    assert [m.seq for m in stored[room + "-b"]] == [2]
    assert [m.seq for m in stored[room + "-a"]] == [1]
    assert [(m.seq, m.raw) for m in stored[feed]] == [(1, b"b"), (2, b"a")]  # as buffered
    assert (await log.info(feed)).head == 2

    async def fail(txns: Sequence[RoomTxn]) -> None:
        for txn in txns:
            assert [p for p in await txn.prior([("u", "c-" + txn.room[-1:])])]
            txn.append("u", b"{}")
            txn.notify(feed, "u", b"x")
        raise RuntimeError("the work failed")

    with pytest.raises(RuntimeError):
        await log.transact_many(names, 6, fail)
    heads = [(await log.info(name)).head for name in (*names, feed)]
    assert heads == [2, 1, 2]  # nothing of the failed work, in any room


async def test_transact_many_and_single_rooms_race_without_deadlock(make_log: LogFactory,
                                                                    room: str) -> None:
    # Two logs stand for two processes: batches of tickets and single tickets, all
    # writing to one shared room, lock in one order and never wait in a cycle.
    logs = [await make_log(), await make_log()]
    tickets = [f"{room}-t{i}" for i in range(6)]
    feed = "user:" + room.split(":")[1] + "-all"

    async def work(txns: Sequence[RoomTxn]) -> None:
        for txn in txns:
            txn.append("u", b"{}")
            txn.notify(feed, "u", txn.room.encode())

    async def single(txn: RoomTxn) -> None:
        await work([txn])

    async def writer(n: int) -> None:
        log = logs[n % 2]
        for i in range(5):
            if (n + i) % 2:
                await log.transact_many(tickets[i % 3:][::-1], 1, work)
            else:
                await log.transact(tickets[(n + i) % 6], 1, single)

    await asyncio.gather(*(writer(n) for n in range(8)))
    page = await logs[0].read(feed, 0, 1000)
    assert [m.seq for m in page.messages] == list(range(1, page.info.head + 1))
    total = sum([(await logs[0].info(t)).head for t in tickets])
    assert total == page.info.head  # one feed entry per ticket event, none lost


async def test_retention_keeps_what_rebuilds_a_domain_room(make_log: LogFactory,
                                                           room: str) -> None:
    log = await make_log(retention_max_messages=3)

    async def snapshot_at(seq: int) -> None:
        async def work(txn: RoomTxn) -> None:
            txn.save_snapshot(seq, b"{}")
        await log.transact(room, 1, work)

    await log.append(room, [item() for _ in range(4)], now_ms=1_000)
    await snapshot_at(2)
    await log.append(room, [item() for _ in range(6)], now_ms=1_000)
    info = await log.info(room)
    assert (info.head, info.trimmed) == (10, 2)  # not 7: events after the snapshot stay
    await log.trim_before(10_000)
    assert (await log.info(room)).trimmed == 2
    await snapshot_at(10)
    await log.append(room, [item()], now_ms=1_000)
    assert (await log.info(room)).trimmed == 8


async def _look(txn: RoomTxn) -> int:
    await txn.prior([("u", "x")])
    await txn.events(0)
    await txn.snapshot()
    return txn.head


async def test_reads_of_a_room_store_nothing(make_log: LogFactory, room: str) -> None:
    # A read of a new room name used to insert a row that was never deleted: one
    # guest made 5,000 in 14 s. A room only read is empty, and stores nothing.
    log = await make_log()
    for i in range(20):
        name = f"{room}-{i}"
        info = await log.info(name)
        assert (info.head, info.trimmed) == (0, 0) and info.epoch
        page = await log.read(name, 0, 10)
        assert page.messages == [] and not page.trimmed and page.info == info
        assert await log.transact(name, 1, _look) == (0, {})
        assert await log.heads([name]) == {}
    assert await stored_rooms(log, room) == []


async def test_the_first_write_keeps_the_epoch_readers_were_given(make_log: LogFactory,
                                                                  room: str) -> None:
    # A subscriber of a room nobody wrote yet holds (epoch, 0): the first write must
    # not look like a new log to it (a spurious reset). Two processes agree too.
    log, other = await make_log(), await make_log()
    seen = (await log.info(room)).epoch
    assert (await other.info(room)).epoch == seen
    (first,), _ = await other.append(room, [item()], now_ms=1)
    assert (first.seq, first.epoch) == (1, seen)
    assert (await log.info(room)).epoch == seen
    # Notices create their rooms the same way.
    inbox = room.replace("chat:", "user:")
    promised = (await log.info(inbox)).epoch

    async def notify(txn: RoomTxn) -> None:
        txn.append("dj", b"1")
        txn.notify(inbox, "dj", b"2")

    _, stored = await log.transact(room + "-q", 1, notify)
    assert [m.epoch for m in stored[inbox]] == [promised]
    assert await stored_rooms(log, inbox) == [inbox]


async def test_a_reset_of_a_room_never_written_starts_a_new_epoch(make_log: LogFactory,
                                                                 room: str) -> None:
    log = await make_log()
    before = (await log.info(room)).epoch
    after = await log.reset(room)
    assert after.epoch != before and after.head == 0
    assert (await log.info(room)).epoch == after.epoch


async def test_a_recreated_database_gives_rooms_new_epochs(tmp_path: object) -> None:
    epochs = []
    for n in range(2):
        log = SqlLog(f"sqlite+aiosqlite:///{tmp_path}/db{n}.db", migrate=True)
        await log.open()
        epochs.append((await log.info("chat:lobby")).epoch)
        await log.close()
    assert epochs[0] != epochs[1]


async def test_the_room_id_cache_is_bounded(make_log: LogFactory, room: str) -> None:
    log = await make_log(room_cache_size=3)
    for i in range(10):
        await log.append(f"{room}-{i}", [item()], now_ms=1)
        await log.info(f"{room}-{i}")
    assert log.cached_rooms == 3
    for i in range(10):  # forgotten ids are found again
        (result,), _ = await log.append(f"{room}-{i}", [item()], now_ms=1)
        assert result.seq == 2
