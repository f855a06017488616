"""Whole-process supervision (SPEC §11): the as-of date, milestone progress per district and the
supervision report (督办通报) with its warnings.

The report follows what changed: milestone records come from the round's board (read through the
store's change feed), statuses at the as-of date are computed for every community at once with the
array form of the rules in :mod:`..domain.supervision`, grades come from the round's community scores
(cached apart from milestones), and the JSON of each community's row is kept until that community
changes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction

import numpy as np

from ..domain import milestones as ms
from ..domain.canonical import array_length, array_pieces, canonical_bytes, split_at
from ..domain.supervision import (
    DONE,
    LATE,
    ON_TIME,
    OVERDUE,
    STATUSES,
    due_milestones,
    milestone_status_arrays,
    progress_from_counts,
    warning_reasons,
)
from ..domain.timeutil import china_date, from_stored
from ..scoring import round_score
from . import clock
from .context import ServiceState
from .errors import Forbidden, NotFound
from .keys import Principal
from .milestone_board import Current, Layout, MilestoneBoard, board, deadline_numbers
from . import rectification, rounds
from .results import round_reference, round_scores
from .round_inputs import Reference

def as_of_date(ctx: ServiceState, round_: dict, requested: date | None = None) -> date:
    """t: the request's date, else the round's ``progress_as_of``, else today while the round is open,
    else the date (China time) on which it was closed."""
    if requested is not None:
        return requested
    settings = ms.round_settings(round_)
    if settings.progress_as_of is not None:
        return settings.progress_as_of
    if round_["status"] == "open" or not round_.get("closed_at"):
        return clock.today(ctx)
    return china_date(from_stored(round_["closed_at"]))


def covered_communities(ctx: ServiceState, round_: dict) -> list[dict]:
    """The communities a round covers (SPEC §3, §15), by id."""
    return rounds.covered_communities(ctx.store, round_)


@dataclass
class DistrictFigures:
    """One district's row of the report at ``t``, before it is shaped as JSON."""

    district_id: str
    quota: int
    communities: int
    progress: Fraction
    due: int
    on_time: int
    late: int
    overdue: int
    overdue_communities: list[str]
    reasons: dict[str, list[str]] = field(default_factory=dict)
    #: the district's rectification items at t (SPEC §13): open, submitted, reopened, verified, overdue and
    #: the median days from opening to verification
    rectifications: dict = field(default_factory=dict)

    @property
    def rounded_progress(self) -> float:
        return float(round_score(float(self.progress)))


@dataclass
class Figures:
    """The supervision figures of a round at ``t``, from its milestone board's layout (read under the
    board's lock)."""

    settings: ms.RoundSettings
    t: date
    layout: Layout
    records: dict[str, dict[str, Current]]
    status: np.ndarray  # community × milestone: index into STATUSES
    days: np.ndarray  # community × milestone: days late or overdue
    districts: list[DistrictFigures]


def _figures(ctx: ServiceState, milestones: MilestoneBoard, round_: dict, t: date, reference_token: str,
             reference: Reference) -> Figures:
    """Statuses of every covered community's milestones at ``t`` (all at once) and each district's
    counts and progress G(d), after bringing the board up to date. Hold the board's lock."""
    settings = ms.round_settings(round_)
    milestones.sync(ctx.store, reference_token, reference.communities)
    layout = milestones.layout
    status, days = milestone_status_arrays(deadline_numbers(settings.deadlines), layout.reach, t)
    due = due_milestones(settings.deadlines, ms.CODES, t)
    due_columns = np.array([code in due for code in ms.CODES], dtype=bool)
    quotas = round_.get("quotas", {})
    ids = sorted(quotas)
    position = {d: k for k, d in enumerate(ids)}
    member = np.array([position.get(d, -1) for d in layout.district_ids], dtype=np.int64)
    inside = member >= 0
    members, covered = member[inside], status[inside]

    def per_district(values: np.ndarray) -> list[int]:
        return np.bincount(members, weights=values, minlength=len(ids)).astype(np.int64).tolist()

    registered = np.bincount(members, minlength=len(ids)).tolist()
    pairs = {s: per_district((covered == s).sum(axis=1)) for s in (ON_TIME, LATE, OVERDUE)}
    on_time_due = per_district((covered[:, due_columns] == ON_TIME).sum(axis=1))
    late_due = per_district((covered[:, due_columns] == LATE).sum(axis=1))
    overdue_lists: list[list[str]] = [[] for _ in ids]
    for i in np.flatnonzero(inside & (status == OVERDUE).any(axis=1)).tolist():
        overdue_lists[member[i]].append(layout.ids[i])  # layout ids are sorted
    districts = [
        DistrictFigures(d, int(quotas[d]), registered[k],
                        progress_from_counts(int(quotas[d]), on_time_due[k], late_due[k], len(due),
                                             settings.late_credit),
                        len(due), pairs[ON_TIME][k], pairs[LATE][k], pairs[OVERDUE][k], overdue_lists[k])
        for k, d in enumerate(ids)
    ]
    return Figures(settings, t, layout, milestones.records, status, days, districts)


def district_progress(ctx: ServiceState, round_: dict, t: date) -> dict[str, float]:
    """G(d) of every district of the round's quotas by the milestone rule, at ``t``."""
    reference_token = ctx.store.generation("reference")
    reference = round_reference(ctx, round_, reference_token)
    milestones = board(ctx, round_["round_id"])
    with milestones.lock:
        figures = _figures(ctx, milestones, round_, t, reference_token, reference)
    return {d.district_id: float(d.progress) for d in figures.districts}


def construction_below_pass(ctx: ServiceState, round_: dict, reference: Reference,
                            reference_token: str) -> frozenset[str]:
    """Communities with a current construction-stage inspection whose professional score P, computed
    over that inspection alone (SPEC §5), is below the rubric's pass threshold; cached per round and
    the generations of inspections and reference data."""
    store = ctx.store
    rubric = ctx.rubric(round_["rubric_id"])
    key = (round_["round_id"], rubric.rubric_id, reference_token, store.generation("inspections"))

    def find() -> frozenset[str]:
        rows = store.inspection_sums(round_["round_id"], len(rubric.item_codes), stage="construction")
        position = {cid: c for c, cid in enumerate(reference.inputs.ids)}
        threshold = rubric.grade_minimum("pass")
        weights = np.array([item["weight"] for item in rubric.items], dtype=float)
        found = set()
        for m, community_id in enumerate(rows.community_ids):
            c = position.get(community_id)
            if c is None:
                continue
            points, maxima = rows.points[m], rows.maxima[m]
            defined = reference.inputs.applicable[c] & (maxima > 0)
            if not defined.any():
                continue
            scores = 100.0 * points[defined] / maxima[defined]
            professional = float((weights[defined] * scores).sum() / weights[defined].sum())
            if float(round_score(professional)) < threshold:
                found.add(community_id)
        return frozenset(found)

    return ctx.construction_checks.get(key, find)


@dataclass
class Prepared:
    """A supervision report worked out up to its community rows."""

    head: dict  # the report without "communities"
    figures: Figures
    selected: list[int]  # layout positions of the communities shown, by id
    failing: np.ndarray  # layout position → accepted_but_failing


@dataclass
class Inputs:
    """What a report takes besides milestones, read before the board's lock is taken."""

    reference_token: str
    reference: Reference
    grade_of: dict[str, str | None]
    below_pass: frozenset[str]
    rectifications: rectification.Summary

    @classmethod
    def read(cls, ctx: ServiceState, round_: dict, t: date) -> Inputs:
        reference_token = ctx.store.generation("reference")
        reference = round_reference(ctx, round_, reference_token)
        # accepted_but_failing needs only the grades: scores are cached apart from milestones (a
        # milestone write does not score the round again)
        return cls(reference_token, reference, round_scores(ctx, round_).grade_of(),
                   construction_below_pass(ctx, round_, reference, reference_token),
                   rectification.summary(ctx, round_, t))


def _prepare(ctx: ServiceState, milestones: MilestoneBoard, round_: dict, t: date, district_id: str | None,
             inputs: Inputs) -> Prepared:
    """Everything but the community rows; hold the board's lock."""
    reference = inputs.reference
    figures = _figures(ctx, milestones, round_, t, inputs.reference_token, reference)
    settings, layout = figures.settings, figures.layout
    accepted = np.isin(figures.status[:, ms.CODES.index("accepted")], (ON_TIME, LATE, DONE))
    failing = accepted & np.array([inputs.grade_of.get(cid) in (None, "fail") for cid in layout.ids], dtype=bool)
    below_pass = inputs.below_pass
    by_district: dict[str, dict[str, list[str]]] = {}
    for i in np.flatnonzero(failing).tolist():
        by_district.setdefault(layout.district_ids[i], {}).setdefault("failing", []).append(layout.ids[i])
    for community_id in below_pass:
        i = layout.position.get(community_id)
        if i is not None:
            by_district.setdefault(layout.district_ids[i], {}).setdefault("below", []).append(community_id)
    plan_deadline = settings.deadlines.get("plan_approved")
    districts = figures.districts
    for d in districts:
        found = by_district.get(d.district_id, {})
        d.reasons = warning_reasons(d.quota, d.communities, d.overdue_communities, settings.warning_share,
                                    plan_deadline, t, construction_below_pass=found.get("below", ()),
                                    rectifications_overdue=inputs.rectifications.overdue.get(d.district_id, ()),
                                    accepted_but_failing=found.get("failing", ()))
        d.rectifications = dict(inputs.rectifications.counts.get(d.district_id) or rectification.no_items())
    if district_id is not None:
        districts = [d for d in districts if d.district_id == district_id]
        selected = [i for i, d in enumerate(layout.district_ids) if d == district_id]
    else:
        selected = list(range(len(layout.ids)))
    districts = sorted(districts, key=lambda d: (d.rounded_progress, d.district_id))
    head = {
        "round_id": round_["round_id"],
        "round_title": round_.get("title"),
        "as_of": t.isoformat(),
        "deadlines": {code: settings.deadlines[code].isoformat() for code in ms.CODES if code in settings.deadlines},
        "progress_rule": settings.progress_rule,
        "districts": [_district_row(d, reference.district_names) for d in districts],
    }
    return Prepared(head, figures, selected, failing)


def _district_row(d: DistrictFigures, names: dict[str, str | None]) -> dict:
    return {
        "district_id": d.district_id,
        "name_zh": names.get(d.district_id),
        "quota": d.quota,
        "communities": d.communities,
        "progress": d.rounded_progress,
        "milestones_due": d.due,
        "on_time": d.on_time,
        "late": d.late,
        "overdue": d.overdue,
        "overdue_communities": len(d.overdue_communities),
        "warning": bool(d.reasons),
        "reasons": [{"code": code, "communities": ids} for code, ids in d.reasons.items()],
        "rectifications": d.rectifications,
    }


def _community_row(figures: Figures, i: int, flagged: bool) -> dict:
    layout = figures.layout
    community_id = layout.ids[i]
    recorded = figures.records.get(community_id, {})
    status, days = figures.status[i].tolist(), figures.days[i].tolist()
    milestones = {}
    for j, code in enumerate(ms.CODES):
        record = recorded.get(code)
        entry = {"deadline": figures.settings.deadline_text(code),
                 "reached_on": record.reached_on if record else None,
                 "status": STATUSES[status[j]]}
        if status[j] == LATE:
            entry["days_late"] = days[j]
        elif status[j] == OVERDUE:
            entry["days_overdue"] = days[j]
        if record and record.votes:
            entry["votes"] = {**record.votes, "passed": ms.vote_passes(record.votes)}
        if record and record.management_mode:
            entry["management_mode"] = record.management_mode
        milestones[code] = entry
    return {"community_id": community_id, "name_zh": layout.names[i], "district_id": layout.district_ids[i],
            "milestones": milestones, "flags": ["accepted_but_failing"] if flagged else []}


def _kept_row(row: dict, entries: dict[bytes, bytes]) -> tuple[bytes, ...]:
    """A community row's canonical JSON as kept: its own head and tail around its milestone entries, each
    entry (with its key) the kept rows' one copy of it (``entries``: communities share deadlines, dates and
    statuses, so a national report's 180,000 entries are a few thousand distinct ones). Joined, the pieces
    are ``canonical_bytes(row)``."""
    before, after = split_at(row, "milestones")
    pieces = [before + b"{"]
    for k, code in enumerate(sorted(row["milestones"])):
        entry = (b"," if k else b"") + canonical_bytes(code) + b":" + canonical_bytes(row["milestones"][code])
        pieces.append(entries.setdefault(entry, entry))
    pieces.append(b"}" + after)
    return tuple(pieces)


#: community rows joined into one piece of a JSON response (some 1 MB of a national report)
ROWS_PER_PART = 1000


def _report_round(ctx: ServiceState, round_id: str, principal: Principal | None, as_of: date | None,
                  district_id: str | None) -> tuple[dict, date, str | None]:
    round_ = ctx.store.get_round(round_id)
    if round_ is None:
        raise NotFound("round", round_id)
    if principal is not None and principal.role == "district":
        if district_id not in (None, principal.district_id):
            raise Forbidden("a district key reads its own district's supervision only")
        district_id = principal.district_id
    return round_, as_of_date(ctx, round_, as_of), district_id


def supervision_report(ctx: ServiceState, round_id: str, principal: Principal | None,
                       as_of: date | None = None, district_id: str | None = None) -> dict:
    """The report of SPEC §11 ``GET /rounds/{r}/supervision``; a district key sees its own district only."""
    round_, t, district_id = _report_round(ctx, round_id, principal, as_of, district_id)
    inputs, milestones = Inputs.read(ctx, round_, t), board(ctx, round_id)
    with milestones.lock:
        prepared = _prepare(ctx, milestones, round_, t, district_id, inputs)
        rows = [_community_row(prepared.figures, i, bool(prepared.failing[i])) for i in prepared.selected]
    return {**prepared.head, "communities": rows}


def supervision_json(ctx: ServiceState, round_id: str, principal: Principal | None,
                     as_of: date | None = None, district_id: str | None = None) -> bytes:
    """:func:`supervision_report` as canonical JSON, the same bytes. Each community's row is kept as
    JSON on the round's board and shaped again only when its records or its flag changed."""
    return b"".join(supervision_parts(ctx, round_id, principal, as_of, district_id))


def supervision_parts(ctx: ServiceState, round_id: str, principal: Principal | None,
                      as_of: date | None = None, district_id: str | None = None) -> list[bytes]:
    """:func:`supervision_json` in pieces (the rows in the middle, :data:`ROWS_PER_PART` to a piece), for a
    response that sends them as they are: a national report (some 20 MB) is neither joined into one more
    copy nor made of a joined copy of each row first (each piece joins its rows' kept pieces at once)."""
    before, after, shown = _kept_rows(ctx, round_id, principal, as_of, district_id)
    return list(array_pieces(before, after, shown, ROWS_PER_PART))


def supervision_stream(ctx: ServiceState, round_id: str, principal: Principal | None,
                       as_of: date | None = None, district_id: str | None = None) -> tuple[int, Iterator[bytes]]:
    """:func:`supervision_parts` made as they are sent, with their total length: a national report's 20 MB
    are not all held at once (a piece at a time, and the rows kept on the board)."""
    before, after, shown = _kept_rows(ctx, round_id, principal, as_of, district_id)
    return array_length(before, after, shown), array_pieces(before, after, shown, ROWS_PER_PART)


def _kept_rows(ctx: ServiceState, round_id: str, principal: Principal | None, as_of: date | None,
               district_id: str | None) -> tuple[bytes, bytes, list[tuple[bytes, ...]]]:
    """The report's JSON before and after its rows, and its rows' kept pieces, shaping again the stale ones."""
    round_, t, district_id = _report_round(ctx, round_id, principal, as_of, district_id)
    inputs, milestones = Inputs.read(ctx, round_, t), board(ctx, round_id)
    with milestones.lock:
        prepared = _prepare(ctx, milestones, round_, t, district_id, inputs)
        figures, layout = prepared.figures, prepared.figures.layout
        kept = layout.rows((t, tuple(sorted(figures.settings.deadlines.items()))))
        for i in kept.stale(layout.stamp, prepared.failing).tolist():
            kept.json[i] = _kept_row(_community_row(figures, i, bool(prepared.failing[i])), kept.entries)
            kept.stamp[i], kept.flag[i] = layout.stamp[i], prepared.failing[i]
        shown = [kept.json[i] for i in prepared.selected]  # tuples: a later rebuild replaces, never changes, them
        head = prepared.head
        del prepared, figures, layout, kept  # the rows are joined without the lock (nor the figures' arrays)
    return (*split_at(head, "communities"), shown)
