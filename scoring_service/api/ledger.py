"""Funding ledger (SPEC §12): funding records, disbursements and the round's ledger (资金台账)."""

from __future__ import annotations

from flask import Response
from flask.views import MethodView
from marshmallow import fields, validate

from ..domain import ledger as lg
from ..domain.ids import DISTRICT_ID_PATTERN, ID_PATTERN
from ..extensions import state
from ..reports import ledger as sheets
from ..services import ledger
from ..services.rounds import get_round
from ..store import Outcome
from .auth import current_principal, require
from .common import Blueprint, StrictSchema, download, note_audit, same_id
from .result_schemas import COUNT, CSV, CSV_BODY, XLSX, XLSX_BODY, Body, nullable, required

blp = Blueprint("ledger", __name__, url_prefix="/api/v1/rounds/<round_id>",
                description="Funding ledger: the city's 1:1 subsidy in 30 %/50 %/20 % tranches (资金台账)")

FEN = validate.Range(min=0, max=10**15)
DATE = validate.Regexp(r"^\d{4}-\d{2}-\d{2}$")
STATUS = validate.OneOf(lg.STATUSES)
MILESTONE = validate.OneOf(tuple(t.milestone for t in lg.TRANCHES))
LAND = validate.OneOf(lg.LAND_CATEGORIES)


# -- funding records ---------------------------------------------------------------------

class FundingInSchema(StrictSchema):
    community_id = fields.String(validate=validate.Regexp(ID_PATTERN),
                                 metadata={"description": "optional; must equal the path's"})
    land_category = fields.String(required=True, validate=LAND,
                                  metadata={"description": "non_independent (原土地非独立操作区): 1:1 city subsidy; "
                                                           "independent: none"})
    approved_budget_fen = fields.Integer(required=True, strict=True, validate=FEN)
    settled_budget_fen = fields.Integer(strict=True, allow_none=True, validate=FEN,
                                        metadata={"description": "the settled (audited) cost, once known"})
    district_funds_in_place_fen = fields.Integer(required=True, strict=True, validate=FEN,
                                                 metadata={"description": "the district's money in place; the only "
                                                                          "field a district key may change"})


class FundingVersionSchema(Body):
    version = required(fields.Integer, validate=validate.Range(min=1))
    land_category = required(fields.String, validate=LAND)
    approved_budget_fen = required(fields.Integer, validate=FEN)
    settled_budget_fen = nullable(fields.Integer, validate=FEN)
    district_funds_in_place_fen = required(fields.Integer, validate=FEN)
    key_id = nullable(fields.String)
    recorded_at = required(fields.String)


class FundingSchema(FundingVersionSchema):
    round_id = required(fields.String)
    community_id = required(fields.String)
    history = required(fields.List, fields.Nested(FundingVersionSchema),
                       metadata={"description": "every version, oldest first"})


@blp.route("/communities/<community_id>/funding")
class Funding(MethodView):
    @require("admin", "leadership", "district")
    @blp.response(200, FundingSchema)
    def get(self, round_id, community_id):
        """The community's current funding record with every version (oldest first)."""
        return ledger.get_funding(state(), round_id, community_id, current_principal())

    @require("admin", "district")
    @blp.arguments(FundingInSchema)
    @blp.response(200, FundingSchema)
    @blp.alt_response(201, schema=FundingSchema, description="first funding record of the community")
    def put(self, data, round_id, community_id):
        """Replace the community's funding record (every version is kept). An admin sets every field; the
        district key of the community's district may change only ``district_funds_in_place_fen`` (403
        otherwise). Once a tranche is paid the land category is final, once tranche 3 is paid the budgets
        too (409 ``already_paid``). An identical replay answers 200 without a new version."""
        same_id(data, "community_id", community_id)
        data.pop("community_id")
        outcome, view = ledger.put_funding(state(), round_id, community_id, data, current_principal())
        created = outcome is Outcome.CREATED
        first = created and view["version"] == 1
        note_audit("funding", community_id, "created" if first else "replaced" if created else outcome.value)
        return view, 201 if first else 200


# -- disbursements -----------------------------------------------------------------------

class DisbursementInSchema(StrictSchema):
    disbursement_id = fields.UUID(required=True, metadata={"description": "client-chosen; the idempotency key"})
    tranche = fields.Integer(required=True, strict=True, validate=validate.OneOf((1, 2, 3)))
    amount_fen = fields.Integer(required=True, strict=True, validate=validate.Range(min=-10**15, max=10**15),
                                metadata={"description": "must equal the computed amount (negative: a refund "
                                                         "received for tranche 3)"})
    paid_on = fields.Date(required=True, metadata={"description": "China time; not after today, not before the "
                                                                  "tranche's milestone"})
    voucher = fields.String(allow_none=True, validate=validate.Length(max=64))


class DisbursementSchema(Body):
    disbursement_id = required(fields.String)
    round_id = required(fields.String)
    community_id = required(fields.String)
    tranche = required(fields.Integer, validate=validate.OneOf((1, 2, 3)))
    milestone = required(fields.String, validate=MILESTONE)
    amount_fen = required(fields.Integer)
    paid_on = required(fields.String, validate=DATE)
    voucher = nullable(fields.String)
    key_id = nullable(fields.String)
    recorded_at = required(fields.String)


@blp.route("/communities/<community_id>/disbursements")
class Disbursements(MethodView):
    @require("admin")
    @blp.arguments(DisbursementInSchema)
    @blp.response(201, DisbursementSchema)
    @blp.alt_response(200, schema=DisbursementSchema, description="identical replay")
    def post(self, data, round_id, community_id):
        """Record a tranche paid (judged at today's date). 409 ``conflict`` (same id, other content),
        ``tranche_not_due`` (not due, held or not applicable: the message says why), ``already_paid``;
        422 naming ``amount_fen`` with the computed amount when it differs."""
        outcome, view = ledger.record_disbursement(state(), round_id, community_id, data, current_principal())
        note_audit("disbursement", view["disbursement_id"], outcome.value, community_id=community_id,
                   tranche=view["tranche"], amount_fen=view["amount_fen"])
        return view, 201 if outcome is Outcome.CREATED else 200


# -- the ledger --------------------------------------------------------------------------

class LedgerQuerySchema(StrictSchema):
    as_of = fields.Date(metadata={"description": "the date t (China time); default: the round's progress_as_of, "
                                                 "today while open, else the day it closed"})
    district_id = fields.String(validate=validate.Regexp(DISTRICT_ID_PATTERN))
    format = fields.String(load_default="json", validate=validate.OneOf(("json", "csv", "xlsx")))


class TotalsSchema(Body):
    subsidy_fen = required(fields.Integer, validate=COUNT)
    paid_fen = required(fields.Integer, metadata={"description": "a refund received counts negative"})
    due_fen = required(fields.Integer, validate=COUNT)
    held_fen = required(fields.Integer, validate=COUNT)
    refund_due_fen = required(fields.Integer, validate=COUNT)


class DistrictLedgerSchema(TotalsSchema):
    district_id = required(fields.String)
    name_zh = nullable(fields.String)


class TrancheSchema(Body):
    tranche = required(fields.Integer, validate=validate.OneOf((1, 2, 3)))
    milestone = required(fields.String, validate=MILESTONE)
    amount_fen = nullable(fields.Integer, metadata={"description": "null without a funding record; 0 when not "
                                                                   "applicable; tranche 3 may be negative (refund)"})
    status = required(fields.String, validate=STATUS)
    reasons = required(fields.List, fields.String(validate=validate.OneOf(lg.HOLD_REASONS)),
                       metadata={"description": "why it is held (empty otherwise)"})
    paid_on = fields.String(validate=DATE, metadata={"description": "paid tranches only"})
    disbursement_id = fields.String(metadata={"description": "paid tranches only"})
    voucher = fields.String(allow_none=True, metadata={"description": "paid tranches only: the payment voucher "
                                                                      "(拨付凭证号), null when none was given"})


class CommunityLedgerSchema(Body):
    community_id = required(fields.String)
    district_id = required(fields.String)
    land_category = nullable(fields.String, validate=LAND)
    approved_budget_fen = nullable(fields.Integer, validate=FEN)
    settled_budget_fen = nullable(fields.Integer, validate=FEN)
    district_funds_in_place_fen = nullable(fields.Integer, validate=FEN)
    subsidy_fen = nullable(fields.Integer, validate=COUNT, metadata={"description": "S_final once settled, else S"})
    tranches = required(fields.List, fields.Nested(TrancheSchema), validate=validate.Length(equal=3))


class LedgerSchema(Body):
    round_id = required(fields.String)
    as_of = required(fields.String, validate=DATE)
    city_budget_fen = nullable(fields.Integer, validate=COUNT)
    reward_pool_fen = required(fields.Integer, validate=COUNT)
    committed_subsidy_fen = required(fields.Integer, validate=COUNT,
                                     metadata={"description": "Σ subsidy_fen over the whole round"})
    uncommitted_fen = nullable(fields.Integer, metadata={"description": "city budget − committed − reward pool; "
                                                                        "null without a city budget"})
    over_committed = required(fields.Boolean)
    totals = required(fields.Nested, TotalsSchema)
    districts = required(fields.List, fields.Nested(DistrictLedgerSchema))
    communities = required(fields.List, fields.Nested(CommunityLedgerSchema))


EXPORT_NAMES = {"csv": ("text/csv", "csv"), "xlsx": (XLSX, "xlsx")}


@blp.route("/ledger")
class Ledger(MethodView):
    @require("leadership", "admin", "district")
    @blp.arguments(LedgerQuerySchema, location="query")
    @blp.response(200, LedgerSchema)
    @blp.alt_response(200, schema=CSV_BODY, content_type=CSV, success=True,
                      description="?format=csv: the 资金台账 as CSV (yuan with two decimals)")
    @blp.alt_response(200, schema=XLSX_BODY, content_type=XLSX, success=True,
                      description="?format=xlsx: the 资金台账 as a workbook (yuan with two decimals)")
    def get(self, query, round_id):
        """The funding ledger at a date: every covered community's subsidy and tranches, the district and
        city totals, and the city budget's commitment. A district key reads its own district only."""
        principal = current_principal()
        fmt = query["format"]
        if fmt == "json":  # each community's row kept as JSON until it changes
            # in pieces made as they are sent: a national ledger is not joined into one more copy (its length stated)
            length, body = ledger.ledger_stream(state(), round_id, principal, query.get("as_of"),
                                                query.get("district_id"))
            return Response(body, mimetype="application/json", headers={"Content-Length": str(length)})
        report = ledger.ledger_report(state(), round_id, principal, query.get("as_of"), query.get("district_id"))
        district_id = principal.district_id if principal.role == "district" else query.get("district_id")
        names = ledger.ledger_names(state(), report)
        title = get_round(state(), round_id).get("title")
        build = sheets.ledger_csv if fmt == "csv" else sheets.ledger_xlsx
        body = build(report, names, title, district_id)
        mimetype, extension = EXPORT_NAMES[fmt]
        return download(body, mimetype, f"{round_id}-ledger-{report['as_of']}.{extension}",
                        f"{round_id}-资金台账-{report['as_of']}.{extension}")

