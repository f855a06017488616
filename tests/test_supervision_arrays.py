"""The array forms of the supervision rules (SPEC §11) against the scalar rules they stand for."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from scoring_service.domain import milestones as ms
from scoring_service.domain.supervision import (
    STATUSES,
    DistrictSupervision,
    community_progress,
    day_numbers,
    district_warnings,
    due_milestones,
    milestone_progress,
    milestone_status,
    milestone_status_arrays,
    progress_from_counts,
    warning_reasons,
)

START = date(2018, 3, 1)
days = st.integers(min_value=0, max_value=300)
maybe_date = st.one_of(st.none(), days.map(lambda n: START + timedelta(days=n)))
a_date = days.map(lambda n: START + timedelta(days=n))
credits = st.sampled_from(["0", "0.5", "0.25", "1", "0.3", "0.7"])


@given(st.lists(st.tuples(maybe_date, maybe_date), min_size=1, max_size=40), a_date)
def test_status_arrays_follow_milestone_status(pairs, t):
    status, extra = milestone_status_arrays(day_numbers([d for d, _ in pairs]), day_numbers([r for _, r in pairs]), t)
    for (deadline, reached), code, n in zip(pairs, status.tolist(), extra.tolist()):
        expected = milestone_status(deadline, reached, t)
        assert STATUSES[code] == expected.status
        assert n == (expected.days_late or expected.days_overdue or 0)
        assert (expected.days_late is not None) == (expected.status == "late")


@given(st.lists(maybe_date, min_size=len(ms.CODES), max_size=len(ms.CODES)),
       st.lists(st.lists(maybe_date, min_size=len(ms.CODES), max_size=len(ms.CODES)), min_size=1, max_size=8), a_date)
def test_status_arrays_of_communities_by_milestone(deadlines, rows, t):
    """One deadline per milestone broadcast over communities × milestones, as the report uses them."""
    status, _ = milestone_status_arrays(day_numbers(deadlines), [day_numbers(r) for r in rows], t)
    by_code = dict(zip(ms.CODES, deadlines))
    for row, codes in zip(rows, status.tolist()):
        expected = community_progress("c", "d", ms.CODES, {k: v for k, v in by_code.items() if v},
                                      dict(zip(ms.CODES, row)), t)
        assert [STATUSES[c] for c in codes] == [expected.statuses[code].status for code in ms.CODES]


@settings(max_examples=200)
@given(st.lists(maybe_date, min_size=len(ms.CODES), max_size=len(ms.CODES)),
       st.lists(st.lists(maybe_date, min_size=len(ms.CODES), max_size=len(ms.CODES)), max_size=6),
       st.integers(min_value=0, max_value=8), credits, a_date)
def test_progress_from_counts_is_milestone_progress(deadlines, rows, quota, credit, t):
    given_deadlines = {code: d for code, d in zip(ms.CODES, deadlines) if d}
    communities = [community_progress(f"c{i}", "d", ms.CODES, given_deadlines, dict(zip(ms.CODES, row)), t)
                   for i, row in enumerate(rows)]
    due = due_milestones(given_deadlines, ms.CODES, t)
    on_time = sum(c.statuses[code].status == "on_time" for c in communities for code in due)
    late = sum(c.statuses[code].status == "late" for c in communities for code in due)
    assert progress_from_counts(quota, on_time, late, len(due), credit) == milestone_progress(
        quota, communities, due, credit)


@given(st.integers(min_value=0, max_value=6), st.lists(st.booleans(), max_size=6), st.sampled_from(["0.2", "0.5", "0"]),
       maybe_date, a_date, st.sets(st.sampled_from(["c0", "c1", "c9"])))
def test_warning_reasons_are_district_warnings(quota, overdue, share, plan_deadline, t, failing):
    deadlines = {"plan_approved": START}
    rows = [community_progress(f"c{i}", "d", ["plan_approved"], deadlines,
                               {"plan_approved": None if late else START}, t + timedelta(days=1) if late else t)
            for i, late in enumerate(overdue)]
    district = DistrictSupervision("d", quota, rows, milestone_progress(quota, rows, [], "0.5"), [])
    assert warning_reasons(quota, len(rows), district.overdue_communities, share, plan_deadline, t,
                           accepted_but_failing=failing) == district_warnings(
        district, share, plan_deadline, t, accepted_but_failing=failing)
