"""Rank uncertainty by Monte Carlo (OECD/JRC Handbook 2008, step 7; COINr) and funnel limits.

One draw re-does the whole scoring with
* resident answers resampled per community and item (a multinomial bootstrap of the
  kept answer counts; the overall question likewise, so the acceptance cap can move),
* each community's agencies resampled with replacement,
* every item weight and source weight multiplied by an independent U(0.8, 1.2),
and ranks the communities and districts again. The spread of ranks over the draws
is the rank's uncertainty. Fixed conditions (vetoes, sample size, pending sources)
stay as they are: they are facts, not estimates. Communities with identical data
share their draws (common random numbers), so they stay tied in every draw.

A draw is scored by :func:`score_draws` with the functions of :mod:`.engine`, over a
leading draw axis: a draw that perturbs and resamples nothing gives the nominal scores.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..domain.rubric import Rubric
from .engine import (
    CommunityInputs,
    CommunityScores,
    DistrictIndex,
    InspectionInputs,
    SurveyCounts,
    agency_item_scores,
    composite_scores,
    district_reward_eligible,
    district_scores,
    grade_indices,
    likert_item_scores,
    professional_item_scores,
    reward_eligible,
    source_weights,
)
from .ranking import competition_rank
from .rounding import round_score
from .stats import Z95, Z998, below_rate

#: elements of the largest per-chunk array (draws × communities × agencies × items)
CHUNK_ELEMENTS = 2_000_000


@dataclass
class RankSpread:
    """Per unit: median rank, 5th and 95th percentile ranks, share of draws in the reward set."""

    median: np.ndarray
    low: np.ndarray
    high: np.ndarray
    reward_share: np.ndarray


@dataclass
class Draws:
    """A batch of ``b`` draws of a round's uncertain inputs.

    Communities with identical data form one group and share its drawn answers.
    """

    item_weights: np.ndarray  # float (b, K)
    source_weights: np.ndarray  # float (b, 3), in the order of engine.SOURCES
    resident_items: np.ndarray  # int (b, G, K, 5): resident answer counts per group
    satisfied: np.ndarray  # int (b, G): overall answers of 4 or 5 per group
    group: np.ndarray  # int[C]: each community's group
    agency_scores: np.ndarray  # float (b, M, K): per considered inspection, the item scores drawn for it


@dataclass
class DrawScores:
    """The scores of a batch of draws (leading axis: draw)."""

    composite: np.ndarray  # (b, C), NaN when pending
    grade_index: np.ndarray  # (b, C), into rubric.grades
    reward_eligible: np.ndarray  # (b, C)
    community_rank: np.ndarray  # (b, R): ranks among the nominally ranked communities
    district_index: np.ndarray  # (b, D)
    district_rank: np.ndarray  # (b, D)
    district_rewarded: np.ndarray  # (b, D)


def score_draws(
    rubric: Rubric,
    communities: CommunityInputs,
    residents: SurveyCounts,
    inspections: InspectionInputs,
    nominal: CommunityScores,
    districts: DistrictIndex,
    top_districts: int,
    draws: Draws,
) -> DrawScores:
    """Score every draw of the batch with the engine's rules.

    The public score's items, the sample rule and the vetoes stay nominal.
    """
    applicable = communities.applicable
    prof_items = professional_item_scores(draws.agency_scores, inspections.community, len(communities))
    res_items = likert_item_scores(draws.resident_items, rubric.likert_points)[:, draws.group]
    *_, composite = composite_scores(
        (prof_items, res_items, nominal.public_items), applicable, draws.item_weights[:, None, :],
        draws.source_weights[:, None, :])
    rounded = round_score(composite)

    answered = residents.overall.sum(axis=1)
    below = below_rate(draws.satisfied[:, draws.group], answered, rubric.acceptance_satisfaction_rate)
    grade_index = grade_indices(rounded, rubric, nominal.insufficient | below, nominal.vetoed)

    # districts: quality from the drawn composites of the nominally graded communities, progress as is;
    # a composite a draw leaves undefined counts as 0
    _, index = district_scores(rubric, np.nan_to_num(composite), communities.households, districts.member,
                               districts.counted, districts.progress)
    ranked = np.flatnonzero(nominal.rank > 0)  # pending communities stay out of every draw
    community_rank = np.array([competition_rank(row) for row in rounded[:, ranked]], dtype=np.int32)
    district_rank = np.array([competition_rank(row) for row in round_score(index)], dtype=np.int32)
    return DrawScores(
        composite=composite,
        grade_index=grade_index,
        reward_eligible=reward_eligible(grade_index, nominal.vetoed, rubric),
        community_rank=community_rank.reshape(len(rounded), ranked.size),
        district_index=index,
        district_rank=district_rank.reshape(index.shape),
        district_rewarded=district_reward_eligible(district_rank, index, top_districts),
    )


def rank_uncertainty(
    rubric: Rubric,
    communities: CommunityInputs,
    residents: SurveyCounts,
    public: SurveyCounts,
    inspections: InspectionInputs,
    nominal: CommunityScores,
    districts: DistrictIndex,
    reward: dict,
    draws: int = 1000,
    seed: int = 0,
    perturbation: float = 0.2,
) -> tuple[RankSpread, RankSpread]:
    """Monte Carlo rank spreads of communities (ranked ones) and of the round's districts."""
    rng = np.random.default_rng(seed)
    C, K = communities.applicable.shape

    # weights: item and source, each × U(1 − p, 1 + p), independently per draw
    item_w = rubric.weights[None, :] * rng.uniform(1 - perturbation, 1 + perturbation, size=(draws, K))
    source_w = source_weights(rubric)[None, :] * rng.uniform(1 - perturbation, 1 + perturbation, size=(draws, 3))

    # each community's inspections: the row of its a-th agency, and how many it has
    community = inspections.community
    filled = np.bincount(community, minlength=C)
    A = max(1, int(filled.max(initial=0)))
    starts = np.cumsum(filled) - filled
    by_community = np.argsort(community, kind="stable")
    position = np.empty(community.size, dtype=np.int64)
    position[by_community] = np.arange(community.size) - starts[community[by_community]]
    row_of = np.zeros((C, A), dtype=np.int64)
    row_of[community, position] = np.arange(community.size)
    agency_scores = agency_item_scores(inspections)
    per_agency = np.full((C, A, K), np.nan)
    per_agency[community, position] = agency_scores

    answered = residents.overall.sum(axis=1)
    p_sat = np.where(answered > 0, (residents.overall[:, 3] + residents.overall[:, 4]) / np.maximum(answered, 1), 0.0)
    # Communities with identical data share one set of draws (common random numbers): they stay
    # tied in every draw. Distinct data are drawn together, vectorised, from one stream.
    # the counts hashed as int64 whatever their dtype (smaller tables draw the same seeds as int64 ones)
    keys = [hashlib.sha256(b"".join(np.ascontiguousarray(x).tobytes() for x in (
        residents.items[c].astype(np.int64, copy=False), residents.overall[c].astype(np.int64, copy=False),
        per_agency[c], communities.applicable[c]))).digest()
        for c in range(C)]
    _, first, group = np.unique(np.array(keys, dtype=object), return_index=True, return_inverse=True)
    group = group.reshape(-1)
    stream = np.random.default_rng([seed, 1])
    g_items = residents.items[first].astype(np.int64, copy=False)
    g_n = g_items.sum(axis=-1)
    g_p = np.where(g_n[..., None] > 0, g_items / np.maximum(g_n, 1)[..., None], 0.2)
    g_answered, g_p_sat, g_filled = answered[first], p_sat[first], np.maximum(filled[first], 1)

    ranked = np.flatnonzero(nominal.rank > 0)
    n_d = len(districts.district_ids)
    top_districts = int(reward.get("top_districts", 0))
    community_ranks = np.zeros((draws, ranked.size), dtype=np.int32)
    eligible = np.zeros((draws, ranked.size), dtype=bool)
    district_ranks = np.zeros((draws, n_d), dtype=np.int32)
    in_reward = np.zeros((draws, n_d), dtype=bool)
    # draws in chunks, so memory stays bounded for rounds of many communities
    chunk = max(1, min(draws, CHUNK_ELEMENTS // max(1, C * K * max(A, 5))))
    for start in range(0, draws, chunk):
        b = min(chunk, draws - start)
        sampled = stream.multinomial(g_n, g_p, size=(b, *g_n.shape))  # (b, G, K, 5)
        satisfied = stream.binomial(g_answered, g_p_sat, size=(b, g_answered.size))
        picks = (stream.random((b, g_answered.size, A)) * g_filled[None, :, None]).astype(int)[:, group]
        batch = Draws(
            item_weights=item_w[start:start + b], source_weights=source_w[start:start + b],
            resident_items=sampled, satisfied=satisfied, group=group,
            agency_scores=agency_scores[row_of[community, picks[:, community, position]]],
        )
        scored = score_draws(rubric, communities, residents, inspections, nominal, districts, top_districts, batch)
        community_ranks[start:start + b] = scored.community_rank
        eligible[start:start + b] = scored.reward_eligible[:, ranked]
        district_ranks[start:start + b] = scored.district_rank
        in_reward[start:start + b] = scored.district_rewarded

    def spread(ranks: np.ndarray, rewarded: np.ndarray) -> RankSpread:
        return RankSpread(
            median=np.median(ranks, axis=0),
            low=np.percentile(ranks, 5, axis=0, method="lower"),
            high=np.percentile(ranks, 95, axis=0, method="higher"),
            reward_share=rewarded.mean(axis=0),
        )

    return spread(community_ranks, eligible), spread(district_ranks, in_reward)


@dataclass
class Funnel:
    """Satisfaction rate against sample size, with control limits around the pooled rate."""

    centre: float | None
    rates: np.ndarray
    n: np.ndarray
    low95: np.ndarray
    high95: np.ndarray
    low998: np.ndarray
    high998: np.ndarray


def funnel_limits(satisfied: np.ndarray, answered: np.ndarray) -> Funnel:
    """Binomial funnel limits p0 ± z·√(p0(1−p0)/n) around the pooled rate p0 (Spiegelhalter 2005)."""
    satisfied = np.asarray(satisfied, dtype=float)
    answered = np.asarray(answered, dtype=float)
    total = answered.sum()
    p0 = satisfied.sum() / total if total > 0 else np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.sqrt(p0 * (1 - p0) / answered)
        rates = np.where(answered > 0, satisfied / answered, np.nan)
    clip = lambda x: np.clip(x, 0.0, 1.0)  # noqa: E731
    return Funnel(
        centre=None if np.isnan(p0) else float(p0), rates=rates, n=answered,
        low95=clip(p0 - Z95 * se), high95=clip(p0 + Z95 * se),
        low998=clip(p0 - Z998 * se), high998=clip(p0 + Z998 * se),
    )
