// Guest page: request a song (title, artist, note), follow "my requests" live with
// their position, upvote what others asked for, personal notices. An installable app
// (guest.webmanifest, sw.js): it opens on the last queue, offline too.
// Link: guest.html?room=queue:<id>#token=<guest token>  (or a token endpoint: config.json)

import {
  Optimistic, T, el, fill, followRoom, money, number, onLanguage, resumeWrites, startPage, t,
  throttled, toast,
} from "./app.js";
import { registerWorker } from "./pwa.js";
import { applyEvent, fromState, songId, view } from "./queue-model.js";


function queueRoom(name) {
  return name.includes(":") ? name : `queue:${name}`;
}

function statusText(r) {
  if (r.sending) return t("guest.sending");
  if (r.status === "pending") return r.position ? t("guest.status.inLine", { position: r.position })
    : t("guest.status.waiting");
  if (r.status === "accepted") return r.position ? t("guest.status.inQueue", { position: r.position })
    : t("guest.status.accepted");
  if (r.status === "vetoed") return r.reason ? t("guest.status.declinedWhy", { reason: r.reason })
    : t("guest.status.declined");
  return t(`guest.status.${r.status}`);
}

/** What became of a paid request's payment, in the guest's words (null: not paid). */
function paymentText(r) {
  const p = r.paid;
  if (!p) return null;
  const amount = money(p.amount, p.currency, { minor: true });
  if (p.status === "verified") {
    return t(["pending", "accepted"].includes(r.status) ? "guest.pay.waiting" : "guest.pay.paid",
      { amount });
  }
  if (p.status === "settled") return t("guest.pay.paid", { amount });
  if (p.status === "refunded") return t("guest.pay.refunded", { amount });
  if (p.status === "refund_failed") return t("guest.pay.refundFailed", { amount });
  return t("guest.pay.refundDue", { amount });
}

function run({ client, gate, values, me }) {
  const room = queueRoom(values.room);
  const main = document.querySelector("main");
  let model = null;

  // -- layout (the form stays put; the lists are redrawn) --------------------------
  const nowCard = el("section", { class: "card now", "data-testid": "now-playing", hidden: true,
    "aria-live": "polite" });
  const closedNote = el("p", { class: "note-line warn", hidden: true, "data-testid": "closed" },
    T("guest.closed"));
  const field = (name, label, attrs) => [
    el("label", { for: `f-${name}` }, T(label)),
    el("input", { id: `f-${name}`, name, autocomplete: "off", ...attrs })];
  const [titleLabel, title] = field("title", "guest.form.title", { required: true,
    maxlength: 200, placeholder: T("guest.form.titleHint") });
  const [artistLabel, artist] = field("artist", "guest.form.artist", { required: true,
    maxlength: 200, placeholder: T("guest.form.artistHint") });
  const [noteLabel, note] = field("note", "guest.form.note", { maxlength: 280,
    placeholder: T("guest.form.noteHint") });
  // A paid room (settings.price): the price, and the reference the payment page gave.
  const priceNote = el("p", { class: "note-line", hidden: true, "data-testid": "price" });
  const [paymentLabel, payment] = field("payment", "guest.form.payment", { maxlength: 200,
    placeholder: T("guest.form.paymentHint"), "data-testid": "payment-reference" });
  const paymentField = el("div", { hidden: true }, paymentLabel, payment);
  const submit = el("button", { type: "submit", class: "primary", "data-testid": "submit" },
    T("guest.form.submit"));
  const form = el("form", { class: "card", "data-testid": "request-form",
    "aria-labelledby": "request-heading" },
  el("h2", { id: "request-heading" }, T("guest.form.heading")), closedNote, priceNote,
  el("div", { class: "row" }, el("div", {}, titleLabel, title), el("div", {}, artistLabel, artist)),
  noteLabel, note, paymentField, submit);
  const mineList = el("ul", { class: "list", "data-testid": "mine" });
  const mineCount = el("span", { class: "count" });
  const othersList = el("ul", { class: "list", "data-testid": "others" });
  const upNext = el("ol", { class: "list", "data-testid": "up-next" });
  fill(main, nowCard,
    el("div", { class: "cols" },
      el("div", { class: "stack" }, form,
        el("section", { class: "card" }, el("h2", {}, T("guest.mine.heading"), mineCount),
          mineList)),
      el("div", { class: "stack" },
        el("section", { class: "card" }, el("h2", {}, T("guest.others.heading")), othersList),
        el("section", { class: "card" }, el("h2", {}, T("guest.upNext.heading")), upNext))));

  const optimistic = new Optimistic(() => render());
  const render = throttled(draw);
  gate.watch(render);
  onLanguage(render); // the lists are drawn in the language of the moment
  let submitting = 0;

  function draw() {
    const v = model && view(optimistic.overlay(model));
    const open = v ? v.open : true;
    closedNote.hidden = open;
    const price = v ? v.settings.price || 0 : 0;
    priceNote.hidden = paymentField.hidden = !price;
    payment.required = Boolean(price);
    if (price) {
      fill(priceNote, t("guest.form.price",
        { price: money(price, v.settings.currency || "EUR", { minor: true }) }));
    }
    gate.apply(submit, !model || !open || submitting > 0);
    fill(submit, submitting ? t("guest.form.sending") : t("guest.form.submit"));
    if (!v) {
      // Not read from the hub yet (offline after a reload): what this phone still has to
      // send is known, from the store.
      const unsent = client.pending.filter((f) => f.room === room && f.name === "request.submit");
      fill(mineList, unsent.length ? unsent.map((f) => el("li", { class: "item wide sending" },
        el("div", { class: "grow" }, el("div", { class: "song" }, f.args.title),
          el("div", { class: "sub" }, f.args.artist)),
        el("div", { class: "actions" }, el("span", { class: "chip sending",
          "data-testid": "status" }, t("guest.unsent")))))
        : el("li", { class: "empty" }, t("common.loading")));
      return;
    }

    nowCard.hidden = !v.nowPlaying;
    if (v.nowPlaying) {
      fill(nowCard, el("div", { class: "eq", "aria-hidden": "true" }, "♫"),
        el("div", { class: "grow" }, el("div", { class: "label" }, t("common.nowPlaying")),
          el("div", { class: "song" }, v.nowPlaying.title),
          el("div", {}, v.nowPlaying.artist)));
    }

    const mine = v.mine.filter((r) => r.status !== "cancelled");
    fill(mineCount, mine.length ? String(mine.length) : "");
    fill(mineList, mine.length ? mine.map((r) => el("li", {
      class: `item wide${r.sending ? " sending" : ""}`,
      dataset: { requestId: r.id, status: r.status } },
    el("div", { class: "grow" }, el("div", { class: "song" }, r.title),
      el("div", { class: "sub" }, r.artist,
        r.votes ? ` · ${t("common.votes", { count: r.votes })}` : "")),
    el("div", { class: "actions" },
      r.paid ? el("span", { class: `chip pay ${r.paid.status}`, "data-testid": "payment" },
        paymentText(r)) : null,
      el("span", { class: `chip ${r.sending ? "sending" : r.status}`, "data-testid": "status" },
        statusText(r)),
      r.status === "pending" && !r.sending
        ? el("button", { type: "button", class: "small", ...gate.lock(),
          dataset: { key: `cancel:${r.id}` }, "aria-label": t("guest.cancelLabel", { title: r.title }),
          onclick: () => send("request.cancel", { request_id: r.id }, r) }, t("guest.cancel"))
        : null)))
      : el("li", { class: "empty" }, t("guest.mine.empty")));

    const others = v.pending.filter((r) => r.user !== me);
    fill(othersList, others.length ? others.map((r) => el("li", {
      class: "item", dataset: { requestId: r.id } },
    el("span", { class: "pos", "aria-label": t("common.position", { position: r.position }) },
      r.position),
    el("div", { class: "grow" }, el("div", { class: "song" }, r.title),
      el("div", { class: "sub" }, r.artist, r.note ? ` · “${r.note}”` : "")),
    v.settings.voting === false ? null : el("button", {
      type: "button", class: "vote", "aria-pressed": String(Boolean(r.voted)),
      "data-testid": "vote", ...gate.lock(), dataset: { key: `vote:${r.id}` },
      title: t(r.voted ? "guest.unvoteHint" : "guest.voteHint"),
      onclick: () => send(r.voted ? "request.unvote" : "request.vote", { request_id: r.id }, r),
    }, el("span", { "aria-hidden": "true" }, "▲"), el("small", {}, number(r.votes)),
    // The name starts with what is seen (the count); pressed says it is my vote.
    el("span", { class: "sr-only" }, ` ${t("guest.voteName", { count: r.votes, title: r.title })}`))))
      : el("li", { class: "empty" }, t("guest.others.empty")));

    fill(upNext, v.queue.length ? v.queue.map((r) => el("li", { class: "item",
      dataset: { requestId: r.id } },
    el("span", { class: "pos", "aria-hidden": "true" }, r.position),
    el("div", { class: "grow" }, el("div", { class: "song" }, r.title),
      el("div", { class: "sub" }, r.artist))))
      : el("li", { class: "empty" }, t("guest.upNext.empty")));
  }

  // -- commands, optimistic -----------------------------------------------------------
  // Each command shows at once (apply), is sent with its id, and is taken back with a
  // message when refused. Writes a previous page left unanswered come back here too.
  const ACTIONS = {
    "request.submit": {
      label: (a) => `“${a.title}”`,
      apply: (a, id) => (m) => {
        // Once the room has delivered it (the ack may come after the event), or when
        // this song is already requested, the server's row is the one to show.
        const known = Object.values(m.requests).some((r) => r.user === me && !r.sending
          && r.song_id === a.song_id && ["pending", "accepted", "playing"].includes(r.status));
        if (known) return;
        m.requests[`tmp-${id}`] = { id: `tmp-${id}`, user: me, song_id: a.song_id, title: a.title,
          artist: a.artist, note: a.note || null, status: "pending", votes: 0, voted: false,
          submitted_ms: Date.now(), sending: true };
      },
    },
    "request.cancel": {
      label: (a, r) => t("guest.action.cancel", { title: r ? r.title : a.request_id }),
      apply: (a) => (m) => { if (m.requests[a.request_id]) m.requests[a.request_id].status = "cancelled"; },
    },
    "request.vote": {
      label: (a, r) => t("guest.action.vote", { title: r ? r.title : a.request_id }),
      apply: (a) => (m) => vote(m, a.request_id, true),
    },
    "request.unvote": {
      label: (a, r) => t("guest.action.unvote", { title: r ? r.title : a.request_id }),
      apply: (a) => (m) => vote(m, a.request_id, false),
    },
  };

  function vote(m, id, up) {
    const x = m.requests[id]; // idempotent: the event may already be in
    if (x && Boolean(x.voted) !== up) Object.assign(x, { votes: x.votes + (up ? 1 : -1), voted: up });
  }

  function send(name, args, row = null, { id = undefined, onError } = {}) {
    const action = ACTIONS[name];
    if (!action) return Promise.resolve(null);
    const writeId = id || `c-${crypto.randomUUID()}`;
    return optimistic.run({
      label: action.label(args, row),
      apply: action.apply(args, writeId),
      send: () => client.command(room, name, args, { id: writeId }),
      onError,
    });
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (gate.off || submitting) return;
    const args = { song_id: songId(title.value, artist.value), title: title.value.trim(),
      artist: artist.value.trim() };
    if (note.value.trim()) args.note = note.value.trim();
    if (!args.title || !args.artist) return;
    if (!paymentField.hidden) {
      if (!payment.value.trim()) return;
      args.payment = { reference: payment.value.trim() };
    }
    const typed = [title.value, artist.value, note.value, payment.value];
    submitting += 1;
    render();
    // The form keeps what was typed until the hub took it: a refusal leaves it there.
    const ack = await send("request.submit", args, null, { onError: () => {
      title.focus();
      return false;
    } });
    submitting -= 1;
    if (ack && [title.value, artist.value, note.value, payment.value].join("\n")
      === typed.join("\n")) {
      form.reset();
    }
    render();
  });

  // -- live -------------------------------------------------------------------------
  followRoom(client, room, optimistic, {
    load: (state, seq) => { model = fromState(state, me, seq); },
    apply: (data, m) => applyEvent(model, data, m),
    render,
    what: t("guest.follow"),
  });
  resumeWrites(client, room, (frame) => send(frame.name, frame.args, null, { id: frame.id }));

  // Personal notices (durable: a phone that slept or reloaded gets each once).
  const NOTICE = {
    "request.accepted": ["ok", (d) => d.position ? "notice.acceptedAt" : "notice.accepted"],
    "request.vetoed": ["warn", (d) => d.reason ? "notice.vetoedWhy" : "notice.vetoed"],
    "request.playing": ["ok", () => "notice.playing"],
    "request.next": ["info", () => "notice.next"],
    "request.moved": ["info", () => "notice.moved"],
    "payment.refund_due": ["info", () => "notice.refundDue"],
    "payment.refunded": ["ok", () => "notice.refunded"],
  };
  if (me) {
    client.subscribe(`user:${me}`, {
      persist: true,
      onMessage(m) {
        const d = m.data || {};
        const notice = NOTICE[d.notice];
        if (d.room === room && notice) {
          const amount = d.amount == null ? "" : money(d.amount, d.currency, { minor: true });
          toast(t(notice[1](d), { title: d.title, position: d.position, reason: d.reason,
            amount }), { kind: notice[0] });
        }
      },
    });
  }
  render();
}

registerWorker();
const page = await startPage({ page: "guest", title: "guest.title", hint: "guest.setupHint",
  fields: [{ name: "room", label: "setup.queue", placeholder: "queue:club42-set1" }] });
if (page) run(page);
