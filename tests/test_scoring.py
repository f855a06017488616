"""The scoring mathematics of SPEC §5, on hand-worked examples and properties."""

from __future__ import annotations

import math
import subprocess
import sys
from fractions import Fraction
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring_service.domain.inspections import select_latest
from scoring_service.store import InspectionRows
from scoring_service.scoring import competition_rank, largest_remainder, ranking_order, required_responses, wilson_interval
from scoring_service.scoring.engine import (
    CommunityInputs,
    InspectionInputs,
    SurveyCounts,
    agency_item_scores,
    allocate_rewards,
    district_index,
    score_communities,
    source_weights,
)
from scoring_service.scoring.rounding import round_score
from scoring_service.scoring.stats import Z95, Z998, below_rate
from scoring_service.scoring.uncertainty import Draws, funnel_limits, rank_uncertainty, score_draws

from .conftest import ROOT, RUBRIC

K = len(RUBRIC.items)
IDX = {code: k for k, code in enumerate(RUBRIC.item_codes)}
CHECK_MAX = {c["code"]: c["max_points"] for c in RUBRIC.checks.values()}


# -- Wilson interval: Newcombe (1998), Table I ------------------------------------

@pytest.mark.parametrize(
    "successes, n, low, high",
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_matches_newcombe_table_1(successes, n, low, high):
    interval = wilson_interval(successes, n)
    assert interval.rate == pytest.approx(successes / n)
    assert round(interval.low, 4) == low
    assert round(interval.high, 4) == high


def test_wilson_without_answers_is_undefined():
    assert all(np.isnan(x) for x in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


@given(st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_interval_contains_rate_and_stays_in_unit_interval(pair):
    successes, n = pair
    rate, low, high = wilson_interval(successes, n)
    assert 0.0 <= low <= rate <= high <= 1.0


# -- sample rule ----------------------------------------------------------------

@pytest.mark.parametrize(
    "households, required",
    [(150, 15), (151, 16), (99, 10), (100, 10), (1, 10), (1000, 100), (5000, 100), (290, 29), (110, 11)],
)
def test_required_responses_is_exact(households, required):
    assert required_responses(households, 0.10, 10, 100) == required


def test_share_is_taken_as_the_decimal_written():
    # binary floats: 0.07 * 100 = 7.000000000000001, whose ceiling is 8
    assert math.ceil(0.07 * 100) == 8
    assert required_responses(100, 0.07, 0, 100) == 7
    assert required_responses(150, 0.10, 10, 100) == 15


# -- ranking ---------------------------------------------------------------------

def test_competition_ranking_and_tie_order():
    scores = np.array([85.5, 90.0, 85.5, 70.0, 90.0])
    ids = ["c", "b", "a", "d", "e"]
    assert competition_rank(scores).tolist() == [3, 1, 3, 5, 1]
    assert [ids[i] for i in ranking_order(scores, ids)] == ["b", "e", "a", "c", "d"]


def test_rounding_is_half_to_even_once():
    assert round_score(84.125) == 84.12  # exactly representable: to even
    assert round_score(84.375) == 84.38
    assert round_score(float("nan")) is None


# -- rewards ---------------------------------------------------------------------

def test_largest_remainder_worked_example():
    # 1000 fen by weights 3:3:1 → exact shares 428 4/7, 428 4/7, 142 6/7
    # floors 428 + 428 + 142 = 998; the two fen left go to the largest
    # remainders: c (6/7), then a and b tie at 4/7 and the id decides: a.
    allocation = largest_remainder(1000, [("b", 3), ("a", 3), ("c", 1)])
    assert allocation.amounts == {"a": 429, "b": 428, "c": 143}
    assert allocation.unallocated == 0


def test_largest_remainder_ties_broken_by_id():
    assert largest_remainder(100, [("z", 1), ("y", 1), ("x", 1)]).amounts == {"x": 34, "y": 33, "z": 33}


def test_pool_without_receivers_is_unallocated():
    assert largest_remainder(500, []) == ({}, 500)
    assert largest_remainder(500, [("a", 0)]) == ({}, 500)


@given(st.integers(0, 10**12), st.lists(st.integers(0, 10**7), min_size=0, max_size=40))
def test_reward_amounts_always_sum_to_pool(pool, weights):
    allocation = largest_remainder(pool, [(f"u{i:03d}", w) for i, w in enumerate(weights)])
    assert sum(allocation.amounts.values()) + allocation.unallocated == pool
    total = sum(weights)
    for rid, amount in allocation.amounts.items():
        exact = pool * weights[int(rid[1:])] / total
        assert math.floor(exact) <= amount <= math.floor(exact) + 1


# -- one community, worked by hand ----------------------------------------------

def community(cid="c1", district="d1", households=100, elevator=False, heating=False):
    return {"community_id": cid, "district_id": district, "households": households,
            "has_elevator": elevator, "heating_retrofit": heating}


def counts_for(n_communities, answers: dict[int, dict[str, dict[int, int]]], overall: dict[int, dict[int, int]],
               responses: dict[int, int]) -> SurveyCounts:
    """answers[c][item][level] = count; overall[c][level] = count."""
    s = SurveyCounts.zeros(n_communities, K)
    for c, items in answers.items():
        for code, levels in items.items():
            for level, count in levels.items():
                s.items[c, IDX[code], level - 1] = count
    for c, levels in overall.items():
        for level, count in levels.items():
            s.overall[c, level - 1] = count
    for c, n in responses.items():
        s.responses[c] = n
    return s


def inspections_for(n_communities, rows: list[tuple[int, str, dict[str, float | str]]]) -> InspectionInputs:
    """rows: (community index, agency, {check_code: points|"na"}) → per-item sums."""
    points = np.zeros((len(rows), K))
    maxima = np.zeros((len(rows), K))
    agencies = [[] for _ in range(n_communities)]
    vetoes = [[] for _ in range(n_communities)]
    for m, (c, agency, checks) in enumerate(rows):
        agencies[c].append(agency)
        for code, value in checks.items():
            if value == "na":
                continue
            k = IDX[code.split(".")[0]]
            points[m, k] += value
            maxima[m, k] += CHECK_MAX[code]
            if RUBRIC.checks[code].get("critical") and value == 0:
                vetoes[c].append(code)
    return InspectionInputs(np.array([r[0] for r in rows], dtype=np.int64), points, maxima, agencies, vetoes)


def full_marks(c: dict, **overrides) -> dict:
    checks = {code: check["max_points"] for code, check in RUBRIC.checks.items()
              if RUBRIC.applies(next(i for i in RUBRIC.items if i["code"] == check["item"]), c)}
    checks.update(overrides)
    return checks


def worked_example(residents_n=10, satisfied=8, extra_rows=(), public=None, elevator=False):
    """Community without elevator or heating retrofit: 9 applicable items, Σw = 81.

    Agency A: roads surface 3/6, curbs 4/4, barrier-free "na" → roads 70; the rest full.
    Agency B: roads all "na" (undefined); water drainage 6/6, supply 0/4 → 60; the rest full.
    P(roads) = 70, P(water) = (100 + 60) / 2 = 80, other items 100:
        P = (10·70 + 10·80 + 61·100) / 81 = 7600 / 81 = 93.827…
    Residents: roads 6×4 + 4×5 → (6·80 + 4·100)/10 = 88; water 10×3 → 60:
        R = (10·88 + 10·60) / 20 = 74
    """
    c = community(households=100, elevator=elevator)
    rows = [
        (0, "A", full_marks(c, **{"roads.surface": 3, "roads.curbs": 4, "roads.barrier_free": "na"})),
        (0, "B", full_marks(c, **{"roads.surface": "na", "roads.curbs": "na", "roads.barrier_free": "na",
                                  "water.drainage": 6, "water.supply_pipes": 0})),
        *extra_rows,
    ]
    residents = counts_for(
        1,
        {0: {"roads": {4: 6, 5: 4}, "water": {3: 10}, "elevator": {1: 10}}},  # elevator: not applicable, ignored
        {0: {5: satisfied, 2: 10 - satisfied}},
        {0: residents_n},
    )
    pub = public or SurveyCounts.zeros(1, K)
    inputs = CommunityInputs.build(RUBRIC, [c])
    return score_communities(RUBRIC, inputs, residents, pub, inspections_for(1, rows)), inputs


def test_worked_example_professional_resident_composite():
    scores, _ = worked_example()
    assert scores.professional_items[0, IDX["roads"]] == pytest.approx(70.0)
    assert scores.professional_items[0, IDX["water"]] == pytest.approx(80.0)
    assert np.isnan(scores.professional_items[0, IDX["elevator"]])  # not applicable
    assert scores.professional[0] == pytest.approx(7600 / 81)
    assert scores.resident_items[0, IDX["roads"]] == pytest.approx(88.0)
    assert scores.resident[0] == pytest.approx(74.0)
    assert np.isnan(scores.public[0])
    # composite over the defined sources P and R: (0.5·93.827 + 0.4·74) / 0.9 = 85.0151
    assert scores.composite[0] == pytest.approx((0.5 * 7600 / 81 + 0.4 * 74) / 0.9)
    assert scores.composite_rounded[0] == 85.02
    assert scores.grade == ["good"]
    assert scores.flags == [[]]
    # 8 of 10 satisfied is exactly the 0.80 acceptance rate: not below it
    assert scores.satisfaction_rate[0] == pytest.approx(0.8)
    assert scores.required_responses[0] == 10


def test_public_source_joins_the_composite():
    public = counts_for(1, {0: {"roads": {5: 1}}}, {}, {0: 1})
    scores, _ = worked_example(public=public)
    assert scores.public[0] == pytest.approx(100.0)
    assert scores.composite[0] == pytest.approx(0.5 * 7600 / 81 + 0.4 * 74 + 0.1 * 100)
    # 46.9136 + 29.6 + 10 = 86.5136 → 86.51
    assert scores.composite_rounded[0] == 86.51
    assert scores.grade == ["good"]


def test_insufficient_sample_caps_at_pass():
    scores, _ = worked_example(residents_n=9)  # households 100 need 10
    assert "insufficient_sample" in scores.flags[0]
    assert scores.composite_rounded[0] == 85.02
    assert scores.grade == ["pass"]


def test_satisfaction_below_acceptance_caps_at_pass():
    scores, _ = worked_example(satisfied=7)
    assert "satisfaction_below_acceptance" in scores.flags[0]
    assert scores.grade == ["pass"]


def test_veto_makes_it_fail():
    c = community(households=100)
    veto_row = (0, "C", full_marks(c, **{"illegal_structures.removed": 0}))
    scores, _ = worked_example(extra_rows=[veto_row])
    assert "veto:illegal_structures.removed" in scores.flags[0]
    assert scores.grade == ["fail"]


def test_pending_sources_leave_composite_and_grade_null():
    c = community()
    inputs = CommunityInputs.build(RUBRIC, [c, community("c2")])
    residents = counts_for(2, {0: {"roads": {4: 12}}}, {0: {4: 12}}, {0: 12})
    inspections = inspections_for(2, [(1, "A", full_marks(c))])
    scores = score_communities(RUBRIC, inputs, residents, SurveyCounts.zeros(2, K), inspections)
    assert scores.flags[0][0] == "pending_inspection" and scores.grade[0] is None
    assert scores.flags[1][0] == "pending_survey" and scores.grade[1] is None
    assert scores.rank.tolist() == [0, 0]


def test_applicability_uses_community_flags():
    with_elevator = community(elevator=True, heating=True)
    inputs = CommunityInputs.build(RUBRIC, [community(), with_elevator])
    assert inputs.applicable[0].sum() == 9 and inputs.applicable[1].sum() == 11


# -- inspection choice -------------------------------------------------------------

def test_latest_inspection_per_agency_ties_by_submission_order():
    rows = InspectionRows(
        community_ids=["c", "c", "c", "c", "d"],
        agency_ids=["A", "A", "A", "B", "A"],
        inspected_at=["2018-09-05", "2018-09-01", "2018-09-05", "2018-09-02", "2018-09-01"],
        seq=[3, 1, 2, 4, 5],
        points=np.zeros((5, K)), maxima=np.zeros((5, K)), vetoes=[[]] * 5,
    )
    # c/A: two on 09-05, the one submitted last (seq 3) wins over seq 2 and the older 09-01
    assert select_latest(rows.community_ids, rows.agency_ids, rows.inspected_at, rows.seq) == [0, 3, 4]


# -- district index and rewards, by hand ---------------------------------------------

def three_communities():
    """d1: c1 (100 households) and c2 (300); d2: c3 (200). Composites set via residents/professional.

    Every item gets the same score, so P = the item score and R likewise:
    c1: P=90, R=80 → (45+32)/0.9 = 85.56; c2: P=80, R=80 → 80; c3: P=100, R=100 → 100.
    """
    cs = [community("c1", "d1", 100), community("c2", "d1", 300), community("c3", "d2", 200)]
    inputs = CommunityInputs.build(RUBRIC, cs)
    level = {0: 4, 1: 4, 2: 5}
    residents = counts_for(3, {c: {code: {level[c]: 30} for code in RUBRIC.item_codes} for c in range(3)},
                           {c: {5: 30} for c in range(3)}, {c: 30 for c in range(3)})
    rows = [(c, "A", {code: m * frac for code, m in CHECK_MAX.items()})
            for c, frac in ((0, 0.9), (1, 0.8), (2, 1.0))]
    # critical checks must be 0 or max; at 0.9/0.8 they would be partial — use full marks there
    for c, _, checks in rows:
        for code in ("elevator.certificate", "illegal_structures.removed"):
            checks[code] = CHECK_MAX[code]
    scores = score_communities(RUBRIC, inputs, residents, SurveyCounts.zeros(3, K), inspections_for(3, rows))
    return inputs, scores


def test_district_index_and_rewards_worked_example():
    inputs, scores = three_communities()
    # with critical checks at full marks, P differs a little from 90/80: recompute from item scores
    p = scores.professional
    composite = (0.5 * p + 0.4 * np.array([80.0, 80.0, 100.0])) / 0.9
    assert scores.composite == pytest.approx(composite)
    districts = district_index(RUBRIC, {"d1": 4, "d2": 1, "d3": 2}, inputs, scores)
    assert districts.district_ids == ["d1", "d2", "d3"]
    q1 = (100 * composite[0] + 300 * composite[1]) / 400
    assert districts.quality == pytest.approx([q1, composite[2], 0.0])
    assert districts.progress == pytest.approx([50.0, 100.0, 0.0])  # 2 of 4, 1 of 1, none
    assert districts.index == pytest.approx([0.7 * q1 + 15, 0.7 * composite[2] + 30, 0.0])
    assert districts.rank.tolist() == [2, 1, 3]

    reward = {"pool_fen": 1001, "district_share_pct": 40, "top_districts": 2}
    rewards = allocate_rewards(reward, RUBRIC, inputs, scores, districts)
    assert rewards.district_pool_fen == 400 and rewards.community_pool_fen == 601
    w1, w2 = (int(round(float(round_score(districts.index[i])) * 100)) for i in (0, 1))
    assert sum(rewards.districts.values()) == 400 and set(rewards.districts) == {"d1", "d2"}
    assert rewards.districts["d1"] in (400 * w1 // (w1 + w2), 400 * w1 // (w1 + w2) + 1)
    # c3 is excellent (×3 × 200 households); c1 good? depends on its composite
    eligible = {cid: g for cid, g in zip(inputs.ids, scores.grade) if g in ("excellent", "good")}
    assert set(rewards.communities) == set(eligible)
    assert sum(rewards.communities.values()) == 601


def test_district_ties_share_rank_and_all_get_rewards():
    inputs, scores = three_communities()
    # two districts with no graded communities tie at D = 0; the top one alone is eligible
    districts = district_index(RUBRIC, {"d2": 1, "x": 1, "y": 1}, inputs, scores)
    assert districts.rank.tolist() == [1, 2, 2]
    rewards = allocate_rewards({"pool_fen": 100, "district_share_pct": 100, "top_districts": 3},
                               RUBRIC, inputs, scores, districts)
    assert rewards.districts == {"d2": 100}  # D = 0 is never eligible


# -- properties ------------------------------------------------------------------

@st.composite
def rounds(draw):
    n = draw(st.integers(1, 8))
    cs = [community(f"c{i}", draw(st.sampled_from(["d1", "d2"])), draw(st.integers(1, 400)),
                    draw(st.booleans()), draw(st.booleans())) for i in range(n)]
    items = np.array(draw(st.lists(st.integers(0, 6), min_size=n * K * 5, max_size=n * K * 5))).reshape(n, K, 5)
    overall = np.array(draw(st.lists(st.integers(0, 8), min_size=n * 5, max_size=n * 5))).reshape(n, 5)
    responses = np.maximum(items.sum(axis=2).max(axis=1), overall.sum(axis=1))
    rows = []
    for c in range(n):
        for agency in draw(st.sets(st.sampled_from("AB"))):
            checks = {}
            for code, check in RUBRIC.checks.items():
                if check.get("critical"):
                    checks[code] = draw(st.sampled_from([0, check["max_points"], check["max_points"], "na"]))
                else:
                    checks[code] = draw(st.one_of(st.just("na"), st.integers(0, int(check["max_points"]))))
            rows.append((c, agency, checks))
    return cs, SurveyCounts(items, overall, responses), rows


@settings(max_examples=60, deadline=None)
@given(rounds(), st.randoms())
def test_permuting_communities_changes_no_result(data, rnd):
    cs, residents, rows = data
    n = len(cs)
    base = score_communities(RUBRIC, CommunityInputs.build(RUBRIC, cs), residents, SurveyCounts.zeros(n, K),
                             inspections_for(n, rows))
    perm = list(range(n))
    rnd.shuffle(perm)
    inverse = {old: new for new, old in enumerate(perm)}
    shuffled_rows = [(inverse[c], a, ch) for c, a, ch in reversed(rows)]
    shuffled = SurveyCounts(residents.items[perm], residents.overall[perm], residents.responses[perm])
    other = score_communities(RUBRIC, CommunityInputs.build(RUBRIC, [cs[i] for i in perm]), shuffled,
                              SurveyCounts.zeros(n, K), inspections_for(n, shuffled_rows))
    for new, old in enumerate(perm):
        assert other.grade[new] == base.grade[old]
        assert sorted(other.flags[new]) == sorted(base.flags[old])
        assert other.rank[new] == base.rank[old]
        np.testing.assert_allclose(other.composite[new], base.composite[old], rtol=1e-12, equal_nan=True)


@settings(max_examples=80, deadline=None)
@given(rounds())
def test_grade_never_exceeds_its_caps(data):
    cs, residents, rows = data
    n = len(cs)
    scores = score_communities(RUBRIC, CommunityInputs.build(RUBRIC, cs), residents, SurveyCounts.zeros(n, K),
                               inspections_for(n, rows))
    for c in range(n):
        grade, flags = scores.grade[c], scores.flags[c]
        if any(f.startswith("veto:") for f in flags) and grade is not None:
            assert grade == "fail"
        if "insufficient_sample" in flags or "satisfaction_below_acceptance" in flags:
            assert grade not in ("excellent", "good")
        if grade is not None:
            assert not math.isnan(scores.composite[c])
            threshold = {g.grade: g.min for g in RUBRIC.grades}[grade]
            assert scores.composite_rounded[c] >= threshold or grade in ("fail", "pass")


@settings(max_examples=50, deadline=None)
@given(rounds(), st.integers(0, 10**10), st.integers(0, 100), st.integers(0, 3))
def test_rewards_sum_to_pool_for_any_round(data, pool, pct, top):
    cs, residents, rows = data
    n = len(cs)
    inputs = CommunityInputs.build(RUBRIC, cs)
    scores = score_communities(RUBRIC, inputs, residents, SurveyCounts.zeros(n, K), inspections_for(n, rows))
    districts = district_index(RUBRIC, {"d1": 3, "d2": 2}, inputs, scores)
    rewards = allocate_rewards({"pool_fen": pool, "district_share_pct": pct, "top_districts": top},
                               RUBRIC, inputs, scores, districts)
    total = sum(rewards.districts.values()) + sum(rewards.communities.values()) + rewards.unallocated_fen
    assert total == pool
    assert rewards.district_pool_fen == pool * pct // 100


@given(st.lists(st.integers(1, 100_000), min_size=1, max_size=50),
       st.sampled_from([0.1, 0.07, 0.15, 0.333, 0.05]))
def test_sample_rule_on_an_array_is_the_exact_rule_per_element(households, share):
    exact = [max(10, min(100, math.ceil(Fraction(repr(share)) * h))) for h in households]
    assert required_responses(households, share, 10, 100).tolist() == exact
    assert [int(required_responses(h, share, 10, 100)) for h in households] == exact


def test_sample_rule_and_acceptance_stay_exact_beyond_int64():
    # 4·10¹⁸ households × 3/20 and 1.2·10¹⁸ × 10 overflow int64: Python integers take over
    assert int(required_responses(4 * 10**18 + 1, 0.15, 0, 10**19)) == 600_000_000_000_000_001
    n = 4 * 10**18
    assert below_rate([12 * 10**17 - 1, 12 * 10**17], n, 0.3).tolist() == [True, False]
    assert (12 * 10**17 - 1) / n == 0.3  # what binary floats would have compared


@given(st.lists(st.integers(0, 400).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))), max_size=40))
def test_wilson_and_acceptance_on_arrays_equal_them_per_element(pairs):
    successes = np.array([s for s, _ in pairs], dtype=np.int64)
    n = np.array([t for _, t in pairs], dtype=np.int64)
    rate, low, high = wilson_interval(successes, n)
    flags = below_rate(successes, n, 0.8)
    for i, (s, t) in enumerate(pairs):
        np.testing.assert_array_equal([rate[i], low[i], high[i]], list(wilson_interval(s, t)))
        if t == 0:
            assert np.isnan(rate[i]) and not flags[i]
        else:
            assert flags[i] == (Fraction(s, t) < Fraction(4, 5))


def test_one_z_per_quantile():
    # SPEC §5 writes z to 16 digits; the standard library's quantile is two units in the last
    # place away, so the SPEC's constant is the one kept (stats.Z95, used by Wilson and the funnel).
    assert Z95 == 1.959963984540054
    assert NormalDist().inv_cdf(0.975) != Z95
    assert abs(NormalDist().inv_cdf(0.975) - Z95) <= 2 * math.ulp(Z95)
    assert Z998 == 3.090232306167813  # the 99.8 % funnel limit, computed once in stats
    f = funnel_limits(np.array([40, 10]), np.array([50, 50]))
    se = math.sqrt(0.5 * 0.5 / 50)
    assert f.low95.tolist() == [0.5 - Z95 * se] * 2 and f.high998.tolist() == [0.5 + Z998 * se] * 2


def test_scoring_imports_neither_flask_nor_marshmallow():
    code = ("import sys, scoring_service.scoring.engine, scoring_service.scoring.uncertainty; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'flask', 'marshmallow', 'werkzeug'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- uncertainty: the draws score with the engine --------------------------------------

QUOTAS = {"d1": 3, "d2": 2, "d3": 1}


def identity_draw(inputs: CommunityInputs, residents: SurveyCounts, inspections: InspectionInputs) -> Draws:
    """One draw that perturbs no weight (factors exactly 1) and resamples nothing."""
    overall = residents.overall
    return Draws(
        item_weights=RUBRIC.weights[None, :] * np.ones((1, K)),
        source_weights=source_weights(RUBRIC)[None, :] * np.ones((1, 3)),
        resident_items=residents.items[None],
        satisfied=(overall[:, 3] + overall[:, 4])[None],
        group=np.arange(len(inputs)),
        agency_scores=agency_item_scores(inspections)[None],
    )


@settings(max_examples=80, deadline=None)
@given(rounds(), st.lists(st.integers(0, 3), min_size=8 * K * 5, max_size=8 * K * 5), st.integers(0, 3))
def test_a_draw_without_perturbation_or_resampling_is_the_nominal_result(data, public_counts, top):
    cs, residents, rows = data
    n = len(cs)
    public = SurveyCounts(np.array(public_counts[:n * K * 5]).reshape(n, K, 5), np.zeros((n, 5), dtype=np.int64),
                          np.zeros(n, dtype=np.int64))
    inputs = CommunityInputs.build(RUBRIC, cs)
    inspections = inspections_for(n, rows)
    nominal = score_communities(RUBRIC, inputs, residents, public, inspections)
    districts = district_index(RUBRIC, QUOTAS, inputs, nominal)
    drawn = score_draws(RUBRIC, inputs, residents, inspections, nominal, districts, top,
                        identity_draw(inputs, residents, inspections))

    np.testing.assert_array_equal(drawn.composite[0], nominal.composite)  # exactly, NaN where pending
    graded = nominal.grade_index >= 0
    assert drawn.grade_index[0][graded].tolist() == nominal.grade_index[graded].tolist()
    assert drawn.community_rank[0].tolist() == nominal.rank[nominal.rank > 0].tolist()
    np.testing.assert_array_equal(drawn.district_index[0], districts.index)
    assert drawn.district_rank[0].tolist() == districts.rank.tolist()
    # the reward sets are those the allocation pays
    rewards = allocate_rewards({"pool_fen": 10**6, "district_share_pct": 50, "top_districts": top},
                               RUBRIC, inputs, nominal, districts)
    assert {inputs.ids[c] for c in np.flatnonzero(drawn.reward_eligible[0])} == set(rewards.communities)
    assert {districts.district_ids[d] for d in np.flatnonzero(drawn.district_rewarded[0])} == set(rewards.districts)


@st.composite
def settled_rounds(draw):
    """Rounds whose data leave nothing to resample: one answer level per community, one agency each."""
    n = draw(st.integers(1, 8))
    cs = [community(f"c{i}", draw(st.sampled_from(["d1", "d2"])), draw(st.integers(1, 400)),
                    draw(st.booleans()), draw(st.booleans())) for i in range(n)]
    items = np.zeros((n, K, 5), dtype=np.int64)
    overall = np.zeros((n, 5), dtype=np.int64)
    for c in range(n):
        answers = draw(st.integers(0, 30))
        items[c, :, draw(st.integers(0, 4))] = answers
        overall[c, draw(st.integers(0, 4))] = answers
    rows = [(c, "A", {code: draw(st.sampled_from([0, check["max_points"] / 2, check["max_points"]]))
                      for code, check in RUBRIC.checks.items()})
            for c in range(n) if draw(st.booleans())]
    return cs, SurveyCounts(items, overall, items[:, 0].sum(axis=1)), rows


@settings(max_examples=40, deadline=None)
@given(settled_rounds(), st.integers(0, 2**32), st.integers(0, 3))
def test_without_perturbation_every_draw_of_a_settled_round_ranks_as_nominal(data, seed, top):
    cs, residents, rows = data
    n = len(cs)
    inputs = CommunityInputs.build(RUBRIC, cs)
    inspections = inspections_for(n, rows)
    nominal = score_communities(RUBRIC, inputs, residents, SurveyCounts.zeros(n, K), inspections)
    districts = district_index(RUBRIC, QUOTAS, inputs, nominal)
    reward = {"pool_fen": 10**6, "district_share_pct": 50, "top_districts": top}
    communities, district_spread = rank_uncertainty(RUBRIC, inputs, residents, SurveyCounts.zeros(n, K), inspections,
                                                    nominal, districts, reward, draws=7, seed=seed, perturbation=0.0)
    ranked = nominal.rank > 0
    for spread, ranks in ((communities, nominal.rank[ranked]), (district_spread, districts.rank)):
        assert spread.median.tolist() == spread.low.tolist() == spread.high.tolist() == ranks.tolist()
    rewards = allocate_rewards(reward, RUBRIC, inputs, nominal, districts)
    ranked_ids = [inputs.ids[c] for c in np.flatnonzero(ranked)]
    assert communities.reward_share.tolist() == [float(cid in rewards.communities) for cid in ranked_ids]
    assert district_spread.reward_share.tolist() == [float(d in rewards.districts) for d in districts.district_ids]


@given(st.lists(st.tuples(st.sampled_from([70.0, 80.5, 80.5, 90.0, 65.25]), st.sampled_from("abc")), max_size=30))
def test_rank_within_group_equals_ranking_each_group_alone(pairs):
    from scoring_service.scoring.ranking import competition_rank_within

    scores = np.array([s for s, _ in pairs])
    groups = np.array([g for _, g in pairs])
    ranks = competition_rank_within(scores, groups)
    for g in set(groups.tolist()):
        members = groups == g
        assert ranks[members].tolist() == competition_rank(scores[members]).tolist()
