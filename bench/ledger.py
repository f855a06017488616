"""Funding ledger (SPEC §12, issue 14) of a national round after one funding write.

    python -m bench.ledger                      # 20,000 communities, SQLite
    python -m bench.ledger --communities 2000   # a quick look
    python -m bench.ledger --keep DIR           # build in DIR and reuse it next time

The round is the supervision bench's national round (``bench.supervision``: all nine milestones
recorded for every community) with a city budget and a funding record for every community
(a tenth on independent land, a settlement budget for those settled by the as-of date, the district's
money short for some), and tranche 1 paid for about a third. Each measurement writes one community's
funding through the store (the district's money in place changed, as a district key would send) and
then times ``GET /rounds/{r}/ledger`` through the app, JSON included. ``make bench`` measures its item 8
with :func:`ledger_latency` on the part-two national round of ``bench.parttwo`` (this round with
rectification items too).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.supervision import AS_OF, national_round  # noqa: E402
from bench.supervision import ROUND_FIELDS as SUPERVISION_FIELDS  # noqa: E402
from bench.appclient import after_write_figure, leadership_client, time_after_writes  # noqa: E402
from bench.synthetic import ROUND_ID, generation_store  # noqa: E402
from scoring_service.domain import ledger as lg  # noqa: E402
from scoring_service.domain import milestones as ms  # noqa: E402
from scoring_service.store import Store  # noqa: E402

TARGET_MS = 500.0
#: the supervision bench's round fields and a city budget
ROUND_FIELDS = {**SUPERVISION_FIELDS, "city_budget_fen": 2 * 10**12}
RECORDED_AT = "2030-12-01T00:00:00.000000Z"


def log(*args):
    print(*args, flush=True)


def funding_record(round_id: str, community_id: str, fields: dict) -> dict:
    record = {"round_id": round_id, "community_id": community_id, **fields, "key_id": "bench",
              "recorded_at": RECORDED_AT}
    record["content_hash"] = lg.funding_hash(record)
    return record


def add_funding(store: Store, round_id: str, seed: int = 3) -> tuple[int, int]:
    """A funding record for every community of the round, and tranche 1 paid (the amount the ledger
    computes) for about a third of those it is due for, through the store's write path."""
    rng = np.random.default_rng(seed)
    t = date.fromisoformat(AS_OF)
    ids = [c["community_id"] for c in store.list_communities(renovation_year=2030)]
    reached: dict[str, dict[str, date | None]] = {}
    for record in store.current_milestones(round_id):
        reached.setdefault(record["community_id"], {})[record["code"]] = ms.effective_reach_date(record)
    written = paid = 0
    for community_id in ids:
        budget = int(rng.integers(2_000_000, 50_000_000)) * 100 + int(rng.integers(0, 100))
        independent = rng.random() < 0.1
        settled_on = reached.get(community_id, {}).get("settled")
        fields = {"land_category": "independent" if independent else "non_independent",
                  "approved_budget_fen": budget,
                  "settled_budget_fen": (budget - int(rng.integers(0, budget // 10)))
                  if settled_on is not None and settled_on <= t else None,
                  "district_funds_in_place_fen": budget // 2 if rng.random() < 0.9 else budget // 10}
        store.put_funding(funding_record(round_id, community_id, fields))
        written += 1
        if independent or rng.random() > 0.35:
            continue
        funding = lg.Funding.of(fields)
        state = lg.community_ledger(funding, reached.get(community_id, {}), {}, None, t).tranche(1)
        if state.status != "due":
            continue
        signed = reached[community_id]["contract_signed"]
        record = {"disbursement_id": str(uuid.UUID(int=int(rng.integers(0, 2**62)))), "round_id": round_id,
                  "community_id": community_id, "tranche": 1, "amount_fen": state.amount_fen,
                  "paid_on": signed.isoformat(), "voucher": None, "key_id": "bench", "recorded_at": RECORDED_AT}
        record["content_hash"] = lg.disbursement_hash(record)
        store.add_disbursement(record)
        paid += 1
    return written, paid


def funded_round(store: Store, communities: int, responses: int, round_fields: dict = ROUND_FIELDS,
                 inspection=None) -> dict:
    """The supervision bench's national round (``bench.supervision.national_round``) with a city budget
    (``round_fields``: these or more) and :func:`add_funding`'s records and disbursements."""
    built = national_round(store, communities, responses, round_fields=round_fields, inspection=inspection)
    started = time.perf_counter()
    written, paid = add_funding(store, ROUND_ID)
    log(f"    funding: {written} records, {paid} disbursements in {time.perf_counter() - started:.0f} s")
    return {**built, "funding_records": written, "disbursements": paid}


def sqlite_instance(base: Path, communities: int, responses: int) -> dict:
    store, env = generation_store(base / f"ledger-{communities}")
    funded_round(store, communities, responses)
    store.close()
    return env


def ledger_latency(env: dict, round_id: str = ROUND_ID, repeats: int = 20) -> dict:
    """``GET /rounds/{r}/ledger`` after one funding write (p50/p99), the first (cold) ledger and a
    ledger with nothing written since (cached)."""
    app, client, headers = leadership_client(env)
    store = app.extensions["scoring"].store
    current = {r["community_id"]: r for r in store.current_funding(round_id)}
    communities = sorted(current)
    rng = np.random.default_rng(int(time.time()))

    def write(_: int) -> None:
        community = communities[int(rng.integers(0, len(communities)))]
        fields = {name: current[community][name] for name in lg.FUNDING_FIELDS}
        fields["district_funds_in_place_fen"] += 1  # a district's top-up
        current[community] = funding_record(round_id, community, fields)
        store.put_funding(current[community])

    try:
        return time_after_writes(client, f"/api/v1/rounds/{round_id}/ledger", headers, write, repeats)
    finally:
        store.close()


def figure(result: dict, communities: int, store_name: str) -> tuple[str, str, str, str]:
    """The figure, what was measured, the target and the verdict (a RESULTS.md table row)."""
    title = (f"ledger, national round ({communities} communities, all with funding records and milestones, "
             f"some disbursements; {store_name}), after one funding write: p50 / p99")
    return after_write_figure(title, "first ledger", result, TARGET_MS)


def row(result: dict, communities: int, store_name: str) -> str:
    return "| " + " | ".join(figure(result, communities, store_name)) + " |"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--communities", type=int, default=20_000)
    parser.add_argument("--responses", type=int, default=30_000,
                        help="survey responses of the round (grades of settled communities; scored once)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--keep", metavar="DIR", help="build in DIR and keep it (reused when it exists)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scoring-bench-ledger-") as tmp:
        base = Path(args.keep or tmp)
        log(f"ledger, SQLite, {args.communities} communities …")
        marker = base / f"ledger-{args.communities}" / "env.json"
        if args.keep and marker.exists():
            env = json.loads(marker.read_text())
        else:
            env = sqlite_instance(base, args.communities, args.responses)
            marker.write_text(json.dumps(env))
        result = ledger_latency(env, repeats=args.repeats)
        log(f"   {result}")
        log(row(result, args.communities, "SQLite"))
    print(json.dumps({"sqlite": result}, indent=1))


if __name__ == "__main__":
    main()
