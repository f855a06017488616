"""Rank uncertainty, the satisfaction funnel and anomaly flags, on constructed data with known answers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from .conftest import RUBRIC, full_checks, inspection, survey

R = "/api/v1/rounds/r2018"
TWINS = [{"community_id": f"twin-{x}", "name_zh": f"双胞胎{x}", "district_id": "shenhe", "households": 100,
          "renovation_year": 2018, "has_elevator": False, "heating_retrofit": False} for x in "ab"]


def fraction_of_max(share):
    return lambda check: check["max_points"] if check.get("critical") else round(check["max_points"] * share, 1)


@pytest.fixture
def evidence_world(client, keys, world):
    admin = keys.header("admin")
    assert client.post("/api/v1/communities/import", json=TWINS, headers=admin).status_code == 200
    communities = {**world["communities"], **{t["community_id"]: t for t in TWINS}}
    plan = {  # community: (agency A share of max points, resident answer level)
        "heping-001": (1.0, 5),   # far ahead on every count
        "heping-002": (0.7, 3),
        "shenhe-001": (0.65, 3),
        "twin-a": (0.75, 4),
        "twin-b": (0.75, 4),
    }
    codes = RUBRIC.item_codes
    for cid, (share, level) in plan.items():
        c = communities[cid]
        r = client.post(f"{R}/inspections", json=inspection(c, full_checks(c, fraction_of_max(share))),
                        headers=keys.header("agency_a"))
        assert r.status_code == 201, r.get_json()
        # agency B is lenient: 25 points of the maximum above agency A everywhere
        r = client.post(f"{R}/inspections", json=inspection(c, full_checks(c, fraction_of_max(min(1.0, share + .25)))),
                        headers=keys.header("agency_b"))
        assert r.status_code == 201
        responses = []
        for i in range(40):
            mixed = level if i % 4 else max(1, level - 1)
            responses.append(survey(cid, answers={code: mixed for code in codes[:4]}, overall=mixed,
                                    submitted_at=f"2018-09-1{i % 9}T0{i % 10}:00:00+08:00",
                                    channel="door_to_door"))
        r = client.post(f"{R}/surveys/batch", json={"responses": responses}, headers=admin)
        assert r.get_json()["created"] == 40, r.get_json()
    return keys


def ranking(client, keys, kind, **params):
    query = "&".join(f"{k}={v}" for k, v in {"uncertainty": 1, **params}.items())
    r = client.get(f"{R}/rankings/{kind}?{query}", headers=keys.header("leadership"))
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def test_a_unit_far_ahead_has_interval_one_to_one(client, evidence_world):
    body = ranking(client, evidence_world, "communities", draws=400, seed=7)
    rows = {row["community_id"]: row for row in body["communities"]}
    assert rows["heping-001"]["rank"] == 1
    assert rows["heping-001"]["uncertainty"]["rank_interval_90"] == [1, 1]
    assert rows["heping-001"]["uncertainty"]["median_rank"] == 1.0
    assert body["uncertainty"]["draws"] == 400 and body["uncertainty"]["seed"] == 7


def test_identical_data_gives_identical_intervals(client, evidence_world):
    rows = {row["community_id"]: row for row in ranking(client, evidence_world, "communities", draws=300)["communities"]}
    assert rows["twin-a"]["composite"] == rows["twin-b"]["composite"]
    assert rows["twin-a"]["uncertainty"] == rows["twin-b"]["uncertainty"]


def test_same_seed_same_output_and_intervals_contain_the_rank(client, evidence_world):
    first = ranking(client, evidence_world, "communities", draws=200, seed=11)
    again = ranking(client, evidence_world, "communities", draws=200, seed=11)
    assert first == again
    for row in first["communities"]:
        low, high = row["uncertainty"]["rank_interval_90"]
        assert 1 <= low <= row["uncertainty"]["median_rank"] <= high <= len(first["communities"])
    districts = ranking(client, evidence_world, "districts", draws=200, seed=11)
    assert all(0.0 <= d["uncertainty"]["reward_share"] <= 1.0 for d in districts["districts"])
    top = districts["districts"][0]
    assert top["uncertainty"]["reward_share"] > 0  # the nominal top district is in the reward set at least sometimes


def test_funnel_flags_a_community_far_below_the_city_rate(client, evidence_world, keys):
    unhappy = [survey("heping-002", answers={"roads": 1}, overall=1) for _ in range(150)]
    client.post(f"{R}/surveys/batch", json={"responses": unhappy}, headers=keys.header("admin"))
    r = client.get(f"{R}/evidence/funnel", headers=keys.header("leadership"))
    assert r.status_code == 200
    body = r.get_json()
    points = {p["community_id"]: p for p in body["points"]}
    low = points["heping-002"]
    assert low["flag"] == "satisfaction_outlier_low" and low["satisfaction_rate"] < low["limits998"][0]
    assert low["limits998"][0] < low["limits95"][0] < body["city_rate"] < low["limits95"][1]
    assert points["heping-001"]["flag"] == "satisfaction_outlier_high"  # everyone satisfied, far above the city
    assert points["twin-a"]["flag"] == points["twin-b"]["flag"]
    assert client.get(f"{R}/evidence/funnel", headers=keys.header("kiosk_1")).status_code == 403


def test_planted_straight_liner_burst_and_duplicate_are_flagged(client, evidence_world, keys):
    kiosk = keys.header("kiosk_1")
    liner = survey(answers={code: 5 for code in RUBRIC.item_codes}, overall=5)
    client.post(f"{R}/surveys", json=liner, headers=kiosk)
    start = datetime(2018, 9, 20, 10, 0, tzinfo=timezone.utc)
    burst = [survey(answers={"roads": 2 + i % 3, "water": 4}, overall=3,
                    submitted_at=(start + timedelta(seconds=8 * i)).isoformat()) for i in range(6)]
    client.post(f"{R}/surveys/batch", json={"responses": burst}, headers=kiosk)
    twin = {"answers": {"roads": 3, "water": 2, "lighting": 4, "greenery": 1}, "overall": 2, "comment": "同一个人？"}
    first = survey(**twin, submitted_at="2018-09-21T10:00:00+08:00", channel="paper")
    second = survey(**twin, submitted_at="2018-09-21T10:03:00+08:00", channel="paper")
    client.post(f"{R}/surveys/batch", json={"responses": [first, second]}, headers=kiosk)

    body = client.get(f"{R}/evidence/anomalies", headers=keys.header("admin")).get_json()
    assert liner["response_id"] in [x["response_id"] for x in body["straight_lining"]]
    flagged = {rid for b in body["bursts"] for rid in b["responses"]}
    assert {b["response_id"] for b in burst} <= flagged
    assert all(b["key_id"] == keys.ids["kiosk_1"] for b in body["bursts"])
    assert [first["response_id"], second["response_id"]] in [d["response_ids"] for d in body["duplicates"]]
    # door-to-door forms an administrator entered in batches are not bursts
    assert not any(b["community_id"] == "twin-a" for b in body["bursts"])


def test_biased_agency_is_detected_with_the_right_sign(client, evidence_world, keys):
    body = client.get(f"{R}/evidence/anomalies", headers=keys.header("leadership")).get_json()
    bias = {b["agency_id"]: b for b in body["agency_bias"]}
    assert bias["agency-b"]["flagged"] and bias["agency-b"]["direction"] == "lenient"
    assert bias["agency-b"]["mean_deviation"] > 10
    assert bias["agency-a"]["mean_deviation"] == pytest.approx(-bias["agency-b"]["mean_deviation"])
    assert bias["agency-a"]["direction"] == "strict"


def test_draws_are_bounded_by_round_size(client, evidence_world, monkeypatch):
    from scoring_service.services import evidence

    monkeypatch.setattr(evidence, "MAX_DRAW_CELLS", 500)  # as if the round were very large
    r = client.get(f"{R}/rankings/districts?uncertainty=1&draws=1000", headers=evidence_world.header("leadership"))
    assert r.status_code == 422 and "at most 100 draws" in r.get_json()["errors"]["draws"][0]
    assert client.get(f"{R}/rankings/districts?uncertainty=1&draws=100",
                      headers=evidence_world.header("leadership")).status_code == 200
