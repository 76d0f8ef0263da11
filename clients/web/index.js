// The index: what each page is for, and links to them. A token pasted here is handed
// to the page in this tab's sessionStorage when a link is followed, never in the URL.

import { tokenClaims } from "/client/roomlog.js";
import { T, el, fill, initLanguage, languageFooter, onLanguage, relabel, t } from "./app.js";
import { keepToken } from "./session.js";

initLanguage();
relabel(document);
document.querySelector("header .title").append(
  el("span", { class: "muted" }, T("index.tagline")));
document.title = "roomlog";

const PAGES = [
  { href: "guest.html", page: "guest", needs: "room", icon: "guest", key: "guest", role: "guest" },
  { href: "dj.html", page: "dj", needs: "room", icon: "dj", key: "dj", role: "dj" },
  { href: "repair.html", page: "customer", needs: "ticket", icon: "repair", key: "repair",
    role: "customer" },
  { href: "tech.html", page: "technician", needs: null, icon: "tech", key: "tech",
    role: "technician" },
  { href: "console.html", page: "console", needs: null, icon: "roomlog", key: "console",
    role: "admin" },
  { href: "analytics.html", page: "analytics", needs: "room", icon: "dj", key: "analytics",
    role: "dj" },
  { href: "repair-stats.html", page: "repair-stats", needs: null, icon: "tech",
    key: "repairStats", role: "admin" },
];

const token = el("textarea", { id: "token", name: "token", rows: 3, spellcheck: "false",
  placeholder: "roomlog token --user u1 --role guest" });
const room = el("input", { id: "room", name: "room", value: "queue:demo",
  placeholder: "queue:club42-set1" });
const ticket = el("input", { id: "ticket", name: "ticket", value: "t-100",
  placeholder: "t-2026-0042" });
const who = el("p", { class: "muted", "aria-live": "polite" });
const fields = { room, ticket };

const tiles = PAGES.map((p) => el("a", { class: "card tile", href: p.href,
  dataset: { page: p.page }, onclick: (e) => follow(e, p) },
el("img", { class: "icon", src: `icons/${p.icon}.svg`, alt: "" }),
el("h2", {}, T(`index.${p.key}.title`)),
el("p", { class: "muted" }, T(`index.${p.key}.text`)),
el("small", {}, T("index.role"), " ", el("code", {}, p.role))));

fill(document.querySelector("main"),
  el("form", { class: "card", id: "links", onsubmit: (e) => e.preventDefault() },
    el("h2", {}, T("index.form.heading")),
    el("p", { class: "muted" }, T("index.form.text")),
    el("label", { for: "token" }, T("setup.token")), token,
    el("div", { class: "row" }, el("div", {}, el("label", { for: "room" }, T("setup.queue")), room),
      el("div", {}, el("label", { for: "ticket" }, T("setup.ticket")), ticket)),
    who),
  el("div", { class: "tiles" }, tiles),
  el("section", { class: "card" }, el("h2", {}, T("index.demo.heading")),
    el("p", { class: "muted" }, T("index.demo.text")),
    el("pre", { tabindex: 0 }, [...new Set(PAGES.map((p) => `roomlog token --user ${
      p.role === "customer" ? "cust1" : p.role === "technician" ? "tech1" : p.role === "dj" ? "dj1"
        : p.role === "admin" ? "admin1" : "u1"} --role ${p.role}`))].join("\n")),
    el("p", { class: "muted" }, T("index.demo.repair"))));

function follow(event, p) {
  const value = token.value.trim();
  if (value) keepToken(p.page, value);
  event.currentTarget.href = link(p);
}

function link(p) {
  const q = new URLSearchParams();
  if (p.needs && fields[p.needs].value.trim()) q.set(p.needs, fields[p.needs].value.trim());
  return `${p.href}${q.size ? `?${q}` : ""}`;
}

function update() {
  const claims = tokenClaims(token.value.trim());
  fill(who, claims ? t("index.who", { user: claims.sub, role: claims.role || "guest" }) : "");
  PAGES.forEach((p, i) => { tiles[i].href = link(p); });
}

document.querySelector("#links").addEventListener("input", update);
onLanguage(update);
update();

languageFooter();
