"""A job that runs every few seconds for the life of the process (the retention
sweep, the ban list's reload), and what it says when the database fails."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from roomlog.errors import RoomlogError

__all__ = ["every"]


async def every(interval: float, job: Callable[[], Awaitable[None]], *, what: str,
                log: logging.Logger) -> None:
    """Run ``job`` every ``interval`` seconds until cancelled.

    A run that finds the database down (a RoomlogError) logs one warning for the
    whole outage (not one per run, and no traceback: the adapter's error says what
    failed) and one line when runs work again. Anything else is a bug: logged with
    its traceback, and the next run comes as usual."""
    failing = False
    while True:
        await asyncio.sleep(interval)
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except RoomlogError as err:
            if not failing:
                log.warning("%s skipped, the database is unavailable (%s); retrying every %ss",
                            what, err.message, interval)
            failing = True
            continue
        except Exception:
            log.exception("%s failed; next try in %ss", what, interval)
            continue
        if failing:
            log.warning("%s works again", what)
            failing = False
