// Unit tests of clients/js/roomlog.js with node's own runner, no packages:
//   node --test clients/js/test/
// The pure helpers are tested directly; the client runs against a scripted fake
// WebSocket and a fake fetch, so reconnects, fallbacks and retries are tested in
// milliseconds. (The browser tests in tests/web/ run it against a real server.)

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  RoomlogClient, RoomCursor, backoffDelay, closeAction, flattenFrames, retryDelay,
} from "../roomlog.js";
import { tick, until } from "./helpers.mjs";

// ---------------------------------------------------------------------------
// pure helpers

test("a message is one frame or an array of frames", () => {
  assert.deepEqual(flattenFrames({ type: "pong" }), [{ type: "pong" }]);
  assert.deepEqual(flattenFrames([{ type: "a" }, { type: "b" }]).map((f) => f.type), ["a", "b"]);
  assert.deepEqual(flattenFrames([null, 3, { type: "x" }]), [{ type: "x" }]);
});

test("close codes: stop, fresh token, at once, or backoff", () => {
  for (const code of [1009, 4002, 4003]) assert.equal(closeAction(code), "stop");
  assert.equal(closeAction(4001), "token");
  assert.equal(closeAction(4008), "now");
  for (const code of [1000, 1001, 1006, 1011, 1012, 4999]) assert.equal(closeAction(code), "retry");
});

test("backoff: 1, 2, 4, 8, 16 then 30 s, with jitter", () => {
  const mid = () => 0.5;
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 20].map((a) => backoffDelay(a, { random: mid })),
    [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
  assert.equal(backoffDelay(0, { random: () => 0 }), 800);
  assert.equal(backoffDelay(5, { random: () => 1 }), 36000);
});

test("rejected writes: which are retried", () => {
  assert.equal(retryDelay("UNAVAILABLE", 0.5, 0), 500);
  assert.equal(retryDelay("UNAVAILABLE", undefined, 2), 4000);
  assert.equal(retryDelay("UNAVAILABLE", 1, 20), null);
  assert.equal(retryDelay("RATE_LIMITED", 0.25, 0), 250);
  assert.equal(retryDelay("RATE_LIMITED", 42, 0), null, "a room's rule: shown, not waited");
  assert.equal(retryDelay("INTERNAL", null, 0), 1000);
  assert.equal(retryDelay("INTERNAL", null, 3), null);
  for (const code of ["FORBIDDEN", "DUPLICATE_REQUEST", "INVALID_TRANSITION", "CONFLICT"]) {
    assert.equal(retryDelay(code, 1, 0), null);
  }
});

const msg = (seq, epoch = "E") => ({ type: "message", room: "r", seq, epoch, data: seq });

test("cursor: in order, duplicates dropped", () => {
  const c = new RoomCursor({ epoch: "E", seq: 3 });
  assert.deepEqual(c.push(msg(3)), []);
  assert.deepEqual(c.push(msg(4)).map((f) => f.seq), [4]);
  assert.deepEqual(c.push(msg(4)), []);
  assert.deepEqual(c.push({ type: "skip", room: "r", seq: 5, epoch: "E" }).map((f) => f.type),
    ["skip"]);
  assert.deepEqual(c.position, { epoch: "E", seq: 5 });
  assert.equal(c.gap, null);
});

test("cursor: a gap holds later frames until it is filled", () => {
  const c = new RoomCursor({ epoch: "E", seq: 1 });
  assert.deepEqual(c.push(msg(4)), []);
  assert.deepEqual(c.push(msg(3)), []);
  assert.deepEqual(c.gap, { epoch: "E", after: 1 });
  assert.deepEqual(c.push(msg(2)).map((f) => f.seq), [2, 3, 4]);
  assert.equal(c.gap, null);
  assert.deepEqual(c.push(msg(3)), []);
});

test("cursor: reset replaces the position; stale held frames go", () => {
  const c = new RoomCursor({ epoch: "E", seq: 10 });
  c.push(msg(13));
  c.push(msg(2, "F")); // the new epoch, seen before its reset
  assert.ok(c.gap);
  const out = c.reset({ type: "reset", room: "r", epoch: "F", seq: 1, reason: "epoch" });
  assert.deepEqual(out.map((f) => [f.type, f.seq]), [["reset", 1], ["message", 2]]);
  assert.equal(c.gap, null);
  assert.deepEqual(c.position, { epoch: "F", seq: 2 });
});

test("cursor: start only once", () => {
  const c = new RoomCursor();
  assert.equal(c.position, null);
  assert.ok(c.start("E", 7));
  assert.ok(!c.start("E", 9));
  assert.deepEqual(c.position, { epoch: "E", seq: 7 });
});

// ---------------------------------------------------------------------------
// the client against a fake WebSocket and a fake fetch

class FakeSocket {
  static all = [];
  static refuse = false;

  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.all.push(this);
    setTimeout(() => {
      if (FakeSocket.refuse) this.serverClose(1006);
      else {
        this.readyState = 1;
        this.onopen && this.onopen({});
      }
    }, 0);
  }

  send(data) {
    this.sent.push(JSON.parse(data));
    const frame = this.sent.at(-1);
    if (frame.type === "connect" && this.autoConnect !== false) {
      setTimeout(() => this.serverSend({ type: "connected", user: "u1", role: "guest",
        expires: Math.floor(Date.now() / 1000) + 3600, id: frame.id }), 0);
    }
  }

  close() {
    this.readyState = 3;
  }

  serverSend(frames) {
    this.onmessage && this.onmessage({ data: JSON.stringify(frames) });
  }

  serverClose(code, reason = "") {
    this.readyState = 3;
    this.onclose && this.onclose({ code, reason });
  }

  sentOf(type) {
    return this.sent.filter((f) => f.type === type);
  }
}


function fakeFetch(routes) {
  const calls = [];
  const fetch = async (url, init = {}) => {
    const u = new URL(url);
    calls.push({ method: init.method || "GET", path: u.pathname, query: u.searchParams,
      body: init.body ? JSON.parse(init.body) : undefined });
    for (const [pattern, handler] of routes) {
      if (pattern.test(`${init.method || "GET"} ${u.pathname}`)) {
        const [status, body] = await handler(u, init, calls.at(-1));
        return { ok: status < 400, status, json: async () => body,
          text: async () => JSON.stringify(body) };
      }
    }
    return { ok: false, status: 404, json: async () => ({ error: { code: "NOT_FOUND" } }),
      text: async () => "{}" };
  };
  return { fetch, calls };
}

function makeClient(extra = {}) {
  FakeSocket.all = [];
  FakeSocket.refuse = false;
  return new RoomlogClient({
    url: "http://hub.test", token: "t0", WebSocket: FakeSocket, window: null, document: null,
    navigator: null, backoff: { base: 2, max: 10 }, pingInterval: 60000, ...extra,
  });
}

test("client: subscribe, deliver once in order, arrays accepted", async () => {
  const rt = makeClient();
  const got = [];
  let state = null;
  rt.subscribe("queue:q", { onMessage: (f) => got.push(f.seq), onState: (s) => { state = s; } });
  const ws = await until(() => FakeSocket.all[0]?.sentOf("subscribe")[0] && FakeSocket.all[0],
    "subscribe");
  const sub = ws.sentOf("subscribe")[0];
  assert.equal(sub.since, undefined);
  ws.serverSend({ type: "subscribed", room: "queue:q", epoch: "E", head: 5, seq: 5,
    state: { n: 5 }, id: sub.id });
  ws.serverSend([msg(5), { ...msg(6), room: "queue:q" }, { ...msg(7), room: "queue:q" }]);
  ws.serverSend({ ...msg(6), room: "queue:q" });
  assert.deepEqual(state, { n: 5 });
  assert.deepEqual(got, [6, 7]);
  assert.equal(rt.state, "connected");
  rt.close();
});

test("client: a gap is filled over HTTP before anything after it", async () => {
  const { fetch, calls } = fakeFetch([[/GET \/v1\/rooms\/chat%3Aa\/messages/, async (u) => {
    assert.equal(u.searchParams.get("after"), "2");
    assert.equal(u.searchParams.get("epoch"), "E");
    return [200, { frames: [3, 4].map((s) => ({ ...msg(s), room: "chat:a" })), next: 4 }];
  }]]);
  const rt = makeClient({ fetch });
  const got = [];
  rt.subscribe("chat:a", { since: { epoch: "E", seq: 2 }, onMessage: (f) => got.push(f.seq) });
  const ws = await until(() => FakeSocket.all[0]?.sentOf("subscribe")[0] && FakeSocket.all[0],
    "subscribe");
  assert.deepEqual(ws.sentOf("subscribe")[0].since, { epoch: "E", seq: 2 });
  ws.serverSend({ type: "subscribed", room: "chat:a", epoch: "E", head: 5,
    id: ws.sentOf("subscribe")[0].id });
  ws.serverSend({ ...msg(5), room: "chat:a" });
  await until(() => got.length === 3, "repair");
  assert.deepEqual(got, [3, 4, 5]);
  assert.equal(calls.length, 1);
  rt.close();
});

test("client: reconnects after 1006 and resumes from the last seq", async () => {
  const rt = makeClient();
  const got = [];
  const states = [];
  rt.on("state", (e) => states.push(e.state));
  rt.subscribe("chat:a", { onMessage: (f) => got.push(f.seq) });
  let ws = await until(() => FakeSocket.all[0]?.sentOf("subscribe")[0] && FakeSocket.all[0],
    "subscribe");
  ws.serverSend({ type: "subscribed", room: "chat:a", epoch: "E", head: 0,
    id: ws.sentOf("subscribe")[0].id });
  ws.serverSend({ ...msg(1), room: "chat:a" });
  ws.serverClose(1006);
  assert.equal(rt.state, "reconnecting");
  ws = await until(() => FakeSocket.all[1]?.sentOf("subscribe")[0] && FakeSocket.all[1],
    "resubscribe");
  assert.deepEqual(ws.sentOf("subscribe")[0].since, { epoch: "E", seq: 1 });
  ws.serverSend({ type: "subscribed", room: "chat:a", epoch: "E", head: 2, replayed: 1,
    id: ws.sentOf("subscribe")[0].id });
  ws.serverSend([{ ...msg(1), room: "chat:a" }, { ...msg(2), room: "chat:a" }]);
  assert.deepEqual(got, [1, 2]);
  assert.deepEqual(states, ["connected", "reconnecting", "connected"]);
  rt.close();
});

test("client: stop codes stop, and unsent writes are rejected", async () => {
  for (const code of [4003, 4002, 1009]) {
    const rt = makeClient();
    const ws = await until(() => FakeSocket.all[0]?.sentOf("connect")[0] && FakeSocket.all[0],
      "connect");
    await until(() => rt.state === "connected", "connected");
    ws.serverClose(code);
    const write = rt.command("queue:q", "request.submit", {});
    await assert.rejects(write, (e) => e.code === "CLOSED");
    assert.equal(rt.state, "closed");
    await tick(30);
    assert.equal(FakeSocket.all.length, 1, `no reconnect after ${code}`);
  }
});

test("client: 4001 reconnects once with a fresh token", async () => {
  let fresh = 0;
  const rt = makeClient({ getToken: async () => `t${++fresh}` });
  let ws = await until(() => FakeSocket.all[0]?.sentOf("connect")[0] && FakeSocket.all[0],
    "connect");
  await until(() => rt.state === "connected", "connected");
  ws.serverClose(4001, "token expired");
  ws = await until(() => FakeSocket.all[1]?.sentOf("connect")[0] && FakeSocket.all[1],
    "reconnect");
  assert.equal(ws.sentOf("connect")[0].token, "t1");
  rt.close();
});

test("client: a rejected command rejects with code, message, details", async () => {
  const rt = makeClient();
  const ws = await until(() => FakeSocket.all[0]?.sentOf("connect")[0] && FakeSocket.all[0],
    "connect");
  await until(() => rt.state === "connected", "connected");
  const p = rt.command("queue:q", "request.submit", { song_id: "s" });
  const frame = await until(() => ws.sentOf("command")[0], "command");
  ws.serverSend({ type: "error", id: frame.id, room: "queue:q", code: "DUPLICATE_REQUEST",
    message: "you already requested it", details: { request_id: "r1" } });
  await assert.rejects(p, (e) => e.code === "DUPLICATE_REQUEST"
    && e.message === "you already requested it" && e.details.request_id === "r1");
  assert.equal(rt.pending.length, 0);
  rt.close();
});

test("client: unacknowledged writes are resent with their id after a reconnect", async () => {
  const rt = makeClient();
  let ws = await until(() => FakeSocket.all[0]?.sentOf("connect")[0] && FakeSocket.all[0],
    "connect");
  await until(() => rt.state === "connected", "connected");
  const p = rt.command("queue:q", "request.vote", { request_id: "r1" });
  const first = await until(() => ws.sentOf("command")[0], "command");
  ws.serverClose(1012);
  ws = await until(() => FakeSocket.all[1]?.sentOf("command")[0] && FakeSocket.all[1], "resend");
  assert.equal(ws.sentOf("command")[0].id, first.id);
  ws.serverSend({ type: "ack", id: first.id, room: "queue:q", seq: 9, duplicate: true });
  assert.equal((await p).seq, 9);
  rt.close();
});

test("client: UNAVAILABLE is retried with the same id", async () => {
  const rt = makeClient();
  const ws = await until(() => FakeSocket.all[0]?.sentOf("connect")[0] && FakeSocket.all[0],
    "connect");
  await until(() => rt.state === "connected", "connected");
  const p = rt.publish("chat:a", { text: "hi" });
  const first = await until(() => ws.sentOf("publish")[0], "publish");
  ws.serverSend({ type: "error", id: first.id, code: "UNAVAILABLE", message: "db",
    retry_after: 0.01 });
  const again = await until(() => ws.sentOf("publish")[1], "retry");
  assert.equal(again.id, first.id);
  ws.serverSend({ type: "ack", id: first.id, room: "chat:a", seq: 1 });
  await p;
  rt.close();
});

test("client: the server's reconnect frame is honoured", async () => {
  const rt = makeClient();
  let ws = await until(() => FakeSocket.all[0]?.sentOf("connect")[0] && FakeSocket.all[0],
    "connect");
  await until(() => rt.state === "connected", "connected");
  ws.serverSend({ type: "reconnect", reason: "server draining", retry_after: 0.05 });
  const p = rt.publish("chat:a", 1);
  await tick(5);
  assert.equal(ws.sentOf("publish").length, 0, "no new write on a draining connection");
  const closedAt = Date.now();
  ws.serverClose(1001);
  ws = await until(() => FakeSocket.all[1]?.sentOf("publish")[0] && FakeSocket.all[1], "resend");
  assert.ok(Date.now() - closedAt >= 30, "waited for retry_after");
  ws.serverSend({ type: "ack", id: ws.sentOf("publish")[0].id, room: "chat:a", seq: 1 });
  await p;
  rt.close();
});

test("client: no pong: the link is dropped and made again", async () => {
  const rt = makeClient({ pingInterval: 10, pongTimeout: 10 });
  const ws = await until(() => FakeSocket.all[0]?.sentOf("ping")[0] && FakeSocket.all[0], "ping");
  assert.ok(ws);
  await until(() => FakeSocket.all.length >= 2, "a new socket after the pong timeout");
  rt.close();
});

test("client: after 5 failed WebSockets it long-polls, then goes back, no loss or dup",
  async () => {
    let head = 3;
    const polls = [];
    const { fetch } = fakeFetch([
      [/GET \/v1\/rooms\/chat%3Aa\/messages/, async (u) => {
        polls.push(u.searchParams.get("after"));
        const after = Number(u.searchParams.get("after"));
        await tick(2);
        const frames = [];
        for (let s = after + 1; s <= head; s++) frames.push({ ...msg(s), room: "chat:a" });
        return [200, { frames, head, next: head, epoch: "E" }];
      }],
      [/POST \/v1\/rooms\/chat%3Aa\/messages/, async (u, init, call) =>
        [201, { room: "chat:a", id: call.body.id, seq: ++head, epoch: "E", duplicate: false }]],
    ]);
    FakeSocket.all = [];
    const rt = makeClient({ fetch, pollWait: 0 });
    FakeSocket.refuse = true;
    const got = [];
    rt.subscribe("chat:a", { since: { epoch: "E", seq: 1 }, onMessage: (f) => got.push(f.seq) });
    await until(() => rt.state === "polling", "polling");
    assert.ok(FakeSocket.all.length >= 5);
    await until(() => got.length === 2, "polled messages");
    const ack = await rt.publish("chat:a", "over http");
    assert.equal(ack.seq, 4);
    await until(() => got.length === 3, "its message");
    FakeSocket.refuse = false; // the WebSocket works again
    const ws = await until(() => FakeSocket.all.find((s) => s.sentOf("subscribe").length), "probe",
      3000);
    assert.equal(rt.state, "connected");
    const since = ws.sentOf("subscribe")[0].since;
    assert.deepEqual(since, { epoch: "E", seq: 4 });
    ws.serverSend({ type: "subscribed", room: "chat:a", epoch: "E", head: 4,
      id: ws.sentOf("subscribe")[0].id });
    ws.serverSend([{ ...msg(4), room: "chat:a" }, { ...msg(5), room: "chat:a" }]);
    assert.deepEqual(got, [2, 3, 4, 5]);
    rt.close();
  });

test("client: offline, online (back within a second), a visible page checks at once",
  async () => {
    const win = new EventTarget();
    const doc = new EventTarget();
    doc.visibilityState = "visible";
    const nav = { onLine: true };
    const rt = makeClient({ window: win, document: doc, navigator: nav,
      backoff: { base: 60000, max: 60000 }, pongTimeout: 20 });
    let ws = await until(() => rt.state === "connected" && FakeSocket.all[0], "connected");

    // offline: shown at once; the socket is checked (no pong here: dropped), no retries
    nav.onLine = false;
    win.dispatchEvent(new Event("offline"));
    assert.equal(rt.state, "offline");
    assert.equal(ws.sentOf("ping").length, 1);
    await until(() => rt._ws === null, "dropped after the missing pong");
    await tick(30);
    assert.equal(FakeSocket.all.length, 1, "no reconnect while offline");

    // online: a new socket within a second, although the backoff says a minute
    nav.onLine = true;
    const at = Date.now();
    win.dispatchEvent(new Event("online"));
    ws = await until(() => rt.state === "connected" && FakeSocket.all[1], "back online", 1500);
    assert.ok(Date.now() - at < 1100);

    // the link dies while the page is hidden; becoming visible skips the backoff wait
    ws.serverClose(1006);
    await tick(5);
    assert.equal(rt.state, "reconnecting");
    doc.dispatchEvent(new Event("visibilitychange"));
    await until(() => rt.state === "connected" && FakeSocket.all[2], "checked when visible", 500);
    // and a visible page with a live socket pings it at once
    const pings = FakeSocket.all[2].sentOf("ping").length;
    doc.dispatchEvent(new Event("visibilitychange"));
    assert.equal(FakeSocket.all[2].sentOf("ping").length, pings + 1);
    rt.close();
  });

test("client: msgpack when a codec is given", async () => {
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  const codec = { // a stand-in: the client only calls encode/decode
    encode: (obj) => enc.encode(JSON.stringify(obj)),
    decode: (bytes) => JSON.parse(dec.decode(bytes)),
  };
  class BinarySocket extends FakeSocket {
    send(data) {
      assert.ok(data instanceof Uint8Array, "binary frames");
      super.send(dec.decode(data));
    }
    serverSend(frames) {
      this.onmessage && this.onmessage({ data: codec.encode(frames).buffer });
    }
  }
  FakeSocket.all = [];
  const rt = new RoomlogClient({ url: "http://hub.test", token: "t", WebSocket: BinarySocket,
    window: null, document: null, navigator: null, codec });
  const ws = await until(() => rt.state === "connected" && FakeSocket.all[0], "connected");
  assert.deepEqual(ws.protocols, ["roomlog.v1.msgpack"]);
  assert.equal(ws.binaryType, "arraybuffer");
  const got = [];
  rt.subscribe("chat:a", { since: { epoch: "E", seq: 0 }, onMessage: (f) => got.push(f.data) });
  await until(() => ws.sentOf("subscribe")[0], "subscribe");
  ws.serverSend([{ type: "subscribed", room: "chat:a", epoch: "E", head: 1,
    id: ws.sentOf("subscribe")[0].id }, { ...msg(1), room: "chat:a", data: "bin" }]);
  assert.deepEqual(got, ["bin"]);
  rt.close();
});

test("client: a refused subscribe (matched by its id) ends with onError", async () => {
  const rt = makeClient();
  let error = null;
  const sub = rt.subscribe("repair:t1", { onError: (e) => { error = e; } });
  const ws = await until(() => FakeSocket.all[0]?.sentOf("subscribe")[0] && FakeSocket.all[0],
    "subscribe");
  ws.serverSend({ type: "error", code: "FORBIDDEN", message: "cust9 may not read repair:t1",
    id: ws.sentOf("subscribe")[0].id });
  assert.equal(error.code, "FORBIDDEN");
  assert.equal(rt._rooms.has("repair:t1"), false);
  assert.equal(sub.position, null);
  rt.close();
});

test("client: a subscription lost after it started (error with its room) is made again",
  async () => {
    const rt = makeClient();
    rt.subscribe("chat:a", { since: { epoch: "E", seq: 4 } });
    const ws = await until(() => FakeSocket.all[0]?.sentOf("subscribe")[0] && FakeSocket.all[0],
      "subscribe");
    ws.serverSend({ type: "subscribed", room: "chat:a", epoch: "E", head: 4,
      id: ws.sentOf("subscribe")[0].id });
    ws.serverSend({ type: "error", room: "chat:a", code: "UNAVAILABLE", message: "db",
      retry_after: 0.01 });
    const again = await until(() => ws.sentOf("subscribe")[1], "subscribed again");
    assert.deepEqual(again.since, { epoch: "E", seq: 4 });
    rt.close();
  });

test("cursor: a reset without state backfills what is still kept", () => {
  const c = new RoomCursor({ epoch: "E", seq: 10 });
  const out = c.reset({ type: "reset", room: "r", epoch: "F", seq: 3, trimmed: 0,
    reason: "epoch" }, { backfill: true });
  assert.deepEqual(out.map((f) => f.type), ["reset"]);
  assert.deepEqual(c.gap, { epoch: "F", after: 0 });
  c.push(msg(4, "F")); // live, held until the backfill is read
  assert.deepEqual([1, 2, 3].flatMap((s) => c.push(msg(s, "F"))).map((f) => f.seq), [1, 2, 3, 4]);
  assert.equal(c.gap, null);
});

test("client: a reset of a room without state is backfilled over HTTP", async () => {
  const { fetch } = fakeFetch([[/GET \/v1\/rooms\/chat%3Aa\/messages/, async (u) => {
    assert.equal(u.searchParams.get("after"), "0");
    assert.equal(u.searchParams.get("epoch"), "F");
    return [200, { frames: [1, 2].map((s) => ({ ...msg(s, "F"), room: "chat:a" })), next: 2 }];
  }]]);
  const rt = makeClient({ fetch });
  const got = [];
  rt.subscribe("chat:a", { since: { epoch: "E", seq: 7 }, onMessage: (f) => got.push(f.seq),
    onReset: (f) => got.push(`reset ${f.seq}`) });
  const ws = await until(() => FakeSocket.all[0]?.sentOf("subscribe")[0] && FakeSocket.all[0],
    "subscribe");
  ws.serverSend([{ type: "subscribed", room: "chat:a", epoch: "F", head: 2,
    id: ws.sentOf("subscribe")[0].id }, { type: "reset", room: "chat:a", epoch: "F", seq: 2,
    trimmed: 0, reason: "epoch" }, { ...msg(3, "F"), room: "chat:a" }]);
  await until(() => got.length === 4, "backfill");
  assert.deepEqual(got, ["reset 2", 1, 2, 3]);
  rt.close();
});

test("client: writes go in order; one told to wait holds back the next", async () => {
  const rt = makeClient();
  const ws = await until(() => rt.state === "connected" && FakeSocket.all[0], "connected");
  const a = rt.publish("chat:a", "a");
  const first = await until(() => ws.sentOf("publish")[0], "a");
  ws.serverSend({ type: "error", id: first.id, code: "RATE_LIMITED", message: "slow down",
    retry_after: 0.03 });
  const b = rt.publish("chat:a", "b");
  await tick(5);
  assert.equal(ws.sentOf("publish").length, 1, "b waits behind a");
  await until(() => ws.sentOf("publish").length === 3, "a, then b");
  assert.deepEqual(ws.sentOf("publish").map((f) => f.data), ["a", "a", "b"]);
  for (const f of ws.sentOf("publish").slice(1)) {
    ws.serverSend({ type: "ack", id: f.id, room: "chat:a", seq: 1 });
  }
  await Promise.all([a, b]);
  rt.close();
});

test("client: polling is shown as live only once a long-poll got an answer", async () => {
  let down = true; // a network the browser calls online, where nothing gets through
  const fetch = async (url) => {
    await tick(2);
    if (down) throw new TypeError("Failed to fetch");
    const body = { frames: [], head: 0, next: 0, epoch: "E" };
    return { ok: true, status: 200, json: async () => body, text: async () => JSON.stringify(body) };
  };
  FakeSocket.all = [];
  const rt = makeClient({ fetch, pollWait: 0, transports: ["polling"] });
  const states = [];
  rt.on("state", (e) => states.push(e.state));
  rt.subscribe("chat:a", { since: { epoch: "E", seq: 0 } });
  await tick(60);
  assert.equal(rt.transport, "polling");
  assert.notEqual(rt.state, "polling", "nothing answered: not live");
  down = false;
  await until(() => rt.state === "polling", "live once a poll is answered", 3000);
  down = true;
  await until(() => rt.state === "reconnecting", "not live when polls fail again", 3000);
  rt.close();
});
