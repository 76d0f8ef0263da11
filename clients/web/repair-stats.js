// The repair shop's numbers: time in each status (median, against its SLA limit), median
// repair and turnaround, quotes approved and declined, QA failures, per technician, tickets
// per day, and the SLA breaches (tickets longer than the `repair_sla` setting allows in a
// status), highlighted; for all tickets or those created on some days; the CSV of what is
// shown. From GET /v1/repairs/stats (admins, services), computed by the hub from the
// repairs:all feed; refreshed while tickets move.
// Link: repair-stats.html[?from=YYYY-MM-DD&to=YYYY-MM-DD]#token=<admin token>

import {
  T, el, fill, language, notAvailable, number, onLanguage, params, showError, startPage, t,
} from "./app.js";
import { barList, plotChart, save, scroller } from "./charts.js";
import {
  csvName, duration, pickRange, rate, repairStatusKey, repairView, reportQuery,
} from "./stats-model.js";

const COLORS = ["#0f766e", "#b45309"];
const FEED = "repairs:all";
// ms: at most one refresh this often, however busy the shop (a report reads the whole
// repairs:all feed: about 1 s per 20,000 events; loadtest/analytics.py)
const LIVE_DELAY = 30_000;

function run({ client }) {
  const main = document.querySelector("main");
  let report = null;
  let range = { from: null, to: null };
  let loading = 0;
  let liveTimer = null;

  const fromDay = el("input", { id: "from", name: "from", type: "date",
    value: params.get("from") || "", "data-testid": "from" });
  const toDay = el("input", { id: "to", name: "to", type: "date", value: params.get("to") || "",
    "data-testid": "to" });
  const shown = el("p", { class: "muted hint", "aria-live": "polite", "data-testid": "shown" });
  const form = el("form", { class: "card picker", "data-testid": "picker",
    "aria-label": T("stats.range") },
  el("p", { class: "muted hint" }, T("repairStats.rangeHint")),
  el("div", { class: "row" },
    el("div", {}, el("label", { for: "from" }, T("stats.from")), fromDay),
    el("div", {}, el("label", { for: "to" }, T("stats.to")), toDay)),
  el("div", { class: "row spread" }, shown,
    el("div", { class: "actions" },
      el("button", { type: "submit", class: "primary small" }, T("stats.show")),
      el("button", { type: "button", class: "small", "data-testid": "csv",
        onclick: () => downloadCsv() }, T("stats.csv")))));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });

  const tiles = el("section", { class: "stats", "data-testid": "tiles",
    "aria-label": T("stats.summary") });
  const figure = (id) => el("figure", { class: "card chart", "data-testid": `chart-${id}` });
  const figures = {
    timeInStatus: figure("time-in-status"), perDay: figure("tickets-per-day"),
    byStatus: figure("by-status"), quotes: figure("quotes"), qa: figure("qa-items"),
  };
  const breaches = el("section", { class: "card", "data-testid": "breaches",
    "aria-labelledby": "breaches-heading" });
  const technicians = el("section", { class: "card", "data-testid": "technicians",
    "aria-labelledby": "technicians-heading" });
  const reportNode = el("div", { class: "report", "data-testid": "report",
    "data-state": "loading" },
  tiles, breaches,
  el("div", { class: "cols" }, figures.timeInStatus, figures.perDay),
  technicians,
  el("div", { class: "cols" }, figures.byStatus, figures.quotes),
  el("div", { class: "cols" }, figures.qa));
  fill(main, form, reportNode);

  async function load() {
    const mine = ++loading;
    reportNode.dataset.state = "loading";
    range = pickRange({ fromDay: fromDay.value, toDay: toDay.value });
    try {
      const answer = await client.request("GET", `/v1/repairs/stats?${reportQuery(range)}`);
      if (mine !== loading) return;
      report = answer;
      const url = new URL(location.href);
      for (const [key, value] of [["from", fromDay.value], ["to", toDay.value]]) {
        if (value) url.searchParams.set(key, value);
        else url.searchParams.delete(key);
      }
      history.replaceState(history.state, "", url.href);
      draw();
      reportNode.dataset.state = "ready";
    } catch (err) {
      if (mine !== loading) return;
      if (err.code === "FORBIDDEN" || err.code === "NOT_FOUND") {
        notAvailable(main, { title: "repairStats.unavailable.title",
          body: "repairStats.unavailable.body" });
        return;
      }
      reportNode.dataset.state = "error";
      showError(err, { action: t("stats.load"), staff: true });
    }
  }

  function draw() {
    if (!report) return;
    const lang = language();
    const v = repairView(report);
    const dur = (ms) => duration(ms, lang);
    fill(shown, t("stats.shown", { range: describeRange() }));
    const tile = (value, label, testid, kind = null) => el("div", { class: `stat ${kind || ""}`,
      "data-testid": testid }, el("div", { class: "n" }, value), el("div", { class: "l" }, label));
    fill(tiles,
      tile(number(v.tiles.tickets), t("repairStats.tickets"), "tile-tickets"),
      tile(dur(v.tiles.repair), t("repairStats.repair"), "tile-repair"),
      tile(dur(v.tiles.turnaround), t("repairStats.turnaround"), "tile-turnaround"),
      tile(rate(v.tiles.approval, lang), t("repairStats.approval"), "tile-approval"),
      tile(number(v.tiles.qaFailed), t("repairStats.qaFailed"), "tile-qa"),
      tile(number(v.tiles.breaches), t("repairStats.breaches", { count: v.tiles.open }),
        "tile-breaches", v.tiles.breaches ? "alert" : null));

    drawBreaches(v, dur);
    const [timeInStatus, perDay, byStatus, quotes] = v.charts;
    const [median, limit, over] = timeInStatus.series;
    barList(figures.timeInStatus, { id: timeInStatus.id, title: t("repairStats.timeInStatus"),
      valueLabel: t("repairStats.median"), valueKey: "median", extraLabel: t("repairStats.limit"),
      extraKey: "limit", format: dur,
      rows: timeInStatus.labels.map((key, i) => ({ label: t(key), value: median.values[i],
        extra: limit.values[i] === null ? "" : dur(limit.values[i]), over: over.values[i] > 0,
        note: over.values[i] ? t("repairStats.rowBreaches", { count: over.values[i] })
          : null })) });
    const dayFormat = new Intl.DateTimeFormat(lang, { month: "short", day: "numeric",
      timeZone: "UTC" });
    plotChart(figures.perDay, { ...perDay, step: 86400 }, { title: t("repairStats.perDay"),
      seriesLabel: (key) => t(`stats.series.${key}`), colors: COLORS,
      xFormat: (s) => dayFormat.format(new Date(s * 1000)) });
    barList(figures.byStatus, { id: byStatus.id, title: t("repairStats.byStatus"),
      valueLabel: t("stats.series.tickets"), valueKey: "tickets",
      rows: byStatus.labels.map((key, i) => ({ label: t(key),
        value: byStatus.series[0].values[i] })) });
    barList(figures.quotes, { id: quotes.id, title: t("repairStats.quotes",
      { sent: report.quotes.sent }), valueLabel: t("stats.series.quotes"), valueKey: "quotes",
    rows: quotes.labels.map((key, i) => ({ label: t(key), value: quotes.series[0].values[i] })) });
    barList(figures.qa, { id: "qa-items", title: t("repairStats.qaItems",
      { recorded: report.qa.recorded }), valueLabel: t("repairStats.failures"),
    valueKey: "failed", empty: "repairStats.noQaFailures",
    rows: v.lists.qaItems.map((r) => ({ label: r.label, value: r.value })) });
    drawTechnicians(v, dur);
  }

  function drawBreaches(v, dur) {
    const limits = Object.entries(v.limits).map(([s, ms]) => `${t(repairStatusKey(s))} ${
      dur(ms)}`).join(" · ");
    fill(breaches,
      el("h2", { id: "breaches-heading" }, t("repairStats.slaHeading"),
        el("span", { class: "count" }, number(v.breaches.length))),
      el("p", { class: "muted hint" }, limits ? t("repairStats.slaLimits", { limits })
        : t("repairStats.noSla")),
      v.breaches.length ? scroller(t("repairStats.slaHeading"), el("table", { class: "grid" },
        el("thead", {}, el("tr", {}, ["repairStats.ticket", "repairStats.status",
          "repairStats.spent", "repairStats.limit", "repairStats.over",
          "repairStats.technicians"].map((k, i) => el("th", { scope: "col",
          class: i >= 2 && i <= 4 ? "num" : null }, t(k))))),
        el("tbody", {}, v.breaches.map((b) => el("tr", {
          class: b.current ? "breach current" : "breach", "data-testid": "breach",
          dataset: { ticket: b.ticket, status: b.status } },
        el("th", { scope: "row" }, b.ticket, b.current ? el("span", { class: "still" },
          t("repairStats.now")) : null),
        el("td", { "data-label": t("repairStats.status") }, t(repairStatusKey(b.status))),
        el("td", { class: "num", "data-label": t("repairStats.spent") }, dur(b.spent_ms)),
        el("td", { class: "num", "data-label": t("repairStats.limit") }, dur(b.limit_ms)),
        el("td", { class: "num", "data-label": t("repairStats.over") }, `+${dur(b.over_ms)}`),
        el("td", { "data-label": t("repairStats.technicians") },
          b.technicians.join(", ") || "–"))))))
        : el("p", { class: "empty" }, t("repairStats.noBreaches")));
  }

  function drawTechnicians(v, dur) {
    fill(technicians,
      el("h2", { id: "technicians-heading" }, t("repairStats.perTechnician")),
      v.technicians.length ? scroller(t("repairStats.perTechnician"), el("table", {
        class: "grid" },
        el("thead", {}, el("tr", {}, ["repairStats.technician", "stats.series.tickets",
          "repairStats.open", "repairStats.repaired", "repairStats.medianRepair",
          "repairStats.qaFailures"].map((k, i) => el("th", { scope: "col",
          class: i ? "num" : null }, t(k))))),
        el("tbody", {}, v.technicians.map((r) => el("tr", { "data-testid": "technician" },
          el("th", { scope: "row" }, r.technician),
          el("td", { class: "num", "data-label": t("stats.series.tickets") }, number(r.tickets)),
          el("td", { class: "num", "data-label": t("repairStats.open") }, number(r.open)),
          el("td", { class: "num", "data-label": t("repairStats.repaired") },
            number(r.repaired)),
          el("td", { class: "num", "data-label": t("repairStats.medianRepair") },
            dur(r.median_repair_ms)),
          el("td", { class: "num", "data-label": t("repairStats.qaFailures") },
            number(r.qa_failed)))))))
        : el("p", { class: "empty" }, t("stats.nothing")));
  }

  function describeRange() {
    if (range.from === null && range.to === null) return t("stats.everything");
    const day = new Intl.DateTimeFormat(language(), { dateStyle: "medium" });
    return `${range.from === null ? "…" : day.format(range.from)} – ${
      range.to === null ? "…" : day.format(range.to - 1)}`;
  }

  async function downloadCsv() {
    try {
      const blob = await client.request("GET",
        `/v1/repairs/stats?${reportQuery(range, 0, { format: "csv" })}`, undefined,
        { as: "blob" });
      save(blob, csvName("repair-stats", range));
    } catch (err) {
      showError(err, { action: t("stats.csv"), staff: true });
    }
  }

  client.subscribe(FEED, {
    onMessage() {
      if (range.to !== null && range.to <= Date.now()) return;
      liveTimer ??= setTimeout(() => {
        liveTimer = null;
        load();
      }, Math.max(1000, Number(params.get("refresh")) || LIVE_DELAY)); // a knob for tests
    },
    onError() {}, // the numbers do not need the feed: they just do not refresh
  });
  onLanguage(draw);
  load();
}

const page = await startPage({ page: "repair-stats", title: "repairStats.title",
  hint: "repairStats.setupHint" });
if (page) run(page);
