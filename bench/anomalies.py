"""Anomaly flags (SPEC §14, issue 18 item 2) after one survey write: demo round and national rounds.

    python -m bench.anomalies                         # demo round, then 300,000 and 3,000,000 responses
    python -m bench.anomalies --quick                 # demo round, then 30,000 and 300,000 responses
    python -m bench.anomalies --keep DIR              # build in DIR and reuse it next time

Each measurement writes one survey response through the store (a resident at a kiosk, received now)
and then times ``GET /rounds/{r}/evidence/anomalies`` through the app, JSON included. The demo figure
uses the demo's open round (the 2019 aftercare round: the 2018 round is published and takes no more
writes), topped up through the store to the size of the demo's 2018 round (36,638 responses), the size
at which the report took 1.3 s before its statistics were kept. The national rounds are
``bench.synthetic``'s. Every response is written through ``Store.add_responses`` like the service's
writes, so the anomaly statistics are kept exactly as in production.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.appclient import after_write_figure, leadership_client, time_after_writes  # noqa: E402
from scoring_service.domain.rounds import covered_years  # noqa: E402
from scoring_service.domain.timeutil import from_stored, now_stored, to_stored  # noqa: E402

DEMO_TARGET_MS = 100.0
GROWTH_TARGET = 1.3


def log(*args):
    print(*args, flush=True)


#: the demo's 2018 round, published by ``seed --demo``: the size the demo figure tops the open round up to
DEMO_RESPONSES = 36_638


def top_up(store, round_id: str, codes: list[str], communities: list[str], total: int, seed: int = 11) -> int:
    """Resident responses written through the store until the round has ``total`` (answers at random,
    received over the round's weeks by one kiosk key per community); the number written."""
    rng = np.random.default_rng(seed)
    round_ = store.get_round(round_id)
    opens = from_stored(round_["opens_at"])
    span = int((from_stored(round_["closes_at"]) - opens).total_seconds()) * 10**6
    missing = total - store.count_responses(round_id)
    written = 0
    while written < missing:
        batch = []
        for _ in range(min(1000, missing - written)):
            community = communities[int(rng.integers(0, len(communities)))]
            levels = [int(x) for x in rng.integers(0, 6, size=len(codes) + 1)]
            at = to_stored(opens + timedelta(microseconds=int(rng.integers(0, span))))
            batch.append({"response_id": str(uuid.uuid4()), "round_id": round_id, "community_id": community,
                          "respondent_type": "resident", "household_hash": None, "content_hash": uuid.uuid4().hex,
                          "levels": levels, "answers": {c: v for c, v in zip(codes, levels) if v},
                          "overall": levels[-1] or None, "comment": None, "channel": "kiosk", "submitted_at": at,
                          "received_at": at, "key_id": f"bench-kiosk-{community}"})
        written += sum(o.value == "created" for o in store.add_responses(round_id, batch, len(codes)))
    return written


def anomaly_latency(env: dict, round_id: str, repeats: int = 20, total: int | None = None) -> dict:
    """``GET …/evidence/anomalies`` first, then after each of ``repeats`` survey writes, and again (the round
    first topped up to ``total`` responses when given)."""
    app, client, headers = leadership_client(env)
    store = app.extensions["scoring"].store
    round_ = store.get_round(round_id)
    rubric = app.extensions["scoring"].rubric(round_["rubric_id"])
    communities = [c["community_id"] for c in store.list_communities(renovation_years=list(covered_years(round_)))]
    rng = np.random.default_rng(7)
    codes = rubric.item_codes
    if total is not None:
        top_up(store, round_id, codes, communities, total)

    def write(_: int) -> None:
        community = communities[int(rng.integers(0, len(communities)))]
        levels = [int(x) for x in rng.integers(1, 6, size=len(codes) + 1)]
        now = now_stored()
        store.add_responses(round_id, [{
            "response_id": str(uuid.uuid4()), "round_id": round_id, "community_id": community,
            "respondent_type": "resident", "household_hash": None, "content_hash": uuid.uuid4().hex,
            "levels": levels, "answers": dict(zip(codes, levels)), "overall": levels[-1], "comment": None,
            "channel": "kiosk", "submitted_at": now, "received_at": now, "key_id": "bench-kiosk"}], len(codes))

    try:
        before = store.count_responses(round_id)
        result = time_after_writes(client, f"/api/v1/rounds/{round_id}/evidence/anomalies", headers, write,
                                   repeats)
        result["responses"] = store.count_responses(round_id)
        assert result["responses"] == before + repeats, "every timed write must be stored"
        return result
    finally:
        store.close()


def demo_figure(result: dict, store_name: str = "SQLite") -> tuple[str, str, str, str]:
    return after_write_figure(f"anomaly flags, demo's open round topped up to demo size ({result['responses']:,} "
                              f"responses; {store_name}), after one survey write: p50 / p99", "first report", result,
                              DEMO_TARGET_MS)


def growth_figure(big: dict, small: dict) -> tuple[str, str, str, str]:
    ratio = big["after_write_p50_ms"] / small["after_write_p50_ms"]
    return (f"anomaly flags after one survey write at {big['responses']:,} / at {small['responses']:,} "
            "responses (same communities): p50",
            f"{big['after_write_p50_ms']:.0f} / {small['after_write_p50_ms']:.0f} ms = **{ratio:.2f}×**",
            f"≤ {GROWTH_TARGET}×", "met" if ratio <= GROWTH_TARGET else "**missed**")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 communities, 30,000 / 300,000 responses")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--keep", metavar="DIR", help="build in DIR and keep it (reused when it exists)")
    args = parser.parse_args()
    from bench.__main__ import DEMO_ROUND, demo_instance, national_instance
    from bench.synthetic import ROUND_ID

    communities, responses = (2000, 300_000) if args.quick else (20_000, 3_000_000)
    results = {}
    with tempfile.TemporaryDirectory(prefix="scoring-bench-anomalies-") as tmp:
        base = Path(args.keep or tmp)

        def instance(name: str, build):
            marker = base / f"{name}.json"
            if args.keep and marker.exists():
                return json.loads(marker.read_text())
            env = build()
            marker.write_text(json.dumps(env))
            return env

        log("demo round …")
        demo = instance("anomalies-demo", lambda: demo_instance(base / "anomalies-demo"))
        results["demo"] = anomaly_latency(demo, DEMO_ROUND, args.repeats, total=DEMO_RESPONSES)
        log(f"   {results['demo']}")
        for name, n in (("small", responses // 10), ("big", responses)):
            log(f"national round, {communities} communities, {n:,} responses …")
            env = instance(f"anomalies-{n}", lambda n=n: national_instance(base, communities, n))
            results[name] = anomaly_latency(env, ROUND_ID, args.repeats)
            log(f"   {results[name]}")
    rows = [demo_figure(results["demo"]), growth_figure(results["big"], results["small"])]
    for row in rows:
        log("| " + " | ".join(row) + " |")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
