// The operator's console: instances live, rooms and their logs, time travel, moderation
// and its audit trail. For admin (and service) tokens; every figure comes from the hub's
// admin API (roomlog/console/api.py), the audit trail live from the audit:moderation room.

import {
  T, dateTime, el, extend, fill, header, notAvailable, number, onLanguage, showError, t, timeAgo,
  toast, startPage,
} from "./app.js";
import { roomsSection } from "./console-rooms.js";
import { field, input, table } from "./console-ui.js";
import texts from "./messages/console.js";

extend(texts);

const OPERATORS = ["admin", "service"];
const AUDIT_ROOM = "audit:moderation";
const ROLES = ["guest", "dj", "customer", "technician", "admin", "service"];

const page = await startPage({ page: "console", title: "console.title" });
if (page) start(page);

function start({ client, claims }) {
  const main = document.querySelector("main");
  if (!OPERATORS.includes(claims.role)) {
    notAvailable(main, { title: "console.notAdmin.title", body: "console.notAdmin.body" });
    return;
  }
  header(T("console.title"), T("console.subtitle"));
  const api = (method, path, body) => client.request(method, path, body);
  const overview = overviewCard(api);
  const rooms = roomsSection(api);
  const moderation = moderationCard(api);
  const audit = auditCard(client, api);
  const nav = el("nav", { class: "sections", "aria-label": T("console.nav") },
    [["overview", "console.overview.heading"], ["rooms", "console.rooms.heading"],
      ["travel", "console.travel.heading"], ["moderation", "console.mod.heading"],
      ["audit", "console.audit.heading"]].map(([id, key]) => el("a", { href: `#${id}` }, T(key))));
  fill(main, nav, overview, ...rooms, moderation, audit);
}

// -- overview ----------------------------------------------------------------------------

function overviewCard(api) {
  const body = el("div", { "data-testid": "instances" }, el("p", { class: "muted" },
    T("common.loading")));
  const status = el("p", { class: "muted", "aria-live": "polite" });
  let last = null;
  let updated = null;

  const render = () => {
    if (!last) return;
    const rows = last.instances.map((i) => {
      const conns = i.connections.websocket + i.connections.sse + i.connections.longpoll;
      return el("tr", { class: i.stale ? "stale" : null, dataset: { instance: i.instance } },
        el("td", {}, el("code", {}, i.instance), i.instance === last.here
          ? el("small", { class: "muted" }, ` (${t("console.overview.here")})`) : null,
        i.stale ? el("small", {}, ` · ${t("console.overview.stale")}`) : null),
        el("td", { class: "num" }, number(conns)),
        el("td", { class: "num" }, number(i.rooms)),
        el("td", { class: "num" }, number(i.messages_in_per_s)),
        el("td", { class: "num" }, number(i.messages_out_per_s)),
        el("td", { class: i.bus.connected ? "ok" : "down" },
          t(i.bus.connected ? "console.overview.busOk" : "console.overview.busDown"),
          el("small", { class: "muted" }, ` ${i.bus.kind}`)),
        el("td", { class: "num" }, i.bus.lag_ms === null ? "–" : `${number(i.bus.lag_ms)} ms`),
        el("td", { class: i.database.ok ? "num ok" : "num down" }, i.database.ok
          ? `${number(i.database.latency_ms)} ms` : t("console.overview.dbDown")),
        el("td", { class: "num" }, `${number(i.age_s)} s`));
    });
    const heads = ["instance", "connections", "rooms", "in", "out", "bus", "lag", "db", "seen"]
      .map((k) => t(`console.overview.${k}`));
    const hooks = last.instances.flatMap((i) => (i.webhooks || []).map((w) => ({
      ...w, instance: i.instance })));
    fill(body, table(t("console.overview.heading"), heads, rows),
      hooks.length ? webhooks(hooks) : null);
    fill(status, t("console.updated", { when: timeAgo(updated) }));
  };

  const load = async () => {
    try {
      last = await api("GET", "/v1/admin/instances");
      updated = Date.now();
      render();
    } catch (err) {
      fill(status, t("console.failed", { message: err.message }));
    }
  };
  onLanguage(render);
  load();
  setInterval(load, 2000);
  return el("section", { class: "card", id: "overview" },
    el("div", { class: "card-head" }, el("h2", {}, T("console.overview.heading")),
      el("button", { type: "button", class: "small", onclick: load }, T("console.refresh"))),
    body, status);
}

/** The webhook endpoints each instance delivers (it holds their lease), with figures. */
function webhooks(endpoints) {
  const rows = endpoints.map((w) => el("tr", { dataset: { endpoint: w.endpoint } },
    el("td", {}, el("code", {}, w.endpoint)), el("td", {}, el("code", {}, w.instance)),
    el("td", { class: "num" }, number(w.delivered)),
    el("td", { class: w.failed ? "num down" : "num" }, number(w.failed)),
    el("td", { class: w.retrying ? "num down" : "num" }, number(w.retrying)),
    el("td", { class: "num" }, number(w.lag_messages)),
    el("td", { class: "num" }, `${number(w.lag_seconds)} s`)));
  const heads = ["endpoint", "instance", "delivered", "failed", "retrying", "lagMessages",
    "lagSeconds"].map((k) => t(`console.hooks.${k}`));
  return [el("h3", { class: "spaced" }, T("console.overview.webhooks")),
    table(t("console.overview.webhooks"), heads, rows)];
}

// -- moderation ----------------------------------------------------------------------------

function moderationCard(api) {
  const user = input("ban-user");
  const role = el("select", { id: "ban-role", name: "ban-role" },
    el("option", { value: "" }, T("console.mod.anyRole")),
    ROLES.map((r) => el("option", { value: r }, r)));
  const jti = input("ban-jti");
  const reason = input("ban-reason");
  const minutes = input("ban-minutes", { type: "number", min: 1, step: 1, inputmode: "numeric" });
  const bans = el("div", { "data-testid": "bans" });

  const loadBans = async () => {
    try {
      const { bans: found } = await api("GET", "/v1/admin/bans?status=active&limit=50");
      fill(bans, found.length ? el("ul", { class: "list" }, found.map((b) => el("li",
        { class: "item wide", dataset: { ban: b.id } },
        el("div", { class: "grow" },
          el("div", { class: "song" }, b.jti ? `jti ${b.jti}` : `${b.user}${b.role ? ` (${b.role})` : ""}`),
          el("div", { class: "sub" }, b.reason || "–", " · ",
            b.until ? t("console.mod.until", { when: dateTime(b.until) }) : t("console.mod.forever"),
            " · ", b.by.user)),
        el("div", { class: "actions" }, el("button", { type: "button", class: "small",
          onclick: () => lift(b.id) }, T("console.mod.lift"))))))
        : el("p", { class: "empty" }, T("console.none")));
    } catch (err) {
      showError(err);
    }
  };

  const said = (reply, key, params) => {
    toast(t(key, params), { kind: reply.audit_seq === null ? "warn" : "ok",
      detail: reply.audit_seq === null ? t("console.mod.unaudited") : "" });
  };

  const lift = async (id) => {
    try {
      said(await api("DELETE", `/v1/admin/bans/${id}`), "console.mod.lifted", { id });
      loadBans();
    } catch (err) {
      showError(err);
    }
  };

  const ban = async (event) => {
    event.preventDefault();
    const body = { reason: reason.value.trim() };
    if (user.value.trim()) body.user = user.value.trim();
    if (jti.value.trim()) body.jti = jti.value.trim();
    if (!body.user && !body.jti) {
      toast(t("console.mod.needTarget"), { kind: "warn" });
      return;
    }
    if (role.value && body.user) body.role = role.value;
    if (Number(minutes.value) > 0) body.duration = Number(minutes.value) * 60;
    try {
      const reply = await api("POST", "/v1/admin/bans", body);
      said(reply, "console.mod.banned", { who: body.user || body.jti });
      event.target.reset();
      loadBans();
    } catch (err) {
      showError(err);
    }
  };

  const gone = input("kick-user");
  const goneReason = input("kick-reason");
  const disconnect = async (event) => {
    event.preventDefault();
    if (!gone.value.trim()) {
      toast(t("console.mod.needTarget"), { kind: "warn" });
      return;
    }
    try {
      const reply = await api("POST", "/v1/admin/disconnect",
        { user: gone.value.trim(), reason: goneReason.value.trim() || null });
      said(reply, "console.mod.disconnected", { user: gone.value.trim(), count: reply.closed_here });
      event.target.reset();
    } catch (err) {
      showError(err);
    }
  };

  loadBans();
  return el("section", { class: "card", id: "moderation" },
    el("h2", {}, T("console.mod.heading")),
    el("form", { "data-testid": "ban-form", onsubmit: ban },
      el("div", { class: "row" }, field("ban-user", "console.mod.user", user),
        field("ban-role", "console.mod.role", role), field("ban-jti", "console.mod.jti", jti)),
      el("div", { class: "row" }, field("ban-reason", "console.mod.reason", reason),
        field("ban-minutes", "console.mod.minutes", minutes),
        el("div", { class: "shrink" }, el("button", { type: "submit", class: "primary" },
          T("console.mod.ban"))))),
    el("h3", { class: "spaced" }, T("console.mod.bans")), bans,
    el("form", { class: "spaced", "data-testid": "disconnect-form", onsubmit: disconnect },
      el("div", { class: "row" }, field("kick-user", "console.mod.user", gone),
        field("kick-reason", "console.mod.reason", goneReason),
        el("div", { class: "shrink" }, el("button", { type: "submit" },
          T("console.mod.disconnect"))))));
}

// -- audit -----------------------------------------------------------------------------------

function describeTarget(target) {
  if (target.room) return target.room;
  if (target.jti) return `jti ${target.jti}`;
  if (target.conn) return `conn ${target.conn}`;
  return `${target.user}${target.role ? ` (${target.role})` : ""}`;
}

function auditCard(client, api) {
  const list = el("ul", { class: "list audit", "data-testid": "audit" });
  const entries = [];
  const render = () => {
    fill(list, entries.length ? [...entries].reverse().slice(0, 100).map((m) => {
      const e = m.data || {};
      return el("li", { class: "item", dataset: { seq: m.seq, action: e.action } },
        el("div", { class: "song" }, t(`console.audit.${e.action}`, {
          by: `${e.by?.user} (${e.by?.role})`, target: describeTarget(e.target || {}) })),
        el("div", { class: "sub" }, `#${m.seq} · ${dateTime(m.ts)}`,
          e.reason ? ` · ${t("console.audit.reason", { reason: e.reason })}` : ""));
    }) : el("li", { class: "empty" }, T("console.none")));
  };
  const add = (m) => {
    if (entries.some((x) => x.seq === m.seq)) return;
    entries.push(m);
    entries.sort((a, b) => a.seq - b.seq);
    render();
  };
  (async () => {
    try {
      const page = await api("GET", `/v1/admin/rooms/${AUDIT_ROOM}/log?limit=100`);
      page.messages.forEach(add);
      client.subscribe(AUDIT_ROOM, { since: { epoch: page.epoch, seq: page.head },
        onMessage: add, onError: (err) => showError(err) });
    } catch (err) {
      showError(err);
    }
    render();
  })();
  onLanguage(render);
  return el("section", { class: "card", id: "audit" }, el("h2", {}, T("console.audit.heading")),
    list);
}
