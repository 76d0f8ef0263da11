"""Repair rooms: the fold of the stored log is the live state (seeded random walks),
and snapshots round-trip."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from roomlog.errors import RoomlogError
from roomlog.rooms.domain import Event, Meta, Notice
from roomlog.rooms.repair_apply import APPLIERS
from tests.rooms.test_repair import ADMIN, CUST, OTHER, SERVICE, T0, TECH, TECH2, D, drive
from tests.rooms.test_repair_visibility import random_command

SEEDS = range(10)


@pytest.mark.parametrize("seed", SEEDS)
def test_folding_the_log_rebuilds_the_deciders_state(seed: int) -> None:
    log, codes = walk(seed)
    assert len(log) > 20
    assert {"FORBIDDEN", "INVALID_TRANSITION"} <= codes


def test_the_walks_cover_every_event_type() -> None:
    seen = {e.type for seed in SEEDS for e, _ in walk(seed)[0]}
    assert seen == set(APPLIERS)


def walk(seed: int) -> tuple[list[tuple[Event, Meta]], set[str]]:
    """A random walk checked at every step; returns the stored log and the error codes."""
    rng = random.Random(1000 + seed)
    live = D.initial("t1")
    shadow = D.initial("t1")  # folded from the stored (JSON round-tripped) log only
    log: list[tuple[Event, Meta]] = []
    live_notices: list[Notice] = []
    codes: set[str] = set()
    now = T0
    snapshot: dict[str, Any] | None = None
    snapshot_at = 0
    for step in range(300):
        if step == 150:
            snapshot = json.loads(json.dumps(D.dump(live)))
            snapshot_at = len(log)
        now += rng.randint(0, 900_000)
        actor, command = random_command(rng, live, now)
        before = D.dump(live)
        try:
            decision = D.decide(live, command, actor, now)
        except RoomlogError as err:
            codes.add(str(err.code))
            assert err.code != "INTERNAL"
            assert D.dump(live) == before
            continue
        assert D.dump(live) == before, "decide mutated the state"
        json.dumps(decision.result)
        for event in decision.events:
            meta = Meta(actor.user, len(log) + 1, now)
            live_notices += D.apply(live, event, meta)
            stored = Event.from_data(json.loads(json.dumps(event.to_data())))
            D.apply(shadow, stored, meta)
            log.append((stored, meta))
        assert D.dump(shadow) == D.dump(live)
    fresh = D.initial("t1")
    notices = [n for event, meta in log for n in D.apply(fresh, event, meta)]
    assert fresh == live and D.dump(fresh) == D.dump(live)
    assert notices == live_notices
    for viewer in (TECH, TECH2, CUST, OTHER, ADMIN, SERVICE):
        assert D.view(fresh, viewer) == D.view(live, viewer)
    assert D.load(json.loads(json.dumps(D.dump(live)))) == live
    assert snapshot is not None  # a snapshot plus the rest of the log also gets there
    resumed = D.load(snapshot)
    for event, meta in log[snapshot_at:]:
        D.apply(resumed, event, meta)
    assert resumed == live
    # history is the status sequence of the log, with its times
    changes = [(e.data["to"], m.ts) for e, m in log if e.type == "status.changed"]
    assert [(c.status, c.ts) for c in live.history[1:]] == changes
    return log, codes


def test_dump_load_round_trip_and_version() -> None:
    t = drive("awaiting_approval")
    t.run(CUST, "quote.decline", reason="later")
    t.run(TECH, "note.add", text="n", visibility="internal")
    t.run(TECH, "photo.add", category="after", caption="c", url="https://x.example/a.jpg")
    data = D.dump(t.state)
    assert json.loads(json.dumps(data)) == data
    loaded = D.load(json.loads(json.dumps(data)))
    assert loaded == t.state and D.dump(loaded) == data
    with pytest.raises(ValueError, match="version"):
        D.load({**data, "version": 99})
    assert D.load(D.dump(D.initial("new"))) == D.initial("new")


def test_dump_does_not_alias_the_state() -> None:
    t = drive("received")
    t.state.internal = {"nested": {"a": 1}}
    data = D.dump(t.state)
    data["internal"]["nested"]["a"] = 2
    assert t.state.internal == {"nested": {"a": 1}}
