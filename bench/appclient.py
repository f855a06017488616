"""What the in-process latency figures share: an app on a bench instance with a leadership key,
and the summary of timings after a write (p50/p99) beside the first and the cached answer."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def leadership_client(env: dict):
    """(app, test client, headers) for the instance in ``env``, limits off and logs quiet."""
    from scoring_service import create_app
    from scoring_service.services.keys import new_key

    app = create_app({"INSTANCE_PATH": env["SCORING_INSTANCE_PATH"], "SECRET_KEY": "bench-secret",
                      "DATABASE_URL": env.get("SCORING_DATABASE_URL"), "RATELIMIT_ENABLED": False,
                      "LOG_LEVEL": "WARNING"})
    record, token = new_key("leadership", "bench")
    app.extensions["scoring"].store.create_key(record)
    return app, app.test_client(), {"Authorization": f"Bearer {token}"}


def after_write_summary(after_write: list[float], warm: list[float], first: float, size: int,
                        repeats: int) -> dict:
    """Seconds → the milliseconds RESULTS.md shows."""
    def pct(xs, q):
        return 1000 * float(np.percentile(xs, q))

    return {"after_write_p50_ms": pct(after_write, 50), "after_write_p99_ms": pct(after_write, 99),
            "cached_p50_ms": pct(warm, 50), "first_ms": 1000 * first, "body_mb": size / 2**20,
            "repeats": repeats}


def after_write_figure(title: str, first_name: str, result: dict, target_ms: float) -> tuple[str, str, str, str]:
    """A RESULTS.md row: the figure, what was measured, the target and the verdict."""
    ok = result["after_write_p50_ms"] <= target_ms
    return (title,
            f"**{result['after_write_p50_ms']:.0f}** / {result['after_write_p99_ms']:.0f} ms ({first_name} "
            f"{result['first_ms']:.0f} ms, nothing written since {result['cached_p50_ms']:.0f} ms, "
            f"{result['body_mb']:.1f} MB of JSON)",
            f"p50 ≤ {target_ms:.0f} ms", "met" if ok else "**missed**")


def time_after_writes(client, url: str, headers: dict, write: Callable[[int], None], repeats: int) -> dict:
    """GET ``url`` first (cold), then ``repeats`` times: ``write(i)``, GET (after the write), GET again (cached)."""
    def timed() -> tuple[float, int]:
        started = time.perf_counter()
        r = client.get(url, headers=headers)
        size = len(r.get_data())  # the whole body read: a streamed response is produced while it is read
        elapsed = time.perf_counter() - started
        assert r.status_code == 200, r.get_data(as_text=True)[:300]
        return elapsed, size

    first, size = timed()
    after_write, warm = [], []
    for i in range(repeats):
        write(i)
        after_write.append(timed()[0])
        warm.append(timed()[0])
    return after_write_summary(after_write, warm, first, size, repeats)
