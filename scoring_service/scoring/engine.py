"""Community scores, grades, rankings, district index and rewards (SPEC §5).

Everything works on per-community sufficient statistics held in arrays:

* ``C`` communities, ``K`` rubric items (in rubric order), Likert levels 1..5;
* survey counts ``items[C, K, 5]`` (answers per item and level),
  ``overall[C, 5]`` and ``responses[C]``;
* one row per considered inspection: per-item sums of points and of
  ``max_points`` over the checks not marked ``"na"``.

The steps of the score (item scores, composite, grade, district index) also
take arrays with extra leading axes, so the Monte Carlo draws of
:mod:`.uncertainty` score a whole batch of perturbed rounds with these same
functions: there is one implementation of each rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..domain.rubric import Rubric
from .ranking import competition_rank, competition_rank_within, ranking_order
from .rewards import largest_remainder
from .rounding import round_score
from .stats import below_rate, required_responses, wilson_interval

LEVELS = 5
#: the sources of the composite, in the order of :func:`source_weights`
SOURCES = ("professional", "resident", "public")


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
    grade_index: np.ndarray  # into rubric.grades, best first; -1 when there is no grade
    insufficient: np.ndarray  # bool: fewer resident responses than required
    vetoed: np.ndarray  # bool: a critical check scored 0


def sum_by_group(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Sums of ``values`` over its last axis by ``groups`` (int[N], in 0..n_groups−1): (..., N) → (..., n_groups).

    Each sum adds its terms in index order, whatever the leading axes.

    >>> sum_by_group(np.array([[1.0, 2.0, 4.0], [8.0, 16.0, 32.0]]), np.array([1, 0, 1]), 2).tolist()
    [[2.0, 5.0], [16.0, 40.0]]
    """
    values = np.asarray(values, dtype=float)
    lead, n = values.shape[:-1], values.shape[-1]
    rows = int(np.prod(lead, dtype=np.int64))
    bins = (np.arange(rows, dtype=np.int64)[:, None] * n_groups + np.asarray(groups, dtype=np.int64)[None, :]).ravel()
    return np.bincount(bins, weights=values.reshape(-1), minlength=rows * n_groups).reshape(*lead, n_groups)


def likert_item_scores(items: np.ndarray, likert_points: Sequence[float]) -> np.ndarray:
    """Mean Likert points per community and item; NaN where nobody answered. ``items`` (..., 5).

    >>> likert_item_scores(np.array([[[0, 0, 0, 1, 1]]]), [20, 40, 60, 80, 100])
    array([[90.]])
    """
    counts = np.asarray(items)
    n = counts.sum(axis=-1)
    total = counts @ np.asarray(likert_points, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.where(n > 0, n, 1), np.nan)


def weighted_item_mean(item_scores: np.ndarray, weights: np.ndarray, applicable: np.ndarray) -> np.ndarray:
    """Σ w·s / Σ w over applicable items with a defined score; NaN if none.

    ``item_scores`` (..., C, K); ``weights`` (K,), or (D, 1, K) for one set per draw.

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


def agency_item_scores(inspections: InspectionInputs) -> np.ndarray:
    """P(a,i) per considered inspection (row) and item: 100·Σpoints/Σmax; NaN where every check was "na"."""
    defined = inspections.max_points > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(defined, 100.0 * inspections.points / np.where(defined, inspections.max_points, 1), np.nan)


def professional_item_scores(agency_scores: np.ndarray, community: np.ndarray, n_communities: int) -> np.ndarray:
    """P(i): mean over agencies where defined, NaN where none: rows (..., M, K) → (..., C, K).

    ``community`` (int[M]) is the community of each row.
    """
    defined = ~np.isnan(agency_scores)

    def per_community(values: np.ndarray) -> np.ndarray:
        return np.swapaxes(sum_by_group(np.swapaxes(values, -1, -2), community, n_communities), -1, -2)

    total = per_community(np.where(defined, agency_scores, 0.0))
    count = per_community(defined)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)


def source_weights(rubric: Rubric) -> np.ndarray:
    """W(s) in the order of :data:`SOURCES`."""
    return np.array([float(rubric.source_weights[s]) for s in SOURCES])


def composite_scores(
    item_scores: Sequence[np.ndarray], applicable: np.ndarray, item_weights: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, ...]:
    """The source scores P, R, U and the composite, from item scores (..., C, K) of each source.

    composite = Σ W(s)·S(s) / Σ W(s) over the defined sources; NaN unless P and R are defined.
    ``item_weights`` as in :func:`weighted_item_mean`; ``weights`` (3,), or (D, 1, 3) per draw.
    """
    scores = np.broadcast_arrays(*(weighted_item_mean(s, item_weights, applicable) for s in item_scores))
    stacked = np.stack(scores, axis=-1)
    w = np.asarray(weights, dtype=float) * ~np.isnan(stacked)
    num = (np.nan_to_num(stacked) * w).sum(axis=-1)
    den = w.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        composite = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    professional, resident, public = scores
    return professional, resident, public, np.where(np.isnan(professional) | np.isnan(resident), np.nan, composite)


def grade_indices(composite_rounded: np.ndarray, rubric: Rubric, capped=False, vetoed=False) -> np.ndarray:
    """Index (into ``rubric.grades``, best first) of each score's grade, after the caps.

    The highest grade whose threshold the 2-decimal score reaches; ``capped`` (too few responses
    or satisfaction below acceptance) caps it at ``rubric.cap_grade``, ``vetoed`` makes it the lowest.
    Scores of any shape; undefined scores get the lowest grade (callers leave them ungraded).
    """
    mins = np.array([g.min for g in rubric.grades])
    lowest = len(mins) - 1
    reached = np.nan_to_num(composite_rounded, nan=-1.0)[..., None] >= mins
    index = np.where(reached.any(axis=-1), reached.argmax(axis=-1), lowest)
    cap = [g.grade for g in rubric.grades].index(rubric.cap_grade)
    index = np.where(capped, np.maximum(index, cap), index)
    return np.where(vetoed, lowest, index)


def reward_eligible(grade_index: np.ndarray, vetoed: np.ndarray, rubric: Rubric) -> np.ndarray:
    """Communities eligible for community rewards: a grade with a multiplier, and no veto."""
    names = [g.grade for g in rubric.grades]
    return np.isin(grade_index, [names.index(g) for g in rubric.reward_multipliers]) & ~np.asarray(vetoed)


def score_communities(
    rubric: Rubric,
    communities: CommunityInputs,
    residents: SurveyCounts,
    public: SurveyCounts,
    inspections: InspectionInputs,
) -> CommunityScores:
    """Scores, flags, grades and ranks of every community of a round."""
    n = len(communities)
    applicable = communities.applicable

    prof_items = professional_item_scores(agency_item_scores(inspections), inspections.community, n)
    prof_items = np.where(applicable, prof_items, np.nan)
    res_items = np.where(applicable, likert_item_scores(residents.items, rubric.likert_points), np.nan)
    pub_items = np.where(applicable, likert_item_scores(public.items, rubric.likert_points), np.nan)
    professional, resident, public_score, composite = composite_scores(
        (prof_items, res_items, pub_items), applicable, rubric.weights, source_weights(rubric))
    composite_rounded = round_score(composite)

    share, lo, hi = rubric.min_responses
    required = required_responses(communities.households, share, lo, hi)

    satisfied = residents.overall[:, 3] + residents.overall[:, 4]
    answered = residents.overall.sum(axis=1)
    rate, ci_lo, ci_hi = wilson_interval(satisfied, answered)
    below = below_rate(satisfied, answered, rubric.acceptance_satisfaction_rate)

    pending_inspection = np.isnan(professional)
    pending_survey = np.isnan(resident)
    insufficient = residents.responses < required
    vetoes = [sorted(set(v)) for v in inspections.vetoes] if inspections.vetoes else [[] for _ in range(n)]
    vetoed = np.array([bool(v) for v in vetoes], dtype=bool)
    defined = ~np.isnan(composite_rounded)
    grade_index = np.where(defined, grade_indices(composite_rounded, rubric, insufficient | below, vetoed), -1)
    names = [g.grade for g in rubric.grades]
    grades: list[str | None] = [names[i] if i >= 0 else None for i in grade_index.tolist()]

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
    ranked = np.flatnonzero(defined)
    rank[ranked] = competition_rank(composite_rounded[ranked])
    _, district_codes = np.unique(np.asarray(communities.district_ids, dtype=str), return_inverse=True)
    rank_in_district[ranked] = competition_rank_within(composite_rounded[ranked], district_codes[ranked])

    return CommunityScores(
        professional=professional, professional_items=prof_items,
        resident=resident, resident_items=res_items, resident_responses=residents.responses,
        required_responses=required, satisfaction_rate=rate, satisfaction_low=ci_lo, satisfaction_high=ci_hi,
        public=public_score, public_items=pub_items, public_responses=public.responses,
        composite=composite, composite_rounded=composite_rounded, grade=grades, flags=flags,
        rank=rank, rank_in_district=rank_in_district,
        grade_index=grade_index, insufficient=insufficient, vetoed=vetoed,
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
    member: np.ndarray  # per community: its position in district_ids, -1 when not in the quotas
    counted: np.ndarray  # per community: graded and in a district of the quotas


def district_scores(
    rubric: Rubric, composite: np.ndarray, households: np.ndarray, member: np.ndarray, counted: np.ndarray,
    progress: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Q(d), the households-weighted mean composite of the counted communities (0 when none), and
    the index D = wq·Q + wp·G. ``composite`` (..., C) → (..., D)."""
    n_districts = progress.shape[-1]
    rows = np.flatnonzero(counted)
    weighted = sum_by_group(np.asarray(composite)[..., rows] * households[rows], member[rows], n_districts)
    total = sum_by_group(households[rows], member[rows], n_districts)
    with np.errstate(invalid="ignore", divide="ignore"):
        quality = np.where(total > 0, weighted / np.where(total > 0, total, 1), 0.0)
    dw = rubric.district_weights
    return quality, dw["quality"] * quality + dw["progress"] * progress


def district_reward_eligible(rank: np.ndarray, index: np.ndarray, top_districts: int) -> np.ndarray:
    """Districts eligible for district rewards: rank ≤ ``top_districts`` (ties included) and D > 0."""
    return (np.asarray(rank) <= int(top_districts)) & (np.asarray(index) > 0)


def district_index(
    rubric: Rubric, quotas: Mapping[str, int], communities: CommunityInputs, scores: CommunityScores,
    progress: Mapping[str, float] | None = None,
) -> DistrictIndex:
    """District index D = wq·Q + wp·G for every district of the round's quotas.

    G is the graded share 100 × min(1, graded / quota) unless ``progress`` gives G per district
    (the milestone progress of SPEC §11 for a round whose ``progress_rule`` is ``milestones``).
    """
    ids = sorted(quotas)
    quota = np.array([int(quotas[d]) for d in ids], dtype=np.int64)
    position = {d: i for i, d in enumerate(ids)}
    member = np.array([position.get(d, -1) for d in communities.district_ids], dtype=np.int64)
    counted = (scores.grade_index >= 0) & (member >= 0)
    graded = np.bincount(member[counted], minlength=len(ids)).astype(np.int64)
    counts = [{g.grade: 0 for g in rubric.grades} for _ in ids]
    for c in np.flatnonzero(counted).tolist():
        counts[member[c]][scores.grade[c]] += 1
    if progress is None:
        g = 100.0 * np.minimum(1.0, graded / np.maximum(quota, 1))
    else:
        g = np.array([float(progress[d]) for d in ids], dtype=float)
    quality, index = district_scores(rubric, scores.composite, communities.households, member, counted, g)
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
        progress=g,
        index=index,
        index_rounded=index_rounded,
        rank=competition_rank(index_rounded),
        grade_counts=counts,
        share_good_or_better=share,
        order=ranking_order(index_rounded, ids),
        member=member,
        counted=counted,
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

    district_weights = [
        (districts.district_ids[i], int(np.rint(districts.index_rounded[i] * 100)))
        for i in np.flatnonzero(district_reward_eligible(districts.rank, districts.index, top_n)).tolist()
    ]
    multipliers = rubric.reward_multipliers
    community_weights = [
        (communities.ids[c], int(communities.households[c]) * multipliers[scores.grade[c]])
        for c in np.flatnonzero(reward_eligible(scores.grade_index, scores.vetoed, rubric)).tolist()
    ]

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
