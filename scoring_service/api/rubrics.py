"""Rubrics: read by any key, added by admins (immutable versions)."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView

from .auth import ANY_KEY, require
from ..services import rubrics
from ..domain.rubric_schema import RubricSchema
from ..extensions import state
from ..store import Outcome
from .common import Blueprint, note_audit

blp = Blueprint("rubrics", __name__, url_prefix="/api/v1/rubrics", description="Rubrics (SPEC §4)")


class RubricListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Dict())


@blp.route("")
class Rubrics(MethodView):
    @require(*ANY_KEY)
    @blp.response(200, RubricListSchema)
    def get(self):
        return {"items": state().store.list_rubrics()}

    @require("admin")
    @blp.arguments(RubricSchema)
    @blp.response(201)
    @blp.alt_response(200, description="identical version already stored")
    def post(self, data):
        outcome, stored = rubrics.store_rubric(state(), data)
        note_audit("rubric", stored["rubric_id"], outcome.value)
        return stored, 201 if outcome is Outcome.CREATED else 200


@blp.route("/<rubric_id>")
class RubricResource(MethodView):
    @require(*ANY_KEY)
    @blp.response(200)
    def get(self, rubric_id):
        return rubrics.get_rubric(state(), rubric_id)
