// The offline queue shared by the kiosk (/kiosk/<community>) and the phone survey (/s/<token>):
// answers are kept on the device with their response_id and uploaded through the batch
// endpoint with retries and backoff until the service acknowledges them, so a device that is
// offline loses nothing and a retried upload is never counted twice.
(function () {
  "use strict";

  function uuid4() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  function noop() {}

  /**
   * A queue kept in localStorage under ``options.key``.
   *
   * options.url()      the batch endpoint, or null while there is nowhere to send
   * options.token()    the bearer token, or null while there is none
   * options.onPending(n)            the number of answers waiting
   * options.onStatus(state, info)   "online" | "offline" | "auth" (401/403) | "closed" (409) |
   *                                 "throttled" (429) | "error" (other answers); info: {status, body}
   * options.onResults(results)      the per-answer results of an accepted batch (each final)
   */
  function create(options) {
    const key = options.key;
    const batchSize = options.batch || 100;
    const onPending = options.onPending || noop;
    const onStatus = options.onStatus || noop;
    const onResults = options.onResults || noop;

    function load() {
      try { return JSON.parse(localStorage.getItem(key)) || []; } catch (e) { return []; }
    }
    function save(queue) { localStorage.setItem(key, JSON.stringify(queue)); onPending(queue.length); }

    let delay = 1000, timer = null, uploading = false;
    function schedule(ms) { clearTimeout(timer); timer = setTimeout(upload, ms); }
    function backoff() {
      delay = Math.min(delay * 2, 60000);
      return delay * (0.75 + Math.random() / 2);
    }
    async function body(r) {
      try { return await r.json(); } catch (e) { return {}; }
    }

    async function upload() {
      const url = options.url(), token = options.token();
      const queue = load();
      if (uploading || !url || !token || !queue.length) { schedule(5000); return; }
      uploading = true;
      const batch = queue.slice(0, batchSize);
      try {
        const r = await fetch(url, {
          method: "POST",
          headers: {"Content-Type": "application/json", "Authorization": "Bearer " + token},
          body: JSON.stringify({responses: batch}),
        });
        if (r.status === 200) {
          const answer = await r.json();
          const done = new Set(answer.results.map((x) => x.response_id));  // every status is final
          save(load().filter((x) => !done.has(x.response_id)));
          delay = 1000;
          onStatus("online", {status: 200, body: answer});
          onResults(answer.results);
          schedule(load().length ? 200 : 5000);
        } else if (r.status === 401 || r.status === 403) {
          onStatus("auth", {status: r.status, body: await body(r)});
          schedule(30000);
        } else if (r.status === 429) {  // keep and retry, not before the service says
          const wait = Number(r.headers.get("Retry-After")) * 1000;
          onStatus("throttled", {status: 429, body: await body(r)});
          schedule(Math.max(wait || 0, backoff()));
        } else {  // 409 closed round, 5xx: keep and retry
          onStatus(r.status === 409 ? "closed" : "error", {status: r.status, body: await body(r)});
          schedule(backoff());
        }
      } catch (e) {
        onStatus(navigator.onLine && !(e instanceof TypeError) ? "error" : "offline", {status: 0, body: {}});
        schedule(backoff());
      } finally {
        uploading = false;
      }
    }
    window.addEventListener("online", () => { delay = 1000; schedule(100); });
    window.addEventListener("offline", () => onStatus("offline", {status: 0, body: {}}));

    return {
      pending: () => load().length,
      push(response) { const queue = load(); queue.push(response); save(queue); schedule(50); },
      schedule,
      refresh() { onPending(load().length); },
    };
  }

  window.SurveyQueue = {create, uuid4};
})();
