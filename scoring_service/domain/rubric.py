"""Rubrics (SPEC §3–4): a validated rubric and the derived arrays scoring needs.

Validation and loading from JSON live in :mod:`.rubric_schema` (marshmallow).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

#: community flags an item may depend on (``applies_when``)
COMMUNITY_FLAGS = ("has_elevator", "heating_retrofit")


@dataclass(frozen=True)
class Grade:
    grade: str
    label_zh: str
    min: float


class Rubric:
    """A validated rubric (see :func:`.rubric_schema.load_rubric`); immutable once a round uses it."""

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

    def grade_minimum(self, grade: str) -> float:
        """The threshold of ``grade`` (e.g. ``pass`` ≥ 60)."""
        return next(g.min for g in self.grades if g.grade == grade)

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
