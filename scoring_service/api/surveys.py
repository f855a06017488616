"""Survey responses (民意验收): single, batch, void."""

from __future__ import annotations

import re

import marshmallow as ma
from flask import g, request
from flask.views import MethodView

from .auth import current_principal, require, require_kiosk_scope
from ..domain.ids import ID_PATTERN
from ..extensions import state
from ..store import Outcome
from ..services import submissions
from ..services.errors import Invalid
from .common import Blueprint, StrictSchema, note_audit, request_actor

blp = Blueprint("surveys", __name__, url_prefix="/api/v1/rounds/<round_id>/surveys", description="Survey responses")

LIKERT = ma.validate.Range(min=1, max=5)


class SurveySchema(StrictSchema):
    response_id = ma.fields.UUID(required=True)
    community_id = ma.fields.String(required=True, validate=ma.validate.Regexp(ID_PATTERN))
    respondent_type = ma.fields.String(load_default="resident", validate=ma.validate.OneOf(("resident", "public")))
    channel = ma.fields.String(
        validate=ma.validate.OneOf(("kiosk", "paper", "door_to_door", "online")),
        metadata={"description": "default kiosk; online (the only one allowed) through a survey link"})
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


#: the phone page's device cookie (SPEC §14; set by the /s/<token> page)
DEVICE_COOKIE = "sd"
DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")


def link_client() -> submissions.LinkClient:
    """The client of a survey-link request: its address (behind TRUSTED_PROXIES, as the rate limits see it)
    and its device cookie when well formed (anything else is not stored)."""
    device = request.cookies.get(DEVICE_COOKIE)
    return submissions.LinkClient(address=request.remote_addr,
                                  device_id=device if device and DEVICE_ID.fullmatch(device) else None)


@blp.route("")
class Surveys(MethodView):
    @require("kiosk", "admin", "link")
    @blp.arguments(SurveySchema)
    @blp.response(201, ResponseSchema)
    @blp.alt_response(200, schema=ResponseSchema, description="identical replay of a stored response")
    def post(self, data, round_id):
        """One response. A survey link (SPEC §14) posts only for its round and community, channel online;
        beyond its hourly cap per address 429, beyond the round's public_cap 409 public_cap_reached."""
        principal = current_principal()
        require_kiosk_scope(principal, data["community_id"])
        result = submissions.submit_survey(state(), round_id, data, principal, request_actor(), link_client())
        return result.response, result.status


#: shared by the batch's items and threads (a schema keeps no state between loads; making one per item
#: deep-copied its fields a thousand times per batch)
_SURVEY_SCHEMA = SurveySchema()


def load_survey(raw: dict) -> dict:
    """One batch item validated like a single survey (:class:`Invalid` naming its fields)."""
    try:
        return _SURVEY_SCHEMA.load(raw)
    except ma.ValidationError as exc:
        raise Invalid.fields(exc.messages) from None


@blp.route("/batch")
class Batch(MethodView):
    @require("kiosk", "admin", "link")
    @blp.arguments(BatchSchema)
    @blp.response(200, BatchResultSchema)
    def post(self, data, round_id):
        """Up to 1000 responses; each gets its own status, in input order, and valid ones are stored."""
        result = submissions.submit_batch(state(), round_id, data["responses"], load_survey, current_principal(),
                                          request_actor(), link_client())
        g.batch_counts = {k: result[k] for k in ("created", "duplicate", "rejected")}  # for the metrics hook
        return result


@blp.route("/<response_id>/void")
class Void(MethodView):
    @require("admin")
    @blp.arguments(VoidSchema)
    @blp.response(200, ResponseSchema)
    def post(self, data, round_id, response_id):
        """Exclude a response from every score; it stays stored for audit."""
        outcome, view = submissions.void_response(state(), round_id, response_id, data["reason"],
                                                  current_principal().key_id)
        note_audit("survey", response_id, "voided" if outcome is Outcome.CHANGED else "already_voided")
        return view
