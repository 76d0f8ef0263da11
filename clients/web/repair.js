// Repair, customer view: status timeline, progress, ETA, photos, notes, and the quote
// to approve or decline. ?token=<customer token>&ticket=<ticket id>

import {
  Optimistic, clock, connectionBadge, createClient, el, fill, followRoom, header, setup,
  throttled, timeAgo,
} from "./app.js";
import {
  STATUS_LABELS, applyEvent, fromState, money, photoSrc, steps,
} from "./repair-model.js";

const cfg = setup([{ name: "ticket", label: "Ticket", placeholder: "t-2026-0042" }],
  { hint: "The token and ticket number from your repair shop's message." });
if (cfg) start(cfg);

function start({ token, ticket, claims }) {
  const room = ticket.startsWith("repair:") ? ticket : `repair:${ticket}`;
  header("Your repair", `${room.slice(7)} · ${claims.sub}`);
  const client = createClient(token);
  const badge = connectionBadge(client);
  let model = null;

  const summary = el("section", { class: "card", "data-testid": "summary" });
  const quoteCard = el("section", { class: "card quote", "data-testid": "quote", hidden: true });
  const timeline = el("ol", { class: "timeline", "data-testid": "timeline" });
  const photos = el("div", { class: "photos", "data-testid": "photos" });
  const notes = el("div", { "data-testid": "notes" });
  const noteText = el("textarea", { rows: 2, maxlength: 2000, placeholder: "Ask or tell the shop something" });
  const noteForm = el("form", {}, el("label", {}, "Add a note", noteText),
    el("button", { type: "submit", class: "primary" }, "Send note"));
  const declineReason = el("input", { type: "text", placeholder: "Reason (optional)", maxlength: 280 });

  fill(document.querySelector("main"),
    summary, quoteCard,
    el("div", { class: "cols" },
      el("section", { class: "card" }, el("h2", {}, "Status"), timeline),
      el("div", { style: { display: "grid", gap: "1rem" } },
        el("section", { class: "card" }, el("h2", {}, "Photos"), photos),
        el("section", { class: "card" }, el("h2", {}, "Notes"), notes, noteForm))));

  const optimistic = new Optimistic(() => render());
  const render = throttled(draw);

  function draw() {
    badge();
    if (!model) return;
    const m = optimistic.overlay(model);
    if (!m.exists) {
      fill(summary, el("p", { class: "empty" }, "This ticket does not exist (yet)."));
      return;
    }
    const label = STATUS_LABELS[m.status] || m.status;
    fill(summary,
      el("div", { class: "muted" }, m.device),
      el("div", { class: "big-status", "data-testid": "status", dataset: { status: m.status } },
        label, m.status === "on_hold" && m.held_from ? el("small", { class: "muted" },
          ` (was ${STATUS_LABELS[m.held_from] || m.held_from})`) : null,
        m.outcome === "unrepaired" ? el("small", { class: "muted" }, " · not repaired") : null),
      el("div", { class: "progress", "data-testid": "progress", dataset: { value: m.progress },
        role: "progressbar", "aria-valuenow": m.progress, "aria-valuemin": 0, "aria-valuemax": 100 },
      el("span", { style: { width: `${m.progress || 0}%` } })),
      el("div", { class: "row", style: { marginTop: ".5rem" } },
        el("small", {}, `${m.progress || 0}% done`),
        m.eta_ms ? el("small", { style: { textAlign: "right" }, "data-testid": "eta" },
          `Estimated ready: ${new Date(m.eta_ms).toLocaleString([], { weekday: "short",
            month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" })}`) : null),
      el("p", { class: "muted", style: { marginBottom: 0 } }, `Problem: ${m.problem}`));

    const q = m.quote;
    const waiting = m.status === "awaiting_approval" && q && q.status === "pending";
    quoteCard.hidden = !waiting;
    if (waiting) {
      fill(quoteCard,
        el("h2", {}, "Your approval is needed"),
        el("div", { class: "amount" }, money(q.amount, q.currency)),
        q.description ? el("p", {}, q.description) : null,
        el("div", { class: "actions" },
          el("button", { class: "primary", "data-testid": "approve",
            disabled: Boolean(q.sending), onclick: () => decide(true) }, "Approve and repair"),
          el("button", { class: "bad", "data-testid": "decline", disabled: Boolean(q.sending),
            onclick: () => decide(false) }, "Decline")),
        el("label", { style: { marginTop: ".6rem" } }, "If you decline", declineReason));
    }

    const history = m.history || [];
    const flow = steps(m);
    const extra = history.filter((h) => h.status === "on_hold" || h.status === "cancelled");
    fill(timeline, flow.map((s) => el("li", { class: s.state, dataset: { status: s.status } },
      el("strong", {}, s.label), s.ts ? el("span", { class: "when" }, clock(s.ts)) : null,
      s.state === "current" ? reasonOf(history, s.status) : null)),
    extra.map((h) => el("li", { class: h === history.at(-1) ? "current" : "done" },
      el("strong", {}, STATUS_LABELS[h.status]), el("span", { class: "when" }, clock(h.ts)),
      h.reason ? el("div", { class: "muted" }, h.reason) : null)),
    m.milestones.length ? el("li", { class: "done" }, el("strong", {}, "Progress"),
      el("ul", { class: "muted", style: { margin: ".3rem 0 0", paddingLeft: "1.1rem" } },
        m.milestones.map((x) => el("li", {}, `${x.title} — ${x.percent}% `,
          el("span", { class: "when" }, clock(x.ts)))))) : null);

    fill(photos, m.photos.length ? m.photos.map((p) => el("figure", {},
      el("a", { href: photoSrc(room, p, token), target: "_blank", rel: "noopener" },
        el("img", { src: photoSrc(room, p, token), alt: p.caption, loading: "lazy" })),
      el("figcaption", {}, el("strong", {}, p.category), ` · ${p.caption}`)))
      : el("p", { class: "empty" }, "No photos yet."));

    fill(notes, m.notes.length ? m.notes.map((n) => el("div", {
      class: `note ${n.from_customer ? "customer" : ""} ${n.priority}${n.sending ? " sending" : ""}`,
      dataset: { noteId: n.id } },
    el("div", {}, n.text),
    el("div", { class: "meta" }, n.from_customer ? "you" : "the shop", " · ",
      n.sending ? "sending…" : timeAgo(n.ts), n.priority === "urgent" ? " · urgent" : "")))
      : el("p", { class: "empty" }, "No notes yet."));
  }

  function reasonOf(history, status) {
    const h = [...history].reverse().find((x) => x.status === status);
    return h && h.reason ? el("div", { class: "muted" }, h.reason) : null;
  }

  function decide(approve) {
    const args = {};
    if (!approve && declineReason.value.trim()) args.reason = declineReason.value.trim();
    optimistic.run({
      label: approve ? "Approve the quote" : "Decline the quote",
      apply: (m) => {
        if (!m.quote) return;
        m.quote.status = approve ? "approved" : "declined";
        m.status = approve ? "repairing" : "ready_for_pickup";
        if (!approve) m.outcome = "unrepaired";
        m.history.push({ status: m.status, ts: Date.now(), reason: args.reason || null });
      },
      send: () => client.command(room, approve ? "quote.approve" : "quote.decline", args),
    });
  }

  noteForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = noteText.value.trim();
    if (!text) return;
    noteForm.reset();
    optimistic.run({
      label: "Your note",
      apply: (m) => {
        m.notes.push({ id: "tmp", text, priority: "normal", visibility: "customer",
          from_customer: true, ts: Date.now(), sending: true });
      },
      send: () => client.command(room, "note.add", { text, priority: "normal" }),
    });
  });

  followRoom(client, room, optimistic, {
    load: (state, seq) => { model = fromState(state, seq); },
    apply: (data, m) => applyEvent(model, data, m),
    render,
    what: "Cannot follow this repair",
  });
  setInterval(render, 30000);
  render();
}
