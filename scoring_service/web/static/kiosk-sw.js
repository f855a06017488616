// Service worker of the kiosk page: the page and its files come from the cache when
// the network is down, so a kiosk that restarts offline still collects answers.
// API calls are never cached; answers wait in the page's own queue.
const CACHE = "scoring-kiosk-v1";

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) =>
    cache.addAll(["/static/common.css", "/static/kiosk.css", "/static/survey-queue.js", "/static/kiosk.js"])));
  self.skipWaiting();
});

self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  const cacheable = event.request.method === "GET" && url.origin === self.location.origin &&
    (url.pathname.startsWith("/kiosk/") || url.pathname.startsWith("/static/"));
  if (!cacheable) return;
  // network first (fresh questions and code), the cached copy when offline
  event.respondWith(fetch(event.request).then((response) => {
    if (response.ok) {
      const copy = response.clone();
      caches.open(CACHE).then((cache) => cache.put(event.request, copy));
    }
    return response;
  }).catch(() => caches.match(event.request)));
});
