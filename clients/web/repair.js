// Repair, customer view: status timeline, progress, ETA, photos, notes, and the quote
// to approve or decline. An installable app (repair.webmanifest, sw.js).
// Link: repair.html?ticket=<ticket id>#token=<customer token>

import {
  Optimistic, T, clock, dateTime, el, fill, followRoom, money, notAvailable, onLanguage, percent,
  resumeWrites, startPage, t, throttled, timeAgo,
} from "./app.js";
import { registerWorker } from "./pwa.js";
import { photos as photoLoader } from "./photos.js";
import { applyEvent, fromState, steps } from "./repair-model.js";
import { forget } from "./session.js";


const status = (s) => t(`status.${s}`);

function run({ client, gate, values }) {
  const room = values.ticket.startsWith("repair:") ? values.ticket : `repair:${values.ticket}`;
  const main = document.querySelector("main");
  let model = null;
  let gone = false;
  const photos = photoLoader(client, () => render());

  const summary = el("section", { class: "card", "data-testid": "summary" });
  const quoteCard = el("section", { class: "card quote", "data-testid": "quote", hidden: true,
    "aria-labelledby": "quote-heading" });
  const timeline = el("ol", { class: "timeline", "data-testid": "timeline" });
  const photoGrid = el("div", { class: "photos", "data-testid": "photos" });
  const notes = el("div", { "data-testid": "notes" });
  const noteText = el("textarea", { id: "note-text", rows: 2, maxlength: 2000,
    placeholder: T("repair.noteHint") });
  const noteSend = el("button", { type: "submit", class: "primary" }, T("repair.sendNote"));
  const noteForm = el("form", {}, el("label", { for: "note-text" }, T("repair.addNote")),
    noteText, noteSend);
  const declineReason = el("input", { id: "decline-reason", type: "text", maxlength: 280,
    placeholder: T("repair.declineHint") });
  const approve = el("button", { type: "button", class: "primary", "data-testid": "approve",
    onclick: () => decide(true) }, T("repair.approve"));
  const decline = el("button", { type: "button", class: "bad", "data-testid": "decline",
    onclick: () => decide(false) }, T("repair.decline"));
  const quoteBody = el("div");
  quoteCard.append(el("h2", { id: "quote-heading" }, T("repair.quoteHeading")), quoteBody,
    el("div", { class: "actions" }, approve, decline),
    el("label", { for: "decline-reason", class: "spaced" }, T("repair.declineReason")),
    declineReason);

  fill(main,
    summary, quoteCard,
    el("div", { class: "cols" },
      el("section", { class: "card" }, el("h2", {}, T("repair.status")), timeline),
      el("div", { class: "stack" },
        el("section", { class: "card" }, el("h2", {}, T("repair.photos")), photoGrid),
        el("section", { class: "card" }, el("h2", {}, T("repair.notes")), notes, noteForm))));

  const optimistic = new Optimistic(() => render());
  const render = throttled(draw);
  gate.watch(render);
  onLanguage(render); // the lists are drawn in the language of the moment

  function unavailable() {
    gone = true;
    notAvailable(main, { title: "unavailable.repair.title", body: "unavailable.repair.body",
      again: () => {
        forget("customer");
        location.href = "repair.html";
      } });
  }

  function draw() {
    if (gone) return;
    gate.apply(noteSend, !model);
    if (!model) {
      fill(summary, el("p", { class: "empty" }, t("common.loading")));
      return;
    }
    const m = optimistic.overlay(model);
    if (!m.exists) { // not created (yet), or not this customer's: the same page
      unavailable();
      return;
    }
    fill(summary,
      el("div", { class: "muted" }, m.device),
      el("div", { class: "big-status", "data-testid": "status", dataset: { status: m.status } },
        status(m.status), m.status === "on_hold" && m.held_from ? el("small", { class: "muted" },
          ` (${t("repair.wasStatus", { status: status(m.held_from) })})`) : null,
        m.outcome === "unrepaired" ? el("small", { class: "muted" }, ` · ${t("repair.unrepaired")}`)
          : null),
      el("div", { class: "progress", "data-testid": "progress", dataset: { value: m.progress },
        role: "progressbar", "aria-valuenow": m.progress || 0, "aria-valuemin": 0,
        "aria-valuemax": 100, "aria-label": t("repair.progress") },
      el("span", { style: { width: `${m.progress || 0}%` } })),
      el("div", { class: "row spread" },
        el("small", {}, t("repair.done", { percent: percent(m.progress || 0) })),
        m.eta_ms ? el("small", { "data-testid": "eta" },
          t("repair.eta", { when: dateTime(m.eta_ms) })) : null),
      m.milestones.length ? el("ul", { class: "milestones", "aria-label": t("repair.milestones"),
        "data-testid": "milestones" },
      m.milestones.map((x) => el("li", {}, `${x.title} — ${percent(x.percent)} `,
        el("span", { class: "when" }, clock(x.ts))))) : null,
      el("p", { class: "muted" }, t("repair.problem", { problem: m.problem })));

    const q = m.quote;
    const waiting = m.status === "awaiting_approval" && q && q.status === "pending";
    quoteCard.hidden = !waiting;
    if (waiting) {
      fill(quoteBody, el("div", { class: "amount" }, money(q.amount, q.currency)),
        q.description ? el("p", {}, q.description) : null);
      gate.apply(approve, Boolean(q.sending));
      gate.apply(decline, Boolean(q.sending));
    }

    const history = m.history || [];
    const extra = history.filter((h) => h.status === "on_hold" || h.status === "cancelled");
    fill(timeline, steps(m).map((s) => el("li", { class: s.state, dataset: { status: s.status } },
      el("strong", {}, s.quote ? t(`repair.quote.${s.quote}`) : s.state === "done"
        && s.status === "awaiting_approval" ? t("repair.quote.done") : status(s.status)),
      s.ts ? el("span", { class: "when" }, clock(s.ts)) : null,
      s.state === "current" ? reasonOf(history, s.status) : null)),
    extra.map((h) => el("li", { class: h === history.at(-1) ? "current" : "done" },
      el("strong", {}, status(h.status)), el("span", { class: "when" }, clock(h.ts)),
      h.reason ? el("div", { class: "muted" }, h.reason) : null)));

    fill(photoGrid, m.photos.length ? m.photos.map((p) => {
      const src = photos.src(room, p);
      return el("figure", {},
        src ? el("a", { href: src, target: "_blank", rel: "noopener" },
          el("img", { src, alt: p.caption, loading: "lazy" }))
          : el("div", { class: "img-wait", role: "img", "aria-label": p.caption }),
        el("figcaption", {}, el("strong", {}, t(`photo.${p.category}`)), ` · ${p.caption}`));
    }) : el("p", { class: "empty" }, t("repair.noPhotos")));

    fill(notes, m.notes.length ? m.notes.map((n) => el("div", {
      class: `note ${n.from_customer ? "customer" : ""} ${n.priority}${n.sending ? " sending" : ""}`,
      dataset: { noteId: n.id } },
    el("div", {}, n.text),
    el("div", { class: "meta" }, n.from_customer ? t("repair.fromYou") : t("repair.fromShop"),
      " · ", n.sending ? t("common.sending") : timeAgo(n.ts),
      n.priority === "urgent" ? ` · ${t("priority.urgent")}` : "")))
      : el("p", { class: "empty" }, t("repair.noNotes")));
  }

  function reasonOf(history, s) {
    const h = [...history].reverse().find((x) => x.status === s);
    return h && h.reason ? el("div", { class: "muted" }, h.reason) : null;
  }

  // -- commands ---------------------------------------------------------------------------
  function decide(yes, id = undefined) {
    const args = {};
    const why = yes ? "" : declineReason.value.trim();
    if (why) args.reason = why;
    return optimistic.run({
      label: t(yes ? "repair.action.approve" : "repair.action.decline"),
      apply: (m) => {
        if (!m.quote) return;
        m.quote.status = yes ? "approved" : "declined";
        m.status = yes ? "repairing" : "ready_for_pickup";
        if (!yes) m.outcome = "unrepaired";
        m.history.push({ status: m.status, ts: Date.now(), reason: why || null });
      },
      send: () => client.command(room, yes ? "quote.approve" : "quote.decline", args, { id }),
    }).then((ack) => {
      if (ack && !yes) declineReason.value = "";
      return ack;
    });
  }

  function addNote(text, id = undefined) {
    return optimistic.run({
      label: t("repair.action.note"),
      apply: (m) => {
        m.notes.push({ id: "tmp", text, priority: "normal", visibility: "customer",
          from_customer: true, ts: Date.now(), sending: true });
      },
      send: () => client.command(room, "note.add", { text, priority: "normal" }, { id }),
    });
  }

  noteForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = noteText.value.trim();
    if (!text || gate.off) return;
    // The note stays in the field until the shop has it; a refusal leaves it there.
    const ack = await addNote(text);
    if (ack && noteText.value.trim() === text) noteText.value = "";
  });

  followRoom(client, room, optimistic, {
    load: (state, seq) => { model = fromState(state, seq); },
    apply: (data, m) => applyEvent(model, data, m),
    render,
    what: t("repair.follow"),
    unavailable,
  });
  resumeWrites(client, room, (frame) => {
    if (frame.name === "note.add") addNote(frame.args.text, frame.id);
    else if (frame.name === "quote.approve" || frame.name === "quote.decline") {
      decide(frame.name === "quote.approve", frame.id);
    }
  });
  setInterval(render, 30000);
  render();
}

registerWorker();
const page = await startPage({ page: "customer", title: "repair.title", hint: "repair.setupHint",
  fields: [{ name: "ticket", label: "setup.ticket", placeholder: "t-2026-0042" }] });
if (page) run(page);
