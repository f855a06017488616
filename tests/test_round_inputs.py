"""Round inputs read for scoring (issue 18 item 4, memory): smaller count tables, same scores and draws."""

from __future__ import annotations

import numpy as np
import pytest

from scoring_service.scoring.engine import CommunityInputs, SurveyCounts, district_index, score_communities
from scoring_service.scoring.uncertainty import rank_uncertainty
from scoring_service.services.round_inputs import survey_arrays
from scoring_service.store import RoundCounts
from scoring_service.store.sqlite import _ArrayRows

from .conftest import RUBRIC
from .test_scoring import QUOTAS, community, inspections_for

K = len(RUBRIC.items)


def round_counts(ids: list[str], largest: int, seed: int = 7) -> RoundCounts:
    """A resident and a public row per community, counts up to ``largest``."""
    rng = np.random.default_rng(seed)
    keys = sorted((cid, t) for cid in ids for t in ("public", "resident"))
    counts = rng.integers(0, largest + 1, size=(len(keys), K + 1, 5), dtype=np.int64)
    counts[0, 0, 0] = largest
    return RoundCounts(n_items=K, community_ids=[c for c, _ in keys], respondent_types=[t for _, t in keys],
                       responses=counts[:, K].sum(axis=1), counts=counts)


def as_int64(s: SurveyCounts) -> SurveyCounts:
    return SurveyCounts(s.items.astype(np.int64), s.overall.astype(np.int64), s.responses)


@pytest.mark.parametrize("largest, dtype", [(0, np.int16), (25, np.int16), (6553, np.int16), (6554, np.int32),
                                            (2**31 // 5 + 1, np.int64)])
def test_count_tables_take_the_smallest_type_whose_sums_of_five_fit(largest, dtype):
    ids = ["c1", "c2", "c3"]
    counts = round_counts(ids, largest)
    residents, public = survey_arrays(counts, ids)
    assert residents.items.dtype == public.overall.dtype == dtype
    tables = counts.tables()
    for c, cid in enumerate(ids):
        for kind, s in (("resident", residents), ("public", public)):
            assert s.items[c].tolist() == tables[(cid, kind)].counts[:K].tolist()
            assert s.overall[c].tolist() == tables[(cid, kind)].counts[K].tolist()
            assert s.responses[c] == tables[(cid, kind)].responses


def test_small_count_tables_score_and_draw_as_int64_ones():
    ids = [f"c{i}" for i in range(8)]
    inputs = CommunityInputs.build(RUBRIC, [community(cid, "d1" if i % 2 else "d2", 40 + 30 * i)
                                            for i, cid in enumerate(ids)])
    residents, public = survey_arrays(round_counts(ids[:6], 25), ids)  # two communities without answers
    assert residents.items.dtype == np.int16
    checks = {code: check["max_points"] / 2 for code, check in RUBRIC.checks.items()}
    inspections = inspections_for(len(ids), [(c, "A", checks) for c in range(0, len(ids), 2)])
    small = score_communities(RUBRIC, inputs, residents, public, inspections)
    wide = score_communities(RUBRIC, inputs, as_int64(residents), as_int64(public), inspections)
    for name, value in vars(wide).items():
        if isinstance(value, list):  # grades, flags
            assert getattr(small, name) == value, name
        else:
            np.testing.assert_array_equal(getattr(small, name), value, err_msg=name)
    districts = district_index(RUBRIC, QUOTAS, inputs, wide)
    reward = {"pool_fen": 10**6, "district_share_pct": 50, "top_districts": 1}
    spreads = [rank_uncertainty(RUBRIC, inputs, r, p, inspections, wide, districts, reward, draws=20, seed=3)
               for r, p in ((residents, public), (as_int64(residents), as_int64(public)))]
    for got, expected in zip(*spreads):
        for name, value in vars(expected).items():
            np.testing.assert_array_equal(getattr(got, name), value, err_msg=name)


def test_array_rows_grow_past_the_count_and_trim_below_it():
    grown = _ArrayRows((2,), np.float64, 1)
    for row in ([1.0, 2.0], [3.0, 4.0], [5.0, 6.0]):
        grown.add_bytes(np.array(row).tobytes())
    assert grown.array().tolist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    trimmed = _ArrayRows((), np.int64, 4)
    trimmed.add(7)
    assert trimmed.array().tolist() == [7]
    with pytest.raises(ValueError):
        trimmed.add_bytes(np.zeros(2).tobytes())


def test_round_reference_records_share_their_keys_districts_and_numbers(app, world):
    from scoring_service.services.results import round_reference

    ctx = app.extensions["scoring"]
    round_ = ctx.store.get_round(world["round_id"])
    records = round_reference(ctx, round_).communities
    assert len(records) >= 2
    first, second = records[0], records[1]
    assert all(a is b for a, b in zip(first, second))  # the same keys, one string each
    for key in ("renovation_year", "district_id"):
        same = [r for r in records[1:] if r[key] == first[key]]
        assert same and all(r[key] is first[key] for r in same), key
    assert records == [{**world["communities"][r["community_id"]]} for r in records]
