// What people read when the hub refuses something (errors.js).  node --test clients/web/test/

import assert from "node:assert/strict";
import { test } from "node:test";

import { describeError } from "../errors.js";
import { setLanguage } from "../i18n.js";

const err = (code, message, extra = {}) => ({ code, message, details: null, retryAfter: null,
  ...extra });

test("the QA gate says which checks fail, in the reader's language", () => {
  setLanguage("en", { remember: false });
  const qa = err("INVALID_TRANSITION", "repair:t1 is quality_check: ready_for_pickup needs "
    + "every required QA item passed; failed: touch screen, camera; allowed moves for you: "
    + "repairing, ready_for_pickup", { details: { status: "quality_check",
    allowed: ["repairing", "ready_for_pickup"], failed: ["touch screen", "camera"], recorded: 3 } });
  assert.deepEqual(describeError(qa, { staff: true }), {
    text: "Ready for pickup needs every required check passed; failed: touch screen and camera.",
    detail: "" });
  const none = err("INVALID_TRANSITION", "…", { details: { failed: [], recorded: 0 } });
  assert.match(describeError(none, { staff: true }).text, /nothing is recorded yet/);
  setLanguage("es", { remember: false });
  assert.equal(describeError(qa, { staff: true }).text, "Para «Listo para recoger» hay que "
    + "superar todas las comprobaciones obligatorias; fallan: touch screen y camera.");
  setLanguage("en", { remember: false });
});

test("where we have no words for it, the hub's more specific message is shown too", () => {
  const refused = err("FORBIDDEN", "queue:q belongs to dj1; dj2 may not run request.accept");
  assert.deepEqual(describeError(refused, { staff: true, action: "Accept “Hey Jude”" }), {
    text: "Accept “Hey Jude”: Your role may not do that here.",
    detail: "queue:q belongs to dj1; dj2 may not run request.accept" });
  assert.equal(describeError(refused).text, "You are not allowed to do that.", "guest wording");
  const moves = err("INVALID_TRANSITION", "…", { details: { allowed: ["on_hold", "cancelled"] } });
  assert.equal(describeError(moves, { staff: true, labels: { on_hold: "On hold",
    cancelled: "Cancelled" } }).detail, "Possible from here: On hold and Cancelled.");
  assert.deepEqual(describeError(err("SOMETHING_NEW", "a code of a later hub")),
    { text: "That did not work.", detail: "a code of a later hub" });
});

test("a guest's refusals are fully said in the guest's words", () => {
  assert.deepEqual(describeError(err("DUPLICATE_REQUEST", "you already requested song:x")),
    { text: "You already requested this song.", detail: "" });
  assert.deepEqual(describeError(err("RATE_LIMITED", "3 submits per minute",
    { retryAfter: 41.2 })), { text: "Slow down a little.", detail: "Try again in 42 s." });
});
