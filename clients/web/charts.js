// Charts of the analytics pages. Charts along a numeric axis (time, the hours of a day) are
// drawn by uPlot (vendor/uplot: MIT, from the npm registry, loaded by the page as a classic
// script: `window.uPlot`; this is the one module that talks to it). Charts of categories
// (statuses, songs, reasons) are bar lists in HTML: they stay readable on a phone with long
// names, and a screen reader reads them as a table.
//
// Every chart also shows its numbers as a table (under "Numbers", for keyboards, screen
// readers and anyone who wants the figures), and registers what it shows in
// `window.roomlogCharts[id] = {labels | x, series: [{key, label, values}]}`: what the browser
// tests compare with the seeded log.
//
//   plotChart(figure, spec, { title, seriesLabel, xFormat, colors })
//   barList(figure, { id, rows: [{label, value, extra, over}], title, valueLabel, ... })

import { el, fill } from "./ui.js";
import { t } from "./i18n.js";

export const registry = (globalThis.roomlogCharts ||= {});

const plots = new Map(); // id -> {plot, observer}
const HEIGHT = 220;

function forget(id) {
  const held = plots.get(id);
  if (!held) return;
  held.observer?.disconnect();
  held.plot.destroy();
  plots.delete(id);
}

/** A table that scrolls sideways inside its card when it is wider (reachable by keyboard). */
export function scroller(label, table) {
  return el("div", { class: "table-wrap", tabindex: 0, role: "region", "aria-label": label },
    table);
}

function numbersTable(caption, head, rows) {
  return el("details", { class: "numbers" },
    el("summary", {}, t("stats.numbers")),
    scroller(caption, el("table", {},
      el("caption", { class: "sr-only" }, caption),
      el("thead", {}, el("tr", {}, head.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c, i) => (i === 0
        ? el("th", { scope: "row" }, c) : el("td", {}, c)))))))));
}

/**
 * A uPlot chart of `spec` ({id, kind: "time" | "bars", x | labels, step, series}) in
 * `figure` (an element of the page, filled here). `seriesLabel(key)` names a series;
 * `xFormat(x)` writes an x value (seconds, for "time"); `colors[i]` per series.
 */
export function plotChart(figure, spec, { title, seriesLabel, xFormat = String, colors = [],
  valueFormat = (v) => (v === null || v === undefined ? "" : String(v)) }) {
  forget(spec.id);
  const uPlot = globalThis.uPlot;
  const isTime = spec.kind === "time";
  const x = isTime ? spec.x : (spec.labels || []).map((_, i) => i);
  const labels = isTime ? spec.x.map((s) => xFormat(s)) : spec.labels;
  const series = spec.series.map((s) => ({ ...s, label: seriesLabel(s.key) }));
  registry[spec.id] = { kind: spec.kind, x: isTime ? [...spec.x] : undefined,
    labels: [...labels], series: series.map((s) => ({ key: s.key, label: s.label,
      values: [...s.values] })) };
  const plotBox = el("div", { class: "plot", role: "img",
    "aria-label": `${title}: ${t("stats.chartHint")}` });
  const empty = !x.length || series.every((s) => s.values.every((v) => !v));
  fill(figure,
    el("figcaption", {}, title),
    empty ? el("p", { class: "empty" }, t("stats.nothing")) : plotBox,
    numbersTable(title, [isTime ? t("stats.when") : "", ...series.map((s) => s.label)],
      labels.map((label, i) => [label, ...series.map((s) => valueFormat(s.values[i]))])));
  figure.dataset.chart = spec.id;
  if (empty || !uPlot) return null;
  const step = spec.step || (x.length > 1 ? x[1] - x[0] : 1);
  const bars = uPlot.paths.bars({ size: [0.7, 48] });
  const options = {
    width: Math.max(200, figure.clientWidth - 8),
    height: HEIGHT,
    legend: { show: series.length > 1, live: false },
    cursor: { show: false },
    scales: {
      x: { time: false, range: () => [x[0] - step / 2, x[x.length - 1] + step / 2] },
      y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] },
    },
    axes: [
      { values: (u, splits) => splits.map((v) => (isTime ? xFormat(v)
        : (Number.isInteger(v) ? labels[v] ?? "" : ""))),
      incrs: isTime ? [3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800, 2592000]
        .filter((i) => i >= step) : [1, 2, 3, 4, 6, 12], space: isTime ? 70 : 26, stroke: "#3f4756", grid: { show: false } },
      { stroke: "#3f4756", grid: { stroke: "#e6e8ef" }, size: 44,
        values: (u, splits) => splits.map((v) => valueFormat(v)) },
    ],
    series: [{}, ...series.map((s, i) => {
      const color = colors[i] || "#4f46e5";
      if (s.style === "bars") {
        return { label: s.label, stroke: color, fill: `${color}cc`, width: 0, paths: bars,
          points: { show: false } };
      }
      if (s.style === "points") {
        return { label: s.label, stroke: color, width: 0, paths: () => null,
          points: { show: true, size: 9, fill: color, stroke: color } };
      }
      return { label: s.label, stroke: color, width: 2.5, spanGaps: true,
        points: { show: true, size: 9, width: 2.5, stroke: color, fill: "#ffffff" } };
    })],
  };
  const plot = new uPlot(options, [x, ...series.map((s) => s.values)], plotBox);
  const observer = typeof ResizeObserver === "function" ? new ResizeObserver(() => {
    const width = Math.max(200, figure.clientWidth - 8);
    if (Math.abs(width - plot.width) > 2) plot.setSize({ width, height: HEIGHT });
  }) : null;
  observer?.observe(figure);
  plots.set(spec.id, { plot, observer });
  return plot;
}

/**
 * A bar list: one row per category, the bar's length its share of the largest value.
 * rows: [{label, value, extra, over, note}]; `over` marks a row (a breach) in red.
 * Registered as {labels, series: [{key: valueKey, values}, {key: extraKey, values}]}.
 */
export function barList(figure, { id, rows, title, valueLabel, extraLabel = null,
  valueKey = "value", extraKey = "extra", format = String, empty = "stats.nothing" }) {
  const max = Math.max(0, ...rows.map((r) => r.value || 0));
  registry[id] = { kind: "list", labels: rows.map((r) => r.label),
    series: [{ key: valueKey, label: valueLabel, values: rows.map((r) => r.value) },
      ...(extraLabel ? [{ key: extraKey, label: extraLabel, values: rows.map((r) => r.extra) }]
        : [])] };
  figure.dataset.chart = id;
  fill(figure,
    el("figcaption", {}, title),
    rows.length ? scroller(title, el("table", { class: "bars" },
      el("caption", { class: "sr-only" }, title),
      el("thead", { class: extraLabel ? null : "sr-only" }, el("tr", {},
        el("th", { scope: "col" }, el("span", { class: "sr-only" }, t("stats.item"))),
        el("th", { scope: "col", class: "num" }, valueLabel),
        extraLabel ? el("th", { scope: "col", class: "num" }, extraLabel) : null)),
      el("tbody", {}, rows.map((r) => el("tr", { class: r.over ? "over" : null },
        el("th", { scope: "row" }, el("span", { class: "label" }, r.label),
          el("span", { class: "meter", "aria-hidden": "true", style: {
            width: `${max ? Math.max(1, Math.round(100 * (r.value || 0) / max)) : 0}%` } }),
          r.note ? el("small", { class: "muted" }, r.note) : null),
        el("td", { class: "num" }, format(r.value)),
        extraLabel ? el("td", { class: "num muted" }, r.extra ?? "") : null)))))
      : el("p", { class: "empty" }, t(empty)));
}

/** Save `blob` as a file called `name` (a download the browser offers). */
export function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

