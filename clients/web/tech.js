// Technician console: my tickets, live from the staff feed repairs:{me}; the selected
// ticket (repair:{ticket}) with status moves, progress, ETA, photos (upload, then
// photo.add), QA and notes; and a form to open a new ticket.
// ?token=<technician token>[&ticket=<ticket id>]

import {
  Optimistic, clock, connectionBadge, createClient, describeError, el, fill, header, params,
  setup, throttled, timeAgo, toast,
} from "./app.js";
import {
  STATUS_LABELS, applyEvent, applyFeed, fromState, money, photoSrc,
} from "./repair-model.js";

const cfg = setup([], { hint: "A technician token: roomlog token --user tech1 --role technician" });
if (cfg) start(cfg);

function start({ token, claims }) {
  const me = claims.sub;
  header("Technician console", `repairs:${me}`);
  const client = createClient(token);
  const badge = connectionBadge(client);
  const tickets = {};
  let current = null; // {room, sub, model, optimistic}
  let refresh = null;

  const list = el("ul", { class: "list tickets", "data-testid": "tickets" });
  const detail = el("div", { style: { display: "grid", gap: "1rem" }, "data-testid": "detail" });
  const newForm = newTicketForm();
  fill(document.querySelector("main"),
    el("div", { class: "cols wide-right" },
      el("div", { style: { display: "grid", gap: "1rem" } },
        el("section", { class: "card" }, el("h2", {}, "My tickets"), list), newForm),
      detail));

  const render = throttled(draw);

  // -- the feed: every event of my tickets, from the start of the retained log -------
  client.subscribe(`repairs:${me}`, {
    fromStart: true,
    onMessage(m) {
      applyFeed(tickets, m.data, m);
      if (current && m.data.event === "ticket.unassigned" && m.data.room === current.room) {
        toast(`You are no longer assigned to ${m.data.ticket}.`, "error");
      }
      render();
    },
    onReset() {
      render();
    },
    onError(err) {
      toast(describeError(err, "Cannot follow your tickets"), "error", 0);
    },
  });

  function draw() {
    badge();
    const rows = Object.values(tickets).sort((a, b) => (b.updated_ms || 0) - (a.updated_ms || 0));
    fill(list, rows.length ? rows.map((t) => el("li", {
      class: `item${current && current.room === t.room ? " selected" : ""}`,
      dataset: { ticket: t.ticket, status: t.status || "" },
      onclick: () => open(t.ticket) },
    el("div", { class: "top" }, el("strong", {}, t.ticket),
      el("span", { class: `chip ${t.status}` }, STATUS_LABELS[t.status] || t.status || "…")),
    el("div", { class: "sub" }, `${t.device} · ${t.customer_id}`),
    el("div", { class: "bar" }, el("span", { style: { width: `${t.progress || 0}%` } })),
    el("small", { class: "muted" }, `${(t.last || "").replace(".", " ")} · ${timeAgo(t.updated_ms)}`)))
      : el("li", { class: "empty" }, "No tickets assigned to you yet."));
    drawDetail();
  }

  // -- one ticket ----------------------------------------------------------------------
  function open(ticket) {
    const room = ticket.startsWith("repair:") ? ticket : `repair:${ticket}`;
    if (current && current.room === room) return;
    if (current) current.sub.close();
    const next = new URLSearchParams(params);
    next.set("ticket", room.slice(7));
    history.replaceState(null, "", `?${next}`);
    const entry = { room, model: null, optimistic: null, sub: null };
    entry.optimistic = new Optimistic(() => render());
    entry.sub = client.subscribe(room, {
      onState(state, { seq }) {
        entry.model = fromState(state, seq);
        entry.optimistic.restart(seq);
        render();
      },
      onMessage(m) {
        if (!entry.model) return;
        applyEvent(entry.model, m.data, m);
        entry.optimistic.reached(m.seq);
        reconcileSoon(entry);
        render();
      },
      onError(err) {
        toast(describeError(err, `Ticket ${room.slice(7)}`), "error");
        if (current === entry) current = null;
        render();
      },
    });
    current = entry;
    forms = makeForms();
    render();
  }

  // What the server derives (the moves I have, the QA gate) is read again after events.
  function reconcileSoon(entry) {
    clearTimeout(refresh);
    refresh = setTimeout(async () => {
      try {
        const body = await client.request("GET", `${client.roomPath(entry.room)}/state`);
        if (entry.model && body.seq === entry.model.seq) {
          entry.model = fromState(body.state, body.seq);
          render();
        }
      } catch {
        /* offline: the next event tries again */
      }
    }, 250);
  }

  let forms = null;
  function makeForms() {
    const f = {};
    f.reason = el("input", { type: "text", placeholder: "Reason the customer sees (optional)" });
    f.internalReason = el("input", { type: "text", placeholder: "Internal reason (staff only)" });
    f.amount = el("input", { type: "number", min: 0, step: "0.01", placeholder: "Amount" });
    f.currency = el("input", { type: "text", value: "EUR", maxlength: 3 });
    f.quoteText = el("input", { type: "text", placeholder: "What the quote covers" });
    f.milestone = el("input", { type: "text", placeholder: "What was done", "data-testid": "milestone-title" });
    f.percent = el("input", { type: "number", min: 0, max: 100, step: 5, "data-testid": "milestone-percent" });
    f.eta = el("input", { type: "datetime-local" });
    f.file = el("input", { type: "file", accept: "image/jpeg,image/png,image/webp", "data-testid": "photo-file" });
    f.category = el("select", {}, ["before", "during", "after", "damage", "part"].map((c) =>
      el("option", { value: c }, c)));
    f.caption = el("input", { type: "text", placeholder: "Caption", "data-testid": "photo-caption" });
    f.photoVisibility = el("select", {}, el("option", { value: "customer" }, "customer sees it"),
      el("option", { value: "internal" }, "internal"));
    f.qaItem = el("input", { type: "text", placeholder: "Check, e.g. touch screen" });
    f.qaPassed = el("input", { type: "checkbox", checked: true });
    f.qaNote = el("input", { type: "text", placeholder: "Note (optional)" });
    f.note = el("textarea", { rows: 2, placeholder: "Note", "data-testid": "note-text" });
    f.priority = el("select", {}, ["normal", "low", "high", "urgent"].map((p) =>
      el("option", { value: p }, p)));
    f.noteVisibility = el("select", { "data-testid": "note-visibility" },
      el("option", { value: "internal" }, "internal"),
      el("option", { value: "customer" }, "customer sees it"));
    f.moves = el("div", { class: "actions", "data-testid": "moves" });
    f.summary = el("section", { class: "card", "data-testid": "ticket" });
    f.photos = el("div", { class: "photos", "data-testid": "photos" });
    f.qa = el("ul", { class: "list", "data-testid": "qa" });
    f.notes = el("div", { "data-testid": "notes" });
    f.timeline = el("ol", { class: "timeline" });
    const form = (onsubmit, ...children) => {
      const node = el("form", {}, ...children);
      node.addEventListener("submit", (e) => { e.preventDefault(); onsubmit(); });
      return node;
    };
    f.cards = [
      f.summary,
      el("section", { class: "card" }, el("h2", {}, "Status"), f.moves,
        el("div", { class: "row", style: { marginTop: ".6rem" } }, f.reason, f.internalReason),
        el("details", {}, el("summary", { class: "muted" }, "Quote (to ask for approval)"),
          el("div", { class: "row", style: { marginTop: ".5rem" } }, f.amount, f.currency, f.quoteText))),
      el("div", { class: "cols" },
        el("section", { class: "card" }, el("h2", {}, "Progress"),
          form(addMilestone, el("div", { class: "row" }, f.milestone,
            el("div", { class: "shrink", style: { width: "6rem" } }, f.percent)),
          el("button", { type: "submit", style: { marginTop: ".5rem" }, "data-testid": "milestone-add" },
            "Add milestone")),
          form(setEta, el("label", { style: { marginTop: ".8rem" } }, "Estimated ready", f.eta),
            el("button", { type: "submit" }, "Set ETA"))),
        el("section", { class: "card" }, el("h2", {}, "Quality check"), f.qa,
          form(recordQa, el("div", { class: "row", style: { marginTop: ".6rem" } }, f.qaItem,
            el("label", { class: "inline shrink", style: { margin: 0 } }, f.qaPassed, "passed")),
          f.qaNote, el("button", { type: "submit", style: { marginTop: ".5rem" } }, "Record")))),
      el("section", { class: "card" }, el("h2", {}, "Photos"), f.photos,
        form(addPhoto, el("div", { class: "row", style: { marginTop: ".6rem" } }, f.file),
          el("div", { class: "row", style: { marginTop: ".5rem" } }, f.category, f.caption,
            f.photoVisibility),
          el("button", { type: "submit", style: { marginTop: ".5rem" }, "data-testid": "photo-add" },
            "Upload photo"))),
      el("section", { class: "card" }, el("h2", {}, "Notes"), f.notes,
        form(addNote, f.note, el("div", { class: "row", style: { marginTop: ".5rem" } },
          f.priority, f.noteVisibility,
          el("button", { type: "submit", class: "primary shrink", "data-testid": "note-add" }, "Add note")))),
      el("section", { class: "card" }, el("h2", {}, "History"), f.timeline),
    ];
    fill(detail, f.cards);
    return f;
  }

  function drawDetail() {
    if (!current) {
      fill(detail, el("section", { class: "card" }, el("p", { class: "empty" },
        "Pick a ticket, or open a new one.")));
      forms = null;
      return;
    }
    if (!forms) forms = makeForms();
    const f = forms;
    if (!current.model) {
      fill(f.summary, el("p", { class: "empty" }, "Loading…"));
      return;
    }
    const m = current.optimistic.overlay(current.model);
    if (!m.exists) {
      fill(f.summary, el("h2", {}, current.room.slice(7)),
        el("p", { class: "empty" }, "This ticket does not exist yet: create it below."));
      fill(f.moves);
      return;
    }
    fill(f.summary,
      el("div", { class: "top", style: { display: "flex", justifyContent: "space-between" } },
        el("h2", { style: { margin: 0 } }, `${m.ticket} · ${m.device}`),
        el("span", { class: `chip ${m.status}`, "data-testid": "ticket-status" },
          STATUS_LABELS[m.status] || m.status)),
      el("p", { class: "muted", style: { margin: ".3rem 0" } },
        `${m.problem} · customer ${m.customer_id} · technicians ${m.technicians.join(", ")}`),
      el("div", { class: "progress", dataset: { value: m.progress } },
        el("span", { style: { width: `${m.progress || 0}%` } })),
      el("small", {}, `${m.progress || 0}%`, m.eta_ms ? ` · ETA ${new Date(m.eta_ms).toLocaleString()}` : ""),
      m.quote ? el("p", { style: { margin: ".4rem 0 0" } }, "Quote ",
        el("strong", {}, money(m.quote.amount, m.quote.currency)), ` · ${m.quote.status}`) : null,
      m.internal && Object.keys(m.internal).length
        ? el("p", { class: "muted" }, `Internal: ${JSON.stringify(m.internal)}`) : null);
    const moves = m.moves || [];
    fill(f.moves, moves.length ? moves.map((to) => el("button", {
      class: to === "cancelled" ? "bad small" : "good small", dataset: { move: to },
      onclick: () => setStatus(to) }, `→ ${STATUS_LABELS[to] || to}`))
      : el("span", { class: "muted" }, "No moves for you from here."));
    if (f.percent.value === "") f.percent.value = String(Math.min(100, (m.progress || 0) + 10));

    fill(f.photos, m.photos.length ? m.photos.map((p) => el("figure", { class: p.sending ? "sending" : "" },
      el("img", { src: photoSrc(m.room, p, token), alt: p.caption }),
      el("figcaption", {}, el("strong", {}, p.category), ` · ${p.caption}`,
        p.visibility === "internal" ? " · internal" : "", p.sending ? " · uploading…" : "")))
      : el("p", { class: "empty" }, "No photos yet."));

    const qa = m.qa || {};
    fill(f.qa, (qa.items || []).length ? qa.items.map((i) => el("li", { class: "item" },
      el("span", { class: `chip ${i.passed ? "playing" : "vetoed"}` }, i.passed ? "pass" : "fail"),
      el("div", { class: "grow" }, i.item, i.note ? el("div", { class: "sub" }, i.note) : null)))
      .concat(el("li", { class: "muted" }, qa.ready ? "Ready for pickup check: passes."
        : `Blocking: ${(qa.failed || []).join(", ") || "nothing recorded yet"}`))
      : el("li", { class: "empty" }, "Nothing recorded."));

    fill(f.notes, m.notes.length ? m.notes.map((n) => el("div", {
      class: `note ${n.visibility} ${n.priority}` },
    el("div", {}, n.text),
    el("div", { class: "meta" }, `${n.from_customer ? "customer" : n.by || "staff"} · ${n.visibility}`
      + ` · ${n.priority} · ${n.sending ? "sending…" : timeAgo(n.ts)}`)))
      : el("p", { class: "empty" }, "No notes yet."));

    fill(f.timeline, [...(m.history || [])].reverse().map((h, i) => el("li", {
      class: i === 0 ? "current" : "done" },
    el("strong", {}, STATUS_LABELS[h.status] || h.status),
    el("span", { class: "when" }, `${clock(h.ts)} · ${h.by || ""}`),
    h.reason ? el("div", { class: "muted" }, h.reason) : null,
    h.internal_reason ? el("div", { class: "muted" }, `internal: ${h.internal_reason}`) : null)));
  }

  // -- commands ------------------------------------------------------------------------
  function run(label, name, args, apply) {
    const entry = current;
    return entry.optimistic.run({
      label, apply: apply || (() => {}),
      send: () => client.command(entry.room, name, args),
    });
  }

  function setStatus(to) {
    const f = forms;
    const args = { status: to };
    if (f.reason.value.trim()) args.reason = f.reason.value.trim();
    if (f.internalReason.value.trim()) args.internal_reason = f.internalReason.value.trim();
    if (to === "awaiting_approval") {
      args.quote = { amount: Number(f.amount.value), currency: f.currency.value.trim().toUpperCase() };
      if (f.quoteText.value.trim()) args.quote.description = f.quoteText.value.trim();
    }
    run(`Move to ${STATUS_LABELS[to] || to}`, "status.set", args, (m) => {
      m.history.push({ status: to, ts: Date.now(), reason: args.reason || null });
      m.status = to;
      m.moves = [];
    }).then((ack) => { if (ack) { f.reason.value = ""; f.internalReason.value = ""; } });
  }

  function addMilestone() {
    const f = forms;
    const title = f.milestone.value.trim();
    const percent = Number(f.percent.value);
    if (!title) return;
    f.milestone.value = "";
    run("Progress", "milestone.add", { title, percent }, (m) => {
      m.milestones.push({ id: "tmp", title, percent, ts: Date.now() });
      m.progress = percent;
    });
  }

  function setEta() {
    const value = forms.eta.value;
    const at = value ? new Date(value).getTime() : null;
    run("ETA", "eta.set", { at }, (m) => { m.eta_ms = at; });
  }

  function recordQa() {
    const f = forms;
    const item = f.qaItem.value.trim();
    if (!item) return;
    const args = { item, passed: f.qaPassed.checked };
    if (f.qaNote.value.trim()) args.note = f.qaNote.value.trim();
    f.qaItem.value = f.qaNote.value = "";
    run("QA", "qa.record", args, (m) => {
      const items = (m.qa.items || []).filter((i) => i.item.toLowerCase() !== item.toLowerCase());
      items.push({ item, passed: args.passed, note: args.note || null, required: true });
      m.qa.items = items;
    });
  }

  function addNote() {
    const f = forms;
    const text = f.note.value.trim();
    if (!text) return;
    const args = { text, priority: f.priority.value, visibility: f.noteVisibility.value };
    f.note.value = "";
    run("Note", "note.add", args, (m) => {
      m.notes.push({ id: "tmp", ...args, from_customer: false, by: me, ts: Date.now(), sending: true });
    });
  }

  async function addPhoto() {
    const f = forms;
    const entry = current;
    const file = f.file.files[0];
    if (!file) {
      toast("Choose a photo first.", "error");
      return;
    }
    const caption = f.caption.value.trim() || file.name;
    const category = f.category.value;
    const visibility = f.photoVisibility.value;
    f.file.value = "";
    f.caption.value = "";
    const localUrl = URL.createObjectURL(file);
    await entry.optimistic.run({
      label: "Photo",
      apply: (m) => {
        m.photos.push({ id: "tmp", category, caption, visibility, localUrl, sending: true });
      },
      send: async () => {
        const upload = await client.request("POST", `${client.roomPath(entry.room)}/photos`, file,
          { raw: true, headers: { "content-type": file.type || "application/octet-stream" } });
        return client.command(entry.room, "photo.add",
          { category, caption, upload_id: upload.upload_id, visibility });
      },
    });
    setTimeout(() => URL.revokeObjectURL(localUrl), 60000);
  }

  // -- a new ticket ----------------------------------------------------------------------
  function newTicketForm() {
    const id = el("input", { required: true, placeholder: "t-2026-0042", pattern: "[A-Za-z0-9][A-Za-z0-9._@-]*",
      "data-testid": "new-ticket" });
    const customer = el("input", { required: true, placeholder: "customer user id", "data-testid": "new-customer" });
    const device = el("input", { required: true, placeholder: "iPhone 12", "data-testid": "new-device" });
    const problem = el("input", { required: true, placeholder: "Cracked screen", "data-testid": "new-problem" });
    const node = el("details", { class: "card" }, el("summary", {}, el("strong", {}, "Open a new ticket")),
      el("form", { style: { marginTop: ".8rem" } },
        el("label", {}, "Ticket", id), el("label", {}, "Customer", customer),
        el("label", {}, "Device", device), el("label", {}, "Problem", problem),
        el("button", { type: "submit", class: "primary", "data-testid": "create" }, "Create")));
    node.querySelector("form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const room = `repair:${id.value.trim()}`;
      try {
        await client.command(room, "ticket.create", { customer_id: customer.value.trim(),
          device: device.value.trim(), problem: problem.value.trim(), technicians: [me] });
        toast(`Ticket ${id.value.trim()} opened.`, "ok");
        e.target.reset();
        node.open = false;
        open(room);
      } catch (err) {
        toast(describeError(err, "New ticket"), "error");
      }
    });
    return node;
  }

  const initial = params.get("ticket");
  if (initial) open(initial);
  render();
}
