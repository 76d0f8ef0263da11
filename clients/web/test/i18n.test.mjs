// The catalogues of the web app: complete in every language, every key the pages use
// exists, and Intl formats per language.   node --test clients/web/test/

import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import {
  LANGUAGES, extend, money, number, percent, pickLanguage, setLanguage, t, timeAgo,
} from "../i18n.js";
import consoleTexts from "../messages/console.js";

extend(consoleTexts); // the console brings its own texts (console.js does the same)

const WEB = join(dirname(fileURLToPath(import.meta.url)), "..");
const placeholders = (text) => [...String(text).matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
const forms = (value) => (typeof value === "object" ? Object.values(value) : [value]);

test("every language has exactly the keys of English, with the same placeholders", () => {
  const en = LANGUAGES.en[1];
  for (const [lang, [, catalogue]] of Object.entries(LANGUAGES)) {
    assert.deepEqual(Object.keys(catalogue).sort(), Object.keys(en).sort(), lang);
    for (const [key, value] of Object.entries(catalogue)) {
      assert.equal(typeof value, typeof en[key], `${lang} ${key}`);
      const wanted = placeholders(forms(en[key]).join(" "));
      for (const form of forms(value)) {
        assert.ok(form.trim(), `${lang} ${key} is empty`);
        for (const name of placeholders(form)) assert.ok(wanted.includes(name), `${lang} ${key}`);
      }
      if (typeof value === "object") assert.ok("other" in value, `${lang} ${key}: no "other"`);
    }
  }
});

test("every text the pages ask for by name is in the catalogue", () => {
  const en = LANGUAGES.en[1];
  const missing = [];
  for (const file of readdirSync(WEB).filter((f) => f.endsWith(".js"))) {
    const source = readFileSync(join(WEB, file), "utf8");
    for (const m of source.matchAll(/\b(?:t|T)\(\s*"([a-z][\w]*\.[\w.]+)"/g)) {
      if (!(m[1] in en)) missing.push(`${file}: ${m[1]}`);
    }
  }
  assert.deepEqual(missing, []);
});

test("the language comes from the browser's list; unknown ones fall back to English", () => {
  assert.equal(pickLanguage(["es-MX", "en"]), "es");
  assert.equal(pickLanguage(["fr-FR", "es"]), "es");
  assert.equal(pickLanguage(["de"]), "en");
  assert.equal(pickLanguage([]), "en");
});

test("texts, plurals, numbers, prices and times in the reader's language", () => {
  setLanguage("es", { remember: false });
  assert.equal(t("common.votes", { count: 1 }), "1 voto");
  assert.equal(t("common.votes", { count: 1234 }), "1234 votos");
  assert.equal(t("dj.stat.ofCap", { n: 12, cap: 30 }), "12 / 30");
  assert.equal(money(129.5, "EUR"), "129,50\u00a0€");
  assert.equal(money(12950, "EUR", { minor: true }), "129,50\u00a0€");
  assert.equal(number(1234567), "1.234.567");
  assert.equal(percent(70), "70\u00a0%");
  assert.equal(timeAgo(Date.now() - 5 * 60_000), "hace 5 minutos");
  setLanguage("en", { remember: false });
  assert.equal(t("common.votes", { count: 1 }), "1 vote");
  assert.equal(t("common.votes", { count: 2 }), "2 votes");
  assert.equal(money(129.5, "EUR"), "€129.50");
  assert.equal(money(500, "JPY", { minor: true }), "¥500", "a currency without cents");
  assert.equal(number(1234567), "1,234,567");
  assert.equal(timeAgo(Date.now() - 2 * 3600_000), "2 hours ago");
  assert.equal(t("no.such.key"), "no.such.key");
});

test("a page can bring texts of its own", () => {
  extend({ en: { "ops.title": "Operator console" }, es: { "ops.title": "Consola de operación" } });
  assert.equal(t("ops.title"), "Operator console");
  assert.equal(t("ops.title", {}, "es"), "Consola de operación");
});
