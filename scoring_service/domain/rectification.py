"""Rectification items (整改台账, SPEC §13): derived from every version of the acceptance-stage
inspections of a round, the districts' responses and an as-of date *t*. Pure rules: no I/O.

**Fails.** A check fails in a version when it is critical and scored 0, or scored below
``rectification_threshold`` × max_points (compared exactly, as the decimals written: 1.8 of 3 at
0.6 is not a fail); ``"na"`` — and a check a version does not score at all — never fails and
never verifies.

**Opening.** An item opens at the first version of an inspection in which a check fails: id
``{inspection_id}:{check_code}``, ``opened_on`` that version's date, ``due_on`` = opened_on +
``rectification_days``, severity ``critical`` (a critical check) or ``major``.

**Dates.** A version's date is its ``inspected_at`` in China time. The versions of one inspection
are in version order: an amendment dated before the version it amends counts on that version's
date (so a later version never comes before an earlier one, and verification never precedes the
opening). A response counts from its ``fixed_on`` (not after the day it was posted, not before
``opened_on``). Anything dated after *t* is not seen at *t*; an item opened after *t* does not
exist at *t*.

**Re-inspections** of item (I, c) — the versions that can verify or reopen it:

* every later version of inspection I (higher version number), whatever its date;
* every version of another acceptance inspection of the same community, by any agency (the same
  one included), dated *strictly after* ``opened_on``. Another inspection on the opening day is a
  parallel inspection, not a re-inspection: it neither verifies nor reopens (it opens its own
  item if it fails the check).

A re-inspection that scores the check without failing it **verifies** the item (``verified_on`` its
date), for good: verification is final, later failures of the check do not reopen it (a later
inspection that fails it opens its own item). A re-inspection that fails the check after a response
the item has not yet been re-inspected since makes it **reopened**; one that fails it with no such
response changes nothing (an open item stays open, a reopened one reopened). A response makes the
item **submitted** (again), unless it is verified.

**Order of one day.** Re-inspections first (in time of ``inspected_at``, then inspection id and
version), then responses (by ``fixed_on``, then the time they were posted): a district answering a
failed re-inspection on the day it took place has answered it, and a re-inspection that passes the
check on the opening day's later version verifies at once — even before any response.

**Status at t**: ``verified``, else the latest of ``open`` / ``submitted`` / ``reopened``;
``overdue`` when not verified and ``due_on`` < *t* (a submitted item past its due date is overdue
until verified).
"""

from __future__ import annotations

import functools
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from fractions import Fraction
from typing import Any

from .inspections import stage_of
from .rubric import Rubric
from .timeutil import china_date, from_stored

DEFAULT_THRESHOLD = 0.6
DEFAULT_DAYS = 15
#: the round fields of §13 (a round stores only those it was given)
ROUND_FIELDS = ("rectification_threshold", "rectification_days")

OPEN, SUBMITTED, REOPENED, VERIFIED = "open", "submitted", "reopened", "verified"
STATUSES = (OPEN, SUBMITTED, REOPENED, VERIFIED)
SEVERITIES = ("critical", "major")
#: what a history entry records (the status each event led to)
EVENTS = ("opened", "submitted", "reopened", "verified")
#: the stage whose inspections open and verify items
STAGE = "acceptance"


@dataclass(frozen=True)
class Settings:
    """A round's rectification fields, with their defaults when the round has none."""

    threshold: float = DEFAULT_THRESHOLD
    days: int = DEFAULT_DAYS


def round_settings(round_: Mapping[str, Any]) -> Settings:
    given = {}
    if round_.get("rectification_threshold") is not None:
        given["threshold"] = float(round_["rectification_threshold"])
    if round_.get("rectification_days") is not None:
        given["days"] = int(round_["rectification_days"])
    return Settings(**given)


def item_id(inspection_id: str, check_code: str) -> str:
    return f"{inspection_id}:{check_code}"


def split_item_id(value: str) -> tuple[str, str] | None:
    """(inspection_id, check_code) of an item id, or None when it has no ``:``."""
    inspection_id, sep, code = value.partition(":")
    return (inspection_id, code) if sep and inspection_id and code else None


def _decimal(value: float | int | str) -> Fraction:
    """A number as the decimal it was written as (0.6 is 3/5, not the binary float's value)."""
    return Fraction(str(value))


class FailRule:
    """The fail rule of one rubric at one threshold, with each check's limit worked out once."""

    def __init__(self, rubric: Rubric, threshold: float):
        self.rubric = rubric
        self.threshold = threshold
        t = _decimal(threshold)
        #: code → (critical, exact limit, float limit): scored below the limit fails
        self.limits = {code: (bool(check.get("critical")), t * _decimal(check["max_points"]),
                              float(t * _decimal(check["max_points"])))
                       for code, check in rubric.checks.items()}

    def fails(self, code: str, value: Any) -> bool | None:
        """Whether ``value`` fails check ``code``; None when it is not a score (``"na"``, absent, or a
        check the rubric does not have).

        >>> from .rubric import Rubric
        >>> rule = FailRule(Rubric({"rubric_id": "r", "items": [{"code": "i", "checks": [
        ...     {"code": "a", "max_points": 3}, {"code": "b", "max_points": 6, "critical": True}]}],
        ...     "likert_points": [], "source_weights": {}, "district_weights": {}, "grades": []}), 0.6)
        >>> [rule.fails("a", v) for v in (1.7, 1.8, 3, "na", None)]
        [True, False, False, None, None]
        >>> [rule.fails("b", v) for v in (0, 6)]
        [True, False]
        """
        limit = self.limits.get(code)
        if limit is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return None  # "na", absent, or not a score at all
        critical, exact, approximate = limit
        if critical and value == 0:
            return True
        number = float(value)
        if abs(number - approximate) > 1e-9 * max(1.0, abs(approximate)):
            return number < approximate  # far from the limit: the float comparison is exact enough
        return _decimal(value) < exact


@dataclass(frozen=True, slots=True)
class Version:
    """What the rules need of one stored inspection version."""

    inspection_id: str
    community_id: str
    agency_id: str
    version: int
    inspected_at: str  # stored UTC text (timeutil.STORED_FORMAT)
    checks: Mapping[str, Any]
    check_evidence: Mapping[str, Sequence[str]] = field(default_factory=dict)
    amend_reason: str | None = None
    stage: str = STAGE

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> Version:
        return cls(str(record["inspection_id"]), record["community_id"], record["agency_id"], int(record["version"]),
                   record["inspected_at"], record.get("checks") or {}, record.get("check_evidence") or {},
                   record.get("amend_reason"), stage_of(record))

    @property
    def day(self) -> date:
        return china_date(from_stored(self.inspected_at))


@dataclass(frozen=True, slots=True)
class Check:
    """One version's scoring of the item's check: an opening, a re-inspection or the verifying version."""

    inspection_id: str
    version: int
    agency_id: str
    inspected_at: str
    day: date  # the date it counts on (see the module docstring)
    points: Any  # the score (a number)
    failed: bool
    evidence: tuple[str, ...]
    same_inspection: bool = True

    def ref(self) -> dict:
        return {"inspection_id": self.inspection_id, "version": self.version, "agency_id": self.agency_id,
                "inspected_at": self.inspected_at, "on": self.day.isoformat(), "points": self.points,
                "evidence": list(self.evidence)}


@dataclass(frozen=True, slots=True)
class Response:
    """A district's answer to an item."""

    response_id: str
    item_id: str
    fixed_on: date
    note: str
    evidence: tuple[str, ...]
    key_id: str | None = None
    recorded_at: str = ""

    @classmethod
    def of(cls, record: Mapping[str, Any], notes: dict[str, str] | None = None) -> Response:
        """The response of a stored record, compact: the item id, key id and evidence hashes are interned
        strings, the date a shared object (:func:`day_of`), and a note equal to one in ``notes`` that one
        (so a board of many responses holds each repeated text once)."""
        note = record["note"]
        if notes is not None:
            note = notes.setdefault(note, note)
        key_id = record.get("key_id")
        return cls(record["response_id"], sys.intern(record["item_id"]), day_of(record["fixed_on"]), note,
                   tuple(sys.intern(h) if isinstance(h, str) else h for h in record.get("evidence") or ()),
                   sys.intern(key_id) if isinstance(key_id, str) else key_id, record.get("recorded_at") or "")

    @property
    def order(self) -> tuple:
        return (self.fixed_on, self.recorded_at, self.response_id)


@functools.lru_cache(maxsize=8192)
def day_of(text: str) -> date:
    """The date of ISO text, one object per date (a national round's items and responses share a few
    hundred dates)."""
    return date.fromisoformat(text)


@functools.lru_cache(maxsize=8192)
def _shared_day(day: date) -> date:
    return day


@dataclass(frozen=True, slots=True)
class Timeline:
    """An item as the versions make it, before responses and an as-of date: its opening and its
    re-inspections in event order."""

    id: str
    community_id: str
    inspection_id: str
    agency_id: str
    check_code: str
    severity: str
    max_points: Any
    opened_on: date
    due_on: date
    opening: Check
    rechecks: tuple[Check, ...]


def _dated(versions: Sequence[Version]) -> list[date]:
    """The date each version of one inspection (in version order) counts on: never before the previous."""
    days: list[date] = []
    for v in versions:
        day = _shared_day(v.day)
        days.append(max(day, days[-1]) if days else day)
    return days


def community_timelines(versions: Iterable[Version], rule: FailRule, days: int) -> list[Timeline]:
    """The items opened by the versions of one community's inspections (versions of other stages are
    ignored), by id."""
    by_inspection: dict[str, list[Version]] = {}
    for v in versions:
        if v.stage == STAGE:
            by_inspection.setdefault(v.inspection_id, []).append(v)
    dated: dict[str, list[tuple[date, Version]]] = {}
    for inspection_id, chain in by_inspection.items():
        chain.sort(key=lambda v: v.version)
        dated[inspection_id] = list(zip(_dated(chain), chain))

    def scored(day: date, v: Version, code: str, same: bool) -> Check | None:
        value = v.checks.get(code)
        failed = rule.fails(code, value)
        if failed is None:
            return None
        return Check(v.inspection_id, v.version, v.agency_id, v.inspected_at, day, value, failed,
                     tuple(v.check_evidence.get(code) or ()), same)

    timelines = []
    for inspection_id, chain in dated.items():
        opened: set[str] = set()
        for k, (day, v) in enumerate(chain):
            for code, value in v.checks.items():
                if code in opened or not rule.fails(code, value):
                    continue
                opened.add(code)
                opening = scored(day, v, code, True)
                rechecks = [c for d, later in chain[k + 1:] if (c := scored(d, later, code, True)) is not None]
                for other_id, other in dated.items():
                    if other_id != inspection_id:
                        rechecks += [c for d, w in other if d > day and (c := scored(d, w, code, False)) is not None]
                rechecks.sort(key=lambda c: (c.day, c.inspected_at, c.inspection_id, c.version))
                check = rule.rubric.checks[code]
                timelines.append(Timeline(
                    sys.intern(item_id(inspection_id, code)), v.community_id, inspection_id, v.agency_id, code,
                    "critical" if check.get("critical") else "major", check["max_points"], day,
                    _shared_day(day + timedelta(days=days)), opening, tuple(rechecks)))
    return sorted(timelines, key=lambda t: t.id)


def timelines(versions: Iterable[Version], rule: FailRule, days: int) -> list[Timeline]:
    """The items of every community of ``versions``, by id."""
    by_community: dict[str, list[Version]] = {}
    for v in versions:
        by_community.setdefault(v.community_id, []).append(v)
    out = [t for chain in by_community.values() for t in community_timelines(chain, rule, days)]
    return sorted(out, key=lambda t: t.id)


@dataclass(frozen=True, slots=True)
class ItemState:
    """An item at ``t``."""

    timeline: Timeline
    status: str
    overdue: bool
    verified_on: date | None
    verifying: Check | None
    failing: Check  # the latest version of the item's inspection seen failing the check
    responses: tuple[Response, ...]  # seen at t, in order
    history: tuple[dict, ...]  # status changes: {on, event, ...}

    @property
    def days_to_verification(self) -> int | None:
        return None if self.verified_on is None else (self.verified_on - self.timeline.opened_on).days


def item_at(timeline: Timeline, responses: Iterable[Response], t: date) -> ItemState | None:
    """The item at ``t`` (None when it opens after ``t``), from its re-inspections and ``responses``."""
    if timeline.opened_on > t:
        return None
    seen = sorted((r for r in responses if r.fixed_on <= t), key=lambda r: r.order)
    events = [((c.day, 0), c) for c in timeline.rechecks if c.day <= t]
    events += [((r.fixed_on, 1), r) for r in seen]
    events.sort(key=lambda e: e[0])  # stable: rechecks and responses keep their own order within a day
    opening = timeline.opening
    status, answered, verifying, failing = OPEN, False, None, opening
    history = [{"on": opening.day.isoformat(), "event": "opened", "inspection_id": opening.inspection_id,
                "version": opening.version, "points": opening.points}]
    for _, event in events:
        if verifying is not None:
            break
        if isinstance(event, Response):
            status, answered = SUBMITTED, True
            history.append({"on": event.fixed_on.isoformat(), "event": "submitted", "response_id": event.response_id})
        elif not event.failed:
            status, verifying = VERIFIED, event
            history.append({"on": event.day.isoformat(), "event": "verified", "inspection_id": event.inspection_id,
                            "version": event.version, "points": event.points})
        else:
            if event.same_inspection:
                failing = event
            if answered:
                status, answered = REOPENED, False
                history.append({"on": event.day.isoformat(), "event": "reopened",
                                "inspection_id": event.inspection_id, "version": event.version,
                                "points": event.points})
    verified_on = verifying.day if verifying is not None else None
    return ItemState(timeline, status, verifying is None and timeline.due_on < t, verified_on, verifying, failing,
                     tuple(seen), tuple(history))


@dataclass(frozen=True)
class Item:
    """An item at ``t`` with its community's district: what :func:`derive_items` returns."""

    district_id: str | None
    state: ItemState

    def as_dict(self) -> dict:
        """The item's fields of SPEC §13 (dates as ISO text; evidence as hashes)."""
        s, tl = self.state, self.state.timeline
        return {
            "id": tl.id, "community_id": tl.community_id, "district_id": self.district_id,
            "inspection_id": tl.inspection_id, "agency_id": tl.agency_id, "check_code": tl.check_code,
            "severity": tl.severity, "points": s.failing.points, "max_points": tl.max_points,
            "opened_on": tl.opened_on.isoformat(), "due_on": tl.due_on.isoformat(), "status": s.status,
            "overdue": s.overdue, "verified_on": s.verified_on.isoformat() if s.verified_on else None,
            "responses": [{"response_id": r.response_id, "fixed_on": r.fixed_on.isoformat(), "note": r.note,
                           "evidence": list(r.evidence), "key_id": r.key_id, "recorded_at": r.recorded_at}
                          for r in s.responses],
            "evidence": list(s.failing.evidence),
            "verifying": s.verifying.ref() if s.verifying else None,
            "history": list(s.history),
        }


def derive_items(versions: Iterable[Mapping | Version], rubric: Rubric, responses: Iterable[Mapping | Response],
                 t: date, settings: Settings = Settings(),
                 districts: Mapping[str, str] | None = None) -> list[Item]:
    """Every item of a round at ``t`` (SPEC §13), by id: ``versions`` are every version of the round's
    inspections (other stages are ignored), ``districts`` maps a community to its district."""
    rule = FailRule(rubric, settings.threshold)
    chain = [v if isinstance(v, Version) else Version.of(v) for v in versions]
    answers: dict[str, list[Response]] = {}
    for r in responses:
        r = r if isinstance(r, Response) else Response.of(r)
        answers.setdefault(r.item_id, []).append(r)
    items = []
    for timeline in timelines(chain, rule, settings.days):
        state = item_at(timeline, answers.get(timeline.id, ()), t)
        if state is not None:
            items.append(Item((districts or {}).get(timeline.community_id), state))
    return items


# -- per-district counts ---------------------------------------------------------------------------

COUNT_FIELDS = ("open", "submitted", "reopened", "verified", "overdue", "median_days_to_verification")


def median_days(days: Sequence[int]) -> float | None:
    """The median of the days from opening to verification (None without a verified item).

    >>> median_days([3, 10]), median_days([4, 1, 9]), median_days([])
    (6.5, 4, None)
    """
    return statistics.median(days) if days else None


def counts(statuses: Iterable[tuple[str, bool, int | None]]) -> dict:
    """The counts of one district from its items' (status, overdue, days to verification)."""
    out: dict[str, Any] = {name: 0 for name in COUNT_FIELDS[:-1]}
    days = []
    for status, overdue, to_verification in statuses:
        out[status] += 1
        out["overdue"] += bool(overdue)
        if to_verification is not None:
            days.append(to_verification)
    out["median_days_to_verification"] = median_days(days)
    return out


def district_counts(items: Iterable[Item], district_ids: Iterable[str] = ()) -> dict[str, dict]:
    """district → its counts, every district of ``district_ids`` included (zeros), by id."""
    grouped: dict[str, list] = {d: [] for d in district_ids}
    for item in items:
        s = item.state
        grouped.setdefault(item.district_id, []).append((s.status, s.overdue, s.days_to_verification))
    return {d: counts(grouped[d]) for d in sorted(grouped, key=str)}
