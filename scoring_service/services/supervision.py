"""Whole-process supervision (SPEC §11): the as-of date, milestone progress per district and the
supervision report (督办通报) with its warnings."""

from __future__ import annotations

from datetime import date

import numpy as np

from ..domain import milestones as ms
from ..domain.supervision import (
    CommunityProgress,
    DistrictSupervision,
    community_progress,
    district_warnings,
    due_milestones,
    milestone_progress,
)
from ..domain.timeutil import china_date, from_stored
from ..scoring import round_score
from . import clock
from .context import ServiceState
from .errors import Forbidden, NotFound
from .keys import Principal

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
    """The communities a round covers (its year's renovations), by id."""
    return ctx.store.list_communities(renovation_year=round_["year"])


def reach_dates(ctx: ServiceState, round_id: str) -> dict[str, dict[str, dict]]:
    """Current milestone records by community and code."""
    table: dict[str, dict[str, dict]] = {}
    for record in ctx.store.current_milestones(round_id):
        table.setdefault(record["community_id"], {})[record["code"]] = record
    return table


def _progress_rows(round_: dict, communities: list[dict], records: dict[str, dict[str, dict]],
                   t: date) -> list[CommunityProgress]:
    settings = ms.round_settings(round_)
    rows = []
    for community in communities:
        recorded = records.get(community["community_id"], {})
        reached = {code: ms.effective_reach_date(record) for code, record in recorded.items()}
        rows.append(community_progress(community["community_id"], community["district_id"], ms.CODES,
                                       settings.deadlines, reached, t))
    return rows


def _districts(round_: dict, rows: list[CommunityProgress], t: date) -> list[DistrictSupervision]:
    settings = ms.round_settings(round_)
    due = due_milestones(settings.deadlines, ms.CODES, t)
    by_district: dict[str, list[CommunityProgress]] = {}
    for row in rows:
        by_district.setdefault(row.district_id, []).append(row)
    return [
        DistrictSupervision(d, int(quota), by_district.get(d, []),
                            milestone_progress(int(quota), by_district.get(d, []), due, settings.late_credit), due)
        for d, quota in sorted(round_.get("quotas", {}).items())
    ]


def district_progress(ctx: ServiceState, round_: dict, t: date) -> dict[str, float]:
    """G(d) of every district of the round's quotas by the milestone rule, at ``t``."""
    rows = _progress_rows(round_, covered_communities(ctx, round_), reach_dates(ctx, round_["round_id"]), t)
    return {d.district_id: float(d.progress) for d in _districts(round_, rows, t)}


def _construction_below_pass(ctx: ServiceState, round_: dict) -> set[str]:
    """Communities with a current construction-stage inspection whose professional score P, computed
    over that inspection alone (SPEC §5), is below the rubric's pass threshold."""
    rubric = ctx.rubric(round_["rubric_id"])
    communities = {c["community_id"]: c for c in covered_communities(ctx, round_)}
    threshold = rubric.grade_minimum("pass")
    weights = np.array([item["weight"] for item in rubric.items], dtype=float)
    found = set()
    for inspection in ctx.store.current_inspections(round_["round_id"]):
        community = communities.get(inspection["community_id"])
        if inspection.get("stage", "acceptance") != "construction" or community is None:
            continue
        points = np.array(inspection["item_points"], dtype=float)
        maxima = np.array(inspection["item_max"], dtype=float)
        applicable = np.array([rubric.applies(item, community) for item in rubric.items])
        defined = applicable & (maxima > 0)
        if not defined.any():
            continue
        scores = 100.0 * points[defined] / maxima[defined]
        professional = float((weights[defined] * scores).sum() / weights[defined].sum())
        if float(round_score(professional)) < threshold:
            found.add(inspection["community_id"])
    return found


def supervision_report(ctx: ServiceState, round_id: str, principal: Principal | None,
                       as_of: date | None = None, district_id: str | None = None) -> dict:
    """The report of SPEC §11 ``GET /rounds/{r}/supervision``; a district key sees its own district only."""
    from .results import live_results  # results build on supervision (milestone progress)

    round_ = ctx.store.get_round(round_id)
    if round_ is None:
        raise NotFound("round", round_id)
    if principal is not None and principal.role == "district":
        if district_id not in (None, principal.district_id):
            raise Forbidden("a district key reads its own district's supervision only")
        district_id = principal.district_id
    settings = ms.round_settings(round_)
    t = as_of_date(ctx, round_, as_of)
    communities = covered_communities(ctx, round_)
    names = {c["community_id"]: c.get("name_zh") for c in communities}
    district_names = {d["district_id"]: d.get("name_zh") for d in ctx.store.list_districts()}
    records = reach_dates(ctx, round_id)
    rows = _progress_rows(round_, communities, records, t)
    districts = _districts(round_, rows, t)

    results = live_results(ctx, round_id)
    grade_of = {cid: results.raw.grade[i] for i, cid in enumerate(results.inputs.ids)}
    accepted = {row.community_id for row in rows if row.statuses["accepted"].status in ("on_time", "late", "done")}
    failing = {cid for cid in accepted if grade_of.get(cid) in (None, "fail")}
    below_pass = _construction_below_pass(ctx, round_)
    plan_deadline = settings.deadlines.get("plan_approved")
    for d in districts:
        members = {c.community_id for c in d.communities}
        d.reasons = district_warnings(d, settings.warning_share, plan_deadline, t,
                                      construction_below_pass=below_pass & members,
                                      accepted_but_failing=failing & members)

    def district_row(d: DistrictSupervision) -> dict:
        return {
            "district_id": d.district_id,
            "name_zh": district_names.get(d.district_id),
            "quota": d.quota,
            "communities": len(d.communities),
            "progress": float(round_score(float(d.progress))),
            "milestones_due": len(d.due),
            "on_time": d.pairs("on_time"),
            "late": d.pairs("late"),
            "overdue": d.pairs("overdue"),
            "overdue_communities": len(d.overdue_communities),
            "warning": bool(d.reasons),
            "reasons": [{"code": code, "communities": ids} for code, ids in d.reasons.items()],
        }

    def community_row(row: CommunityProgress) -> dict:
        recorded = records.get(row.community_id, {})
        milestones = {}
        for code in ms.CODES:
            status = row.statuses[code]
            record = recorded.get(code)
            deadline = settings.deadlines.get(code)
            entry = {"deadline": deadline.isoformat() if deadline else None,
                     "reached_on": record.get("reached_on") if record else None,
                     "status": status.status}
            if status.days_late is not None:
                entry["days_late"] = status.days_late
            if status.days_overdue is not None:
                entry["days_overdue"] = status.days_overdue
            if record and record.get("votes"):
                entry["votes"] = {**record["votes"], "passed": ms.vote_passes(record["votes"])}
            if record and record.get("management_mode"):
                entry["management_mode"] = record["management_mode"]
            milestones[code] = entry
        return {"community_id": row.community_id, "name_zh": names.get(row.community_id),
                "district_id": row.district_id, "milestones": milestones,
                "flags": ["accepted_but_failing"] if row.community_id in failing else []}

    if district_id is not None:
        districts = [d for d in districts if d.district_id == district_id]
        rows = [r for r in rows if r.district_id == district_id]
    districts.sort(key=lambda d: (float(round_score(float(d.progress))), d.district_id))
    return {
        "round_id": round_id,
        "round_title": round_.get("title"),
        "as_of": t.isoformat(),
        "deadlines": {code: settings.deadlines[code].isoformat() for code in ms.CODES if code in settings.deadlines},
        "progress_rule": settings.progress_rule,
        "districts": [district_row(d) for d in districts],
        "communities": [community_row(r) for r in sorted(rows, key=lambda r: r.community_id)],
    }
