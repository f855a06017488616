"""The 前治后乱 list of an aftercare round (SPEC §15, §16; issue 17 item 5): GET /rounds/{r}/backsliding,
with the items that fell most, worked by hand on both stores; and the rubric's ``compares_to``.

r2018 (rubric shenyang-2018, every check at full marks, so every P(j) = 100):
- heping-002 (no elevator, no heating retrofit) answers cleanliness 5, parking 5, illegal_structures 4,
  water 4, lighting 5, facilities 3, greenery 4 (R: 100, 100, 80, 80, 100, 60, 80; weights 9, 9, 9, 10, 8,
  10, 8, Σ 63): R = 5360 / 63 = 85.0794, composite = (0.5 × 100 + 0.4 × 85.0794) / 0.9 = 93.37.
  Its 后续管理落实 is recorded.
- shenhe-001 answers cleanliness 5: composite 100.00.
- heping-001 answers roads 4, water 5 (conftest's survey); not scored again in 2019.

a2019 (aftercare, rubric shenyang-aftercare, weights cleaning 20, order 20, repairs 20, greenery_upkeep 10,
management 20, funds 10):
- heping-002: cleaning checks 3/6, 2/5, 1/4 → P 40; order's e-bike check 0/4 → P 80; the rest full → 100.
  Answers cleaning 2, order 4, repairs 4, greenery_upkeep 4, management 3, funds 3 (R 40, 80, 80, 80, 60,
  60). P = 8400 / 100 = 84, R = 6600 / 100 = 66, composite = (42 + 26.4) / 0.9 = 76.00; change −17.37.
  Items (sources P 0.5, R 0.4):
  cleaning ↔ cleanliness: P 100 → 40, R 100 → 40: −60.00 (baseline 100, score 40).
  order ↔ parking + illegal_structures (9, 9): P 100 → 80 (−20), R 90 → 80 (−10):
  (0.5 × −20 + 0.4 × −10) / 0.9 = −15.56; baseline (50 + 36) / 0.9 = 95.56, score 80.
  repairs ↔ water, lighting, facilities (elevator not applicable): R (800 + 800 + 600) / 28 = 78.57 → 80,
  +1.43: P 0, so +0.64, not fallen. greenery_upkeep ↔ greenery: no change, not fallen.
- shenhe-001: full marks, answers cleaning 2: P 100, R 40, composite 73.33, change −26.67; cleaning: P 0,
  R −60 → (0.4 × −60) / 0.9 = −26.67.
"""

from __future__ import annotations

import json

import pytest

from scoring_service.domain.comparison import fallen_items, item_changes
from scoring_service.domain.rubric_schema import load_rubric_file

from .conftest import ROOT, ROUND, inspection, survey
from .test_aftercare import A, ACCEPTANCE, AFTERCARE, IN_2019, post, rows
from .test_result_schemas import conforms, document  # noqa: F401  (the OpenAPI checks of the result bodies)

CARE = load_rubric_file(ROOT / "rubrics" / "shenyang-aftercare.json")
CARE_ROUND = {**AFTERCARE, "rubric_id": "shenyang-aftercare"}
TEMPLATE = "/backsliding"


def care_checks(points: dict | None = None) -> dict:
    """Every check of the aftercare rubric at full marks, but ``points``."""
    return {c["code"]: (points or {}).get(c["code"], c["max_points"]) for i in CARE.items for c in i["checks"]}


@pytest.fixture
def fallen(client, keys, world):
    admin, agency, c = keys.header("admin"), keys.header("agency_a"), world["communities"]
    for community_id, answers in (
            ("heping-002", {"cleanliness": 5, "parking": 5, "illegal_structures": 4, "water": 4, "lighting": 5,
                            "facilities": 3, "greenery": 4}),
            ("shenhe-001", {"cleanliness": 5}),
            ("heping-001", {"roads": 4, "water": 5})):
        post(client, agency, f"{ACCEPTANCE}/inspections", inspection(c[community_id]))
        post(client, admin, f"{ACCEPTANCE}/surveys", survey(community_id, answers=answers, overall=5))
    r = client.put(f"{ACCEPTANCE}/communities/heping-002/milestones/management_assigned",
                   json={"reached_on": "2018-09-28", "management_mode": "self_managed"}, headers=admin)
    assert r.status_code == 201, r.get_json()
    post(client, admin, f"{ACCEPTANCE}/publish", expect=200)
    care = json.loads((ROOT / "rubrics" / "shenyang-aftercare.json").read_text(encoding="utf-8"))
    post(client, admin, "/api/v1/rubrics", care)
    post(client, admin, "/api/v1/rounds", CARE_ROUND)
    at = {"stage": "aftercare", "inspected_at": "2019-09-12T09:00:00+08:00"}
    post(client, agency, f"{A}/inspections", inspection(c["heping-002"], checks=care_checks({
        "cleaning.daily_sweeping": 3, "cleaning.refuse_cleared": 2, "cleaning.no_clutter": 1,
        "order.ebike_charging": 0}), **at))
    post(client, admin, f"{A}/surveys", survey("heping-002", answers={
        "cleaning": 2, "order": 4, "repairs": 4, "greenery_upkeep": 4, "management": 3, "funds": 3}, overall=2,
        **IN_2019))
    post(client, agency, f"{A}/inspections", inspection(c["shenhe-001"], checks=care_checks(), **at))
    post(client, admin, f"{A}/surveys", survey("shenhe-001", answers={"cleaning": 2}, overall=2, **IN_2019))
    return keys


def source(baseline, score, change) -> dict:
    return {"baseline": baseline, "score": score, "change": change}


HEPING_002 = {
    "community_id": "heping-002", "name_zh": "三好里", "district_id": "heping", "composite": 76.0,
    "grade": "pass", "grade_zh": "合格", "baseline": 93.37, "change": -17.37,
    "flags": ["insufficient_sample", "satisfaction_below_acceptance", "backsliding"],
    "baseline_round_id": "r2018",
    "fallen_items": [
        {"code": "cleaning", "name_zh": "保洁到位",
         "compares_to": [{"code": "cleanliness", "name_zh": "市容要整洁清爽"}],
         "baseline": 100.0, "score": 40.0, "change": -60.0,
         "professional": source(100.0, 40.0, -60.0), "resident": source(100.0, 40.0, -60.0)},
        {"code": "order", "name_zh": "秩序维护（停车有序、无新增违建）",
         "compares_to": [{"code": "parking", "name_zh": "车要有序"}, {"code": "illegal_structures", "name_zh": "违章建筑要拆除"}],
         "baseline": 95.56, "score": 80.0, "change": -15.56,
         "professional": source(100.0, 80.0, -20.0), "resident": source(90.0, 80.0, -10.0)},
    ],
}
SHENHE_001 = {
    "community_id": "shenhe-001", "name_zh": "大什字社区", "district_id": "shenhe", "composite": 73.33,
    "grade": "pass", "grade_zh": "合格", "baseline": 100.0, "change": -26.67,
    "flags": ["insufficient_sample", "satisfaction_below_acceptance", "backsliding", "management_missing"],
    "baseline_round_id": "r2018",
    "fallen_items": [
        {"code": "cleaning", "name_zh": "保洁到位",
         "compares_to": [{"code": "cleanliness", "name_zh": "市容要整洁清爽"}],
         "baseline": 100.0, "score": 73.33, "change": -26.67,
         "professional": source(100.0, 100.0, 0.0), "resident": source(100.0, 40.0, -60.0)},
    ],
}

# no 后续管理落实 in r2018: heping-001 (2018 composite (0.5 × 100 + 0.4 × 90) / 0.9 = 95.56, not scored in 2019)
UNMANAGED_HEPING_001 = {"community_id": "heping-001", "name_zh": "南湖小区", "district_id": "heping", "baseline": 95.56}
UNMANAGED_SHENHE_001 = {"community_id": "shenhe-001", "name_zh": "大什字社区", "district_id": "shenhe", "baseline": 100.0}


def backsliding(client, keys, role, query="", round_path=A, expect=200):
    r = client.get(f"{round_path}/backsliding{query}", headers=keys.header(role))
    assert r.status_code == expect, r.get_json()
    return r


def test_backsliding_list_worked_by_hand(client, fallen, document):  # noqa: F811
    r = backsliding(client, fallen, "leadership")
    conforms(document, TEMPLATE, r)
    body = r.get_json()
    assert body == {"round_id": "a2019", "round_title": "2019年长效管理测评", "published": False,
                    "communities": [SHENHE_001, HEPING_002],  # the largest drop first
                    "management_missing": [UNMANAGED_HEPING_001, UNMANAGED_SHENHE_001]}
    # the rows agree with the round's community ranking
    ranking = client.get(f"{A}/rankings/communities", headers=fallen.header("leadership")).get_json()
    rows = {row["community_id"]: row for row in ranking["communities"] + ranking["unranked"]}
    for row in body["communities"]:
        assert {k: rows[row["community_id"]][k] for k in ("composite", "baseline", "change", "flags")} == {
            k: row[k] for k in ("composite", "baseline", "change", "flags")}
    assert "backsliding" not in rows["heping-001"]["flags"]  # not scored in 2019: no change


def test_district_keys_read_their_own_district(client, fallen):
    heping = backsliding(client, fallen, "district_heping").get_json()
    assert heping["communities"] == [HEPING_002] and heping["management_missing"] == [UNMANAGED_HEPING_001]
    assert backsliding(client, fallen, "district_heping", "?district_id=heping").get_json() == heping
    shenhe = backsliding(client, fallen, "district_shenhe").get_json()
    assert shenhe["communities"] == [SHENHE_001] and shenhe["management_missing"] == [UNMANAGED_SHENHE_001]
    r = backsliding(client, fallen, "district_heping", "?district_id=shenhe", expect=403)
    assert "heping" in r.get_json()["message"]
    for role in ("kiosk_1", "agency_a"):
        backsliding(client, fallen, role, expect=403)
    # leadership may ask for one district
    only = backsliding(client, fallen, "leadership", "?district_id=shenhe").get_json()
    assert only["communities"] == [SHENHE_001]


def test_acceptance_and_unknown_rounds_and_bad_queries(client, fallen):
    r = backsliding(client, fallen, "leadership", round_path=ACCEPTANCE, expect=422)
    assert "round_id" in r.get_json()["errors"] and "acceptance round" in r.get_json()["message"]
    backsliding(client, fallen, "leadership", round_path="/api/v1/rounds/nowhere", expect=404)
    r = backsliding(client, fallen, "leadership", "?district_id=Not%20a%20district", expect=422)
    assert "district_id" in r.get_json()["errors"]
    r = backsliding(client, fallen, "leadership", "?format=csv", expect=422)
    assert "format" in r.get_json()["errors"]


def test_published_list_keeps_the_baselines_it_was_published_with(client, fallen, world, document):  # noqa: F811
    admin = fallen.header("admin")
    live = backsliding(client, fallen, "leadership").get_json()
    post(client, admin, f"{A}/publish", expect=200)
    frozen = backsliding(client, fallen, "leadership")
    conforms(document, TEMPLATE, frozen)
    assert frozen.get_json() == {**live, "published": True}
    # a later acceptance round of 2018, published after a2019: a2019's frozen baselines stay r2018's
    again = "/api/v1/rounds/r2018b"
    post(client, admin, "/api/v1/rounds", {**ROUND, "round_id": "r2018b", "title": "2018年复评"})
    post(client, fallen.header("agency_a"), f"{again}/inspections", inspection(world["communities"]["heping-002"]))
    post(client, admin, f"{again}/surveys", survey("heping-002", answers={"cleanliness": 1}, overall=1))
    post(client, admin, f"{again}/publish", expect=200)
    assert backsliding(client, fallen, "leadership").get_json() == {**live, "published": True}


def test_item_changes_round_half_to_even_and_skip_what_cannot_be_compared():
    rubric = {"rubric_id": "care", "source_weights": {"professional": 0.5, "resident": 0.4, "public": 0.1},
              "items": [{"code": "a", "name_zh": "甲", "compares_to": {"old": ["x", "y"]}},
                        {"code": "b", "name_zh": "乙", "compares_to": {"other": ["x"]}},  # another rubric
                        {"code": "c", "name_zh": "丙"},  # compares to nothing
                        {"code": "d", "name_zh": "丁", "compares_to": {"old": ["z"]}},  # no score either side
                        {"code": "e", "name_zh": "戊", "compares_to": {"old": ["z", "x"]}}]}  # z not scored then
    old = {"rubric_id": "old", "items": [{"code": "x", "name_zh": "子", "weight": 1},
                                         {"code": "y", "name_zh": "丑", "weight": 3},
                                         {"code": "z", "name_zh": "寅", "weight": 1}]}
    now = {"professional": {"items": {"a": 50.0, "b": 10.0, "c": 0.0, "d": None, "e": 70.0}},
           "resident": {"items": {"a": None}}}
    # then P = (1 × 80.01 + 3 × 80.0) / 4 = 80.0025 → 80.00 (half to even), R of y only
    then = {"professional": {"items": {"x": 80.01, "y": 80.0, "z": None}}, "resident": {"items": {"y": 60.0}}}
    rows = item_changes(rubric, old, now, then)
    assert [r["code"] for r in rows] == ["a", "e"]
    assert rows[0]["professional"] == source(80.0, 50.0, -30.0)
    assert rows[0]["resident"] == source(60.0, None, None)
    assert (rows[0]["baseline"], rows[0]["score"], rows[0]["change"]) == (80.0, 50.0, -30.0)
    assert rows[0]["compares_to"] == [{"code": "x", "name_zh": "子"}, {"code": "y", "name_zh": "丑"}]
    # only the items scored then are named
    assert rows[1]["compares_to"] == [{"code": "x", "name_zh": "子"}]
    assert (rows[1]["baseline"], rows[1]["score"], rows[1]["change"]) == (80.01, 70.0, -10.01)
    assert fallen_items(list(reversed(rows))) == rows  # the largest fall first
    assert fallen_items([{**rows[0], "change": 0.0}]) == []


@pytest.mark.parametrize("compares_to, message", [
    ({"nowhere": ["cleanliness"]}, "names rubric 'nowhere', which is not stored"),
    ({"shenyang-2018": ["cleanliness", "gardens"]}, "rubric 'shenyang-2018' has no item 'gardens'"),
    ({"care-x": ["cleaning"]}, "names the rubric itself"),
])
def test_compares_to_must_name_stored_items(client, keys, world, compares_to, message):
    care = json.loads((ROOT / "rubrics" / "shenyang-aftercare.json").read_text(encoding="utf-8"))
    care["rubric_id"] = "care-x"
    care["items"][2]["compares_to"] = compares_to
    r = client.post("/api/v1/rubrics", json=care, headers=keys.header("admin"))
    assert r.status_code == 422, r.get_json()
    errors = r.get_json()["errors"]
    assert list(errors) == ["items"] and list(errors["items"]) == ["2"]
    [said] = errors["items"]["2"]["compares_to"]
    assert message in said


@pytest.mark.parametrize("compares_to", [{}, {"shenyang-2018": []}, {"shenyang-2018": ["a.b"]},
                                         {"shenyang-2018": ["x", "x"]}, ["cleanliness"]])
def test_compares_to_shape_is_validated(client, keys, world, compares_to):
    care = json.loads((ROOT / "rubrics" / "shenyang-aftercare.json").read_text(encoding="utf-8"))
    care["rubric_id"] = "care-y"
    care["items"][0]["compares_to"] = compares_to
    r = client.post("/api/v1/rubrics", json=care, headers=keys.header("admin"))
    assert r.status_code == 422, r.get_json()
    assert "compares_to" in json.dumps(r.get_json()["errors"])


def test_shipped_aftercare_rubric_compares_to_the_2018_items():
    acceptance = load_rubric_file(ROOT / "rubrics" / "shenyang-2018.json")
    mapping = {i["code"]: i.get("compares_to") for i in CARE.items}
    assert mapping == {
        "cleaning": {"shenyang-2018": ["cleanliness"]},
        "order": {"shenyang-2018": ["parking", "illegal_structures"]},
        "repairs": {"shenyang-2018": ["water", "lighting", "facilities", "elevator"]},
        "greenery_upkeep": {"shenyang-2018": ["greenery"]},
        "management": None,  # new since acceptance: nothing to compare with (its lapse is management_missing)
        "funds": None,
    }
    codes = set(acceptance.item_codes)
    assert all(set(m["shenyang-2018"]) <= codes for m in mapping.values() if m)


def test_survey_write_to_an_aftercare_round_reads_no_milestone_of_its_baseline_round(client, fallen, monkeypatch):
    """The baselines' 后续管理落实 records are read again only after a milestone write (a kiosk upload to
    the aftercare round used to re-read every milestone version of the acceptance round)."""
    store = client.application.extensions["scoring"].store
    calls = []
    real = store.current_milestones

    def spy(round_id, *args, **kwargs):
        calls.append(round_id)
        return real(round_id, *args, **kwargs)

    monkeypatch.setattr(store, "current_milestones", spy)

    def shenhe_flags():
        return rows(client, fallen, A)["shenhe-001"]["flags"]

    assert "management_missing" in shenhe_flags()
    calls.clear()
    post(client, fallen.header("admin"), f"{A}/surveys", survey("heping-002", answers={"cleaning": 3}, overall=3,
                                                                   **IN_2019))
    assert "management_missing" in shenhe_flags() and calls == []
    r = client.put(f"{ACCEPTANCE}/communities/shenhe-001/milestones/management_assigned",
                   json={"reached_on": "2018-09-28", "management_mode": "property_company"},
                   headers=fallen.header("admin"))
    assert r.status_code == 201, r.get_json()
    assert "management_missing" not in shenhe_flags() and calls == ["r2018"]
