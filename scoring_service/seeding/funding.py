"""The demo round's funding ledger (SPEC §12, issue 14 item 6), consistent with the notice's money.

The notice (SPEC §9): 16.8亿元 in all, the city 6.93亿元 and the districts 9.87亿元. The city pays half of
every non-independent budget (1:1 with the district) and keeps the reward reserve P (以奖代补, the round's
reward pool); the districts pay the other half and the whole of every independent budget. So with N the
non-independent budgets and I the independent ones:

    N/2 + P = 6.93亿元 (the city)        N/2 + I = 9.87亿元 (the districts)

With the seeded pool P = 3000万元: N = 13.26亿元 and I = 3.24亿元 (N + I + P = 16.8亿元).

>>> notice_budgets(3_000_000_000)
(132600000000, 32400000000)

Every budget is in whole yuan, so every non-independent budget is an even number of fen and the city's
subsidies add up to exactly N/2. Everything is recorded through ``services.ledger`` (the code the API
uses), so every rule of §12 holds: the amounts are those the service computes, a tranche is paid only
when due at today's date, and never before its milestone.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, timedelta

import numpy as np

from ..domain import ledger as lg
from ..domain import milestones as ms
from ..services.context import ServiceState
from ..services.keys import Principal

#: the notice's money (SPEC §9) in fen
CITY_FUNDS_FEN = 69_300_000_000       # 市级 6.93亿元
DISTRICT_FUNDS_FEN = 98_700_000_000   # 区级 9.87亿元
NS = uuid.UUID("2b0c6f5e-8f1a-4d7e-9c3b-5a1e0f2d2018")
SEED_ADMIN = Principal(key_id="seed", role="admin", name="演示数据")
#: districts whose matching money lags in the demo: (district, communities with tranche 1 held,
#: communities with tranche 2 held) for want of the district's funds (区级配套资金未同步到位)
MATCH_SHORT = (("sujiatun", 1, 2), ("shenbei", 0, 2), ("dadong", 1, 1))
#: the district whose key records the rest of its money for two communities (a funding history)
TOP_UP_DISTRICT = "heping"
#: the settlement audit of the refund community cut its budget by about a quarter (工程结算审减)
REFUND_SETTLEMENT = 0.74
#: payments are booked in 2018: a later one is left due
LAST_PAYMENT_DAY = date(2018, 12, 28)


def notice_budgets(reward_pool_fen: int) -> tuple[int, int]:
    """(N, I): the non-independent and independent budgets that satisfy the notice's two equations
    for the reward reserve ``reward_pool_fen``; both whole yuan."""
    n = 2 * (CITY_FUNDS_FEN - reward_pool_fen)
    i = DISTRICT_FUNDS_FEN - n // 2
    if n < 0 or i < 0 or reward_pool_fen % 100:
        raise ValueError(f"a reward pool of {reward_pool_fen} fen does not fit the notice's funds "
                         f"(0 ≤ P, whole yuan, N/2 + P = {CITY_FUNDS_FEN} and N/2 ≤ {DISTRICT_FUNDS_FEN} fen)")
    return n, i


def apportion(total: int, weights: Sequence[int]) -> list[int]:
    """Split the integer ``total`` in proportion to positive integer ``weights`` (largest remainders,
    ties to the first): the parts add up to ``total`` exactly.

    >>> apportion(10, [1, 1, 1])
    [4, 3, 3]
    >>> apportion(100, [5, 3, 2])
    [50, 30, 20]
    """
    whole = sum(weights)
    parts = [total * w // whole for w in weights]
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in order[:total - sum(parts)]:
        parts[i] += 1
    return parts


def _weights(rng: np.random.Generator, communities: Sequence[dict]) -> list[int]:
    """A cost estimate in yuan for each community: common works (roads, drainage, gates) plus a cost per
    household that is higher with the heating retrofit (房要保暖) and the lifts (电梯要安全)."""
    weights = []
    for c in communities:
        per_household = 20_000 + 6_000 * bool(c.get("heating_retrofit")) + 2_500 * bool(c.get("has_elevator"))
        weights.append(int(800_000 + c["households"] * per_household * rng.uniform(0.85, 1.2)))
    return weights


def funding_plan(communities: Sequence[dict], reward_pool_fen: int, seed: int = 2018) -> dict[str, dict]:
    """Each community's first funding record as the API takes it, before any settlement and with the
    district's share fully in place: about a fifth of the money on independent land (独立操作区), whose
    budget the district carries alone; the rest non-independent (原土地非独立操作区), half the city's.
    The budgets add up to exactly :func:`notice_budgets`."""
    n, i = notice_budgets(reward_pool_fen)
    rng = np.random.default_rng([seed, 12])
    weights = dict(zip((c["community_id"] for c in communities), _weights(rng, communities)))
    independent: set[str] = set()
    target = sum(weights.values()) * i // (n + i)
    for k in rng.permutation(len(communities)):
        cid = communities[int(k)]["community_id"]
        if sum(weights[c] for c in independent) + weights[cid] > target * 1.02:
            continue
        independent.add(cid)
    plan = {}
    for category, total in (("non_independent", n), ("independent", i)):
        ids = [c["community_id"] for c in communities
               if (c["community_id"] in independent) == (category == "independent")]
        for cid, yuan in zip(ids, apportion(total // 100, [weights[c] for c in ids])):
            budget = yuan * 100
            plan[cid] = {"land_category": category, "approved_budget_fen": budget,
                         # the district's half (the city pays ⌊budget/2⌋), or the whole independent budget
                         "district_funds_in_place_fen": budget - lg.subsidy(budget) if category == "non_independent"
                         else budget}
    return plan


def _whole_yuan(fen: float) -> int:
    return int(fen) // 100 * 100


def _reached_dates(s: ServiceState, round_id: str) -> dict[str, dict[str, date]]:
    reached: dict[str, dict[str, date]] = {}
    for record in s.store.current_milestones(round_id):
        day = ms.effective_reach_date(record)
        if day is not None:
            reached.setdefault(record["community_id"], {})[record["code"]] = day
    return reached


def _grades(s: ServiceState, round_id: str) -> dict[str, str | None]:
    from ..services.results import live_results

    results = live_results(s, round_id)
    return {cid: results.raw.grade[k] for k, cid in enumerate(results.inputs.ids)}


def seed_funding(s: ServiceState, round_id: str, communities: Sequence[dict], seed: int = 2018) -> dict:
    """Record the demo's funding and disbursements through ``services.ledger``, after the milestones.

    Every community gets a funding record (:func:`funding_plan`). In :data:`MATCH_SHORT` the district's
    money is short for a few communities, so their tranche 1 or 2 is held (``district_match_missing``);
    in :data:`TOP_UP_DISTRICT` the district key records the rest of its money for two communities (their
    record keeps both versions). Tranches due at today are paid a few weeks after their milestone:
    tranche 1 in spring, tranche 2 after completion (the late completions after the round's as-of date,
    so they show as due then), tranche 3 after the settlement audit when it was done in time for a 2018
    payment. Settled communities get their settled budget, mostly a little below the approval; one
    settled far below it, so its tranche 3 is negative: a refund the district owes (``refund_due``),
    left due. Call once: the caller checks that the round has no funding yet.
    """
    from ..services.clock import today
    from ..services.ledger import ledger_report, put_funding, record_disbursement
    from ..services.rounds import get_round

    round_ = get_round(s, round_id)
    as_of = ms.round_settings(round_).progress_as_of or date(2018, 10, 8)
    plan = funding_plan(communities, lg.round_money(round_).reward_pool_fen, seed)
    rng = np.random.default_rng([seed, 13])
    reached = _reached_dates(s, round_id)
    counts = {"communities": 0, "versions": 0, "disbursements": 0}

    def by_district(district_id: str, ids: Sequence[str]) -> list[str]:
        return [c["community_id"] for c in communities
                if c["district_id"] == district_id and c["community_id"] in ids]

    def reached_by(cid: str, code: str, day: date) -> bool:
        return reached.get(cid, {}).get(code, date.max) <= day

    # the district's money short: tranche 1 (contract signed) or tranche 2 (works completed) held
    short: dict[str, int] = {}
    non_independent = [cid for cid, f in plan.items() if f["land_category"] == "non_independent"]
    for district_id, at_contract, at_completion in MATCH_SHORT:
        candidates = by_district(district_id, [cid for cid in non_independent
                                               if reached_by(cid, "works_completed", as_of)])
        chosen = [candidates[int(k)] for k in rng.permutation(len(candidates))[:at_contract + at_completion]]
        for n, cid in enumerate(chosen):
            s_ = lg.subsidy(plan[cid]["approved_budget_fen"])
            share = rng.uniform(0.05, 0.25) if n < at_contract else rng.uniform(0.35, 0.7)  # of cum₃ = S
            short[cid] = _whole_yuan(s_ * share)
    for cid, funds in short.items():
        plan[cid]["district_funds_in_place_fen"] = funds
    top_ups = [cid for cid in by_district(TOP_UP_DISTRICT, non_independent) if cid not in short][:2]

    for community in communities:
        cid = community["community_id"]
        body = dict(plan[cid])
        if cid in top_ups:
            body["district_funds_in_place_fen"] = _whole_yuan(body["district_funds_in_place_fen"] * 0.4)
        outcome, _ = put_funding(s, round_id, cid, body, SEED_ADMIN)
        counts["communities"] += 1
        counts["versions"] += outcome.value == "created"
    for cid in top_ups:  # the district's money arrives: its key records it
        district = Principal(key_id=f"seed-{TOP_UP_DISTRICT}", role="district", name="演示数据（区级）",
                             district_id=TOP_UP_DISTRICT)
        outcome, _ = put_funding(s, round_id, cid, plan[cid], district)
        counts["versions"] += outcome.value == "created"

    day = today(s)
    vouchers = iter(range(101, 10_000))
    delays = {1: (10, 30), 2: (15, 45), 3: (10, 25)}

    def pay(k: int, skip: set[str] = frozenset()) -> None:
        """Pay tranche k of every community where it is due today, a few weeks after its milestone."""
        report = ledger_report(s, round_id, None, as_of=day)
        for row in report["communities"]:
            cid, state = row["community_id"], row["tranches"][k - 1]
            if state["status"] != "due" or cid in skip:
                continue
            low, high = delays[k]
            paid_on = reached[cid][state["milestone"]] + timedelta(days=int(rng.integers(low, high + 1)))
            if paid_on > min(day, LAST_PAYMENT_DAY):
                continue
            outcome, _ = record_disbursement(s, round_id, cid, {
                "disbursement_id": uuid.uuid5(NS, f"{round_id}/{cid}/{k}"), "tranche": k,
                "amount_fen": state["amount_fen"], "paid_on": paid_on,
                "voucher": f"沈财指〔2018〕{next(vouchers)}号"}, SEED_ADMIN)
            counts["disbursements"] += outcome.value == "created"

    pay(1)
    pay(2)

    # settlement audits (工程结算审核): mostly a little below the approval; one far below (a refund)
    settled = [cid for cid in non_independent if reached_by(cid, "settled", day)]
    grades = _grades(s, round_id) if settled else {}
    # the refund is due (tranche 3 not held): the district's money in place and the community passed
    passing = [cid for cid in settled if cid not in short and cid not in top_ups
               and grades.get(cid) not in (None, "fail")]
    refund = passing[int(rng.integers(0, len(passing)))] if passing else None
    for cid in settled:
        approved = plan[cid]["approved_budget_fen"]
        factor = REFUND_SETTLEMENT if cid == refund else rng.uniform(0.93, 0.995)
        outcome, _ = put_funding(s, round_id, cid, {**plan[cid], "settled_budget_fen": _whole_yuan(approved * factor)},
                                 SEED_ADMIN)
        counts["versions"] += outcome.value == "created"
    pay(3, skip={refund} if refund else set())
    return counts
