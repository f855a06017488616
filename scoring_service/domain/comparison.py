"""Which items fell (SPEC §15, 前治后乱): an aftercare rubric's item against the acceptance rubric's
items it continues, named by the item's ``compares_to`` ({rubric_id: [item codes]}). Pure rules: no I/O.

For aftercare item *i* continuing acceptance items J, from the two score breakdowns (SPEC §6) of one
community, per source s ∈ {professional, resident}:

- then(s) = Σ w(j)·S(j) / Σ w(j) over the j ∈ J scored in the baseline round, w the acceptance rubric's
  item weights (undefined when none is scored), rounded to 2 decimals;
- now(s) = the aftercare round's S(i) (2 decimals);
- change(s) = now(s) − then(s) when both are defined.

The item's own ``baseline``, ``score`` and ``change`` combine the sources with a change by the
aftercare rubric's source weights, as the composite does (SPEC §5): Σ W(s)·x(s) / Σ W(s), each
rounded to 2 decimals half to even. An item fell when its change is below 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

#: the sources compared (the public's answers have no sample rule and are left out)
SOURCES = ("professional", "resident")
CENT = Decimal("0.01")


def _exact(value: float) -> Decimal:
    """A 2-decimal score as an exact decimal (its shortest repr)."""
    return Decimal(repr(float(value)))


def _cents(value: Decimal | None) -> float | None:
    return None if value is None else float(value.quantize(CENT, rounding=ROUND_HALF_EVEN))


def _weighted(pairs: list[tuple[Decimal, Decimal]]) -> Decimal | None:
    total = sum((w for w, _ in pairs), Decimal(0))
    return None if not pairs or total == 0 else sum((w * v for w, v in pairs), Decimal(0)) / total


def compared_codes(item: Mapping[str, Any], baseline_rubric: Mapping[str, Any]) -> list[str]:
    """The baseline rubric's item codes ``item`` continues (those the rubric has)."""
    known = {i["code"] for i in baseline_rubric["items"]}
    return [c for c in (item.get("compares_to") or {}).get(baseline_rubric["rubric_id"], ()) if c in known]


def item_changes(rubric: Mapping[str, Any], baseline_rubric: Mapping[str, Any], now: Mapping[str, Any],
                 then: Mapping[str, Any]) -> list[dict]:
    """One row per item of ``rubric`` that continues items of ``baseline_rubric`` and has a change in
    at least one source, in the rubric's order: ``{code, name_zh, compares_to: [{code, name_zh}],
    baseline, score, change, professional: {baseline, score, change}, resident: {…}}``, where
    ``compares_to`` names the baseline items scored in the baseline round (e.g. not an elevator item of a
    community without elevators).
    ``now`` and ``then`` are the community's score breakdowns in the aftercare and the baseline round.
    """
    before = {i["code"]: i for i in baseline_rubric["items"]}
    weights = {s: _exact(rubric["source_weights"][s]) for s in SOURCES}
    rows = []
    for item in rubric["items"]:
        codes = compared_codes(item, baseline_rubric)
        if not codes:
            continue
        parts, combined = {}, {"baseline": [], "score": [], "change": []}
        for source in SOURCES:
            score = (now[source]["items"] or {}).get(item["code"])
            earlier = [(_exact(before[c]["weight"]), _exact(v)) for c in codes
                       if (v := (then[source]["items"] or {}).get(c)) is not None]
            base = _cents(_weighted(earlier))
            change = None if score is None or base is None else _cents(_exact(score) - _exact(base))
            parts[source] = {"baseline": base, "score": score, "change": change}
            if change is not None:
                for name in combined:
                    combined[name].append((weights[source], _exact(parts[source][name])))
        if not combined["change"]:
            continue
        scored = [c for c in codes if any((then[s]["items"] or {}).get(c) is not None for s in SOURCES)]
        rows.append({
            "code": item["code"],
            "name_zh": item["name_zh"],
            "compares_to": [{"code": c, "name_zh": before[c]["name_zh"]} for c in scored],
            **{name: _cents(_weighted(pairs)) for name, pairs in combined.items()},
            **parts,
        })
    return rows


def fallen_items(rows: list[dict]) -> list[dict]:
    """The rows of :func:`item_changes` whose change is below 0, the largest fall first (ties by code)."""
    return sorted((r for r in rows if r["change"] < 0), key=lambda r: (r["change"], r["code"]))
