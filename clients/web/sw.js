// The service worker of the installable pages (guest and customer): it keeps the app
// shell (pages, scripts, styles, texts, icons, the browser client) so that a page opens
// without a network, shows that it is offline, and sends what it kept once it is back.
// Network first: online, every load takes the current files (and refreshes the copy); a
// request that fails or hangs (a tunnel) is answered from the copy. The hub's API, the
// WebSocket and photos are never cached: the pages read their state from the hub.

const CACHE = "roomlog-shell-v1";
const NETWORK_WAIT = 4000; // ms before a hanging request is answered from the copy
const SHELL = [
  "./", "index.html", "guest.html", "dj.html", "repair.html", "tech.html", "style.css",
  "config.json", "app.js", "ui.js", "i18n.js", "errors.js", "session.js", "pwa.js", "photos.js",
  "index.js", "guest.js", "dj.js", "repair.js", "tech.js", "queue-model.js",
  "repair-model.js", "messages/en.js", "messages/es.js", "guest.webmanifest",
  "repair.webmanifest", "icons/guest.svg", "icons/dj.svg", "icons/repair.svg",
  "icons/tech.svg", "icons/roomlog.svg", "icons/guest-192.png", "icons/repair-192.png",
  "/client/roomlog.js", "/client/store.js",
  "console.html", "console.css", "console.js", "console-rooms.js", "console-ui.js",
  "messages/console.js",
  "analytics.html", "analytics.js", "repair-stats.html", "repair-stats.js", "charts.js",
  "charts.css", "stats-model.js", "vendor/uplot/uPlot.iife.min.js", "vendor/uplot/uPlot.min.css",
];
const NEVER = ["/v1/", "/ws", "/health/", "/metrics"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL))
    .then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (NEVER.some((prefix) => url.pathname.startsWith(prefix))) return;
  event.respondWith(networkFirst(request));
});

async function networkFirst(request) {
  const cache = await caches.open(CACHE);
  try {
    const response = await withTimeout(fetch(request), NETWORK_WAIT);
    if (response.ok) cache.put(request, response.clone());
    return response;
  } catch (err) {
    // Pages carry their room in the query (guest.html?room=...): the shell is the same.
    const copy = await cache.match(request, { ignoreSearch: request.mode === "navigate" });
    if (copy) return copy;
    throw err;
  }
}

function withTimeout(promise, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("network timeout")), ms);
    promise.then((v) => { clearTimeout(timer); resolve(v); },
      (e) => { clearTimeout(timer); reject(e); });
  });
}
