// The queue room (docs/queue.md) as a page draws it: built from the state the server
// sends (`subscribed`, `reset`, GET .../state) and folded forward with each event.
// Pure (no DOM): tested with `node --test clients/web/test/`.
//
// The model is a plain object, so structuredClone copies it for optimistic overlays:
//   { room, owner, open, settings, dj, me, requests: {id: request}, queue: [ids],
//     playing: id | null, counters: {base, asOf, cap, recent: [ts]},
//     payments: {id: {id, kind, amount, currency, status, reason, user?, request_id?}}, seq }

const ACTIVE = new Set(["pending", "accepted", "playing"]);

function number(request) {
  const n = /^r(\d+)$/.exec(request.id);
  return n ? Number(n[1]) : request.submitted_ms || 0;
}

/** A model from a state view (as `viewer` = `me` sees it) at `seq`. */
export function fromState(state, me, seq = 0) {
  const requests = {};
  const add = (r) => {
    if (!r) return;
    const copy = { ...r };
    delete copy.position;
    requests[r.id] = { ...(requests[r.id] || {}), ...copy };
  };
  for (const r of state.requests || []) add(r);
  for (const r of state.mine || []) add(r);
  for (const r of state.pending || []) add(r);
  for (const r of state.queue || []) add(r);
  add(state.now_playing);
  const payments = {};
  for (const r of Object.values(requests)) {
    if (r.payment) payments[r.payment.id] = { ...r.payment, request_id: r.id, user: r.user };
  }
  for (const p of state.my_payments || []) payments[p.id] = { user: me, ...payments[p.id], ...p };
  for (const p of state.payments || []) payments[p.id] = { ...payments[p.id], ...p };
  const counters = state.counters || {};
  return {
    room: state.room,
    owner: state.owner ?? null,
    open: state.open !== false,
    settings: { ...(state.settings || {}) },
    dj: Boolean(state.dj),
    me,
    requests,
    queue: (state.queue || []).map((r) => r.id),
    playing: state.now_playing ? state.now_playing.id : null,
    counters: {
      base: counters.requests_last_hour || 0,
      asOf: counters.as_of_ms || 0,
      cap: counters.request_cap_per_hour ?? (state.settings || {}).request_cap_per_hour ?? null,
      recent: [],
    },
    payments,
    seq,
  };
}

// Payment events (docs/queue.md, "Paid requests") -> the status they leave.
const PAYMENT_STATUS = {
  "payment.settled": "settled",
  "payment.refund_due": "refund_due",
  "payment.refund_retry": "refund_due",
  "payment.refunded": "refunded",
  "payment.refund_failed": "refund_failed",
};

function addPayment(model, body, status) {
  const p = { id: body.payment_id, kind: body.kind, amount: body.amount, currency: body.currency,
    user: body.user, request_id: body.request_id ?? null, status, reason: null };
  model.payments[p.id] = p;
  return p;
}

function ensure(model, id) {
  if (!model.requests[id]) {
    model.requests[id] = { id, title: "…", artist: "", status: "pending", votes: 0, voted: false };
  }
  return model.requests[id];
}

function setQueue(model, ids) {
  if (!Array.isArray(ids)) return;
  model.queue = ids.slice();
  for (const id of ids) {
    const r = ensure(model, id);
    if (r.status !== "accepted") r.status = "accepted";
  }
}

/** Fold one event (`data` of a message, with its `ts`, `by`, `seq`) into the model. */
export function applyEvent(model, data, { ts = Date.now(), seq = null } = {}) {
  const id = data.request_id;
  switch (data.event) {
    case "queue.created":
      model.owner = data.owner;
      break;
    case "request.submitted": {
      const r = data.request;
      model.requests[r.id] = { ...r, submitted_ms: ts, updated_ms: ts, voted: false,
        reason: null, payment_id: data.payment ? data.payment.payment_id : null };
      if (data.payment) addPayment(model, data.payment, "verified");
      model.counters.recent.push(ts);
      break;
    }
    case "tip.sent":
      addPayment(model, data.payment, "settled");
      break;
    case "payment.settled":
    case "payment.refund_due":
    case "payment.refund_retry":
    case "payment.refunded":
    case "payment.refund_failed": {
      const p = model.payments[data.payment_id] || addPayment(model, data, "verified");
      p.status = PAYMENT_STATUS[data.event];
      if (data.reason) p.reason = data.reason;
      break;
    }
    case "request.cancelled":
      Object.assign(ensure(model, id), { status: "cancelled", updated_ms: ts });
      break;
    case "request.voted":
    case "request.unvoted": {
      const r = ensure(model, id);
      r.votes = data.votes;
      if (data.user === model.me) r.voted = data.event === "request.voted";
      break;
    }
    case "request.accepted":
      Object.assign(ensure(model, id), { status: "accepted", updated_ms: ts });
      setQueue(model, data.queue);
      break;
    case "request.vetoed":
      Object.assign(ensure(model, id), { status: "vetoed", reason: data.reason ?? null,
        updated_ms: ts });
      model.queue = (data.queue || model.queue).filter((q) => q !== id);
      setQueue(model, model.queue);
      break;
    case "request.playing": {
      if (model.playing && model.playing !== id && model.requests[model.playing]) {
        Object.assign(model.requests[model.playing], { status: "played", updated_ms: ts });
      }
      const r = ensure(model, id);
      Object.assign(r, { status: "playing", updated_ms: ts });
      if (data.title && r.title === "…") Object.assign(r, { title: data.title, artist: data.artist });
      model.playing = id;
      model.queue = (data.queue || model.queue).filter((q) => q !== id);
      setQueue(model, model.queue);
      break;
    }
    case "request.played":
      Object.assign(ensure(model, id), { status: "played", updated_ms: ts });
      if (model.playing === id) model.playing = null;
      model.queue = (data.queue || model.queue).filter((q) => q !== id);
      setQueue(model, model.queue);
      break;
    case "queue.reordered":
      setQueue(model, data.queue);
      break;
    case "queue.opened":
      model.open = true;
      break;
    case "queue.closed":
      model.open = false;
      break;
    case "queue.settings_changed":
      model.settings = { ...model.settings, ...(data.settings || data.changed || {}) };
      if (model.settings.request_cap_per_hour) model.counters.cap = model.settings.request_cap_per_hour;
      if ("open" in (data.settings || {})) model.open = data.settings.open;
      break;
    default:
      break; // an event of a later version: ignored
  }
  if (seq !== null) model.seq = seq;
  return model;
}

/** Pending requests in the server's order: paid jumps first, then most votes, then
 * oldest. */
export function pendingOrder(model) {
  return Object.values(model.requests)
    .filter((r) => r.status === "pending")
    .sort((a, b) => (Boolean(b.jump) - Boolean(a.jump)) || (b.votes - a.votes)
      || (number(a) - number(b)));
}

/** The payment of a request row, if it was paid for. */
export function paymentOf(model, r) {
  const id = r.payment_id || (r.payment && r.payment.id);
  return id ? model.payments[id] || r.payment || null : null;
}

/** The DJ's money per currency (minor units): settled (tips included), tips, waiting
 * (paid, not played yet), refunding, refunded. */
export function earnings(model) {
  const out = {};
  for (const p of Object.values(model.payments || {})) {
    const e = out[p.currency] ||= { settled: 0, tips: 0, waiting: 0, refunding: 0, refunded: 0 };
    if (p.status === "settled") {
      e.settled += p.amount;
      if (p.kind === "tip") e.tips += p.amount;
    } else if (p.status === "verified") e.waiting += p.amount;
    else if (p.status === "refunded") e.refunded += p.amount;
    else e.refunding += p.amount;
  }
  return out;
}


/** Requests submitted in the hour before `now`, as far as this page knows. */
export function requestsLastHour(model, now = Date.now()) {
  const c = model.counters;
  const base = now - c.asOf < 3600_000 ? c.base : 0;
  return base + c.recent.filter((ts) => ts > now - 3600_000).length; // folded after the state
}

/** What a page draws: now playing, the accepted queue, pending, mine (with positions). */
export function view(model, now = Date.now()) {
  const paid = (r) => ({ ...r, paid: paymentOf(model, r) });
  const queue = model.queue.map((id, i) => paid({ ...model.requests[id], position: i + 1 }))
    .filter((r) => r.id);
  const pending = pendingOrder(model).map((r, i) => paid({ ...r, position: i + 1 }));
  const where = new Map();
  for (const r of queue) where.set(r.id, r.position);
  for (const r of pending) where.set(r.id, r.position);
  const mine = Object.values(model.requests)
    .filter((r) => r.user === model.me)
    .map((r) => paid({ ...r, position: where.get(r.id) ?? null }))
    .sort((a, b) => (ACTIVE.has(b.status) - ACTIVE.has(a.status))
      || ((b.submitted_ms || 0) - (a.submitted_ms || 0)) || number(b) - number(a));
  return {
    open: model.open,
    owner: model.owner,
    settings: model.settings,
    nowPlaying: model.playing ? model.requests[model.playing] || null : null,
    earnings: earnings(model),
    queue,
    pending,
    mine,
    counters: {
      requestsLastHour: requestsLastHour(model, now),
      cap: model.counters.cap,
      pending: pending.length,
      accepted: queue.length,
      played: Object.values(model.requests).filter((r) => r.status === "played").length,
    },
  };
}

/** A stable song id from what a guest typed (the form has no search). */
export function songId(title, artist) {
  const slug = (s) => s.toLowerCase().normalize("NFKD").replace(/[\u0300-\u036f]/g, "")
    .replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "");
  return `song:${slug(artist) || "unknown"}--${slug(title)}`.slice(0, 128);
}
