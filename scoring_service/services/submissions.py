"""Submissions: resident surveys (single, batch, void) and professional inspections (new, amended).

Each use case checks the submission against its round (:mod:`scoring_service.domain`),
stores it idempotently by the client's id and says how it ended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from ..domain.inspections import evidence_hashes, inspection_view, prepare_version, stage_of
from ..domain.surveys import RoundContext, SubmissionError, household_canonical, prepare_response, response_view
from ..domain.timeutil import now_stored
from ..store import Outcome
from ..store.base import response_replay
from . import attachments
from .audit import Actor, with_write
from .context import ServiceState
from .errors import OUTCOME_REASONS, Conflict, Forbidden, Invalid, NotFound, raise_for_outcome
from .keys import Principal
from .rounds import get_round
from .survey_links import address_hash, link_quota

CLOSED_REASONS = {"closed": "round_closed", "published": "round_published"}


def round_context(ctx: ServiceState, round_id: str, require_open: bool = True) -> RoundContext:
    """What checking a submission needs; a round that is not open refuses (409) unless asked not to."""
    record = get_round(ctx, round_id)
    if require_open and record["status"] != "open":
        raise Conflict(CLOSED_REASONS[record["status"]])
    return RoundContext(
        round=record,
        rubric=ctx.rubric(record["rubric_id"]),
        load_community=ctx.store.get_community,
        secret_key=ctx.secret_key,
        future_tolerance=timedelta(seconds=int(ctx.setting("FUTURE_TOLERANCE_SECONDS", 600))),
    )


def _prepared(prepare: Callable[[], dict]) -> dict:
    try:
        return prepare()
    except SubmissionError as exc:
        raise Invalid.fields(exc.errors) from None


def _replay_after_close(ctx: ServiceState, rc: RoundContext, record: dict) -> Outcome:
    """A response the round accepted before it closed is a DUPLICATE when replayed (so an offline
    kiosk's queue drains); anything else is refused with the round's state."""
    stored = ctx.store.get_response(rc.round["round_id"], record["response_id"])
    if stored is not None and response_replay(stored, record, rc.round["round_id"]) is Outcome.DUPLICATE:
        return Outcome.DUPLICATE
    return Outcome.ROUND_CLOSED if rc.round["status"] == "closed" else Outcome.ROUND_PUBLISHED


@dataclass(frozen=True)
class LinkClient:
    """Who posts through a survey link (SPEC §14): the client's address (hashed before it is stored,
    counted for the hourly cap) and the phone page's device cookie (stored with each response)."""

    address: str | None = None
    device_id: str | None = None


def check_link_survey(principal: Principal, round_id: str, data: dict) -> None:
    """What a survey link may post (SPEC §14): its own round and community (else Forbidden), channel
    ``online`` (the default; any other is Forbidden), a household for a resident (Invalid naming
    ``household_ref``) and none for the public. Other principals pass unchanged."""
    if principal.role != "link":
        return
    if round_id != principal.round_id:
        raise Forbidden(f"this survey link belongs to round {principal.round_id!r}")
    if data.get("community_id") != principal.community_id:
        raise Forbidden(f"this survey link belongs to community {principal.community_id!r}")
    if data.setdefault("channel", "online") != "online":
        raise Forbidden("a survey link posts only channel 'online'")
    household = household_canonical(data.get("household_ref"))
    if data.get("respondent_type", "resident") == "resident" and household is None:
        raise Invalid.field("household_ref", "a resident answering through a survey link gives the household "
                                             "number (门牌号)")
    if data.get("respondent_type") == "public" and household is not None:
        raise Invalid.field("household_ref", "a member of the public (社会公众) gives no household number")


def _link_fields(ctx: ServiceState, principal: Principal, client: LinkClient | None) -> dict:
    """What a link response stores besides its content (not part of its content hash)."""
    if principal.role != "link":
        return {}
    client = client or LinkClient()
    return {"link_id": principal.key_id, "address_hash": address_hash(ctx, principal.key_id, client.address),
            "device_id": client.device_id}


@dataclass
class SurveyResult:
    outcome: Outcome
    response: dict

    @property
    def status(self) -> int:
        return 201 if self.outcome is Outcome.CREATED else 200


def submit_survey(ctx: ServiceState, round_id: str, data: dict, principal: Principal,
                  actor: Actor | None = None, client: LinkClient | None = None) -> SurveyResult:
    """One response: CREATED, or DUPLICATE for an identical replay; refusals raise (409 with the reason,
    429 beyond a survey link's hourly cap)."""
    check_link_survey(principal, round_id, data)
    rc = round_context(ctx, round_id, require_open=False)
    record = _prepared(lambda: prepare_response(data, rc, principal.key_id))
    record.update(_link_fields(ctx, principal, client))
    if rc.round["status"] != "open":
        outcome = _replay_after_close(ctx, rc, record)
        raise_for_outcome(outcome)
        return SurveyResult(outcome, response_view(ctx.store.get_response(round_id, record["response_id"])))
    audit = with_write(actor, lambda outcomes: (
        {Outcome.CREATED: 201, Outcome.DUPLICATE: 200, Outcome.RATE_LIMITED: 429}.get(outcomes[0], 409), "survey",
        record["response_id"], outcomes[0].value, {}))
    quota = link_quota(ctx, rc.round, principal.community_id) if principal.role == "link" else None
    outcome = ctx.store.add_responses(round_id, [record], len(rc.rubric.item_codes), audit=audit, quota=quota)[0]
    raise_for_outcome(outcome)
    if outcome is Outcome.CREATED:
        return SurveyResult(outcome, response_view(record))  # exactly what was stored
    return SurveyResult(outcome, response_view(ctx.store.get_response(round_id, record["response_id"])))


def submit_batch(ctx: ServiceState, round_id: str, items: list, load: Callable[[dict], dict],
                 principal: Principal, actor: Actor | None = None, client: LinkClient | None = None) -> dict:
    """Up to 1000 responses; each gets its own status in input order, and the valid ones are stored.

    ``load`` validates one raw item (raising :class:`Invalid`). In a closed round a batch that replays
    accepted responses answers them as duplicates (the rest ``conflict``/``round_closed``); a batch with
    no such replay is refused whole, as before.
    """
    if principal.role == "link" and round_id != principal.round_id:
        raise Forbidden(f"this survey link belongs to round {principal.round_id!r}")
    rc = round_context(ctx, round_id, require_open=False)
    link_fields = _link_fields(ctx, principal, client)
    results: list[dict] = []
    records: list[dict] = []
    positions: list[int] = []
    for raw in items:
        rid = raw.get("response_id") if isinstance(raw, dict) else None
        result = {"response_id": rid if isinstance(rid, str) else None}
        try:
            if not isinstance(raw, dict):
                raise Invalid.fields({"_schema": ["expected an object"]})
            loaded = load(raw)
            if principal.role == "kiosk" and loaded["community_id"] != principal.community_id:
                raise Invalid.field("community_id", f"this kiosk key belongs to community {principal.community_id!r}")
            check_link_survey(principal, round_id, loaded)  # Forbidden refuses the whole batch
            record = _prepared(lambda: prepare_response(loaded, rc, principal.key_id))
            record.update(link_fields)
        except Invalid as exc:
            result.update(status="invalid", errors=exc.errors)
        else:
            records.append(record)
            positions.append(len(results))
        results.append(result)

    def summary(outcomes: list[Outcome]) -> dict:
        created = sum(o is Outcome.CREATED for o in outcomes)
        duplicate = sum(o is Outcome.DUPLICATE for o in outcomes)
        return {"created": created, "duplicate": duplicate, "rejected": len(results) - created - duplicate}

    if rc.round["status"] != "open":
        outcomes = [_replay_after_close(ctx, rc, record) for record in records]
        if Outcome.DUPLICATE not in outcomes:
            raise Conflict(CLOSED_REASONS[rc.round["status"]])
        if actor is not None:
            ctx.store.append_audit(actor.event(200, "survey_batch", None, "batch", **summary(outcomes)))
            actor.audited = True
    else:
        audit = with_write(actor, lambda outcomes: (429 if Outcome.RATE_LIMITED in outcomes else 200, "survey_batch",
                                                     None, "batch", summary(outcomes)))
        quota = link_quota(ctx, rc.round, principal.community_id) if principal.role == "link" else None
        outcomes = (ctx.store.add_responses(round_id, records, len(rc.rubric.item_codes), audit=audit, quota=quota)
                    if records else [])
        if outcomes and outcomes[0] in (Outcome.ROUND_CLOSED, Outcome.ROUND_PUBLISHED):
            raise_for_outcome(outcomes[0])  # the round closed while this batch was checked
        if Outcome.RATE_LIMITED in outcomes:
            # a phone's queue keeps a batch answered 429 and sends it again after Retry-After: what was
            # accepted now then answers as a duplicate, so nothing is lost and nothing counted twice
            raise_for_outcome(Outcome.RATE_LIMITED)
    for position, outcome in zip(positions, outcomes):
        if outcome in (Outcome.CREATED, Outcome.DUPLICATE):
            results[position]["status"] = outcome.value
        else:
            results[position].update(status="conflict", error=OUTCOME_REASONS[outcome])
    counts = summary(outcomes)  # every created or duplicate status comes from an outcome
    if actor is not None and not actor.audited:  # nothing was valid: no store write carried the event
        ctx.store.append_audit(actor.event(200, "survey_batch", None, "batch", **counts))
        actor.audited = True
    return {**counts, "results": results}


def void_response(ctx: ServiceState, round_id: str, response_id: str, reason: str, key_id: str
                  ) -> tuple[Outcome, dict]:
    """Exclude a response from every score (it stays stored for audit): CHANGED, or UNCHANGED if already void."""
    record = get_round(ctx, round_id)
    rubric = ctx.rubric(record["rubric_id"])
    outcome = ctx.store.void_response(round_id, response_id, reason, key_id, now_stored(), len(rubric.item_codes))
    raise_for_outcome(outcome, "response", response_id)
    return outcome, response_view(ctx.store.get_response(round_id, response_id))


# -- inspections -------------------------------------------------------------------------------

def acting_agency(ctx: ServiceState, data: dict, principal: Principal) -> str:
    """The agency an inspection is for: the key's own, or named by an admin."""
    if principal.role == "agency":
        if data.get("agency_id", principal.agency_id) != principal.agency_id:
            raise Forbidden(f"this key belongs to agency {principal.agency_id!r}")
        return principal.agency_id
    if not data.get("agency_id"):
        raise Invalid.field("agency_id", "required when an administrator submits an inspection")
    if ctx.store.get_agency(data["agency_id"]) is None:
        raise Invalid.field("agency_id", f"unknown agency {data['agency_id']!r}")
    return data["agency_id"]


def get_inspection(ctx: ServiceState, round_id: str, inspection_id: str, principal: Principal) -> dict:
    stored = ctx.store.get_inspection(round_id, inspection_id)
    if stored is None:
        raise NotFound("inspection", inspection_id)
    if principal.role == "agency" and stored["agency_id"] != principal.agency_id:
        raise Forbidden("an agency reads only its own inspections")
    return stored


def submit_inspection(ctx: ServiceState, round_id: str, data: dict, principal: Principal) -> tuple[Outcome, dict]:
    """A new inspection: CREATED, or DUPLICATE for an identical replay."""
    agency_id = acting_agency(ctx, data, principal)
    rc = round_context(ctx, round_id)
    version = _prepared(lambda: prepare_version(data, rc, agency_id, principal.key_id))
    attachments.check_readable(ctx, principal, evidence_hashes(version), "check_evidence")
    record = {
        "inspection_id": version["inspection_id"],
        "round_id": round_id,
        "community_id": version["community_id"],
        "agency_id": agency_id,
        "versions": [version],
    }
    outcome = ctx.store.add_inspection(record)
    raise_for_outcome(outcome)
    _add_evidence_refs(ctx, rc, round_id, version["inspection_id"], agency_id, version)
    return outcome, inspection_view(ctx.store.get_inspection(round_id, version["inspection_id"]))


def _add_evidence_refs(ctx: ServiceState, rc: RoundContext, round_id: str, inspection_id: str, agency_id: str,
                       version: dict) -> None:
    """References of a stored (or replayed) version's check_evidence: written after the version, so a crash
    in between loses only reading grants, which the client's replay writes again (refs are idempotent)."""
    hashes = evidence_hashes(version)
    if hashes:
        community = rc.load_community(version["community_id"])
        ctx.store.add_attachment_refs(attachments.inspection_refs(round_id, inspection_id, community, agency_id,
                                                                  hashes))


def amend_inspection(ctx: ServiceState, round_id: str, inspection_id: str, data: dict, principal: Principal
                     ) -> tuple[Outcome, dict]:
    """A new version with ``amend_reason`` (every version is kept): CREATED, or DUPLICATE when the same as current."""
    if "inspection_id" in data and str(data["inspection_id"]) != inspection_id:
        raise Invalid.field("inspection_id", "must equal the id in the path")
    data["inspection_id"] = inspection_id
    stored = ctx.store.get_inspection(round_id, inspection_id)
    if stored is None:
        raise NotFound("inspection", inspection_id)
    if principal.role == "agency" and stored["agency_id"] != principal.agency_id:
        raise Forbidden("an agency amends only its own inspections")
    if data.get("agency_id", stored["agency_id"]) != stored["agency_id"]:
        raise Invalid.field("agency_id", "an amendment cannot move an inspection to another agency")
    if data["community_id"] != stored["community_id"]:
        raise Invalid.field("community_id", "an amendment cannot move an inspection to another community")
    data.setdefault("stage", stage_of(stored["versions"][-1]))  # a stage is changed only by naming it
    rc = round_context(ctx, round_id)
    version = _prepared(lambda: prepare_version(data, rc, stored["agency_id"], principal.key_id))
    version["amend_reason"] = data["amend_reason"]
    attachments.check_readable(ctx, principal, evidence_hashes(version), "check_evidence")
    restrict = principal.agency_id if principal.role == "agency" else None
    outcome = ctx.store.amend_inspection(round_id, inspection_id, version, restrict)
    raise_for_outcome(outcome, "inspection", inspection_id)
    _add_evidence_refs(ctx, rc, round_id, inspection_id, stored["agency_id"], version)
    return outcome, inspection_view(ctx.store.get_inspection(round_id, inspection_id))
