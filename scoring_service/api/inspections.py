"""Professional inspection checklists, with amendments and their history."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView

from .auth import current_principal, require
from ..domain.ids import ID_PATTERN
from ..domain.inspections import MAX_EVIDENCE_PER_CHECK, STAGES, inspection_view
from ..services.attachments import SHA256_PATTERN
from ..services import submissions
from ..extensions import state
from ..store import Outcome
from .common import Blueprint, StrictSchema, note_audit

blp = Blueprint(
    "inspections", __name__, url_prefix="/api/v1/rounds/<round_id>/inspections", description="Inspections"
)


class PointsOrNA(ma.fields.Field):
    """Points (a number) or the string ``"na"``."""

    def _deserialize(self, value, attr, data, **kwargs):
        if value == "na":
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ma.ValidationError('must be a number of points or "na"')
        return value


class InspectionSchema(StrictSchema):
    inspection_id = ma.fields.UUID(required=True)
    community_id = ma.fields.String(required=True, validate=ma.validate.Regexp(ID_PATTERN))
    agency_id = ma.fields.String(validate=ma.validate.Regexp(ID_PATTERN))
    inspector = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=100))
    inspected_at = ma.fields.AwareDateTime(required=True)
    stage = ma.fields.String(validate=ma.validate.OneOf(STAGES), metadata={
        "description": "acceptance (default; scored by §5), construction (during the works, §11) or aftercare. "
                       "An amendment without it keeps the current version's stage."})
    checks = ma.fields.Dict(keys=ma.fields.String(validate=ma.validate.Length(max=100)), values=PointsOrNA(),
                            required=True)
    notes = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=5000))
    evidence = ma.fields.List(
        ma.fields.Url(schemes={"http", "https"}, require_tld=False, validate=ma.validate.Length(max=2000)),
        load_default=list,
        validate=ma.validate.Length(max=100),
    )
    check_evidence = ma.fields.Dict(
        keys=ma.fields.String(validate=ma.validate.Length(min=1, max=100)),
        values=ma.fields.List(ma.fields.String(validate=ma.validate.Regexp(SHA256_PATTERN)),
                              validate=ma.validate.Length(max=MAX_EVIDENCE_PER_CHECK)),
        metadata={"description": "photos or PDFs per check: {check code: [sha256 of an attachment, …]} (SPEC §13), "
                                 f"at most {MAX_EVIDENCE_PER_CHECK} a check, each one the caller may read "
                                 "(POST /attachments first). A version holds what it names: an amendment without "
                                 "it has none."})


class AmendmentSchema(InspectionSchema):
    inspection_id = ma.fields.UUID()
    amend_reason = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=1000))


class VersionSchema(ma.Schema):
    version = ma.fields.Integer()
    inspector = ma.fields.String()
    inspected_at = ma.fields.String()
    stage = ma.fields.String()
    checks = ma.fields.Dict()
    notes = ma.fields.String(allow_none=True)
    evidence = ma.fields.List(ma.fields.String())
    check_evidence = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.List(ma.fields.String()))
    amend_reason = ma.fields.String(allow_none=True)
    submitted_at = ma.fields.String()
    key_id = ma.fields.String(allow_none=True)


class InspectionOutSchema(VersionSchema):
    inspection_id = ma.fields.String()
    round_id = ma.fields.String()
    community_id = ma.fields.String()
    agency_id = ma.fields.String()
    vetoes = ma.fields.List(ma.fields.String())
    history = ma.fields.List(ma.fields.Nested(VersionSchema))


@blp.route("")
class Inspections(MethodView):
    @require("agency", "admin")
    @blp.arguments(InspectionSchema)
    @blp.response(201, InspectionOutSchema)
    @blp.alt_response(200, schema=InspectionOutSchema, description="identical replay")
    def post(self, data, round_id):
        outcome, view = submissions.submit_inspection(state(), round_id, data, current_principal())
        note_audit("inspection", view["inspection_id"], outcome.value)
        return view, 201 if outcome is Outcome.CREATED else 200


@blp.route("/<inspection_id>")
class Inspection(MethodView):
    @require("agency", "leadership", "admin")
    @blp.response(200, InspectionOutSchema)
    def get(self, round_id, inspection_id):
        return inspection_view(submissions.get_inspection(state(), round_id, inspection_id, current_principal()))

    @require("agency", "admin")
    @blp.arguments(AmendmentSchema)
    @blp.response(200, InspectionOutSchema)
    def put(self, data, round_id, inspection_id):
        """Amend an inspection: a new version with ``amend_reason``; every version is kept."""
        outcome, view = submissions.amend_inspection(state(), round_id, inspection_id, data, current_principal())
        note_audit("inspection", inspection_id, "amended" if outcome is Outcome.CREATED else outcome.value)
        return view
