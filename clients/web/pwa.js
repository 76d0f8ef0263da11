// The installable app (guest and customer pages): the service worker that keeps the app
// shell for offline use (sw.js). A browser without service workers (or a page not served
// over https or localhost) simply works online only.

export function registerWorker() {
  if (!("serviceWorker" in navigator)) return;
  navigator.serviceWorker.register("sw.js").catch((err) => {
    console.warn("roomlog: no offline app shell", err);
  });
}
