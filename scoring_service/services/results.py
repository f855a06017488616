"""Round results: from store statistics to the JSON leadership reads (SPEC §5–6).

The math is in :mod:`scoring_service.scoring`; this module gathers its inputs
from the store, shapes its outputs, caches them per store generation and
freezes them into the published snapshot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..domain.canonical import canonical_bytes, digest
from ..scoring import round_rate, round_score
from ..scoring.engine import (
    CommunityInputs,
    InspectionInputs,
    SurveyCounts,
    allocate_rewards,
    community_order,
    district_index,
    score_communities,
)
from .context import state
from ..store import InspectionRows, Outcome, RoundCounts
from ..domain.timeutil import now_stored


def select_latest(rows: InspectionRows) -> list[int]:
    """Row indices of the considered inspections: for each community and agency, the latest
    ``inspected_at``, ties going to the one submitted last; ordered by (community, agency)."""
    best: dict[tuple[str, str], int] = {}
    for m, key in enumerate(zip(rows.community_ids, rows.agency_ids)):
        b = best.get(key)
        if b is None or (rows.inspected_at[m], rows.seq[m]) > (rows.inspected_at[b], rows.seq[b]):
            best[key] = m
    return [best[k] for k in sorted(best)]


def survey_arrays(counts: RoundCounts, ids: list[str]) -> tuple[SurveyCounts, SurveyCounts]:
    """Kept statistics placed in the round's community order, one table per respondent type."""
    n_items = counts.n_items
    position = {cid: i for i, cid in enumerate(ids)}
    rows = np.array([position.get(cid, -1) for cid in counts.community_ids], dtype=np.int64)
    types = np.array(counts.respondent_types, dtype=object)
    arrays = []
    for respondent_type in ("resident", "public"):
        mask = (rows >= 0) & (types == respondent_type) if len(rows) else np.zeros(0, dtype=bool)
        cells = np.zeros((len(ids), n_items + 1, 5), dtype=np.int64)
        responses = np.zeros(len(ids), dtype=np.int64)
        cells[rows[mask]] = counts.counts[mask]
        responses[rows[mask]] = counts.responses[mask]
        arrays.append(SurveyCounts(items=cells[:, :n_items], overall=cells[:, n_items], responses=responses))
    return arrays[0], arrays[1]


def inspection_arrays(rows: InspectionRows, ids: list[str]) -> InspectionInputs:
    position = {cid: i for i, cid in enumerate(ids)}
    chosen = [m for m in select_latest(rows) if rows.community_ids[m] in position]
    agencies: list[list[str]] = [[] for _ in ids]
    vetoes: list[list[str]] = [[] for _ in ids]
    for m in chosen:
        c = position[rows.community_ids[m]]
        agencies[c].append(rows.agency_ids[m])
        if rows.vetoes[m]:
            vetoes[c].extend(rows.vetoes[m])
    return InspectionInputs(
        community=np.array([position[rows.community_ids[m]] for m in chosen], dtype=np.int64),
        points=rows.points[chosen],
        max_points=rows.maxima[chosen],
        agencies=agencies,
        vetoes=vetoes,
        row_agency=[rows.agency_ids[m] for m in chosen],
    )


@dataclass
class Reference:
    """A round's communities and names; cached until reference data changes."""

    communities: list[dict]
    inputs: CommunityInputs
    district_names: dict[str, str | None]


def _plain(values: np.ndarray) -> list:
    """Array → nested Python lists with NaN as None (for JSON)."""
    def fix(v):
        return [fix(x) for x in v] if isinstance(v, list) else (None if v != v else v)

    return fix(values.tolist())


def compute_results(round_id: str) -> LiveResults:
    """Score every community of the round; rankings, rewards and breakdowns are shaped on demand."""
    s = state()
    store = s.store
    round_ = store.get_round(round_id)
    rubric = s.rubric(round_["rubric_id"])
    n_items = len(rubric.item_codes)

    # Reference data and inspections change rarely during acceptance, surveys all the
    # time: each part is cached under the generation token of its own kind of write.
    reference_token = store.generation("reference")

    def load_reference() -> Reference:
        communities = store.list_communities(renovation_year=round_["year"])
        return Reference(communities, CommunityInputs.build(rubric, communities),
                         {d["district_id"]: d.get("name_zh") for d in store.list_districts()})

    reference = s.cached_results(("reference", round_["year"], rubric.rubric_id, reference_token), load_reference)
    ids = list(reference.inputs.ids)
    inspections = s.cached_results(
        ("inspections", round_id, reference_token, store.generation("inspections")),
        lambda: inspection_arrays(store.inspection_sums(round_id, n_items), ids),
    )
    residents, public = survey_arrays(store.survey_counts(round_id, n_items), ids)
    scores = score_communities(rubric, reference.inputs, residents, public, inspections)
    districts = district_index(rubric, round_.get("quotas", {}), reference.inputs, scores)
    rewards = allocate_rewards(round_.get("reward", {}), rubric, reference.inputs, scores, districts)
    return LiveResults(round_, rubric, reference, inspections, residents, public, scores, districts, rewards)


class SectionCache:
    """Canonical JSON bytes of each section, encoded once per results object."""

    def section_bytes(self, name: str) -> bytes:
        cache = self.__dict__.setdefault("_bytes", {})
        if name not in cache:
            cache[name] = canonical_bytes(getattr(self, name))
        return cache[name]


class LiveResults(SectionCache):
    """Results computed from the store's current statistics."""

    published = False
    snapshot_sha256 = None

    def __init__(self, round_, rubric, reference: Reference, inspections: InspectionInputs, residents: SurveyCounts,
                 public: SurveyCounts, scores, districts, rewards):
        self.round_id = round_["round_id"]
        self.reward_rule = round_.get("reward", {})
        self.rubric = rubric
        self.communities = reference.communities
        self.inputs = reference.inputs
        self.district_names = reference.district_names
        self.inspections = inspections
        self.residents, self.public = residents, public  # kept for the evidence analyses
        self.raw = scores
        self.districts_raw = districts
        self.rewards_raw = rewards
        self.position = {cid: i for i, cid in enumerate(self.inputs.ids)}
        self.labels = rubric.grade_labels
        # rounded once, as plain Python values
        self.composite = _plain(round_score(scores.composite))
        self.rank = [int(r) if r > 0 else None for r in scores.rank.tolist()]
        self.rank_in_district = [int(r) if r > 0 else None for r in scores.rank_in_district.tolist()]

    def _row(self, c: int) -> dict:
        community = self.communities[c]
        grade = self.raw.grade[c]
        return {
            "community_id": community["community_id"],
            "name_zh": community["name_zh"],
            "district_id": community["district_id"],
            "composite": self.composite[c],
            "grade": grade,
            "grade_zh": self.labels.get(grade) if grade else None,
            "rank": self.rank[c],
            "rank_in_district": self.rank_in_district[c],
            "flags": self.raw.flags[c],
        }

    def breakdown(self, community_id: str) -> dict | None:
        """The score breakdown of SPEC §6 for one community."""
        c = self.position.get(community_id)
        if c is None:
            return None
        sc, codes, applicable = self.raw, self.rubric.item_codes, self.inputs.applicable[c]

        def items(values: np.ndarray) -> dict:
            rounded = _plain(round_score(values[c]))
            return {code: rounded[k] for k, code in enumerate(codes) if applicable[k]}

        def score(x: float):
            return None if np.isnan(x) else float(round_score(float(x)))

        def rate(x: float):
            return None if np.isnan(x) else float(round_rate(float(x)))

        row = self._row(c)
        return {
            "round_id": self.round_id,
            "community_id": community_id,
            "name_zh": row["name_zh"],
            "district_id": row["district_id"],
            "households": int(self.communities[c]["households"]),
            "professional": {
                "score": score(sc.professional[c]),
                "items": items(sc.professional_items),
                "agencies": sorted(self.inspections.agencies[c]),
            },
            "resident": {
                "score": score(sc.resident[c]),
                "items": items(sc.resident_items),
                "responses": int(sc.resident_responses[c]),
                "required_responses": int(sc.required_responses[c]),
                "satisfaction_rate": rate(sc.satisfaction_rate[c]),
                "satisfaction_ci95": None if np.isnan(sc.satisfaction_low[c])
                else [rate(sc.satisfaction_low[c]), rate(sc.satisfaction_high[c])],
            },
            "public": None if sc.public_responses[c] == 0 else {
                "score": score(sc.public[c]),
                "items": items(sc.public_items),
                "responses": int(sc.public_responses[c]),
            },
            "composite": row["composite"],
            "grade": row["grade"],
            "grade_zh": row["grade_zh"],
            "flags": row["flags"],
            "rank": row["rank"],
            "rank_in_district": row["rank_in_district"],
        }

    @cached_property
    def scores(self) -> dict[str, dict]:
        return {cid: self.breakdown(cid) for cid in self.inputs.ids}

    @cached_property
    def community_ranking(self) -> dict:
        order = community_order(self.inputs, self.raw).tolist()
        return {
            "round_id": self.round_id,
            "published": False,
            "communities": [self._row(c) for c in order],
            "unranked": [self._row(c) for c in sorted(range(len(self.communities)),
                                                      key=lambda i: self.inputs.ids[i]) if self.rank[c] is None],
        }

    @cached_property
    def district_ranking(self) -> dict:
        d = self.districts_raw
        index, quality, progress = (_plain(round_score(x)) for x in (d.index, d.quality, d.progress))
        share = _plain(round_rate(d.share_good_or_better))
        return {
            "round_id": self.round_id,
            "published": False,
            "districts": [
                {
                    "district_id": d.district_ids[i],
                    "name_zh": self.district_names.get(d.district_ids[i]),
                    "rank": int(d.rank[i]),
                    "index": index[i],
                    "quality": quality[i],
                    "progress": progress[i],
                    "quota": int(d.quota[i]),
                    "graded": int(d.graded[i]),
                    "grade_counts": d.grade_counts[i],
                    "share_good_or_better": share[i],
                }
                for i in d.order.tolist()
            ],
        }

    @cached_property
    def rewards(self) -> dict:
        r = self.rewards_raw
        return {
            "round_id": self.round_id,
            "published": False,
            "pool_fen": r.pool_fen,
            "district_pool_fen": r.district_pool_fen,
            "community_pool_fen": r.community_pool_fen,
            "districts": [
                {"district_id": d, "name_zh": self.district_names.get(d), "amount_fen": amount}
                for d, amount in sorted(r.districts.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
            "communities": [
                {**{k: row[k] for k in ("community_id", "name_zh", "district_id", "grade")}, "amount_fen": amount}
                for cid, amount in sorted(r.communities.items(), key=lambda kv: (-kv[1], kv[0]))
                for row in (self._row(self.position[cid]),)
            ],
            "unallocated_fen": r.unallocated_fen,
        }
# -- live results, snapshot and publishing ------------------------------------


class PublishedResults(SectionCache):
    """Results frozen in a round's snapshot; served identically on every request."""

    published = True

    def __init__(self, snapshot: bytes, sha256: str):
        body = json.loads(snapshot)
        self.round_id = body["round_id"]
        self.snapshot_sha256 = sha256
        self.scores = body["scores"]
        self.community_ranking = body["community_ranking"]
        self.district_ranking = {**body["district_ranking"], "snapshot_sha256": sha256}
        self.rewards = body["rewards"]

    def breakdown(self, community_id: str) -> dict | None:
        return self.scores.get(community_id)


Results = LiveResults | PublishedResults


def live_results(round_id: str) -> LiveResults:
    """Live results (cached per store generation), also for a published round (its data is frozen)."""
    s = state()
    return s.cached_results((round_id, "live", s.store.generation()), lambda: compute_results(round_id))


def round_results(round_id: str, record: dict | None = None) -> Results:
    """Results of a round: the frozen snapshot once published, else live (cached per store generation).

    ``record`` is the round when the caller has just read it.
    """
    s = state()
    record = record or s.store.get_round(round_id)
    if record["status"] == "published":
        return s.cached_results(("snapshot", round_id), lambda: PublishedResults(*s.store.get_snapshot(round_id)))
    return live_results(round_id)


def snapshot_document(results: LiveResults, round_: dict, published_at: str) -> dict:
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
            return Outcome.UNCHANGED
        generation = store.generation()
        results = compute_results(round_id)
        if store.generation() != generation:
            continue  # a void landed while scoring: score again so the snapshot has it
        document = snapshot_document(results, round_, at)
        body = canonical_bytes(document)
        return store.publish_round(round_id, body, digest(document), at)
    raise RuntimeError(f"round {round_id!r} kept changing while it was being published")
