"""Rubric versions: immutable once stored."""

from __future__ import annotations

from ..domain.canonical import digest, tidy_numbers
from ..domain.timeutil import now_stored
from ..store import Outcome
from .context import ServiceState
from .errors import Conflict, NotFound


def store_rubric(ctx: ServiceState, data: dict) -> tuple[Outcome, dict]:
    """Store a validated rubric version: CREATED, or DUPLICATE for identical content.

    Same id with other content is a conflict (``rubric_in_use`` once a round uses it).
    """
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
