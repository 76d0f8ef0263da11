// DJ console: pending requests by votes (accept / veto, one by one or in a batch), the
// accepted queue (drag, or the arrows, to reorder; play, played, veto), now playing,
// open / close, live counters. ?token=<dj token>&room=queue:<id>

import {
  Optimistic, connectionBadge, createClient, describeError, el, fill, followRoom, header,
  setup, throttled, timeAgo, toast,
} from "./app.js";
import { applyEvent, fromState, view } from "./queue-model.js";

const cfg = setup([{ name: "room", label: "Queue", placeholder: "queue:club42-set1" }],
  { hint: "A DJ token (roomlog token --user dj1 --role dj) and the queue of your set." });
if (cfg) start(cfg);

function start({ token, room: rawRoom, claims }) {
  const room = rawRoom.includes(":") ? rawRoom : `queue:${rawRoom}`;
  header("DJ console", `${room} · ${claims.sub}`);
  const client = createClient(token);
  const badge = connectionBadge(client);
  let model = null;
  const selected = new Set();

  const stats = el("section", { class: "stats", "data-testid": "counters" });
  const nowCard = el("section", { class: "card now", "data-testid": "now-playing" });
  const pendingList = el("ul", { class: "list", "data-testid": "pending" });
  const pendingCount = el("span", { class: "count" });
  const queueList = el("ol", { class: "list", "data-testid": "queue" });
  const queueCount = el("span", { class: "count" });
  const reason = el("input", { type: "text", placeholder: "Veto reason (optional)",
    maxlength: 280 });
  const batchLabel = el("span", { class: "muted" });
  const batchAccept = el("button", { class: "good small", "data-testid": "batch-accept",
    onclick: () => batch("accept") }, "Accept selected");
  const batchVeto = el("button", { class: "bad small", "data-testid": "batch-veto",
    onclick: () => batch("veto") }, "Veto selected");
  const selectAll = el("input", { type: "checkbox", title: "Select all",
    onchange: () => {
      const v = model && view(optimistic.overlay(model));
      selected.clear();
      if (selectAll.checked && v) v.pending.forEach((r) => selected.add(r.id));
      render();
    } });
  const openToggle = el("button", { class: "small", "data-testid": "open-toggle",
    onclick: () => toggleOpen() });

  fill(document.querySelector("main"),
    stats, nowCard,
    el("div", { class: "cols" },
      el("section", { class: "card" },
        el("h2", {}, "Requests", pendingCount),
        el("div", { class: "batch" }, el("label", { class: "inline", style: { margin: 0 } },
          selectAll, batchLabel), batchAccept, batchVeto, reason),
        pendingList),
      el("section", { class: "card" },
        el("h2", {}, "Queue", queueCount, el("span", { style: { flex: 1 } }), openToggle),
        el("p", { class: "muted", style: { margin: "0 0 .6rem", fontSize: ".85rem" } },
          "Drag to reorder, or use the arrows."),
        queueList)));

  const optimistic = new Optimistic(() => render());
  const render = throttled(draw);

  function stat(n, label, extra) {
    return el("div", { class: "stat" }, el("div", { class: "n" }, n),
      el("div", { class: "l" }, label), extra || null);
  }

  function draw() {
    badge();
    if (!model) return;
    const v = view(optimistic.overlay(model));
    for (const id of [...selected]) if (!v.pending.some((r) => r.id === id)) selected.delete(id);
    const c = v.counters;
    const cap = c.cap || 0;
    fill(stats,
      stat(c.pending, "waiting"),
      stat(c.accepted, "in the queue"),
      stat(c.played, "played"),
      stat(`${c.requestsLastHour}${cap ? ` / ${cap}` : ""}`, "requests this hour",
        cap ? el("div", { class: "bar" }, el("span", {
          style: { width: `${Math.min(100, (100 * c.requestsLastHour) / cap)}%` } })) : null),
      stat(v.open ? "open" : "closed", "new requests"));
    fill(openToggle, v.open ? "Close requests" : "Open requests");

    if (v.nowPlaying) {
      const r = v.nowPlaying;
      fill(nowCard, el("div", { class: "eq" }, "♫"),
        el("div", { style: { flex: 1 } }, el("div", { class: "label" }, "Now playing"),
          el("div", { class: "song" }, r.title), el("div", {}, `${r.artist} · for ${r.user}`)),
        el("button", { onclick: () => act("request.played", r, "Mark played") }, "Done"));
    } else {
      fill(nowCard, el("div", { class: "eq" }, "♫"),
        el("div", {}, el("div", { class: "label" }, "Now playing"),
          el("div", { class: "song" }, "Nothing")));
    }

    fill(pendingCount, String(v.pending.length));
    fill(batchLabel, selected.size ? `${selected.size} selected` : "Select");
    batchAccept.disabled = batchVeto.disabled = selected.size === 0;
    selectAll.checked = v.pending.length > 0 && selected.size === v.pending.length;
    fill(pendingList, v.pending.length ? v.pending.map((r) => el("li", {
      class: `item${r.sending ? " sending" : ""}`, dataset: { requestId: r.id, status: r.status } },
    el("input", { type: "checkbox", checked: selected.has(r.id), title: "Select",
      onchange: (e) => { if (e.target.checked) selected.add(r.id); else selected.delete(r.id); render(); } }),
    el("div", { class: "grow" }, el("div", { class: "song" }, r.title),
      el("div", { class: "sub" }, `${r.artist} · ${r.user} · ${timeAgo(r.submitted_ms)}`,
        r.note ? ` · “${r.note}”` : "")),
    el("span", { class: "chip", title: "votes" }, `▲ ${r.votes}`),
    el("div", { class: "actions" },
      el("button", { class: "good small", "data-testid": "accept",
        onclick: () => act("request.accept", r, "Accept") }, "Accept"),
      el("button", { class: "bad small", "data-testid": "veto",
        onclick: () => act("request.veto", r, "Veto") }, "Veto"))))
      : el("li", { class: "empty" }, "No requests waiting."));

    fill(queueCount, String(v.queue.length));
    fill(queueList, v.queue.length ? v.queue.map((r, i) => {
      const li = el("li", { class: "item", draggable: "true",
        dataset: { requestId: r.id, status: r.status } },
      el("span", { class: "pos" }, r.position),
      el("div", { class: "grow" }, el("div", { class: "song" }, r.title),
        el("div", { class: "sub" }, `${r.artist} · ${r.user} · ▲ ${r.votes}`)),
      el("div", { class: "actions" },
        el("button", { class: "small icon", title: "Move up", disabled: i === 0,
          onclick: () => reorder(r, r.position - 1) }, "↑"),
        el("button", { class: "small icon", title: "Move down", disabled: i === v.queue.length - 1,
          onclick: () => reorder(r, r.position + 1) }, "↓"),
        el("button", { class: "good small", "data-testid": "play",
          onclick: () => act("request.play", r, "Play") }, "Play"),
        el("button", { class: "small", title: "Played without announcing",
          onclick: () => act("request.played", r, "Mark played") }, "Played"),
        el("button", { class: "bad small", onclick: () => act("request.veto", r, "Veto") }, "Veto")));
      dragAndDrop(li, r);
      return li;
    }) : el("li", { class: "empty" }, "Accept requests to line them up."));
  }

  // -- drag and drop reordering ---------------------------------------------------------
  let dragged = null;
  function dragAndDrop(li, r) {
    li.addEventListener("dragstart", (e) => {
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

  function act(name, r, label) {
    const args = { request_id: r.id };
    const why = name === "request.veto" && reason.value.trim();
    if (why) args.reason = why;
    selected.delete(r.id);
    optimistic.run({
      label: `${label} “${r.title}”`,
      apply: (m) => { if (m.requests[r.id]) OPTIMISTIC[name](m, r.id, why); },
      send: () => client.command(room, name, args),
    });
  }

  function reorder(r, position) {
    optimistic.run({
      label: `Move “${r.title}”`,
      apply: (m) => {
        const q = m.queue.filter((id) => id !== r.id);
        q.splice(Math.max(0, Math.min(q.length, position - 1)), 0, r.id);
        m.queue = q;
      },
      send: () => client.command(room, "queue.reorder", { request_id: r.id, position }),
    });
  }

  async function batch(action) {
    const ids = [...selected];
    if (!ids.length) return;
    selected.clear();
    const why = action === "veto" && reason.value.trim();
    const args = { action, request_ids: ids };
    if (why) args.reason = why;
    const ack = await optimistic.run({
      label: `${action === "accept" ? "Accept" : "Veto"} ${ids.length} requests`,
      apply: (m) => {
        for (const id of ids) if (m.requests[id]) OPTIMISTIC[`request.${action}`](m, id, why);
      },
      send: () => client.command(room, "request.batch", args),
    });
    const result = ack && ack.result;
    if (result && result.failed) {
      const failed = result.results.filter((x) => !x.ok)
        .map((x) => `${model.requests[x.request_id]?.title || x.request_id}: ${describeError(x)}`);
      toast(`${result.succeeded} of ${ids.length} done. ${failed.join("; ")}`, "error");
    }
  }

  function toggleOpen() {
    const open = model && view(optimistic.overlay(model)).open;
    optimistic.run({
      label: open ? "Close requests" : "Open requests",
      apply: (m) => { m.open = !open; },
      send: () => client.command(room, open ? "queue.close" : "queue.open", {}),
    });
  }

  // -- live -------------------------------------------------------------------------
  followRoom(client, room, optimistic, {
    load: (state, seq) => { model = fromState(state, claims.sub, seq); },
    apply: (data, m) => applyEvent(model, data, m),
    render,
    what: "Cannot follow the queue",
  });
  setInterval(render, 30000); // "2 min ago", the hourly counter
  render();
}
