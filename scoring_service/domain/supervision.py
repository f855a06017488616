"""Whole-process supervision (SPEC §11): milestone status at a date, milestone progress G(d), warnings.

Pure functions over plain values; dates are :class:`datetime.date` in China time. Progress is
computed with exact fractions (``late_credit`` and ``warning_share`` are decimals such as 0.5 and
0.2, taken at their written value) and turned into a float once, at the end.

>>> from datetime import date
>>> milestone_status(date(2018, 4, 30), date(2018, 5, 3), date(2018, 6, 1))
MilestoneStatus(status='late', days_late=3, days_overdue=None)
>>> milestone_status(date(2018, 4, 30), None, date(2018, 6, 1))
MilestoneStatus(status='overdue', days_late=None, days_overdue=32)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction

import numpy as np

#: warning reasons, in the order a report lists them
WARNING_REASONS = ("overdue_milestones", "communities_missing", "construction_below_pass",
                   "rectifications_overdue", "accepted_but_failing")


def exact(value: float | int | str) -> Fraction:
    """A setting such as 0.2 as the decimal it was written as (not the binary float's value)."""
    return Fraction(str(value))


@dataclass(frozen=True)
class MilestoneStatus:
    status: str  # on_time | late | done | overdue | pending
    days_late: int | None = None
    days_overdue: int | None = None


def milestone_status(deadline: date | None, reached: date | None, t: date) -> MilestoneStatus:
    """Status at ``t`` of a milestone with ``deadline`` (None: no deadline) reached on ``reached``
    (None: not reached, withdrawn, a failed vote, or reached only after ``t``)."""
    if reached is not None and reached > t:
        reached = None  # not yet seen at t
    if reached is not None:
        if deadline is None:
            return MilestoneStatus("done")
        if reached <= deadline:
            return MilestoneStatus("on_time")
        return MilestoneStatus("late", days_late=(reached - deadline).days)
    if deadline is not None and deadline < t:
        return MilestoneStatus("overdue", days_overdue=(t - deadline).days)
    return MilestoneStatus("pending")


#: the statuses, in the order of their codes in :func:`milestone_status_arrays`
STATUSES = ("on_time", "late", "done", "overdue", "pending")
ON_TIME, LATE, DONE, OVERDUE, PENDING = range(len(STATUSES))
#: "no date" in day-number arrays (day numbers are ``date.toordinal()``, never 0)
NO_DATE = 0


def day_numbers(dates: Sequence[date | None]) -> np.ndarray:
    """Dates as day numbers (``date.toordinal()``), None as :data:`NO_DATE`."""
    return np.array([d.toordinal() if d is not None else NO_DATE for d in dates], dtype=np.int64)


def milestone_status_arrays(deadlines: np.ndarray, reached: np.ndarray, t: date) -> tuple[np.ndarray, np.ndarray]:
    """:func:`milestone_status` of many milestones at once, the same rules.

    ``deadlines`` are day numbers broadcastable to ``reached`` (e.g. one per milestone code),
    ``reached`` the day numbers of effective reach dates; :data:`NO_DATE` for none. Returns the
    status codes (indexes into :data:`STATUSES`) and the days: ``days_late`` where late,
    ``days_overdue`` where overdue, 0 elsewhere.
    """
    day = t.toordinal()
    reached = np.asarray(reached, dtype=np.int64)
    reached = np.where(reached > day, NO_DATE, reached)  # not yet seen at t
    deadlines = np.broadcast_to(np.asarray(deadlines, dtype=np.int64), reached.shape)
    has_reached, has_deadline = reached != NO_DATE, deadlines != NO_DATE
    late = has_reached & has_deadline & (reached > deadlines)
    overdue = ~has_reached & has_deadline & (deadlines < day)
    status = np.full(reached.shape, PENDING, dtype=np.int8)
    status[has_reached & ~has_deadline] = DONE
    status[has_reached & has_deadline & (reached <= deadlines)] = ON_TIME
    status[late] = LATE
    status[overdue] = OVERDUE
    days = np.where(late, reached - deadlines, np.where(overdue, day - deadlines, 0))
    return status, days


def due_milestones(deadlines: Mapping[str, date], codes: Sequence[str], t: date) -> list[str]:
    """M_due: the milestones whose deadline lies before ``t``, in milestone order."""
    return [code for code in codes if code in deadlines and deadlines[code] < t]


@dataclass
class CommunityProgress:
    """Milestone statuses of one covered community at ``t``."""

    community_id: str
    district_id: str
    statuses: dict[str, MilestoneStatus]

    def count(self, status: str) -> int:
        return sum(s.status == status for s in self.statuses.values())

    @property
    def overdue(self) -> bool:
        return any(s.status == "overdue" for s in self.statuses.values())


def community_progress(community_id: str, district_id: str, codes: Sequence[str], deadlines: Mapping[str, date],
                       reached: Mapping[str, date | None], t: date) -> CommunityProgress:
    """Every milestone's status for one community; ``reached`` maps a code to its effective reach date."""
    return CommunityProgress(community_id, district_id,
                             {code: milestone_status(deadlines.get(code), reached.get(code), t) for code in codes})


def milestone_progress(quota: int, communities: Iterable[CommunityProgress], due: Sequence[str],
                       late_credit: float | str) -> Fraction:
    """G(d) = 100 × min(1, Σ s(c, m) / (quota × |M_due|)) as an exact fraction; 100 when nothing is due.

    s = 1 for on_time, ``late_credit`` for late, 0 otherwise. A planned community that was never
    registered counts as 0 through the quota.

    >>> from datetime import date
    >>> c = community_progress("c1", "d", ["a", "b"], {"a": date(2018, 4, 30), "b": date(2018, 4, 30)},
    ...                        {"a": date(2018, 4, 1), "b": date(2018, 5, 1)}, date(2018, 6, 1))
    >>> milestone_progress(2, [c], ["a", "b"], 0.5)
    Fraction(75, 2)
    """
    if not due:
        return Fraction(100)
    credit = exact(late_credit)
    score = Fraction(0)
    for c in communities:
        for code in due:
            status = c.statuses[code].status
            score += 1 if status == "on_time" else credit if status == "late" else 0
    return 100 * min(Fraction(1), score / (max(int(quota), 1) * len(due)))


def progress_from_counts(quota: int, on_time: int, late: int, n_due: int, late_credit: float | str) -> Fraction:
    """G(d) from the numbers of ``on_time`` and ``late`` (community, milestone) pairs over the ``n_due``
    milestones of M_due: the value of :func:`milestone_progress`, without the pairs.

    >>> progress_from_counts(2, 1, 1, 2, 0.5)
    Fraction(75, 2)
    """
    if not n_due:
        return Fraction(100)
    score = int(on_time) + exact(late_credit) * int(late)
    return 100 * min(Fraction(1), score / (max(int(quota), 1) * int(n_due)))


@dataclass
class DistrictSupervision:
    """One district's row of the supervision report before it is shaped as JSON."""

    district_id: str
    quota: int
    communities: list[CommunityProgress]
    progress: Fraction
    due: list[str]
    reasons: dict[str, list[str]] = field(default_factory=dict)

    def pairs(self, status: str) -> int:
        return sum(c.count(status) for c in self.communities)

    @property
    def overdue_communities(self) -> list[str]:
        return sorted(c.community_id for c in self.communities if c.overdue)


def district_warnings(district: DistrictSupervision, warning_share: float | str, plan_deadline: date | None,
                      t: date, construction_below_pass: Iterable[str] = (), rectifications_overdue: Iterable[str] = (),
                      accepted_but_failing: Iterable[str] = ()) -> dict[str, list[str]]:
    """The warning reasons of a district at ``t``, each with the communities it concerns (sorted).

    ``overdue_milestones`` needs at least one overdue community and at least ``warning_share × quota``
    of them; ``communities_missing`` applies once the ``plan_approved`` deadline has passed.
    """
    return warning_reasons(district.quota, len(district.communities), district.overdue_communities, warning_share,
                           plan_deadline, t, construction_below_pass, rectifications_overdue, accepted_but_failing)


def warning_reasons(quota: int, registered: int, overdue_communities: Sequence[str], warning_share: float | str,
                    plan_deadline: date | None, t: date, construction_below_pass: Iterable[str] = (),
                    rectifications_overdue: Iterable[str] = (),
                    accepted_but_failing: Iterable[str] = ()) -> dict[str, list[str]]:
    """:func:`district_warnings` from plain values: the district's quota, how many covered communities
    it has registered and which of them (sorted) have an overdue milestone."""
    reasons: dict[str, list[str]] = {}
    overdue = list(overdue_communities)
    if overdue and len(overdue) >= exact(warning_share) * quota:
        reasons["overdue_milestones"] = overdue
    if registered < quota and plan_deadline is not None and plan_deadline < t:
        reasons["communities_missing"] = []
    for code, ids in (("construction_below_pass", construction_below_pass),
                      ("rectifications_overdue", rectifications_overdue),
                      ("accepted_but_failing", accepted_but_failing)):
        ids = sorted(set(ids))
        if ids:
            reasons[code] = ids
    return {code: reasons[code] for code in WARNING_REASONS if code in reasons}
