"""History across rounds (SPEC §15): a community's and a district's results, oldest year first."""

from __future__ import annotations

from flask import Response
from flask.views import MethodView
from marshmallow import fields, validate

from ..domain.canonical import canonical_bytes
from ..domain.ids import ID_PATTERN
from ..extensions import state
from ..services import history
from .common import Blueprint
from .auth import current_principal, require
from .result_schemas import COUNT, FLAG, GRADE, SCORE, Body, item_scores, nullable, required

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


def json_response(document: dict) -> Response:
    return Response(canonical_bytes(document), mimetype="application/json")


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
