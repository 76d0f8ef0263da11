// Languages of the web app: one catalogue of texts per language, the language chosen
// from the browser (or by the person, with the switch in each page's footer), and numbers,
// prices and times formatted for it with Intl. No DOM here except `document.documentElement`
// (lang) and localStorage (the choice); the pages relabel themselves (see ui.js).
//
//   import { t, money } from "./i18n.js";
//   t("guest.mine.heading")                     // "My requests" / "Mis peticiones"
//   t("common.votes", { count: 3 })             // plural forms by Intl.PluralRules
//   money(12950, "EUR")                         // minor units: "129,50 €" in Spanish
//
// A catalogue is a flat object of keys to texts. A text may hold `{name}` placeholders
// and, for counts, be an object of plural forms ({one, other, ...}) chosen with the
// `count` parameter. Adding a language: a new file under messages/ with every key of
// messages/en.js (the unit tests check that), and one line in LANGUAGES. Adding texts
// (a new page, prices): new keys in every catalogue; `extend()` lets a page bring its
// own keys without touching these files.

import en from "./messages/en.js";
import es from "./messages/es.js";

/** The languages offered: code -> [name in that language, catalogue]. */
export const LANGUAGES = {
  en: ["English", en],
  es: ["Español", es],
};
const FALLBACK = "en";
const CHOICE_KEY = "roomlog.lang";

let current = FALLBACK;
const listeners = new Set();

/** The best language for `wanted` (navigator.languages, most preferred first). */
export function pickLanguage(wanted = [], offered = Object.keys(LANGUAGES)) {
  for (const tag of wanted) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (offered.includes(base)) return base;
  }
  return FALLBACK;
}

function storage() {
  try {
    return globalThis.localStorage || null;
  } catch {
    return null; // blocked storage (some private modes)
  }
}

/** Start with the person's choice, else the browser's languages. */
export function initLanguage(nav = globalThis.navigator) {
  const chosen = storage()?.getItem(CHOICE_KEY);
  const wanted = chosen ? [chosen] : (nav && (nav.languages || [nav.language])) || [];
  setLanguage(pickLanguage(wanted), { remember: false });
  return current;
}

/** Switch the language (remembered for this site); listeners redraw. */
export function setLanguage(lang, { remember = true } = {}) {
  if (!LANGUAGES[lang]) lang = FALLBACK;
  if (remember) storage()?.setItem(CHOICE_KEY, lang);
  const changed = lang !== current;
  current = lang;
  if (globalThis.document) document.documentElement.lang = lang;
  if (changed) for (const fn of [...listeners]) fn(lang);
}

export function language() {
  return current;
}

/** Call `fn(lang)` after every switch; returns a function that stops it. */
export function onLanguage(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Add texts (a page's own keys, per language) to the catalogues. */
export function extend(texts) {
  for (const [lang, entries] of Object.entries(texts)) {
    if (LANGUAGES[lang]) Object.assign(LANGUAGES[lang][1], entries);
  }
}

/** Whether `key` has a text (in the current language or the fallback). */
export function has(key) {
  return key in LANGUAGES[current][1] || key in LANGUAGES[FALLBACK][1];
}

/**
 * The text of `key` in the current language (the fallback's when missing, the key
 * itself when unknown), with `{name}` replaced from `params`; numbers are formatted
 * for the language. Plural texts pick their form with `params.count`.
 */
export function t(key, params = {}, lang = current) {
  let text = LANGUAGES[lang][1][key] ?? LANGUAGES[FALLBACK][1][key];
  if (text === undefined) return key;
  if (typeof text === "object") {
    const form = new Intl.PluralRules(lang).select(Number(params.count ?? 0));
    text = text[form] ?? text.other;
  }
  return text.replace(/\{(\w+)\}/g, (whole, name) => {
    if (!(name in params)) return whole;
    const value = params[name];
    return typeof value === "number" ? number(value, lang) : String(value);
  });
}

// -- Intl formats ---------------------------------------------------------------------

export function number(n, lang = current) {
  return new Intl.NumberFormat(lang).format(n);
}

export function percent(n, lang = current) {
  return new Intl.NumberFormat(lang, { style: "percent", maximumFractionDigits: 0 })
    .format(n / 100);
}

/** A price: `amount` in the currency's major units (129.5 EUR), or `{minor: true}`. */
export function money(amount, currency, { minor = false, lang = current } = {}) {
  try {
    const format = new Intl.NumberFormat(lang, { style: "currency", currency });
    const digits = format.resolvedOptions().maximumFractionDigits;
    return format.format(minor ? amount / 10 ** digits : amount);
  } catch {
    return `${amount} ${currency}`; // an unknown currency code
  }
}

/** A time of day (14:05 / 2:05 PM). */
export function clock(ms, lang = current) {
  return ms ? new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit" })
    .format(new Date(ms)) : "";
}

/** A day and time (Tue, 3 Mar, 14:05). */
export function dateTime(ms, lang = current) {
  return ms ? new Intl.DateTimeFormat(lang, { weekday: "short", month: "short",
    day: "numeric", hour: "2-digit", minute: "2-digit" }).format(new Date(ms)) : "";
}

/** "just now", "5 minutes ago", "2 hours ago", then the date. */
export function timeAgo(ms, now = Date.now(), lang = current) {
  if (!ms) return "";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 45) return t("common.justNow", {}, lang);
  const rel = new Intl.RelativeTimeFormat(lang, { numeric: "auto" });
  if (s < 3600) return rel.format(-Math.round(s / 60), "minute");
  if (s < 86400) return rel.format(-Math.round(s / 3600), "hour");
  return new Intl.DateTimeFormat(lang, { dateStyle: "medium" }).format(new Date(ms));
}

/** A list: "a, b and c" / "a, b y c". */
export function list(items, lang = current) {
  return new Intl.ListFormat(lang, { style: "long", type: "conjunction" }).format(items);
}
