"""The SQL adapter of the webhook ports on SQLite and PostgreSQL: endpoints start at the
rooms' heads, cursors and attempts are saved (fenced by the lease on PostgreSQL),
redeliveries are handed over once, leases go to one holder until they run out."""

from __future__ import annotations

import secrets

import pytest

from roomlog.log import Append
from roomlog.log.sql import SqlLog
from roomlog.log.webhooks import SqlLeases, SqlWebhooks
from roomlog.signing import new_secret
from roomlog.webhooks.core import Cursor
from roomlog.webhooks.endpoint import Endpoint, Secret
from roomlog.webhooks.store import Attempt
from tests.log.conftest import LogFactory


def endpoint(prefix: str, **fields: object) -> Endpoint:
    values: dict[str, object] = dict(
        id="wh_" + secrets.token_hex(8), url="https://example.com/h", description="",
        rooms=(prefix + "*",), events=(), secrets=(Secret(new_secret(), 1),), enabled=True,
        batch_max=1, created_ms=1, updated_ms=1)
    values.update(fields)
    return Endpoint(**values)  # type: ignore[arg-type]


async def fill(log: SqlLog, room: str, n: int) -> None:
    await log.append(room, [Append("u", b'{"i":1}') for _ in range(n)], now_ms=1)


async def test_an_endpoint_starts_at_the_heads_and_sees_what_comes_after(
        make_log: LogFactory) -> None:
    log = await make_log()
    store = SqlWebhooks(log)
    prefix = f"chat:wh{secrets.token_hex(4)}-"
    await fill(log, prefix + "old", 3)
    await fill(log, "chat:elsewhere-" + secrets.token_hex(4), 2)
    hook = endpoint(prefix)
    await store.create(hook)
    assert await store.cursors(hook.id) == {
        prefix + "old": Cursor((await log.info(prefix + "old")).epoch, 3)}
    assert await store.behind(hook, 100) == []
    await fill(log, prefix + "old", 1)
    await fill(log, prefix + "new", 2)
    behind = {info.room: info.head for info in await store.behind(hook, 100)}
    assert behind == {prefix + "old": 4, prefix + "new": 2}
    assert (await store.get(hook.id)) == hook and hook in await store.all()


async def test_cursors_attempts_rewinds_and_delete(make_log: LogFactory) -> None:
    log = await make_log()
    store = SqlWebhooks(log)
    prefix = f"chat:wh{secrets.token_hex(4)}-"
    room = prefix + "a"
    await fill(log, room, 5)
    hook = endpoint(prefix)
    await store.create(hook)
    epoch = (await log.info(room)).epoch
    tried = [Attempt(i, room, f"{room}/{epoch}/{i}", i, i, 500 if i % 2 else 204, 3,
                     "HTTP 500" if i % 2 else None) for i in range(1, 8)]
    failing = Cursor(epoch, 4, failures=2, failing_since_ms=77)
    assert await store.save(hook.id, {room: failing}, tried, 10, holder=None, keep_attempts=5)
    assert await store.cursors(hook.id) == {room: Cursor(epoch, 4, failing_since_ms=77)}
    newest = await store.attempts(hook.id, 100)
    assert [a.first for a in newest] == [7, 6, 5, 4, 3] and newest[0].error == "HTTP 500"

    info = await store.rewind(hook.id, room, 1, 20)
    assert (info.epoch, info.head) == (epoch, 5)
    assert (await store.get(hook.id)).version == 2  # type: ignore[union-attr]
    assert await store.take_rewinds(hook.id) == {room: Cursor(epoch, 1)}
    assert await store.take_rewinds(hook.id) == {}  # handed over once
    assert (await store.cursors(hook.id))[room].seq == 1

    assert await store.delete(hook.id)
    assert await store.cursors(hook.id) == {} and await store.attempts(hook.id, 10) == []
    assert not await store.save(hook.id, {room: failing}, [], 30, holder=None,
                                keep_attempts=5)  # gone: nothing written back
    assert await store.cursors(hook.id) == {}


async def test_disable_and_widen(make_log: LogFactory) -> None:
    log = await make_log()
    store = SqlWebhooks(log)
    prefix = f"chat:wh{secrets.token_hex(4)}-"
    other = f"feed:wh{secrets.token_hex(4)}-x"
    await fill(log, other, 4)
    hook = endpoint(prefix)
    await store.create(hook)
    off = await store.disable(hook.id, "past the horizon", 50)
    assert off is not None and not off.enabled and off.disabled_reason == "past the horizon"
    wider = endpoint(prefix, id=hook.id, rooms=(prefix + "*", other), enabled=True)
    assert await store.update(wider, widened=True, reenabled=True)
    assert (await store.cursors(hook.id))[other].seq == 4  # starts at its head


async def test_a_lease_has_one_holder_until_it_runs_out(pg_url: str) -> None:
    log = SqlLog(pg_url, migrate=True)
    await log.open()
    try:
        leases, store = SqlLeases(log), SqlWebhooks(log)
        hook = endpoint(f"chat:wh{secrets.token_hex(4)}-")
        await store.create(hook)
        assert await leases.acquire(hook.id, "a", 1000, 500)
        assert not await leases.acquire(hook.id, "b", 1200, 500)
        assert await leases.acquire(hook.id, "a", 1400, 500)  # renewed until 1900
        assert not await store.save(hook.id, {}, [], 1, holder="b", keep_attempts=5)
        assert await store.save(hook.id, {}, [], 1, holder="a", keep_attempts=5)
        assert await leases.acquire(hook.id, "b", 2000, 500)  # a ran out: b takes it
        assert not await store.save(hook.id, {}, [], 1, holder="a", keep_attempts=5)
        await leases.release(hook.id, "a")  # not a's any more: nothing happens
        assert not await leases.acquire(hook.id, "a", 2100, 500)
        await leases.release(hook.id, "b")
        assert await leases.acquire(hook.id, "a", 2100, 500)
    finally:
        await log.close()


@pytest.mark.parametrize("pattern", ["chat:a_b*", "chat:a%*"])
async def test_patterns_are_prefixes_not_like_wildcards(make_log: LogFactory,
                                                         pattern: str) -> None:
    log = await make_log()
    store = SqlWebhooks(log)
    tag = secrets.token_hex(4)
    await fill(log, f"chat:axb{tag}", 1)  # '_' would match any character in LIKE
    hook = endpoint("", rooms=(pattern.replace("*", "") + tag + "*",))
    await store.create(hook)
    await fill(log, f"chat:axb{tag}", 1)
    assert await store.behind(hook, 10) == []
