"""Response bodies of the leadership endpoints (SPEC §6), for the OpenAPI document only.

The views serve canonical JSON bytes (a published round's exactly as frozen), so
these schemas never serialise anything: flask-smorest passes the views' ``Response``
objects through untouched and uses the schemas to describe them. Every object is
closed (``additionalProperties: false``) and every field the services always write
is required, so schemathesis' response conformance check and
``tests/test_result_schemas.py`` notice a body that drifts from its description.
"""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from ..domain.ids import ID_PATTERN

SCORE = validate.Range(min=0, max=100)
SHARE = validate.Range(min=0, max=1)
RANK = validate.Range(min=1)
FEN = validate.Range(min=0)
COUNT = validate.Range(min=0)
PAIR = validate.Length(equal=2)
#: the flags of SPEC §5 (a veto names the critical check scored 0) and of an aftercare round (§15)
FLAG = validate.Regexp(r"^(pending_inspection|pending_survey|insufficient_sample|satisfaction_below_acceptance"
                       r"|backsliding|management_missing|veto:[A-Za-z0-9_.-]{1,64})$")
CHANGE = validate.Range(min=-100, max=100)
GRADE = validate.Regexp(r"^[a-z_]{1,32}$")


class Body(ma.Schema):
    """A closed JSON object: apispec documents ``unknown = RAISE`` as ``additionalProperties: false``."""

    class Meta:
        unknown = ma.RAISE
        ordered = True


def required(field_class, *args, **kwargs):
    return field_class(*args, required=True, **kwargs)


def nullable(field_class, *args, **kwargs):
    """Always present, possibly ``null``."""
    return field_class(*args, required=True, allow_none=True, **kwargs)


def nullable_object(schema, **kwargs):
    """A nested object or ``null``, documented as ``nullable`` + ``allOf: [$ref]``.

    ``allow_none=True`` would make apispec (OpenAPI 3.0) write ``anyOf: [$ref, {type: object, nullable: true}]``,
    whose second branch accepts any object at all; these schemas only document, so nothing is lost.
    """
    metadata = {"nullable": True, **kwargs.pop("metadata", {})}
    return fields.Nested(schema, metadata=metadata, **kwargs)


# ``baseline`` and ``change`` (SPEC §15): present in aftercare rounds only, null without a baseline
def baseline_field():
    return fields.Float(allow_none=True, validate=SCORE, metadata={
        "description": "aftercare rounds only: the composite in the latest published acceptance round "
                       "covering the community (null: none)"})


def change_field():
    return fields.Float(allow_none=True, validate=CHANGE, metadata={
        "description": "aftercare rounds only: composite − baseline (null without both)"})


def item_scores():
    """``{item code: score or null}`` over the community's applicable items."""
    return required(fields.Dict, keys=fields.String(validate=validate.Regexp(r"^[A-Za-z0-9_-]{1,64}$")),
                    values=fields.Float(allow_none=True, validate=SCORE))


# -- score breakdown -------------------------------------------------------------------------

class ProfessionalPartSchema(Body):
    score = nullable(fields.Float, validate=SCORE)
    items = item_scores()
    agencies = required(fields.List, fields.String(validate=validate.Regexp(ID_PATTERN)),
                        metadata={"description": "agencies whose latest inspection counts"})


class ResidentPartSchema(Body):
    score = nullable(fields.Float, validate=SCORE)
    items = item_scores()
    responses = required(fields.Integer, validate=COUNT, metadata={"description": "kept resident responses"})
    required_responses = required(fields.Integer, validate=COUNT)
    satisfaction_rate = nullable(fields.Float, validate=SHARE)
    satisfaction_ci95 = nullable(fields.List, fields.Float(validate=SHARE), validate=PAIR,
                                 metadata={"description": "95 % Wilson interval [low, high]"})


class PublicPartSchema(Body):
    score = nullable(fields.Float, validate=SCORE)
    items = item_scores()
    responses = required(fields.Integer, validate=validate.Range(min=1))


class ScoreBreakdownSchema(Body):
    round_id = required(fields.String)
    community_id = required(fields.String)
    name_zh = required(fields.String)
    district_id = required(fields.String)
    households = required(fields.Integer, validate=validate.Range(min=1))
    professional = required(fields.Nested, ProfessionalPartSchema)
    resident = required(fields.Nested, ResidentPartSchema)
    public = nullable_object(PublicPartSchema, required=True,
                             metadata={"description": "null without public responses"})
    composite = nullable(fields.Float, validate=SCORE)
    grade = nullable(fields.String, validate=GRADE)
    grade_zh = nullable(fields.String)
    flags = required(fields.List, fields.String(validate=FLAG))
    rank = nullable(fields.Integer, validate=RANK)
    rank_in_district = nullable(fields.Integer, validate=RANK)
    baseline = baseline_field()
    change = change_field()


# -- rankings ----------------------------------------------------------------------------------

class RankSpreadSchema(Body):
    """One row's Monte Carlo rank spread (``?uncertainty=1``)."""

    median_rank = required(fields.Float, validate=RANK)
    rank_interval_90 = required(fields.List, fields.Integer(validate=RANK), validate=PAIR)
    reward_share = required(fields.Float, validate=SHARE,
                            metadata={"description": "share of draws in which the row receives a reward"})


class UncertaintyAboutSchema(Body):
    draws = required(fields.Integer, validate=validate.Range(min=1))
    seed = required(fields.Integer, validate=validate.Range(min=0))
    method = required(fields.String)


def spread_field():
    return nullable_object(RankSpreadSchema,
                           metadata={"description": "only with ?uncertainty=1; null for a row without a spread"})


def about_field():
    return fields.Nested(UncertaintyAboutSchema, metadata={"description": "only with ?uncertainty=1"})


class CommunityRankingRowSchema(Body):
    community_id = required(fields.String)
    name_zh = required(fields.String)
    district_id = required(fields.String)
    composite = nullable(fields.Float, validate=SCORE)
    grade = nullable(fields.String, validate=GRADE)
    grade_zh = nullable(fields.String)
    rank = nullable(fields.Integer, validate=RANK)
    rank_in_district = nullable(fields.Integer, validate=RANK)
    flags = required(fields.List, fields.String(validate=FLAG))
    uncertainty = spread_field()
    baseline = baseline_field()
    change = change_field()


class CommunityRankingSchema(Body):
    round_id = required(fields.String)
    published = required(fields.Boolean)
    communities = required(fields.List, fields.Nested(CommunityRankingRowSchema),
                           metadata={"description": "ranked communities, best first"})
    unranked = required(fields.List, fields.Nested(CommunityRankingRowSchema),
                        metadata={"description": "communities without a composite yet, by id"})
    uncertainty = about_field()


class DistrictRankingRowSchema(Body):
    district_id = required(fields.String)
    name_zh = nullable(fields.String)
    rank = required(fields.Integer, validate=RANK)
    index = required(fields.Float, validate=SCORE, metadata={"description": "D = 0.7·quality + 0.3·progress"})
    quality = required(fields.Float, validate=SCORE)
    progress = required(fields.Float, validate=SCORE)
    quota = required(fields.Integer, validate=COUNT)
    graded = required(fields.Integer, validate=COUNT)
    grade_counts = required(fields.Dict, keys=fields.String(validate=GRADE), values=fields.Integer(validate=COUNT))
    share_good_or_better = required(fields.Float, validate=SHARE)
    uncertainty = spread_field()


class DistrictRankingSchema(Body):
    round_id = required(fields.String)
    published = required(fields.Boolean)
    snapshot_sha256 = fields.String(validate=validate.Regexp(r"^[0-9a-f]{64}$"),
                                    metadata={"description": "once published"})
    districts = required(fields.List, fields.Nested(DistrictRankingRowSchema))
    uncertainty = about_field()


# -- rewards -----------------------------------------------------------------------------------

class DistrictRewardSchema(Body):
    district_id = required(fields.String)
    name_zh = nullable(fields.String)
    amount_fen = required(fields.Integer, validate=FEN)


class CommunityRewardSchema(Body):
    community_id = required(fields.String)
    name_zh = required(fields.String)
    district_id = required(fields.String)
    grade = required(fields.String, validate=GRADE)
    amount_fen = required(fields.Integer, validate=FEN)


class RewardsSchema(Body):
    round_id = required(fields.String)
    published = required(fields.Boolean)
    pool_fen = required(fields.Integer, validate=FEN)
    district_pool_fen = required(fields.Integer, validate=FEN)
    community_pool_fen = required(fields.Integer, validate=FEN)
    districts = required(fields.List, fields.Nested(DistrictRewardSchema))
    communities = required(fields.List, fields.Nested(CommunityRewardSchema))
    unallocated_fen = required(fields.Integer, validate=FEN,
                               metadata={"description": "pools with no eligible receiver"})


# -- the published snapshot --------------------------------------------------------------------

class FrozenUncertaintySchema(Body):
    """Rank spreads computed once at publication, by id."""

    communities = required(fields.Dict, keys=fields.String(), values=fields.Nested(RankSpreadSchema))
    districts = required(fields.Dict, keys=fields.String(), values=fields.Nested(RankSpreadSchema))
    about = required(fields.Nested, UncertaintyAboutSchema)


class PublishedSnapshotSchema(Body):
    round_id = required(fields.String)
    rubric_id = required(fields.String)
    published_at = required(fields.String)
    scores = required(fields.Dict, keys=fields.String(), values=fields.Nested(ScoreBreakdownSchema),
                      metadata={"description": "score breakdown of every community of the round, by id"})
    community_ranking = required(fields.Nested, CommunityRankingSchema)
    district_ranking = required(fields.Nested, DistrictRankingSchema)
    rewards = required(fields.Nested, RewardsSchema)
    uncertainty = fields.Nested(FrozenUncertaintySchema,
                                metadata={"description": "rank intervals frozen at publication (fixed draws and seed)"})


# -- evidence ----------------------------------------------------------------------------------

class FunnelPointSchema(Body):
    community_id = required(fields.String)
    name_zh = required(fields.String)
    district_id = required(fields.String)
    answers = required(fields.Integer, validate=validate.Range(min=1))
    satisfaction_rate = required(fields.Float, validate=SHARE)
    limits95 = required(fields.List, fields.Float(validate=SHARE), validate=PAIR)
    limits998 = required(fields.List, fields.Float(validate=SHARE), validate=PAIR)
    outside95 = required(fields.Boolean)
    flag = nullable(fields.String, validate=validate.OneOf(
        ("satisfaction_outlier_low", "satisfaction_outlier_high", None)))


class FunnelSchema(Body):
    round_id = required(fields.String)
    city_rate = nullable(fields.Float, validate=SHARE)
    points = required(fields.List, fields.Nested(FunnelPointSchema))


class StraightLiningSchema(Body):
    response_id = required(fields.String)
    community_id = required(fields.String)
    level = required(fields.Integer, validate=validate.Range(min=1, max=5))
    answers = required(fields.Integer, validate=validate.Range(min=1))


class BurstSchema(Body):
    key_id = nullable(fields.String)
    community_id = required(fields.String)
    responses = required(fields.List, fields.String())
    limit_per_minute = required(fields.Integer, validate=validate.Range(min=1))


class DuplicatePairSchema(Body):
    community_id = required(fields.String)
    response_ids = required(fields.List, fields.String(), validate=PAIR)
    seconds_apart = required(fields.Integer, validate=COUNT)


class RepeatedDeviceSchema(Body):
    community_id = required(fields.String)
    device_id = required(fields.String)
    responses = required(fields.List, fields.String())
    limit = required(fields.Integer, validate=COUNT)


class AgencyBiasSchema(Body):
    agency_id = required(fields.String)
    mean_deviation = required(fields.Float)
    pairs = required(fields.Integer, validate=COUNT)
    t = required(fields.Float)
    direction = required(fields.String, validate=validate.OneOf(("lenient", "strict")))
    flagged = required(fields.Boolean)


class AnomaliesSchema(Body):
    round_id = required(fields.String)
    straight_lining = required(fields.List, fields.Nested(StraightLiningSchema))
    bursts = required(fields.List, fields.Nested(BurstSchema))
    duplicates = required(fields.List, fields.Nested(DuplicatePairSchema))
    repeated_devices = required(fields.List, fields.Nested(RepeatedDeviceSchema),
                                metadata={"description": "devices with more than `limit` survey-link responses "
                                                         "in a community (SPEC §14)"})
    agency_bias = required(fields.List, fields.Nested(AgencyBiasSchema))
    note = required(fields.String)


# -- CSV / XLSX exports ------------------------------------------------------------------------

CSV = "text/csv"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_BODY = {"type": "string", "description": "UTF-8 with BOM, Chinese headers"}
XLSX_BODY = {"type": "string", "format": "binary"}
EXPORTS = "JSON; with ?format=csv or ?format=xlsx the same table as a file with Chinese headers"
SNAPSHOT_HEADERS = {"X-Snapshot-SHA256": {"description": "SHA-256 of the body (hex)", "schema": {"type": "string"}}}
