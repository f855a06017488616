"""Districts: created or replaced by admins, read by any key."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from .auth import ANY_KEY, require
from .errors import field_error
from ..domain.ids import DISTRICT_ID_PATTERN
from ..services.context import state
from .common import StrictSchema, note_audit, same_id

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
        if not ma.validate.Regexp(DISTRICT_ID_PATTERN).regex.match(district_id):
            field_error("district_id", "must match ^[a-z0-9-]{1,32}$")
        same_id(data, "district_id", district_id)
        created = state().store.put_district(data)
        note_audit("district", district_id, "created" if created else "replaced")
        return data, 201 if created else 200
