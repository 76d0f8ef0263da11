// What a person reads when the hub says no: the error's code in the page's language (staff
// wording on staff pages), the facts the hub sent in `details` put into words, and the
// hub's own message where it says more than our sentence. Pure (no DOM): tested with
// `node --test clients/web/test/`.

import { has, list, t } from "./i18n.js";

/** Codes whose server message says more than our generic sentence (shown beside it). */
const SPECIFIC = new Set(["INVALID_TRANSITION", "INVALID_ARGS", "CONFLICT", "FORBIDDEN",
  "BAD_FRAME", "PAYLOAD_TOO_LARGE", "UNKNOWN_COMMAND", "LIMIT_EXCEEDED", "NOT_FOUND"]);

/**
 * What to tell a person about a RoomlogError: {text, detail}. `action` names what was
 * tried; `staff` picks staff wording. Facts the server sent in `details` are put into
 * words in the page's language (the QA checks that fail, the moves left); where we have
 * no such words the server's own message is the detail, since it is more specific than
 * our generic sentence.
 */
export function describeError(err, { action = null, staff = false, labels = {} } = {}) {
  const code = (err && err.code) || "UNKNOWN";
  const details = (err && err.details) || {};
  const known = has(`error.${code}`);
  const key = staff && has(`error.${code}.staff`) ? `error.${code}.staff` : `error.${code}`;
  let head = known ? t(key) : t("error.unknown");
  // The QA gate names what fails: that is the message, not our generic sentence.
  const worded = code === "INVALID_TRANSITION" && Array.isArray(details.failed);
  if (worded) {
    head = details.failed.length ? t("error.qaFailed", { items: list(details.failed) })
      : t("error.qaNone");
  }
  const parts = [];
  if (Array.isArray(details.allowed) && !worded) {
    parts.push(details.allowed.length
      ? t("error.allowed", { moves: list(details.allowed.map((s) => labels[s] || s)) })
      : t("error.noMoves"));
  }
  if (err && typeof err.retryAfter === "number" && err.retryAfter > 0) {
    parts.push(t("error.retryIn", { seconds: Math.ceil(err.retryAfter) }));
  }
  let detail = parts.join(" ");
  // Where we have no words for the facts, the server's message is more specific than
  // our sentence (and for a code we do not know, it is all there is).
  if (!detail && !worded && err && err.message && err.message !== code
      && (!known || SPECIFIC.has(code))) {
    detail = err.message;
  }
  return { text: action ? t("error.during", { action: String(action), text: head }) : head,
    detail };
}
