"""Communities: create/replace one, import many (JSON or CSV, all or nothing), read."""

from __future__ import annotations

import csv
import io

import marshmallow as ma
from flask import request
from flask.views import MethodView

from .auth import ANY_KEY, current_principal, require, require_district_scope, require_kiosk_scope
from .errors import abort, not_found
from ..domain.ids import DISTRICT_ID_PATTERN, ID_PATTERN
from ..extensions import state
from ..services import reference
from .common import Blueprint, StrictSchema, note_audit, put_reference

blp = Blueprint("communities", __name__, url_prefix="/api/v1/communities", description="Communities")

CSV_COLUMNS = (
    "community_id", "name_zh", "district_id", "households", "renovation_year",
    "has_elevator", "heating_retrofit", "address", "built_year",
)


class CommunitySchema(StrictSchema):
    community_id = ma.fields.String(validate=ma.validate.Regexp(ID_PATTERN))
    name_zh = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=100))
    district_id = ma.fields.String(required=True, validate=ma.validate.Regexp(DISTRICT_ID_PATTERN))
    households = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(min=1, max=100_000))
    renovation_year = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(min=1990, max=2100))
    has_elevator = ma.fields.Boolean(required=True)
    heating_retrofit = ma.fields.Boolean(required=True)
    address = ma.fields.String(validate=ma.validate.Length(max=200))
    built_year = ma.fields.Integer(strict=True, validate=ma.validate.Range(min=1900, max=2100))


class CommunityImportItemSchema(CommunitySchema):
    community_id = ma.fields.String(required=True, validate=ma.validate.Regexp(ID_PATTERN))


class CommunityListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(CommunitySchema))


class CommunityQuerySchema(StrictSchema):
    district_id = ma.fields.String()
    renovation_year = ma.fields.Integer(validate=ma.validate.Range(min=1990, max=2100))


class ImportResultSchema(ma.Schema):
    imported = ma.fields.Integer()
    created = ma.fields.Integer()
    replaced = ma.fields.Integer()


def _integer_text(value: str) -> bool:
    """Text int() reads (decimal digits, full-width ones too), short enough: int() fails on "²" and 4300+ digits."""
    digits = value.removeprefix("-")
    return digits.isdecimal() and len(digits) <= 18


def _csv_rows(text: str) -> list[dict]:
    """CSV rows as dicts typed like the JSON body (empty optional cells omitted)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    missing = [c for c in CSV_COLUMNS[:7] if c not in (reader.fieldnames or [])]
    if missing:
        abort(422, message="CSV header lacks columns", errors={"csv": [f"missing columns: {', '.join(missing)}"]})
    rows = []
    for raw in reader:
        row: dict = {}
        for column, value in raw.items():
            if column is None:
                row["_extra"] = value
                continue
            value = (value or "").strip()
            if value == "" and column in ("address", "built_year"):
                continue
            if column in ("households", "renovation_year", "built_year"):
                row[column] = int(value) if _integer_text(value) else value
            elif column in ("has_elevator", "heating_retrofit"):
                row[column] = {"1": True, "true": True, "是": True, "0": False, "false": False, "否": False}.get(
                    value.lower(), value
                )
            else:
                row[column] = value
        rows.append(row)
    return rows


@blp.route("")
class Communities(MethodView):
    @require(*ANY_KEY)
    @blp.arguments(CommunityQuerySchema, location="query")
    @blp.response(200, CommunityListSchema)
    def get(self, query):
        principal = current_principal()
        items = state().store.list_communities(query.get("district_id"), query.get("renovation_year"))
        if principal.role == "kiosk":
            items = [c for c in items if c["community_id"] == principal.community_id]
        elif principal.role == "district":
            items = [c for c in items if c["district_id"] == principal.district_id]
        return {"items": items}


@blp.route("/import")
class Import(MethodView):
    @require("admin")
    @blp.response(200, ImportResultSchema)
    @blp.doc(
        requestBody={
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    )
    def post(self):
        """Import many communities at once: a JSON list, ``{"items": [...]}``, or CSV. All or nothing."""
        if request.mimetype == "text/csv":
            rows = _csv_rows(request.get_data(as_text=True))
        else:
            body = request.get_json(silent=True)
            if isinstance(body, dict) and set(body) == {"items"}:
                body = body["items"]
            if not isinstance(body, list):
                abort(422, message="expected a JSON list of communities", errors={"json": ["expected a list"]})
            rows = body
        if not rows:
            abort(422, message="nothing to import", errors={"json": ["the list is empty"]})
        if len(rows) > 20_000:
            abort(413, message="at most 20000 communities per import")
        schema = CommunityImportItemSchema()
        errors: dict[str, dict] = {}
        records: list[tuple[int, dict]] = []
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                errors[str(index)] = {"_schema": ["expected an object"]}
                continue
            try:
                records.append((index, schema.load(row)))
            except ma.ValidationError as exc:
                errors[str(index)] = exc.messages
        result = reference.import_communities(state(), records, errors)
        note_audit("community", None, "imported", count=result["imported"])
        return result


@blp.route("/<community_id>")
class Community(MethodView):
    @require(*ANY_KEY)
    @blp.response(200, CommunitySchema)
    def get(self, community_id):
        principal = current_principal()
        require_kiosk_scope(principal, community_id)
        record = state().store.get_community(community_id)
        if record is None:
            not_found("community", community_id)
        if principal.role == "district":
            require_district_scope(principal, record["district_id"])
        return record

    @require("admin")
    @blp.arguments(CommunitySchema)
    @blp.response(200, CommunitySchema)
    @blp.alt_response(201, schema=CommunitySchema, description="created")
    def put(self, data, community_id):
        return put_reference("community", ID_PATTERN, data, community_id, reference.put_community)
