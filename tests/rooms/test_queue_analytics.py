"""Queue analytics: a report from a room's log, and its CSV. Pure, sync."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from roomlog.identity import Principal, Role
from roomlog.rooms.domain import Command, Event, Meta
from roomlog.rooms.queue import QueueDomain
from roomlog.rooms.queue_analytics import CSV_COLUMNS, summarize, to_csv

D = QueueDomain()
HOUR = 3_600_000
MIN = 60_000
T0 = 1_700_000_000_000 // HOUR * HOUR  # 2023-11-14T22:00:00Z, on the hour
DJ = Principal("dj1", Role.DJ)
ANN, BOB, CAT = (Principal(u, Role.GUEST) for u in ("ann", "bob", "cat"))


class Log:
    """Runs commands through the domain and keeps the log, as the command path would."""

    def __init__(self) -> None:
        self.state = D.initial("set1")
        self.entries: list[tuple[Event, Meta]] = []

    def run(self, at: int, actor: Principal, name: str, **args: Any) -> dict[str, Any]:
        decision = D.decide(self.state, Command(name, args), actor, at)
        for event in decision.events:
            meta = Meta(actor.user, len(self.entries) + 1, at)
            D.apply(self.state, event, meta)
            self.entries.append((event, meta))
        return decision.result

    def submit(self, at: int, guest: Principal, song: str) -> str:
        result = self.run(at, guest, "request.submit", song_id=song, title=song.upper(),
                          artist="Band")
        return str(result["request_id"])


def evening() -> Log:
    """Two hours and a bit of a set; see the comments for what each request does."""
    log = Log()
    log.run(T0, DJ, "queue.settings", max_active_per_guest=5)
    a = log.submit(T0 + 1 * MIN, ANN, "hey")  # accepted, played: waits 30 min
    b = log.submit(T0 + 2 * MIN, BOB, "hey")  # vetoed
    c = log.submit(T0 + 3 * MIN, CAT, "yo")  # played straight from pending: waits 57 min
    d = log.submit(T0 + 4 * MIN, ANN, "zap")  # cancelled
    log.run(T0 + 5 * MIN, BOB, "request.vote", request_id=a)
    log.run(T0 + 5 * MIN, CAT, "request.vote", request_id=a)
    log.run(T0 + 6 * MIN, ANN, "request.vote", request_id=c)
    log.run(T0 + 7 * MIN, ANN, "request.cancel", request_id=d)
    log.run(T0 + 10 * MIN, DJ, "request.accept", request_id=a)
    log.run(T0 + 11 * MIN, DJ, "request.veto", request_id=b, reason="twice is enough")
    log.run(T0 + 31 * MIN, DJ, "request.play", request_id=a)
    log.run(T0 + 60 * MIN, DJ, "request.play", request_id=c)  # a becomes played
    e = log.submit(T0 + 3 * HOUR + 5 * MIN, BOB, "yo")  # accepted then vetoed: pending wait
    log.run(T0 + 3 * HOUR + 6 * MIN, DJ, "request.accept", request_id=e)
    log.run(T0 + 3 * HOUR + 7 * MIN, DJ, "request.veto", request_id=e)
    log.submit(T0 + 3 * HOUR + 8 * MIN, CAT, "new")  # pending
    return log


def test_report_of_a_whole_evening() -> None:
    report = summarize(evening().entries)
    assert report == {
        "range": {"start_ms": None, "end_ms": None},
        "requests": 6,
        "requests_per_hour": [
            {"hour": "2023-11-14T22:00:00Z", "requests": 4, "votes": 3},
            {"hour": "2023-11-14T23:00:00Z", "requests": 0, "votes": 0},
            {"hour": "2023-11-15T00:00:00Z", "requests": 0, "votes": 0},
            {"hour": "2023-11-15T01:00:00Z", "requests": 2, "votes": 0},
        ],
        "accepted": 3,  # a, c (played from pending) and e (its first decision)
        "vetoed": 1,
        "decided": 4,
        "acceptance_rate": 0.75,
        "veto_rate": 0.25,
        "veto_reasons": [{"reason": "twice is enough", "vetoed": 1}],  # e: accepted first
        "median_wait_ms": (30 * MIN + 57 * MIN) // 2,
        "waits_counted": 2,
        "requests_by_hour_of_day": [0, 2] + [0] * 20 + [4, 0],
        "utc_offset_min": 0,
        "votes": 3,
        "by_status": {"pending": 1, "accepted": 0, "playing": 1, "played": 1, "vetoed": 2,
                      "cancelled": 1},
        "top_songs": [
            {"song_id": "hey", "title": "HEY", "artist": "Band", "requests": 2, "votes": 2},
            {"song_id": "yo", "title": "YO", "artist": "Band", "requests": 2, "votes": 1},
            {"song_id": "new", "title": "NEW", "artist": "Band", "requests": 1, "votes": 0},
            {"song_id": "zap", "title": "ZAP", "artist": "Band", "requests": 1, "votes": 0},
        ],
        "top_artists": [{"artist": "Band", "requests": 6, "votes": 3}],
        "top_guests": [{"user": "ann", "requests": 2, "votes": 2},
                       {"user": "bob", "requests": 2, "votes": 0},
                       {"user": "cat", "requests": 2, "votes": 1}],
        "sets": [{"set": 1, "start_ms": T0, "end_ms": None, "requests": 6}],
        "payments": {"requests": {"paid": 0, "free": 6}, "currencies": {}},
    }
    assert json.loads(json.dumps(report)) == report


def test_range_selects_by_submission_and_reports_as_of_its_end() -> None:
    entries = evening().entries
    first = summarize(entries, start_ms=T0, end_ms=T0 + 30 * MIN)
    assert first["requests"] == 4
    # As of T0 + 30 min, a is accepted (not yet playing) and c still pending.
    assert first["by_status"] == {"pending": 1, "accepted": 1, "playing": 0, "played": 0,
                                  "vetoed": 1, "cancelled": 1}
    assert first["median_wait_ms"] is None and first["waits_counted"] == 0
    assert first["acceptance_rate"] == 0.5
    late = summarize(entries, start_ms=T0 + 2 * HOUR)
    assert late["requests"] == 2 and late["top_guests"] == [
        {"user": "bob", "requests": 1, "votes": 0}, {"user": "cat", "requests": 1, "votes": 0}]
    assert late["requests_per_hour"] == [{"hour": "2023-11-15T01:00:00Z", "requests": 2,
                                          "votes": 0}]
    assert late["sets"] == summarize(entries)["sets"]  # the picker sees every set
    assert late["by_status"]["vetoed"] == 1  # earlier requests' events are not counted


def test_empty_log_and_top_limit() -> None:
    report = summarize([])
    assert report["requests"] == 0 and report["requests_per_hour"] == []
    assert report["acceptance_rate"] is None and report["median_wait_ms"] is None
    assert summarize(evening().entries, top=1)["top_songs"][0]["song_id"] == "hey"
    assert len(summarize(evening().entries, top=1)["top_guests"]) == 1


def test_csv_is_one_flat_table() -> None:
    text = to_csv(summarize(evening().entries, start_ms=T0))
    assert text.startswith(",".join(CSV_COLUMNS) + "\r\n")
    rows = list(csv.DictReader(io.StringIO(text)))
    by = {(r["section"], r["key"]): r for r in rows}
    assert by[("summary", "acceptance_rate")]["value"] == "0.75"
    assert by[("summary", "end_ms")]["value"] == ""
    assert by[("summary", "start_ms")]["value"] == str(T0)
    assert by[("per_hour", "2023-11-15T01:00:00Z")]["requests"] == "2"
    assert by[("status", "vetoed")]["requests"] == "2"
    song = by[("top_song", "hey")]
    assert (song["label"], song["requests"], song["votes"]) == ("HEY - Band", "2", "2")
    assert (by[("top_guest", "ann")]["requests"], by[("top_guest", "ann")]["votes"]) == ("2", "2")
    assert by[("per_hour", "2023-11-14T22:00:00Z")]["votes"] == "3"
    assert by[("hour_of_day", "22")]["requests"] == "4"
    assert by[("hour_of_day", "05")]["requests"] == "0"
    assert by[("veto_reason", "twice is enough")]["requests"] == "1"
    assert by[("top_artist", "Band")]["votes"] == "3"
    assert by[("summary", "veto_rate")]["value"] == "0.25"
    assert {r["section"] for r in rows} == {"summary", "per_hour", "hour_of_day", "status",
                                            "veto_reason", "top_song", "top_artist", "top_guest",
                                            "money"}


def test_csv_quotes_awkward_titles() -> None:
    log = Log()
    log.run(T0, ANN, "request.submit", song_id="s1", title='Say "Hi", now', artist="A, B")
    rows = list(csv.DictReader(io.StringIO(to_csv(summarize(log.entries)))))
    song = next(r for r in rows if r["section"] == "top_song")
    assert song["label"] == 'Say "Hi", now - A, B'


def two_sets() -> Log:
    """A set, a break, a second set: reasons spelled differently, three artists."""
    log = Log()
    log.run(T0, DJ, "queue.settings", max_active_per_guest=5)
    a = log.run(T0 + MIN, ANN, "request.submit", song_id="s1", title="One", artist="ABBA")
    b = log.run(T0 + 2 * MIN, BOB, "request.submit", song_id="s2", title="Two",
                artist=" abba ")["request_id"]
    c = log.run(T0 + 3 * MIN, CAT, "request.submit", song_id="s3", title="Three",
                artist="Queen")["request_id"]
    log.run(T0 + 4 * MIN, DJ, "request.veto", request_id=a["request_id"], reason="Not tonight")
    log.run(T0 + 5 * MIN, DJ, "request.veto", request_id=b, reason="  not   TONIGHT")
    log.run(T0 + 6 * MIN, DJ, "request.veto", request_id=c)
    log.run(T0 + 50 * MIN, DJ, "queue.close")
    log.run(T0 + 2 * HOUR, DJ, "queue.open")
    d = log.run(T0 + 2 * HOUR + MIN, ANN, "request.submit", song_id="s4", title="Four",
                artist="Blur")["request_id"]
    log.run(T0 + 2 * HOUR + 2 * MIN, BOB, "request.vote", request_id=d)
    log.run(T0 + 2 * HOUR + 3 * MIN, DJ, "request.veto", request_id=d, reason="not tonight")
    return log


def test_sets_reasons_artists_and_the_local_hour_of_day() -> None:
    report = summarize(two_sets().entries, utc_offset_min=-90)  # 22:01 UTC is 20:31 local
    assert report["sets"] == [
        {"set": 1, "start_ms": T0, "end_ms": T0 + 50 * MIN, "requests": 3},
        {"set": 2, "start_ms": T0 + 2 * HOUR, "end_ms": None, "requests": 1},
    ]
    assert report["veto_reasons"] == [{"reason": "Not tonight", "vetoed": 3},
                                      {"reason": None, "vetoed": 1}]
    assert (report["vetoed"], report["veto_rate"], report["acceptance_rate"]) == (4, 1.0, 0.0)
    assert report["top_artists"] == [{"artist": "ABBA", "requests": 2, "votes": 0},
                                     {"artist": "Blur", "requests": 1, "votes": 1},
                                     {"artist": "Queen", "requests": 1, "votes": 0}]
    hours = report["requests_by_hour_of_day"]
    assert (hours[20], hours[22], sum(hours)) == (3, 1, 4)  # 00:01 UTC is 22:31 local
    second = summarize(two_sets().entries, start_ms=T0 + 2 * HOUR)  # the picker's set 2
    assert second["requests"] == 1 and second["votes"] == 1
    assert second["veto_reasons"] == [{"reason": "not tonight", "vetoed": 1}]
