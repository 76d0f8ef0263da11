// Technician console: my tickets, live from the staff feed repairs:{me}; the selected
// ticket (repair:{ticket}) with status moves, progress, ETA, photos (upload, then
// photo.add), QA and notes; and a form to open a new ticket. Staff wording throughout.
// Link: tech.html[?ticket=<ticket id>]#token=<technician token>

import {
  Optimistic, T, clock, dateTime, el, fill, has, money, onLanguage, params, percent, showError,
  startPage, t, throttled, timeAgo, toast,
} from "./app.js";
import { photos as photoLoader } from "./photos.js";
import { STATUSES, applyEvent, applyFeed, fromState } from "./repair-model.js";


/** Status names as staff say them ("waiting for the customer's approval"). */
const status = (s) => t(has(`status.${s}.staff`) ? `status.${s}.staff` : `status.${s}`);
const labels = () => Object.fromEntries(STATUSES.map((s) => [s, status(s)]));
// A ticket id as room names allow it ([A-Za-z0-9][A-Za-z0-9._@-]{0,127}). Browsers compile
// `pattern` with the `v` flag, where a "-" in a class must be escaped.
const TICKET_PATTERN = "[A-Za-z0-9][A-Za-z0-9._@\\-]{0,127}";

function run({ client, gate, me }) {
  const tickets = {};
  let current = null; // {room, sub, model, optimistic, gone}
  let refresh = null;
  const photos = photoLoader(client, () => render());

  const list = el("ul", { class: "list tickets", "data-testid": "tickets" });
  const detail = el("div", { class: "stack", "data-testid": "detail" });
  const newForm = newTicketForm();
  fill(document.querySelector("main"),
    el("div", { class: "cols wide-right" },
      el("div", { class: "stack" },
        el("section", { class: "card", "aria-labelledby": "mine-heading" },
          el("h2", { id: "mine-heading" }, T("tech.mine")), list), newForm),
      detail));

  const render = throttled(draw);
  gate.watch(render);
  onLanguage(render); // the lists are drawn in the language of the moment

  // -- the feed: every event of my tickets, from the start of the retained log -------
  client.subscribe(`repairs:${me}`, {
    fromStart: true,
    onMessage(m) {
      applyFeed(tickets, m.data, m);
      if (current && m.data.event === "ticket.unassigned" && m.data.room === current.room) {
        toast(t("tech.unassigned", { ticket: m.data.ticket }), { kind: "warn" });
      }
      render();
    },
    onReset() {
      render();
    },
    onError(err) {
      showError(err, { action: t("tech.follow"), staff: true });
    },
  });

  function draw() {
    const rows = Object.values(tickets).sort((a, b) => (b.updated_ms || 0) - (a.updated_ms || 0));
    fill(list, rows.length ? rows.map((x) => el("li", {
      dataset: { ticket: x.ticket, status: x.status || "" } },
    el("button", { type: "button", class: `item ticket${current && current.room === x.room
      ? " selected" : ""}`, "aria-current": current && current.room === x.room ? "true" : null,
    dataset: { key: `ticket:${x.ticket}` },
    onclick: () => open(x.ticket) },
    el("span", { class: "top" }, el("strong", {}, x.ticket),
      el("span", { class: `chip ${x.status}` }, x.status ? status(x.status) : "…")),
    el("span", { class: "sub" }, `${x.device} · ${x.customer_id}`),
    el("span", { class: "bar", "aria-hidden": "true" },
      el("span", { style: { width: `${x.progress || 0}%` } })),
    el("small", { class: "muted" }, `${x.last ? t(`event.${x.last}`) : ""} · ${timeAgo(x.updated_ms)}`))))
      : el("li", { class: "empty" }, t("tech.noTickets")));
    drawDetail();
  }

  // -- one ticket ----------------------------------------------------------------------
  function open(ticket) {
    const room = ticket.startsWith("repair:") ? ticket : `repair:${ticket}`;
    if (current && current.room === room) return;
    if (current) current.sub.close();
    const next = new URL(location.href);
    next.searchParams.set("ticket", room.slice(7));
    history.replaceState(history.state, "", next.href);
    const entry = { room, model: null, optimistic: null, sub: null, gone: false };
    entry.optimistic = new Optimistic(() => render(), { staff: true, labels: labels() });
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
        if (err.code === "FORBIDDEN" || err.code === "NOT_FOUND") entry.gone = true;
        else showError(err, { action: t("tech.ticketLabel", { ticket: room.slice(7) }), staff: true });
        render();
      },
    });
    current = entry;
    forms = null;
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
  function input(id, attrs) {
    return el("input", { id, autocomplete: "off", ...attrs });
  }
  function labelled(id, key, control, cls = "") {
    return el("div", { class: `field ${cls}` }, el("label", { for: id }, T(key)), control);
  }
  function makeForms() {
    const f = {};
    f.reason = input("t-reason", { type: "text", placeholder: T("tech.reasonHint") });
    f.internalReason = input("t-internal", { type: "text", placeholder: T("tech.internalHint") });
    f.amount = input("t-amount", { type: "number", min: 0, step: "0.01", inputmode: "decimal" });
    f.currency = input("t-currency", { type: "text", value: "EUR", maxlength: 3 });
    f.quoteText = input("t-quote", { type: "text" });
    f.milestone = input("t-milestone", { type: "text", "data-testid": "milestone-title" });
    f.percent = input("t-percent", { type: "number", min: 0, max: 100, step: 5,
      "data-testid": "milestone-percent" });
    f.eta = input("t-eta", { type: "datetime-local" });
    f.file = input("t-file", { type: "file", accept: "image/jpeg,image/png,image/webp",
      "data-testid": "photo-file" });
    f.category = el("select", { id: "t-category" }, ["before", "during", "after", "damage",
      "part"].map((c) => el("option", { value: c }, T(`photo.${c}`))));
    f.caption = input("t-caption", { type: "text", "data-testid": "photo-caption" });
    f.photoVisibility = el("select", { id: "t-photo-vis" },
      el("option", { value: "customer" }, T("tech.visible.customer")),
      el("option", { value: "internal" }, T("tech.visible.internal")));
    f.qaItem = input("t-qa", { type: "text", placeholder: T("tech.qaHint"), "data-testid": "qa-item" });
    f.qaPassed = input("t-qa-passed", { type: "checkbox", checked: true, "data-testid": "qa-passed" });
    f.qaNote = input("t-qa-note", { type: "text" });
    f.note = el("textarea", { id: "t-note", rows: 2, "data-testid": "note-text" });
    f.priority = el("select", { id: "t-priority" }, ["normal", "low", "high", "urgent"].map((p) =>
      el("option", { value: p }, T(`priority.${p}`))));
    f.noteVisibility = el("select", { id: "t-note-vis", "data-testid": "note-visibility" },
      el("option", { value: "internal" }, T("tech.visible.internal")),
      el("option", { value: "customer" }, T("tech.visible.customer")));
    f.moves = el("div", { class: "actions", "data-testid": "moves" });
    f.summary = el("section", { class: "card", "data-testid": "ticket" });
    f.photos = el("div", { class: "photos", "data-testid": "photos" });
    f.qa = el("ul", { class: "list", "data-testid": "qa" });
    f.notes = el("div", { "data-testid": "notes" });
    f.timeline = el("ol", { class: "timeline" });
    f.submits = [];
    const form = (onsubmit, ...children) => {
      const node = el("form", {}, ...children);
      node.addEventListener("submit", (e) => {
        e.preventDefault();
        if (!gate.off) onsubmit();
      });
      return node;
    };
    const submit = (key, attrs = {}) => {
      const b = el("button", { type: "submit", ...attrs }, T(key));
      f.submits.push(b);
      return b;
    };
    f.cards = [
      f.summary,
      el("section", { class: "card", "aria-labelledby": "moves-heading" },
        el("h2", { id: "moves-heading" }, T("tech.status")), f.moves,
        el("div", { class: "row spaced" }, labelled("t-reason", "tech.reason", f.reason),
          labelled("t-internal", "tech.internalReason", f.internalReason)),
        el("details", {}, el("summary", { class: "muted" }, T("tech.quote")),
          el("div", { class: "row spaced" }, labelled("t-amount", "tech.amount", f.amount),
            labelled("t-currency", "tech.currency", f.currency, "narrow"),
            labelled("t-quote", "tech.quoteText", f.quoteText)))),
      el("div", { class: "cols" },
        el("section", { class: "card" }, el("h2", {}, T("tech.progress")),
          form(addMilestone, el("div", { class: "row" },
            labelled("t-milestone", "tech.milestone", f.milestone),
            labelled("t-percent", "tech.percent", f.percent, "narrow")),
          submit("tech.addMilestone", { "data-testid": "milestone-add" })),
          form(setEta, labelled("t-eta", "tech.eta", f.eta, "spaced"), submit("tech.setEta"))),
        el("section", { class: "card" }, el("h2", {}, T("tech.qa")), f.qa,
          form(recordQa, el("div", { class: "row spaced" },
            labelled("t-qa", "tech.qaItem", f.qaItem),
            el("div", { class: "inline check" }, f.qaPassed,
              el("label", { for: "t-qa-passed" }, T("tech.passed")))),
          labelled("t-qa-note", "tech.qaNote", f.qaNote),
          submit("tech.record", { "data-testid": "qa-record" })))),
      el("section", { class: "card" }, el("h2", {}, T("tech.photos")), f.photos,
        form(addPhoto, el("div", { class: "row spaced" }, labelled("t-file", "tech.file", f.file)),
          el("div", { class: "row" }, labelled("t-category", "tech.category", f.category),
            labelled("t-caption", "tech.caption", f.caption),
            labelled("t-photo-vis", "tech.visibility", f.photoVisibility)),
          submit("tech.upload", { "data-testid": "photo-add" }))),
      el("section", { class: "card" }, el("h2", {}, T("tech.notes")), f.notes,
        form(addNote, labelled("t-note", "tech.note", f.note),
          el("div", { class: "row" }, labelled("t-priority", "tech.priority", f.priority),
            labelled("t-note-vis", "tech.visibility", f.noteVisibility),
            el("div", { class: "field shrink" },
              submit("tech.addNote", { class: "primary", "data-testid": "note-add" }))))),
      el("section", { class: "card" }, el("h2", {}, T("tech.history")), f.timeline),
    ];
    fill(detail, f.cards);
    return f;
  }

  function drawDetail() {
    if (!current) {
      fill(detail, el("section", { class: "card" }, el("p", { class: "empty" }, t("tech.pick"))));
      forms = null;
      return;
    }
    if (current.gone) {
      forms = null;
      fill(detail, el("section", { class: "card unavailable", "data-testid": "not-available" },
        el("h2", {}, t("tech.unavailable.title", { ticket: current.room.slice(7) })),
        el("p", {}, t("tech.unavailable.body"))));
      return;
    }
    if (!forms) forms = makeForms();
    const f = forms;
    for (const b of f.submits) gate.apply(b, !current.model);
    if (!current.model) {
      fill(f.summary, el("p", { class: "empty" }, t("common.loading")));
      return;
    }
    const m = current.optimistic.overlay(current.model);
    if (!m.exists) {
      fill(f.summary, el("h2", {}, current.room.slice(7)),
        el("p", { class: "empty" }, t("tech.notYet")));
      fill(f.moves);
      return;
    }
    fill(f.summary,
      el("div", { class: "card-head" },
        el("h2", {}, `${m.ticket} · ${m.device}`),
        el("span", { class: `chip ${m.status}`, "data-testid": "ticket-status" }, status(m.status))),
      el("p", { class: "muted" }, t("tech.summary", { problem: m.problem, customer: m.customer_id,
        technicians: m.technicians.join(", ") })),
      el("div", { class: "progress", dataset: { value: m.progress }, role: "progressbar",
        "aria-valuenow": m.progress || 0, "aria-valuemin": 0, "aria-valuemax": 100,
        "aria-label": t("tech.progress") },
      el("span", { style: { width: `${m.progress || 0}%` } })),
      el("small", {}, percent(m.progress || 0),
        m.eta_ms ? ` · ${t("tech.etaIs", { when: dateTime(m.eta_ms) })}` : ""),
      m.quote ? el("p", {}, t("tech.quoteIs", { amount: money(m.quote.amount, m.quote.currency),
        state: t(`quote.${m.quote.status}`) })) : null,
      m.internal && Object.keys(m.internal).length
        ? el("p", { class: "muted" }, t("tech.internal", { data: JSON.stringify(m.internal) })) : null);
    const moves = m.moves || [];
    fill(f.moves, moves.length ? moves.map((to) => el("button", {
      type: "button", class: to === "cancelled" ? "bad small" : "good small",
      dataset: { move: to, key: `move:${to}` },
      ...gate.lock(), onclick: () => setStatus(to) }, t("tech.moveTo", { status: status(to) })))
      : el("span", { class: "muted" }, t("tech.noMoves")));
    if (f.percent.value === "") f.percent.value = String(Math.min(100, (m.progress || 0) + 10));

    fill(f.photos, m.photos.length ? m.photos.map((p) => {
      const src = photos.src(m.room, p);
      return el("figure", { class: p.sending ? "sending" : "" },
        src ? el("img", { src, alt: p.caption })
          : el("div", { class: "img-wait", role: "img", "aria-label": p.caption }),
        el("figcaption", {}, el("strong", {}, t(`photo.${p.category}`)), ` · ${p.caption}`,
          p.visibility === "internal" ? ` · ${t("tech.visible.internal")}` : "",
          p.sending ? ` · ${t("tech.uploading")}` : ""));
    }) : el("p", { class: "empty" }, t("tech.noPhotos")));

    const qa = m.qa || {};
    fill(f.qa, (qa.items || []).length ? qa.items.map((i) => el("li", { class: "item" },
      el("span", { class: `chip ${i.passed ? "playing" : "vetoed"}` },
        t(i.passed ? "tech.pass" : "tech.fail")),
      el("div", { class: "grow" }, i.item, i.note ? el("div", { class: "sub" }, i.note) : null)))
      .concat(el("li", { class: "muted" }, qa.ready ? t("tech.qaReady")
        : t("tech.qaBlocking", { items: (qa.failed || []).join(", ") || t("tech.qaNothing") })))
      : el("li", { class: "empty" }, t("tech.qaEmpty")));

    fill(f.notes, m.notes.length ? m.notes.map((n) => el("div", {
      class: `note ${n.visibility} ${n.priority}` },
    el("div", {}, n.text),
    el("div", { class: "meta" }, [n.from_customer ? t("tech.byCustomer") : n.by || t("tech.staff"),
      t(`tech.visible.${n.visibility}`), t(`priority.${n.priority}`),
      n.sending ? t("common.sending") : timeAgo(n.ts)].join(" · "))))
      : el("p", { class: "empty" }, t("tech.noNotes")));

    fill(f.timeline, [...(m.history || [])].reverse().map((h, i) => el("li", {
      class: i === 0 ? "current" : "done" },
    el("strong", {}, status(h.status)),
    el("span", { class: "when" }, `${clock(h.ts)} · ${h.by || ""}`),
    h.reason ? el("div", { class: "muted" }, h.reason) : null,
    h.internal_reason ? el("div", { class: "muted" },
      t("tech.internalReasonIs", { reason: h.internal_reason })) : null)));
  }

  // -- commands ------------------------------------------------------------------------
  function command(label, name, args, apply, { id, onError } = {}) {
    const entry = current;
    return entry.optimistic.run({
      label, apply: apply || (() => {}), onError,
      send: () => client.command(entry.room, name, args, { id }),
    });
  }

  /** Clear `fields` once the write is taken, if nobody typed meanwhile; keep them if not. */
  function clearOnSuccess(ack, fields) {
    if (!ack) return;
    for (const [node, value] of fields) if (node.value === value) node.value = "";
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
    const typed = [[f.reason, f.reason.value], [f.internalReason, f.internalReason.value]];
    command(t("tech.action.move", { status: status(to) }), "status.set", args, (m) => {
      m.history.push({ status: to, ts: Date.now(), reason: args.reason || null });
      m.status = to;
      m.moves = [];
    }).then((ack) => clearOnSuccess(ack, typed));
  }

  async function addMilestone() {
    const f = forms;
    const title = f.milestone.value.trim();
    const pct = Number(f.percent.value);
    if (!title) return;
    const ack = await command(t("tech.action.milestone"), "milestone.add", { title, percent: pct },
      (m) => {
        m.milestones.push({ id: "tmp", title, percent: pct, ts: Date.now() });
        m.progress = pct;
      });
    clearOnSuccess(ack, [[f.milestone, f.milestone.value]]);
  }

  function setEta() {
    const value = forms.eta.value;
    const at = value ? new Date(value).getTime() : null;
    command(t("tech.action.eta"), "eta.set", { at }, (m) => { m.eta_ms = at; });
  }

  async function recordQa() {
    const f = forms;
    const item = f.qaItem.value.trim();
    if (!item) return;
    const args = { item, passed: f.qaPassed.checked };
    if (f.qaNote.value.trim()) args.note = f.qaNote.value.trim();
    const typed = [[f.qaItem, f.qaItem.value], [f.qaNote, f.qaNote.value]];
    const ack = await command(t("tech.action.qa"), "qa.record", args, (m) => {
      const items = (m.qa.items || []).filter((i) => i.item.toLowerCase() !== item.toLowerCase());
      items.push({ item, passed: args.passed, note: args.note || null, required: true });
      m.qa.items = items;
    });
    clearOnSuccess(ack, typed);
  }

  async function addNote() {
    const f = forms;
    const text = f.note.value.trim();
    if (!text) return;
    const args = { text, priority: f.priority.value, visibility: f.noteVisibility.value };
    const typed = [[f.note, f.note.value]];
    const ack = await command(t("tech.action.note"), "note.add", args, (m) => {
      m.notes.push({ id: "tmp", ...args, from_customer: false, by: me, ts: Date.now(), sending: true });
    });
    clearOnSuccess(ack, typed);
  }

  async function addPhoto() {
    const f = forms;
    const entry = current;
    const file = f.file.files[0];
    if (!file) {
      toast(t("tech.choosePhoto"), { kind: "warn" });
      return;
    }
    const caption = f.caption.value.trim() || file.name;
    const category = f.category.value;
    const visibility = f.photoVisibility.value;
    const localUrl = URL.createObjectURL(file);
    const ack = await entry.optimistic.run({
      label: t("tech.action.photo"),
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
    if (ack) {
      f.file.value = "";
      clearOnSuccess(ack, [[f.caption, f.caption.value]]);
    }
    setTimeout(() => URL.revokeObjectURL(localUrl), 60000);
  }

  // -- a new ticket ----------------------------------------------------------------------
  function newTicketForm() {
    const id = input("n-ticket", { required: true, placeholder: "t-2026-0042",
      pattern: TICKET_PATTERN, maxlength: 128, "data-testid": "new-ticket" });
    const customer = input("n-customer", { required: true, "data-testid": "new-customer" });
    const device = input("n-device", { required: true, placeholder: "iPhone 12",
      "data-testid": "new-device" });
    const problem = input("n-problem", { required: true, "data-testid": "new-problem" });
    const create = el("button", { type: "submit", class: "primary", "data-testid": "create" },
      T("tech.create"));
    const node = el("details", { class: "card" }, el("summary", {}, el("strong", {},
      T("tech.newTicket"))),
    el("form", { class: "spaced" },
      labelled("n-ticket", "tech.ticket", id), labelled("n-customer", "tech.customer", customer),
      labelled("n-device", "tech.device", device), labelled("n-problem", "tech.problem", problem),
      create));
    gate.watch(() => gate.apply(create));
    gate.apply(create);
    node.querySelector("form").addEventListener("submit", async (e) => {
      e.preventDefault();
      if (gate.off) return;
      const ticket = id.value.trim();
      const room = `repair:${ticket}`;
      try {
        await client.command(room, "ticket.create", { customer_id: customer.value.trim(),
          device: device.value.trim(), problem: problem.value.trim(), technicians: [me] });
        toast(t("tech.opened", { ticket }), { kind: "ok" });
        e.target.reset();
        node.open = false;
        open(room);
      } catch (err) {
        showError(err, { action: t("tech.newTicket"), staff: true }); // the form keeps its input
      }
    });
    return node;
  }

  // Writes an earlier page left unanswered: the client sends them; failures are shown.
  for (const frame of client.pending.filter((x) => x.type === "command")) {
    client.command(frame.room, frame.name, frame.args, { id: frame.id })
      .catch((err) => showError(err, { staff: true, labels: labels() }));
  }
  const initial = params.get("ticket");
  if (initial) open(initial);
  render();
}

const page = await startPage({ page: "technician", title: "tech.title", hint: "tech.setupHint" });
if (page) run(page);
