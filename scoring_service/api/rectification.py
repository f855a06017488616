"""Rectification items (整改台账, SPEC §13): the round's items and the districts' responses."""

from __future__ import annotations

from flask import Response
from flask.views import MethodView
from marshmallow import fields, validate

from ..domain import rectification as rx
from ..domain.ids import DISTRICT_ID_PATTERN, ID_PATTERN
from ..extensions import state
from ..services import rectification
from ..store import Outcome
from .auth import current_principal, require
from .common import Blueprint, StrictSchema, note_audit
from .result_schemas import COUNT, Body, nullable, nullable_object, required

blp = Blueprint("rectification", __name__, url_prefix="/api/v1/rounds/<round_id>/rectifications",
                description="Rectification items (整改台账): failed checks, the districts' responses, re-inspection")

DATE = validate.Regexp(r"^\d{4}-\d{2}-\d{2}$")
SHA256 = validate.Regexp(r"^[0-9a-f]{64}$")


class RectificationResponseInSchema(StrictSchema):
    response_id = fields.UUID(required=True, metadata={"description": "client-chosen; the idempotency key"})
    fixed_on = fields.Date(required=True, metadata={"description": "China time; not after today, not before the "
                                                                   "item opened"})
    note = fields.String(required=True, validate=validate.Length(min=1, max=500))
    evidence = fields.List(fields.String(validate=SHA256), required=True,
                           validate=validate.Length(min=1, max=rectification.MAX_EVIDENCE),
                           metadata={"description": "SHA-256 of attachments the caller may read (photos of the fix)"})


class EvidenceLinkSchema(Body):
    sha256 = required(fields.String, validate=SHA256)
    url = required(fields.String)
    thumbnail_url = nullable(fields.String, metadata={"description": "images only (null for a PDF)"})


class RectificationResponseSchema(Body):
    response_id = required(fields.String)
    round_id = required(fields.String)
    item_id = required(fields.String)
    community_id = required(fields.String)
    district_id = nullable(fields.String)
    fixed_on = required(fields.String, validate=DATE)
    note = required(fields.String)
    evidence = required(fields.List, fields.Nested(EvidenceLinkSchema))
    key_id = nullable(fields.String)
    recorded_at = required(fields.String)


@blp.route("/<item_id>/responses")
class Responses(MethodView):
    @require("admin", "district")
    @blp.arguments(RectificationResponseInSchema)
    @blp.response(201, RectificationResponseSchema)
    @blp.alt_response(200, schema=RectificationResponseSchema, description="identical replay")
    def post(self, data, round_id, item_id):
        """The district answers an item: what was fixed, when, with photos. Replay-safe by ``response_id``
        (identical → 200; the id with other content → 409 ``conflict``); an unknown item → 404; 422 naming
        ``fixed_on`` (after today or before the item opened) or ``evidence`` (not an attachment the caller
        may read)."""
        outcome, view = rectification.respond(state(), round_id, item_id, data, current_principal())
        note_audit("rectification_response", view["response_id"], outcome.value, item_id=item_id)
        return view, 201 if outcome is Outcome.CREATED else 200


class RectificationQuerySchema(StrictSchema):
    as_of = fields.Date(metadata={"description": "the date t (China time); default: the round's progress_as_of, "
                                                 "today while open, else the day it closed"})
    status = fields.String(validate=validate.OneOf(rx.STATUSES))
    district_id = fields.String(validate=validate.Regexp(DISTRICT_ID_PATTERN))
    community_id = fields.String(validate=validate.Regexp(ID_PATTERN))
    overdue = fields.Boolean()


class RectificationCountsSchema(Body):
    """A district's rectification items at the as-of date (also a district row's ``rectifications`` in the
    supervision report, SPEC §11)."""

    open = required(fields.Integer, validate=COUNT)
    submitted = required(fields.Integer, validate=COUNT)
    reopened = required(fields.Integer, validate=COUNT)
    verified = required(fields.Integer, validate=COUNT)
    overdue = required(fields.Integer, validate=COUNT)
    median_days_to_verification = nullable(fields.Float, validate=COUNT,
                                           metadata={"description": "null without a verified item"})


class DistrictRectificationCountsSchema(RectificationCountsSchema):
    district_id = required(fields.String)
    name_zh = nullable(fields.String)


class RectificationItemResponseSchema(Body):
    response_id = required(fields.String)
    fixed_on = required(fields.String, validate=DATE)
    note = required(fields.String)
    evidence = required(fields.List, fields.Nested(EvidenceLinkSchema))
    key_id = nullable(fields.String)
    recorded_at = required(fields.String)


class VerifyingVersionSchema(Body):
    inspection_id = required(fields.String)
    version = required(fields.Integer, validate=validate.Range(min=1))
    agency_id = required(fields.String)
    inspected_at = required(fields.String)
    on = required(fields.String, validate=DATE, metadata={"description": "the date it counts on (China time)"})
    points = required(fields.Float)
    evidence = required(fields.List, fields.Nested(EvidenceLinkSchema))


class RectificationEventSchema(Body):
    on = required(fields.String, validate=DATE)
    event = required(fields.String, validate=validate.OneOf(rx.EVENTS))
    inspection_id = fields.String(metadata={"description": "opened, reopened, verified"})
    version = fields.Integer(validate=validate.Range(min=1))
    points = fields.Float()
    response_id = fields.String(metadata={"description": "submitted"})


class RectificationItemSchema(Body):
    id = required(fields.String, metadata={"description": "{inspection_id}:{check_code}"})
    community_id = required(fields.String)
    community_name_zh = nullable(fields.String)
    district_id = nullable(fields.String)
    inspection_id = required(fields.String)
    agency_id = required(fields.String)
    check_code = required(fields.String)
    item_code = required(fields.String, metadata={"description": "the rubric item the check belongs to"})
    check_text_zh = nullable(fields.String)
    check_text_en = nullable(fields.String)
    severity = required(fields.String, validate=validate.OneOf(rx.SEVERITIES))
    points = required(fields.Float, metadata={"description": "the score of the failing version"})
    max_points = required(fields.Float)
    opened_on = required(fields.String, validate=DATE)
    due_on = required(fields.String, validate=DATE)
    status = required(fields.String, validate=validate.OneOf(rx.STATUSES))
    overdue = required(fields.Boolean)
    verified_on = nullable(fields.String, validate=DATE)
    days_to_verification = nullable(fields.Integer, validate=COUNT)
    evidence = required(fields.List, fields.Nested(EvidenceLinkSchema),
                        metadata={"description": "the check's evidence in the failing version"})
    responses = required(fields.List, fields.Nested(RectificationItemResponseSchema),
                         metadata={"description": "responses seen at the as-of date, in order"})
    verifying = nullable_object(VerifyingVersionSchema, required=True,
                                metadata={"description": "the re-inspection that verified the item"})
    history = required(fields.List, fields.Nested(RectificationEventSchema),
                       metadata={"description": "the status changes, in order"})


class RectificationListSchema(Body):
    round_id = required(fields.String)
    as_of = required(fields.String, validate=DATE)
    districts = required(fields.List, fields.Nested(DistrictRectificationCountsSchema))
    items = required(fields.List, fields.Nested(RectificationItemSchema))


@blp.route("")
class Rectifications(MethodView):
    @require("leadership", "admin", "district", "agency")
    @blp.arguments(RectificationQuerySchema, location="query")
    @blp.response(200, RectificationListSchema)
    def get(self, query, round_id):
        """The round's rectification items at a date, with the per-district counts. A district key reads its
        own district only (another district → 403); an agency the items of its own inspections."""
        length, body = rectification.rectifications_stream(
            state(), round_id, current_principal(), as_of=query.get("as_of"), status=query.get("status"),
            district_id=query.get("district_id"), community_id=query.get("community_id"),
            overdue=query.get("overdue"))
        # in pieces (a national list is some 60 MB: never one more copy of it), its length known
        response = Response(body, mimetype="application/json")
        response.content_length = length
        return response
