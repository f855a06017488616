"""Pure scoring mathematics of SPEC §5.

Functions here take numpy arrays (or plain Python numbers) and return arrays or
named results. They know nothing about Flask, HTTP or storage, so the same
code scores a live round, a published snapshot, a benchmark or a property test.
"""

from .engine import (
    CommunityInputs,
    CommunityScores,
    InspectionInputs,
    SurveyCounts,
    score_communities,
)
from .ranking import competition_rank, ranking_order
from .rewards import largest_remainder
from .rounding import round_score, round_rate
from .stats import required_responses, wilson_interval

__all__ = [
    "CommunityInputs",
    "CommunityScores",
    "InspectionInputs",
    "SurveyCounts",
    "competition_rank",
    "largest_remainder",
    "ranking_order",
    "required_responses",
    "round_rate",
    "round_score",
    "score_communities",
    "wilson_interval",
]
