"""Professional inspection checklists, with amendments and their history."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from .auth import current_principal, require
from .errors import abort, conflict, field_error, not_found, raise_for_outcome
from ..domain.ids import ID_PATTERN
from ..domain.inspections import prepare_version, public_inspection
from ..services.context import state
from ..store import Outcome
from ..domain.surveys import SubmissionError
from .common import StrictSchema, note_audit
from .surveys import round_context

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
    checks = ma.fields.Dict(keys=ma.fields.String(validate=ma.validate.Length(max=100)), values=PointsOrNA(),
                            required=True)
    notes = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=5000))
    evidence = ma.fields.List(
        ma.fields.Url(schemes={"http", "https"}, require_tld=False, validate=ma.validate.Length(max=2000)),
        load_default=list,
        validate=ma.validate.Length(max=100),
    )


class AmendmentSchema(InspectionSchema):
    inspection_id = ma.fields.UUID()
    amend_reason = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=1000))


class VersionSchema(ma.Schema):
    version = ma.fields.Integer()
    inspector = ma.fields.String()
    inspected_at = ma.fields.String()
    checks = ma.fields.Dict()
    notes = ma.fields.String(allow_none=True)
    evidence = ma.fields.List(ma.fields.String())
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


def acting_agency(data: dict) -> str:
    """The agency an inspection is for: the key's own, or named by an admin."""
    principal = current_principal()
    if principal.role == "agency":
        if data.get("agency_id", principal.agency_id) != principal.agency_id:
            abort(403, message=f"this key belongs to agency {principal.agency_id!r}")
        return principal.agency_id
    if not data.get("agency_id"):
        field_error("agency_id", "required when an administrator submits an inspection")
    if state().store.get_agency(data["agency_id"]) is None:
        field_error("agency_id", f"unknown agency {data['agency_id']!r}")
    return data["agency_id"]


def prepare_or_422(data: dict, round_id: str, agency_id: str) -> dict:
    ctx = round_context(round_id)
    try:
        return prepare_version(data, ctx, agency_id, current_principal().key_id)
    except SubmissionError as exc:
        abort(exc.status, message="; ".join(f"{k}: {v[0]}" for k, v in exc.errors.items()), errors=exc.errors)


def load_or_404(round_id: str, inspection_id: str) -> dict:
    stored = state().store.get_inspection(round_id, inspection_id)
    if stored is None:
        not_found("inspection", inspection_id)
    return stored


@blp.route("")
class Inspections(MethodView):
    @require("agency", "admin")
    @blp.arguments(InspectionSchema)
    @blp.response(201, InspectionOutSchema)
    @blp.alt_response(200, schema=InspectionOutSchema, description="identical replay")
    def post(self, data, round_id):
        agency_id = acting_agency(data)
        version = prepare_or_422(data, round_id, agency_id)
        record = {
            "inspection_id": version["inspection_id"],
            "round_id": round_id,
            "community_id": version["community_id"],
            "agency_id": agency_id,
            "versions": [version],
        }
        outcome = state().store.add_inspection(record)
        note_audit("inspection", version["inspection_id"], outcome.value)
        raise_for_outcome(outcome)
        return public_inspection(load_or_404(round_id, version["inspection_id"])), (
            201 if outcome is Outcome.CREATED else 200
        )


@blp.route("/<inspection_id>")
class Inspection(MethodView):
    @require("agency", "leadership", "admin")
    @blp.response(200, InspectionOutSchema)
    def get(self, round_id, inspection_id):
        stored = load_or_404(round_id, inspection_id)
        principal = current_principal()
        if principal.role == "agency" and stored["agency_id"] != principal.agency_id:
            abort(403, message="an agency reads only its own inspections")
        return public_inspection(stored)

    @require("agency", "admin")
    @blp.arguments(AmendmentSchema)
    @blp.response(200, InspectionOutSchema)
    def put(self, data, round_id, inspection_id):
        """Amend an inspection: a new version with ``amend_reason``; every version is kept."""
        if "inspection_id" in data and str(data["inspection_id"]) != inspection_id:
            field_error("inspection_id", "must equal the id in the path")
        data["inspection_id"] = inspection_id
        existing = load_or_404(round_id, inspection_id)
        principal = current_principal()
        if principal.role == "agency" and existing["agency_id"] != principal.agency_id:
            abort(403, message="an agency amends only its own inspections")
        if data.get("agency_id", existing["agency_id"]) != existing["agency_id"]:
            field_error("agency_id", "an amendment cannot move an inspection to another agency")
        if data["community_id"] != existing["community_id"]:
            field_error("community_id", "an amendment cannot move an inspection to another community")
        version = prepare_or_422(data, round_id, existing["agency_id"])
        version["amend_reason"] = data["amend_reason"]
        restrict = principal.agency_id if principal.role == "agency" else None
        outcome = state().store.amend_inspection(round_id, inspection_id, version, restrict)
        note_audit("inspection", inspection_id, "amended" if outcome is Outcome.CREATED else outcome.value)
        if outcome is Outcome.CONFLICT:
            conflict("conflict")
        raise_for_outcome(outcome, "inspection", inspection_id)
        return public_inspection(load_or_404(round_id, inspection_id))
