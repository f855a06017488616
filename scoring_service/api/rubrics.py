"""Rubrics: read by any key, added by admins (immutable versions)."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from .auth import ANY_KEY, require
from ..domain.canonical import digest, tidy_numbers
from .errors import conflict, not_found
from ..domain.rubric import RubricSchema
from ..services.context import state
from ..store import Outcome
from ..domain.timeutil import now_stored
from .common import note_audit

blp = Blueprint("rubrics", __name__, url_prefix="/api/v1/rubrics", description="Rubrics (SPEC §4)")


class RubricListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Dict())


def store_rubric(data: dict) -> tuple[Outcome, dict]:
    """Store a validated rubric version (shared with ``seed``); same id, other content → CONFLICT."""
    normalised = tidy_numbers(data)
    outcome = state().store.put_rubric(normalised["rubric_id"], normalised, digest(normalised), now_stored())
    return outcome, normalised


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
        outcome, normalised = store_rubric(data)
        note_audit("rubric", normalised["rubric_id"], outcome.value)
        if outcome is Outcome.CONFLICT:
            reason = "rubric_in_use" if state().store.rubric_in_use(normalised["rubric_id"]) else "conflict"
            conflict(reason, f"rubric {normalised['rubric_id']!r} exists with other content; rubric versions are immutable")
        stored = state().store.get_rubric(normalised["rubric_id"])
        return stored, 201 if outcome is Outcome.CREATED else 200


@blp.route("/<rubric_id>")
class RubricResource(MethodView):
    @require(*ANY_KEY)
    @blp.response(200)
    def get(self, rubric_id):
        body = state().store.get_rubric(rubric_id)
        if body is None:
            not_found("rubric", rubric_id)
        return body
