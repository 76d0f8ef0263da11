// The DJ's numbers: requests over time and by hour of the day, what was accepted and
// vetoed (and why), the median wait from request to played, top songs, artists and the
// busiest guests, upvotes; for the whole log, one set, or some days; the CSV of what is
// shown. From GET /v1/rooms/{room}/analytics (the room's DJ and admins), computed by the
// hub from the room's log; refreshed while the room is live.
// Link: analytics.html?room=queue:<id>[&set=N | &from=YYYY-MM-DD&to=YYYY-MM-DD]#token=<token>

import {
  T, el, fill, language, notAvailable, number, onLanguage, params, showError, startPage, t,
} from "./app.js";
import { barList, plotChart, save } from "./charts.js";
import {
  csvName, dayValue, duration, pickRange, queueView, rate, reportQuery,
} from "./stats-model.js";

const COLORS = ["#4f46e5", "#be185d"];
// ms: at most one refresh this often, however busy the room (a report reads the room's whole
// log: about 1 s per 20,000 events; loadtest/analytics.py)
const LIVE_DELAY = 10_000;

function run({ client, values }) {
  const room = values.room.includes(":") ? values.room : `queue:${values.room}`;
  const main = document.querySelector("main");
  let report = null;
  let range = { from: null, to: null };
  let loading = 0;
  let liveTimer = null;
  let linkSet = params.get("set") || ""; // a set named by the link: its range comes with the sets

  const setSelect = el("select", { id: "set", name: "set", "data-testid": "set" });
  const fromDay = el("input", { id: "from", name: "from", type: "date",
    value: params.get("from") || "", "data-testid": "from" });
  const toDay = el("input", { id: "to", name: "to", type: "date", value: params.get("to") || "",
    "data-testid": "to" });
  const shown = el("p", { class: "muted hint", "aria-live": "polite", "data-testid": "shown" });
  const download = el("button", { type: "button", class: "small", "data-testid": "csv",
    onclick: () => downloadCsv() }, T("stats.csv"));
  const form = el("form", { class: "card picker", "data-testid": "picker",
    "aria-label": T("stats.range") },
  el("div", { class: "row" },
    el("div", {}, el("label", { for: "set" }, T("analytics.set")), setSelect),
    el("div", {}, el("label", { for: "from" }, T("stats.from")), fromDay),
    el("div", {}, el("label", { for: "to" }, T("stats.to")), toDay)),
  el("div", { class: "row spread" }, shown,
    el("div", { class: "actions" },
      el("button", { type: "submit", class: "primary small" }, T("stats.show")), download)));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  setSelect.addEventListener("change", () => {
    if (setSelect.value) {
      fromDay.value = "";
      toDay.value = "";
    }
    load();
  });
  for (const input of [fromDay, toDay]) {
    input.addEventListener("change", () => { if (input.value) setSelect.value = ""; });
  }

  const tiles = el("section", { class: "stats", "data-testid": "tiles",
    "aria-label": T("stats.summary") });
  const figure = (id) => el("figure", { class: "card chart", "data-testid": `chart-${id}` });
  const figures = {
    overTime: figure("requests-over-time"), byHour: figure("requests-by-hour"),
    decisions: figure("decisions"), reasons: figure("veto-reasons"),
    songs: figure("top-songs"), artists: figure("top-artists"), guests: figure("top-guests"),
  };
  const earnings = el("section", { class: "card", "data-testid": "earnings", hidden: true });
  const report_ = el("div", { class: "report", "data-testid": "report", "data-state": "loading" },
    tiles,
    el("div", { class: "cols" }, figures.overTime, figures.byHour),
    el("div", { class: "cols" }, figures.decisions, figures.reasons),
    el("div", { class: "cols" }, figures.songs, figures.artists),
    el("div", { class: "cols" }, figures.guests, earnings));
  fill(main, form, report_);

  async function load() {
    const mine = ++loading;
    report_.dataset.state = "loading";
    const sets = report ? report.sets : [];
    const wanted = { set: setSelect.value || linkSet, fromDay: fromDay.value,
      toDay: toDay.value };
    range = pickRange(wanted, sets);
    const query = reportQuery(range, -new Date().getTimezoneOffset());
    try {
      const answer = await client.request("GET", `${client.roomPath(room)}/analytics?${query}`);
      if (mine !== loading) return;
      report = answer;
      if (linkSet) { // the sets are known now: load the one the link named
        linkSet = "";
        if (!sets.length && report.sets.some((x) => String(x.set) === wanted.set)) {
          setSelect.append(el("option", { value: wanted.set }, wanted.set));
          setSelect.value = wanted.set;
          return load();
        }
      }
      keepInAddress(wanted);
      draw();
      report_.dataset.state = "ready";
    } catch (err) {
      if (mine !== loading) return;
      if (err.code === "FORBIDDEN" || err.code === "NOT_FOUND") {
        notAvailable(main, { title: "analytics.unavailable.title",
          body: "analytics.unavailable.body" });
        return;
      }
      report_.dataset.state = "error";
      showError(err, { action: t("stats.load"), staff: true });
    }
  }

  function keepInAddress(wanted) {
    const url = new URL(location.href);
    for (const [key, value] of [["set", wanted.set], ["from", wanted.fromDay],
      ["to", wanted.toDay]]) {
      if (value) url.searchParams.set(key, value);
      else url.searchParams.delete(key);
    }
    history.replaceState(history.state, "", url.href);
  }

  function draw() {
    if (!report) return;
    const lang = language();
    const chosen = setSelect.value;
    fill(setSelect, el("option", { value: "" }, t("analytics.allSets")),
      report.sets.map((s) => el("option", { value: String(s.set) }, t("analytics.setLabel",
        { n: s.set, when: when(s.start_ms, s.end_ms) }))));
    setSelect.value = report.sets.some((s) => String(s.set) === chosen) ? chosen : "";
    fill(shown, t("stats.shown", { range: describeRange() }));
    const v = queueView(report);
    const tile = (value, label, sub = null, testid = null) => el("div", { class: "stat",
      "data-testid": testid },
    el("div", { class: "n" }, value), el("div", { class: "l" }, label),
    sub ? el("div", { class: "l" }, sub) : null);
    fill(tiles,
      tile(number(v.tiles.requests), t("analytics.requests"), null, "tile-requests"),
      tile(rate(v.tiles.acceptance, lang), t("analytics.accepted"),
        t("analytics.ofDecided", { count: report.decided }), "tile-accepted"),
      tile(rate(v.tiles.veto, lang), t("analytics.vetoed"), null, "tile-vetoed"),
      tile(duration(v.tiles.wait, lang), t("analytics.wait"),
        t("analytics.waitsCounted", { count: v.tiles.waits }), "tile-wait"),
      tile(number(v.tiles.votes), t("analytics.votes"), null, "tile-votes"));
    const [overTime, byHour, decisions] = v.charts;
    const label = (key) => t(`stats.series.${key}`);
    const hourFormat = new Intl.DateTimeFormat(lang, { month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit" });
    plotChart(figures.overTime, { ...overTime, step: 3600 }, { title: t("analytics.overTime"),
      seriesLabel: label, colors: COLORS, xFormat: (s) => hourFormat.format(new Date(s * 1000)) });
    plotChart(figures.byHour, byHour, { title: t("analytics.byHour"), seriesLabel: label,
      colors: COLORS });
    barList(figures.decisions, { id: decisions.id, title: t("analytics.decisions"),
      valueLabel: label("requests"), valueKey: "requests",
      rows: decisions.labels.map((key, i) => ({ label: t(key),
        value: decisions.series[0].values[i] })) });
    barList(figures.reasons, { id: "veto-reasons", title: t("analytics.reasons"),
      valueLabel: label("vetoed"), valueKey: "vetoed", empty: "analytics.noVetoes",
      rows: v.lists.vetoReasons.map((r) => ({ label: r.label ?? t("analytics.noReason"),
        value: r.value })) });
    const ranked = (figureNode, id, title, rows) => barList(figureNode, { id, title, rows,
      valueLabel: label("requests"), valueKey: "requests", extraLabel: label("votes"),
      extraKey: "votes" });
    ranked(figures.songs, "top-songs", t("analytics.topSongs"), v.lists.topSongs);
    ranked(figures.artists, "top-artists", t("analytics.topArtists"), v.lists.topArtists);
    ranked(figures.guests, "top-guests", t("analytics.topGuests"), v.lists.topGuests);
    // Earnings and refunds: the report carries them once paid requests exist (null until
    // then; their shape is documented in roomlog/rooms/queue_analytics.py).
    earnings.hidden = !v.tiles.earnings;
    if (v.tiles.earnings) {
      fill(earnings, el("h2", {}, t("analytics.earnings")),
        el("ul", { class: "list" }, Object.entries(v.tiles.earnings).map(([currency, e]) =>
          el("li", { class: "item" }, t("analytics.earned", { currency, paid: e.paid ?? 0,
            earned: money(e.earned, currency, lang), refunds: e.refunds ?? 0,
            refunded: money(e.refunded, currency, lang) })))));
    }
  }

  function money(minor, currency, lang) {
    try {
      const f = new Intl.NumberFormat(lang, { style: "currency", currency });
      return f.format((minor || 0) / 10 ** f.resolvedOptions().maximumFractionDigits);
    } catch {
      return `${minor} ${currency}`;
    }
  }

  function when(start, end) {
    const lang = language();
    const day = new Intl.DateTimeFormat(lang, { weekday: "short", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit" });
    const time = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit" });
    if (end === null || end === undefined) return t("analytics.since", { start: day.format(start) });
    const sameDay = dayValue(start) === dayValue(end);
    return `${day.format(start)} – ${sameDay ? time.format(end) : day.format(end)}`;
  }

  function describeRange() {
    const chosen = report.sets.find((s) => String(s.set) === setSelect.value);
    if (chosen) return t("analytics.setLabel", { n: chosen.set, when: when(chosen.start_ms,
      chosen.end_ms) });
    if (range.from === null && range.to === null) return t("stats.everything");
    const day = new Intl.DateTimeFormat(language(), { dateStyle: "medium" });
    return `${range.from === null ? "…" : day.format(range.from)} – ${
      range.to === null ? "…" : day.format(range.to - 1)}`;
  }

  async function downloadCsv() {
    const query = reportQuery(range, -new Date().getTimezoneOffset(), { format: "csv" });
    try {
      const blob = await client.request("GET", `${client.roomPath(room)}/analytics?${query}`,
        undefined, { as: "blob" });
      save(blob, csvName(`analytics-${room}`, range));
    } catch (err) {
      showError(err, { action: t("stats.csv"), staff: true });
    }
  }

  // Live: while the range is still open, a new event refreshes the numbers.
  client.subscribe(room, {
    onMessage() {
      if (range.to !== null && range.to <= Date.now()) return;
      liveTimer ??= setTimeout(() => {
        liveTimer = null;
        load();
      }, Math.max(1000, Number(params.get("refresh")) || LIVE_DELAY)); // a knob for tests
    },
    onError() {}, // the numbers do not need the live room: they just do not refresh
  });
  onLanguage(draw);
  load();
}

const page = await startPage({ page: "analytics", title: "analytics.title",
  hint: "analytics.setupHint",
  fields: [{ name: "room", label: "setup.queue", placeholder: "queue:club42-set1" }] });
if (page) run(page);
