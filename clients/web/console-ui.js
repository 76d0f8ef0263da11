// Small DOM pieces the console's sections share (console.js, console-rooms.js).

import { T, el } from "./app.js";

/** A table in a region that scrolls sideways on a phone (and can be reached by keyboard). */
export function table(label, heads, rows) {
  return el("div", { class: "scroll", tabindex: 0, role: "region", "aria-label": label },
    el("table", {}, el("thead", {}, el("tr", {}, heads.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows)));
}

/** A labelled control. */
export const field = (id, key, control) => el("div", {}, el("label", { for: id }, T(key)), control);

/** A text input named after its id. */
export const input = (id, attrs = {}) => el("input", { id, name: id, autocomplete: "off", ...attrs });

/** A value as indented JSON, in a block the keyboard can scroll. */
export const json = (value, label) => el("pre", { tabindex: 0, "aria-label": label },
  JSON.stringify(value, null, 2));
