"""``roomlog.limits`` without a server: caps, buckets, the staff factor, strikes."""

from __future__ import annotations

import pytest

from roomlog.errors import ErrorCode, RoomlogError
from roomlog.identity import Principal, Role
from roomlog.limits import Kind, Limits, Strikes
from roomlog.ratelimit import Buckets
from roomlog.settings import Settings
from roomlog.stats import Stats

GUEST = Principal("g", Role.GUEST)
SERVICE = Principal("s", Role.SERVICE)


class Store:
    def __init__(self, clock: list[float]) -> None:
        self.buckets = Buckets(lambda: clock[0])

    async def take(self, key: str, rate: float, burst: float) -> float:
        return self.buckets.take(key, rate, burst)


def limits(**settings: object) -> tuple[Limits, Stats, list[float]]:
    now = [0.0]
    stats = Stats()
    return Limits(Settings(**settings), Store(now), stats, lambda: now[0]), stats, now  # type: ignore[arg-type]


def test_connections_per_user_are_counted_and_given_back() -> None:
    lim, stats, _ = limits(max_connections_per_user=2)
    first, second = lim.open_user(GUEST), lim.open_user(GUEST)
    with pytest.raises(RoomlogError) as err:
        lim.open_user(GUEST)
    assert err.value.code is ErrorCode.LIMIT_EXCEEDED
    assert stats.connections_refused["user_connections"] == 1
    first()
    first()  # twice is once
    lim.open_user(GUEST)
    second()
    assert lim.connections("g") == 1


def test_services_get_the_factor_and_zero_lifts_it() -> None:
    lim, _, _ = limits(max_connections_per_user=1, staff_limit_factor=3)
    for _ in range(3):
        lim.open_user(SERVICE)
    with pytest.raises(RoomlogError):
        lim.open_user(SERVICE)
    unlimited, _, _ = limits(max_connections_per_user=1, staff_limit_factor=0)
    for _ in range(50):
        unlimited.open_user(SERVICE)
        unlimited.check(Kind.READ, SERVICE, "http")


def test_addresses_are_capped_and_none_is_not_counted() -> None:
    lim, stats, _ = limits(max_connections_per_address=1)
    lim.open_address("10.0.0.1")
    lim.open_address("10.0.0.2")
    lim.open_address(None)
    with pytest.raises(RoomlogError):
        lim.open_address("10.0.0.1")
    assert stats.connections_refused["address_connections"] == 1


def test_rates_per_kind_and_user() -> None:
    lim, stats, now = limits(subscribe_rate=1.0, subscribe_burst=2)
    lim.check(Kind.SUBSCRIBE, GUEST, "websocket")
    lim.check(Kind.SUBSCRIBE, GUEST, "websocket")
    with pytest.raises(RoomlogError) as err:
        lim.check(Kind.SUBSCRIBE, GUEST, "websocket")
    assert err.value.code is ErrorCode.RATE_LIMITED and err.value.retry_after == 1.0
    assert err.value.details == {"kind": "subscribe"}
    lim.check(Kind.READ, GUEST, "http")  # another kind, another bucket
    lim.check(Kind.SUBSCRIBE, Principal("h", Role.GUEST), "websocket")  # another user
    now[0] = 1.0
    lim.check(Kind.SUBSCRIBE, GUEST, "websocket")
    assert stats.rate_limited[("websocket", "subscribe")] == 1


async def test_writes_go_through_the_store() -> None:
    lim, stats, _ = limits(publish_rate=1.0, publish_burst=1)
    await lim.write(GUEST, "http")
    with pytest.raises(RoomlogError):
        await lim.write(GUEST, "websocket")
    assert stats.rate_limited[("websocket", "write")] == 1


def test_strikes_close_after_the_budget_and_refill() -> None:
    now = [0.0]
    strikes = Strikes(3, lambda: now[0])
    assert [strikes.strike() for _ in range(4)] == [False, False, False, True]
    now[0] = 2.0
    assert strikes.strike() is False
    assert Strikes(0, lambda: now[0]).strike() is False
