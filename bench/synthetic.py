"""Synthetic rounds for the benchmarks: many communities, millions of responses, written fast.

Responses go through ``Store.add_responses`` (the real write path, with its
kept statistics, the anomaly report's included); reference data and inspections are written in bulk.
Each response has its answers, a receive time spread over the round's months and its community's
kiosk key, as the service stores them, so the anomaly statistics are those of real responses.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from scoring_service.domain.canonical import digest
from scoring_service.domain.rubric import Rubric
from scoring_service.domain.rubric_schema import load_rubric_file
from scoring_service.domain.timeutil import to_stored
from scoring_service.store import Store

ROUND_ID = "national"


def make_round(store: Store, rubric: Rubric, n_communities: int, n_responses: int, n_districts: int = 300,
               seed: int = 1, log=print, round_fields: dict | None = None,
               inspection: Callable[[np.random.Generator, dict, str], dict] | None = None) -> dict:
    """The national round ``ROUND_ID`` (year 2030); ``round_fields`` adds to the round (e.g. SPEC §11's).

    Each community has one inspection by each of two agencies. ``inspection(rng, community, agency_id)``,
    when given, makes a version's fields (``checks``, the per-item sums, ``inspected_at``, …; e.g. failed
    checks for SPEC §13); without it a version has per-item points and no checks."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    store.put_rubric(rubric.rubric_id, rubric.body, digest(rubric.body), "2020-01-01T00:00:00.000000Z")
    districts = [f"d{i:03d}" for i in range(n_districts)]
    for d in districts:
        store.put_district({"district_id": d, "name_zh": f"第{d[1:]}区", "name_en": f"District {d[1:]}"})
    assignment = rng.integers(0, n_districts, n_communities)
    communities = [{
        "community_id": f"c{i:06d}", "name_zh": f"小区{i}", "district_id": districts[assignment[i]],
        "households": int(np.clip(rng.lognormal(np.log(400), 0.6), 40, 3000)), "renovation_year": 2030,
        "has_elevator": bool(rng.random() < 0.3), "heating_retrofit": bool(rng.random() < 0.7),
    } for i in range(n_communities)]
    for start in range(0, n_communities, 5000):
        store.put_communities(communities[start:start + 5000])
    quotas = {d: int(max(1, np.sum(assignment == i))) for i, d in enumerate(districts)}
    store.create_round({"round_id": ROUND_ID, "year": 2030, "rubric_id": rubric.rubric_id, "title": "全国测评",
                        "opens_at": "2030-01-01T00:00:00.000000Z", "closes_at": "2030-12-31T00:00:00.000000Z",
                        "quotas": quotas, "reward": {"pool_fen": 10**12, "district_share_pct": 40,
                                                     "top_districts": 30},
                        "status": "open", "digest": "bench", "created_at": "2030-01-01T00:00:00.000000Z",
                        **(round_fields or {})})
    log(f"  reference data: {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    n_items = len(rubric.items)
    for c, community in enumerate(communities):
        for agency in ("a1", "a2"):
            if inspection is None:
                points = [float(sum(ch["max_points"] for ch in item["checks"]) * rng.uniform(0.6, 1.0))
                          for item in rubric.items]
                maxima = [float(sum(ch["max_points"] for ch in item["checks"])) for item in rubric.items]
                fields = {"content_hash": f"h{c}{agency}", "inspected_at": "2030-06-01T00:00:00.000000Z",
                          "item_points": points, "item_max": maxima, "vetoes": [], "checks": {}}
            else:
                fields = inspection(rng, community, agency)
            version = {"community_id": community["community_id"], "amend_reason": None, **fields, "version": 1}
            store.add_inspection({"inspection_id": str(uuid.UUID(int=c * 2 + (agency == "a2"))),
                                  "round_id": ROUND_ID, "community_id": community["community_id"],
                                  "agency_id": agency, "versions": [version]})
        if c % 5000 == 4999:
            log(f"  inspections: {c + 1} communities, {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    per_community = n_responses // n_communities
    codes = [item["code"] for item in rubric.items]
    opens = datetime(2030, 1, 1, tzinfo=timezone.utc)
    batch = []
    written = 0
    for c, community in enumerate(communities):
        levels = rng.integers(0, 6, size=(per_community, n_items + 1))
        received = np.sort(rng.integers(0, 360 * 86400 * 10**6, size=per_community))  # µs into the round
        for r in range(per_community):
            row = levels[r].tolist()
            at = to_stored(opens + timedelta(microseconds=int(received[r])))
            batch.append({"response_id": f"{c:06d}-{r:05d}", "round_id": ROUND_ID,
                          "community_id": community["community_id"], "respondent_type": "resident",
                          "household_hash": None, "content_hash": "x", "levels": row,
                          "submitted_at": at, "received_at": at, "key_id": f"kiosk-{c:06d}",
                          "answers": {code: level for code, level in zip(codes, row) if level},
                          "overall": row[-1] or None})
        if len(batch) >= 5000:
            written += sum(o.value == "created" for o in store.add_responses(ROUND_ID, batch, n_items))
            batch = []
            if written % 500_000 < 5000:
                log(f"  responses: {written}, {time.perf_counter() - t0:.1f} s")
    if batch:
        written += sum(o.value == "created" for o in store.add_responses(ROUND_ID, batch, n_items))
    log(f"  responses: {written} in {time.perf_counter() - t0:.1f} s")
    return {"communities": n_communities, "responses": written}


def generation_store(instance: Path) -> tuple[Store, dict]:
    """A new SQLite store in the folder ``instance`` to generate a round into, and the environment of an
    app on it. Generation only turns fsync off (on this connection): the measured app opens its own
    connections, with synchronous=FULL."""
    from scoring_service.store.sqlite import SQLiteStore

    instance.mkdir(parents=True, exist_ok=True)
    store = SQLiteStore(instance / "scoring.sqlite3")
    store.init()
    store._conn().execute("PRAGMA synchronous = OFF")
    return store, {"SCORING_INSTANCE_PATH": str(instance), "SCORING_SECRET_KEY": "bench-secret"}


if __name__ == "__main__":
    import sys

    from scoring_service.store.sqlite import SQLiteStore

    path, n_c, n_r = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    Path(path).unlink(missing_ok=True)
    store = SQLiteStore(path)
    store.init()
    rubric = load_rubric_file(Path(__file__).resolve().parents[1] / "rubrics" / "shenyang-2018.json")
    print(json.dumps(make_round(store, rubric, n_c, n_r)))
