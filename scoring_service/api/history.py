"""History across rounds (SPEC §15): a community's and a district's results, oldest year first; and
the 前治后乱 list of an aftercare round."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import fields, validate

from ..domain.ids import DISTRICT_ID_PATTERN, ID_PATTERN
from ..extensions import state
from ..services import aftercare, history
from .common import Blueprint, StrictSchema, json_response
from .auth import current_principal, require
from .result_schemas import CHANGE, COUNT, FLAG, GRADE, SCORE, Body, item_scores, nullable, required

blp = Blueprint("history", __name__, url_prefix="/api/v1", description="History across rounds")

READERS = ("leadership", "admin", "district")


class HistoryRoundFields(Body):
    round_id = required(fields.String, validate=validate.Regexp(ID_PATTERN))
    kind = required(fields.String, validate=validate.OneOf((history.ACCEPTANCE, history.AFTERCARE)))
    year = required(fields.Integer)
    title = nullable(fields.String)
    published = required(fields.Boolean, metadata={"description": "values from the published snapshot, "
                                                                  "else live results"})


class CommunityHistoryRowSchema(HistoryRoundFields):
    composite = nullable(fields.Float, validate=SCORE)
    grade = nullable(fields.String, validate=GRADE)
    flags = required(fields.List, fields.String(validate=FLAG))
    professional_items = item_scores()
    resident_items = item_scores()


class CommunityHistorySchema(Body):
    items = required(fields.List, fields.Nested(CommunityHistoryRowSchema),
                     metadata={"description": "one per round covering the community, oldest year first "
                                              "(acceptance before aftercare, then by round id)"})


class DistrictHistoryRowSchema(HistoryRoundFields):
    index = required(fields.Float, validate=SCORE, metadata={"description": "D = 0.7·quality + 0.3·progress"})
    quality = required(fields.Float, validate=SCORE)
    progress = required(fields.Float, validate=SCORE)
    quota = required(fields.Integer, validate=COUNT)
    graded = required(fields.Integer, validate=COUNT)
    grade_counts = required(fields.Dict, keys=fields.String(validate=GRADE), values=fields.Integer(validate=COUNT))


class DistrictHistorySchema(Body):
    items = required(fields.List, fields.Nested(DistrictHistoryRowSchema),
                     metadata={"description": "one per round whose quotas include the district, oldest year first"})


@blp.route("/communities/<community_id>/history")
class CommunityHistory(MethodView):
    @require(*READERS)
    @blp.response(200, CommunityHistorySchema)
    def get(self, community_id):
        """A community's composite, grade, flags and item scores in every round that covered it
        (leadership, admin; a district key for its own district's communities)."""
        return json_response(history.community_history(state(), current_principal(), community_id))


@blp.route("/districts/<district_id>/history")
class DistrictHistory(MethodView):
    @require(*READERS)
    @blp.response(200, DistrictHistorySchema)
    def get(self, district_id):
        """A district's index, quality, progress and grade counts in every round that set it a quota
        (leadership, admin; a district key for its own district)."""
        return json_response(history.district_history(state(), current_principal(), district_id))


# -- 前治后乱 (SPEC §15, §16) ------------------------------------------------------------------

class BackslidingQuerySchema(StrictSchema):
    district_id = fields.String(validate=validate.Regexp(DISTRICT_ID_PATTERN),
                                metadata={"description": "one district (a district key: its own, the default)"})


class ComparedItemSchema(Body):
    code = required(fields.String)
    name_zh = required(fields.String)


class SourceChangeSchema(Body):
    baseline = nullable(fields.Float, validate=SCORE, metadata={
        "description": "the compared acceptance items' scores, weighted by their rubric weights"})
    score = nullable(fields.Float, validate=SCORE)
    change = nullable(fields.Float, validate=CHANGE)


class FallenItemSchema(Body):
    code = required(fields.String)
    name_zh = required(fields.String)
    compares_to = required(fields.List, fields.Nested(ComparedItemSchema), metadata={
        "description": "the acceptance rubric's items this item continues (the rubric's compares_to) that "
                       "were scored in the baseline round"})
    baseline = required(fields.Float, validate=SCORE)
    score = required(fields.Float, validate=SCORE)
    change = required(fields.Float, validate=validate.Range(min=-100, max=0, max_inclusive=False), metadata={
        "description": "professional and resident changes weighted by the source weights"})
    professional = required(fields.Nested, SourceChangeSchema)
    resident = required(fields.Nested, SourceChangeSchema)


class BackslidingRowSchema(Body):
    community_id = required(fields.String)
    name_zh = required(fields.String)
    district_id = required(fields.String)
    composite = required(fields.Float, validate=SCORE)
    grade = nullable(fields.String, validate=GRADE)
    grade_zh = nullable(fields.String)
    baseline = required(fields.Float, validate=SCORE)
    change = required(fields.Float, validate=validate.Range(min=-100, max=-10),
                      metadata={"description": "composite − baseline, at most −10.00"})
    flags = required(fields.List, fields.String(validate=FLAG))
    baseline_round_id = required(fields.String, metadata={"description": "the published acceptance round "
                                                                          "the baseline comes from"})
    fallen_items = required(fields.List, fields.Nested(FallenItemSchema),
                            metadata={"description": "compared items whose score fell, the largest fall first"})


class UnmanagedSchema(Body):
    community_id = required(fields.String)
    name_zh = required(fields.String)
    district_id = required(fields.String)
    baseline = nullable(fields.Float, validate=SCORE, metadata={"description": "null: no composite at acceptance"})


class BackslidingSchema(Body):
    round_id = required(fields.String)
    round_title = nullable(fields.String)
    published = required(fields.Boolean)
    communities = required(fields.List, fields.Nested(BackslidingRowSchema),
                           metadata={"description": "communities flagged backsliding, the largest drop first"})
    management_missing = required(fields.List, fields.Nested(UnmanagedSchema), metadata={
        "description": "communities flagged management_missing (no 后续管理落实 in their acceptance round), by id"})


@blp.route("/rounds/<round_id>/backsliding")
class Backsliding(MethodView):
    @require(*READERS)
    @blp.arguments(BackslidingQuerySchema, location="query")
    @blp.response(200, BackslidingSchema)
    def get(self, query, round_id):
        """The 前治后乱 list of an aftercare round: communities whose composite fell by 10.00 or more from
        their acceptance baseline, with the items that fell most (leadership, admin; a district key for
        its own district). 422 for an acceptance round."""
        return json_response(aftercare.backsliding_report(state(), round_id, current_principal(),
                                                          query.get("district_id")))
