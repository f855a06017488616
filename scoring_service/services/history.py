"""History across rounds (SPEC §15): a community's scores in every round that covered it, and a
district's index in every round that set it a quota, oldest year first.

Each round's values come from its results as leadership reads them (:func:`.results.round_results`):
the frozen snapshot of a published round, else live results.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..domain.rounds import ACCEPTANCE, AFTERCARE, covers, round_kind
from .context import ServiceState
from .errors import NotFound
from .keys import Principal, check_district_scope
from .results import round_results

__all__ = ["ACCEPTANCE", "AFTERCARE", "community_history", "covers", "district_history", "history_order"]

#: roles that read any community's or district's history; a district key reads its own district only
READERS = ("leadership", "admin")
#: at the same year, the acceptance round comes before the aftercare rounds
KIND_ORDER = {ACCEPTANCE: 0, AFTERCARE: 1}


def history_order(round_: Mapping[str, Any]) -> tuple:
    """Oldest year first; at the same year acceptance before aftercare, then by round id."""
    return int(round_["year"]), KIND_ORDER.get(round_kind(round_), len(KIND_ORDER)), round_["round_id"]


def _round_fields(round_: Mapping[str, Any]) -> dict:
    return {
        "round_id": round_["round_id"],
        "kind": round_kind(round_),
        "year": int(round_["year"]),
        "title": round_.get("title"),
        "published": round_["status"] == "published",
    }


def community_history(ctx: ServiceState, principal: Principal, community_id: str) -> dict:
    """``{"items": [...]}``: one row per round covering the community that scored it.

    A published round whose snapshot does not hold the community (its reference data changed after
    publication) did not score it then and is left out. NotFound for an unknown community; Forbidden
    for a district key of another district and for roles other than leadership, admin and district.
    """
    community = ctx.store.get_community(community_id)
    if community is None:
        raise NotFound("community", community_id)
    check_district_scope(principal, community["district_id"], READERS)
    items = []
    for round_ in sorted((r for r in ctx.store.list_rounds() if covers(r, community)), key=history_order):
        breakdown = round_results(ctx, round_["round_id"], round_).breakdown(community_id)
        if breakdown is None:
            continue
        items.append({
            **_round_fields(round_),
            "composite": breakdown["composite"],
            "grade": breakdown["grade"],
            "flags": breakdown["flags"],
            "professional_items": breakdown["professional"]["items"],
            "resident_items": breakdown["resident"]["items"],
        })
    return {"items": items}


#: the district ranking's values each row of a district's history carries
DISTRICT_FIELDS = ("index", "quality", "progress", "quota", "graded", "grade_counts")


def district_history(ctx: ServiceState, principal: Principal, district_id: str) -> dict:
    """``{"items": [...]}``: one row per round whose quotas include the district, with the district's
    row of that round's district ranking. NotFound for an unknown district; Forbidden as
    :func:`community_history`."""
    if ctx.store.get_district(district_id) is None:
        raise NotFound("district", district_id)
    check_district_scope(principal, district_id, READERS)
    items = []
    rounds = (r for r in ctx.store.list_rounds() if district_id in (r.get("quotas") or {}))
    for round_ in sorted(rounds, key=history_order):
        ranking = round_results(ctx, round_["round_id"], round_).district_ranking
        row = next((d for d in ranking["districts"] if d["district_id"] == district_id), None)
        if row is None:
            continue
        items.append({**_round_fields(round_), **{name: row[name] for name in DISTRICT_FIELDS}})
    return {"items": items}
