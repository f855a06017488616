"""Whole-process supervision (SPEC §11): the progress report and the printable 督办通报."""

from __future__ import annotations

import marshmallow as ma
from flask import Response, current_app
from flask.views import MethodView
from marshmallow import fields, validate

from ..domain.ids import DISTRICT_ID_PATTERN
from ..extensions import state
from ..reports import supervision as printable
from ..services.errors import Unavailable
from ..services.supervision import supervision_report, supervision_stream
from .auth import current_principal, require
from .common import Blueprint, StrictSchema, download
from .rectification import RectificationCountsSchema
from .result_schemas import COUNT, SCORE, Body, nullable, required

blp = Blueprint("supervision", __name__, url_prefix="/api/v1/rounds/<round_id>",
                description="Whole-process supervision: milestones, progress and warnings (督查督办)")

STATUS = validate.OneOf(("on_time", "late", "done", "overdue", "pending"))
REASON = validate.OneOf(("overdue_milestones", "communities_missing", "construction_below_pass",
                         "rectifications_overdue", "accepted_but_failing"))
DATE = validate.Regexp(r"^\d{4}-\d{2}-\d{2}$")
FORMATS = {
    "csv": ("text/csv", "csv"),
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
    "pdf": ("application/pdf", "pdf"),
}


class SupervisionQuerySchema(StrictSchema):
    as_of = fields.Date(metadata={"description": "the date t (China time); default: the round's progress_as_of, "
                                                 "today while open, else the day it closed"})
    district_id = fields.String(validate=validate.Regexp(DISTRICT_ID_PATTERN))
    format = fields.String(load_default="json", validate=validate.OneOf(("json", "csv", "xlsx", "pdf")))


class SupervisionVotesSchema(Body):
    eligible_households = required(fields.Integer, validate=COUNT)
    participants = required(fields.Integer, validate=COUNT)
    in_favour = required(fields.Integer, validate=COUNT)
    passed = required(fields.Boolean)


class MilestoneStateSchema(Body):
    deadline = nullable(fields.String, validate=DATE)
    reached_on = nullable(fields.String, validate=DATE)
    status = required(fields.String, validate=STATUS)
    days_late = fields.Integer(validate=COUNT)
    days_overdue = fields.Integer(validate=COUNT)
    votes = fields.Nested(SupervisionVotesSchema)
    management_mode = fields.String(validate=validate.OneOf(("property_company", "self_managed")))


class ReasonSchema(Body):
    code = required(fields.String, validate=REASON)
    communities = required(fields.List, fields.String())


class DistrictSupervisionSchema(Body):
    district_id = required(fields.String)
    name_zh = nullable(fields.String)
    quota = required(fields.Integer, validate=COUNT)
    communities = required(fields.Integer, validate=COUNT)
    progress = required(fields.Float, validate=SCORE)
    milestones_due = required(fields.Integer, validate=COUNT)
    on_time = required(fields.Integer, validate=COUNT)
    late = required(fields.Integer, validate=COUNT)
    overdue = required(fields.Integer, validate=COUNT)
    overdue_communities = required(fields.Integer, validate=COUNT)
    warning = required(fields.Boolean)
    reasons = required(fields.List, fields.Nested(ReasonSchema))
    rectifications = required(fields.Nested, RectificationCountsSchema)


class CommunitySupervisionSchema(Body):
    community_id = required(fields.String)
    name_zh = nullable(fields.String)
    district_id = required(fields.String)
    milestones = required(fields.Dict, keys=fields.String(), values=fields.Nested(MilestoneStateSchema))
    flags = required(fields.List, fields.String(validate=validate.OneOf(("accepted_but_failing",))))


class SupervisionSchema(Body):
    round_id = required(fields.String)
    round_title = nullable(fields.String)
    as_of = required(fields.String, validate=DATE)
    deadlines = required(fields.Dict, keys=fields.String(), values=fields.String(validate=DATE))
    progress_rule = required(fields.String, validate=validate.OneOf(("graded_share", "milestones")))
    districts = required(fields.List, fields.Nested(DistrictSupervisionSchema))
    communities = required(fields.List, fields.Nested(CommunitySupervisionSchema))


PRINTABLE = ma.Schema.from_dict({})  # the body of a CSV, XLSX or PDF download (documented by content type)


@blp.route("/supervision")
class Supervision(MethodView):
    @require("leadership", "admin", "district")
    @blp.arguments(SupervisionQuerySchema, location="query")
    @blp.response(200, SupervisionSchema)
    @blp.alt_response(200, schema=PRINTABLE, content_type=FORMATS["csv"][0], success=True,
                      description="?format=csv: the 督办通报 as CSV")
    @blp.alt_response(200, schema=PRINTABLE, content_type=FORMATS["xlsx"][0], success=True,
                      description="?format=xlsx: the 督办通报 as a workbook")
    @blp.alt_response(200, schema=PRINTABLE, content_type=FORMATS["pdf"][0], success=True,
                      description="?format=pdf: the printable 督办通报")
    def get(self, query, round_id):
        """Milestone progress of every district at a date, with the warnings (警示督办)."""
        fmt = query["format"]
        if fmt == "json":  # each community's row kept as JSON until it changes
            # in pieces made as they are sent: a national report is not held whole (its length stated)
            length, body = supervision_stream(state(), round_id, current_principal(), query.get("as_of"),
                                              query.get("district_id"))
            return Response(body, mimetype="application/json", headers={"Content-Length": str(length)})
        report = supervision_report(state(), round_id, current_principal(), query.get("as_of"),
                                    query.get("district_id"))
        mimetype, extension = FORMATS[fmt]
        if fmt == "pdf":
            try:
                body = printable.supervision_pdf(report, font_path=current_app.config.get("PDF_FONT"))
            except printable.PdfFontError as exc:
                raise Unavailable(str(exc)) from None
        else:
            body = (printable.supervision_csv if fmt == "csv" else printable.supervision_xlsx)(report)
        return download(body, mimetype, f"{round_id}-supervision-{report['as_of']}.{extension}",
                        f"{round_id}-督办通报-{report['as_of']}.{extension}")
