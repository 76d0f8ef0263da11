"""Admission (``roomlog/admission.py``) as pure units: the lag monitor on an injected
clock, and the ASGI wrapper with in-memory receive and send."""

from __future__ import annotations

from typing import Any

from roomlog.admission import Admission, LagMonitor
from roomlog.stats import Stats


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lag_is_how_late_a_tick_ran_or_how_overdue_the_next_is() -> None:
    clock, stats = Clock(), Stats()
    monitor = LagMonitor(interval=0.05, clock=clock, stats=stats)
    assert monitor.lag == 0.0
    monitor.tick(clock.now)  # first tick: nothing to compare with
    clock.now += 0.05
    monitor.tick(clock.now)  # on time
    assert monitor.lag == 0.0
    clock.now += 0.05 + 0.3
    assert abs(monitor.lag - 0.3) < 1e-9  # overdue now, before the tick runs
    monitor.tick(clock.now)
    assert abs(monitor.lag - 0.3) < 1e-9 and abs(stats.loop_lag - 0.3) < 1e-9
    clock.now += 0.05
    monitor.tick(clock.now)
    assert monitor.lag == 0.0


class App:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1


async def _handshake(admission: Admission, extensions: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await admission({"type": "websocket", "extensions": extensions}, receive, send)
    return sent


def _lagging(lag: float) -> LagMonitor:
    clock = Clock()
    monitor = LagMonitor(interval=0.05, clock=clock)
    monitor.tick(clock.now)
    clock.now += 0.05 + lag
    return monitor


async def test_handshakes_pass_while_the_loop_keeps_up() -> None:
    app, stats = App(), Stats()
    admission = Admission(app, _lagging(0.1), max_lag=0.5, retry_after=2, stats=stats)
    assert await _handshake(admission, {"websocket.http.response": {}}) == []
    assert app.calls == 1 and stats.connections_refused["saturated"] == 0


async def test_a_lagging_loop_answers_503_with_a_spread_retry_after() -> None:
    app, stats = App(), Stats()
    admission = Admission(app, _lagging(0.8), max_lag=0.5, retry_after=2, stats=stats)
    for _ in range(20):
        start, body = await _handshake(admission, {"websocket.http.response": {}})
        assert start["type"] == "websocket.http.response.start" and start["status"] == 503
        headers = dict(start["headers"])
        assert 2 <= int(headers[b"retry-after"]) <= 4
        assert b'"UNAVAILABLE"' in body["body"]
    assert app.calls == 0 and stats.connections_refused["saturated"] == 20


async def test_without_the_denial_extension_the_handshake_is_closed_with_1013() -> None:
    admission = Admission(App(), _lagging(0.8), max_lag=0.5, retry_after=2, stats=Stats())
    [close] = await _handshake(admission, {})
    assert close["type"] == "websocket.close" and close["code"] == 1013


async def test_max_lag_zero_never_refuses() -> None:
    app = App()
    admission = Admission(app, _lagging(5.0), max_lag=0, retry_after=2, stats=Stats())
    assert await _handshake(admission, {}) == []
    assert app.calls == 1
