"""Milestones of a covered community in a round (SPEC §11): the nine codes, their order, the
residents' vote, and a round's supervision settings. Pure rules: no I/O.

Dates are ``YYYY-MM-DD`` strings (China time); ISO dates compare correctly as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from .canonical import digest


@dataclass(frozen=True)
class Milestone:
    code: str
    name_zh: str
    #: the deadline of the city's 2018 notice (None: the notice sets none)
    deadline_2018: str | None = None
    #: what the record carries besides its date: "votes", "management_mode" or None
    carries: str | None = None


#: the milestones of a community's works, in order
MILESTONES = (
    Milestone("plan_approved", "设计和施工方案经区政府审定", "2018-04-30"),
    Milestone("residents_voted", "改造方案公示，居民投票表决通过", "2018-04-30", "votes"),
    Milestone("illegal_structures_cleared", "违建拆除完成（先拆违后改造）", "2018-04-30"),
    Milestone("contract_signed", "签订施工合同", "2018-04-30"),
    Milestone("works_started", "开工"),
    Milestone("works_completed", "工程竣工", "2018-08-31"),
    Milestone("accepted", "民意验收和专业验收完成", "2018-09-30"),
    Milestone("management_assigned", "后续管理落实", "2018-09-30", "management_mode"),
    Milestone("settled", "工程结算审核完成"),
)
CODES = tuple(m.code for m in MILESTONES)
BY_CODE = {m.code: m for m in MILESTONES}
#: the 2018 notice's deadlines, for the ``shenyang-2018`` round
DEADLINES_2018 = {m.code: m.deadline_2018 for m in MILESTONES if m.deadline_2018}

#: (later, earlier): the later milestone is reached on or after the earlier one
#: (先设计后施工, 先拆违后改造)
ORDER_RULES = (
    ("contract_signed", "plan_approved"),
    ("contract_signed", "residents_voted"),
    ("works_started", "contract_signed"),
    ("works_started", "illegal_structures_cleared"),
    ("works_completed", "works_started"),
    ("accepted", "works_completed"),
    ("settled", "accepted"),
)


def _closure(rules) -> dict[str, frozenset[str]]:
    """Every milestone that must come on or before each milestone (the rules, transitively)."""
    before: dict[str, set[str]] = {code: set() for code in CODES}
    changed = True
    for later, earlier in rules:
        before[later].add(earlier)
    while changed:
        changed = False
        for code in CODES:
            grown = before[code].union(*(before[e] for e in before[code]))
            if grown != before[code]:
                before[code], changed = grown, True
    return {code: frozenset(v) for code, v in before.items()}


#: code → the codes that must be reached on or before it. Transitive, so a record that would
#: leave no date possible for a milestone not yet recorded between two others is refused too
#: (``works_started`` before ``plan_approved`` while ``contract_signed`` is missing).
MUST_PRECEDE = _closure(ORDER_RULES)

MANAGEMENT_MODES = ("property_company", "self_managed")
MANAGEMENT_MODE_NAMES = {"property_company": "物业管理", "self_managed": "自治管理"}
PROGRESS_RULES = ("graded_share", "milestones")
VOTE_FIELDS = ("eligible_households", "participants", "in_favour")


# -- a round's settings ------------------------------------------------------------

@dataclass(frozen=True)
class RoundSettings:
    """The supervision fields of a round, with their defaults when the round has none (SPEC §11)."""

    #: code → deadline (only codes with one)
    deadlines: dict[str, date] = field(default_factory=dict)
    progress_rule: str = "graded_share"
    late_credit: float = 0.5
    warning_share: float = 0.2
    progress_as_of: date | None = None

    def deadline_text(self, code: str) -> str | None:
        deadline = self.deadlines.get(code)
        return deadline.isoformat() if deadline else None


#: the round fields of §11 (a round stores only those it was given)
ROUND_FIELDS = ("milestone_deadlines", "progress_rule", "late_credit", "warning_share", "progress_as_of")


def round_settings(round_: Mapping[str, Any]) -> RoundSettings:
    """A round's supervision settings; absent fields take their defaults."""
    given: dict[str, Any] = {name: round_[name] for name in ("progress_rule", "late_credit", "warning_share")
                             if round_.get(name) is not None}
    if round_.get("milestone_deadlines"):
        stored = round_["milestone_deadlines"]
        given["deadlines"] = {code: date.fromisoformat(stored[code]) for code in CODES if code in stored}
    if round_.get("progress_as_of"):
        given["progress_as_of"] = date.fromisoformat(round_["progress_as_of"])
    return RoundSettings(**given)


def stored_round_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The §11 fields of validated round input as stored: only those given, dates as ISO text,
    deadlines in milestone order. Absent fields stay absent, so a round created without them
    has the same content (and digest) as before they existed."""
    out: dict[str, Any] = {}
    for name in ROUND_FIELDS:
        if name not in data or data[name] is None:
            continue
        value = data[name]
        if name == "milestone_deadlines":
            value = {code: _iso(value[code]) for code in CODES if code in value}
        elif name == "progress_as_of":
            value = _iso(value)
        elif name in ("late_credit", "warning_share"):
            value = float(value)
        out[name] = value
    return out


def _iso(value: date | str) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


# -- records -------------------------------------------------------------------------

def vote_passes(votes: Mapping[str, int] | None) -> bool:
    """Two-thirds of the eligible households take part and a majority of them approve (exact integers).

    >>> vote_passes({"eligible_households": 90, "participants": 60, "in_favour": 31})
    True
    >>> vote_passes({"eligible_households": 90, "participants": 59, "in_favour": 59})
    False
    >>> vote_passes({"eligible_households": 90, "participants": 60, "in_favour": 30})
    False
    """
    if not votes:
        return False
    return (votes["participants"] * 3 >= votes["eligible_households"] * 2
            and votes["in_favour"] * 2 > votes["participants"])


def vote_problems(votes: Mapping[str, int]) -> list[str]:
    """What is wrong with a vote count (types and signs are checked by the schema)."""
    eligible, participants, in_favour = (votes[name] for name in VOTE_FIELDS)
    problems = []
    if eligible < 1:
        problems.append("eligible_households must be at least 1")
    if participants > eligible:
        problems.append(f"participants ({participants}) must not exceed eligible_households ({eligible})")
    if in_favour > participants:
        problems.append(f"in_favour ({in_favour}) must not exceed participants ({participants})")
    return problems


def content_hash(record: Mapping[str, Any]) -> str:
    """What makes two versions the same record (a replay of it writes nothing)."""
    return digest({name: record.get(name) for name in ("reached_on", "note", "votes", "management_mode")})


def is_withdrawn(record: Mapping[str, Any] | None) -> bool:
    return record is not None and record.get("reached_on") is None


def effective_reach(record: Mapping[str, Any] | None) -> str | None:
    """The date a record counts as reached: None when withdrawn, or for a vote that failed."""
    if record is None or record.get("reached_on") is None:
        return None
    if record["code"] == "residents_voted" and not vote_passes(record.get("votes")):
        return None
    return record["reached_on"]


def effective_reach_date(record: Mapping[str, Any] | None) -> date | None:
    """:func:`effective_reach` as a date."""
    reached = effective_reach(record)
    return date.fromisoformat(reached) if reached else None


def record_problems(code: str, record: Mapping[str, Any], today: date) -> dict[str, list[str]]:
    """Field errors of a new record of ``code`` taken alone: its date, votes and management mode."""
    errors: dict[str, list[str]] = {}
    reached_on = record["reached_on"]
    if reached_on > today.isoformat():
        errors["reached_on"] = [f"must not be after today ({today.isoformat()}, China time)"]
    carries = BY_CODE[code].carries
    if carries == "votes":
        if record.get("votes") is None:
            errors["votes"] = ["is required for residents_voted"]
        else:
            problems = vote_problems(record["votes"])
            if problems:
                errors["votes"] = problems
    elif record.get("votes") is not None:
        errors["votes"] = ["only residents_voted carries votes"]
    if carries == "management_mode":
        if record.get("management_mode") is None:
            errors["management_mode"] = ["is required for management_assigned"]
    elif record.get("management_mode") is not None:
        errors["management_mode"] = ["only management_assigned carries a management_mode"]
    return errors


def order_problems(code: str, reached_on: str, current: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Why ``code`` cannot be reached on ``reached_on`` given the community's current records
    (``current``: code → latest version; withdrawn ones are ignored, a failed vote still has its
    recorded date). Checked in both directions: after everything that must precede it, and on or
    before everything it must precede."""
    problems = []
    for other in CODES:
        if other == code:
            continue
        record = current.get(other)
        if record is None or record.get("reached_on") is None:
            continue
        theirs = record["reached_on"]
        if other in MUST_PRECEDE[code] and reached_on < theirs:
            problems.append(f"must not be before {other} ({theirs})")
        if code in MUST_PRECEDE[other] and reached_on > theirs:
            problems.append(f"must not be after {other} ({theirs})")
    return problems


def record_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """One version as the API shows it."""
    out = {name: record.get(name) for name in ("version", "reached_on", "note", "votes", "management_mode",
                                               "changed_reason", "key_id", "recorded_at")}
    out["withdrawn"] = record.get("reached_on") is None
    if record["code"] == "residents_voted" and record.get("votes") is not None:
        out["vote_passed"] = vote_passes(record["votes"])
    return out


def milestone_view(versions: list[Mapping[str, Any]], settings: RoundSettings) -> dict[str, Any]:
    """A community's milestone of one code: its current version and every version, oldest first."""
    current = versions[-1]
    code = current["code"]
    return {
        "code": code,
        "name_zh": BY_CODE[code].name_zh,
        "deadline": settings.deadline_text(code),
        **record_view(current),
        "reached": effective_reach(current) is not None,
        "history": [record_view(v) for v in versions],
    }
