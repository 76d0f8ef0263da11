// DJ console: pending requests by votes (accept / veto, one by one or in a batch), the
// accepted queue (drag, or the arrows, to reorder; play, played, veto), now playing,
// open / close, live counters. A set runs for hours: the token is renewed from the
// operator's token endpoint (config.json) without a reload.
// Link: dj.html?room=queue:<id>#token=<dj token>

import {
  Optimistic, T, el, fill, followRoom, money, number, onLanguage, resumeWrites, showError,
  startPage, t, throttled, timeAgo, toast,
} from "./app.js";
import { applyEvent, fromState, view } from "./queue-model.js";


function run({ client, gate, values, me }) {
  const room = values.room.includes(":") ? values.room : `queue:${values.room}`;
  let model = null;
  const selected = new Set();

  const stats = el("section", { class: "stats", "data-testid": "counters",
    "aria-label": T("dj.counters") });
  const nowCard = el("section", { class: "card now", "data-testid": "now-playing" });
  const pendingList = el("ul", { class: "list", "data-testid": "pending" });
  const pendingCount = el("span", { class: "count" });
  const queueList = el("ol", { class: "list", "data-testid": "queue" });
  const queueCount = el("span", { class: "count" });
  const reason = el("input", { id: "veto-reason", type: "text", maxlength: 280,
    placeholder: T("dj.reasonHint"), "data-testid": "veto-reason", autocomplete: "off" });
  const batchAccept = el("button", { type: "button", class: "good small",
    "data-testid": "batch-accept", onclick: () => batch("accept") }, T("dj.batchAccept"));
  const batchVeto = el("button", { type: "button", class: "bad small", "data-testid": "batch-veto",
    onclick: () => batch("veto") }, T("dj.batchVeto"));
  const selectAll = el("input", { id: "select-all", type: "checkbox",
    onchange: () => {
      const v = model && view(optimistic.overlay(model));
      selected.clear();
      if (selectAll.checked && v) v.pending.forEach((r) => selected.add(r.id));
      render();
    } });
  const selectLabel = el("label", { class: "inline", for: "select-all" });
  const openToggle = el("button", { type: "button", class: "small", "data-testid": "open-toggle",
    onclick: () => toggleOpen() });

  fill(document.querySelector("main"),
    stats, nowCard,
    el("div", { class: "cols" },
      el("section", { class: "card", "aria-labelledby": "pending-heading" },
        el("h2", { id: "pending-heading" }, T("dj.pending.heading"), pendingCount),
        el("div", { class: "batch" },
          el("div", { class: "select" }, selectAll, selectLabel),
          el("div", { class: "actions" }, batchAccept, batchVeto),
          el("label", { class: "reason", for: "veto-reason" }, T("dj.reason")), reason),
        pendingList),
      el("section", { class: "card", "aria-labelledby": "queue-heading" },
        el("div", { class: "card-head" },
          el("h2", { id: "queue-heading" }, T("dj.queue.heading"), queueCount), openToggle),
        el("p", { class: "muted hint" }, T("dj.queue.hint")),
        queueList)));

  const optimistic = new Optimistic(() => render(), { staff: true });
  const render = throttled(draw);
  gate.watch(render);
  onLanguage(render); // the lists are drawn in the language of the moment

  function stat(n, label, extra) {
    return el("div", { class: "stat" }, el("div", { class: "n" }, n),
      el("div", { class: "l" }, label), extra || null);
  }

  /** A paid request's chip: its amount (and a jump), or nothing for a free one. */
  function paidChip(q) {
    if (!q.paid) return null;
    return el("span", { class: `chip pay ${q.paid.status}`, "data-testid": "paid" },
      t(q.jump ? "dj.paidJump" : "dj.paid",
        { amount: money(q.paid.amount, q.paid.currency, { minor: true }) }));
  }

  /** Earnings per currency: settled (tips among them) and paid but not played yet. */
  function moneyStats(v) {
    return Object.entries(v.earnings).map(([currency, e]) => stat(
      money(e.settled, currency, { minor: true }),
      t("dj.stat.earned", { tips: money(e.tips, currency, { minor: true }),
        waiting: money(e.waiting, currency, { minor: true }) })));
  }

  function draw() {
    gate.apply(openToggle, !model);
    if (!model) {
      fill(openToggle, t("dj.close"));
      fill(pendingList, el("li", { class: "empty" }, t("common.loading")));
      gate.apply(batchAccept, true);
      gate.apply(batchVeto, true);
      return;
    }
    const v = view(optimistic.overlay(model));
    for (const id of [...selected]) if (!v.pending.some((r) => r.id === id)) selected.delete(id);
    const c = v.counters;
    const cap = c.cap || 0;
    fill(stats,
      stat(number(c.pending), t("dj.stat.pending")),
      stat(number(c.accepted), t("dj.stat.queue")),
      stat(number(c.played), t("dj.stat.played")),
      stat(cap ? t("dj.stat.ofCap", { n: c.requestsLastHour, cap }) : number(c.requestsLastHour),
        t("dj.stat.hour"),
        cap ? el("div", { class: "bar", role: "progressbar", "aria-valuemin": 0,
          "aria-valuemax": cap, "aria-valuenow": c.requestsLastHour,
          "aria-label": t("dj.stat.hour") }, el("span", {
          style: { width: `${Math.min(100, (100 * c.requestsLastHour) / cap)}%` } })) : null),
      stat(t(v.open ? "dj.stat.open" : "dj.stat.closed"), t("dj.stat.requests")),
      ...moneyStats(v));
    fill(openToggle, t(v.open ? "dj.close" : "dj.open"));

    const r = v.nowPlaying;
    fill(nowCard, el("div", { class: "eq", "aria-hidden": "true" }, "♫"),
      el("div", { class: "grow" }, el("div", { class: "label" }, t("common.nowPlaying")),
        el("div", { class: "song" }, r ? r.title : t("dj.nothing")),
        r ? el("div", {}, t("dj.forGuest", { artist: r.artist, user: r.user })) : null),
      r ? el("button", { type: "button", ...gate.lock(), dataset: { key: "done" },
        onclick: () => act("request.played", r) }, t("dj.done")) : null);

    fill(pendingCount, String(v.pending.length));
    fill(selectLabel, selected.size ? t("dj.selected", { count: selected.size }) : t("dj.selectAll"));
    gate.apply(batchAccept, selected.size === 0);
    gate.apply(batchVeto, selected.size === 0);
    selectAll.checked = v.pending.length > 0 && selected.size === v.pending.length;
    fill(pendingList, v.pending.length ? v.pending.map((q) => el("li", {
      class: `item wide${q.sending ? " sending" : ""}`, dataset: { requestId: q.id, status: q.status } },
    el("input", { type: "checkbox", checked: selected.has(q.id), dataset: { key: `select:${q.id}` },
      "aria-label": t("dj.select", { title: q.title }),
      onchange: (e) => { if (e.target.checked) selected.add(q.id); else selected.delete(q.id); render(); } }),
    el("div", { class: "grow" }, el("div", { class: "song", "data-testid": "title" }, q.title),
      el("div", { class: "sub" }, `${q.artist} · ${q.user} · ${timeAgo(q.submitted_ms)}`,
        q.note ? ` · “${q.note}”` : "")),
    paidChip(q),
    el("span", { class: "chip votes", "aria-label": t("common.votes", { count: q.votes }) },
      `▲ ${number(q.votes)}`),
    el("div", { class: "actions" },
      el("button", { type: "button", class: "good small", "data-testid": "accept", ...gate.lock(),
        dataset: { key: `accept:${q.id}` },
        "aria-label": t("dj.acceptLabel", { title: q.title }),
        onclick: () => act("request.accept", q) }, t("dj.accept")),
      el("button", { type: "button", class: "bad small", "data-testid": "veto", ...gate.lock(),
        dataset: { key: `veto:${q.id}` },
        "aria-label": t("dj.vetoLabel", { title: q.title }),
        onclick: () => act("request.veto", q) }, t("dj.veto")))))
      : el("li", { class: "empty" }, t("dj.pending.empty")));

    fill(queueCount, String(v.queue.length));
    fill(queueList, v.queue.length ? v.queue.map((q, i) => {
      const li = el("li", { class: "item wide", draggable: "true",
        dataset: { requestId: q.id, status: q.status } },
      el("span", { class: "pos", "aria-hidden": "true" }, q.position),
      el("div", { class: "grow" }, el("div", { class: "song", "data-testid": "title" }, q.title),
        el("div", { class: "sub" }, `${q.artist} · ${q.user} · ▲ ${number(q.votes)}`)),
      paidChip(q),
      el("div", { class: "actions" },
        el("button", { type: "button", class: "small icon", ...gate.lock(i === 0),
          dataset: { key: `up:${q.id}` },
          "aria-label": t("dj.upLabel", { title: q.title }),
          onclick: () => reorder(q, q.position - 1) }, "↑"),
        el("button", { type: "button", class: "small icon", ...gate.lock(i === v.queue.length - 1),
          dataset: { key: `down:${q.id}` },
          "aria-label": t("dj.downLabel", { title: q.title }),
          onclick: () => reorder(q, q.position + 1) }, "↓"),
        el("button", { type: "button", class: "good small", "data-testid": "play", ...gate.lock(),
          dataset: { key: `play:${q.id}` },
          "aria-label": t("dj.playLabel", { title: q.title }),
          onclick: () => act("request.play", q) }, t("dj.play")),
        el("button", { type: "button", class: "small", ...gate.lock(),
          dataset: { key: `played:${q.id}` }, "aria-label": t("dj.playedLabel", { title: q.title }),
          onclick: () => act("request.played", q) }, t("dj.played")),
        el("button", { type: "button", class: "bad small", ...gate.lock(),
          dataset: { key: `qveto:${q.id}` }, "aria-label": t("dj.vetoLabel", { title: q.title }),
          onclick: () => act("request.veto", q) }, t("dj.veto"))));
      dragAndDrop(li, q);
      return li;
    }) : el("li", { class: "empty" }, t("dj.queue.empty")));
  }

  // -- drag and drop reordering (the arrows do the same from the keyboard) --------------
  let dragged = null;
  function dragAndDrop(li, r) {
    li.addEventListener("dragstart", (e) => {
      if (gate.off) {
        e.preventDefault();
        return;
      }
      dragged = r;
      li.classList.add("dragging");
      e.dataTransfer.effectAllowed = "move";
      e.dataTransfer.setData("text/plain", r.id);
    });
    li.addEventListener("dragend", () => { dragged = null; li.classList.remove("dragging"); });
    li.addEventListener("dragover", (e) => {
      if (!dragged || dragged.id === r.id) return;
      e.preventDefault();
      li.classList.add("drop-target");
    });
    li.addEventListener("dragleave", () => li.classList.remove("drop-target"));
    li.addEventListener("drop", (e) => {
      e.preventDefault();
      li.classList.remove("drop-target");
      if (dragged && dragged.id !== r.id) reorder(dragged, r.position);
      dragged = null;
    });
  }

  // -- commands, optimistic -----------------------------------------------------------
  const OPTIMISTIC = {
    "request.accept": (m, id) => {
      m.requests[id].status = "accepted";
      if (!m.queue.includes(id)) m.queue.push(id);
    },
    "request.veto": (m, id, why) => {
      Object.assign(m.requests[id], { status: "vetoed", reason: why || null });
      m.queue = m.queue.filter((q) => q !== id);
    },
    "request.play": (m, id) => {
      if (m.playing && m.requests[m.playing]) m.requests[m.playing].status = "played";
      m.requests[id].status = "playing";
      m.playing = id;
      m.queue = m.queue.filter((q) => q !== id);
    },
    "request.played": (m, id) => {
      m.requests[id].status = "played";
      if (m.playing === id) m.playing = null;
      m.queue = m.queue.filter((q) => q !== id);
    },
  };
  const LABELS = { "request.accept": "dj.action.accept", "request.veto": "dj.action.veto",
    "request.play": "dj.action.play", "request.played": "dj.action.played" };

  /** The veto reason is used once: taken out of the field, put back if refused. */
  function takeReason() {
    const why = reason.value.trim();
    reason.value = "";
    return {
      why,
      giveBack: () => {
        if (why && !reason.value) reason.value = why;
      },
    };
  }

  function act(name, r, id = undefined) {
    const args = { request_id: r.id };
    const used = name === "request.veto" ? takeReason() : { why: "", giveBack: () => {} };
    if (used.why) args.reason = used.why;
    selected.delete(r.id);
    return optimistic.run({
      label: t(LABELS[name], { title: r.title }),
      apply: (m) => { if (m.requests[r.id]) OPTIMISTIC[name](m, r.id, used.why); },
      send: () => client.command(room, name, args, { id }),
      onError: () => used.giveBack(),
    });
  }

  function reorder(r, position, id = undefined) {
    return optimistic.run({
      label: t("dj.action.move", { title: r.title }),
      apply: (m) => {
        const q = m.queue.filter((x) => x !== r.id);
        q.splice(Math.max(0, Math.min(q.length, position - 1)), 0, r.id);
        m.queue = q;
      },
      send: () => client.command(room, "queue.reorder", { request_id: r.id, position }, { id }),
    });
  }

  async function batch(action) {
    const ids = [...selected];
    if (!ids.length) return;
    selected.clear();
    const used = action === "veto" ? takeReason() : { why: "", giveBack: () => {} };
    const args = { action, request_ids: ids };
    if (used.why) args.reason = used.why;
    const ack = await optimistic.run({
      label: t(action === "accept" ? "dj.action.acceptMany" : "dj.action.vetoMany",
        { count: ids.length }),
      apply: (m) => {
        for (const id of ids) if (m.requests[id]) OPTIMISTIC[`request.${action}`](m, id, used.why);
      },
      send: () => client.command(room, "request.batch", args),
      onError: () => used.giveBack(),
    });
    const result = ack && ack.result;
    if (result && result.failed) {
      const failed = result.results.filter((x) => !x.ok);
      toast(t("dj.batchPartly", { done: result.succeeded, count: ids.length }), {
        kind: "warn",
        detail: failed.map((x) => `${model.requests[x.request_id]?.title || x.request_id}: `
          + `${t(`error.${x.code}`)}`).join("; "),
      });
    }
  }

  function toggleOpen(id = undefined) {
    const open = model && view(optimistic.overlay(model)).open;
    return optimistic.run({
      label: t(open ? "dj.close" : "dj.open"),
      apply: (m) => { m.open = !open; },
      send: () => client.command(room, open ? "queue.close" : "queue.open", {}, { id }),
    });
  }

  // -- live -------------------------------------------------------------------------
  followRoom(client, room, optimistic, {
    load: (state, seq) => { model = fromState(state, me, seq); },
    apply: (data, m) => applyEvent(model, data, m),
    render,
    what: t("dj.follow"),
  });
  // Writes an earlier page left unanswered: sent by the client; shown until answered.
  resumeWrites(client, room, (frame) => {
    client.command(room, frame.name, frame.args, { id: frame.id })
      .catch((err) => showError(err, { staff: true }));
  });
  setInterval(render, 30000); // "2 min ago", the hourly counter
  render();
}

const page = await startPage({ page: "dj", title: "dj.title", hint: "dj.setupHint",
  fields: [{ name: "room", label: "setup.queue", placeholder: "queue:club42-set1" }] });
if (page) run(page);
