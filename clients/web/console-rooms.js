// The console's rooms: search by name and kind, one room in detail (reset with a
// confirmation that says what is lost, close a queue), its log paged with filters, and
// time travel: a domain room at any seq, as each audience saw it.

import { T, dateTime, el, fill, number, onLanguage, showError, t, toast } from "./app.js";
import { field, input, json, table } from "./console-ui.js";

const KINDS = ["audit", "chat", "feed", "queue", "repair", "repairs", "user"];
const AUDIENCES = { queue: ["admin", "dj", "guest"], repair: ["admin", "technician", "customer"] };
const enc = encodeURIComponent;


/** The rooms card, the room's detail and log, and the time travel card. */
export function roomsSection(api) {
  const travel = travelCard(api);
  const detail = el("section", { class: "card", id: "room", hidden: true,
    "data-testid": "room-detail" });
  const logCard = el("section", { class: "card", id: "log", hidden: true,
    "data-testid": "room-log" });
  const q = input("room-q", { type: "search", placeholder: "queue:club42" });
  const kind = el("select", { id: "room-kind", name: "room-kind" },
    el("option", { value: "" }, T("console.rooms.anyKind")),
    KINDS.map((k) => el("option", { value: k }, k)));
  const results = el("div", { "data-testid": "rooms" });
  const count = el("span", { class: "count" });
  let found = [];
  let next = null;

  const render = () => {
    fill(count, found.length ? t("console.rooms.found", { count: found.length }) : "");
    const rows = found.map((r) => el("tr", { dataset: { room: r.room } },
      el("td", {}, el("button", { type: "button", class: "small", "data-key": r.room,
        onclick: () => open(r.room) }, r.room)),
      el("td", {}, r.kind),
      el("td", { class: "num" }, number(r.head)),
      el("td", { class: "num" }, number(r.trimmed)),
      el("td", {}, el("code", {}, r.epoch)),
      el("td", { class: "num" }, number(r.subscribers_here)),
      el("td", { class: "num" }, r.presence === null ? "–" : number(r.presence))));
    const heads = [t("console.rooms.heading"), t("console.rooms.kind"), t("console.room.head"),
      t("console.room.trimmed"), t("console.room.epoch"), t("console.room.subscribers"),
      t("console.room.presence")];
    fill(results, found.length ? table(t("console.rooms.heading"), heads, rows)
      : el("p", { class: "empty" }, T("console.none")),
    next ? el("button", { type: "button", class: "small spaced", onclick: () => search(true) },
      T("console.rooms.more")) : null);
  };

  const search = async (more = false) => {
    const params = new URLSearchParams({ q: q.value.trim(), limit: "50" });
    if (kind.value) params.set("kind", kind.value);
    if (more && next) params.set("after", next);
    try {
      const reply = await api("GET", `/v1/admin/rooms?${params}`);
      found = more ? [...found, ...reply.rooms] : reply.rooms;
      next = reply.next;
      render();
    } catch (err) {
      showError(err);
    }
  };

  const open = async (room) => {
    try {
      const info = await api("GET", `/v1/admin/rooms/${enc(room)}`);
      showDetail(info);
      logCard.hidden = false;
      logView(api, logCard, room);
    } catch (err) {
      showError(err);
    }
  };

  const showDetail = (info) => {
    detail.hidden = false;
    const facts = [
      ["console.room.head", number(info.head)], ["console.room.epoch", info.epoch],
      ["console.room.trimmed", number(info.trimmed)],
      ["console.room.retention", t("console.room.retentionValue", {
        messages: number(info.retention.max_messages),
        days: number(info.retention.max_age_s / 86400) })],
      ["console.room.subscribers", number(info.subscribers_here)],
      ["console.room.presence", info.present === null ? "–" : info.present.length
        ? info.present.map((p) => `${p.user} (${p.role}) ×${p.connections}`).join(", ") : "0"],
      ["console.room.snapshot", info.snapshot_seq === null ? "–" : number(info.snapshot_seq)],
    ];
    fill(detail, el("h2", {}, el("code", {}, info.room)),
      el("dl", { class: "facts" }, facts.map(([key, value]) => [el("dt", {}, T(key)),
        el("dd", {}, value)])),
      el("div", { class: "actions" },
        info.domain ? el("button", { type: "button", onclick: () => travel.show(info.room,
          info.head) }, T("console.room.travel")) : null,
        info.kind === "queue" ? el("button", { type: "button", "data-testid": "close-queue",
          onclick: () => closeQueue(info.room) }, T("console.room.close")) : null,
        el("button", { type: "button", class: "bad", "data-testid": "reset-room",
          onclick: () => confirmReset(info) }, T("console.room.reset"))));
  };

  const closeQueue = async (room) => {
    try {
      const reply = await api("POST", `/v1/admin/rooms/${enc(room)}/close`, {});
      toast(t(reply.changed ? "console.room.closed" : "console.room.alreadyClosed", { room }),
        { kind: "ok" });
      open(room);
    } catch (err) {
      showError(err);
    }
  };

  const confirmReset = (info) => {
    const loses = info.reset_loses;
    const typed = input("reset-confirm", { placeholder: info.room });
    const go = el("button", { type: "submit", class: "bad", disabled: true },
      T("console.reset.go"));
    typed.addEventListener("input", () => { go.disabled = typed.value.trim() !== info.room; });
    const dialog = el("dialog", { "data-testid": "reset-dialog", "aria-labelledby": "reset-title" },
      el("form", { method: "dialog", onsubmit: async (event) => {
        event.preventDefault();
        try {
          const reply = await api("POST", `/v1/admin/rooms/${enc(info.room)}/reset`,
            { confirm: typed.value.trim() });
          toast(t("console.reset.done", { room: info.room, dropped: reply.dropped,
            epoch: reply.epoch }), { kind: "ok" });
          dialog.close();
          open(info.room);
        } catch (err) {
          showError(err);
        }
      } },
      el("h2", { id: "reset-title" }, T("console.reset.title", { room: info.room })),
      el("p", { class: "danger" }, T("console.reset.loses", { messages: loses.messages,
        first: loses.first, last: loses.last, epoch: loses.epoch })),
      loses.state ? el("p", {}, T("console.reset.state")) : null,
      el("p", {}, T("console.reset.subscribers", { count: loses.subscribers })),
      el("label", { for: "reset-confirm" }, T("console.reset.confirm")), typed,
      el("div", { class: "actions spaced" }, go, el("button", { type: "button",
        onclick: () => dialog.close() }, T("console.reset.cancel")))));
    dialog.addEventListener("close", () => dialog.remove());
    document.body.append(dialog);
    dialog.showModal();
  };

  onLanguage(render);
  const card = el("section", { class: "card", id: "rooms" },
    el("h2", {}, T("console.rooms.heading"), count),
    el("form", { class: "row", "data-testid": "room-search", onsubmit: (event) => {
      event.preventDefault();
      search();
    } }, field("room-q", "console.rooms.search", q), field("room-kind", "console.rooms.kind", kind),
    el("div", { class: "shrink" }, el("button", { type: "submit", class: "primary" },
      T("console.rooms.find")))),
    results);
  return [card, detail, logCard, travel.node];
}

// -- a room's log ------------------------------------------------------------------------------

function logView(api, card, room) {
  const by = input("log-by");
  const event = input("log-event", { placeholder: "request" });
  const text = input("log-text");
  const body = el("div");
  let after = null;

  const load = async () => {
    const params = new URLSearchParams({ limit: "50" });
    if (after !== null) params.set("after", String(after));
    for (const [name, node] of [["by", by], ["event", event], ["text", text]]) {
      if (node.value.trim()) params.set(name, node.value.trim());
    }
    try {
      const page = await api("GET", `/v1/admin/rooms/${enc(room)}/log?${params}`);
      const rows = page.messages.map((m) => el("li", { class: "item", dataset: { seq: m.seq } },
        el("div", { class: "sub" }, el("strong", {}, `#${m.seq}`), ` · ${dateTime(m.ts)} · `,
          el("span", {}, m.by)),
        el("code", { class: "json" }, JSON.stringify(m.data))));
      fill(body, rows.length ? el("ul", { class: "list log" }, rows)
        : el("p", { class: "empty" }, T("console.none")),
      el("p", { class: "muted" }, T("console.log.scanned", { scanned: page.scanned,
        after: page.after })),
      el("div", { class: "actions" },
        page.prev !== null ? el("button", { type: "button", class: "small", onclick: () => {
          after = page.prev;
          load();
        } }, T("console.log.older")) : null,
        page.next !== null ? el("button", { type: "button", class: "small", onclick: () => {
          after = page.next;
          load();
        } }, T("console.log.newer")) : null));
    } catch (err) {
      showError(err);
    }
  };

  fill(card, el("h2", {}, T("console.log.heading", { room })),
    el("form", { class: "row", onsubmit: (e) => {
      e.preventDefault();
      after = by.value || event.value || text.value ? 0 : null;
      load();
    } }, field("log-by", "console.log.by", by), field("log-event", "console.log.event", event),
    field("log-text", "console.log.text", text),
    el("div", { class: "shrink" }, el("button", { type: "submit" }, T("console.log.filter")))),
    body);
  load();
}

// -- time travel -------------------------------------------------------------------------------

function travelCard(api) {
  const room = input("travel-room", { placeholder: "repair:t-100" });
  const seq = input("travel-seq", { type: "number", min: 0, step: 1, inputmode: "numeric" });
  const as = el("select", { id: "travel-as", name: "travel-as" });
  const user = input("travel-user");
  const out = el("div", { class: "travel-grid", "data-testid": "travel", "aria-live": "polite" });
  let head = null;

  const audiences = () => {
    const kind = room.value.trim().split(":")[0];
    const wanted = AUDIENCES[kind] || ["admin"];
    if ([...as.options].map((o) => o.value).join() !== wanted.join()) {
      const keep = as.value;
      fill(as, wanted.map((a) => el("option", { value: a, selected: a === keep }, a)));
    }
  };
  room.addEventListener("input", audiences);

  const go = async () => {
    audiences();
    const name = room.value.trim();
    if (!name) return;
    const params = new URLSearchParams({ as: as.value });
    if (seq.value !== "") params.set("at", seq.value);
    if (user.value.trim()) params.set("user", user.value.trim());
    try {
      const body = await api("GET", `/v1/rooms/${enc(name)}/state?${params}`);
      head = body.head;
      seq.value = String(body.seq);
      seq.max = String(body.head);
      const e = body.event;
      fill(out,
        el("div", {},
          el("p", { "data-testid": "travel-summary" }, el("strong", {}, t("console.travel.at", {
            room: body.room, seq: body.seq, head: body.head, audience: body.as,
            viewer: body.viewer }))),
          e ? el("p", { "data-testid": "travel-event" }, t("console.travel.event", { seq: e.seq,
            type: e.type, by: e.by, when: dateTime(e.ts) }))
            : el("p", { class: "muted" }, T("console.travel.start")),
          e ? el("h3", {}, T("console.travel.sent")) : null,
          e && e.data === null ? el("p", { class: "muted", "data-testid": "travel-hidden" },
            T("console.travel.hidden")) : null,
          e && e.data !== null ? json(e.data, t("console.travel.sent")) : null),
        el("div", { "data-testid": "travel-state" }, el("h3", {}, T("console.travel.state")),
          json(body.state, t("console.travel.state"))));
    } catch (err) {
      showError(err);
    }
  };

  const step = (by) => {
    const now = Number(seq.value || head || 0);
    const next = Math.max(0, head === null ? now + by : Math.min(head, now + by));
    seq.value = String(next);
    go();
  };

  const node = el("section", { class: "card", id: "travel" },
    el("h2", {}, T("console.travel.heading")),
    el("form", { "data-testid": "travel-form", onsubmit: (event) => {
      event.preventDefault();
      go();
    } },
    el("div", { class: "row" }, field("travel-room", "console.travel.room", room),
      el("div", { class: "narrow" }, el("label", { for: "travel-seq" }, T("console.travel.seq")),
        seq),
      field("travel-as", "console.travel.as", as), field("travel-user", "console.travel.user", user)),
    el("div", { class: "actions spaced" },
      el("button", { type: "submit", class: "primary" }, T("console.travel.show")),
      el("button", { type: "button", onclick: () => step(-1) }, T("console.travel.prev")),
      el("button", { type: "button", onclick: () => step(1) }, T("console.travel.next")))),
    out);
  audiences();
  return {
    node,
    show(name, at) {
      room.value = name;
      seq.value = String(at);
      audiences();
      node.scrollIntoView();
      go();
    },
  };
}
