"""The marshmallow schema of the rubric JSON (SPEC §4), and loading a rubric through it.

Kept apart from :mod:`.rubric`, so the scoring code that uses rubrics does not import marshmallow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from .ids import ID_PATTERN
from .rubric import COMMUNITY_FLAGS, Rubric


class CheckSchema(ma.Schema):
    code = fields.String(required=True, validate=validate.Regexp(ID_PATTERN))
    text_zh = fields.String(required=True, validate=validate.Length(min=1, max=500))
    text_en = fields.String(required=True, validate=validate.Length(min=1, max=500))
    max_points = fields.Float(required=True, validate=validate.Range(min=0, min_inclusive=False, max=1000))
    critical = fields.Boolean(load_default=False)


#: an item code (no dot: check codes are ``<item>.<name>``)
ITEM_CODE = r"^[A-Za-z0-9_-]{1,64}$"


def unique_codes(codes: list[str]) -> None:
    if len(set(codes)) != len(codes):
        raise ma.ValidationError("item codes must be unique")


class ItemSchema(ma.Schema):
    code = fields.String(required=True, validate=validate.Regexp(ITEM_CODE))
    name_zh = fields.String(required=True, validate=validate.Length(min=1, max=100))
    name_en = fields.String(required=True, validate=validate.Length(min=1, max=200))
    weight = fields.Float(required=True, validate=validate.Range(min=0, min_inclusive=False, max=1000))
    applies_when = fields.String(validate=validate.OneOf(COMMUNITY_FLAGS))
    question_zh = fields.String(required=True, validate=validate.Length(min=1, max=500))
    question_en = fields.String(required=True, validate=validate.Length(min=1, max=500))
    checks = fields.List(fields.Nested(CheckSchema), required=True, validate=validate.Length(min=1))
    #: {rubric_id: [item codes]}: the items of an earlier rubric this item continues, so an aftercare
    #: round can say which items fell since acceptance (SPEC §15 前治后乱); checked against the stored
    #: rubrics when the rubric is stored
    compares_to = fields.Dict(
        keys=fields.String(validate=validate.Regexp(ID_PATTERN)),
        values=fields.List(fields.String(validate=validate.Regexp(ITEM_CODE)),
                           validate=[validate.Length(min=1, max=100), unique_codes]),
        validate=validate.Length(min=1, max=10))

    @ma.validates_schema
    def check_prefixes(self, data, **kwargs):
        for check in data.get("checks", []):
            if not check["code"].startswith(data["code"] + "."):
                raise ma.ValidationError(
                    f"check code {check['code']!r} must start with {data['code'] + '.'!r}", "checks"
                )


class GradeSchema(ma.Schema):
    grade = fields.String(required=True, validate=validate.Regexp(r"^[a-z_]{1,32}$"))
    label_zh = fields.String(required=True, validate=validate.Length(min=1, max=20))
    min = fields.Float(required=True, validate=validate.Range(min=0, max=100))


class SourceWeightsSchema(ma.Schema):
    professional = fields.Float(required=True, validate=validate.Range(min=0, max=1))
    resident = fields.Float(required=True, validate=validate.Range(min=0, max=1))
    public = fields.Float(required=True, validate=validate.Range(min=0, max=1))


class DistrictWeightsSchema(ma.Schema):
    quality = fields.Float(required=True, validate=validate.Range(min=0, max=1))
    progress = fields.Float(required=True, validate=validate.Range(min=0, max=1))


class MinResponsesSchema(ma.Schema):
    share = fields.Float(required=True, validate=validate.Range(min=0, max=1))
    min = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))
    max = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))


class RubricSchema(ma.Schema):
    """The rubric JSON of SPEC §4, with its cross-field rules."""

    rubric_id = fields.String(required=True, validate=validate.Regexp(ID_PATTERN))
    title_zh = fields.String(required=True, validate=validate.Length(min=1, max=200))
    title_en = fields.String(required=True, validate=validate.Length(min=1, max=300))
    likert_points = fields.List(
        fields.Float(validate=validate.Range(min=0, max=100)), required=True, validate=validate.Length(equal=5)
    )
    source_weights = fields.Nested(SourceWeightsSchema, required=True)
    grades = fields.List(fields.Nested(GradeSchema), required=True, validate=validate.Length(min=1))
    district_weights = fields.Nested(DistrictWeightsSchema, required=True)
    min_responses = fields.Nested(MinResponsesSchema, load_default=lambda: {"share": 0.10, "min": 10, "max": 100})
    acceptance_satisfaction_rate = fields.Float(load_default=0.80, validate=validate.Range(min=0, max=1))
    overall_question_zh = fields.String(validate=validate.Length(min=1, max=500))
    overall_question_en = fields.String(validate=validate.Length(min=1, max=500))
    items = fields.List(fields.Nested(ItemSchema), required=True, validate=validate.Length(min=1, max=100))

    @ma.validates_schema
    def cross_field_rules(self, data, **kwargs):
        errors: dict[str, list[str]] = {}
        items = data.get("items") or []
        item_codes = [i["code"] for i in items]
        if len(set(item_codes)) != len(item_codes):
            errors.setdefault("items", []).append("item codes must be unique")
        check_codes = [c["code"] for i in items for c in i.get("checks", [])]
        if len(set(check_codes)) != len(check_codes):
            errors.setdefault("items", []).append("check codes must be unique")
        sw = data.get("source_weights")
        if sw and abs(sum(sw.values()) - 1.0) > 1e-9:
            errors.setdefault("source_weights", []).append("source weights must sum to 1")
        dw = data.get("district_weights")
        if dw and abs(sum(dw.values()) - 1.0) > 1e-9:
            errors.setdefault("district_weights", []).append("district weights must sum to 1")
        grades = data.get("grades") or []
        mins = [g["min"] for g in grades]
        if any(a <= b for a, b in zip(mins, mins[1:])):
            errors.setdefault("grades", []).append("grade thresholds must be strictly descending")
        if grades and mins[-1] != 0:
            errors.setdefault("grades", []).append("the lowest grade must start at 0")
        names = [g["grade"] for g in grades]
        if len(set(names)) != len(names):
            errors.setdefault("grades", []).append("grade names must be unique")
        mr = data.get("min_responses")
        if mr and mr["min"] > mr["max"]:
            errors.setdefault("min_responses", []).append("min must not exceed max")
        if errors:
            raise ma.ValidationError(errors)


def load_rubric(data: Any) -> Rubric:
    """Validate ``data`` (raises ``marshmallow.ValidationError``) and build a rubric."""
    RubricSchema().load(data)  # validation only: the stored body keeps the author's text
    return Rubric(data)


def load_rubric_file(path: str | Path) -> Rubric:
    with open(path, encoding="utf-8") as fh:
        return load_rubric(json.load(fh))
