"""Whole-process supervision (SPEC §11): statuses, milestone progress and warnings worked by hand."""

from __future__ import annotations

from datetime import date
from fractions import Fraction

import pytest

from scoring_service.domain.supervision import (
    DistrictSupervision,
    community_progress,
    district_warnings,
    due_milestones,
    milestone_progress,
    milestone_status,
)

CODES = ["plan_approved", "residents_voted", "works_started", "works_completed"]
DEADLINES = {"plan_approved": date(2018, 4, 30), "residents_voted": date(2018, 4, 30),
             "works_completed": date(2018, 8, 31)}  # works_started has none


@pytest.mark.parametrize("deadline, reached, t, expected", [
    (date(2018, 4, 30), date(2018, 4, 30), date(2018, 6, 1), ("on_time", None, None)),
    (date(2018, 4, 30), date(2018, 5, 3), date(2018, 6, 1), ("late", 3, None)),
    (None, date(2018, 5, 3), date(2018, 6, 1), ("done", None, None)),
    (date(2018, 4, 30), None, date(2018, 6, 1), ("overdue", None, 32)),
    (date(2018, 4, 30), None, date(2018, 4, 30), ("pending", None, None)),  # due on t: not yet overdue
    (None, None, date(2018, 6, 1), ("pending", None, None)),
    # reached after t: not reached at t
    (date(2018, 4, 30), date(2018, 6, 2), date(2018, 6, 1), ("overdue", None, 32)),
    (date(2018, 8, 31), date(2018, 6, 2), date(2018, 6, 1), ("pending", None, None)),
])
def test_milestone_status_at_a_date(deadline, reached, t, expected):
    s = milestone_status(deadline, reached, t)
    assert (s.status, s.days_late, s.days_overdue) == expected


def hand_worked_district(t: date, late_credit=0.5):
    """District with quota 3: c1 and c2 registered, the third planned community never registered.

    c1: plan on time, vote late (5 May). c2: plan late (10 May), no vote. Both: works started, nothing else.
    """
    c1 = community_progress("c1", "d", CODES, DEADLINES,
                            {"plan_approved": date(2018, 4, 20), "residents_voted": date(2018, 5, 5),
                             "works_started": date(2018, 5, 20)}, t)
    c2 = community_progress("c2", "d", CODES, DEADLINES, {"plan_approved": date(2018, 5, 10)}, t)
    due = due_milestones(DEADLINES, CODES, t)
    return [c1, c2], due, milestone_progress(3, [c1, c2], due, late_credit)


def test_milestone_progress_worked_by_hand():
    rows, due, g = hand_worked_district(date(2018, 6, 1))
    assert due == ["plan_approved", "residents_voted"]
    # s: c1 plan 1 + c1 vote 0.5 + c2 plan 0.5 + c2 vote 0 = 2; the unregistered community adds 0
    assert g == Fraction(100) * 2 / (3 * 2)
    assert round(float(g), 2) == 33.33
    assert rows[1].statuses["residents_voted"].days_overdue == 32


def test_late_credit_is_taken_at_its_written_value():
    _, _, g = hand_worked_district(date(2018, 6, 1), late_credit=0.3)
    assert g == Fraction(100) * (1 + Fraction(3, 10) * 2) / 6  # exactly 26.666…, not a binary 0.3
    _, _, g = hand_worked_district(date(2018, 6, 1), late_credit=0)
    assert g == Fraction(100, 6)


def test_progress_is_100_before_the_first_deadline_and_capped_at_100():
    rows, due, g = hand_worked_district(date(2018, 4, 15))
    assert due == [] and g == 100
    everything = community_progress("c", "d", CODES, DEADLINES, {c: date(2018, 4, 1) for c in CODES}, date(2018, 9, 1))
    assert milestone_progress(1, [everything, everything], ["plan_approved"], 0.5) == 100  # more than the quota


def test_warnings_worked_by_hand():
    t = date(2018, 6, 1)
    rows, due, g = hand_worked_district(t)
    district = DistrictSupervision("d", 3, rows, g, due)
    # one overdue community (c2) of quota 3: 1 ≥ 0.2 × 3 → warned; c1 and c2 registered < 3 after the plan deadline
    reasons = district_warnings(district, 0.2, DEADLINES["plan_approved"], t,
                                construction_below_pass=["c1"], accepted_but_failing=[])
    assert reasons == {"overdue_milestones": ["c2"], "communities_missing": [], "construction_below_pass": ["c1"]}
    # with warning_share 0.5 one overdue community of 3 is not enough (1 < 1.5)
    assert "overdue_milestones" not in district_warnings(district, 0.5, DEADLINES["plan_approved"], t)
    # before the plan deadline nothing is missing yet, and nothing is overdue
    early = date(2018, 4, 15)
    rows, due, g = hand_worked_district(early)
    assert district_warnings(DistrictSupervision("d", 3, rows, g, due), 0.2, DEADLINES["plan_approved"], early) == {}
