"""What a round covers (SPEC §3 Round, §15): its kind, the renovation years it covers, the stage of
the inspections it scores, and the 前治后乱 (backsliding) rule of an aftercare round. Pure rules: no I/O.

An acceptance round (the default; a round stored without ``kind``) covers the communities renovated
in its own ``year``; an aftercare round covers those renovated in any year of its ``covers_years``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

ACCEPTANCE = "acceptance"
AFTERCARE = "aftercare"
KINDS = (ACCEPTANCE, AFTERCARE)

#: the round fields of §15 (a round stores only those it was given)
ROUND_FIELDS = ("kind", "covers_years")

#: a drop of at least this much from the baseline is 前治后乱 (SPEC §15)
BACKSLIDING_DROP = Decimal("-10.00")


def round_kind(round_: Mapping[str, Any]) -> str:
    return round_.get("kind") or ACCEPTANCE


def is_aftercare(round_: Mapping[str, Any]) -> bool:
    return round_kind(round_) == AFTERCARE


def covered_years(round_: Mapping[str, Any]) -> tuple[int, ...]:
    """The renovation years of the communities a round covers, ascending."""
    if is_aftercare(round_):
        return tuple(sorted({int(y) for y in round_.get("covers_years") or ()}))
    return (int(round_["year"]),)


def covers(round_: Mapping[str, Any], community: Mapping[str, Any] | None) -> bool:
    """Whether the round covers the community (the one rule every caller uses)."""
    return community is not None and int(community["renovation_year"]) in covered_years(round_)


def coverage_text(round_: Mapping[str, Any]) -> str:
    """The years a round covers, for error messages: ``2018`` or ``2017, 2018``."""
    return ", ".join(str(y) for y in covered_years(round_))


def inspection_stage(round_: Mapping[str, Any]) -> str:
    """The stage of the inspections §5 scores in the round (SPEC §13): its kind."""
    return round_kind(round_)


def stored_round_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The §15 fields of validated round input as stored: only those given (so a round created
    without them keeps its content and digest), ``covers_years`` ascending without repeats."""
    out: dict[str, Any] = {}
    if data.get("kind") is not None:
        out["kind"] = data["kind"]
    if data.get("covers_years") is not None:
        out["covers_years"] = sorted({int(y) for y in data["covers_years"]})
    return out


def default_quotas(communities: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """An aftercare round's quotas when none are given: its covered communities per district."""
    quotas: dict[str, int] = {}
    for community in communities:
        quotas[community["district_id"]] = quotas.get(community["district_id"], 0) + 1
    return dict(sorted(quotas.items()))


def baseline_change(composite: float | None, baseline: float | None) -> float | None:
    """composite − baseline from the two 2-decimal values, exactly, as a 2-decimal number
    (None when either is missing)."""
    if composite is None or baseline is None:
        return None
    return float(_cents(composite) - _cents(baseline))


def backslid(change: float | None) -> bool:
    """前治后乱: the composite fell by 10.00 or more from its baseline."""
    return change is not None and _cents(change) <= BACKSLIDING_DROP


def _cents(value: float) -> Decimal:
    """A 2-decimal score as an exact decimal (its shortest repr, so 72.35 is 72.35, not 72.3499…)."""
    return Decimal(repr(float(value))).quantize(Decimal("0.01"))
