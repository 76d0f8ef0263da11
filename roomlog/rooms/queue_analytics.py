"""Analytics of one ``queue:`` room, from its log. Pure: no clock, no I/O.

:func:`summarize` reads ``(Event, Meta)`` pairs in log order and returns a
JSON-compatible report; :func:`to_csv` renders that report as CSV text.

The time range ``[start_ms, end_ms)`` selects **requests by submission time**
and reports their state **as of** ``end_ms``: events at or after ``end_ms`` are
ignored, and so are the later events of requests submitted before
``start_ms``. A report on a closed range therefore never changes.

Definitions:

* ``requests_per_hour``: submissions per UTC hour, every hour from the first
  to the last bucket (empty hours are 0, so a chart has no holes).
* ``acceptance_rate``: accepted / decided, where a request's decision is the
  DJ's first move on it: accept, play or played count as accepted, veto as
  vetoed (an accepted request vetoed later stays accepted here). ``None`` when
  nothing was decided. Cancelled and still-pending requests are undecided.
* ``median_wait_ms``: from submission to the moment the song started
  (``request.playing``), or to ``request.played`` for a song marked played
  without being announced; over the requests that got there. ``None`` if none.
* ``top_songs``: by number of requests, then total votes (as of ``end_ms``), then
  song_id; ``top_guests``: by number of requests, then user id.
* ``by_status``: every status, the count of requests whose status it is at ``end_ms``.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from roomlog.rooms.domain import Event, Meta
from roomlog.rooms.queue_pay_analytics import money, money_rows
from roomlog.rooms.queue_state import HOUR_MS, Status

__all__ = ["CSV_COLUMNS", "summarize", "to_csv"]

CSV_COLUMNS = ("section", "key", "label", "requests", "votes", "value")

_ACCEPTING = {"request.accepted", "request.playing", "request.played"}
_STATUS_OF = {
    "request.cancelled": Status.CANCELLED,
    "request.accepted": Status.ACCEPTED,
    "request.vetoed": Status.VETOED,
    "request.playing": Status.PLAYING,
    "request.played": Status.PLAYED,
}


@dataclass(slots=True)
class _Track:
    """What the report needs to know about one request."""

    user: str
    song_id: str
    title: str
    artist: str
    submitted_ms: int
    status: Status = Status.PENDING
    voters: set[str] = field(default_factory=set)
    decision: str | None = None  # "accepted" | "vetoed"
    started_ms: int | None = None


def _follow(track: _Track, event: Event, ts: int) -> None:
    if event.type == "request.voted":
        track.voters.add(str(event.data["user"]))
    elif event.type == "request.unvoted":
        track.voters.discard(str(event.data["user"]))
    status = _STATUS_OF.get(event.type)
    if status is None:
        return
    track.status = status
    if track.decision is None and event.type in _ACCEPTING:
        track.decision = "accepted"
    elif track.decision is None and status is Status.VETOED:
        track.decision = "vetoed"
    if status in (Status.PLAYING, Status.PLAYED) and track.started_ms is None:
        track.started_ms = ts


def _collect(
    entries: Iterable[tuple[Event, Meta]], start_ms: int | None, end_ms: int | None
) -> dict[str, _Track]:
    tracks: dict[str, _Track] = {}
    for event, meta in entries:
        if end_ms is not None and meta.ts >= end_ms:
            continue  # not ``break``: commit times of a log may step back a little
        if event.type == "request.submitted":
            if start_ms is None or meta.ts >= start_ms:
                body = event.data["request"]
                tracks[str(body["id"])] = _Track(
                    str(body["user"]), str(body["song_id"]), str(body["title"]),
                    str(body["artist"]), meta.ts)
            continue
        track = tracks.get(str(event.data.get("request_id")))
        if track is not None:
            _follow(track, event, meta.ts)
    return tracks


def _hour(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%dT%H:00:00Z")


def _per_hour(tracks: list[_Track]) -> list[dict[str, Any]]:
    counts = Counter(t.submitted_ms // HOUR_MS for t in tracks)
    if not counts:
        return []
    hours = range(min(counts), max(counts) + 1)
    return [{"hour": _hour(h * HOUR_MS), "requests": counts[h]} for h in hours]


def _top_songs(tracks: list[_Track], top: int) -> list[dict[str, Any]]:
    songs: dict[str, dict[str, Any]] = {}
    for t in tracks:
        song = songs.setdefault(t.song_id, {
            "song_id": t.song_id, "title": t.title, "artist": t.artist, "requests": 0, "votes": 0})
        song["requests"] += 1
        song["votes"] += len(t.voters)
    ranked = sorted(songs.values(), key=lambda s: (-s["requests"], -s["votes"], s["song_id"]))
    return ranked[:top]


def _top_guests(tracks: list[_Track], top: int) -> list[dict[str, Any]]:
    counts = Counter(t.user for t in tracks)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [{"user": user, "requests": n} for user, n in ranked[:top]]


def summarize(
    entries: Iterable[tuple[Event, Meta]],
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    top: int = 10,
) -> dict[str, Any]:
    """The report of one room's log (in log order) over ``[start_ms, end_ms)``;
    ``payments`` is the money report (:mod:`.queue_pay_analytics`)."""
    entries = list(entries)
    tracks = list(_collect(entries, start_ms, end_ms).values())
    decisions = Counter(t.decision for t in tracks if t.decision is not None)
    decided = decisions["accepted"] + decisions["vetoed"]
    waits = [t.started_ms - t.submitted_ms for t in tracks if t.started_ms is not None]
    statuses = Counter(t.status for t in tracks)
    return {
        "range": {"start_ms": start_ms, "end_ms": end_ms},
        "requests": len(tracks),
        "requests_per_hour": _per_hour(tracks),
        "accepted": decisions["accepted"],
        "vetoed": decisions["vetoed"],
        "decided": decided,
        "acceptance_rate": round(decisions["accepted"] / decided, 4) if decided else None,
        "median_wait_ms": round(statistics.median(waits)) if waits else None,
        "waits_counted": len(waits),
        "by_status": {str(s): statuses[s] for s in Status},
        "top_songs": _top_songs(tracks, top),
        "top_guests": _top_guests(tracks, top),
        "payments": money(entries, start_ms=start_ms, end_ms=end_ms),
    }


def to_csv(report: dict[str, Any]) -> str:
    """The report as one flat CSV table (RFC 4180, CRLF line ends).

    Columns :data:`CSV_COLUMNS`; each row belongs to a ``section``:

    ============  ==========================  =====================================
    section       key                         filled columns
    ============  ==========================  =====================================
    summary       requests, accepted, vetoed,  value (empty for None)
                  decided, acceptance_rate,
                  median_wait_ms, start_ms,
                  end_ms
    per_hour      the hour, ISO 8601 UTC      requests
    status        a status                    requests
    top_song      song_id                     label ("title - artist"), requests, votes
    top_guest     user id                     requests
    money, ...    see :func:`.queue_pay_analytics.money_rows`
    ============  ==========================  =====================================

    One table (not sections with their own headers) so that a spreadsheet or
    ``csv.DictReader`` reads it whole and a filter on ``section`` splits it.
    """
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    summary_keys = ("requests", "accepted", "vetoed", "decided", "acceptance_rate",
                    "median_wait_ms")
    for key in summary_keys:
        writer.writerow(["summary", key, "", "", "", _cell(report[key])])
    for key in ("start_ms", "end_ms"):
        writer.writerow(["summary", key, "", "", "", _cell(report["range"][key])])
    for row in report["requests_per_hour"]:
        writer.writerow(["per_hour", row["hour"], "", row["requests"], "", ""])
    for status, n in report["by_status"].items():
        writer.writerow(["status", status, "", n, "", ""])
    for song in report["top_songs"]:
        label = f"{song['title']} - {song['artist']}"
        writer.writerow(["top_song", song["song_id"], label, song["requests"], song["votes"], ""])
    for guest in report["top_guests"]:
        writer.writerow(["top_guest", guest["user"], "", guest["requests"], "", ""])
    writer.writerows(money_rows(report["payments"]))
    return out.getvalue()


def _cell(value: Any) -> str:
    return "" if value is None else str(value)
