"""Evaluation rounds: create, read, close (publishing is in :mod:`.results`)."""

from __future__ import annotations

from ..domain.canonical import digest
from ..domain import rounds as kinds
from ..domain.milestones import ROUND_FIELDS, stored_round_fields
from ..domain.timeutil import now_stored, to_stored
from ..store import Outcome
from .context import ServiceState
from .errors import Conflict, Invalid, NotFound, raise_for_outcome
from .keys import Principal, check_district_scope


def get_round(ctx: ServiceState, round_id: str) -> dict:
    record = ctx.store.get_round(round_id)
    if record is None:
        raise NotFound("round", round_id)
    return record


def covered_communities(store, round_: dict) -> list[dict]:
    """The communities a round covers (SPEC §3, §15), by id: every caller asks this one function."""
    return store.list_communities(renovation_years=kinds.covered_years(round_))


def create_round(ctx: ServiceState, data: dict) -> tuple[Outcome, dict]:
    """Check references and store a new round: CREATED, or DUPLICATE for an identical one.

    ``data`` is validated input (``opens_at``/``closes_at`` as aware datetimes).

    An aftercare round created without quotas gets its covered communities per district as quotas,
    computed now and stored with the round (so its district index does not move when communities are
    imported later). The digest covers what was given, not the computed quotas, so the same request
    again is a replay even if communities changed in between.
    """
    store = ctx.store
    errors = {}
    if ctx.rubric(data["rubric_id"]) is None:
        errors["rubric_id"] = [f"unknown rubric {data['rubric_id']!r}"]
    given_quotas = data.get("quotas")
    unknown = sorted(d for d in given_quotas or {} if store.get_district(d) is None)
    if unknown:
        errors["quotas"] = [f"unknown districts: {', '.join(unknown)}"]
    if errors:
        raise Invalid.fields(errors)
    content = {
        **{name: value for name, value in data.items() if name not in ROUND_FIELDS + kinds.ROUND_FIELDS},
        **stored_round_fields(data),
        **kinds.stored_round_fields(data),
        "opens_at": to_stored(data["opens_at"]),
        "closes_at": to_stored(data["closes_at"]),
    }
    if given_quotas is not None:
        content["quotas"] = dict(sorted(given_quotas.items()))
        quotas = content["quotas"]
    else:  # an aftercare round (the schema requires quotas of an acceptance round)
        quotas = kinds.default_quotas(covered_communities(store, content))
        if not quotas:
            raise Invalid.field("covers_years", f"no community was renovated in {kinds.coverage_text(content)}: "
                                                "import the communities first, or give quotas")
    record = {**content, "quotas": quotas, "digest": digest(content), "status": "open", "created_at": now_stored()}
    outcome = store.create_round(record)
    if outcome is Outcome.CONFLICT:
        raise Conflict("conflict", f"round {record['round_id']!r} exists with other content")
    return outcome, store.get_round(record["round_id"])


def close_round(ctx: ServiceState, round_id: str) -> tuple[Outcome, dict]:
    """open → closed: CHANGED, or UNCHANGED when it was already closed; published rounds refuse."""
    outcome = ctx.store.close_round(round_id, now_stored())
    raise_for_outcome(outcome, "round", round_id)
    return outcome, get_round(ctx, round_id)


def covered_community(ctx: ServiceState, round_: dict, community_id: str,
                      principal: Principal | None = None, roles: tuple[str, ...] = ("admin",)) -> dict:
    """The community, after checking it exists (404), the key may act for it (403: keys of ``roles``, or
    the district key of its district) and the round covers it (422 naming ``community_id``)."""
    community = ctx.store.get_community(community_id)
    if community is None:
        raise NotFound("community", community_id)
    if principal is not None:
        check_district_scope(principal, community["district_id"], roles)
    if not kinds.covers(round_, community):
        raise Invalid.field("community_id", f"is not covered by round {round_['round_id']!r}: renovated in "
                                            f"{community['renovation_year']}, the round covers "
                                            f"{kinds.coverage_text(round_)}")
    return community
