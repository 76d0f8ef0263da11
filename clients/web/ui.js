// The DOM side of the web app's pages: a tiny element builder whose texts follow the
// language switch, and the toast stack. No framework, no build step.

import { onLanguage, t } from "./i18n.js";

/** A text of the catalogue that relabels itself when the language changes. */
export class Text {
  constructor(key, params = {}) {
    this.key = key;
    this.params = params;
  }

  toString() {
    return t(this.key, this.params);
  }
}

/** `T("guest.form.heading")`: a child or attribute value that follows the language. */
export const T = (key, params) => new Text(key, params);

function textNode(child) {
  if (child instanceof Text) {
    return el("span", { "data-i18n": child.key,
      "data-i18n-params": Object.keys(child.params).length ? JSON.stringify(child.params) : null },
    String(child));
  }
  return child instanceof Node ? child : document.createTextNode(String(child));
}

/**
 * `el("button", {class: "x", onclick, title: T("gate.retry")}, T("gate.retry"), child)`: an
 * element. `on*` functions become listeners; `dataset` and `style` objects are merged;
 * null, undefined and false attributes and children are left out; Text values (T())
 * are relabelled by `relabel()`.
 */
export function el(tag, attrs = {}, ...children) {
  const node = tag.includes(":") ? document.createElementNS("http://www.w3.org/2000/svg",
    tag.split(":")[1]) : document.createElement(tag);
  const i18nAttrs = {};
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (value instanceof Text) {
      node.setAttribute(key, String(value));
      i18nAttrs[key] = [value.key, value.params];
    } else if (key === "class") {
      node.setAttribute("class", value);
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else if (key === "style" && typeof value === "object") {
      Object.assign(node.style, value);
    } else if (key in node && typeof value !== "string" && !(node instanceof SVGElement)) {
      node[key] = value;
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  if (Object.keys(i18nAttrs).length) node.dataset.i18nAttrs = JSON.stringify(i18nAttrs);
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(textNode(child));
  }
  return node;
}

/**
 * Replace the children of `node` with `children`. A live list is redrawn at every
 * event: the keyboard focus stays on the element with the same `data-key` (or, when
 * that one is gone, the one now at its place), instead of falling back to the page.
 */
export function fill(node, ...children) {
  const active = document.activeElement;
  const held = active && active !== node && node.contains(active) && active.dataset.key
    ? { key: active.dataset.key,
      index: [...node.querySelectorAll("[data-key]")].indexOf(active) } : null;
  node.replaceChildren();
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(textNode(child));
  }
  if (held) {
    const keyed = [...node.querySelectorAll("[data-key]")];
    const next = keyed.find((e) => e.dataset.key === held.key)
      || keyed[Math.min(held.index, keyed.length - 1)];
    if (next) next.focus();
  }
  return node;
}

/** Put every catalogue text under `root` into the current language. */
export function relabel(root = document) {
  for (const node of root.querySelectorAll("[data-i18n]")) {
    const params = node.dataset.i18nParams ? JSON.parse(node.dataset.i18nParams) : {};
    node.textContent = t(node.dataset.i18n, params);
  }
  for (const node of root.querySelectorAll("[data-i18n-attrs]")) {
    for (const [attr, [key, params]] of Object.entries(JSON.parse(node.dataset.i18nAttrs))) {
      node.setAttribute(attr, t(key, params));
    }
  }
}

onLanguage(() => globalThis.document && relabel(document));

// -- toasts ---------------------------------------------------------------------------------

const MAX_TOASTS = 3;
const DEFAULT_MS = { ok: 4000, info: 5000, warn: 8000, error: 8000 };
const shown = new Map(); // key -> {node, count, timer}

function toastBox() {
  let box = document.querySelector("#toasts");
  if (!box) {
    box = el("div", { id: "toasts", "aria-live": "polite", "aria-relevant": "additions" });
    document.body.append(box);
  }
  return box;
}

function dismiss(key) {
  const entry = shown.get(key);
  if (!entry) return;
  clearTimeout(entry.timer);
  shown.delete(key);
  entry.node.remove();
}

/**
 * A short message in the stack at the bottom of the screen. `kind` says what it means
 * (ok: green, info: neutral, warn: amber, error: red). The same message again does not
 * stack: it counts (×2) and stays a little longer. At most three are shown (the oldest
 * goes); each expires after `ms` (0: until dismissed) and has a close button.
 * `detail`: a second, smaller line (e.g. what the server said).
 */
export function toast(text, { kind = "info", detail = "", ms = DEFAULT_MS[kind] ?? 5000 } = {}) {
  const key = `${kind}\n${text}\n${detail}`;
  const box = toastBox();
  let entry = shown.get(key);
  if (entry) {
    entry.count += 1;
    const times = entry.node.querySelector(".times");
    times.hidden = false;
    times.textContent = `×${entry.count}`;
    box.append(entry.node); // the newest at the end, and the last to go
    shown.delete(key);
    shown.set(key, entry);
  } else {
    const node = el("div", { class: `toast ${kind}`, "data-testid": `toast-${kind}`,
      role: kind === "error" ? "alert" : null },
    el("div", { class: "msg" }, el("span", { class: "text" }, text),
      detail ? el("small", { class: "detail" }, detail) : null),
    el("span", { class: "times", hidden: true }),
    el("button", { type: "button", class: "close", "aria-label": t("common.dismiss"),
      onclick: () => dismiss(key) }, "×"));
    entry = { node, count: 1, timer: null };
    shown.set(key, entry);
    box.append(node);
    while (shown.size > MAX_TOASTS) dismiss(shown.keys().next().value);
  }
  clearTimeout(entry.timer);
  if (ms) entry.timer = setTimeout(() => dismiss(key), ms);
  return entry.node;
}

/** Remove every toast (tests take screenshots without them). */
export function clearToasts() {
  for (const key of [...shown.keys()]) dismiss(key);
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
