// The page models of clients/web/ (pure folds of room events):
//   node --test clients/web/test/
// Shapes are those the hub sends (docs/queue.md, docs/repair.md).

import assert from "node:assert/strict";
import { test } from "node:test";

import { applyEvent, earnings, fromState, songId, view } from "../queue-model.js";
import * as repair from "../repair-model.js";

const req = (id, user, title, extra = {}) => ({ id, user, song_id: `s-${id}`, title,
  artist: "A", note: null, status: "pending", votes: 0, voted: false, ...extra });

function queueState() {
  return {
    room: "queue:q", owner: null, open: true, dj: false,
    settings: { request_cap_per_hour: 30, max_active_per_guest: 3, submit_rate: 3, voting: true },
    now_playing: null, queue: [],
    pending: [{ ...req("r1", "gina", "One"), position: 1 }],
    counters: { requests_last_hour: 1, request_cap_per_hour: 30, as_of_ms: Date.now() },
    mine: [req("r1", "gina", "One")],
  };
}

test("queue: a guest's view follows submits, votes, accept, reorder, play", () => {
  const m = fromState(queueState(), "gina", 1);
  const ev = (data, seq) => applyEvent(m, data, { seq, ts: Date.now() });
  ev({ event: "request.submitted", request: req("r2", "olga", "Two"), position: 2 }, 2);
  ev({ event: "request.submitted", request: req("r3", "sam", "Three"), position: 3 }, 3);
  ev({ event: "request.voted", request_id: "r3", user: "gina", votes: 1, position: 1 }, 4);
  let v = view(m);
  assert.deepEqual(v.pending.map((r) => [r.id, r.position]), [["r3", 1], ["r1", 2], ["r2", 3]]);
  assert.equal(v.pending[0].voted, true, "my vote");
  assert.equal(v.mine[0].position, 2);
  assert.equal(v.counters.requestsLastHour, 3);

  ev({ event: "queue.created", owner: "dj1" }, 5);
  ev({ event: "request.accepted", request_id: "r1", user: "gina", position: 1, queue: ["r1"] }, 6);
  ev({ event: "request.accepted", request_id: "r2", user: "olga", position: 2,
    queue: ["r1", "r2"] }, 7);
  ev({ event: "queue.reordered", request_id: "r2", position: 1, queue: ["r2", "r1"] }, 8);
  v = view(m);
  assert.equal(v.owner, "dj1");
  assert.deepEqual(v.queue.map((r) => r.id), ["r2", "r1"]);
  assert.deepEqual(v.mine.map((r) => [r.id, r.status, r.position]), [["r1", "accepted", 2]]);

  ev({ event: "request.playing", request_id: "r2", user: "olga", title: "Two", artist: "A",
    queue: ["r1"] }, 9);
  ev({ event: "request.playing", request_id: "r1", user: "gina", title: "One", artist: "A",
    queue: [] }, 10);
  v = view(m);
  assert.equal(v.nowPlaying.id, "r1");
  assert.equal(m.requests.r2.status, "played");
  assert.equal(v.counters.played, 1);
  ev({ event: "request.vetoed", request_id: "r3", user: "sam", reason: "no", queue: [] }, 11);
  ev({ event: "queue.closed" }, 12);
  v = view(m);
  assert.equal(v.pending.length, 0);
  assert.equal(v.open, false);
  assert.equal(m.seq, 12);
});

test("queue: the model survives structuredClone (optimistic overlays)", () => {
  const m = fromState(queueState(), "gina", 1);
  const copy = structuredClone(m);
  copy.requests.r1.status = "cancelled";
  assert.equal(m.requests.r1.status, "pending");
});

test("queue: song ids from what a guest typed", () => {
  assert.equal(songId("Dancing Queen", "ABBA"), "song:abba--dancing-queen");
  assert.equal(songId(" Déjà  Vu! ", "Beyoncé"), "song:beyonce--deja-vu");
  assert.ok(songId("x".repeat(300), "y").length <= 128);
});

test("repair: the customer's ticket follows status, quote, progress, photos, notes", () => {
  const state = { room: "repair:t1", ticket: "t1", readable: true, exists: true,
    customer_id: "c1", device: "Phone", problem: "screen", status: "diagnosing",
    held_from: null, outcome: null, technicians: ["tech1"], progress: 0, eta_ms: null,
    quote: null, quotes: [], milestones: [], photos: [], notes: [],
    history: [{ status: "received", ts: 1, reason: null, by: "tech1" },
      { status: "diagnosing", ts: 2, reason: null, by: "tech1" }],
    moves: [], qa: { total: 0, passed: 0 } };
  const m = repair.fromState(state, 2);
  const ev = (data, seq, by = "tech1") => repair.applyEvent(m, data, { seq, ts: 10 * seq, by });
  ev({ event: "status.changed", from: "diagnosing", to: "awaiting_approval", reason: null,
    quote: { quote_id: "q1", amount: 99, currency: "EUR", description: "glass" } }, 3);
  assert.equal(m.quote.status, "pending");
  ev({ event: "quote.approved", quote_id: "q1", on_behalf: false }, 4, "c1");
  ev({ event: "status.changed", from: "awaiting_approval", to: "repairing", reason: null }, 5, "c1");
  ev({ event: "milestone.added", milestone_id: "m1", title: "glass off", percent: 40,
    previous: 0 }, 6);
  ev({ event: "photo.added", photo_id: "p1", category: "damage", caption: "crack",
    upload_id: "u.png", visibility: "customer" }, 7);
  ev({ event: "note.added", note_id: "n1", text: "hi", priority: "normal",
    visibility: "customer", from_customer: true }, 8, "c1");
  ev({ event: "status.changed", from: "repairing", to: "on_hold", reason: "parts" }, 9);
  assert.equal(m.status, "on_hold");
  assert.equal(m.held_from, "repairing");
  assert.equal(m.quotes[0].status, "approved");
  assert.equal(m.progress, 40);
  assert.equal(m.photos.length, 1);
  assert.equal(m.notes[0].from_customer, true);
  assert.equal(m.seq, 9);
  const steps = repair.steps(m);
  assert.deepEqual(steps.filter((s) => s.state === "done").map((s) => s.status),
    ["received", "diagnosing", "awaiting_approval"]);
  assert.equal(steps.find((s) => s.state === "current").status, "repairing");
  assert.equal(steps.find((s) => s.status === "awaiting_approval").quote, "approved");
  assert.deepEqual(repair.photoSource("repair:t1", m.photos[0]),
    { upload: "/v1/rooms/repair%3At1/photos/u.png" }, "no token in the URL");
});

test("repair: a declined quote skips the repair steps", () => {
  const m = repair.fromState({ status: "awaiting_approval", history: [], quote: {
    id: "q1", status: "pending" }, quotes: [{ id: "q1", status: "pending" }] }, 1);
  repair.applyEvent(m, { event: "quote.declined", quote_id: "q1", reason: "too much" },
    { seq: 2 });
  repair.applyEvent(m, { event: "status.changed", from: "awaiting_approval",
    to: "ready_for_pickup", outcome: "unrepaired" }, { seq: 3 });
  assert.equal(m.outcome, "unrepaired");
  assert.ok(!repair.steps(m).some((s) => s.status === "repairing"));
});

test("repair: the staff feed lists my tickets", () => {
  const tickets = {};
  repair.applyFeed(tickets, { ticket: "t1", room: "repair:t1", seq: 1, event: "ticket.created",
    customer_id: "c1", device: "Phone", problem: "x", technicians: ["tech1"],
    status: "received" });
  repair.applyFeed(tickets, { ticket: "t1", room: "repair:t1", seq: 2, event: "milestone.added",
    percent: 30 });
  repair.applyFeed(tickets, { ticket: "t2", room: "repair:t2", seq: 5, event: "ticket.assigned",
    summary: { device: "Tablet", customer_id: "c2", problem: "y", status: "repairing",
      progress: 50 } });
  assert.deepEqual(Object.keys(tickets), ["t1", "t2"]);
  assert.equal(tickets.t1.progress, 30);
  assert.equal(tickets.t2.status, "repairing");
  repair.applyFeed(tickets, { ticket: "t1", room: "repair:t1", seq: 3, event: "ticket.unassigned" });
  assert.deepEqual(Object.keys(tickets), ["t2"]);
});

test("queue: payments follow their events; jumps go first; the DJ's earnings", () => {
  const m = fromState({ ...queueState(), mine: [], pending: [] }, "gina", 1);
  const pay = (id, rid, user, amount) => ({ payment_id: id, kind: "request", request_id: rid,
    user, reference: `ref-${id}`, amount, currency: "EUR" });
  const ev = (data) => applyEvent(m, data, { ts: Date.now() });
  ev({ event: "request.submitted", request: req("r2", "gina", "Two"), payment: pay("p1", "r2", "gina", 500) });
  ev({ event: "request.submitted", request: req("r3", "olga", "Three", { jump: true }),
    payment: pay("p2", "r3", "olga", 1500) });
  let v = view(m);
  assert.deepEqual(v.pending.map((r) => r.id), ["r3", "r2"]);
  assert.equal(v.mine[0].paid.status, "verified");
  ev({ event: "payment.refund_due", ...pay("p1", "r2", "gina", 500), reason: "vetoed", attempt: 1 });
  ev({ event: "payment.settled", ...pay("p2", "r3", "olga", 1500) });
  ev({ event: "tip.sent", request_id: "r3", payment: { ...pay("p3", "r3", "sam", 200), kind: "tip" } });
  v = view(m);
  assert.deepEqual([v.mine[0].paid.status, v.mine[0].paid.reason], ["refund_due", "vetoed"]);
  ev({ event: "payment.refunded", ...pay("p1", "r2", "gina", 500), refund: "rf" });
  assert.equal(view(m).mine[0].paid.status, "refunded");
  assert.deepEqual(earnings(m), { EUR: { settled: 1700, tips: 200, waiting: 0, refunding: 0,
    refunded: 500 } });
});
