"""前治后乱 (SPEC §15): the baseline of each community of an aftercare round, from the latest published
acceptance round that covered it, and whether that round recorded its 后续管理落实 milestone."""

from __future__ import annotations

from dataclasses import dataclass

from ..domain import milestones as ms
from ..domain import rounds as kinds
from .context import ServiceState


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


def baselines(ctx: ServiceState, communities: list[dict]) -> dict[str, Baseline]:
    """community_id → its :class:`Baseline` (every community given).

    The baseline round is the latest by year, then by publication time, among the published acceptance
    rounds covering the community; its composite is read from that round's snapshot.
    """
    from .results import round_results  # results builds on this module

    store = ctx.store
    accepted = sorted((r for r in store.list_rounds()
                       if r["status"] == "published" and not kinds.is_aftercare(r)),
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
        managed = {m["community_id"] for m in store.current_milestones(round_id)
                   if m["code"] == "management_assigned" and ms.effective_reach(m) is not None}
        for community_id, round_ in chosen.items():
            if round_["round_id"] == round_id:
                breakdown = scores.get(community_id) or {}
                out[community_id] = Baseline(round_id, breakdown.get("composite"), community_id not in managed)
    return out
