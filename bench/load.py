"""A small load generator: several processes, each with one keep-alive connection, for a fixed time."""

from __future__ import annotations

import http.client
import json
import multiprocessing as mp
import time
import uuid


#: what each request posts (a new response_id each time): a resident's survey in the demo's open round
SURVEY = {"community_id": "heping-001", "submitted_at": "2019-09-20T10:00:00+08:00",
          "answers": {"cleaning": 4, "order": 5, "repairs": 3}, "overall": 4}


def _worker(port: int, path: str, token: str | None, seconds: float, template: dict, out):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    ok = errors = 0
    latencies = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        body = {"response_id": str(uuid.uuid4()), **template}
        data = json.dumps(body)
        started = time.perf_counter()
        try:
            conn.request("POST", path, body=data, headers=headers)
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        latencies.append(time.perf_counter() - started)
        if response.status in (200, 201):
            ok += 1
        else:
            errors += 1
    out.put((ok, errors, latencies))


def post_load(port: int, path: str, token: str | None, seconds: float = 8.0, clients: int = 4,
              template: dict = SURVEY) -> dict:
    """Requests per second of single-survey POSTs (``template`` with a new response_id) from ``clients``
    processes."""
    queue = mp.Queue()
    procs = [mp.Process(target=_worker, args=(port, path, token, seconds, template, queue)) for _ in range(clients)]
    started = time.perf_counter()
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - started
    ok = sum(r[0] for r in results)
    latencies = sorted(x for r in results for x in r[2])
    # each client ran for exactly `seconds`; process start-up is not counted
    return {"rps": ok / seconds, "wall_s": elapsed, "ok": ok, "errors": sum(r[1] for r in results),
            "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else None}
