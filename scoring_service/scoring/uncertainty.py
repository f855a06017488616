"""Rank uncertainty by Monte Carlo (OECD/JRC Handbook 2008, step 7; COINr) and funnel limits.

One draw re-does the whole scoring with
* resident answers resampled per community and item (a multinomial bootstrap of the
  kept answer counts; the overall question likewise, so the acceptance cap can move),
* each community's agencies resampled with replacement,
* every item weight and source weight multiplied by an independent U(0.8, 1.2),
and ranks the communities and districts again. The spread of ranks over the draws
is the rank's uncertainty. Fixed conditions (vetoes, sample size, pending sources)
stay as they are: they are facts, not estimates.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..rubric import Rubric
from .engine import CommunityInputs, CommunityScores, DistrictIndex, InspectionInputs, SurveyCounts
from .ranking import competition_rank
from .stats import exact_fraction

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


def community_rng(seed: int, *data: np.ndarray) -> np.random.Generator:
    """A random stream keyed by the seed and a community's own data (common random numbers):
    communities with identical data get identical draws, so they stay tied in every draw."""
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(d).tobytes() for d in data)).digest()
    return np.random.default_rng([seed, *np.frombuffer(digest[:16], dtype=np.uint32).tolist()])


def _bootstrap_means(rng: np.random.Generator, counts: np.ndarray, points: np.ndarray, draws: int) -> np.ndarray:
    """Mean Likert points of ``draws`` multinomial resamples of each item's count row: (draws, K)."""
    n = counts.sum(axis=-1)
    safe = np.where(n[..., None] > 0, counts / np.maximum(n, 1)[..., None], 0.2)
    sampled = rng.multinomial(n, safe, size=(draws, *n.shape))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, sampled @ points / np.maximum(n, 1), np.nan)


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
    res_items = np.empty((draws, C, K))
    satisfied = np.empty((draws, C), dtype=np.int64)
    picks = np.empty((draws, C, A), dtype=np.int64)
    answered = residents.overall.sum(axis=1)
    for c in range(C):
        crng = community_rng(seed, residents.items[c], residents.overall[c], per_agency[c], applicable[c])
        res_items[:, c] = _bootstrap_means(crng, residents.items[c], points, draws)
        p_sat = (residents.overall[c, 3] + residents.overall[c, 4]) / answered[c] if answered[c] else 0.0
        satisfied[:, c] = crng.binomial(answered[c], p_sat, size=draws)
        picks[:, c] = (crng.random((draws, A)) * max(filled[c], 1)).astype(int)
    res_items = np.where(applicable[None], res_items, np.nan)
    threshold = exact_fraction(rubric.acceptance_satisfaction_rate)
    below = (answered[None, :] > 0) & (satisfied * threshold.denominator < threshold.numerator * answered[None, :])
    chosen = per_agency[np.arange(C)[None, :, None], picks]  # (D, C, A, K)
    chosen = np.where((np.arange(A)[None, None, :, None] < filled[None, :, None, None]), chosen, np.nan)
    with np.errstate(invalid="ignore"):
        counts = (~np.isnan(chosen)).sum(axis=2)
        prof_items = np.where(counts > 0, np.nansum(chosen, axis=2) / np.maximum(counts, 1), np.nan)
    prof_items = np.where(applicable[None], prof_items, np.nan)

    pub_items = np.where(applicable, nominal.public_items, np.nan)
    P = _weighted(prof_items, item_w)
    R = _weighted(res_items, item_w)
    U = _weighted(np.broadcast_to(pub_items, (draws, C, K)), item_w)
    stacked = np.stack([P, R, U], axis=-1)
    w = np.where(np.isnan(stacked), 0.0, source_w[:, None, :])
    composite = (np.nan_to_num(stacked) * w).sum(-1) / np.where(w.sum(-1) > 0, w.sum(-1), 1)
    ranked = nominal.rank > 0  # pending communities stay out of every draw
    composite = np.where(ranked[None, :] & ~np.isnan(P) & ~np.isnan(R), np.round(composite, 2), np.nan)

    # grades and reward eligibility per draw
    mins = np.array([g.min for g in rubric.grades])
    grade_idx = (np.nan_to_num(composite, nan=-1)[..., None] >= mins).argmax(-1)
    names = [g.grade for g in rubric.grades]
    cap = names.index(rubric.cap_grade)
    insufficient = nominal.resident_responses < nominal.required_responses
    grade_idx = np.where(insufficient[None, :] | below, np.maximum(grade_idx, cap), grade_idx)
    vetoed = np.array([any(f.startswith("veto:") for f in flags) for flags in nominal.flags])
    grade_idx = np.where(vetoed[None, :], len(names) - 1, grade_idx)
    top = [names.index(g) for g in rubric.reward_multipliers]
    eligible = np.isin(grade_idx, top) & ~vetoed[None, :] & ranked[None, :]

    community_ranks = np.zeros((draws, C), dtype=int)
    idx = np.flatnonzero(ranked)
    for d in range(draws):
        community_ranks[d, idx] = competition_rank(composite[d, idx])

    # districts: quality from the drawn composites of graded communities, progress as is
    d_pos = {d: i for i, d in enumerate(districts.district_ids)}
    member = np.array([d_pos.get(d, -1) for d in communities.district_ids])
    graded = np.array([g is not None for g in nominal.grade]) & (member >= 0)
    n_d = len(districts.district_ids)
    onehot = np.zeros((C, n_d))
    onehot[np.flatnonzero(graded), member[graded]] = communities.households[graded]
    totals = onehot.sum(axis=0)
    quality = np.where(totals > 0, np.nan_to_num(composite) @ onehot / np.where(totals > 0, totals, 1), 0.0)
    dw = rubric.district_weights
    index = np.round(dw["quality"] * quality + dw["progress"] * districts.progress[None, :], 2)
    district_ranks = np.array([competition_rank(index[d]) for d in range(draws)])
    in_reward = (district_ranks <= int(reward.get("top_districts", 0))) & (index > 0)

    def spread(ranks: np.ndarray, rewarded: np.ndarray, rows: np.ndarray) -> RankSpread:
        r = ranks[:, rows].astype(float)
        return RankSpread(
            median=np.median(r, axis=0),
            low=np.percentile(r, 5, axis=0, method="lower"),
            high=np.percentile(r, 95, axis=0, method="higher"),
            reward_share=rewarded[:, rows].mean(axis=0),
        )

    return spread(community_ranks, eligible, idx), spread(district_ranks, in_reward, np.arange(n_d))


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
