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

from ..domain.rubric import Rubric
from .ranking import competition_rank, competition_rank_within, ranking_order
from .rewards import largest_remainder
from .rounding import round_score
from .stats import below_rate_array, required_responses_array, wilson_arrays

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
        applicable = np.ones((len(communities), len(rubric.items)), dtype=bool)
        flags: dict[str, np.ndarray] = {}
        for k, item in enumerate(rubric.items):
            flag = item.get("applies_when")
            if flag:
                if flag not in flags:
                    flags[flag] = np.array([bool(c.get(flag)) for c in communities], dtype=bool)
                applicable[:, k] = flags[flag]
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
    row_agency: list[str] = field(default_factory=list)  # per row: the agency of that inspection


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


def grade_indices(scores_rounded: np.ndarray, rubric: Rubric) -> np.ndarray:
    """Index (into ``rubric.grades``, best first) of the highest grade each score reaches."""
    mins = np.array([g.min for g in rubric.grades])
    reached = np.nan_to_num(scores_rounded, nan=-1.0)[:, None] >= mins[None, :]
    return np.where(reached.any(axis=1), reached.argmax(axis=1), len(mins) - 1)


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
    required = required_responses_array(communities.households, share, lo, hi)

    satisfied = residents.overall[:, 3] + residents.overall[:, 4]
    answered = residents.overall.sum(axis=1)
    rate, ci_lo, ci_hi = wilson_arrays(satisfied, answered)
    below = below_rate_array(satisfied, answered, rubric.acceptance_satisfaction_rate)

    sw = rubric.source_weights
    composite = combine_sources(
        [professional, resident, public_score], [sw["professional"], sw["resident"], sw["public"]]
    )
    composite = np.where(np.isnan(professional) | np.isnan(resident), np.nan, composite)
    composite_rounded = round_score(composite)

    pending_inspection = np.isnan(professional)
    pending_survey = np.isnan(resident)
    insufficient = residents.responses < required
    vetoes = [sorted(set(v)) for v in inspections.vetoes] if inspections.vetoes else [[] for _ in range(n)]
    grade_index = grade_indices(composite_rounded, rubric)
    cap = [g.grade for g in rubric.grades].index(rubric.cap_grade)
    grade_index = np.where(insufficient | below, np.maximum(grade_index, cap), grade_index)
    vetoed = np.array([bool(v) for v in vetoes], dtype=bool)
    grade_index = np.where(vetoed, len(rubric.grades) - 1, grade_index)
    names = [g.grade for g in rubric.grades]
    defined = ~np.isnan(composite_rounded)
    grades: list[str | None] = [names[i] if ok else None for i, ok in zip(grade_index.tolist(), defined.tolist())]

    flags: list[list[str]] = []
    for c, (p_missing, r_missing, few, low) in enumerate(
        zip(pending_inspection.tolist(), pending_survey.tolist(), insufficient.tolist(), below.tolist())
    ):
        f = ["pending_inspection"] if p_missing else []
        if r_missing:
            f.append("pending_survey")
        if vetoes[c]:
            f.extend(f"veto:{code}" for code in vetoes[c])
        if few:
            f.append("insufficient_sample")
        if low:
            f.append("satisfaction_below_acceptance")
        flags.append(f)

    rank = np.zeros(n, dtype=np.int64)
    rank_in_district = np.zeros(n, dtype=np.int64)
    ranked = np.flatnonzero(~np.isnan(composite_rounded))
    rank[ranked] = competition_rank(composite_rounded[ranked])
    _, district_codes = np.unique(np.asarray(communities.district_ids, dtype=str), return_inverse=True)
    rank_in_district[ranked] = competition_rank_within(composite_rounded[ranked], district_codes[ranked])

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
