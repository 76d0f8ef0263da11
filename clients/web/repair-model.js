// A repair ticket (docs/repair.md) as the pages draw it: the state the server sends
// (`subscribed`, `reset`, GET .../state), folded forward with each event the reader
// sees (a customer gets internal events as `skip` frames: they never reach this fold).
// Pure (no DOM): tested with `node --test clients/web/test/`.
//
// Derived rules (which status moves the reader has, the QA gate) are the server's: a
// staff page re-reads the state after events (see tech.js) instead of copying them.

export const WORKFLOW = ["received", "diagnosing", "awaiting_approval", "repairing",
  "quality_check", "ready_for_pickup", "collected"];

/** Every status a ticket can have (the pages name them in the reader's language). */
export const STATUSES = [...WORKFLOW, "on_hold", "cancelled"];

/** A model from a state view at `seq` (a deep copy: the model is mutated by the fold). */
export function fromState(state, seq = 0) {
  const model = structuredClone(state);
  model.seq = seq;
  for (const key of ["history", "milestones", "photos", "notes", "quotes", "technicians"]) {
    if (!Array.isArray(model[key])) model[key] = [];
  }
  if (!model.qa) model.qa = { total: 0, passed: 0 };
  return model;
}

function qaKey(item) {
  return String(item).trim().toLowerCase().split(/\s+/).join(" ");
}

/** Fold one event (`data` of a message, with its `ts`, `by`, `seq`). */
export function applyEvent(model, data, { ts = Date.now(), by = null, seq = null } = {}) {
  switch (data.event) {
    case "ticket.created":
      Object.assign(model, {
        exists: true, readable: true, status: "received", customer_id: data.customer_id,
        device: data.device, problem: data.problem, technicians: data.technicians || [],
        created_ms: ts, progress: model.progress || 0,
      });
      if (data.internal !== undefined) model.internal = data.internal;
      model.history.push({ status: "received", ts, reason: null, by });
      break;
    case "ticket.assigned":
      model.technicians = data.technicians || model.technicians;
      break;
    case "status.changed": {
      const quote = model.quote;
      if (model.status === "awaiting_approval" && quote && quote.status === "pending") {
        Object.assign(quote, { status: "withdrawn", decided_ms: ts, decided_by: by });
      }
      model.held_from = data.to === "on_hold" ? model.status : null;
      model.status = data.to;
      if ("outcome" in data) model.outcome = data.outcome;
      const change = { status: data.to, ts, reason: data.reason ?? null, by };
      if ("internal_reason" in data) change.internal_reason = data.internal_reason;
      model.history.push(change);
      if (data.quote) {
        const q = { id: data.quote.quote_id, amount: data.quote.amount,
          currency: data.quote.currency, description: data.quote.description ?? null,
          proposed_ms: ts, by, status: "pending", decided_ms: null, decided_by: null,
          on_behalf: false, reason: null };
        model.quotes.push(q);
        model.quote = { ...q };
      }
      break;
    }
    case "quote.approved":
    case "quote.declined":
      if (model.quote) {
        Object.assign(model.quote, {
          status: data.event === "quote.approved" ? "approved" : "declined",
          decided_ms: ts, decided_by: by, on_behalf: Boolean(data.on_behalf),
          reason: data.reason ?? null,
        });
        const q = model.quotes.find((x) => x.id === model.quote.id);
        if (q) Object.assign(q, model.quote);
      }
      break;
    case "milestone.added":
      model.milestones.push({ id: data.milestone_id, title: data.title, percent: data.percent,
        ts, by });
      model.progress = data.percent;
      break;
    case "eta.changed":
      model.eta_ms = data.at;
      break;
    case "photo.added":
      model.photos.push({ id: data.photo_id, category: data.category, caption: data.caption,
        url: data.url ?? null, upload_id: data.upload_id ?? null, visibility: data.visibility,
        ts, by });
      break;
    case "qa.recorded":
      if (Array.isArray(model.qa.items)) {
        const items = model.qa.items.filter((i) => qaKey(i.item) !== qaKey(data.item));
        items.push({ item: data.item, passed: data.passed, note: data.note ?? null,
          required: data.required !== false, ts, by });
        model.qa.items = items;
        model.qa.failed = items.filter((i) => i.required && !i.passed).map((i) => i.item);
        model.qa.ready = items.length > 0 && model.qa.failed.length === 0;
      }
      break;
    case "note.added":
      model.notes.push({ id: data.note_id, text: data.text, priority: data.priority,
        visibility: data.visibility, from_customer: Boolean(data.from_customer), ts, by });
      break;
    default:
      break;
  }
  model.updated_ms = ts;
  if (seq !== null) model.seq = seq;
  return model;
}

/**
 * The workflow steps with done / current / todo, for a timeline; `quote` says how the
 * approval step ended (approved, declined) once it is done.
 */
export function steps(model) {
  const status = model.status === "on_hold" ? model.held_from : model.status;
  const reached = new Set((model.history || []).map((h) => h.status));
  const declined = model.outcome === "unrepaired";
  const path = WORKFLOW.filter((s) => !(declined && (s === "repairing" || s === "quality_check")));
  const index = path.indexOf(status);
  const over = model.status === "cancelled" || model.status === "collected";
  const quote = model.quote && model.quote.status;
  return path.map((s, i) => {
    const state = over ? (reached.has(s) ? "done" : "todo")
      : i < index ? "done" : i === index ? "current" : "todo";
    return {
      status: s, state, quote: s === "awaiting_approval" && state === "done" ? quote || null
        : null,
      ts: [...(model.history || [])].reverse().find((h) => h.status === s)?.ts ?? null,
    };
  });
}

/**
 * Where a photo is: {local} while being uploaded, {upload} (a hub path, read with the
 * token in a header: never in the URL) or {url} (a link the event carried).
 */
export function photoSource(room, photo) {
  if (photo.localUrl) return { local: photo.localUrl };
  if (photo.upload_id) {
    return { upload: `/v1/rooms/${encodeURIComponent(room)}/photos/`
      + `${encodeURIComponent(photo.upload_id)}` };
  }
  return { url: photo.url };
}

/**
 * The staff feed `repairs:{me}` (or `repairs:all`) folded into tickets at a glance:
 * {ticket: {ticket, room, customer_id, device, problem, status, progress, eta_ms,
 * updated_ms, last}}. An unassigned ticket leaves the list.
 */
export function applyFeed(tickets, data, { ts = Date.now() } = {}) {
  const id = data.ticket;
  if (!id) return tickets;
  if (data.event === "ticket.unassigned") {
    delete tickets[id];
    return tickets;
  }
  const t = tickets[id] || (tickets[id] = { ticket: id, room: data.room, status: null,
    progress: 0, device: "", problem: "", customer_id: "" });
  if (data.summary) {
    Object.assign(t, { customer_id: data.summary.customer_id, device: data.summary.device,
      problem: data.summary.problem, status: data.summary.status,
      progress: data.summary.progress, eta_ms: data.summary.eta_ms });
  }
  switch (data.event) {
    case "ticket.created":
      Object.assign(t, { customer_id: data.customer_id, device: data.device,
        problem: data.problem, status: data.status || "received", created_ms: ts });
      break;
    case "status.changed":
      t.status = data.to;
      break;
    case "milestone.added":
      t.progress = data.percent;
      break;
    case "eta.changed":
      t.eta_ms = data.at;
      break;
    default:
      break;
  }
  t.updated_ms = ts;
  t.last = data.event;
  return tickets;
}
