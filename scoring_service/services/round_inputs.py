"""Round inputs: the store's statistics and inspection rows as the arrays the scoring engine takes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..domain.inspections import select_latest
from ..scoring.engine import LEVELS, CommunityInputs, InspectionInputs, SurveyCounts
from ..store import InspectionRows, RoundCounts


def survey_arrays(counts: RoundCounts, ids: list[str]) -> tuple[SurveyCounts, SurveyCounts]:
    """Kept statistics placed in the round's community order, one table per respondent type.

    The tables take the smallest signed integer type from int16 up that holds five times any count, so
    every sum the scoring takes of a community's levels fits (numpy's own sums over an axis count in
    int64 anyway): the same values in a quarter of int64's bytes for up to 6,553 answers a cell. Not
    int8: a community's cells would then overflow from 26 answers on in any sum of six cells or product
    with a small number, a margin too thin for money.
    """
    n_items = counts.n_items
    position = {cid: i for i, cid in enumerate(ids)}
    rows = np.fromiter((position.get(cid, -1) for cid in counts.community_ids), dtype=np.int64,
                       count=len(counts.community_ids))
    low, high = int(counts.counts.min(initial=0)), int(counts.counts.max(initial=0))
    dtype = next(t for t in (np.int16, np.int32, np.int64)
                 if np.iinfo(t).min <= LEVELS * low and LEVELS * high <= np.iinfo(t).max)
    arrays = []
    for respondent_type in ("resident", "public"):
        mask = rows >= 0
        mask &= np.fromiter((t == respondent_type for t in counts.respondent_types), dtype=bool, count=len(rows))
        chosen = rows[mask]
        cells = np.zeros((len(ids), n_items + 1, 5), dtype=dtype)
        responses = np.zeros(len(ids), dtype=np.int64)
        cells[chosen] = counts.counts[mask]
        responses[chosen] = counts.responses[mask]
        arrays.append(SurveyCounts(items=cells[:, :n_items], overall=cells[:, n_items], responses=responses))
    return arrays[0], arrays[1]


def inspection_arrays(rows: InspectionRows, ids: list[str]) -> InspectionInputs:
    position = {cid: i for i, cid in enumerate(ids)}
    chosen = [m for m in select_latest(rows.community_ids, rows.agency_ids, rows.inspected_at, rows.seq) if rows.community_ids[m] in position]
    agencies: list[list[str]] = [[] for _ in ids]
    vetoes: list[list[str]] = [[] for _ in ids]
    for m in chosen:
        c = position[rows.community_ids[m]]
        agencies[c].append(rows.agency_ids[m])
        if rows.vetoes[m]:
            vetoes[c].extend(rows.vetoes[m])
    return InspectionInputs(
        community=np.array([position[rows.community_ids[m]] for m in chosen], dtype=np.int64),
        points=rows.points[chosen],
        max_points=rows.maxima[chosen],
        agencies=agencies,
        vetoes=vetoes,
        row_agency=[rows.agency_ids[m] for m in chosen],
    )


@dataclass
class Reference:
    """A round's communities and names; cached until reference data changes."""

    communities: list[dict]
    inputs: CommunityInputs
    district_names: dict[str, str | None]
