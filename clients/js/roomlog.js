// roomlog.js — the browser client of the roomlog hub. One ES module, no build step,
// no dependency. Protocol reference: docs/protocol.md. Usage and semantics: README.md
// next to this file.
//
//   import { RoomlogClient } from "/client/roomlog.js";
//   import { openStore } from "/client/store.js";   // optional: survive reloads
//   const rt = new RoomlogClient({ getToken: () => fetchFreshToken(), store: openStore() });
//   rt.on("state", ({ state }) => badge.textContent = state);
//   const sub = rt.subscribe("queue:club42-set1", {
//     onState: (state) => render(state),          // initial state and every reset
//     onMessage: (msg) => apply(msg.data),         // exactly once, in seq order
//   });
//   await rt.command("queue:club42-set1", "request.submit", { song_id, title, artist });
//
// The pure parts (frame flattening, close-code policy, backoff, the per-room cursor
// that deduplicates and detects gaps, the retry policy of rejected writes, token claims)
// are exported as well so they can be tested without a browser (`node --test`).

/** Connection states, in the order a client usually meets them. */
export const STATES = Object.freeze(["connecting", "connected", "reconnecting", "polling",
  "offline", "closed"]);

const SUBPROTOCOL_JSON = "roomlog.v1.json";
const SUBPROTOCOL_MSGPACK = "roomlog.v1.msgpack";

/** Close codes after which reconnecting cannot help (docs/protocol.md, "Close codes"). */
export const STOP_CODES = Object.freeze([1009, 4002, 4003]);
/** Close codes after which the client comes back with backoff. */
export const RETRY_CODES = Object.freeze([1000, 1001, 1005, 1006, 1011, 1012, 4008, 4029]);

/** Error codes a write is retried after (same id), the rest reject it at once. */
const RETRY_ERRORS = new Set(["UNAVAILABLE", "RATE_LIMITED", "INTERNAL"]);

/** Room kinds that have no state (`GET .../state` is 404 for them): not asked. */
const PLAIN_KINDS = new Set(["chat", "feed", "user", "repairs"]);

/** Writes kept in a store longer than this are dropped unsent (below the hub's 24 h
 * idempotency_ttl: a write resent after the hub forgot its id could apply twice). */
const OUTBOX_TTL = 12 * 3600 * 1000;

// ---------------------------------------------------------------------------
// Pure helpers

/** A decoded WebSocket message is one frame or an array of frames: always an array. */
export function flattenFrames(decoded) {
  const list = Array.isArray(decoded) ? decoded : [decoded];
  return list.filter((f) => f && typeof f === "object" && typeof f.type === "string");
}

/**
 * What to do after the WebSocket closed with `code`:
 * "stop" (never reconnect by itself), "token" (4001: reconnect only with a fresh token),
 * "now" (4008: reconnect at once, a little jitter), "retry" (backoff).
 * Unknown codes are retried: a proxy or a dying network may close with anything.
 */
export function closeAction(code) {
  if (STOP_CODES.includes(code)) return "stop";
  if (code === 4001) return "token";
  if (code === 4008) return "now";
  return "retry";
}

/**
 * Milliseconds to wait before reconnect attempt `attempt` (0-based): 1, 2, 4, 8, 16,
 * then 30 s (`base` 1000, `max` 30000), each spread by a jitter of ±20 % so that clients
 * cut off together do not come back together. `random` is injectable for tests.
 */
export function backoffDelay(attempt, { base = 1000, max = 30000, jitter = 0.2,
  random = Math.random } = {}) {
  const raw = Math.min(max, base * 2 ** Math.max(0, Math.min(attempt, 30)));
  return Math.max(0, Math.round(raw * (1 - jitter + 2 * jitter * random())));
}

/**
 * Whether a write rejected with `code` should be sent again (same id), and after how
 * many ms; null means: reject it for good. `attempts` counts the rejections so far.
 *   UNAVAILABLE: the database or the instance is going away: retry (up to 20 times).
 *   RATE_LIMITED: retry when `retry_after` is short (a transport burst, at most
 *     `maxRetryAfter` s); a long one is a rule of the room (a guest's submit rate)
 *     the user should see, not a wait hidden in a spinner.
 *   INTERNAL: retry a couple of times (3), then report.
 */
export function retryDelay(code, retryAfter, attempts, { maxRetryAfter = 5 } = {}) {
  if (!RETRY_ERRORS.has(code)) return null;
  const after = typeof retryAfter === "number" && retryAfter >= 0 ? retryAfter : null;
  if (code === "UNAVAILABLE") {
    return attempts < 20 ? Math.round(1000 * (after ?? Math.min(10, 2 ** attempts))) : null;
  }
  if (code === "RATE_LIMITED") {
    if (after === null || after > maxRetryAfter || attempts >= 5) return null;
    return Math.round(after * 1000);
  }
  return attempts < 3 ? 1000 * 2 ** attempts : null; // INTERNAL
}

/**
 * The position of one room and the order of its frames: deduplication by seq, gap
 * detection, resets. Pure; the client feeds it every `message`, `skip` and `reset`
 * of the room, whatever transport they came by, and delivers what it returns.
 *
 * - A frame at or before the position is a duplicate: dropped.
 * - The frame right after the position is delivered, and so are the buffered frames
 *   that follow it.
 * - A frame further ahead (or of another epoch) is held back: `gap` then says from
 *   where the client must fetch what is missing (over HTTP) before going on.
 * - A `reset` replaces the position (and drops what it made void).
 */
export class RoomCursor {
  constructor(position = null) {
    this.epoch = position ? position.epoch : null;
    this.seq = position ? position.seq : null;
    this.held = new Map(); // "epoch:seq" -> frame, frames beyond the position
    this.until = null; // after a backfilling reset: read up to this seq before going on
  }

  get position() {
    return this.epoch === null ? null : { epoch: this.epoch, seq: this.seq };
  }

  /** Start at (epoch, seq) when the cursor has no position yet; true if taken. */
  start(epoch, seq) {
    if (this.epoch !== null) return false;
    this.epoch = epoch;
    this.seq = seq;
    return true;
  }

  /** Feed a `message` or `skip`; returns the frames to deliver now, in order. */
  push(frame) {
    if (this.epoch === null) {
      // No position yet: the first frame seen starts the stream.
      this.epoch = frame.epoch;
      this.seq = frame.seq - 1;
    }
    if (frame.epoch === this.epoch && frame.seq <= this.seq) return [];
    if (frame.epoch !== this.epoch || frame.seq > this.seq + 1) {
      this.held.set(`${frame.epoch}:${frame.seq}`, frame);
      return [];
    }
    const out = [frame];
    this.seq = frame.seq;
    return out.concat(this._drain());
  }

  /**
   * Feed a `reset`; returns the reset followed by whatever held frames now follow.
   * `backfill`: the messages still kept before the reset's seq (`trimmed + 1` on) are
   * wanted too: the position goes to `trimmed` and `gap` asks for them.
   */
  reset(frame, { backfill = false } = {}) {
    this.epoch = frame.epoch;
    this.seq = frame.seq;
    this.until = null;
    const kept = typeof frame.trimmed === "number" ? frame.trimmed : frame.seq;
    if (backfill && kept < frame.seq) {
      this.seq = kept;
      this.until = frame.seq;
    }
    for (const [key, f] of this.held) if (f.epoch !== frame.epoch) this.held.delete(key);
    return [frame].concat(this._drain());
  }

  /** Null, or where to read the missing frames from: `{epoch, after}`. */
  get gap() {
    if (this.until !== null && this.seq >= this.until) this.until = null;
    if (this.held.size === 0 && this.until === null) return null;
    return { epoch: this.epoch, after: this.seq };
  }

  _drain() {
    const out = [];
    for (const [key, f] of this.held) {
      if (f.epoch === this.epoch && f.seq <= this.seq) this.held.delete(key); // a duplicate
    }
    for (;;) {
      const key = `${this.epoch}:${this.seq + 1}`;
      const next = this.held.get(key);
      if (!next) break;
      this.held.delete(key);
      this.seq = next.seq;
      out.push(next);
    }
    return out;
  }
}

/** The error a rejected command or publish is rejected with. */
export class RoomlogError extends Error {
  constructor(code, message, { details = null, retryAfter = null, status = null } = {}) {
    super(message || code);
    this.name = "RoomlogError";
    this.code = code;
    this.details = details;
    this.retryAfter = retryAfter;
    this.status = status;
  }
}

/** The RoomlogError of an HTTP error response (its JSON body `{error: {code, ...}}`). */
function httpError(response, json) {
  const e = (json && json.error) || {};
  return new RoomlogError(e.code || `HTTP_${response.status}`,
    e.message || `HTTP ${response.status}`,
    { details: e.details ?? null, retryAfter: e.retry_after ?? null, status: response.status });
}

/**
 * The claims of a JWT (`sub`, `role`, `exp`, ...), read without verifying it (the hub
 * verifies; the client only wants to know whose it is and when it expires), or null.
 */
export function tokenClaims(token) {
  if (typeof token !== "string") return null;
  const part = token.split(".")[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

/**
 * Whether a failure of `getToken` is final (the backend says no: the user is signed
 * out or not allowed) rather than a passing one (the network, a 5xx) worth retrying.
 * `getToken` says so by throwing an error with `permanent: true`, an HTTP `status` of
 * 401 or 403, or a `code` of UNAUTHORIZED or FORBIDDEN; returning no token is final too.
 */
export function tokenRefusal(err) {
  if (!err) return true;
  if (err.permanent === true) return true;
  if (err.status === 401 || err.status === 403) return true;
  return err.code === "UNAUTHORIZED" || err.code === "FORBIDDEN";
}

function newId(prefix) {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return `${prefix}-${c.randomUUID()}`;
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
}

function defaultBase() {
  const loc = globalThis.location;
  return loc && loc.origin && loc.origin !== "null" ? loc.origin : "http://127.0.0.1:8000";
}

// ---------------------------------------------------------------------------
// The client

/**
 * One connection to the hub, with every subscription of the page on it.
 * See README.md for the options and events; the defaults follow docs/protocol.md.
 */
export class RoomlogClient {
  constructor(options = {}) {
    const o = options;
    this.base = (o.url || defaultBase()).replace(/\/+$/, "");
    this.wsUrl = o.wsUrl || this.base.replace(/^http/, "ws") + "/ws";
    this.token = o.token || null;
    this.getToken = o.getToken || null;
    this.store = null; // set once `o.store` (a store or a promise of one) is ready
    this.outboxTtl = o.outboxTtl ?? OUTBOX_TTL;
    this.codec = o.codec || null; // {encode(obj) -> Uint8Array, decode(Uint8Array) -> obj}
    this.pingInterval = o.pingInterval ?? 15000;
    this.pongTimeout = o.pongTimeout ?? 5000;
    this.connectTimeout = o.connectTimeout ?? 10000;
    this.backoff = { base: 1000, max: 30000, ...(o.backoff || {}) };
    this.pollAfter = o.pollAfterFailures ?? 5;
    this.pollWait = o.pollWait ?? 25; // seconds a long-poll waits
    this.maxRetryAfter = o.maxRetryAfter ?? 5;
    this.transports = o.transports || ["websocket", "polling"];
    this._WebSocket = o.WebSocket || globalThis.WebSocket;
    this._fetch = o.fetch || ((...a) => globalThis.fetch(...a));
    this._window = o.window !== undefined ? o.window : globalThis.window || null;
    this._document = o.document !== undefined ? o.document : globalThis.document || null;
    this._navigator = o.navigator !== undefined ? o.navigator : globalThis.navigator || null;
    this._log = o.debug ? (...a) => console.debug("[roomlog]", ...a) : () => {};

    this.state = "connecting";
    this.transport = null; // "websocket" | "polling" | null
    this.user = null;
    this.role = null;
    this.expires = null;
    this.closeCode = null;
    this.tokenState = "ok"; // "ok", "renewing" (getToken fails for now: retried), "refused"

    this._listeners = new Map();
    this._rooms = new Map(); // room -> Subscription
    this._outbox = new Map(); // id -> pending write, in the order written
    this._ws = null;
    this._wsReady = false;
    this._wsSerial = 0;
    this._attempt = 0; // reconnect attempts since the last connection that worked
    this._failures = 0; // WebSocket attempts in a row that never reached `connected`
    this._everConnected = false;
    this._polling = false;
    this._closed = false;
    this._timers = new Set();
    this._retryTimer = null;
    this._pingTimer = null;
    this._pongTimer = null;
    this._refreshTimer = null;
    this._drainUntil = null; // set by a `reconnect` frame
    this._tokenRetry = false; // a fresh token was fetched after a 4001 / UNAUTHORIZED
    this._renewing = null; // the promise of a token renewal under way
    this._renewWake = null; // cuts the wait between two renewal attempts short
    this._ids = 0;
    this._ns = null; // the store's key prefix: this hub and this user
    this._saving = new Map(); // room -> position waiting to be written to the store
    this._saveTimer = null;

    this._onOnline = () => this._online();
    this._onOffline = () => this._offline();
    this._onVisibility = () => {
      if (!this._document || this._document.visibilityState === "visible") this.checkNow();
    };
    if (this._window && this._window.addEventListener) {
      this._window.addEventListener("online", this._onOnline);
      this._window.addEventListener("offline", this._onOffline);
    }
    if (this._document && this._document.addEventListener) {
      this._document.addEventListener("visibilitychange", this._onVisibility);
    }
    /** Resolves once the store (if any) is loaded: restored writes are in `pending`. */
    this.ready = this._prepare(o.store);
    if (o.autoConnect !== false) this._defer(() => this.connect(), 0);
  }

  // -- start: a token, then what the store kept -------------------------------------

  async _prepare(store) {
    if (!this.token && this.getToken) await this._renew();
    this._tokenChanged();
    if (!store) return [];
    try {
      this.store = await store;
    } catch (err) {
      this._log("no store", err);
      return [];
    }
    if (!this.store) return [];
    const claims = tokenClaims(this.token) || {};
    this._ns = `${this.base}|${claims.sub ?? ""}|`;
    try {
      return await this._restore();
    } catch (err) {
      this._log("the store could not be read", err);
      return [];
    }
  }

  /** Writes and positions a previous page left in the store, before anything is sent. */
  async _restore() {
    const now = Date.now();
    const restored = [];
    const kept = new Map();
    // In the order they were written (keys are ids: their order means nothing).
    const entries = (await this.store.entries(`${this._ns}out/`))
      .sort(([, a], [, b]) => ((a && a.at) || 0) - ((b && b.at) || 0) || ((a && a.n) || 0)
        - ((b && b.n) || 0));
    for (const [key, entry] of entries) {
      const frame = entry && entry.frame;
      if (!frame || typeof frame.id !== "string") continue;
      if (this._outbox.has(frame.id)) continue;
      if (now - (entry.at || 0) > this.outboxTtl) {
        this._forget(frame.id);
        this._emit("settled", { id: frame.id, frame, restored: true,
          error: new RoomlogError("EXPIRED", "kept unsent for too long; not sent") });
        continue;
      }
      const p = this._entry(frame, () => {}, () => {});
      p.restored = true;
      p.at = entry.at;
      p.n = entry.n || 0;
      kept.set(frame.id, p);
      restored.push({ ...frame });
      this._log("restored write", key);
    }
    // Older than anything written since the page started: they go first. Writes made
    // while the store was loading are saved now.
    for (const p of this._outbox.values()) this._keep(p);
    this._outbox = new Map([...kept, ...this._outbox]);
    for (const sub of this._rooms.values()) await sub._load();
    if (restored.length) this._flush();
    return restored;
  }

  _key(kind, name) {
    return `${this._ns}${kind}/${name}`;
  }

  _keep(p) {
    if (!this.store || !this._ns) return;
    this.store.set(this._key("out", p.id), { frame: p.frame, at: p.at, n: p.n })
      .catch((err) => this._log("store write failed", err));
  }

  _forget(id) {
    if (!this.store || !this._ns) return;
    this.store.delete(this._key("out", id)).catch((err) => this._log("store delete failed", err));
  }

  /** A persisted room moved: written to the store soon (one write per room per turn). */
  _savePosition(sub) {
    if (!this.store || !this._ns || !sub.position) return;
    this._saving.set(sub.room, sub.position);
    if (this._saveTimer) return;
    this._saveTimer = setTimeout(() => {
      this._saveTimer = null;
      const batch = [...this._saving];
      this._saving.clear();
      for (const [room, position] of batch) {
        this.store.set(this._key("pos", room), position)
          .catch((err) => this._log("store write failed", err));
      }
    }, 0);
  }

  // -- events ---------------------------------------------------------------

  /** `on("state" | "connected" | "error" | "closed" | "transport", fn)`; returns off(). */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    const set = this._listeners.get(event);
    if (set) set.delete(fn);
  }

  _emit(event, detail) {
    for (const fn of [...(this._listeners.get(event) || [])]) {
      try {
        fn(detail);
      } catch (err) {
        console.error("roomlog listener failed", err);
      }
    }
  }

  _setState(state, detail = {}) {
    if (this.state === state) return;
    const previous = this.state;
    this.state = state;
    this._log("state", previous, "->", state, detail);
    this._emit("state", { state, previous, transport: this.transport, ...detail });
  }

  _setTransport(transport) {
    if (this.transport === transport) return;
    this.transport = transport;
    this._emit("transport", { transport });
  }

  // -- timers ---------------------------------------------------------------

  _defer(fn, ms) {
    const t = setTimeout(() => {
      this._timers.delete(t);
      fn();
    }, ms);
    this._timers.add(t);
    return t;
  }

  _cancel(t) {
    if (t) {
      clearTimeout(t);
      this._timers.delete(t);
    }
    return null;
  }

  get _isOnline() {
    return !this._navigator || this._navigator.onLine !== false;
  }

  // -- public API -----------------------------------------------------------

  /** Start (or restart after `closed`). Called by the constructor unless autoConnect. */
  connect() {
    this._closed = false;
    this.ready.then(() => {
      if (this._closed || this._ws || this._retryTimer || this._polling) return;
      if (this.tokenState === "refused") {
        this._stop(4001, "no token", { code: "UNAUTHORIZED", message: "no token" });
        return;
      }
      if (!this._isOnline) {
        this._setState("offline");
        return;
      }
      this._openSocket();
    });
  }

  /** Close for good: no reconnect; unsent writes are rejected with code CLOSED. */
  close() {
    this._stop(1000, "closed by the client", { code: "CLOSED", message: "client closed" });
    if (this._window && this._window.removeEventListener) {
      this._window.removeEventListener("online", this._onOnline);
      this._window.removeEventListener("offline", this._onOffline);
    }
    if (this._document && this._document.removeEventListener) {
      this._document.removeEventListener("visibilitychange", this._onVisibility);
    }
  }

  /** Replace the token (it is sent on the open connection too, as a refresh). */
  setToken(token) {
    this.token = token;
    this._tokenChanged();
    if (this._wsReady) this._send({ type: "connect", token, id: this._nextId("t") });
  }

  /**
   * Subscribe to `room`. Handlers: onMessage(frame), onState(state, info), onReset(frame),
   * onSkip(frame), onPresence(frame), onError(RoomlogError), onSubscribed(frame).
   * `since: {epoch, seq}` resumes from a known position; `fromStart: true` reads the
   * room's whole retained log first. Returns a Subscription (`.position`, `.close()`).
   */
  subscribe(room, handlers = {}) {
    const old = this._rooms.get(room);
    if (old) old._detach();
    const sub = new Subscription(this, room, handlers);
    this._rooms.set(room, sub);
    if (sub._persist) this.ready.then(() => sub._load());
    else this._begin(sub);
    return sub;
  }

  unsubscribe(room) {
    const sub = this._rooms.get(room);
    if (sub) sub.close();
  }

  /** Run a domain command; resolves with its ack, rejects with a RoomlogError. */
  command(room, name, args = {}, { id, expectedSeq } = {}) {
    const frame = { type: "command", room, name, args, id: id || newId("c") };
    if (expectedSeq !== undefined && expectedSeq !== null) frame.expected_seq = expectedSeq;
    return this._write(frame);
  }

  /** Publish `data` to `room`; resolves with its ack, rejects with a RoomlogError. */
  publish(room, data, { id } = {}) {
    return this._write({ type: "publish", room, data: data === undefined ? null : data,
      id: id || newId("m") });
  }

  /** Writes not acknowledged yet (sent or waiting to be sent), oldest first. */
  get pending() {
    return [...this._outbox.values()].map((p) => ({ ...p.frame }));
  }

  /** Check the link now (a page that becomes visible, a user's "retry" button). */
  checkNow() {
    if (this._closed) return;
    if (this._renewWake) this._renewWake();
    if (this._wsReady) {
      this._ping();
      return;
    }
    if (!this._isOnline) return;
    if (this._retryTimer) {
      this._retryTimer = this._cancel(this._retryTimer);
      this._openSocket();
    }
    if (this._polling) this._kickPollers();
  }

  /**
   * Make an HTTP request to the hub with the current token: JSON in and out (`raw`: the
   * body as it is, e.g. a photo; `as: "blob"`: the answer's bytes, e.g. an image).
   */
  async request(method, path, body, { headers = {}, raw = false, as = "json" } = {}) {
    const h = { ...headers };
    if (this.token) h.authorization = `Bearer ${this.token}`;
    let payload = body;
    if (body !== undefined && !raw) {
      h["content-type"] = "application/json";
      payload = JSON.stringify(body);
    }
    const response = await this._fetch(this.base + path, { method, headers: h, body: payload });
    if (as === "blob" && response.ok) return response.blob();
    const text = await response.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (!response.ok) throw httpError(response, json);
    return json;
  }

  roomPath(room) {
    return `/v1/rooms/${encodeURIComponent(room)}`;
  }

  // -- the WebSocket ----------------------------------------------------------

  get _wsAllowed() {
    return this.transports.includes("websocket") && Boolean(this._WebSocket);
  }

  _openSocket() {
    if (this._closed || this._ws) return;
    if (!this._wsAllowed) {
      this._startPolling();
      return;
    }
    this._retryTimer = this._cancel(this._retryTimer);
    if (!this._polling) this._setState(this._everConnected ? "reconnecting" : "connecting");
    const serial = ++this._wsSerial;
    let ws;
    try {
      ws = new this._WebSocket(this.wsUrl,
        [this.codec ? SUBPROTOCOL_MSGPACK : SUBPROTOCOL_JSON]);
    } catch (err) {
      this._log("WebSocket constructor failed", err);
      this._socketGone(serial, 1006, String(err), false);
      return;
    }
    if (this.codec) ws.binaryType = "arraybuffer";
    this._ws = ws;
    this._wsReady = false;
    const connectTimer = this._defer(() => {
      if (this._ws === ws && !this._wsReady) this._dropSocket("connect timeout");
    }, this.connectTimeout);
    ws.onopen = () => {
      if (this._ws !== ws) return;
      this._sendConnect();
    };
    ws.onmessage = (event) => {
      if (this._ws !== ws) return;
      let decoded;
      try {
        decoded = this._decode(event.data);
      } catch (err) {
        this._log("undecodable message", err);
        return;
      }
      for (const frame of flattenFrames(decoded)) this._onFrame(frame);
    };
    ws.onerror = () => {};
    ws.onclose = (event) => {
      this._cancel(connectTimer);
      if (this._ws !== ws) return;
      this._socketGone(serial, event.code, event.reason, this._wsReady);
    };
  }

  _sendConnect() {
    this._send({ type: "connect", token: this.token || "", id: this._nextId("connect") });
  }

  _decode(data) {
    if (this.codec) {
      if (typeof data === "string") return JSON.parse(data);
      return this.codec.decode(data instanceof ArrayBuffer ? new Uint8Array(data) : data);
    }
    if (typeof data === "string") return JSON.parse(data);
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : data;
    return JSON.parse(new TextDecoder().decode(bytes));
  }

  _send(frame) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    try {
      ws.send(this.codec ? this.codec.encode(frame) : JSON.stringify(frame));
      return true;
    } catch (err) {
      this._log("send failed", err);
      return false;
    }
  }

  _nextId(prefix) {
    this._ids += 1;
    return `${prefix}-${this._ids}`;
  }

  /** Give up on the current socket now (dead link): do not wait for its close event. */
  _dropSocket(reason, code = 1006) {
    const ws = this._ws;
    if (!ws) return;
    const ready = this._wsReady;
    const serial = this._wsSerial;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(1000, reason.slice(0, 100));
    } catch {
      /* already closing */
    }
    this._socketGone(serial, code, reason, ready);
  }

  _socketGone(serial, code, reason, worked) {
    if (serial !== this._wsSerial) return;
    this._ws = null;
    this._wsReady = false;
    this._pingTimer = this._cancel(this._pingTimer);
    this._pongTimer = this._cancel(this._pongTimer);
    for (const sub of this._rooms.values()) sub._linkLost();
    for (const p of this._outbox.values()) if (p.via === "websocket") p.via = null;
    this.closeCode = code;
    this._log("socket closed", code, reason, worked ? "(had worked)" : "");
    if (this._closed) return;
    if (worked) {
      this._attempt = 0;
      this._failures = 0;
    } else if (this._isOnline) {
      this._failures += 1; // offline attempts do not count towards the polling fallback
    }
    const drainUntil = this._drainUntil;
    this._drainUntil = null;
    const action = closeAction(code);
    if (action === "stop") {
      this._stop(code, reason, { code: "CLOSED", message: `connection closed (${code})` });
      return;
    }
    if (action === "token") {
      if (this.getToken && !this._tokenRetry) {
        this._tokenRetry = true;
        this._setState(this._everConnected ? "reconnecting" : "connecting");
        this._renew().then((ok) => {
          if (this._closed) return; // closed meanwhile (close() ends a renewal too)
          if (!ok) this._stop(code, reason, { code: "UNAUTHORIZED", message: "token refused" });
          else this._scheduleReconnect(0);
        });
      } else {
        this._stop(code, reason, { code: "UNAUTHORIZED", message: reason || "unauthorized" });
      }
      return;
    }
    if (worked && this.transport === "websocket") this._setTransport(null);
    if (this._polling) this._flush(); // what the socket took, over HTTP now
    if (!this._polling && this.transports.includes("polling")
        && this._failures >= this.pollAfter) {
      this._startPolling();
    }
    if (!this._isOnline) {
      if (!this._polling) this._setState("offline");
      return; // the `online` event reconnects
    }
    if (!this._polling) this._setState(this._everConnected ? "reconnecting" : "connecting");
    if (drainUntil !== null) {
      this._scheduleReconnect(Math.max(0, drainUntil - Date.now()));
    } else if (action === "now") {
      this._scheduleReconnect(Math.round(Math.random() * 500));
    } else {
      this._scheduleReconnect(backoffDelay(this._attempt++, this.backoff));
    }
  }

  _scheduleReconnect(ms) {
    this._retryTimer = this._cancel(this._retryTimer);
    if (this._closed) return;
    this._log("reconnect in", ms, "ms");
    this._retryTimer = this._defer(() => {
      this._retryTimer = null;
      if (!this._isOnline) {
        if (!this._polling) this._setState("offline");
        return;
      }
      this._openSocket();
    }, ms);
  }

  _stop(code, reason, error) {
    this._closed = true;
    this.closeCode = code;
    if (this._renewWake) this._renewWake();
    this._retryTimer = this._cancel(this._retryTimer);
    for (const t of this._timers) clearTimeout(t);
    this._timers.clear();
    this._pingTimer = this._pongTimer = this._refreshTimer = null;
    this._stopPolling();
    const ws = this._ws;
    this._ws = null;
    this._wsReady = false;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000);
      } catch {
        /* ignore */
      }
    }
    for (const sub of this._rooms.values()) sub._linkLost();
    // The callers are told; what the store keeps is sent by the next client (same ids).
    const pending = [...this._outbox.values()];
    this._outbox.clear();
    for (const p of pending) p.reject(new RoomlogError(error.code, error.message));
    this._setTransport(null);
    this._setState("closed", { code, reason });
    this._emit("closed", { code, reason });
  }

  // -- tokens -------------------------------------------------------------------------

  /**
   * A fresh token from `getToken`: true once there is one. A passing failure (the
   * network, a 5xx of the token endpoint) is retried on the backoff schedule, the
   * state says "renewing" meanwhile; a final one (see `tokenRefusal`) gives false.
   * Concurrent callers share one renewal.
   */
  _renew() {
    if (!this.getToken) return Promise.resolve(false);
    if (!this._renewing) {
      this._renewing = this._renewLoop().finally(() => { this._renewing = null; });
    }
    return this._renewing;
  }

  async _renewLoop() {
    for (let attempt = 0; !(this._closed && this.state === "closed"); attempt++) {
      let token = null;
      let error = null;
      try {
        token = await this.getToken();
      } catch (err) {
        error = err;
      }
      if (token) {
        this.token = token;
        this._tokenChanged();
        this._setTokenState("ok");
        return true;
      }
      if (tokenRefusal(error)) {
        this._log("getToken refused", error);
        this._setTokenState("refused", error);
        return false;
      }
      this._log("getToken failed, trying again", error);
      this._setTokenState("renewing", error);
      await new Promise((resolve) => {
        this._renewWake = resolve;
        this._defer(resolve, backoffDelay(Math.min(attempt, 5), this.backoff));
      });
      this._renewWake = null;
    }
    return false;
  }

  _setTokenState(state, error = null) {
    if (this.tokenState === state && state === "ok") return;
    this.tokenState = state;
    this._emit("token", { state, error });
  }

  /** A new token is in use: learn its expiry and plan its renewal. */
  _tokenChanged() {
    const claims = tokenClaims(this.token);
    if (claims && typeof claims.exp === "number") this.expires = claims.exp;
    this._scheduleTokenRefresh();
  }

  /**
   * Renew the token once 80 % of its remaining life has passed, whatever the transport:
   * on a WebSocket the fresh token goes out as another `connect` (subscriptions stay);
   * long-polls and writes over HTTP simply use it from then on.
   */
  _scheduleTokenRefresh() {
    this._refreshTimer = this._cancel(this._refreshTimer);
    if (!this.getToken || !this.expires || this._closed) return;
    const left = this.expires * 1000 - Date.now();
    const ms = Math.max(1000, Math.min(left * 0.8, 2 ** 31 - 1));
    this._refreshTimer = this._defer(async () => {
      this._refreshTimer = null;
      if (await this._renew()) {
        if (this._wsReady) {
          this._send({ type: "connect", token: this.token, id: this._nextId("refresh") });
        }
      }
    }, ms);
  }

  // -- heartbeats -----------------------------------------------------------------

  _startPings() {
    this._pingTimer = this._cancel(this._pingTimer);
    this._pingTimer = this._defer(() => {
      this._pingTimer = null;
      this._ping();
    }, this.pingInterval);
  }

  _ping() {
    if (!this._wsReady) return;
    this._startPings();
    if (this._pongTimer) return; // one ping outstanding at a time
    this._send({ type: "ping", id: this._nextId("ping") });
    this._pongTimer = this._defer(() => {
      this._pongTimer = null;
      this._dropSocket("no pong");
    }, this.pongTimeout);
  }

  // -- frames ---------------------------------------------------------------------

  _onFrame(frame) {
    const room = frame.room;
    const sub = room !== undefined ? this._rooms.get(room) : undefined;
    switch (frame.type) {
      case "connected":
        this._onConnected(frame);
        return;
      case "pong":
        this._pongTimer = this._cancel(this._pongTimer);
        if (this._wsReady && this.state !== "connected") this._setState("connected");
        return;
      case "subscribed":
        if (sub && frame.id === sub._subscribeId) sub._onSubscribed(frame, "websocket");
        return;
      case "message":
      case "skip":
        if (sub && sub._live) sub._push(frame);
        return;
      case "reset":
        if (sub && sub._live) sub._reset(frame);
        return;
      case "presence":
      case "presence_diff":
        if (sub) sub._call("onPresence", frame);
        return;
      case "ack":
        this._onAck(frame);
        return;
      case "error":
        this._onError(frame);
        return;
      case "reconnect": {
        const after = typeof frame.retry_after === "number" ? frame.retry_after : 0;
        this._drainUntil = Date.now() + after * 1000;
        // The server closes with 1001 once our writes are acknowledged; if it does not,
        // leave anyway a little after the time it gave.
        const ws = this._ws;
        this._defer(() => {
          if (this._ws === ws && ws) this._dropSocket("drained", 1001);
        }, after * 1000 + 15000);
        return;
      }
      default:
        return; // unsubscribed, and frames of later versions
    }
  }

  _onConnected(frame) {
    const first = !this._wsReady;
    this.user = frame.user;
    this.role = frame.role;
    this.expires = frame.expires ?? this.expires;
    this._tokenRetry = false;
    this._setTokenState("ok");
    this._scheduleTokenRefresh();
    if (!first) return; // a token refresh on the same connection
    this._wsReady = true;
    this._everConnected = true;
    this._attempt = 0;
    this._failures = 0;
    this._retryTimer = this._cancel(this._retryTimer);
    if (this._polling) this._stopPolling();
    this._setTransport("websocket");
    this._setState("connected");
    this._emit("connected", { user: frame.user, role: frame.role, expires: frame.expires });
    for (const sub of this._rooms.values()) this._begin(sub);
    this._flush();
    this._startPings();
  }

  _onAck(frame) {
    const p = this._outbox.get(frame.id);
    if (p) this._settle(p, frame, null);
  }

  _onError(frame) {
    const id = frame.id;
    if (id && this._outbox.has(id)) {
      this._writeFailed(this._outbox.get(id), frame);
      return;
    }
    const refused = id ? id.startsWith("connect-")
      : frame.code === "UNAUTHORIZED" && !this._wsReady;
    if (refused) {
      // The token was refused. One fresh token, then give up.
      if (this.getToken && !this._tokenRetry) {
        this._tokenRetry = true;
        this._renew().then((ok) => {
          if (this._closed) return;
          if (ok) this._sendConnect();
          else this._stop(4001, frame.message, { code: "UNAUTHORIZED", message: frame.message });
        });
      } else {
        this._stop(4001, frame.message, { code: "UNAUTHORIZED", message: frame.message });
      }
      return;
    }
    // A refused subscribe names its id (not always the room); an error with a room and
    // no id ends a subscription that had started (it may be subscribed again).
    const sub = id ? [...this._rooms.values()].find((s) => s._subscribeId === id)
      : frame.room !== undefined ? this._rooms.get(frame.room) : undefined;
    if (sub) {
      sub._failed(frame);
      return;
    }
    if (frame.room !== undefined) return;
    this._emit("error", new RoomlogError(frame.code, frame.message,
      { details: frame.details ?? null, retryAfter: frame.retry_after ?? null }));
  }

  // -- subscriptions ----------------------------------------------------------------

  /** (Re)start a subscription on the current transport. */
  _begin(sub) {
    if (sub._closed || this._closed || !sub._loaded) return;
    if (sub._fromStart && !sub.cursor.position) {
      if (sub._starting) return;
      sub._starting = true;
      this.request("GET", this.roomPath(sub.room)).then((info) => {
        sub._starting = false;
        sub.cursor.start(info.epoch, 0);
        this._begin(sub);
      }, (err) => {
        sub._starting = false;
        if (err instanceof RoomlogError && err.status && err.status < 500 && err.status !== 429) {
          sub._failed({ code: err.code, message: err.message });
        } else {
          this._defer(() => this._begin(sub), 1000);
        }
      });
      return;
    }
    if (this._wsReady) {
      sub._subscribeId = this._nextId("sub");
      sub._live = true;
      const frame = { type: "subscribe", room: sub.room, id: sub._subscribeId };
      const pos = sub.cursor.position;
      if (pos) frame.since = { epoch: pos.epoch, seq: pos.seq };
      if (sub.handlers.presence) frame.presence = true;
      this._send(frame);
    } else if (this._polling) {
      sub._poll();
    }
  }

  // -- writes ---------------------------------------------------------------------

  _write(frame) {
    return new Promise((resolve, reject) => {
      if (this._closed && this.state === "closed") {
        reject(new RoomlogError("CLOSED", "the client is closed"));
        return;
      }
      const existing = this._outbox.get(frame.id);
      if (existing) {
        // The same id again: one write, both callers get its result.
        const { resolve: r0, reject: j0 } = existing;
        existing.resolve = (v) => { r0(v); resolve(v); };
        existing.reject = (e) => { j0(e); reject(e); };
        return;
      }
      const p = this._entry(frame, resolve, reject);
      this._outbox.set(frame.id, p);
      this._keep(p);
      this._sendWrite(p);
    });
  }

  _entry(frame, resolve, reject) {
    return { id: frame.id, frame, resolve, reject, attempts: 0, netFailures: 0, via: null,
      timer: null, at: Date.now(), n: ++this._ids, restored: false };
  }

  /** A write is answered for good: out of the outbox and the store, its caller told. */
  _settle(p, ack, error) {
    this._outbox.delete(p.id);
    this._forget(p.id);
    this._emit("settled", { id: p.id, frame: p.frame, restored: p.restored, ack, error });
    if (error) p.reject(error);
    else p.resolve(ack);
  }

  _flush() {
    for (const p of this._outbox.values()) {
      if (p.timer) break; // told to wait: the writes after it wait too (order)
      if (!p.via) this._sendWrite(p);
    }
  }

  _retryLater(p, ms) {
    p.via = null;
    p.timer = this._defer(() => {
      p.timer = null;
      this._flush();
    }, ms);
  }

  _sendWrite(p) {
    if (p.timer || this._closed) return;
    for (const q of this._outbox.values()) { // an earlier write waits: so does this one
      if (q === p) break;
      if (q.timer) return;
    }
    if (this._wsReady && this._drainUntil === null) {
      if (this._send(p.frame)) p.via = "websocket";
      return;
    }
    if (this._polling && !p.via) {
      p.via = "http";
      this._postWrite(p);
    }
    // Otherwise it waits in the outbox for the next connection.
  }

  async _postWrite(p) {
    const f = p.frame;
    const path = this.roomPath(f.room) + (f.type === "command" ? "/commands" : "/messages");
    const body = f.type === "command"
      ? { id: f.id, name: f.name, args: f.args, ...(f.expected_seq !== undefined
        ? { expected_seq: f.expected_seq } : {}) }
      : { id: f.id, data: f.data };
    try {
      const json = await this.request("POST", path, body);
      this._httpWorked();
      if (this._outbox.get(p.id) !== p) return;
      this._settle(p, { type: "ack", ...json }, null);
    } catch (err) {
      if (this._outbox.get(p.id) !== p) return;
      if (!(err instanceof RoomlogError)) { // the network: keep it for later
        this._retryLater(p, backoffDelay(Math.min(p.netFailures++, 4), this.backoff));
        return;
      }
      if (err.code === "UNAUTHORIZED" && this.getToken && p.attempts < 1) {
        p.attempts += 1;
        p.via = null;
        if (await this._renew()) this._sendWrite(p);
        return;
      }
      this._writeFailed(p, { code: err.code, message: err.message, details: err.details,
        retry_after: err.retryAfter });
    }
  }

  _writeFailed(p, frame) {
    p.via = null;
    const delay = retryDelay(frame.code, frame.retry_after, p.attempts,
      { maxRetryAfter: this.maxRetryAfter });
    p.attempts += 1;
    if (delay !== null && !this._closed) {
      this._retryLater(p, delay);
      return;
    }
    this._settle(p, null, new RoomlogError(frame.code, frame.message,
      { details: frame.details ?? null, retryAfter: frame.retry_after ?? null }));
  }

  // -- long-polling ---------------------------------------------------------------

  _startPolling() {
    if (this._polling || this._closed) return;
    this._polling = true;
    this._log("WebSocket failed", this._failures, "times: long-polling");
    this._setTransport("polling");
    // "polling" once a read over HTTP worked: a network where nothing gets through (a
    // tunnel the browser still calls online) is not shown as live.
    if (!this._isOnline) this._setState("offline");
    else if (this._rooms.size === 0) this._setState("polling");
    else this._setState(this._everConnected ? "reconnecting" : "connecting");
    for (const sub of this._rooms.values()) this._begin(sub);
    this._flush();
  }

  /** A long-poll (or a write over HTTP) got an answer: polling works. */
  _httpWorked() {
    if (this._polling && !this._closed && this.state !== "polling") this._setState("polling");
  }

  /** A long-poll failed on the network: not live until one works again. */
  _httpFailed() {
    if (!this._polling || this._closed || this.state !== "polling") return;
    this._setState(this._isOnline ? "reconnecting" : "offline");
  }

  _stopPolling() {
    if (!this._polling) return;
    this._polling = false;
    for (const sub of this._rooms.values()) sub._stopPoll();
  }

  _kickPollers() {
    for (const sub of this._rooms.values()) sub._kick();
  }

  _online() {
    if (this._closed) return;
    this._log("online");
    if (this._renewWake) this._renewWake();
    if (this._polling) {
      this._kickPollers(); // the first answer says "polling" again
      this._flush();
    }
    if (this._wsReady) {
      this._ping(); // after an `offline` that was a false alarm: the pong says connected
    } else if (!this._ws && this._wsAllowed) {
      this._attempt = 0;
      this._scheduleReconnect(Math.round(Math.random() * 1000));
    }
  }

  _offline() {
    if (this._closed) return;
    this._log("offline");
    if (this._wsReady) {
      // Say so at once; the socket decides: a pong puts it back to connected, none drops it.
      this._setState("offline");
      this._pongTimer = this._cancel(this._pongTimer);
      this._ping();
      return;
    }
    this._retryTimer = this._cancel(this._retryTimer);
    if (this._ws) this._dropSocket("offline");
    this._setState("offline");
  }
}

/** One room of a client. Created by `client.subscribe(room, handlers)`. */
export class Subscription {
  constructor(client, room, handlers) {
    this.client = client;
    this.room = room;
    this.handlers = handlers;
    this.cursor = new RoomCursor(handlers.since || null);
    this._fromStart = Boolean(handlers.fromStart) && !handlers.since;
    // persist: the position is kept in the client's store and the next page resumes
    // from it (the messages it missed, once each) instead of starting at the head.
    this._persist = Boolean(handlers.persist) && !handlers.since;
    this._loaded = !this._persist;
    this._loading = null;
    this._closed = false;
    this._live = false; // frames of the current transport are taken
    this._subscribeId = null;
    this._starting = false;
    this._repairing = false;
    this._pollAbort = null;
    this._pollSerial = 0;
    this._pollFailures = 0;
    this._noState = PLAIN_KINDS.has(room.split(":", 1)[0]);
  }

  /** Take the position the store kept (persist), then start. */
  _load() {
    if (!this._loading) {
      this._loading = (async () => {
        const c = this.client;
        if (c.store && c._ns) {
          try {
            const pos = await c.store.get(c._key("pos", this.room));
            if (pos && typeof pos.epoch === "string" && Number.isInteger(pos.seq)) {
              this.cursor.start(pos.epoch, pos.seq);
            }
          } catch (err) {
            c._log("store read failed", err);
          }
        }
        this._loaded = true;
        c._begin(this);
      })();
    }
    return this._loading;
  }

  /** The last (epoch, seq) delivered, or null before the first. */
  get position() {
    return this.cursor.position;
  }

  close() {
    if (this._closed) return;
    this._detach();
    if (this.client._rooms.get(this.room) === this) this.client._rooms.delete(this.room);
    if (this.client._wsReady) {
      this.client._send({ type: "unsubscribe", room: this.room, id: this.client._nextId("unsub") });
    }
  }

  _detach() {
    this._closed = true;
    this._live = false;
    this._stopPoll();
  }

  _call(name, ...args) {
    const fn = this.handlers[name];
    if (!fn) return;
    try {
      fn(...args);
    } catch (err) {
      console.error(`roomlog ${name} handler of ${this.room} failed`, err);
    }
  }

  _linkLost() {
    this._live = false;
    this._subscribeId = null;
  }

  _onSubscribed(frame, via) {
    const fresh = this.cursor.start(frame.epoch, frame.seq ?? frame.head);
    if (fresh && this._persist) this.client._savePosition(this);
    this._call("onSubscribed", frame);
    if (fresh && frame.state !== undefined) {
      this._call("onState", frame.state, { epoch: frame.epoch, seq: frame.seq ?? frame.head,
        reason: "subscribed", via });
    }
  }

  _deliver(frames) {
    if (frames.length && this._persist) this.client._savePosition(this);
    for (const f of frames) {
      if (this._closed) return;
      if (f.type === "message") this._call("onMessage", f);
      else if (f.type === "skip") this._call("onSkip", f);
      else if (f.type === "reset") {
        this._call("onReset", f);
        if (f.state !== undefined) {
          this._call("onState", f.state, { epoch: f.epoch, seq: f.seq, reason: "reset" });
        }
      }
    }
  }

  _push(frame) {
    this._deliver(this.cursor.push(frame));
    if (this.cursor.gap) this._repair();
  }

  _reset(frame) {
    const backfill = frame.state === undefined && this.handlers.backfill !== false;
    this._deliver(this.cursor.reset(frame, { backfill }));
    if (this.cursor.gap) this._repair();
  }

  /** Read what is missing over HTTP before delivering anything after it. */
  async _repair() {
    if (this._repairing || this._closed) return;
    this._repairing = true;
    let idle = 0;
    try {
      while (this.cursor.gap && !this._closed && idle < 3) {
        const { epoch, after } = this.cursor.gap;
        let page;
        try {
          page = await this.client.request("GET",
            `${this.client.roomPath(this.room)}/messages?after=${after}`
            + `&epoch=${encodeURIComponent(epoch)}&limit=1000`);
        } catch (err) {
          idle += 1;
          await new Promise((r) => setTimeout(r, 1000));
          continue;
        }
        const before = JSON.stringify(this.cursor.position);
        this._take(page.frames);
        idle = JSON.stringify(this.cursor.position) === before ? idle + 1 : 0;
      }
    } finally {
      this._repairing = false;
    }
    if (this.cursor.gap && !this._closed && this.client._wsReady) {
      this.cursor.until = null;
      this.client._begin(this); // the log could not fill it: let the server replay
    }
  }

  _take(frames) {
    for (const f of frames || []) {
      if (this._closed) return;
      if (f.type === "reset") this._reset(f);
      else if (f.type === "message" || f.type === "skip") this._push(f);
    }
  }

  _failed(frame) {
    const err = new RoomlogError(frame.code, frame.message,
      { details: frame.details ?? null, retryAfter: frame.retry_after ?? null });
    this._live = false;
    const again = frame.code === "UNAVAILABLE" || frame.code === "INTERNAL"
      || (frame.retry_after !== undefined && frame.retry_after !== null);
    if (again && !this._closed) {
      this.client._defer(() => this.client._begin(this),
        1000 * (typeof frame.retry_after === "number" ? frame.retry_after : 1));
      return;
    }
    // FORBIDDEN, INVALID_ROOM, LIMIT_EXCEEDED...: the subscription is over.
    this._detach();
    if (this.client._rooms.get(this.room) === this) this.client._rooms.delete(this.room);
    this._call("onError", err);
  }

  // Long-polling: one loop per room, on the same cursor.

  _stopPoll() {
    this._pollSerial += 1;
    if (this._pollAbort) this._pollAbort.abort();
    this._pollAbort = null;
  }

  _kick() {
    if (this.client._polling && !this._closed) this._poll();
  }

  async _poll() {
    this._stopPoll();
    const serial = this._pollSerial;
    const c = this.client;
    const alive = () => serial === this._pollSerial && c._polling && !this._closed;
    while (alive()) {
      const abort = typeof AbortController === "function" ? new AbortController() : null;
      this._pollAbort = abort;
      try {
        if (!this.cursor.position) {
          await this._pollStart();
        } else {
          const { epoch, seq } = this.cursor.position;
          const wait = c._isOnline ? c.pollWait : 0;
          const page = await this._get(`${c.roomPath(this.room)}/messages?after=${seq}`
            + `&epoch=${encodeURIComponent(epoch)}&wait=${wait}`, abort);
          if (!alive()) return;
          this._take(page.frames);
        }
        this._pollFailures = 0;
        c._httpWorked();
      } catch (err) {
        if (!alive()) return;
        if (!(err instanceof RoomlogError)) c._httpFailed();
        if (err instanceof RoomlogError && err.code === "UNAUTHORIZED" && c.getToken
            && this._pollFailures === 0) {
          this._pollFailures += 1;
          if (await c._renew()) continue;
        }
        if (err instanceof RoomlogError && err.status && err.status < 500
            && err.status !== 429 && err.status !== 408) {
          this._failed({ code: err.code, message: err.message, details: err.details });
          if (err.code === "UNAUTHORIZED") c._stop(4001, err.message,
            { code: "UNAUTHORIZED", message: err.message });
          return;
        }
        const ms = err instanceof RoomlogError && typeof err.retryAfter === "number"
          ? err.retryAfter * 1000 : backoffDelay(Math.min(this._pollFailures, 5), c.backoff);
        this._pollFailures += 1;
        await new Promise((r) => setTimeout(r, ms));
      }
    }
  }

  async _pollStart() {
    const c = this.client;
    const path = c.roomPath(this.room);
    let body = null;
    if (!this._noState) {
      try {
        body = await this._get(`${path}/state`);
      } catch (err) {
        if (!(err instanceof RoomlogError) || err.status !== 404) throw err;
        this._noState = true; // a room kind without state (chat, feed, user, repairs)
      }
    }
    if (body) {
      if (this.cursor.start(body.epoch, body.seq)) {
        this._call("onSubscribed", { type: "subscribed", room: this.room, epoch: body.epoch,
          head: body.seq, seq: body.seq, state: body.state });
        this._call("onState", body.state, { epoch: body.epoch, seq: body.seq,
          reason: "subscribed", via: "polling" });
      }
      return;
    }
    body = await this._get(`${path}/messages`);
    if (this.cursor.start(body.epoch, body.head)) {
      this._call("onSubscribed", { type: "subscribed", room: this.room, epoch: body.epoch,
        head: body.head });
    }
  }

  async _get(path, abort) {
    const c = this.client;
    const headers = {};
    if (c.token) headers.authorization = `Bearer ${c.token}`;
    const response = await c._fetch(c.base + path,
      { headers, signal: abort ? abort.signal : undefined });
    const json = await response.json().catch(() => null);
    if (!response.ok) throw httpError(response, json);
    return json;
  }
}

export default RoomlogClient;
