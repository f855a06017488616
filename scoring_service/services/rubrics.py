"""Rubric versions: immutable once stored."""

from __future__ import annotations

from ..domain.canonical import digest, tidy_numbers
from ..domain.timeutil import now_stored
from ..store import Outcome
from .context import ServiceState
from .errors import Conflict, Invalid, NotFound


def store_rubric(ctx: ServiceState, data: dict) -> tuple[Outcome, dict]:
    """Store a validated rubric version: CREATED, or DUPLICATE for identical content.

    Same id with other content is a conflict (``rubric_in_use`` once a round uses it).
    """
    check_comparisons(ctx, data)
    normalised = tidy_numbers(data)
    rubric_id = normalised["rubric_id"]
    outcome = ctx.store.put_rubric(rubric_id, normalised, digest(normalised), now_stored())
    if outcome is Outcome.CONFLICT:
        reason = "rubric_in_use" if ctx.store.rubric_in_use(rubric_id) else "conflict"
        raise Conflict(reason, f"rubric {rubric_id!r} exists with other content; rubric versions are immutable")
    return outcome, ctx.store.get_rubric(rubric_id)


def get_rubric(ctx: ServiceState, rubric_id: str) -> dict:
    body = ctx.store.get_rubric(rubric_id)
    if body is None:
        raise NotFound("rubric", rubric_id)
    return body


def check_comparisons(ctx: ServiceState, data: dict) -> None:
    """Each item's ``compares_to`` names stored rubrics (not this one) and items they have (Invalid,
    naming the item, otherwise)."""
    errors: dict = {}
    for n, item in enumerate(data["items"]):
        for other_id, codes in (item.get("compares_to") or {}).items():
            other = None if other_id == data["rubric_id"] else ctx.store.get_rubric(other_id)
            if other is None:
                message = (f"names the rubric itself ({other_id!r}); an item compares to an earlier rubric"
                           if other_id == data["rubric_id"] else f"names rubric {other_id!r}, which is not stored")
            else:
                known = {i["code"] for i in other["items"]}
                missing = [code for code in codes if code not in known]
                if not missing:
                    continue
                message = f"rubric {other_id!r} has no item {missing[0]!r}"
            errors.setdefault("items", {}).setdefault(str(n), {}).setdefault("compares_to", []).append(message)
    if errors:
        raise Invalid.fields(errors)
