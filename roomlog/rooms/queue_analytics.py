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
* ``veto_rate``: vetoed / decided (the complement of ``acceptance_rate``);
  ``veto_reasons``: the vetoed decisions by reason (spacing and case aside; the
  first spelling is shown; ``None`` for a veto without a reason), most first.
* ``requests_per_hour`` rows also carry ``votes``: upvotes cast in that hour on
  the selected requests (an unvote does not take one back: it is activity).
* ``requests_by_hour_of_day``: 24 counts of submissions by the hour of the day,
  local to ``utc_offset_min`` (minutes east of UTC; the browser's offset), so
  "when do they ask" reads in the DJ's own clock.
* ``votes``: upvotes standing on the selected requests as of ``end_ms``.
* ``top_songs``: by number of requests, then total votes (as of ``end_ms``), then
  song_id; ``top_artists`` likewise by artist (spacing and case aside);
  ``top_guests`` (the busiest): by number of requests, then user id, with the
  votes their requests got.
* ``by_status``: every status, the count of requests whose status it is at ``end_ms``.
* ``sets``: the sets of the whole log, whatever the range (for a set picker): a
  set runs from the log's first entry, or a ``queue.opened``, to the next
  ``queue.closed`` (``end_ms`` None while it is open), with the requests
  submitted in it.
* ``earnings``: ``None`` until paid requests exist. The paid-requests work fills
  it here, from its payment and refund events, as ``{currency: {"paid": n,
  "earned": minor units, "refunds": n, "refunded": minor units}}``; the DJ page
  shows it when it is not ``None`` (clients/web/analytics.js, "earnings").
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
    reason: str | None = None  # of the veto that decided it
    started_ms: int | None = None
    votes_cast: list[int] = field(default_factory=list)  # when each upvote came


def _follow(track: _Track, event: Event, ts: int) -> None:
    if event.type == "request.voted":
        track.voters.add(str(event.data["user"]))
        track.votes_cast.append(ts)
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
        reason = event.data.get("reason")
        track.reason = " ".join(str(reason).split()) or None if reason is not None else None
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
    votes = Counter(ts // HOUR_MS for t in tracks for ts in t.votes_cast)
    if not counts:
        return []
    hours = range(min(counts | votes), max(counts | votes) + 1)
    return [{"hour": _hour(h * HOUR_MS), "requests": counts[h], "votes": votes[h]}
            for h in hours]


def _hour_of_day(tracks: list[_Track], utc_offset_min: int) -> list[int]:
    offset = utc_offset_min * 60_000
    counts = Counter((t.submitted_ms + offset) // HOUR_MS % 24 for t in tracks)
    return [counts[h] for h in range(24)]


def _veto_reasons(tracks: list[_Track]) -> list[dict[str, Any]]:
    counts: Counter[str | None] = Counter()
    shown: dict[str | None, str | None] = {}
    for t in tracks:
        if t.decision != "vetoed":
            continue
        key = t.reason.casefold() if t.reason is not None else None
        shown.setdefault(key, t.reason)
        counts[key] += 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0] is None, item[0] or ""))
    return [{"reason": shown[key], "vetoed": n} for key, n in ranked]


def _top_songs(tracks: list[_Track], top: int) -> list[dict[str, Any]]:
    songs: dict[str, dict[str, Any]] = {}
    for t in tracks:
        song = songs.setdefault(t.song_id, {
            "song_id": t.song_id, "title": t.title, "artist": t.artist, "requests": 0, "votes": 0})
        song["requests"] += 1
        song["votes"] += len(t.voters)
    ranked = sorted(songs.values(), key=lambda s: (-s["requests"], -s["votes"], s["song_id"]))
    return ranked[:top]


def _top_artists(tracks: list[_Track], top: int) -> list[dict[str, Any]]:
    artists: dict[str, dict[str, Any]] = {}
    for t in tracks:
        name = " ".join(t.artist.split())
        artist = artists.setdefault(name.casefold(), {"artist": name, "requests": 0, "votes": 0})
        artist["requests"] += 1
        artist["votes"] += len(t.voters)
    ranked = sorted(artists.items(), key=lambda kv: (-kv[1]["requests"], -kv[1]["votes"], kv[0]))
    return [row for _, row in ranked[:top]]


def _top_guests(tracks: list[_Track], top: int) -> list[dict[str, Any]]:
    counts = Counter(t.user for t in tracks)
    votes = Counter({t.user: 0 for t in tracks})
    for t in tracks:
        votes[t.user] += len(t.voters)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [{"user": user, "requests": n, "votes": votes[user]} for user, n in ranked[:top]]


def _sets(entries: list[tuple[Event, Meta]]) -> list[dict[str, Any]]:
    sets: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for event, meta in entries:
        if current is None and event.type != "queue.closed":
            current = {"set": len(sets) + 1, "start_ms": meta.ts, "end_ms": None, "requests": 0}
            sets.append(current)
        if current is None:
            continue
        if event.type == "request.submitted":
            current["requests"] += 1
        elif event.type == "queue.closed":
            current["end_ms"] = meta.ts
            current = None
    return sets


def summarize(
    entries: Iterable[tuple[Event, Meta]],
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    top: int = 10,
    utc_offset_min: int = 0,
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
        "veto_rate": round(decisions["vetoed"] / decided, 4) if decided else None,
        "veto_reasons": _veto_reasons(tracks),
        "median_wait_ms": round(statistics.median(waits)) if waits else None,
        "waits_counted": len(waits),
        "requests_by_hour_of_day": _hour_of_day(tracks, utc_offset_min),
        "utc_offset_min": utc_offset_min,
        "votes": sum(len(t.voters) for t in tracks),
        "by_status": {str(s): statuses[s] for s in Status},
        "top_songs": _top_songs(tracks, top),
        "top_artists": _top_artists(tracks, top),
        "top_guests": _top_guests(tracks, top),
        "payments": money(entries, start_ms=start_ms, end_ms=end_ms),
        "sets": _sets(entries),
    }


def to_csv(report: dict[str, Any]) -> str:
    """The report as one flat CSV table (RFC 4180, CRLF line ends).

    Columns :data:`CSV_COLUMNS`; each row belongs to a ``section``:

    ============  ==========================  =====================================
    section       key                         filled columns
    ============  ==========================  =====================================
    summary       requests, accepted, vetoed,  value (empty for None)
                  decided, acceptance_rate,
                  veto_rate, median_wait_ms,
                  votes, utc_offset_min,
                  start_ms, end_ms
    per_hour      the hour, ISO 8601 UTC      requests, votes
    hour_of_day   00 to 23 (local)            requests
    status        a status                    requests
    veto_reason   the reason (empty: none)    requests
    top_song      song_id                     label ("title - artist"), requests, votes
    top_artist    the artist                  requests, votes
    top_guest     user id                     requests, votes
    money, ...    see :func:`.queue_pay_analytics.money_rows`
    ============  ==========================  =====================================

    One table (not sections with their own headers) so that a spreadsheet or
    ``csv.DictReader`` reads it whole and a filter on ``section`` splits it.
    """
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    summary_keys = ("requests", "accepted", "vetoed", "decided", "acceptance_rate",
                    "veto_rate", "median_wait_ms", "votes", "utc_offset_min")
    for key in summary_keys:
        writer.writerow(["summary", key, "", "", "", _cell(report[key])])
    for key in ("start_ms", "end_ms"):
        writer.writerow(["summary", key, "", "", "", _cell(report["range"][key])])
    for row in report["requests_per_hour"]:
        writer.writerow(["per_hour", row["hour"], "", row["requests"], row["votes"], ""])
    for hour, n in enumerate(report["requests_by_hour_of_day"]):
        writer.writerow(["hour_of_day", f"{hour:02d}", "", n, "", ""])
    for status, n in report["by_status"].items():
        writer.writerow(["status", status, "", n, "", ""])
    for row in report["veto_reasons"]:
        writer.writerow(["veto_reason", _cell(row["reason"]), "", row["vetoed"], "", ""])
    for song in report["top_songs"]:
        label = f"{song['title']} - {song['artist']}"
        writer.writerow(["top_song", song["song_id"], label, song["requests"], song["votes"], ""])
    for artist in report["top_artists"]:
        writer.writerow(["top_artist", artist["artist"], "", artist["requests"], artist["votes"],
                         ""])
    for guest in report["top_guests"]:
        writer.writerow(["top_guest", guest["user"], "", guest["requests"], guest["votes"], ""])
    writer.writerows(money_rows(report["payments"]))
    return out.getvalue()


def _cell(value: Any) -> str:
    return "" if value is None else str(value)
