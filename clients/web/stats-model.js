// What the charts of the analytics pages show, from the hub's reports: pure functions (no
// DOM, no uPlot), tested with node (clients/web/test/stats-model.test.mjs) and read by
// analytics.js (the DJ's numbers, GET /v1/rooms/{room}/analytics) and repair-stats.js (the
// shop's, GET /v1/repairs/stats). The reports' fields are defined in
// roomlog/rooms/queue_analytics.py and roomlog/rooms/repair_stats.py.
//
// A chart spec: {id, kind: "time" | "bars", x (seconds, for "time") or labels (for "bars"),
// series: [{key, values, style: "bars" | "line" | "points"}]}. A list: [{key, label, value,
// extra}] (drawn as a table with bars). Labels that need words carry catalogue keys; the
// page translates them.

export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;

export const QUEUE_STATUSES = ["pending", "accepted", "playing", "played", "vetoed", "cancelled"];
export const REPAIR_STATUSES = ["received", "diagnosing", "awaiting_approval", "repairing",
  "quality_check", "ready_for_pickup", "on_hold", "collected", "cancelled"];

/** The staff's name of a repair status (the catalogue's; the customer's words aside). */
export const repairStatusKey = (s) => (s === "awaiting_approval" ? `status.${s}.staff`
  : `status.${s}`);

const seconds = (iso) => Date.parse(iso) / 1000;

/** Per currency: paid requests, earned, refunds (count) and their amount; null when the
 * room took no payment (the report's `payments`, roomlog/rooms/queue_pay_analytics.py). */
export function earnings(payments) {
  const currencies = Object.entries((payments && payments.currencies) || {});
  if (!currencies.length) return null;
  return Object.fromEntries(currencies.map(([currency, row]) => {
    const refunds = Object.values(row.refunds || {});
    return [currency, { paid: row.paid_requests, earned: row.earned,
      refunds: refunds.reduce((n, r) => n + r.count, 0),
      refunded: refunds.reduce((n, r) => n + r.amount, 0) }];
  }));
}

/** The DJ page: tiles, charts and lists of a queue analytics report. */
export function queueView(report) {
  const perHour = report.requests_per_hour || [];
  return {
    tiles: {
      requests: report.requests,
      acceptance: report.acceptance_rate,
      veto: report.veto_rate,
      wait: report.median_wait_ms,
      waits: report.waits_counted,
      votes: report.votes,
      earnings: earnings(report.payments), // null in a room that took no payment
    },
    charts: [
      { id: "requests-over-time", kind: "time", x: perHour.map((r) => seconds(r.hour)),
        series: [
          { key: "requests", values: perHour.map((r) => r.requests), style: "bars" },
          { key: "votes", values: perHour.map((r) => r.votes), style: "line" },
        ] },
      { id: "requests-by-hour", kind: "bars",
        labels: (report.requests_by_hour_of_day || []).map((_, h) => String(h).padStart(2, "0")),
        series: [{ key: "requests", values: report.requests_by_hour_of_day || [],
          style: "bars" }] },
      { id: "decisions", kind: "bars", labels: QUEUE_STATUSES.map((s) => `stats.request.${s}`),
        series: [{ key: "requests",
          values: QUEUE_STATUSES.map((s) => (report.by_status || {})[s] || 0), style: "bars" }] },
    ],
    lists: {
      vetoReasons: (report.veto_reasons || []).map((r) => ({ key: r.reason ?? "",
        label: r.reason, value: r.vetoed })),
      topSongs: (report.top_songs || []).map((s) => ({ key: s.song_id,
        label: `${s.title} · ${s.artist}`, value: s.requests, extra: s.votes })),
      topArtists: (report.top_artists || []).map((a) => ({ key: a.artist, label: a.artist,
        value: a.requests, extra: a.votes })),
      topGuests: (report.top_guests || []).map((g) => ({ key: g.user, label: g.user,
        value: g.requests, extra: g.votes })),
    },
  };
}

/** The repair statistics page: tiles, charts, the technicians and the SLA breaches. */
export function repairView(report) {
  const statuses = REPAIR_STATUSES.filter((s) => s in (report.time_in_status || {}));
  const rows = statuses.map((s) => report.time_in_status[s]);
  const perDay = report.per_day || [];
  const quotes = report.quotes || {};
  const qa = report.qa || { items: [] };
  const breaches = (report.sla && report.sla.breaches) || [];
  return {
    tiles: {
      tickets: report.tickets,
      repair: report.median_repair_ms,
      turnaround: report.median_turnaround_ms,
      approval: quotes.approval_rate ?? null,
      qaFailed: qa.failed ?? 0,
      breaches: breaches.length,
      open: breaches.filter((b) => b.current).length,
    },
    charts: [
      { id: "time-in-status", kind: "bars", labels: statuses.map(repairStatusKey),
        series: [
          { key: "median", values: rows.map((r) => r.median_ms), style: "bars" },
          { key: "limit", values: rows.map((r) => r.limit_ms ?? null), style: "points" },
          { key: "breaches", values: rows.map((r) => r.breaches || 0), style: "none" },
        ] },
      { id: "tickets-per-day", kind: "time", x: perDay.map((d) => seconds(`${d.day}T00:00:00Z`)),
        series: [
          { key: "created", values: perDay.map((d) => d.created), style: "bars" },
          { key: "repaired", values: perDay.map((d) => d.repaired), style: "line" },
        ] },
      { id: "by-status", kind: "bars", labels: REPAIR_STATUSES.map(repairStatusKey),
        series: [{ key: "tickets",
          values: REPAIR_STATUSES.map((s) => (report.by_status || {})[s] || 0), style: "bars" }] },
      { id: "quotes", kind: "bars",
        labels: ["approved", "declined", "pending"].map((k) => `stats.quotes.${k}`),
        series: [{ key: "quotes", values: [quotes.approved || 0, quotes.declined || 0,
          quotes.pending || 0], style: "bars" }] },
    ],
    lists: {
      qaItems: (qa.items || []).map((i) => ({ key: i.item, label: i.item, value: i.failed })),
    },
    technicians: report.technicians || [],
    breaches,
    limits: (report.sla && report.sla.limits_ms) || {},
  };
}

// -- the range: a set of the queue, or days ----------------------------------------------

/** Local midnight of a `YYYY-MM-DD` input's value, in ms; null when empty or invalid. */
export function dayStart(value) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value || "");
  if (!m) return null;
  return new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3])).getTime();
}

/** A `YYYY-MM-DD` value for a date input: the local day of `ms`. */
export function dayValue(ms) {
  if (ms === null || ms === undefined) return "";
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/**
 * The report's range from the picker: a set's own [start, end) (`set` its number, the
 * report's `sets`), else the days from `fromDay` to `toDay` (both included, local).
 * {from, to}: ms or null (open).
 */
export function pickRange({ set = "", fromDay = "", toDay = "" }, sets = []) {
  if (set) {
    const chosen = sets.find((s) => String(s.set) === String(set));
    if (chosen) return { from: chosen.start_ms, to: chosen.end_ms ?? null };
  }
  const from = dayStart(fromDay);
  const last = dayStart(toDay);
  return { from, to: last === null ? null : last + DAY_MS };
}

/** The query of a report request: from, to (when set) and the reader's offset east of UTC. */
export function reportQuery({ from = null, to = null }, offsetMin = 0, extra = {}) {
  const q = new URLSearchParams();
  if (from !== null && from !== undefined) q.set("from", String(Math.max(0, Math.floor(from))));
  if (to !== null && to !== undefined) q.set("to", String(Math.max(0, Math.floor(to))));
  if (offsetMin) q.set("tz", String(offsetMin));
  for (const [k, v] of Object.entries(extra)) q.set(k, v);
  return q;
}

/** A file name for the CSV of what is shown: the subject and the range, safe on disk. */
export function csvName(subject, { from = null, to = null }) {
  const part = (ms) => (ms === null || ms === undefined ? "" : dayValue(ms));
  const range = from === null && to === null ? "all" : `${part(from)}_${part(to === null ? null
    : to - 1)}`;
  return `${subject}-${range}.csv`.replace(/[^\w.-]+/g, "-");
}

// -- numbers for people -----------------------------------------------------------------

/** A duration in the reader's language: minutes under 2 h, hours under 2 days, else days. */
export function duration(ms, lang = "en") {
  if (ms === null || ms === undefined) return "–";
  const unit = (value, name, digits = 0) => new Intl.NumberFormat(lang, { style: "unit",
    unit: name, unitDisplay: "short", maximumFractionDigits: digits }).format(value);
  if (ms < 60_000) return unit(ms / 1000, "second", 1);
  if (ms < 2 * HOUR_MS) return unit(Math.round(ms / 60_000), "minute");
  if (ms < 2 * DAY_MS) return unit(ms / HOUR_MS, "hour", 1);
  return unit(ms / DAY_MS, "day", 1);
}

/** A rate (0..1) as a percentage; "–" when there is none (nothing decided). */
export function rate(value, lang = "en") {
  if (value === null || value === undefined) return "–";
  return new Intl.NumberFormat(lang, { style: "percent", maximumFractionDigits: 0 })
    .format(value);
}
