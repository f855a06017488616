"""Survey responses (民意验收): single, batch, void."""

from __future__ import annotations

from datetime import timedelta

import marshmallow as ma
from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from .auth import current_principal, require, require_kiosk_scope
from .errors import OUTCOME_REASONS, abort, conflict, not_found, raise_for_outcome
from ..domain.ids import ID_PATTERN
from ..services.context import state
from ..store import Outcome
from ..domain.surveys import RoundContext, SubmissionError, prepare_response, public_response
from ..domain.timeutil import now_stored
from .audit import audit_in_transaction
from .common import StrictSchema, note_audit
from .rounds import get_round_or_404

blp = Blueprint("surveys", __name__, url_prefix="/api/v1/rounds/<round_id>/surveys", description="Survey responses")

LIKERT = ma.validate.Range(min=1, max=5)


class SurveySchema(StrictSchema):
    response_id = ma.fields.UUID(required=True)
    community_id = ma.fields.String(required=True, validate=ma.validate.Regexp(ID_PATTERN))
    respondent_type = ma.fields.String(load_default="resident", validate=ma.validate.OneOf(("resident", "public")))
    channel = ma.fields.String(
        load_default="kiosk", validate=ma.validate.OneOf(("kiosk", "paper", "door_to_door", "online"))
    )
    household_ref = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=64))
    submitted_at = ma.fields.AwareDateTime(required=True)
    answers = ma.fields.Dict(
        keys=ma.fields.String(validate=ma.validate.Length(min=1, max=64)),
        values=ma.fields.Integer(strict=True, allow_none=True, validate=LIKERT),
        load_default=dict,
    )
    overall = ma.fields.Integer(strict=True, allow_none=True, load_default=None, validate=LIKERT)
    comment = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=500))


class ResponseSchema(ma.Schema):
    response_id = ma.fields.String()
    round_id = ma.fields.String()
    community_id = ma.fields.String()
    respondent_type = ma.fields.String()
    channel = ma.fields.String()
    submitted_at = ma.fields.String()
    received_at = ma.fields.String()
    answers = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())
    overall = ma.fields.Integer(allow_none=True)
    comment = ma.fields.String(allow_none=True)
    household_ref_given = ma.fields.Boolean()
    voided_at = ma.fields.String(allow_none=True)
    void_reason = ma.fields.String(allow_none=True)


class BatchSchema(StrictSchema):
    responses = ma.fields.List(ma.fields.Raw(), required=True, validate=ma.validate.Length(min=1, max=1000))


class BatchItemResultSchema(ma.Schema):
    response_id = ma.fields.String(allow_none=True)
    status = ma.fields.String(metadata={"enum": ["created", "duplicate", "conflict", "invalid"]})
    error = ma.fields.String()
    errors = ma.fields.Dict()


class BatchResultSchema(ma.Schema):
    created = ma.fields.Integer()
    duplicate = ma.fields.Integer()
    rejected = ma.fields.Integer()
    results = ma.fields.List(ma.fields.Nested(BatchItemResultSchema))


class VoidSchema(StrictSchema):
    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=500))


def round_context(round_id: str) -> RoundContext:
    record = get_round_or_404(round_id)
    if record["status"] != "open":
        conflict("round_closed" if record["status"] == "closed" else "round_published")
    s = state()
    return RoundContext(
        round=record,
        rubric=s.rubric(record["rubric_id"]),
        load_community=s.store.get_community,
        secret_key=s.secret_key,
        future_tolerance=timedelta(seconds=current_app.config["FUTURE_TOLERANCE_SECONDS"]),
    )


@blp.route("")
class Surveys(MethodView):
    @require("kiosk", "admin")
    @blp.arguments(SurveySchema)
    @blp.response(201, ResponseSchema)
    @blp.alt_response(200, schema=ResponseSchema, description="identical replay of a stored response")
    def post(self, data, round_id):
        principal = current_principal()
        require_kiosk_scope(principal, data["community_id"])
        ctx = round_context(round_id)
        try:
            record = prepare_response(data, ctx, principal.key_id)
        except SubmissionError as exc:
            abort(exc.status, message="; ".join(f"{k}: {v[0]}" for k, v in exc.errors.items()), errors=exc.errors)
        store = state().store
        audit = audit_in_transaction(
            lambda outcomes: {Outcome.CREATED: 201, Outcome.DUPLICATE: 200}.get(outcomes[0], 409),
            lambda outcomes: {"entity_type": "survey", "entity_id": record["response_id"],
                              "outcome": outcomes[0].value},
        )
        outcome = store.add_responses(round_id, [record], len(ctx.rubric.item_codes), audit=audit)[0]
        note_audit("survey", record["response_id"], outcome.value)
        if outcome in OUTCOME_REASONS:
            raise_for_outcome(outcome)
        if outcome is Outcome.CREATED:
            return public_response(record), 201  # exactly what was stored
        return public_response(store.get_response(round_id, record["response_id"])), 200


@blp.route("/batch")
class Batch(MethodView):
    @require("kiosk", "admin")
    @blp.arguments(BatchSchema)
    @blp.response(200, BatchResultSchema)
    def post(self, data, round_id):
        """Up to 1000 responses; each gets its own status, in input order, and valid ones are stored."""
        principal = current_principal()
        ctx = round_context(round_id)
        schema = SurveySchema()
        results: list[dict] = []
        records: list[dict] = []
        positions: list[int] = []
        for raw in data["responses"]:
            rid = raw.get("response_id") if isinstance(raw, dict) else None
            result = {"response_id": rid if isinstance(rid, str) else None}
            try:
                if not isinstance(raw, dict):
                    raise SubmissionError({"_schema": ["expected an object"]})
                try:
                    loaded = schema.load(raw)
                except ma.ValidationError as exc:
                    raise SubmissionError(exc.messages) from None
                if principal.role == "kiosk" and loaded["community_id"] != principal.community_id:
                    raise SubmissionError(
                        {"community_id": [f"this kiosk key belongs to community {principal.community_id!r}"]}
                    )
                record = prepare_response(loaded, ctx, principal.key_id)
            except SubmissionError as exc:
                result.update(status="invalid", errors=exc.errors)
            else:
                records.append(record)
                positions.append(len(results))
            results.append(result)
        def batch_note(outcomes):
            created = sum(o is Outcome.CREATED for o in outcomes)
            duplicate = sum(o is Outcome.DUPLICATE for o in outcomes)
            return {"entity_type": "survey_batch", "entity_id": None, "outcome": "batch", "created": created,
                    "duplicate": duplicate, "rejected": len(results) - created - duplicate}

        audit = audit_in_transaction(lambda outcomes: 200, batch_note)
        outcomes = (state().store.add_responses(round_id, records, len(ctx.rubric.item_codes), audit=audit)
                    if records else [])
        if outcomes and outcomes[0] in (Outcome.ROUND_CLOSED, Outcome.ROUND_PUBLISHED):
            raise_for_outcome(outcomes[0])  # the round closed while this batch was checked
        for position, outcome in zip(positions, outcomes):
            if outcome in (Outcome.CREATED, Outcome.DUPLICATE):
                results[position]["status"] = outcome.value
            else:
                results[position].update(status="conflict", error=OUTCOME_REASONS[outcome])
        counts = {
            "created": sum(r["status"] == "created" for r in results),
            "duplicate": sum(r["status"] == "duplicate" for r in results),
        }
        counts["rejected"] = len(results) - counts["created"] - counts["duplicate"]
        note_audit("survey_batch", None, "batch", **counts)
        return {**counts, "results": results}


@blp.route("/<response_id>/void")
class Void(MethodView):
    @require("admin")
    @blp.arguments(VoidSchema)
    @blp.response(200, ResponseSchema)
    def post(self, data, round_id, response_id):
        """Exclude a response from every score; it stays stored for audit."""
        record = get_round_or_404(round_id)
        rubric = state().rubric(record["rubric_id"])
        store = state().store
        outcome = store.void_response(
            round_id, response_id, data["reason"], current_principal().key_id, now_stored(), len(rubric.item_codes)
        )
        note_audit("survey", response_id, "voided" if outcome is Outcome.CHANGED else "already_voided")
        if outcome is Outcome.NOT_FOUND:
            not_found("response", response_id)
        raise_for_outcome(outcome)
        return public_response(store.get_response(round_id, response_id))
