"""Evaluation agencies (专业测评机构)."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView

from .auth import ANY_KEY, require
from ..domain.ids import ID_PATTERN
from ..extensions import state
from ..services import reference
from .common import Blueprint, StrictSchema, put_reference

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
        return put_reference("agency", ID_PATTERN, data, agency_id, reference.put_agency)
