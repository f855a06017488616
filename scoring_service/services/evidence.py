"""Evidence for decisions: rank uncertainty, the satisfaction funnel and anomaly flags.

Nothing here changes a score: the flags are shown to administrators, who decide
by voiding what to exclude.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from datetime import timedelta

import numpy as np

from ..domain.timeutil import from_stored
from ..store.base import (
    BURST_PER_MINUTE,
    DEVICE_LIMIT,
    DUPLICATE_MIN_ANSWERS,
    DUPLICATE_WINDOW_MINUTES,
    AnomalyCandidates,
    straight_level,
)
from ..scoring.uncertainty import funnel_limits, rank_uncertainty
from .context import ServiceState
from .documents import LiveResults
from .errors import Busy, Invalid
from .results import live_results

METHOD = ("Monte Carlo: resident answers resampled per community and item (multinomial bootstrap), "
          "agencies resampled with replacement, item and source weights each × U(0.8, 1.2)")


#: draws × communities per request: bounds memory (ranks as int32) and time (about 33 s at 20,000
#: communities × 200 draws on 2 cores, under the 60 s worker timeout)
MAX_DRAW_CELLS = 4_000_000


class TooManyDraws(Invalid):
    def __init__(self, allowed: int):
        message = f"at most {allowed} draws for a round of this size"
        super().__init__(f"draws: {message}", {"draws": [message]})
        self.allowed = allowed


def draws_allowed(communities: int) -> int:
    return max(10, MAX_DRAW_CELLS // max(1, communities))


def spread_document(results: LiveResults, draws: int, seed: int) -> dict:
    """Rank spreads of the round's communities and districts from ``draws`` Monte Carlo draws."""
    communities, districts = rank_uncertainty(
        results.rubric, results.inputs, results.residents, results.public, results.inspections, results.raw,
        results.districts_raw, results.reward_rule, draws=draws, seed=seed)
    ranked = [results.inputs.ids[c] for c in np.flatnonzero(results.raw.rank > 0)]

    def rows(ids, spread):
        return {uid: {"median_rank": float(spread.median[i]),
                      "rank_interval_90": [int(spread.low[i]), int(spread.high[i])],
                      "reward_share": round(float(spread.reward_share[i]), 4)} for i, uid in enumerate(ids)}

    return {"communities": rows(ranked, communities),
            "districts": rows(results.districts_raw.district_ids, districts),
            "about": {"draws": draws, "seed": seed, "method": METHOD}}


def uncertainty(ctx: ServiceState, round_id: str, draws: int, seed: int) -> dict:
    """Rank spreads on demand (keyed callers), cached per data generation.

    Each worker runs at most ``UNCERTAINTY_CONCURRENCY`` of these at once; more get :class:`Busy`
    (429 with Retry-After) instead of queueing CPU-heavy work behind each other.
    """
    results = live_results(ctx, round_id)
    allowed = draws_allowed(len(results.inputs.ids))
    if draws > allowed:
        raise TooManyDraws(allowed)
    key = (round_id, ctx.store.generation(), draws, seed)

    def compute() -> dict:
        if not ctx.uncertainty_slots.acquire(blocking=False):
            raise Busy("too many rank-interval computations are running; try again shortly",
                       headers={"Retry-After": "5"})
        try:
            return spread_document(results, draws, seed)
        finally:
            ctx.uncertainty_slots.release()

    return ctx.uncertainty.get(key, compute)


#: draws and seed of the rank intervals frozen into a published snapshot
PUBLICATION_DRAWS = 1000
PUBLICATION_SEED = 0


def publication_uncertainty(ctx: ServiceState, results: LiveResults) -> dict:
    """Rank intervals computed once at publication, with fixed seed and draws (fewer for a very large round)."""
    draws = min(PUBLICATION_DRAWS, draws_allowed(len(results.inputs.ids)))
    return spread_document(results, draws, PUBLICATION_SEED)


def with_uncertainty(ranking: dict, key: str, id_field: str, spread: dict) -> dict:
    """A ranking document with each row's rank interval attached."""
    rows = [{**row, "uncertainty": spread[key].get(row[id_field])} for row in ranking[key]]
    return {**ranking, key: rows, "uncertainty": spread["about"]}


def funnel(ctx: ServiceState, round_id: str) -> dict:
    """Each community's satisfaction rate against its number of answers, with 95 % and 99.8 % limits."""
    results = live_results(ctx, round_id)
    overall = results.residents.overall
    satisfied = overall[:, 3] + overall[:, 4]
    answered = overall.sum(axis=1)
    f = funnel_limits(satisfied, answered)
    points = []
    for c, cid in enumerate(results.inputs.ids):
        if answered[c] == 0:
            continue
        flag = None
        if f.rates[c] < f.low998[c]:
            flag = "satisfaction_outlier_low"
        elif f.rates[c] > f.high998[c]:
            flag = "satisfaction_outlier_high"
        points.append({
            "community_id": cid, "name_zh": results.communities[c]["name_zh"],
            "district_id": results.communities[c]["district_id"], "answers": int(answered[c]),
            "satisfaction_rate": round(float(f.rates[c]), 4),
            "limits95": [round(float(f.low95[c]), 4), round(float(f.high95[c]), 4)],
            "limits998": [round(float(f.low998[c]), 4), round(float(f.high998[c]), 4)],
            "outside95": bool(f.rates[c] < f.low95[c] or f.rates[c] > f.high95[c]),
            "flag": flag,
        })
    return {"round_id": round_id, "city_rate": None if f.centre is None else round(f.centre, 4), "points": points}


# -- anomalies ------------------------------------------------------------------------------

def straight_lining(responses: list[dict]) -> list[dict]:
    """Responses whose every answer (overall included) is the same level (:func:`straight_level`)."""
    found = []
    for r in responses:
        straight = straight_level(r)
        if straight is not None:
            found.append({"response_id": r["response_id"], "community_id": r["community_id"],
                          "level": straight[0], "answers": straight[1]})
    return found


def bursts(responses: list[dict], per_minute: int = BURST_PER_MINUTE) -> list[dict]:
    """More responses posted with one key in a minute than a person can give.

    Timed by the server's ``received_at`` on every channel (SPEC §14): the client's ``submitted_at``
    and ``channel`` are whatever the client says.
    """
    by_key: dict[tuple, list] = defaultdict(list)
    for r in responses:
        by_key[(r.get("key_id"), r["community_id"])].append((from_stored(r["received_at"]), r["response_id"]))
    found = []
    for (key_id, community_id), items in by_key.items():
        items.sort()
        start, flagged = 0, set()
        for end in range(len(items)):
            while items[end][0] - items[start][0] >= timedelta(minutes=1):
                start += 1
            if end - start + 1 > per_minute:
                flagged.update(rid for _, rid in items[start:end + 1])
        if flagged:
            found.append({"key_id": key_id, "community_id": community_id, "responses": sorted(flagged),
                          "limit_per_minute": per_minute})
    return found


def duplicates(responses: list[dict], window_minutes: int = DUPLICATE_WINDOW_MINUTES) -> list[dict]:
    """Different responses with the same answers, overall and comment, in one community received within minutes."""
    groups: dict[tuple, list] = defaultdict(list)
    for r in responses:
        key = (r["community_id"], tuple(sorted(r["answers"].items())), r.get("overall"), r.get("comment") or "")
        groups[key].append((from_stored(r["received_at"]), r["response_id"]))
    found = []
    for (community_id, answers, *_), items in groups.items():
        if len(items) < 2 or len(answers) < DUPLICATE_MIN_ANSWERS:
            continue
        items.sort()
        for (t1, a), (t2, b) in zip(items, items[1:]):
            if t2 - t1 <= timedelta(minutes=window_minutes):
                found.append({"community_id": community_id, "response_ids": [a, b],
                              "seconds_apart": int((t2 - t1).total_seconds())})
    return found


def repeated_devices(responses: list[dict], more_than: int = DEVICE_LIMIT) -> list[dict]:
    """Phones (the survey page's device cookie) that sent more than ``more_than`` link responses to
    one community (SPEC §14): one person answering for many."""
    by_device: dict[tuple, list[str]] = defaultdict(list)
    for r in responses:
        if r.get("device_id"):
            by_device[(r["community_id"], r["device_id"])].append(r["response_id"])
    return [{"community_id": community_id, "device_id": device_id, "responses": sorted(ids),
             "limit": more_than}
            for (community_id, device_id), ids in sorted(by_device.items()) if len(ids) > more_than]


def agency_bias(results: LiveResults, min_pairs: int = 5, threshold: float = 5.0) -> list[dict]:
    """Each agency's item scores minus the other agencies' mean on the same community and item."""
    inspections = results.inspections
    defined = inspections.max_points > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(defined, 100.0 * inspections.points / np.where(defined, inspections.max_points, 1), np.nan)
    rows_by_community: dict[int, list[int]] = defaultdict(list)
    for row, c in enumerate(inspections.community.tolist()):
        rows_by_community[c].append(row)
    deviations: dict[str, list[float]] = defaultdict(list)
    for c, rows in rows_by_community.items():
        if len(rows) < 2:
            continue
        for row in rows:
            others = [r for r in rows if r != row]
            with warnings.catch_warnings():  # items no other agency scored: NaN, skipped below
                warnings.simplefilter("ignore", RuntimeWarning)
                other_mean = np.nanmean(values[others], axis=0)
            diff = values[row] - other_mean
            deviations[inspections.row_agency[row]].extend(float(d) for d in diff[~np.isnan(diff)])
    report = []
    for agency, diffs in sorted(deviations.items()):
        arr = np.array(diffs)
        n = arr.size
        mean = float(arr.mean()) if n else 0.0
        t = float(mean / (arr.std(ddof=1) / np.sqrt(n))) if n > 1 and arr.std(ddof=1) > 0 else 0.0
        report.append({"agency_id": agency, "mean_deviation": round(mean, 2), "pairs": n, "t": round(t, 2),
                       "direction": "lenient" if mean > 0 else "strict",
                       "flagged": bool(n >= min_pairs and abs(mean) >= threshold and abs(t) >= 2.0)})
    return report


NOTE = "标记仅供参考，不会自动剔除；是否作废由管理员核实后决定。"


def response_flags(responses: list[dict], admin_keys: set[str]) -> dict:
    """The response flags of the report from every standing response of a round, in arrival order:
    what :func:`anomalies` answers from the store's kept statistics (a test holds them equal).

    Bursts and duplicates leave out what administrators entered (paper and door-to-door forms typed
    in together are not a burst).
    """
    posted_in_field = [r for r in responses if r.get("key_id") not in admin_keys]
    return {"straight_lining": straight_lining(responses), "bursts": bursts(posted_in_field),
            "duplicates": duplicates(posted_in_field), "repeated_devices": repeated_devices(responses)}


def candidate_flags(candidates: AnomalyCandidates) -> dict:
    """The response flags from the responses the store found the rules could flag: the same rules on
    those, and each group placed where it first appears among all the round's responses."""
    return {
        "straight_lining": straight_lining(candidates.straight),
        "bursts": sorted(bursts(candidates.bursts),
                         key=lambda b: candidates.burst_first[(b["key_id"], b["community_id"])]),
        "duplicates": sorted(duplicates(candidates.duplicates),
                             key=lambda d: candidates.duplicate_first[d["response_ids"][0]]),
        "repeated_devices": repeated_devices(candidates.devices),
    }


def admin_keys(ctx: ServiceState) -> set[str]:
    return {k["key_id"] for k in ctx.store.list_keys() if k["role"] == "admin"}


def anomalies(ctx: ServiceState, round_id: str) -> dict:
    """Every anomaly flag of the round (responses that are voided are left out).

    Bursts and duplicates are timed by when the server received a response. The responses the rules
    could flag come from statistics the store keeps at write time (``Store.anomaly_candidates``), so
    the report reads what it may flag, not every response of the round.
    """
    store = ctx.store
    # tokens read before the results: what is cached under them is at least that new
    bias_key = (round_id, store.generation("reference"), store.generation("inspections"))
    flags = candidate_flags(store.anomaly_candidates(round_id, admin_keys(ctx)))
    bias = ctx.agency_bias.get(bias_key, lambda: agency_bias(live_results(ctx, round_id)))
    return {"round_id": round_id, **flags, "agency_bias": bias, "note": NOTE}
