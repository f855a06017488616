"""Community scores, grades, rankings, district index and rewards (SPEC §5).

Everything works on per-community sufficient statistics held in arrays:

* ``C`` communities, ``K`` rubric items (in rubric order), Likert levels 1..5;
* survey counts ``items[C, K, 5]`` (answers per item and level),
  ``overall[C, 5]`` and ``responses[C]``;
* one row per considered inspection: per-item sums of points and of
  ``max_points`` over the checks not marked ``"na"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..rubric import Rubric
from .ranking import competition_rank, ranking_order
from .rewards import largest_remainder
from .rounding import round_score
from .stats import below_rate, required_responses, wilson_interval

LEVELS = 5


@dataclass(frozen=True)
class CommunityInputs:
    """The communities of one round, in a fixed order."""

    ids: Sequence[str]
    district_ids: Sequence[str]
    households: np.ndarray  # int[C]
    applicable: np.ndarray  # bool[C, K]

    @classmethod
    def build(cls, rubric: Rubric, communities: Sequence[Mapping]) -> CommunityInputs:
        ids = [c["community_id"] for c in communities]
        applicable = np.array(
            [[rubric.applies(item, c) for item in rubric.items] for c in communities],
            dtype=bool,
        ).reshape(len(communities), len(rubric.items))
        return cls(
            ids=ids,
            district_ids=[c["district_id"] for c in communities],
            households=np.array([int(c["households"]) for c in communities], dtype=np.int64),
            applicable=applicable,
        )

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class SurveyCounts:
    """Answer counts of one respondent type (resident or public)."""

    items: np.ndarray  # int[C, K, 5]
    overall: np.ndarray  # int[C, 5]
    responses: np.ndarray  # int[C]

    @classmethod
    def zeros(cls, n_communities: int, n_items: int) -> SurveyCounts:
        return cls(
            items=np.zeros((n_communities, n_items, LEVELS), dtype=np.int64),
            overall=np.zeros((n_communities, LEVELS), dtype=np.int64),
            responses=np.zeros(n_communities, dtype=np.int64),
        )


@dataclass(frozen=True)
class InspectionInputs:
    """The considered inspections: one per agency and community."""

    community: np.ndarray  # int[M], index into CommunityInputs
    points: np.ndarray  # float[M, K], Σ points over non-"na" checks
    max_points: np.ndarray  # float[M, K], Σ max_points over non-"na" checks (0: undefined)
    agencies: list[list[str]] = field(default_factory=list)  # per community
    vetoes: list[list[str]] = field(default_factory=list)  # per community, check codes

    @classmethod
    def empty(cls, n_communities: int, n_items: int) -> InspectionInputs:
        return cls(
            community=np.zeros(0, dtype=np.int64),
            points=np.zeros((0, n_items)),
            max_points=np.zeros((0, n_items)),
            agencies=[[] for _ in range(n_communities)],
            vetoes=[[] for _ in range(n_communities)],
        )


@dataclass
class CommunityScores:
    """Every number of the score breakdown, as arrays over communities."""

    professional: np.ndarray
    professional_items: np.ndarray
    resident: np.ndarray
    resident_items: np.ndarray
    resident_responses: np.ndarray
    required_responses: np.ndarray
    satisfaction_rate: np.ndarray
    satisfaction_low: np.ndarray
    satisfaction_high: np.ndarray
    public: np.ndarray
    public_items: np.ndarray
    public_responses: np.ndarray
    composite: np.ndarray  # unrounded; NaN when pending
    composite_rounded: np.ndarray
    grade: list[str | None]
    flags: list[list[str]]
    rank: np.ndarray  # 0 when unranked
    rank_in_district: np.ndarray


def likert_item_scores(items: np.ndarray, likert_points: Sequence[float]) -> np.ndarray:
    """Mean Likert points per community and item; NaN where nobody answered.

    >>> likert_item_scores(np.array([[[0, 0, 0, 1, 1]]]), [20, 40, 60, 80, 100])
    array([[90.]])
    """
    counts = np.asarray(items, dtype=float)
    n = counts.sum(axis=-1)
    total = counts @ np.asarray(likert_points, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.where(n > 0, n, 1), np.nan)


def weighted_item_mean(item_scores: np.ndarray, weights: np.ndarray, applicable: np.ndarray) -> np.ndarray:
    """Σ w·s / Σ w over applicable items with a defined score; NaN if none.

    >>> weighted_item_mean(np.array([[80.0, np.nan, 60.0]]), np.array([10, 10, 30]),
    ...                    np.array([[True, True, False]]))
    array([80.])
    """
    defined = applicable & ~np.isnan(item_scores)
    w = np.where(defined, np.asarray(weights, dtype=float), 0.0)
    num = np.where(defined, item_scores, 0.0) * w
    den = w.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num.sum(axis=-1) / np.where(den > 0, den, 1), np.nan)


def professional_item_scores(inspections: InspectionInputs, n_communities: int) -> np.ndarray:
    """P(i): mean over agencies of 100·Σpoints/Σmax, NaN where no agency defines it."""
    n_items = inspections.points.shape[1]
    defined = inspections.max_points > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        per_agency = np.where(defined, 100.0 * inspections.points / np.where(defined, inspections.max_points, 1), 0.0)
    total = np.zeros((n_communities, n_items))
    count = np.zeros((n_communities, n_items))
    np.add.at(total, inspections.community, per_agency)
    np.add.at(count, inspections.community, defined.astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)


def combine_sources(sources: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Σ W(s)·S(s) / Σ W(s) over the sources defined for each community."""
    stacked = np.vstack([np.asarray(s, dtype=float) for s in sources])
    w = np.asarray(weights, dtype=float)[:, None] * ~np.isnan(stacked)
    num = (np.nan_to_num(stacked) * w).sum(axis=0)
    den = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def grade_for(score_rounded: float, rubric: Rubric) -> str:
    """The highest grade whose threshold is at most the (rounded) score."""
    for grade in rubric.grades:  # descending thresholds
        if score_rounded >= grade.min:
            return grade.grade
    return rubric.grades[-1].grade


def cap_grade(grade: str, cap: str, rubric: Rubric) -> str:
    """``grade`` lowered to ``cap`` if it is better than the cap."""
    order = [g.grade for g in rubric.grades]  # best first
    return cap if order.index(grade) < order.index(cap) else grade


def score_communities(
    rubric: Rubric,
    communities: CommunityInputs,
    residents: SurveyCounts,
    public: SurveyCounts,
    inspections: InspectionInputs,
) -> CommunityScores:
    """Scores, flags, grades and ranks of every community of a round."""
    n = len(communities)
    weights = rubric.weights
    applicable = communities.applicable

    prof_items = professional_item_scores(inspections, n)
    prof_items = np.where(applicable, prof_items, np.nan)
    professional = weighted_item_mean(prof_items, weights, applicable)

    res_items = np.where(applicable, likert_item_scores(residents.items, rubric.likert_points), np.nan)
    resident = weighted_item_mean(res_items, weights, applicable)
    pub_items = np.where(applicable, likert_item_scores(public.items, rubric.likert_points), np.nan)
    public_score = weighted_item_mean(pub_items, weights, applicable)

    share, lo, hi = rubric.min_responses
    required = np.array([required_responses(h, share, lo, hi) for h in communities.households], dtype=np.int64)

    satisfied = residents.overall[:, 3] + residents.overall[:, 4]
    answered = residents.overall.sum(axis=1)
    rate = np.full(n, np.nan)
    ci_lo = np.full(n, np.nan)
    ci_hi = np.full(n, np.nan)
    for c in np.flatnonzero(answered):
        interval = wilson_interval(int(satisfied[c]), int(answered[c]))
        rate[c], ci_lo[c], ci_hi[c] = interval

    sw = rubric.source_weights
    composite = combine_sources(
        [professional, resident, public_score], [sw["professional"], sw["resident"], sw["public"]]
    )
    composite = np.where(np.isnan(professional) | np.isnan(resident), np.nan, composite)
    composite_rounded = round_score(composite)

    grades: list[str | None] = []
    flags: list[list[str]] = []
    for c in range(n):
        f: list[str] = []
        if np.isnan(professional[c]):
            f.append("pending_inspection")
        if np.isnan(resident[c]):
            f.append("pending_survey")
        vetoes = sorted(set(inspections.vetoes[c])) if inspections.vetoes else []
        f.extend(f"veto:{code}" for code in vetoes)
        if residents.responses[c] < required[c]:
            f.append("insufficient_sample")
        if answered[c] > 0 and below_rate(int(satisfied[c]), int(answered[c]), rubric.acceptance_satisfaction_rate):
            f.append("satisfaction_below_acceptance")
        grade = None
        if not np.isnan(composite_rounded[c]):
            grade = grade_for(float(composite_rounded[c]), rubric)
            if vetoes:
                grade = rubric.grades[-1].grade
            elif "insufficient_sample" in f or "satisfaction_below_acceptance" in f:
                grade = cap_grade(grade, rubric.cap_grade, rubric)
        grades.append(grade)
        flags.append(f)

    rank = np.zeros(n, dtype=np.int64)
    rank_in_district = np.zeros(n, dtype=np.int64)
    ranked = np.flatnonzero(~np.isnan(composite_rounded))
    rank[ranked] = competition_rank(composite_rounded[ranked])
    districts = np.asarray(communities.district_ids, dtype=object)
    for d in set(districts[ranked]):
        members = ranked[districts[ranked] == d]
        rank_in_district[members] = competition_rank(composite_rounded[members])

    return CommunityScores(
        professional=professional,
        professional_items=prof_items,
        resident=resident,
        resident_items=res_items,
        resident_responses=residents.responses,
        required_responses=required,
        satisfaction_rate=rate,
        satisfaction_low=ci_lo,
        satisfaction_high=ci_hi,
        public=public_score,
        public_items=pub_items,
        public_responses=public.responses,
        composite=composite,
        composite_rounded=composite_rounded,
        grade=grades,
        flags=flags,
        rank=rank,
        rank_in_district=rank_in_district,
    )


def community_order(communities: CommunityInputs, scores: CommunityScores) -> np.ndarray:
    """Indices of ranked communities, best first, ties by ``community_id``."""
    ranked = np.flatnonzero(~np.isnan(scores.composite_rounded))
    order = ranking_order(scores.composite_rounded[ranked], [communities.ids[i] for i in ranked])
    return ranked[order]


@dataclass
class DistrictIndex:
    district_ids: list[str]
    quota: np.ndarray
    graded: np.ndarray
    quality: np.ndarray
    progress: np.ndarray
    index: np.ndarray
    index_rounded: np.ndarray
    rank: np.ndarray
    grade_counts: list[dict[str, int]]
    share_good_or_better: np.ndarray
    order: np.ndarray  # best first


def district_index(
    rubric: Rubric, quotas: Mapping[str, int], communities: CommunityInputs, scores: CommunityScores
) -> DistrictIndex:
    """District index D = wq·Q + wp·G for every district of the round's quotas."""
    ids = sorted(quotas)
    quota = np.array([int(quotas[d]) for d in ids], dtype=np.int64)
    graded = np.zeros(len(ids), dtype=np.int64)
    quality = np.zeros(len(ids))
    counts = [{g.grade: 0 for g in rubric.grades} for _ in ids]
    position = {d: i for i, d in enumerate(ids)}
    weighted = np.zeros(len(ids))
    households = np.zeros(len(ids))
    for c, grade in enumerate(scores.grade):
        d = position.get(communities.district_ids[c])
        if grade is None or d is None:
            continue
        graded[d] += 1
        counts[d][grade] += 1
        weighted[d] += communities.households[c] * scores.composite[c]
        households[d] += communities.households[c]
    has = households > 0
    quality[has] = weighted[has] / households[has]
    progress = 100.0 * np.minimum(1.0, graded / np.maximum(quota, 1))
    dw = rubric.district_weights
    index = dw["quality"] * quality + dw["progress"] * progress
    index_rounded = round_score(index)
    top = rubric.top_grades
    share = np.array(
        [sum(cnt[g] for g in top) / graded[i] if graded[i] else 0.0 for i, cnt in enumerate(counts)]
    )
    return DistrictIndex(
        district_ids=ids,
        quota=quota,
        graded=graded,
        quality=quality,
        progress=progress,
        index=index,
        index_rounded=index_rounded,
        rank=competition_rank(index_rounded),
        grade_counts=counts,
        share_good_or_better=share,
        order=ranking_order(index_rounded, ids),
    )


@dataclass
class Rewards:
    pool_fen: int
    district_pool_fen: int
    community_pool_fen: int
    districts: dict[str, int]
    communities: dict[str, int]
    unallocated_fen: int


def allocate_rewards(
    reward: Mapping,
    rubric: Rubric,
    communities: CommunityInputs,
    scores: CommunityScores,
    districts: DistrictIndex,
) -> Rewards:
    """Split the reward pool between top districts and good-or-better communities."""
    pool = int(reward.get("pool_fen", 0))
    district_pool = pool * int(reward.get("district_share_pct", 0)) // 100
    community_pool = pool - district_pool
    top_n = int(reward.get("top_districts", 0))

    district_weights = []
    for i, d in enumerate(districts.district_ids):
        if districts.rank[i] <= top_n and districts.index[i] > 0:
            district_weights.append((d, int(np.rint(districts.index_rounded[i] * 100))))
    multipliers = rubric.reward_multipliers
    community_weights = []
    for c, grade in enumerate(scores.grade):
        vetoed = any(f.startswith("veto:") for f in scores.flags[c])
        if grade in multipliers and not vetoed:
            community_weights.append((communities.ids[c], int(communities.households[c]) * multipliers[grade]))

    by_district = largest_remainder(district_pool, district_weights)
    by_community = largest_remainder(community_pool, community_weights)
    return Rewards(
        pool_fen=pool,
        district_pool_fen=district_pool,
        community_pool_fen=community_pool,
        districts=by_district.amounts,
        communities=by_community.amounts,
        unallocated_fen=by_district.unallocated + by_community.unallocated,
    )
