"""Rubrics (SPEC §3–4): loading, validation and the derived arrays scoring needs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import marshmallow as ma
import numpy as np
from marshmallow import fields, validate

from .ids import ID_PATTERN

#: community flags an item may depend on (``applies_when``)
COMMUNITY_FLAGS = ("has_elevator", "heating_retrofit")


class CheckSchema(ma.Schema):
    code = fields.String(required=True, validate=validate.Regexp(ID_PATTERN))
    text_zh = fields.String(required=True, validate=validate.Length(min=1, max=500))
    text_en = fields.String(required=True, validate=validate.Length(min=1, max=500))
    max_points = fields.Float(required=True, validate=validate.Range(min=0, min_inclusive=False, max=1000))
    critical = fields.Boolean(load_default=False)


class ItemSchema(ma.Schema):
    code = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_-]{1,64}$"))
    name_zh = fields.String(required=True, validate=validate.Length(min=1, max=100))
    name_en = fields.String(required=True, validate=validate.Length(min=1, max=200))
    weight = fields.Float(required=True, validate=validate.Range(min=0, min_inclusive=False, max=1000))
    applies_when = fields.String(validate=validate.OneOf(COMMUNITY_FLAGS))
    question_zh = fields.String(required=True, validate=validate.Length(min=1, max=500))
    question_en = fields.String(required=True, validate=validate.Length(min=1, max=500))
    checks = fields.List(fields.Nested(CheckSchema), required=True, validate=validate.Length(min=1))

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


@dataclass(frozen=True)
class Grade:
    grade: str
    label_zh: str
    min: float


class Rubric:
    """A validated rubric; immutable once a round uses it."""

    def __init__(self, body: dict[str, Any]):
        self.body = body
        self.rubric_id: str = body["rubric_id"]
        self.items: list[dict] = body["items"]
        self.item_codes: list[str] = [i["code"] for i in self.items]
        self.likert_points: list[float] = list(body["likert_points"])
        self.source_weights: dict[str, float] = dict(body["source_weights"])
        self.district_weights: dict[str, float] = dict(body["district_weights"])
        self.grades: list[Grade] = [Grade(g["grade"], g["label_zh"], g["min"]) for g in body["grades"]]
        mr = body.get("min_responses") or {"share": 0.10, "min": 10, "max": 100}
        self.min_responses: tuple[float, int, int] = (mr["share"], int(mr["min"]), int(mr["max"]))
        self.acceptance_satisfaction_rate: float = body.get("acceptance_satisfaction_rate", 0.80)
        self.checks: dict[str, dict] = {c["code"]: {**c, "item": i["code"]} for i in self.items for c in i["checks"]}

    @classmethod
    def from_json(cls, data: Any) -> Rubric:
        """Validate ``data`` (raises ``marshmallow.ValidationError``) and build a rubric."""
        RubricSchema().load(data)  # validation only: the stored body keeps the author's text
        return cls(data)

    @classmethod
    def from_file(cls, path: str | Path) -> Rubric:
        with open(path, encoding="utf-8") as fh:
            return cls.from_json(json.load(fh))

    @cached_property
    def weights(self) -> np.ndarray:
        return np.array([float(i["weight"]) for i in self.items])

    @property
    def grade_labels(self) -> dict[str, str]:
        return {g.grade: g.label_zh for g in self.grades}

    @property
    def cap_grade(self) -> str:
        """The grade a sample or acceptance flag caps at: ``pass``, or the second lowest."""
        names = [g.grade for g in self.grades]
        return "pass" if "pass" in names else names[max(0, len(names) - 2)]

    @property
    def top_grades(self) -> list[str]:
        """Grades counted as 'good or better' (eligible for community rewards)."""
        names = [g.grade for g in self.grades]
        top = [g for g in ("excellent", "good") if g in names]
        return top or names[:2]

    @property
    def reward_multipliers(self) -> dict[str, int]:
        """Household multipliers of reward weights: ×3 for the best grade, ×2 for the next."""
        return {g: m for g, m in zip(self.top_grades, (3, 2))}

    @staticmethod
    def applies(item: dict, community: dict) -> bool:
        flag = item.get("applies_when")
        return True if not flag else bool(community.get(flag))
