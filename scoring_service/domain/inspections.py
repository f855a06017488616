"""Professional inspections (专业验收): checking a checklist and its per-item sums."""

from __future__ import annotations

from collections.abc import Sequence

from .canonical import digest
from .surveys import RoundContext, SubmissionError, check_time, community_of_round
from .timeutil import now_stored, to_stored

NA = "na"

#: SPEC §13: an inspection's stage; acceptance (the default) is the one §5 scores in an acceptance round
STAGES = ("acceptance", "construction", "aftercare")
DEFAULT_STAGE = STAGES[0]


def check_checklist(checks: dict, community: dict, ctx: RoundContext) -> dict[str, list[str]]:
    """Field errors of a checklist against the rubric and the community's applicable items."""
    rubric = ctx.rubric
    errors: list[str] = []
    unknown = sorted(set(checks) - set(rubric.checks))
    if unknown:
        errors.append(f"unknown check codes: {', '.join(unknown)}")
    missing = [
        check["code"]
        for item in rubric.items
        if rubric.applies(item, community)
        for check in item["checks"]
        if check["code"] not in checks
    ]
    if missing:
        errors.append(f"every check of every applicable item must be scored or \"na\"; missing: {', '.join(missing)}")
    for code, value in sorted(checks.items()):
        check = rubric.checks.get(code)
        if check is None or value == NA:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{code}: points must be a number or \"na\"")
        elif not 0 <= value <= check["max_points"]:
            errors.append(f"{code}: points must be between 0 and {check['max_points']:g}")
        elif check.get("critical") and value not in (0, check["max_points"]):
            errors.append(f"{code}: critical check scores 0 or {check['max_points']:g} (pass/fail)")
    return {"checks": errors} if errors else {}


#: SPEC §13: at most this many attachments per check
MAX_EVIDENCE_PER_CHECK = 20


def tidy_check_evidence(check_evidence: dict | None, ctx: RoundContext) -> tuple[dict, dict[str, list[str]]]:
    """``check_evidence`` as stored (check codes sorted, each list without repeats in its order, empty lists
    dropped) and its field errors: codes that are not checks of the rubric, more than
    :data:`MAX_EVIDENCE_PER_CHECK` attachments on a check. Whether the caller may read each attachment is
    the service's question."""
    tidy, errors = {}, []
    for code, hashes in sorted((check_evidence or {}).items()):
        if code not in ctx.rubric.checks:
            errors.append(f"{code}: not a check of rubric {ctx.round['rubric_id']}")
            continue
        unique = list(dict.fromkeys(hashes))
        if len(unique) > MAX_EVIDENCE_PER_CHECK:
            errors.append(f"{code}: at most {MAX_EVIDENCE_PER_CHECK} attachments per check")
        elif unique:
            tidy[code] = unique
    return tidy, ({"check_evidence": errors} if errors else {})


def item_sums(checks: dict, ctx: RoundContext) -> tuple[list[float], list[float], list[str]]:
    """Per rubric item: Σ points and Σ max_points over checks not "na"; critical checks scored 0."""
    rubric = ctx.rubric
    points = [0.0] * len(rubric.items)
    maxima = [0.0] * len(rubric.items)
    vetoes = []
    for k, item in enumerate(rubric.items):
        for check in item["checks"]:
            value = checks.get(check["code"], NA)
            if value == NA:
                continue
            points[k] += float(value)
            maxima[k] += float(check["max_points"])
            if check.get("critical") and value == 0:
                vetoes.append(check["code"])
    return points, maxima, vetoes


def prepare_version(data: dict, ctx: RoundContext, agency_id: str, key_id: str) -> dict:
    """One stored inspection version, with content hash, item sums and vetoes."""
    community = community_of_round(data["community_id"], ctx)
    errors = check_checklist(data["checks"], community, ctx)
    check_evidence, evidence_errors = tidy_check_evidence(data.get("check_evidence"), ctx)
    errors.update(evidence_errors)
    if errors:
        raise SubmissionError(errors)
    check_time("inspected_at", data["inspected_at"], ctx)
    content = {
        "inspection_id": str(data["inspection_id"]),
        "community_id": data["community_id"],
        "agency_id": agency_id,
        "inspector": data["inspector"],
        "inspected_at": to_stored(data["inspected_at"]),
        "checks": dict(sorted(data["checks"].items())),
        "notes": data.get("notes") or None,
        "evidence": list(data.get("evidence") or []),
    }
    stage = data.get("stage") or DEFAULT_STAGE
    if stage != DEFAULT_STAGE:
        # Hashed only when not the default: inspections stored before stages existed keep their hash,
        # so their replays stay replays.
        content["stage"] = stage
    if check_evidence:
        # likewise hashed only when there is some: a version without photos hashes as it always did
        content["check_evidence"] = check_evidence
    points, maxima, vetoes = item_sums(data["checks"], ctx)
    return {
        **content,
        "stage": stage,
        "content_hash": digest(content),
        "amend_reason": data.get("amend_reason"),
        "submitted_at": now_stored(),
        "key_id": key_id,
        "version": 1,
        "item_points": points,
        "item_max": maxima,
        "vetoes": vetoes,
    }


def select_latest(community_ids: Sequence[str], agency_ids: Sequence[str], inspected_at: Sequence[str],
                  seq: Sequence[int]) -> list[int]:
    """Indices of the considered inspections (SPEC §5): for each community and agency the latest
    ``inspected_at``, ties going to the one submitted last (highest ``seq``); ordered by (community, agency).

    >>> select_latest(["c", "c", "c"], ["a", "a", "b"], ["2018-09-01", "2018-09-02", "2018-09-01"], [1, 2, 3])
    [1, 2]
    """
    best: dict[tuple[str, str], int] = {}
    for m, key in enumerate(zip(community_ids, agency_ids)):
        b = best.get(key)
        if b is None or (inspected_at[m], seq[m]) > (inspected_at[b], seq[b]):
            best[key] = m
    return [best[k] for k in sorted(best)]


HISTORY_FIELDS = ("version", "inspector", "inspected_at", "stage", "checks", "notes", "evidence", "check_evidence",
                  "amend_reason", "submitted_at", "key_id")


def stage_of(version: dict) -> str:
    """A stored version's stage; versions stored before stages existed are acceptance inspections."""
    return version.get("stage") or DEFAULT_STAGE


def _version_view(version: dict) -> dict:
    return {**{k: version.get(k) for k in HISTORY_FIELDS}, "stage": stage_of(version),
            "check_evidence": version.get("check_evidence") or {}}


def evidence_hashes(version: dict) -> list[str]:
    """Every attachment a version's ``check_evidence`` names, once each, in the order of its checks."""
    return list(dict.fromkeys(h for hashes in (version.get("check_evidence") or {}).values() for h in hashes))


def inspection_view(stored: dict) -> dict:
    """Current version plus every version (oldest first), as the API shows it."""
    versions = stored["versions"]
    current = versions[-1]
    return {
        "inspection_id": stored["inspection_id"],
        "round_id": stored["round_id"],
        "community_id": stored["community_id"],
        "agency_id": stored["agency_id"],
        **_version_view(current),
        "vetoes": current.get("vetoes", []),
        "history": [_version_view(v) for v in versions],
    }
