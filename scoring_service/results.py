"""Round results: from store statistics to the JSON leadership reads (SPEC §5–6).

The math is in :mod:`scoring_service.scoring`; this module gathers its inputs
from the store, shapes its outputs, caches them per store generation and
freezes them into the published snapshot.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from .canonical import canonical_bytes, digest
from .rubric import Rubric
from .scoring import round_rate, round_score
from .scoring.engine import (
    CommunityInputs,
    InspectionInputs,
    SurveyCounts,
    allocate_rewards,
    community_order,
    district_index,
    score_communities,
)
from .state import state
from .store import Outcome, Store
from .timeutil import now_stored


@dataclass
class RoundResults:
    """Everything the results endpoints serve for one round."""

    round_id: str
    published: bool
    scores: dict[str, dict]
    community_ranking: dict
    district_ranking: dict
    rewards: dict
    snapshot_sha256: str | None = None


def select_inspections(current: list[dict]) -> list[dict]:
    """Per community and agency, the latest inspection (latest ``inspected_at``; ties: submitted last)."""
    latest: dict[tuple[str, str], dict] = {}
    for record in current:
        key = (record["community_id"], record["agency_id"])
        best = latest.get(key)
        if best is None or (record["inspected_at"], record["seq"]) > (best["inspected_at"], best["seq"]):
            latest[key] = record
    return [latest[k] for k in sorted(latest)]


def survey_arrays(store: Store, round_id: str, rubric: Rubric, ids: list[str]) -> tuple[SurveyCounts, SurveyCounts]:
    n_items = len(rubric.item_codes)
    counts = store.survey_counts(round_id, n_items)
    arrays = []
    for respondent_type in ("resident", "public"):
        result = SurveyCounts.zeros(len(ids), n_items)
        for c, community_id in enumerate(ids):
            kept = counts.get(respondent_type, community_id)
            if kept is not None:
                result.items[c] = kept.counts[:n_items]
                result.overall[c] = kept.counts[n_items]
                result.responses[c] = kept.responses
        arrays.append(result)
    return arrays[0], arrays[1]


def inspection_arrays(store: Store, round_id: str, rubric: Rubric, ids: list[str]) -> InspectionInputs:
    position = {cid: i for i, cid in enumerate(ids)}
    chosen = [r for r in select_inspections(store.current_inspections(round_id)) if r["community_id"] in position]
    agencies: list[list[str]] = [[] for _ in ids]
    vetoes: list[list[str]] = [[] for _ in ids]
    for record in chosen:
        c = position[record["community_id"]]
        agencies[c].append(record["agency_id"])
        vetoes[c].extend(record.get("vetoes", []))
    n_items = len(rubric.item_codes)
    return InspectionInputs(
        community=np.array([position[r["community_id"]] for r in chosen], dtype=np.int64),
        points=np.array([r["item_points"] for r in chosen], dtype=float).reshape(len(chosen), n_items),
        max_points=np.array([r["item_max"] for r in chosen], dtype=float).reshape(len(chosen), n_items),
        agencies=agencies,
        vetoes=vetoes,
    )


def _score(x) -> float | None:
    return round_score(float(x)) if x is not None and not math.isnan(x) else None


def _rate(x) -> float | None:
    return round_rate(float(x)) if x is not None and not math.isnan(x) else None


def compute_results(round_id: str) -> RoundResults:
    """Score every community of the round and build rankings and rewards."""
    s = state()
    store = s.store
    round_ = store.get_round(round_id)
    rubric = s.rubric(round_["rubric_id"])
    communities = store.list_communities(renovation_year=round_["year"])
    inputs = CommunityInputs.build(rubric, communities)
    ids = list(inputs.ids)
    residents, public = survey_arrays(store, round_id, rubric, ids)
    inspections = inspection_arrays(store, round_id, rubric, ids)
    scores = score_communities(rubric, inputs, residents, public, inspections)
    districts = district_index(rubric, round_.get("quotas", {}), inputs, scores)
    rewards = allocate_rewards(round_.get("reward", {}), rubric, inputs, scores, districts)
    district_names = {d["district_id"]: d.get("name_zh") for d in store.list_districts()}
    return shape_results(round_, rubric, communities, inputs, inspections, scores, districts, rewards, district_names)


def shape_results(
    round_, rubric, communities, inputs, inspections, scores, districts, rewards, district_names
) -> RoundResults:
    round_id = round_["round_id"]
    labels = rubric.grade_labels
    codes = rubric.item_codes

    def items(values, c):
        return {code: _score(values[c, k]) for k, code in enumerate(codes) if inputs.applicable[c, k]}

    breakdowns: dict[str, dict] = {}
    rows: dict[str, dict] = {}
    for c, community in enumerate(communities):
        cid = community["community_id"]
        ranked = scores.rank[c] > 0
        lo, hi = scores.satisfaction_low[c], scores.satisfaction_high[c]
        breakdowns[cid] = {
            "round_id": round_id,
            "community_id": cid,
            "name_zh": community["name_zh"],
            "district_id": community["district_id"],
            "households": int(community["households"]),
            "professional": {
                "score": _score(scores.professional[c]),
                "items": items(scores.professional_items, c),
                "agencies": sorted(inspections.agencies[c]),
            },
            "resident": {
                "score": _score(scores.resident[c]),
                "items": items(scores.resident_items, c),
                "responses": int(scores.resident_responses[c]),
                "required_responses": int(scores.required_responses[c]),
                "satisfaction_rate": _rate(scores.satisfaction_rate[c]),
                "satisfaction_ci95": None if math.isnan(lo) else [_rate(lo), _rate(hi)],
            },
            "public": None
            if scores.public_responses[c] == 0
            else {
                "score": _score(scores.public[c]),
                "items": items(scores.public_items, c),
                "responses": int(scores.public_responses[c]),
            },
            "composite": _score(scores.composite[c]),
            "grade": scores.grade[c],
            "grade_zh": labels.get(scores.grade[c]) if scores.grade[c] else None,
            "flags": scores.flags[c],
            "rank": int(scores.rank[c]) if ranked else None,
            "rank_in_district": int(scores.rank_in_district[c]) if ranked else None,
        }
        rows[cid] = {
            "community_id": cid,
            "name_zh": community["name_zh"],
            "district_id": community["district_id"],
            "composite": _score(scores.composite[c]),
            "grade": scores.grade[c],
            "grade_zh": labels.get(scores.grade[c]) if scores.grade[c] else None,
            "rank": int(scores.rank[c]) if ranked else None,
            "rank_in_district": int(scores.rank_in_district[c]) if ranked else None,
            "flags": scores.flags[c],
        }
    return RoundResults(
        round_id=round_id,
        published=False,
        scores=breakdowns,
        community_ranking={
            "round_id": round_id,
            "published": False,
            "communities": [rows[inputs.ids[c]] for c in community_order(inputs, scores)],
            "unranked": [rows[cid] for cid in sorted(rows) if rows[cid]["rank"] is None],
        },
        district_ranking={
            "round_id": round_id,
            "published": False,
            "districts": [
                {
                    "district_id": districts.district_ids[i],
                    "name_zh": district_names.get(districts.district_ids[i]),
                    "rank": int(districts.rank[i]),
                    "index": _score(districts.index[i]),
                    "quality": _score(districts.quality[i]),
                    "progress": _score(districts.progress[i]),
                    "quota": int(districts.quota[i]),
                    "graded": int(districts.graded[i]),
                    "grade_counts": districts.grade_counts[i],
                    "share_good_or_better": _rate(districts.share_good_or_better[i]),
                }
                for i in districts.order
            ],
        },
        rewards={
            "round_id": round_id,
            "published": False,
            "pool_fen": rewards.pool_fen,
            "district_pool_fen": rewards.district_pool_fen,
            "community_pool_fen": rewards.community_pool_fen,
            "districts": [
                {"district_id": d, "name_zh": district_names.get(d), "amount_fen": amount}
                for d, amount in sorted(rewards.districts.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
            "communities": [
                {"community_id": cid, "name_zh": rows[cid]["name_zh"], "district_id": rows[cid]["district_id"],
                 "grade": rows[cid]["grade"], "amount_fen": amount}
                for cid, amount in sorted(rewards.communities.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
            "unallocated_fen": rewards.unallocated_fen,
        },
    )


# -- live results, snapshot and publishing ------------------------------------

SECTIONS = ("scores", "community_ranking", "district_ranking", "rewards")


def _from_snapshot(snapshot: bytes, sha256: str) -> RoundResults:
    body = json.loads(snapshot)
    return RoundResults(
        round_id=body["round_id"],
        published=True,
        scores=body["scores"],
        community_ranking=body["community_ranking"],
        district_ranking={**body["district_ranking"], "snapshot_sha256": sha256},
        rewards=body["rewards"],
        snapshot_sha256=sha256,
    )


def round_results(round_id: str) -> RoundResults:
    """Results of a round: the frozen snapshot once published, else live (cached per store generation)."""
    s = state()
    record = s.store.get_round(round_id)
    if record["status"] == "published":
        return s.cached_results(("snapshot", round_id), lambda: _from_snapshot(*s.store.get_snapshot(round_id)))
    generation = s.store.generation()
    return s.cached_results((round_id, generation), lambda: compute_results(round_id))


def snapshot_document(results: RoundResults, round_: dict, published_at: str) -> dict:
    """The frozen document whose canonical JSON is hashed (SPEC §5 Publishing)."""
    def mark(section: dict) -> dict:
        return {**section, "published": True}

    return {
        "round_id": results.round_id,
        "rubric_id": round_["rubric_id"],
        "published_at": published_at,
        "scores": results.scores,
        "community_ranking": mark(results.community_ranking),
        "district_ranking": mark(results.district_ranking),
        "rewards": mark(results.rewards),
    }


def publish(round_id: str, attempts: int = 5) -> Outcome:
    """Close (if open), freeze results into a snapshot with its SHA-256, mark published."""
    store = state().store
    at = now_stored()
    if store.get_round(round_id)["status"] == "open":
        store.close_round(round_id, at)
    for _ in range(attempts):
        round_ = store.get_round(round_id)
        if round_["status"] == "published":
            return Outcome.DUPLICATE
        generation = store.generation()
        results = compute_results(round_id)
        if store.generation() != generation:
            continue  # a void landed while scoring: score again so the snapshot has it
        document = snapshot_document(results, round_, at)
        body = canonical_bytes(document)
        return store.publish_round(round_id, body, digest(document), at)
    raise RuntimeError(f"round {round_id!r} kept changing while it was being published")
