"""Evaluation rounds: open → closed → published."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView

from .auth import ANY_KEY, require
from ..services import rounds
from ..domain import milestones as ms
from ..domain import rounds as kinds
from ..domain.ids import DISTRICT_ID_PATTERN, ID_PATTERN
from ..services.results import publish
from ..extensions import state
from ..store import Outcome
from .common import Blueprint, StrictSchema, note_audit, utc_time

blp = Blueprint("rounds", __name__, url_prefix="/api/v1/rounds", description="Evaluation rounds")


class RewardSchema(StrictSchema):
    pool_fen = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(min=0, max=10**15))
    district_share_pct = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(min=0, max=100))
    top_districts = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(min=0, max=1000))


class RoundCreateSchema(StrictSchema):
    round_id = ma.fields.String(required=True, validate=ma.validate.Regexp(ID_PATTERN))
    year = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(min=1990, max=2100))
    rubric_id = ma.fields.String(required=True, validate=ma.validate.Regexp(ID_PATTERN))
    title = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    opens_at = ma.fields.AwareDateTime(required=True, validate=utc_time)
    closes_at = ma.fields.AwareDateTime(required=True, validate=utc_time)
    quotas = ma.fields.Dict(
        keys=ma.fields.String(validate=ma.validate.Regexp(DISTRICT_ID_PATTERN)),
        values=ma.fields.Integer(strict=True, validate=ma.validate.Range(min=1, max=1_000_000)),
        validate=ma.validate.Length(min=1, max=10_000),
        metadata={"description": "district → planned community count; required for an acceptance round, "
                                 "default for an aftercare round: its covered communities per district"},
    )
    reward = ma.fields.Nested(RewardSchema, required=True)
    # aftercare (SPEC §15); stored only when given
    kind = ma.fields.String(validate=ma.validate.OneOf(kinds.KINDS),
                            metadata={"description": "acceptance (default: communities renovated in `year`) or "
                                                     "aftercare (communities renovated in `covers_years`)"})
    covers_years = ma.fields.List(
        ma.fields.Integer(strict=True, validate=ma.validate.Range(min=1990, max=2100)),
        validate=ma.validate.Length(min=1, max=50),
        metadata={"description": "renovation years an aftercare round covers (required for aftercare, "
                                 "refused for acceptance)"})
    # supervision (SPEC §11); each absent field takes its default, and a round created without them
    # is stored exactly as before they existed
    milestone_deadlines = ma.fields.Dict(
        keys=ma.fields.String(validate=ma.validate.OneOf(ms.CODES)), values=ma.fields.Date(),
        metadata={"description": "milestone code → deadline (default: none)"})
    progress_rule = ma.fields.String(validate=ma.validate.OneOf(ms.PROGRESS_RULES),
                                     metadata={"description": "district progress: graded_share (default) or milestones"})
    late_credit = ma.fields.Float(validate=ma.validate.Range(min=0, max=1),
                                  metadata={"description": "credit of a late milestone (default 0.5)"})
    warning_share = ma.fields.Float(validate=ma.validate.Range(min=0, max=1),
                                    metadata={"description": "share of the quota with overdue milestones that "
                                                             "warns a district (default 0.2)"})
    progress_as_of = ma.fields.Date(metadata={"description": "date of the supervision figures (default: today "
                                                            "while open, else the closing date)"})
    # funding ledger (SPEC §12); stored only when given
    city_budget_fen = ma.fields.Integer(strict=True, validate=ma.validate.Range(min=0, max=10**15),
                                        metadata={"description": "the city's budget for subsidies and rewards "
                                                                 "(optional)"})
    # survey links (SPEC §14); stored only when given
    public_cap = ma.fields.Integer(strict=True, validate=ma.validate.Range(min=0, max=1_000_000),
                                   metadata={"description": "public (社会公众) responses per community at most "
                                                            "(default: the community's households)"})
    # rectification (SPEC §13); stored only when given
    rectification_threshold = ma.fields.Float(
        validate=ma.validate.Range(min=0, max=1),
        metadata={"description": "a check scored below this share of its max_points fails and opens a "
                                 "rectification item (default 0.6; a critical check scored 0 always fails)"})
    rectification_days = ma.fields.Integer(
        strict=True, validate=ma.validate.Range(min=1, max=3650),
        metadata={"description": "days from opening to an item's due date (default 15)"})

    @ma.validates_schema
    def window(self, data, **kwargs):
        if data.get("opens_at") and data.get("closes_at") and data["closes_at"] <= data["opens_at"]:
            raise ma.ValidationError("must be after opens_at", "closes_at")

    @ma.validates_schema
    def coverage(self, data, **kwargs):
        if data.get("kind") == kinds.AFTERCARE:
            if "covers_years" not in data:
                raise ma.ValidationError("is required for an aftercare round", "covers_years")
        else:
            errors = {}
            if "covers_years" in data:
                errors["covers_years"] = ["only an aftercare round has covers_years"]
            if "quotas" not in data:
                errors["quotas"] = ["Missing data for required field."]
            if errors:
                raise ma.ValidationError(errors)


class RoundSchema(ma.Schema):
    round_id = ma.fields.String()
    year = ma.fields.Integer()
    rubric_id = ma.fields.String()
    title = ma.fields.String()
    opens_at = ma.fields.String()
    closes_at = ma.fields.String()
    quotas = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())
    reward = ma.fields.Nested(RewardSchema)
    status = ma.fields.String()
    created_at = ma.fields.String()
    closed_at = ma.fields.String(allow_none=True)
    published_at = ma.fields.String(allow_none=True)
    snapshot_sha256 = ma.fields.String(allow_none=True)
    # present only when the round was created with them (absent: the default of SPEC §11)
    milestone_deadlines = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String())
    progress_rule = ma.fields.String()
    late_credit = ma.fields.Float()
    warning_share = ma.fields.Float()
    progress_as_of = ma.fields.String()
    city_budget_fen = ma.fields.Integer()  # SPEC §12, present only when the round was created with it
    public_cap = ma.fields.Integer()  # SPEC §14, present only when the round was created with it
    # SPEC §13, present only when the round was created with them (absent: 0.6 and 15)
    rectification_threshold = ma.fields.Float()
    rectification_days = ma.fields.Integer()
    # SPEC §15, present only when the round was created with them (absent: an acceptance round)
    kind = ma.fields.String()
    covers_years = ma.fields.List(ma.fields.Integer())


class RoundListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(RoundSchema))


def get_round_or_404(round_id: str) -> dict:
    return rounds.get_round(state(), round_id)


@blp.route("")
class Rounds(MethodView):
    @require("admin")
    @blp.arguments(RoundCreateSchema)
    @blp.response(201, RoundSchema)
    @blp.alt_response(200, schema=RoundSchema, description="identical round already exists")
    def post(self, data):
        outcome, record = rounds.create_round(state(), data)
        note_audit("round", record["round_id"], outcome.value)
        return record, 201 if outcome is Outcome.CREATED else 200

    @require(*ANY_KEY)
    @blp.response(200, RoundListSchema)
    def get(self):
        return {"items": state().store.list_rounds()}


@blp.route("/<round_id>")
class Round(MethodView):
    @require(*ANY_KEY)
    @blp.response(200, RoundSchema)
    def get(self, round_id):
        return get_round_or_404(round_id)


@blp.route("/<round_id>/close")
class Close(MethodView):
    @require("admin")
    @blp.response(200, RoundSchema)
    def post(self, round_id):
        outcome, record = rounds.close_round(state(), round_id)
        note_audit("round", round_id, "closed" if outcome is Outcome.CHANGED else "already_closed")
        return record


@blp.route("/<round_id>/publish")
class Publish(MethodView):
    @require("admin")
    @blp.response(200, RoundSchema)
    def post(self, round_id):
        outcome = publish(state(), round_id)
        note_audit("round", round_id, "published" if outcome is Outcome.CHANGED else "already_published")
        return get_round_or_404(round_id)
