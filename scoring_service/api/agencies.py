"""Evaluation agencies (专业测评机构)."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from .auth import ANY_KEY, require
from .errors import field_error
from ..domain.ids import ID_PATTERN
from ..services.context import state
from .common import StrictSchema, note_audit, same_id

blp = Blueprint("agencies", __name__, url_prefix="/api/v1/agencies", description="Evaluation agencies")


class AgencySchema(StrictSchema):
    agency_id = ma.fields.String(validate=ma.validate.Regexp(ID_PATTERN))
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))


class AgencyListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(AgencySchema))


@blp.route("")
class Agencies(MethodView):
    @require(*ANY_KEY)
    @blp.response(200, AgencyListSchema)
    def get(self):
        return {"items": state().store.list_agencies()}


@blp.route("/<agency_id>")
class Agency(MethodView):
    @require("admin")
    @blp.arguments(AgencySchema)
    @blp.response(200, AgencySchema)
    @blp.alt_response(201, schema=AgencySchema, description="created")
    def put(self, data, agency_id):
        if not ma.validate.Regexp(ID_PATTERN).regex.match(agency_id):
            field_error("agency_id", "must match ^[A-Za-z0-9_.-]{1,64}$")
        same_id(data, "agency_id", agency_id)
        created = state().store.put_agency(data)
        note_audit("agency", agency_id, "created" if created else "replaced")
        return data, 201 if created else 200
