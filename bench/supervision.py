"""Supervision report (SPEC §11, issue 13) of a national round after one milestone write.

    python -m bench.supervision                      # 20,000 communities, SQLite (about 2 minutes)
    python -m bench.supervision --communities 2000   # a quick look
    python -m bench.supervision --no-sqlite --mongo --mongo-communities 2000   # on FerretDB 1.24

``make bench`` (``python -m bench``) measures its item 7 with :func:`supervision_latency` on the part-two
national round of ``bench.parttwo`` (this round with funding and rectification items too). On FerretDB the round's
milestones are written in bulk in the store's document format (FerretDB finds a community's versions
by scanning the collection, so writing 180,000 one by one would take hours); the measured write goes
through the store as on SQLite.

The round is the bench's national round (``bench.synthetic.make_round``) following milestones, with
all nine milestones recorded for every community (most on time, some late, a few not yet reached at
the as-of date). Each measurement writes one milestone of one community through the store (a
replacement with a ``changed_reason``, as a district key would send) and then times
``GET /rounds/{r}/supervision`` through the app, JSON included.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.appclient import after_write_figure, leadership_client, time_after_writes  # noqa: E402
from bench.synthetic import ROUND_ID, generation_store, make_round  # noqa: E402
from scoring_service.domain import milestones as ms  # noqa: E402
from scoring_service.domain.rubric_schema import load_rubric_file  # noqa: E402
from scoring_service.store import Store  # noqa: E402

RUBRIC = load_rubric_file(ROOT / "rubrics" / "shenyang-2018.json")
TARGET_MS = 500.0
#: the 2018 notice's deadlines moved to the synthetic round's year
DEADLINES = {code: "2030" + deadline[4:] for code, deadline in ms.DEADLINES_2018.items()}
AS_OF = "2030-12-01"
ROUND_FIELDS = {"milestone_deadlines": DEADLINES, "progress_rule": "milestones", "progress_as_of": AS_OF}
VOTES = {"eligible_households": 300, "participants": 240, "in_favour": 200}


def log(*args):
    print(*args, flush=True)


def milestone_dates(rng: np.random.Generator) -> dict[str, str]:
    """Nine reach dates in the order rules' order: mostly on time, some late, the last ones sometimes
    after the as-of date (recorded, not yet reached at t)."""
    start = date(2030, 3, 1) + timedelta(days=int(rng.integers(0, 40)))
    slow = rng.random() < 0.15
    steps = {"plan_approved": 0, "residents_voted": 5, "illegal_structures_cleared": 10, "contract_signed": 20,
             "works_started": 30, "works_completed": 150, "accepted": 170, "management_assigned": 175,
             "settled": 200}
    delay = int(rng.integers(20, 120)) if slow else 0
    return {code: (start + timedelta(days=days + (delay if days >= 20 else 0))).isoformat()
            for code, days in steps.items()}


def version(round_id: str, community_id: str, code: str, reached_on: str, changed_reason: str | None = None) -> dict:
    record = {"round_id": round_id, "community_id": community_id, "code": code, "reached_on": reached_on,
              "note": None, "votes": VOTES if code == "residents_voted" else None,
              "management_mode": "property_company" if code == "management_assigned" else None,
              "changed_reason": changed_reason, "key_id": "bench", "recorded_at": "2030-12-01T00:00:00.000000Z"}
    record["content_hash"] = ms.content_hash(record)
    return record


def add_milestones(store: Store, round_id: str, community_ids: list[str], seed: int = 2) -> int:
    """All nine milestones of every community, through the store's write path."""
    rng = np.random.default_rng(seed)
    written = 0
    for community_id in community_ids:
        for code, reached_on in milestone_dates(rng).items():
            store.add_milestone_version(version(round_id, community_id, code, reached_on))
            written += 1
    return written


def add_milestones_in_bulk(store, round_id: str, community_ids: list[str], seed: int = 2) -> int:
    """The same versions written straight into a MongoStore's collection, in its document format (first
    versions: n 1..9 per community, seq 1, 2, … in the round): FerretDB finds a community's versions by
    scanning the collection, so 180,000 writes one by one would take hours."""
    from scoring_service.store.mongo import _milestone_id

    rng = np.random.default_rng(seed)
    docs, seq = [], 0
    for community_id in community_ids:
        for n, (code, reached_on) in enumerate(milestone_dates(rng).items(), start=1):
            seq += 1
            docs.append({**version(round_id, community_id, code, reached_on), "version": 1,
                         "_id": _milestone_id(round_id, seq), "n": n, "seq": seq})
    for start in range(0, len(docs), 5000):
        store.db.milestone_versions.insert_many(docs[start:start + 5000])
    store._bump("milestones")
    return len(docs)


def national_round(store: Store, communities: int, responses: int, bulk: bool = False,
                   round_fields: dict = ROUND_FIELDS, inspection=None) -> dict:
    """The bench's national round following milestones (``round_fields``: these or more), every milestone
    recorded; ``inspection`` as :func:`bench.synthetic.make_round` takes it."""
    started = time.perf_counter()
    make_round(store, RUBRIC, communities, responses, log=lambda *a: None, round_fields=round_fields,
               inspection=inspection)
    log(f"    round: {communities} communities, {responses} responses in {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    ids = [c["community_id"] for c in store.list_communities(renovation_year=2030)]
    written = (add_milestones_in_bulk if bulk else add_milestones)(store, ROUND_ID, ids)
    log(f"    milestones: {written} versions in {time.perf_counter() - started:.0f} s")
    return {"communities": communities, "responses": responses, "milestone_versions": written}


def sqlite_instance(base: Path, communities: int, responses: int) -> dict:
    store, env = generation_store(base / f"supervision-{communities}")
    national_round(store, communities, responses)
    store.close()
    return env


def supervision_latency(env: dict, round_id: str = ROUND_ID, repeats: int = 20) -> dict:
    """``GET /rounds/{r}/supervision`` after one milestone write (p50/p99), the first (cold) report and a
    report with nothing written since (cached)."""
    app, client, headers = leadership_client(env)
    store = app.extensions["scoring"].store
    communities = [c["community_id"] for c in store.list_communities(renovation_year=2030)]
    rng = np.random.default_rng(int(time.time()))

    def write(i: int) -> None:
        community = communities[int(rng.integers(0, len(communities)))]
        current = {v["code"]: v for v in store.milestone_versions(round_id, community)}
        settled = date.fromisoformat(current["settled"]["reached_on"])
        moved = (settled + timedelta(days=1 if i % 2 == 0 else -1)).isoformat()
        store.add_milestone_version(version(round_id, community, "settled", moved, f"bench {uuid.uuid4().hex}"))

    try:
        return time_after_writes(client, f"/api/v1/rounds/{round_id}/supervision", headers, write, repeats)
    finally:
        store.close()


def figure(result: dict, communities: int, store_name: str) -> tuple[str, str, str, str]:
    """The figure, what was measured, the target and the verdict (a RESULTS.md table row)."""
    title = (f"supervision report, national round ({communities} communities, all nine milestones recorded; "
             f"{store_name}), after one milestone write: p50 / p99")
    return after_write_figure(title, "first report", result, TARGET_MS)


def row(result: dict, communities: int, store_name: str) -> str:
    return "| " + " | ".join(figure(result, communities, store_name)) + " |"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--communities", type=int, default=20_000)
    parser.add_argument("--responses", type=int, default=300_000,
                        help="survey responses of the round (the report does not re-read them after a milestone write)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--mongo", action="store_true", help="also on FerretDB (tools/ferretdb-launcher)")
    parser.add_argument("--mongo-communities", type=int, help="communities of the FerretDB round (default: as SQLite)")
    parser.add_argument("--mongo-responses", type=int, default=20_000)
    parser.add_argument("--sqlite", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--keep", metavar="DIR", help="build in DIR and keep it (reused when it exists)")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="scoring-bench-supervision-") as tmp:
        base = Path(args.keep or tmp)
        if args.sqlite:
            log(f"supervision report, SQLite, {args.communities} communities …")
            marker = base / f"supervision-{args.communities}" / "env.json"
            if args.keep and marker.exists():
                env = json.loads(marker.read_text())
            else:
                env = sqlite_instance(base, args.communities, args.responses)
                marker.write_text(json.dumps(env))
            results["sqlite"] = supervision_latency(env, repeats=args.repeats)
            log(f"   {results['sqlite']}")
            log(row(results["sqlite"], args.communities, "SQLite"))
        if args.mongo:
            n_mongo = args.mongo_communities or args.communities
            results["mongo"] = mongo_latency(base, n_mongo, args.mongo_responses, max(3, args.repeats // 4))
            if results["mongo"]:
                log(f"   {results['mongo']}")
                log(row(results["mongo"], n_mongo, "FerretDB 1.24"))
    print(json.dumps(results, indent=1))


def mongo_latency(base: Path, communities: int, responses: int, repeats: int) -> dict | None:
    from bench.__main__ import ferretdb
    from scoring_service.store.mongo import MongoStore

    proc, uri = ferretdb(base)
    if proc is None:
        log("   FerretDB launcher not built: skipped")
        return None
    try:
        url = uri.rstrip("/") + "/supervision"
        store = MongoStore(url)
        store.init()
        national_round(store, communities, responses, bulk=True)
        store.close()
        instance = base / "supervision-mongo"
        instance.mkdir(parents=True, exist_ok=True)
        return supervision_latency({"SCORING_INSTANCE_PATH": str(instance), "SCORING_SECRET_KEY": "bench-secret",
                                    "SCORING_DATABASE_URL": url}, repeats=repeats)
    finally:
        proc.stdin.close()
        proc.wait(10)


if __name__ == "__main__":
    main()
