// The analytics pages' charts from the hub's reports: each chart's series from a report
// (the reports of the hand-made logs in tests/rooms/test_queue_analytics.py and
// test_repair_stats.py, trimmed), the range picker, the CSV's name, numbers for people.
//   node --test clients/web/test/

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  DAY_MS, csvName, dayStart, earnings, dayValue, duration, pickRange, queueView, rate, repairView,
  reportQuery,
} from "../stats-model.js";

const MIN = 60_000;
const T0 = Date.parse("2023-11-14T22:00:00Z");

// summarize(evening().entries) of tests/rooms/test_queue_analytics.py
const QUEUE = {
  requests: 6, accepted: 3, vetoed: 1, decided: 4, acceptance_rate: 0.75, veto_rate: 0.25,
  requests_per_hour: [
    { hour: "2023-11-14T22:00:00Z", requests: 4, votes: 3 },
    { hour: "2023-11-14T23:00:00Z", requests: 0, votes: 0 },
    { hour: "2023-11-15T00:00:00Z", requests: 0, votes: 0 },
    { hour: "2023-11-15T01:00:00Z", requests: 2, votes: 0 },
  ],
  veto_reasons: [{ reason: "twice is enough", vetoed: 1 }],
  median_wait_ms: (30 * MIN + 57 * MIN) / 2, waits_counted: 2,
  requests_by_hour_of_day: [0, 2, ...Array(20).fill(0), 4, 0], utc_offset_min: 0, votes: 3,
  by_status: { pending: 1, accepted: 0, playing: 1, played: 1, vetoed: 2, cancelled: 1 },
  top_songs: [{ song_id: "hey", title: "HEY", artist: "Band", requests: 2, votes: 2 }],
  top_artists: [{ artist: "Band", requests: 6, votes: 3 }],
  top_guests: [{ user: "ann", requests: 2, votes: 2 }, { user: "bob", requests: 2, votes: 0 }],
  sets: [{ set: 1, start_ms: T0, end_ms: null, requests: 6 }],
  payments: { requests: { paid: 0, free: 6 }, currencies: {} },
};

test("the DJ's charts: requests and upvotes per hour, by hour of day, decisions", () => {
  const v = queueView(QUEUE);
  const [overTime, byHour, decisions] = v.charts;
  assert.deepEqual(overTime.x, [0, 1, 2, 3].map((h) => (T0 + h * 3_600_000) / 1000));
  assert.deepEqual(overTime.series.map((s) => [s.key, s.values, s.style]), [
    ["requests", [4, 0, 0, 2], "bars"], ["votes", [3, 0, 0, 0], "line"]]);
  assert.equal(byHour.labels[0], "00");
  assert.equal(byHour.labels[23], "23");
  assert.deepEqual(byHour.series[0].values, QUEUE.requests_by_hour_of_day);
  assert.deepEqual(decisions.labels, ["stats.request.pending", "stats.request.accepted",
    "stats.request.playing", "stats.request.played", "stats.request.vetoed",
    "stats.request.cancelled"]);
  assert.deepEqual(decisions.series[0].values, [1, 0, 1, 1, 2, 1]);
  assert.deepEqual(v.tiles, { requests: 6, acceptance: 0.75, veto: 0.25,
    wait: 43.5 * MIN, waits: 2, votes: 3, earnings: null });
  assert.deepEqual(v.lists.vetoReasons, [{ key: "twice is enough", label: "twice is enough",
    value: 1 }]);
  assert.deepEqual(v.lists.topSongs, [{ key: "hey", label: "HEY · Band", value: 2, extra: 2 }]);
  assert.deepEqual(v.lists.topGuests.map((g) => [g.label, g.value, g.extra]),
    [["ann", 2, 2], ["bob", 2, 0]]);
});

test("an empty report gives empty charts, not errors", () => {
  const v = queueView({ requests: 0, requests_per_hour: [], requests_by_hour_of_day: Array(24)
    .fill(0), by_status: {}, veto_reasons: [], top_songs: [], top_artists: [], top_guests: [],
  sets: [], earnings: null });
  assert.deepEqual(v.charts[0].x, []);
  assert.deepEqual(v.charts[2].series[0].values, [0, 0, 0, 0, 0, 0]);
  assert.deepEqual(v.lists.topSongs, []);
});

// summarize(logs(), sla_ms=...) of tests/rooms/test_repair_stats.py, trimmed
const REPAIR = {
  tickets: 4, median_repair_ms: 160 * MIN, median_turnaround_ms: 230 * MIN,
  time_in_status: {
    received: { tickets: 4, total_ms: 60 * MIN, median_ms: 15 * MIN, limit_ms: null, breaches: 0 },
    diagnosing: { tickets: 3, total_ms: 130 * MIN, median_ms: 30 * MIN, limit_ms: 25 * MIN,
      breaches: 2 },
    on_hold: { tickets: 1, total_ms: 60 * MIN, median_ms: 60 * MIN, limit_ms: 60 * MIN,
      breaches: 0 },
  },
  by_status: { diagnosing: 1, collected: 2, cancelled: 1 },
  technicians: [{ technician: "tina", tickets: 3, open: 0, repaired: 1, qa_failed: 1,
    median_repair_ms: 160 * MIN }],
  quotes: { sent: 2, approved: 1, declined: 1, pending: 0, approval_rate: 0.5 },
  qa: { recorded: 2, failed: 1, tickets_failed: 1, items: [{ item: "Screen", failed: 1 }] },
  per_day: [{ day: "2023-11-14", created: 3, repaired: 0 },
    { day: "2023-11-15", created: 1, repaired: 1 }],
  sla: { limits_ms: { diagnosing: 25 * MIN }, breaches: [
    { ticket: "C", status: "diagnosing", spent_ms: 80 * MIN, limit_ms: 25 * MIN,
      over_ms: 55 * MIN, current: true, technicians: ["tom"] },
    { ticket: "B", status: "diagnosing", spent_ms: 30 * MIN, limit_ms: 25 * MIN,
      over_ms: 5 * MIN, current: false, technicians: ["tom"] }] },
};

test("the shop's charts: time in status against its limit, per day, by status, quotes", () => {
  const v = repairView(REPAIR);
  const [inStatus, perDay, byStatus, quotes] = v.charts;
  assert.deepEqual(inStatus.labels, ["status.received", "status.diagnosing", "status.on_hold"]);
  assert.deepEqual(inStatus.series.map((s) => [s.key, s.values]), [
    ["median", [15 * MIN, 30 * MIN, 60 * MIN]], ["limit", [null, 25 * MIN, 60 * MIN]],
    ["breaches", [0, 2, 0]]]);
  assert.deepEqual(perDay.x, [Date.parse("2023-11-14T00:00:00Z") / 1000,
    Date.parse("2023-11-15T00:00:00Z") / 1000]);
  assert.deepEqual(perDay.series.map((s) => s.values), [[3, 1], [0, 1]]);
  assert.equal(byStatus.labels[2], "status.awaiting_approval.staff"); // the staff's words
  assert.deepEqual(byStatus.series[0].values, [0, 1, 0, 0, 0, 0, 0, 2, 1]);
  assert.deepEqual(quotes.series[0].values, [1, 1, 0]);
  assert.deepEqual(v.lists.qaItems, [{ key: "Screen", label: "Screen", value: 1 }]);
  assert.deepEqual(v.tiles, { tickets: 4, repair: 160 * MIN, turnaround: 230 * MIN,
    approval: 0.5, qaFailed: 1, breaches: 2, open: 1 });
  assert.equal(v.breaches[0].ticket, "C");
});

test("the range: a set's own, or whole local days; the query and the file name", () => {
  const sets = [{ set: 1, start_ms: 100, end_ms: 900 }, { set: 2, start_ms: 1000, end_ms: null }];
  assert.deepEqual(pickRange({ set: "1" }, sets), { from: 100, to: 900 });
  assert.deepEqual(pickRange({ set: "2", fromDay: "2024-01-01" }, sets), { from: 1000, to: null });
  assert.deepEqual(pickRange({}, sets), { from: null, to: null });
  const day = dayStart("2024-03-09");
  assert.equal(new Date(day).getHours(), 0);
  assert.deepEqual(pickRange({ fromDay: "2024-03-09", toDay: "2024-03-09" }),
    { from: day, to: day + DAY_MS });
  assert.equal(dayStart("9 March"), null);
  assert.equal(dayValue(day), "2024-03-09");
  assert.equal(String(reportQuery({ from: 5, to: null }, -300)), "from=5&tz=-300");
  assert.equal(String(reportQuery({ from: null, to: null }, 0, { format: "csv" })), "format=csv");
  assert.equal(csvName("analytics-queue:club 42", { from: null, to: null }),
    "analytics-queue-club-42-all.csv");
  assert.equal(csvName("repair-stats", { from: day, to: day + DAY_MS }),
    "repair-stats-2024-03-09_2024-03-09.csv");
});

test("durations and rates in the reader's language", () => {
  assert.equal(duration(null), "–");
  assert.equal(duration(42 * MIN, "en"), "42 min");
  assert.equal(duration(150 * MIN, "en"), "2.5 hr");
  assert.equal(duration(150 * MIN, "es"), "2,5 h");
  assert.equal(duration(3 * DAY_MS, "en"), "3 days");
  assert.equal(rate(0.4, "en"), "40%");
  assert.equal(rate(0.4, "es"), "40\u00a0%");
  assert.equal(rate(null), "–");
});

test("earnings per currency from the report's payments; none without payments", () => {
  assert.equal(earnings(undefined), null);
  assert.equal(earnings({ requests: { paid: 0, free: 2 }, currencies: {} }), null);
  const eur = { earned: 1000, paid_requests: 3, tips: { count: 0, amount: 0 },
    refunds: { vetoed: { count: 2, amount: 1000, refunded: 1 },
      cancelled: { count: 1, amount: 500, refunded: 0 } } };
  assert.deepEqual(earnings({ requests: { paid: 3, free: 0 }, currencies: { EUR: eur } }),
    { EUR: { paid: 3, earned: 1000, refunds: 3, refunded: 1500 } });
});
