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
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..domain.rubric import Rubric
from .engine import CommunityInputs, CommunityScores, DistrictIndex, InspectionInputs, SurveyCounts
from .ranking import competition_rank
from .stats import exact_fraction

#: elements of the largest per-chunk array (draws × communities × agencies × items)
CHUNK_ELEMENTS = 2_000_000
Z_95 = 1.959963984540054
Z_998 = 3.090232306167813


@dataclass
class RankSpread:
    """Per unit: median rank, 5th and 95th percentile ranks, share of draws in the reward set."""

    median: np.ndarray
    low: np.ndarray
    high: np.ndarray
    reward_share: np.ndarray


def _weighted(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Σ w·s / Σ w over defined scores; ``scores`` (D, C, K), ``weights`` (D, K)."""
    defined = ~np.isnan(scores)
    w = np.where(defined, weights[:, None, :], 0.0)
    num = (np.nan_to_num(scores) * w).sum(axis=-1)
    den = w.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


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
    points = np.asarray(rubric.likert_points, dtype=float)
    applicable = communities.applicable

    # weights: item and source, each × U(1 − p, 1 + p), independently per draw
    item_w = rubric.weights[None, :] * rng.uniform(1 - perturbation, 1 + perturbation, size=(draws, K))
    sw = rubric.source_weights
    source_w = np.array([sw["professional"], sw["resident"], sw["public"]])[None, :] * rng.uniform(
        1 - perturbation, 1 + perturbation, size=(draws, 3))

    # per community, from its own data-keyed stream: resident answers and the overall
    # question resampled, and its agencies resampled with replacement
    per_agency = np.full((C, max(1, max((len(a) for a in inspections.agencies), default=1)), K), np.nan)
    filled = np.zeros(C, dtype=int)
    defined = inspections.max_points > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(defined, 100.0 * inspections.points / np.where(defined, inspections.max_points, 1), np.nan)
    for row, c in enumerate(inspections.community.tolist()):
        per_agency[c, filled[c]] = values[row]
        filled[c] += 1
    A = per_agency.shape[1]
    answered = residents.overall.sum(axis=1)
    p_sat = np.where(answered > 0, (residents.overall[:, 3] + residents.overall[:, 4]) / np.maximum(answered, 1), 0.0)
    # Communities with identical data share one set of draws (common random numbers): they stay
    # tied in every draw. Distinct data are drawn together, vectorised, from one stream.
    keys = [hashlib.sha256(b"".join(np.ascontiguousarray(x).tobytes() for x in (
        residents.items[c], residents.overall[c], per_agency[c], applicable[c]))).digest() for c in range(C)]
    _, first, group = np.unique(np.array(keys, dtype=object), return_index=True, return_inverse=True)
    group = group.reshape(-1)
    stream = np.random.default_rng([seed, 1])
    g_items = residents.items[first]
    g_n = g_items.sum(axis=-1)
    g_p = np.where(g_n[..., None] > 0, g_items / np.maximum(g_n, 1)[..., None], 0.2)
    g_answered, g_p_sat, g_filled = answered[first], p_sat[first], np.maximum(filled[first], 1)
    threshold = exact_fraction(rubric.acceptance_satisfaction_rate)
    pub_items = np.where(applicable, nominal.public_items, np.nan)
    ranked = nominal.rank > 0  # pending communities stay out of every draw
    idx = np.flatnonzero(ranked)
    mins = np.array([g.min for g in rubric.grades])
    names = [g.grade for g in rubric.grades]
    cap = names.index(rubric.cap_grade)
    insufficient = nominal.resident_responses < nominal.required_responses
    vetoed = np.array([any(f.startswith("veto:") for f in flags) for flags in nominal.flags], dtype=bool)
    top = [names.index(g) for g in rubric.reward_multipliers]
    d_pos = {d: i for i, d in enumerate(districts.district_ids)}
    member = np.array([d_pos.get(d, -1) for d in communities.district_ids], dtype=np.int64)
    graded = np.array([g is not None for g in nominal.grade], dtype=bool) & (member >= 0)
    n_d = len(districts.district_ids)
    totals = np.bincount(member[graded], weights=communities.households[graded], minlength=n_d)
    dw = rubric.district_weights
    top_districts = int(reward.get("top_districts", 0))

    community_ranks = np.zeros((draws, idx.size), dtype=np.int32)
    eligible = np.zeros((draws, idx.size), dtype=bool)
    district_ranks = np.zeros((draws, n_d), dtype=np.int32)
    in_reward = np.zeros((draws, n_d), dtype=bool)
    # draws in chunks, so memory stays bounded for rounds of many communities
    chunk = max(1, min(draws, CHUNK_ELEMENTS // max(1, C * K * max(A, 5))))
    for start in range(0, draws, chunk):
        b = min(chunk, draws - start)
        sampled = stream.multinomial(g_n, g_p, size=(b, *g_n.shape))  # (b, G, K, 5)
        with np.errstate(invalid="ignore", divide="ignore"):
            g_means = np.where(g_n > 0, sampled @ points / np.maximum(g_n, 1), np.nan)
        res_items = np.where(applicable[None], g_means[:, group], np.nan)
        satisfied = stream.binomial(g_answered, g_p_sat, size=(b, g_answered.size))[:, group]
        picks = (stream.random((b, g_answered.size, A)) * g_filled[None, :, None]).astype(int)[:, group]
        below = (answered[None, :] > 0) & (satisfied * threshold.denominator < threshold.numerator * answered[None, :])
        chosen = per_agency[np.arange(C)[None, :, None], picks]  # (b, C, A, K)
        chosen = np.where((np.arange(A)[None, None, :, None] < filled[None, :, None, None]), chosen, np.nan)
        with np.errstate(invalid="ignore"):
            counts = (~np.isnan(chosen)).sum(axis=2)
            prof_items = np.where(counts > 0, np.nansum(chosen, axis=2) / np.maximum(counts, 1), np.nan)
        prof_items = np.where(applicable[None], prof_items, np.nan)

        w_items = item_w[start:start + b]
        P = _weighted(prof_items, w_items)
        R = _weighted(res_items, w_items)
        U = _weighted(np.broadcast_to(pub_items, (b, C, K)), w_items)
        stacked = np.stack([P, R, U], axis=-1)
        w = np.where(np.isnan(stacked), 0.0, source_w[start:start + b, None, :])
        composite = (np.nan_to_num(stacked) * w).sum(-1) / np.where(w.sum(-1) > 0, w.sum(-1), 1)
        composite = np.where(ranked[None, :] & ~np.isnan(P) & ~np.isnan(R), np.round(composite, 2), np.nan)

        # grades and reward eligibility per draw
        grade_idx = (np.nan_to_num(composite, nan=-1)[..., None] >= mins).argmax(-1)
        grade_idx = np.where(insufficient[None, :] | below, np.maximum(grade_idx, cap), grade_idx)
        grade_idx = np.where(vetoed[None, :], len(names) - 1, grade_idx)
        eligible[start:start + b] = (np.isin(grade_idx, top) & ~vetoed[None, :])[:, idx]

        # districts: quality from the drawn composites of graded communities, progress as is
        for d in range(b):
            community_ranks[start + d] = competition_rank(composite[d, idx])
            sums = np.bincount(member[graded], weights=np.nan_to_num(composite[d, graded]) *
                               communities.households[graded], minlength=n_d)
            quality = np.where(totals > 0, sums / np.where(totals > 0, totals, 1), 0.0)
            index = np.round(dw["quality"] * quality + dw["progress"] * districts.progress, 2)
            district_ranks[start + d] = competition_rank(index)
            in_reward[start + d] = (district_ranks[start + d] <= top_districts) & (index > 0)

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
        low95=clip(p0 - Z_95 * se), high95=clip(p0 + Z_95 * se),
        low998=clip(p0 - Z_998 * se), high998=clip(p0 + Z_998 * se),
    )
