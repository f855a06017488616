"""Evaluation rounds: create, read, close (publishing is in :mod:`.results`)."""

from __future__ import annotations

from ..domain.canonical import digest
from ..domain.milestones import ROUND_FIELDS, stored_round_fields
from ..domain.timeutil import now_stored, to_stored
from ..store import Outcome
from .context import ServiceState
from .errors import Conflict, Invalid, NotFound, raise_for_outcome


def get_round(ctx: ServiceState, round_id: str) -> dict:
    record = ctx.store.get_round(round_id)
    if record is None:
        raise NotFound("round", round_id)
    return record


def create_round(ctx: ServiceState, data: dict) -> tuple[Outcome, dict]:
    """Check references and store a new round: CREATED, or DUPLICATE for an identical one.

    ``data`` is validated input (``opens_at``/``closes_at`` as aware datetimes).
    """
    store = ctx.store
    errors = {}
    if ctx.rubric(data["rubric_id"]) is None:
        errors["rubric_id"] = [f"unknown rubric {data['rubric_id']!r}"]
    unknown = sorted(d for d in data["quotas"] if store.get_district(d) is None)
    if unknown:
        errors["quotas"] = [f"unknown districts: {', '.join(unknown)}"]
    if errors:
        raise Invalid.fields(errors)
    content = {
        **{name: value for name, value in data.items() if name not in ROUND_FIELDS},
        **stored_round_fields(data),
        "opens_at": to_stored(data["opens_at"]),
        "closes_at": to_stored(data["closes_at"]),
        "quotas": dict(sorted(data["quotas"].items())),
    }
    record = {**content, "digest": digest(content), "status": "open", "created_at": now_stored()}
    outcome = store.create_round(record)
    if outcome is Outcome.CONFLICT:
        raise Conflict("conflict", f"round {record['round_id']!r} exists with other content")
    return outcome, store.get_round(record["round_id"])


def close_round(ctx: ServiceState, round_id: str) -> tuple[Outcome, dict]:
    """open → closed: CHANGED, or UNCHANGED when it was already closed; published rounds refuse."""
    outcome = ctx.store.close_round(round_id, now_stored())
    raise_for_outcome(outcome, "round", round_id)
    return outcome, get_round(ctx, round_id)
