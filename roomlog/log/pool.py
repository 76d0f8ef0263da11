"""Connections drawn from the PostgreSQL pool are alive, for less than a round trip.

SQLAlchemy's ``pool_pre_ping`` pings every connection it hands out; on asyncpg the
ping is three round trips (BEGIN, ``;``, ROLLBACK), more than the write it guards
(a commit is BEGIN, lock, write, COMMIT). Here, at checkout:

* a connection whose socket the driver saw close (a restart or failover
  terminates every backend, and each one closes its socket: the pool's
  connections learn it as soon as the event loop reads the end) is replaced,
  without a round trip;
* a connection that waited in the pool longer than ``ping_after`` seconds (a
  network path that may have died without a word) is pinged first, as before.

Either way a dead connection is replaced before use (``DisconnectionError`` makes
the pool draw another), so a write does not fail because the database restarted
while the pool held its connections (``test_cut_pooled_connections_are_replaced_before_use``).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["check_on_checkout"]

_IDLE_SINCE = "roomlog_idle_since"


def check_on_checkout(engine: AsyncEngine, *, ping_after: float) -> None:
    """Install the check on ``engine``'s pool (created with ``pool_pre_ping=False``)."""
    sync_engine = engine.sync_engine
    dialect = sync_engine.dialect

    @event.listens_for(sync_engine, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(sync_engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        driver = getattr(dbapi_conn, "driver_connection", None)
        is_closed = getattr(driver, "is_closed", None)
        if is_closed is not None and is_closed():
            raise DisconnectionError("the connection was closed")
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since < ping_after:
            return  # fresh from connect, or used a moment ago
        try:
            dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError(f"the ping failed: {exc}") from exc
