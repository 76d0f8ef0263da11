// Shared parts of the web app's pages: setup (token and room from the URL or a form),
// the client, the connection badge, messages, optimistic changes with rollback, and a
// tiny DOM builder. No build step: plain ES modules served by the hub.

import { RoomlogClient } from "/client/roomlog.js";

export const params = new URLSearchParams(location.search);

/** The claims of a JWT, unverified (for display: who am I, which role). */
export function tokenClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
  } catch {
    return null;
  }
}

/** `el("button", {class: "x", onclick}, "text", child)`: an element. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      node.className = value;
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else if (key === "style" && typeof value === "object") {
      Object.assign(node.style, value);
    } else if (key in node && typeof value !== "string") {
      node[key] = value;
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replace the children of `node` with `children`. */
export function fill(node, ...children) {
  node.replaceChildren();
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/**
 * The token and the named parameters from the URL; when one is missing, a small form
 * asks for them (and reloads the page with them in the URL). Returns null then.
 * `fields`: [{name, label, placeholder, value}] besides the token.
 */
export function setup(fields, { hint = "" } = {}) {
  const values = { token: params.get("token") || sessionStorage.getItem("roomlog.token") };
  for (const f of fields) values[f.name] = params.get(f.name) || f.value || "";
  const missing = !values.token || fields.some((f) => f.required !== false && !values[f.name]);
  if (!missing) {
    sessionStorage.setItem("roomlog.token", values.token);
    values.claims = tokenClaims(values.token) || {};
    return values;
  }
  const form = el("form", { class: "card setup", "data-testid": "setup" },
    el("h2", {}, "Connect"),
    hint ? el("p", { class: "muted" }, hint) : null,
    el("label", {}, "Token",
      el("textarea", { name: "token", rows: 3, required: true,
        placeholder: "roomlog token --user u1 --role guest" }, values.token || "")),
    fields.map((f) => el("label", {}, f.label,
      el("input", { name: f.name, value: values[f.name] || "", placeholder: f.placeholder || "",
        required: f.required !== false }))),
    el("button", { type: "submit", class: "primary" }, "Open"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const next = new URLSearchParams(params);
    for (const [key, value] of data) if (String(value).trim()) next.set(key, String(value).trim());
    location.search = next.toString();
  });
  fill(document.querySelector("main"), form);
  const badge = document.querySelector("#conn");
  if (badge) badge.hidden = true; // nothing to connect yet
  return null;
}

/**
 * The page's client. URL knobs for tests and demos: `backoff=<ms>` (first reconnect
 * delay; the cap becomes 10x it), `transport=polling` (long-poll only).
 */
export function createClient(token) {
  const backoff = Number(params.get("backoff"));
  const options = { token, debug: params.has("debug") };
  if (backoff > 0) options.backoff = { base: backoff, max: backoff * 10 };
  if (params.get("transport") === "polling") options.transports = ["polling"];
  const client = new RoomlogClient(options);
  window.roomlogClient = client; // for the console (and the browser tests)
  return client;
}

const STATE_LABELS = {
  connecting: "Connecting…",
  connected: "Live",
  reconnecting: "Reconnecting…",
  polling: "Live (fallback)",
  offline: "Offline",
  closed: "Disconnected",
};

/** The connection badge in the header: green, yellow or red, with unsent writes. */
export function connectionBadge(client, node = document.querySelector("#conn")) {
  const update = () => {
    const pending = client.pending.length;
    node.dataset.state = client.state;
    node.title = `connection: ${client.state}${client.transport ? ` (${client.transport})` : ""}`;
    fill(node, el("span", { class: "dot" }), STATE_LABELS[client.state] || client.state,
      pending ? el("small", { class: "unsent" }, ` · ${pending} unsent`) : null);
  };
  client.on("state", update);
  client.on("closed", ({ code, reason }) => {
    if (code === 4001 || code === 4003) sessionStorage.removeItem("roomlog.token");
    const why = { 4001: "your token was refused or has expired",
      4003: "you were disconnected by an administrator",
      4002: "the client sent too many bad frames" }[code] || reason || `code ${code}`;
    toast(`Disconnected: ${why}. Reload with a new token.`, "error", 0);
  });
  update();
  setInterval(update, 1000);
  return update;
}

/** A short message at the bottom of the screen; `ms` 0 keeps it until clicked. */
export function toast(text, kind = "info", ms = 6000) {
  let box = document.querySelector("#toasts");
  if (!box) {
    box = el("div", { id: "toasts", role: "status", "aria-live": "polite" });
    document.body.append(box);
  }
  const node = el("div", { class: `toast ${kind}`, "data-testid": `toast-${kind}` }, text);
  node.addEventListener("click", () => node.remove());
  box.append(node);
  if (ms) setTimeout(() => node.remove(), ms);
  return node;
}

const READABLE = {
  DUPLICATE_REQUEST: "You already requested this song.",
  TOO_MANY_ACTIVE: "You have as many open requests as allowed: wait until one is played.",
  QUEUE_CLOSED: "The DJ is not taking requests right now.",
  CAPACITY_EXCEEDED: "The queue is full for this hour.",
  RATE_LIMITED: "Slow down a little.",
  FORBIDDEN: "You are not allowed to do that.",
  NOT_FOUND: "It is gone.",
  CONFLICT: "Someone changed it first.",
  INVALID_TRANSITION: "That is not possible any more.",
  INVALID_ARGS: "Please check what you entered.",
  UNAUTHORIZED: "Your session has expired.",
  UNAVAILABLE: "The server is busy. Please try again.",
  CLOSED: "Not sent: the connection is closed.",
};

/** A sentence for a person, from a RoomlogError. */
export function describeError(err, action = "") {
  const head = READABLE[err && err.code] || "That did not work.";
  let tail = "";
  if (err && err.retryAfter) tail = ` Try again in ${Math.ceil(err.retryAfter)} s.`;
  const detail = err && err.message && !READABLE[err.code] ? ` (${err.message})` : "";
  return `${action ? `${action}: ` : ""}${head}${tail}${detail}`;
}

/**
 * Follow a domain room: rebuild the page's model from every state the room sends
 * (subscribed, reset) with `load(state, seq)`, fold each event in with
 * `apply(data, message)`, settle optimistic changes as their seqs arrive (skips too),
 * redraw, and say it when the room cannot be followed (`what`).
 */
export function followRoom(client, room, optimistic, { load, apply, render, what }) {
  let loaded = false;
  client.subscribe(room, {
    onState(state, { seq }) {
      load(state, seq);
      loaded = true;
      optimistic.restart(seq);
      render();
    },
    onMessage(m) {
      if (!loaded) return;
      apply(m.data, m);
      optimistic.reached(m.seq);
      render();
    },
    onSkip(f) {
      optimistic.reached(f.seq);
    },
    onError(err) {
      toast(describeError(err, what), "error", 0);
    },
  });
}

/**
 * Optimistic changes. `run({apply, send, label})` shows `apply(model)` at once, sends,
 * and keeps the change until the room has delivered the events the ack names (so the
 * view never flickers back); a rejection removes it and says why. `overlay(model)` is
 * the model the page draws: the confirmed one with the changes still in flight.
 */
export class Optimistic {
  constructor(rerender) {
    this.rerender = rerender;
    this.ops = new Map();
    this.serial = 0;
    this.seq = 0; // the last seq of the room the page has applied
  }

  get size() {
    return this.ops.size;
  }

  overlay(model) {
    if (!this.ops.size) return model;
    const copy = structuredClone(model);
    for (const op of this.ops.values()) {
      try {
        op.apply(copy, op);
      } catch (err) {
        console.warn("optimistic change no longer applies", err);
      }
    }
    return copy;
  }

  async run({ apply, send, label = "", onError }) {
    const key = ++this.serial;
    const op = { key, apply, label, ackSeq: null };
    this.ops.set(key, op);
    this.rerender();
    try {
      const ack = await send();
      if (ack && typeof ack.seq === "number" && ack.seq > this.seq) {
        op.ackSeq = ack.seq; // drop it when the room reaches it
      } else {
        this.ops.delete(key);
      }
      this.rerender();
      return ack;
    } catch (err) {
      this.ops.delete(key);
      this.rerender();
      if (onError) onError(err);
      else toast(describeError(err, label), "error");
      return null;
    }
  }

  /** The room delivered up to `seq`: changes it confirms become the model's own. */
  reached(seq) {
    this.seq = seq;
    for (const [key, op] of this.ops) {
      if (op.ackSeq !== null && op.ackSeq <= seq) this.ops.delete(key);
    }
  }

  /** A new state replaced the model (reset): its position is the new baseline. */
  restart(seq) {
    this.seq = seq;
    for (const [key, op] of this.ops) if (op.ackSeq !== null) this.ops.delete(key);
  }
}

/** Run `fn` once for a burst of calls (not requestAnimationFrame: hidden tabs skip it). */
export function throttled(fn) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    setTimeout(() => {
      queued = false;
      fn();
    }, 10);
  };
}

export function timeAgo(ms) {
  if (!ms) return "";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(ms).toLocaleDateString();
}

export function clock(ms) {
  return ms ? new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
}

export function header(title, subtitle) {
  const h = document.querySelector("header .title");
  if (h) fill(h, el("strong", {}, title), subtitle ? el("span", { class: "muted" }, subtitle) : null);
  document.title = `${title} · roomlog`;
}
