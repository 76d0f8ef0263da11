// What every page of the web app shares: the frame (header, the notice that says why
// actions are off, the footer with the language switch), the session (token, client,
// store), the connection badge, messages for people, optimistic changes with rollback,
// following a domain room, and the "not available to you" page.
//
// A page:  const page = await startPage({ page: "guest", title: "guest.title", fields });
//          if (page) { const { client, gate } = page; ... }
// New pages (an operator console, say) use the same calls and bring their texts in the
// catalogues (messages/*.js) or with i18n.extend().

import { RoomlogClient, tokenClaims } from "/client/roomlog.js";
import { openStore } from "/client/store.js";
import { describeError } from "./errors.js";
import { LANGUAGES, initLanguage, language, onLanguage, setLanguage, t } from "./i18n.js";
import {
  dropToken, keepToken, keptToken, loadConfig, remember, remembered, takeLinkToken,
  tokenEndpoint,
} from "./session.js";
import { T, el, fill, relabel, toast } from "./ui.js";

export * from "./ui.js";
export * from "./i18n.js";
export { describeError } from "./errors.js";

export const params = new URLSearchParams(location.search);

// -- the frame -------------------------------------------------------------------------

let pageTitle = null;
onLanguage(() => { if (pageTitle) document.title = `${String(pageTitle)} · roomlog`; });

/** Title and subtitle in the header (Text or strings), and the document's title. */
export function header(title, subtitle = null) {
  const node = document.querySelector("header .title");
  if (node) {
    fill(node, el("h1", {}, title), subtitle ? el("span", { class: "muted" }, subtitle) : null);
  }
  pageTitle = title;
  document.title = `${String(title)} · roomlog`;
}

/** The footer: the language switch (what the browser asked for is chosen at first). */
export function languageFooter() {
  const select = el("select", { id: "lang", "data-testid": "language",
    onchange: () => setLanguage(select.value) },
  Object.entries(LANGUAGES).map(([code, [name]]) => el("option", { value: code, lang: code,
    selected: code === language() }, name)));
  const node = el("footer", {}, el("label", { class: "inline", for: "lang" },
    T("common.language")), select);
  document.body.append(node);
  onLanguage((lang) => { select.value = lang; });
}

function noticeArea() {
  let node = document.querySelector("#gate");
  if (!node) {
    node = el("div", { id: "gate", class: "gate", role: "status", "data-testid": "gate",
      hidden: true });
    document.querySelector("header").append(node); // a row of the sticky header
  }
  return node;
}

// -- the session ---------------------------------------------------------------------------

/**
 * Start a page: language, frame, token and client. `fields`: the page's parameters
 * ([{name, label, placeholder}], e.g. the queue) from the link, else from the last
 * visit (an installed app opens without them), else asked for. Returns null when a
 * form asks for what is missing; else {client, gate, values, me, claims, config}.
 */
export async function startPage({ page, title, fields = [], hint = null }) {
  initLanguage();
  relabel(document);
  header(T(title));
  noticeArea();
  languageFooter();
  const config = await loadConfig();
  const tokenUrl = config.token_url || null;
  const token = takeLinkToken(page) || keptToken(page);
  const last = remembered(page);
  const values = {};
  for (const f of fields) values[f.name] = params.get(f.name) || last[f.name] || "";
  const missing = fields.some((f) => !values[f.name]);
  if (missing || (!token && !tokenUrl)) {
    setupForm({ page, fields, values, needToken: !token && !tokenUrl, hint });
    return null;
  }
  remember(page, values);
  if (fields.some((f) => params.get(f.name) !== values[f.name])) {
    const url = new URL(location.href);
    for (const f of fields) url.searchParams.set(f.name, values[f.name]);
    history.replaceState(history.state, "", url.href);
  }
  const request = { page, ...values };
  const getToken = tokenUrl ? tokenEndpoint(tokenUrl, request) : null;
  const client = createClient({ token, getToken, page });
  const gate = new Gate(client, { page, tokenUrl });
  connectionBadge(client);
  await client.ready; // a token (from the endpoint, when there was none) and the store
  const claims = tokenClaims(client.token) || {};
  return { client, gate, values, me: claims.sub ?? null, claims, config };
}

/**
 * The page's client, keeping positions and unsent writes in IndexedDB. URL knobs for
 * tests and demos: `backoff=<ms>` (first reconnect delay; the cap becomes 10x it),
 * `transport=polling` (long-poll only), `debug`.
 */
export function createClient({ token, getToken, page }) {
  const backoff = Number(params.get("backoff"));
  const options = { token, getToken, debug: params.has("debug"), store: openStore("roomlog") };
  if (backoff > 0) options.backoff = { base: backoff, max: backoff * 10 };
  if (params.get("transport") === "polling") options.transports = ["polling"];
  const client = new RoomlogClient(options);
  client.on("closed", ({ code }) => {
    if (code === 4001 || code === 4003) dropToken(page);
  });
  window.roomlogClient = client; // for the console (and the browser tests)
  return client;
}

/** A form for what the link did not carry; the token goes to sessionStorage, not the URL. */
function setupForm({ page, fields, values, needToken, hint }) {
  const token = el("textarea", { id: "setup-token", name: "token", rows: 3,
    required: needToken, spellcheck: "false", placeholder: "eyJhbGciOi…" });
  const form = el("form", { class: "card setup", "data-testid": "setup" },
    el("h2", {}, T("setup.title")),
    hint ? el("p", { class: "muted" }, T(hint)) : null,
    needToken ? el("label", { for: "setup-token" }, T("setup.token")) : null,
    needToken ? token : null,
    fields.map((f) => [el("label", { for: `setup-${f.name}` }, T(f.label)),
      el("input", { id: `setup-${f.name}`, name: f.name, value: values[f.name] || "",
        placeholder: f.placeholder || "", required: true, autocomplete: "off" })]),
    el("button", { type: "submit", class: "primary" }, T("setup.open")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const next = new URL(location.href);
    next.search = "";
    for (const [key, value] of data) {
      const v = String(value).trim();
      if (!v) continue;
      if (key === "token") keepToken(page, v);
      else next.searchParams.set(key, v);
    }
    for (const keep of ["backoff", "transport", "debug"]) {
      if (params.has(keep)) next.searchParams.set(keep, params.get(keep));
    }
    location.href = next.href;
  });
  fill(document.querySelector("main"), form);
  const badge = document.querySelector("#conn");
  if (badge) badge.hidden = true; // nothing to connect yet
}

// -- the connection badge and the gate -------------------------------------------------------

/** The connection badge in the header: green, yellow or red, with unsent writes. */
export function connectionBadge(client, node = document.querySelector("#conn")) {
  const update = () => {
    const pending = client.pending.length;
    node.dataset.state = client.state;
    node.title = t("conn.title", { state: t(`conn.${client.state}`) });
    fill(node, el("span", { class: "dot", "aria-hidden": "true" }), t(`conn.${client.state}`),
      pending ? el("small", { class: "unsent" }, ` · ${t("conn.unsent", { count: pending })}`)
        : null);
  };
  client.on("state", update);
  client.on("settled", update);
  onLanguage(update);
  update();
  setInterval(update, 1000);
  return update;
}

/**
 * Whether the page's actions can be used now, and why not. Actions are off while the
 * client is not connected (connecting, reconnecting, offline: the page's view may be
 * stale and nothing would be sent), and for good once it stopped (the token is over, an
 * administrator disconnected it). The reason is shown under the header; buttons point to
 * it (aria-describedby="gate"). Writes already made are kept and sent when it is back.
 */
export class Gate {
  constructor(client, { page, tokenUrl }) {
    this.client = client;
    this.page = page;
    this.tokenUrl = tokenUrl;
    this.loginUrl = null;
    this.listeners = new Set();
    this.node = noticeArea();
    const update = () => this.update();
    client.on("state", update);
    client.on("token", (e) => {
      if (e.error && e.error.loginUrl) this.loginUrl = e.error.loginUrl;
      update();
    });
    onLanguage(update);
    this.update();
  }

  /** True while actions must stay disabled. */
  get off() {
    return !["connected", "polling"].includes(this.client.state);
  }

  /** `fn()` whenever the gate opens or closes. */
  watch(fn) {
    this.listeners.add(fn);
  }

  /** What to say: {kind, key, action} or null. */
  get notice() {
    const c = this.client;
    if (c.state === "closed") {
      if (c.closeCode === 4003) return { kind: "bad", key: "gate.banned", action: "reload" };
      if (c.closeCode === 4001 || c.tokenState === "refused") {
        if (this.tokenUrl) return { kind: "bad", key: "gate.signedOut", action: "signin" };
        return { kind: "bad", key: "gate.expired", action: "token" };
      }
      return { kind: "bad", key: "gate.closed", action: "reload" };
    }
    if (c.tokenState === "renewing") return { kind: "warn", key: "gate.renewing", action: "retry" };
    if (c.state === "offline") return { kind: "warn", key: "gate.offline", action: null };
    if (c.state === "reconnecting") return { kind: "warn", key: "gate.reconnecting", action: "retry" };
    if (c.state === "connecting") return { kind: "info", key: "gate.connecting", action: null };
    return null;
  }

  update() {
    const notice = this.notice;
    const key = notice ? `${notice.key}|${language()}` : null;
    if (key !== this._shown) {
      this._shown = key;
      this.node.hidden = !notice;
      if (notice) {
        this.node.dataset.kind = notice.kind;
        this.node.dataset.reason = notice.key.slice(5);
        fill(this.node, el("span", {}, t(notice.key)), this.actionButton(notice.action));
      }
    }
    const off = this.off;
    if (off !== this._off) {
      this._off = off;
      for (const fn of this.listeners) fn(off);
    }
  }

  actionButton(action) {
    if (action === "retry") {
      return el("button", { type: "button", class: "small", onclick: () => this.client.checkNow() },
        t("gate.retry"));
    }
    if (action === "reload") {
      return el("button", { type: "button", class: "small", onclick: () => location.reload() },
        t("gate.reload"));
    }
    if (action === "signin") {
      return this.loginUrl ? el("a", { class: "button small", href: this.loginUrl }, t("gate.signIn"))
        : el("button", { type: "button", class: "small", onclick: () => location.reload() },
          t("gate.signIn"));
    }
    if (action === "token") {
      return el("button", { type: "button", class: "small", onclick: () => {
        dropToken(this.page);
        location.reload();
      } }, t("gate.newToken"));
    }
    return null;
  }

  /** Attributes of a new action button: disabled (and why) while the gate is off. */
  lock(disabled = false) {
    const off = this.off;
    return { disabled: off || disabled, "aria-describedby": off ? "gate" : null };
  }

  /** The same for a button that stays on the page (a form's submit button). */
  apply(node, disabled = false) {
    const off = this.off;
    node.disabled = off || disabled;
    if (off) node.setAttribute("aria-describedby", "gate");
    else node.removeAttribute("aria-describedby");
    return node;
  }
}

// -- messages for people ---------------------------------------------------------------------

/** Show a RoomlogError as a red toast. */
export function showError(err, options = {}) {
  const { text, detail } = describeError(err, options);
  return toast(text, { kind: "error", detail });
}

// -- optimistic changes -------------------------------------------------------------------------

/**
 * Optimistic changes. `run({apply, send, label, onError})` shows `apply(model)` at once,
 * sends, and keeps the change until the room has delivered the events the ack names (so
 * the view never flickers back); a rejection removes it and says why (`onError(err)`
 * gets it first, to put a form back; return true there to say it yourself).
 * `overlay(model)` is what the page draws: the confirmed model with changes in flight.
 */
export class Optimistic {
  constructor(rerender, { staff = false, labels = {} } = {}) {
    this.rerender = rerender;
    this.staff = staff;
    this.labels = labels;
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
      const handled = onError ? onError(err) : false;
      if (!handled && !(err && err.code === "CLOSED")) {
        showError(err, { action: label, staff: this.staff, labels: this.labels });
      }
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

/**
 * Writes an earlier page left unanswered (kept in the store), for this room: handed to
 * `resume(frame)`, which shows them again as in flight (the client sends them, same ids).
 */
export function resumeWrites(client, room, resume) {
  for (const frame of client.pending) {
    if (frame.room === room && frame.type === "command") resume(frame);
  }
}

/**
 * Follow a domain room: rebuild the page's model from every state the room sends
 * (subscribed, reset) with `load(state, seq)`, fold each event in with
 * `apply(data, message)`, settle optimistic changes as their seqs arrive (skips too),
 * redraw. A room that is not the reader's, or does not exist, goes to `unavailable(err)`
 * (FORBIDDEN and NOT_FOUND look the same on purpose); other errors are shown.
 */
export function followRoom(client, room, optimistic, { load, apply, render, what, unavailable }) {
  let loaded = false;
  return client.subscribe(room, {
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
      if (unavailable && (err.code === "FORBIDDEN" || err.code === "NOT_FOUND")) unavailable(err);
      else showError(err, { action: what });
    },
  });
}

/**
 * One clear page for "not yours" and "not found" (the hub may answer either, and a person
 * should not learn which): what it means and what to do next.
 */
export function notAvailable(main, { title, body, again = null }) {
  fill(main, el("section", { class: "card unavailable", "data-testid": "not-available" },
    el("div", { class: "big-icon", "aria-hidden": "true" }, "?"),
    el("h2", {}, T(title)),
    el("p", {}, T(body)),
    again ? el("button", { type: "button", class: "primary", onclick: again },
      T("unavailable.again")) : null));
}
