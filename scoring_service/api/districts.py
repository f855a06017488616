"""Districts: created or replaced by admins, read by any key."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView

from .auth import ANY_KEY, require
from ..domain.ids import DISTRICT_ID_PATTERN
from ..extensions import state
from ..services import reference
from .common import Blueprint, StrictSchema, put_reference

blp = Blueprint("districts", __name__, url_prefix="/api/v1/districts", description="Districts")


class DistrictSchema(StrictSchema):
    district_id = ma.fields.String(validate=ma.validate.Regexp(DISTRICT_ID_PATTERN))
    name_zh = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=50))
    name_en = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=100))


class DistrictListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(DistrictSchema))


@blp.route("")
class Districts(MethodView):
    @require(*ANY_KEY)
    @blp.response(200, DistrictListSchema)
    def get(self):
        return {"items": state().store.list_districts()}


@blp.route("/<district_id>")
class District(MethodView):
    @require("admin")
    @blp.arguments(DistrictSchema)
    @blp.response(200, DistrictSchema)
    @blp.alt_response(201, schema=DistrictSchema, description="created")
    def put(self, data, district_id):
        return put_reference("district", DISTRICT_ID_PATTERN, data, district_id, reference.put_district)
