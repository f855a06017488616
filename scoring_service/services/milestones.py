"""Milestones of the communities a round covers (SPEC §11): record, withdraw, read with history.

Who: an admin, or the district key of the community's district (leadership also reads). Milestones
stay writable after the round closes or is published; they never change a published snapshot.
"""

from __future__ import annotations

from typing import Any

from ..domain import milestones as ms
from ..domain.timeutil import now_stored
from ..store import Outcome
from .clock import today
from .context import ServiceState
from .errors import Invalid, NotFound
from .keys import Principal
from .rounds import covered_community, get_round

#: roles that pass the district check for any district (a district key passes for its own)
WRITERS = ("admin",)
READERS = ("admin", "leadership")


def _known_code(code: str) -> None:
    if code not in ms.BY_CODE:
        raise NotFound("milestone", code)


def _covered(ctx: ServiceState, round_id: str, community_id: str, principal: Principal,
             roles: tuple[str, ...]) -> dict:
    """The round, after checking the key may act for the community and the round covers it."""
    round_ = get_round(ctx, round_id)
    covered_community(ctx, round_, community_id, principal, roles)
    return round_


def _new_version(round_id: str, community_id: str, code: str, principal: Principal, **content) -> dict:
    record = {
        "round_id": round_id, "community_id": community_id, "code": code,
        "reached_on": None, "note": None, "votes": None, "management_mode": None, "changed_reason": None,
        **content,
        "key_id": principal.key_id, "recorded_at": now_stored(),
    }
    record["content_hash"] = ms.content_hash(record)
    return record


def _view(ctx: ServiceState, round_: dict, community_id: str, code: str) -> dict:
    versions = [v for v in ctx.store.milestone_versions(round_["round_id"], community_id) if v["code"] == code]
    if not versions:
        raise NotFound("milestone", f"{community_id}/{code}")
    return ms.milestone_view(versions, ms.round_settings(round_))


def record_milestone(ctx: ServiceState, round_id: str, community_id: str, code: str, data: dict[str, Any],
                     principal: Principal) -> tuple[Outcome, dict]:
    """Record (or replace) that a community reached a milestone: CREATED with the new version, or
    DUPLICATE for a replay of the current one. ``data`` is validated input (``reached_on`` a date)."""
    _known_code(code)
    round_ = _covered(ctx, round_id, community_id, principal, WRITERS)
    record = _new_version(
        round_id, community_id, code, principal,
        reached_on=data["reached_on"].isoformat(), note=data.get("note"),
        votes=dict(data["votes"]) if data.get("votes") is not None else None,
        management_mode=data.get("management_mode"), changed_reason=data.get("changed_reason"))
    problems = ms.record_problems(code, record, today(ctx))
    if problems:
        raise Invalid.fields(problems)

    def check(current: dict[str, dict]) -> None:
        errors: dict[str, list[str]] = {}
        previous = current.get(code)
        if previous is not None and not ms.is_withdrawn(previous) and not record["changed_reason"]:
            errors["changed_reason"] = [f"is required to replace the recorded {code} (version "
                                        f"{previous['version']}, reached on {previous['reached_on']})"]
        order = ms.order_problems(code, record["reached_on"], current)
        if order:
            errors["reached_on"] = order
        if errors:
            raise Invalid.fields(errors)

    outcome = ctx.store.add_milestone_version(record, check)
    return outcome, _view(ctx, round_, community_id, code)


def withdraw_milestone(ctx: ServiceState, round_id: str, community_id: str, code: str, changed_reason: str,
                       principal: Principal) -> tuple[Outcome, dict]:
    """Withdraw a recorded milestone: a version without a date (kept in the history; the milestone then
    counts as never reached). CREATED, or DUPLICATE when it is already withdrawn."""
    _known_code(code)
    round_ = _covered(ctx, round_id, community_id, principal, WRITERS)
    record = _new_version(round_id, community_id, code, principal, changed_reason=changed_reason)

    def check(current: dict[str, dict]) -> None:
        if code not in current:
            raise NotFound("milestone", f"{community_id}/{code}")

    outcome = ctx.store.add_milestone_version(record, check)
    return outcome, _view(ctx, round_, community_id, code)


def community_milestones(ctx: ServiceState, round_id: str, community_id: str, principal: Principal) -> dict:
    """The community's recorded milestones, in milestone order, each with its history (oldest first)."""
    round_ = _covered(ctx, round_id, community_id, principal, READERS)
    settings = ms.round_settings(round_)
    by_code: dict[str, list[dict]] = {}
    for version in ctx.store.milestone_versions(round_id, community_id):
        by_code.setdefault(version["code"], []).append(version)
    items = [ms.milestone_view(by_code[code], settings) for code in ms.CODES if code in by_code]
    return {"round_id": round_id, "community_id": community_id, "items": items}


def community_milestone(ctx: ServiceState, round_id: str, community_id: str, code: str,
                        principal: Principal) -> dict:
    """One recorded milestone of the community with its history; 404 when never recorded."""
    _known_code(code)
    round_ = _covered(ctx, round_id, community_id, principal, READERS)
    return _view(ctx, round_, community_id, code)
