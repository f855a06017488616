"""前治后乱 (SPEC §15): the baseline of each community of an aftercare round, from the latest published
acceptance round that covered it, and whether that round recorded its 后续管理落实 milestone."""

from __future__ import annotations

from dataclasses import dataclass

from ..domain import milestones as ms
from ..domain import rounds as kinds
from ..domain.comparison import fallen_items, item_changes
from .context import ServiceState
from .errors import Invalid, NotFound
from .keys import Principal, check_district_scope


@dataclass(frozen=True)
class Baseline:
    """Where a community of an aftercare round stood when it was accepted."""

    #: the latest published acceptance round covering it (None: there is none)
    round_id: str | None
    #: its composite there (2 decimals; None without a round or without a composite in it)
    composite: float | None
    #: that round has no reached ``management_assigned`` milestone for it (current records)
    management_missing: bool


NO_BASELINE = Baseline(None, None, False)


def baselines(ctx: ServiceState, communities: list[dict], published_by: str | None = None) -> dict[str, Baseline]:
    """community_id → its :class:`Baseline` (every community given).

    The baseline round is the latest by year, then by publication time, among the published acceptance
    rounds covering the community; its composite is read from that round's snapshot. With
    ``published_by`` (a stored time), only rounds published by then count: the baselines an aftercare
    round published at that time froze.
    """
    from .results import round_results  # results builds on this module

    store = ctx.store
    accepted = sorted((r for r in store.list_rounds()
                       if r["status"] == "published" and not kinds.is_aftercare(r)
                       and (published_by is None or (r.get("published_at") or "") <= published_by)),
                      key=lambda r: (int(r["year"]), r.get("published_at") or "", r["round_id"]))
    chosen: dict[str, dict] = {}
    for community in communities:
        for round_ in reversed(accepted):
            if kinds.covers(round_, community):
                chosen[community["community_id"]] = round_
                break
    out = {c["community_id"]: NO_BASELINE for c in communities}
    for round_id in sorted({r["round_id"] for r in chosen.values()}):
        scores = round_results(ctx, round_id).scores
        managed = managed_communities(ctx, round_id)
        for community_id, round_ in chosen.items():
            if round_["round_id"] == round_id:
                breakdown = scores.get(community_id) or {}
                out[community_id] = Baseline(round_id, breakdown.get("composite"), community_id not in managed)
    return out


def managed_communities(ctx: ServiceState, round_id: str) -> frozenset[str]:
    """The communities of ``round_id`` whose ``management_assigned`` milestone is reached (current records),
    read again only when a milestone was written since."""
    store = ctx.store
    return ctx.managed_communities.get(
        (round_id, store.generation("milestones")),
        lambda: frozenset(m["community_id"] for m in store.current_milestones(round_id)
                          if m["code"] == "management_assigned" and ms.effective_reach(m) is not None))


#: roles that read the 前治后乱 list of any district; a district key reads its own district's
READERS = ("leadership", "admin")


def backsliding_report(ctx: ServiceState, round_id: str, principal: Principal,
                       district_id: str | None = None) -> dict:
    """The 前治后乱 list of an aftercare round (SPEC §15, §16): the communities flagged ``backsliding``,
    the largest drop first (ties by id), each with its baseline round, baseline, composite, change and
    the items that fell (:mod:`..domain.comparison`, from the two rounds' score breakdowns), and the
    communities flagged ``management_missing``. Values come from the round's results as leadership reads
    them: the snapshot once published (and the baselines of the acceptance rounds published by then).

    A district key reads its own district (``district_id`` defaults to it; another → Forbidden).
    NotFound for an unknown round; Invalid (``round_id``) for an acceptance round.
    """
    from .results import round_results  # results builds on this module

    store = ctx.store
    round_ = store.get_round(round_id)
    if round_ is None:
        raise NotFound("round", round_id)
    if principal.role == "district" and district_id is None:
        district_id = principal.district_id
    check_district_scope(principal, district_id, READERS)
    if not kinds.is_aftercare(round_):
        raise Invalid.field("round_id", f"round {round_id!r} is an acceptance round: 前治后乱 is judged in an "
                                        "aftercare round (kind aftercare, SPEC §15)")
    results = round_results(ctx, round_id, round_)
    ranking = results.community_ranking
    rows = [r for r in ranking["communities"] + ranking["unranked"]
            if district_id is None or r["district_id"] == district_id]
    flagged = sorted((r for r in rows if "backsliding" in r["flags"]), key=lambda r: (r["change"], r["community_id"]))
    found = baselines(ctx, [store.get_community(r["community_id"]) for r in flagged],
                      round_.get("published_at") if round_["status"] == "published" else None)
    rubric = ctx.rubric(round_["rubric_id"]).body
    communities = []
    for row in flagged:
        base = found[row["community_id"]]
        fallen = []
        if base.round_id is not None:
            earlier = store.get_round(base.round_id)
            then = round_results(ctx, base.round_id, earlier).breakdown(row["community_id"])
            fallen = fallen_items(item_changes(rubric, ctx.rubric(earlier["rubric_id"]).body,
                                               results.breakdown(row["community_id"]), then))
        communities.append({
            **{k: row[k] for k in ("community_id", "name_zh", "district_id", "composite", "grade", "grade_zh",
                                   "baseline", "change", "flags")},
            "baseline_round_id": base.round_id,
            "fallen_items": fallen,
        })
    return {
        "round_id": round_id,
        "round_title": round_.get("title"),
        "published": round_["status"] == "published",
        "communities": communities,
        "management_missing": [{k: r[k] for k in ("community_id", "name_zh", "district_id", "baseline")}
                               for r in sorted(rows, key=lambda r: r["community_id"])
                               if "management_missing" in r["flags"]],
    }
