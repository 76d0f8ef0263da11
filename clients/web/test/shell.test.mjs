// The service worker's app shell (sw.js) lists every file a page needs offline: a page
// or module added later and forgotten there would load online and break in a tunnel.

import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const WEB = join(dirname(fileURLToPath(import.meta.url)), "..");

test("the offline shell has every page, module, catalogue and manifest", () => {
  const source = readFileSync(join(WEB, "sw.js"), "utf8");
  const shell = new Set(JSON.parse(`[${source.match(/const SHELL = \[([\s\S]*?)\];/)[1]
    .replace(/,\s*$/, "")}]`));
  const wanted = [
    ...readdirSync(WEB).filter((f) => /\.(html|js|css|webmanifest)$/.test(f) && f !== "sw.js"),
    ...readdirSync(join(WEB, "messages")).map((f) => `messages/${f}`),
    "config.json", "/client/roomlog.js", "/client/store.js",
  ];
  assert.deepEqual(wanted.filter((f) => !shell.has(f)), []);
  for (const f of shell) {
    if (f.startsWith("/") || f === "./" || f === "config.json") continue;
    assert.ok(readFileSync(join(WEB, f)), f); // and nothing listed is missing
  }
});
