// What the browser client keeps across reloads (store.js) and how it renews tokens,
// with node's own runner and no packages: node --test clients/js/test/
// The memory store stands in for IndexedDB here (same port); the browser tests in
// tests/web/ run the IndexedDB adapter with a real reload.

import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import { RoomlogClient, tokenClaims, tokenRefusal } from "../roomlog.js";
import { MemoryStore, openStore } from "../store.js";
import { tick, until } from "./helpers.mjs";


class Socket {
  static all = [];
  static refuse = false;

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    Socket.all.push(this);
    setTimeout(() => {
      if (Socket.refuse) {
        this.readyState = 3;
        this.onclose && this.onclose({ code: 1006, reason: "" });
        return;
      }
      this.readyState = 1;
      this.onopen && this.onopen({});
    }, 0);
  }

  send(data) {
    const frame = JSON.parse(data);
    this.sent.push(frame);
    if (frame.type === "connect") {
      const claims = tokenClaims(frame.token) || {};
      setTimeout(() => this.serverSend({ type: "connected", user: claims.sub || "u1",
        role: "guest", expires: claims.exp ?? Math.floor(Date.now() / 1000) + 3600,
        id: frame.id }), 0);
    }
  }

  close() {
    this.readyState = 3;
  }

  serverSend(frames) {
    this.onmessage && this.onmessage({ data: JSON.stringify(frames) });
  }

  sentOf(type) {
    return this.sent.filter((f) => f.type === type);
  }
}

/** An unsigned JWT-shaped token (the client only reads its claims). */
function jwt(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}.sig`;
}

const opened = [];
afterEach(() => { // a failed test must not leave a client running (node would not exit)
  for (const rt of opened.splice(0)) rt.close();
});

function client(extra = {}) {
  return track(new RoomlogClient({ url: "http://hub.test", token: jwt({ sub: "gina" }),
    WebSocket: Socket, window: null, document: null, navigator: null,
    backoff: { base: 2, max: 10 }, pingInterval: 60000, ...extra }));
}

function track(rt) {
  opened.push(rt);
  return rt;
}

function fresh() {
  Socket.all = [];
  Socket.refuse = false;
}

// ---------------------------------------------------------------------------
// the store port

test("memory store: get, set, delete, entries by prefix in key order; copies values", async () => {
  const s = new MemoryStore();
  assert.equal(await s.get("a"), undefined);
  const value = { n: 1 };
  await s.set("p/b", value);
  await s.set("p/a", { n: 2 });
  await s.set("q/a", { n: 3 });
  value.n = 99; // the store kept a copy
  assert.deepEqual(await s.get("p/b"), { n: 1 });
  assert.deepEqual(await s.entries("p/"), [["p/a", { n: 2 }], ["p/b", { n: 1 }]]);
  await s.delete("p/a");
  await s.delete("missing");
  assert.deepEqual((await s.entries("p/")).map(([k]) => k), ["p/b"]);
});

test("openStore falls back to memory without IndexedDB", async () => {
  const s = await openStore("x", { indexedDB: null });
  assert.equal(s.kind, "memory");
});

// ---------------------------------------------------------------------------
// token claims

test("token claims are read without verifying; refusals told from passing failures", () => {
  assert.deepEqual(tokenClaims(jwt({ sub: "zoë", exp: 5 })), { sub: "zoë", exp: 5 });
  for (const bad of ["t0", "", null, "a.!!.c", undefined]) assert.equal(tokenClaims(bad), null);
  assert.equal(tokenRefusal({ status: 401 }), true);
  assert.equal(tokenRefusal({ status: 403 }), true);
  assert.equal(tokenRefusal({ permanent: true }), true);
  assert.equal(tokenRefusal(null), true, "no token at all");
  assert.equal(tokenRefusal(new TypeError("Failed to fetch")), false);
  assert.equal(tokenRefusal({ status: 502 }), false);
});

// ---------------------------------------------------------------------------
// the outbox survives a reload

test("writes unanswered by one page are sent by the next, once, with their ids", async () => {
  fresh();
  const store = new MemoryStore();
  const first = client({ store, autoConnect: false }); // a page that never gets online
  await first.ready;
  // Ids in the reverse of their order: the store's key order must not decide.
  const sent = first.command("queue:q", "request.submit", { title: "Waterloo" }, { id: "z-1" });
  sent.catch(() => {}); // the page goes away before any answer
  const vote = first.command("queue:q", "request.vote", { request_id: "r1" }, { id: "v-1" });
  vote.catch(() => {});
  const ids = first.pending.map((f) => f.id);
  await tick(5);
  first.close();
  assert.equal((await store.entries("")).length, 2, "both kept");

  const settled = [];
  const second = client({ store });
  second.on("settled", (e) => settled.push(e));
  const restored = await second.ready;
  assert.deepEqual(restored.map((f) => f.id), ids, "in the order they were made");
  const ws = await until(() => Socket.all[0]?.sentOf("command").length === 2 && Socket.all[0],
    "resent");
  assert.deepEqual(ws.sentOf("command").map((f) => f.id), ids);
  assert.deepEqual(ws.sentOf("command")[1].args, { request_id: "r1" });
  // The page asks for the result of a restored write by its id: it joins, not resends.
  const joined = second.command("queue:q", "request.vote", { request_id: "r1" }, { id: "v-1" });
  ws.serverSend({ type: "ack", id: ids[0], room: "queue:q", seq: 4, duplicate: true });
  ws.serverSend({ type: "error", id: "v-1", room: "queue:q", code: "NOT_FOUND",
    message: "no request r1" });
  await assert.rejects(joined, (e) => e.code === "NOT_FOUND");
  await until(() => settled.length === 2, "settled");
  assert.deepEqual(settled.map((e) => [e.id, e.restored, Boolean(e.ack), e.error?.code ?? null]),
    [[ids[0], true, true, null], ["v-1", true, false, "NOT_FOUND"]]);
  assert.equal(ws.sentOf("command").length, 2, "sent once each");
  assert.deepEqual(await store.entries(""), [], "nothing left to send");
  second.close();
});

test("writes kept too long are dropped unsent; another user's writes are not sent", async () => {
  fresh();
  const store = new MemoryStore();
  const ns = "http://hub.test|gina|out/";
  await store.set(`${ns}old`, { frame: { type: "command", id: "old", room: "queue:q",
    name: "request.vote", args: {} }, at: Date.now() - 13 * 3600 * 1000 });
  await store.set("http://hub.test|olga|out/hers", { frame: { type: "command", id: "hers",
    room: "queue:q", name: "request.vote", args: {} }, at: Date.now() });
  const settled = [];
  const rt = client({ store });
  rt.on("settled", (e) => settled.push(e));
  assert.deepEqual(await rt.ready, []);
  assert.deepEqual(settled.map((e) => [e.id, e.error.code]), [["old", "EXPIRED"]]);
  const ws = await until(() => rt.state === "connected" && Socket.all[0], "connected");
  await tick(10);
  assert.equal(ws.sentOf("command").length, 0);
  assert.equal(await store.get(`${ns}old`), undefined);
  assert.ok(await store.get("http://hub.test|olga|out/hers"), "olga's stays for olga");
  rt.close();
});

// ---------------------------------------------------------------------------
// positions survive a reload (persist: true)

test("a persisted room resumes from where the last page was", async () => {
  fresh();
  const store = new MemoryStore();
  const got = [];
  const first = client({ store });
  first.subscribe("user:gina", { persist: true, onMessage: (f) => got.push(f.seq) });
  let ws = await until(() => Socket.all[0]?.sentOf("subscribe")[0] && Socket.all[0], "subscribe");
  assert.equal(ws.sentOf("subscribe")[0].since, undefined, "nothing kept yet: the head");
  ws.serverSend({ type: "subscribed", room: "user:gina", epoch: "E", head: 2,
    id: ws.sentOf("subscribe")[0].id });
  ws.serverSend({ type: "message", room: "user:gina", epoch: "E", seq: 3, data: {} });
  assert.deepEqual(got, [3]);
  await tick(10);
  first.close();

  const second = client({ store });
  const other = second.subscribe("chat:x", {}); // not persisted: starts at the head
  second.subscribe("user:gina", { persist: true, onMessage: (f) => got.push(f.seq) });
  ws = await until(() => Socket.all[1]?.sentOf("subscribe").length === 2 && Socket.all[1],
    "subscribe again");
  const bySub = Object.fromEntries(ws.sentOf("subscribe").map((f) => [f.room, f]));
  assert.deepEqual(bySub["user:gina"].since, { epoch: "E", seq: 3 });
  assert.equal(bySub["chat:x"].since, undefined);
  ws.serverSend({ type: "subscribed", room: "user:gina", epoch: "E", head: 4,
    id: bySub["user:gina"].id });
  ws.serverSend([3, 4].map((seq) => ({ type: "message", room: "user:gina", epoch: "E", seq,
    data: {} })));
  assert.deepEqual(got, [3, 4], "the one missed, once");
  other.close();
  second.close();
});

// ---------------------------------------------------------------------------
// tokens: renewed before they expire, on any transport; failures retried or final

test("no token yet: the client asks getToken first and connects with it", async () => {
  fresh();
  const rt = client({ token: null, getToken: async () => jwt({ sub: "dj1" }) });
  const ws = await until(() => Socket.all[0]?.sentOf("connect")[0] && Socket.all[0], "connect");
  assert.equal(tokenClaims(ws.sentOf("connect")[0].token).sub, "dj1");
  rt.close();
});

test("the token is renewed at 80 % of its life; passing failures are retried", async () => {
  fresh();
  let calls = 0;
  const states = [];
  const getToken = async () => {
    calls += 1;
    if (calls === 2) throw new TypeError("Failed to fetch"); // the network, once
    return jwt({ sub: "dj1", exp: Math.floor(Date.now() / 1000) + 2 });
  };
  const rt = client({ token: null, getToken, backoff: { base: 5, max: 10 } });
  rt.on("token", (e) => states.push(e.state));
  const ws = await until(() => rt.state === "connected" && Socket.all[0], "connected");
  // The first token lives about 2 s: renewed after ~1.6 s (failing once), sent as connect.
  await until(() => ws.sentOf("connect").length === 2, "refresh on the same socket", 4000);
  assert.equal(calls, 3);
  assert.deepEqual(states, ["renewing", "ok"]);
  assert.equal(Socket.all.length, 1, "no reconnect");
  assert.equal(rt.tokenState, "ok");
  rt.close();
});

test("while long-polling the token is renewed as well", async () => {
  fresh();
  Socket.refuse = true;
  const auths = [];
  let n = 0;
  const fetch = async (url, init = {}) => {
    auths.push(init.headers.authorization);
    await tick(5);
    const body = { frames: [], head: 0, next: 0, epoch: "E" };
    return { ok: true, status: 200, json: async () => body, text: async () => JSON.stringify(body) };
  };
  const getToken = async () => jwt({ sub: "g", n: ++n, exp: Math.floor(Date.now() / 1000) + 2 });
  // The page's first token (from its URL, say) expires in 2 s: never seen in a `connected`.
  const rt = client({ token: jwt({ sub: "g", n: 0, exp: Math.floor(Date.now() / 1000) + 2 }),
    getToken, fetch, transports: ["polling"], pollWait: 0 });
  rt.subscribe("chat:a", { since: { epoch: "E", seq: 0 } });
  await until(() => rt.state === "polling", "polling");
  const used = () => auths.map((a) => tokenClaims(a.slice(7)).n);
  await until(() => used().includes(1), "the renewed token in use", 4000);
  assert.equal(used()[0], 0);
  rt.close();
});

test("a refused renewal after 4001 stops the client, saying so", async () => {
  fresh();
  let calls = 0;
  const getToken = async () => {
    calls += 1;
    if (calls > 1) throw Object.assign(new Error("signed out"), { status: 401 });
    return jwt({ sub: "g" });
  };
  const rt = client({ token: null, getToken });
  const tokens = [];
  rt.on("token", (e) => tokens.push(e.state));
  const ws = await until(() => rt.state === "connected" && Socket.all[0], "connected");
  ws.readyState = 3;
  ws.onclose({ code: 4001, reason: "token expired" });
  await until(() => rt.state === "closed", "closed");
  assert.equal(rt.closeCode, 4001);
  assert.deepEqual(tokens, ["refused"]);
  assert.equal(Socket.all.length, 1);
});
