"""Aftercare rounds (SPEC §15): what they cover, their default quotas, the inspections they score, and
前治后乱 (backsliding) worked by hand on the conftest world, on both stores.

Weights of ``shenyang-2018`` (used for the aftercare round too): P 0.5, R 0.4 (no public answers here),
Likert points 20/40/60/80/100. With full marks (P = 100) and every answer at one level, composite =
(0.5 × 100 + 0.4 × R) / 0.9: all 5 → 100.00, all 3 → 82.22, all 2 → 73.33.
"""

from __future__ import annotations

import pytest

from scoring_service.domain import rounds as kinds

from .conftest import ROUND, inspection, survey
from .test_result_schemas import conforms, document  # noqa: F401  (the OpenAPI checks of the result bodies)

ACCEPTANCE = "/api/v1/rounds/r2018"
A = "/api/v1/rounds/a2019"
AFTERCARE = {**{k: v for k, v in ROUND.items() if k != "quotas"}, "round_id": "a2019", "year": 2019,
             "title": "2019年长效管理测评", "kind": "aftercare", "covers_years": [2018],
             "opens_at": "2019-09-01T00:00:00+08:00", "closes_at": "2019-09-30T23:59:59+08:00"}
IN_2019 = {"submitted_at": "2019-09-10T10:00:00+08:00"}


def post(client, headers, path, body=None, expect=201):
    r = client.post(path, json=body, headers=headers)
    assert r.status_code == expect, r.get_json()
    return r.get_json()


def answers(level: int) -> dict:
    return {"answers": {"roads": level, "water": level}, "overall": level}


def scored_round(client, keys, path, communities, levels, **when):
    """A full-marks inspection of each community by agency A (stage ``when['stage']``) and one resident
    response with every answer at its level."""
    stage = when.pop("stage", None)
    for community, level in zip(communities, levels):
        body = inspection(community, **({"stage": stage} if stage else {}), **when.get("inspection", {}))
        post(client, keys.header("agency_a"), f"{path}/inspections", body)
        post(client, keys.header("admin"), f"{path}/surveys",
             survey(community["community_id"], **answers(level), **when.get("survey", {})))


def rows(client, keys, path) -> dict:
    r = client.get(f"{path}/rankings/communities", headers=keys.header("leadership"))
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    return {row["community_id"]: row for row in body["communities"] + body["unranked"]}


def score(client, keys, path, community_id) -> dict:
    r = client.get(f"{path}/communities/{community_id}/score", headers=keys.header("leadership"))
    assert r.status_code == 200, r.get_json()
    return r.get_json()


# -- creating and covering ---------------------------------------------------------------------

def test_aftercare_round_covers_earlier_renovations_with_default_quotas(client, keys, world):
    admin = keys.header("admin")
    created = post(client, admin, "/api/v1/rounds", AFTERCARE)
    # quotas default to the covered communities per district (the 2018 ones: heping 2, shenhe 1), stored
    assert created["quotas"] == {"heping": 2, "shenhe": 1}
    assert created["kind"] == "aftercare" and created["covers_years"] == [2018]
    # the same request again is a replay, even after a new 2018 community changes the default count
    extra = {**world["communities"]["heping-002"], "community_id": "heping-010", "name_zh": "新增小区"}
    assert client.put("/api/v1/communities/heping-010", json=extra, headers=admin).status_code == 201
    assert post(client, admin, "/api/v1/rounds", AFTERCARE, expect=200)["quotas"] == {"heping": 2, "shenhe": 1}
    # a 2019 acceptance round covers only the 2019 community
    post(client, admin, "/api/v1/rounds", {**ROUND, "round_id": "r2019", "year": 2019,
                                           "quotas": {"shenhe": 1}})
    assert set(rows(client, keys, "/api/v1/rounds/r2019")) == {"shenhe-099"}
    assert set(rows(client, keys, A)) == {"heping-001", "heping-002", "heping-010", "shenhe-001"}
    # submissions follow the same rule: heping-001 (2018) in the aftercare round, not in r2019
    post(client, admin, f"{A}/surveys", survey("heping-001", **IN_2019))
    r = client.post("/api/v1/rounds/r2019/surveys", json=survey("heping-001", **IN_2019), headers=admin)
    assert r.status_code == 422 and "heping-001" in r.get_data(as_text=True)
    r = client.post(f"{A}/surveys", json=survey("shenhe-099", **IN_2019), headers=admin)
    assert r.status_code == 422
    # and so do milestones (§11) and survey links (§14)
    r = client.put(f"{A}/communities/shenhe-099/milestones/plan_approved", json={"reached_on": "2019-04-01"},
                   headers=admin)
    assert r.status_code == 422 and "2018" in r.get_json()["errors"]["community_id"][0]
    assert client.put(f"{A}/communities/heping-001/milestones/plan_approved", json={"reached_on": "2019-04-01"},
                      headers=admin).status_code == 201
    # a round created as before has no kind stored
    old = client.get(ACCEPTANCE, headers=admin).get_json()
    assert "kind" not in old and "covers_years" not in old


@pytest.mark.parametrize("body, field", [
    ({**AFTERCARE, "covers_years": None}, "covers_years"),
    ({k: v for k, v in AFTERCARE.items() if k != "covers_years"}, "covers_years"),
    ({**AFTERCARE, "covers_years": []}, "covers_years"),
    ({**AFTERCARE, "covers_years": ["2018"]}, "covers_years"),
    ({**AFTERCARE, "kind": "maintenance"}, "kind"),
    ({**ROUND, "round_id": "x", "covers_years": [2017]}, "covers_years"),
    ({**ROUND, "round_id": "x", "kind": "acceptance", "covers_years": [2017]}, "covers_years"),
    ({**{k: v for k, v in ROUND.items() if k != "quotas"}, "round_id": "x"}, "quotas"),
    ({**AFTERCARE, "covers_years": [2030]}, "covers_years"),  # covers no community and no quotas given
    ({**AFTERCARE, "quotas": {"nowhere": 1}}, "quotas"),
])
def test_round_coverage_is_validated(client, keys, world, body, field):
    r = client.post("/api/v1/rounds", json=body, headers=keys.header("admin"))
    assert r.status_code == 422, r.get_json()
    assert field in r.get_json()["errors"], r.get_json()


def test_aftercare_quotas_may_be_given(client, keys, world):
    created = post(client, keys.header("admin"), "/api/v1/rounds",
                   {**AFTERCARE, "covers_years": [2019, 2018, 2018], "quotas": {"heping": 5}})
    assert created["quotas"] == {"heping": 5} and created["covers_years"] == [2018, 2019]


def test_only_aftercare_inspections_count_in_an_aftercare_round(client, keys, world):
    admin, a = keys.header("admin"), keys.header("agency_a")
    post(client, admin, "/api/v1/rounds", AFTERCARE)
    c = world["communities"]["heping-001"]
    post(client, admin, f"{A}/surveys", survey("heping-001", **answers(3), **IN_2019))
    post(client, a, f"{A}/inspections", inspection(c, inspected_at="2019-09-12T09:00:00+08:00"))  # acceptance
    before = score(client, keys, A, "heping-001")
    assert before["professional"]["score"] is None and before["composite"] is None
    assert "pending_inspection" in before["flags"]
    post(client, a, f"{A}/inspections", inspection(c, stage="aftercare", inspected_at="2019-09-13T09:00:00+08:00"))
    after = score(client, keys, A, "heping-001")
    assert after["professional"]["score"] == 100.0 and after["composite"] == 82.22
    # and an aftercare inspection does not count in an acceptance round
    post(client, admin, f"{ACCEPTANCE}/surveys", survey("heping-001", **answers(3)))
    post(client, a, f"{ACCEPTANCE}/inspections", inspection(c, stage="aftercare"))
    assert score(client, keys, ACCEPTANCE, "heping-001")["professional"]["score"] is None


# -- 前治后乱 ----------------------------------------------------------------------------------

@pytest.fixture
def backsliding(client, keys, world):
    """r2018 published: heping-001 100.00 (后续管理落实 recorded), heping-002 82.22 (not recorded),
    shenhe-001 without a composite (no survey). Then a2019 (aftercare, covering 2018): heping-001 82.22,
    heping-002 73.33, shenhe-001 82.22."""
    admin, c = keys.header("admin"), world["communities"]
    scored_round(client, keys, ACCEPTANCE, [c["heping-001"], c["heping-002"]], [5, 3])
    post(client, keys.header("agency_a"), f"{ACCEPTANCE}/inspections", inspection(c["shenhe-001"]))
    r = client.put(f"{ACCEPTANCE}/communities/heping-001/milestones/management_assigned",
                   json={"reached_on": "2018-09-28", "management_mode": "property_company"}, headers=admin)
    assert r.status_code == 201, r.get_json()
    # a withdrawn record is not reached
    r = client.put(f"{ACCEPTANCE}/communities/heping-002/milestones/management_assigned",
                   json={"reached_on": "2018-09-28", "management_mode": "self_managed"}, headers=admin)
    assert r.status_code == 201, r.get_json()
    r = client.delete(f"{ACCEPTANCE}/communities/heping-002/milestones/management_assigned",
                      json={"changed_reason": "录入错误"}, headers=admin)
    assert r.status_code == 200 and r.get_json()["withdrawn"], r.get_json()
    accepted = rows(client, keys, ACCEPTANCE)
    assert [accepted[k]["composite"] for k in ("heping-001", "heping-002", "shenhe-001")] == [100.0, 82.22, None]
    post(client, admin, f"{ACCEPTANCE}/publish", expect=200)
    post(client, admin, "/api/v1/rounds", AFTERCARE)
    scored_round(client, keys, A, [c["heping-001"], c["heping-002"], c["shenhe-001"]], [3, 2, 3], stage="aftercare",
                 inspection={"inspected_at": "2019-09-12T09:00:00+08:00"}, survey=IN_2019)
    return keys


def test_backsliding_worked_by_hand(client, backsliding, document):  # noqa: F811
    keys = backsliding
    ranking = rows(client, keys, A)
    one, two, three = (ranking[k] for k in ("heping-001", "heping-002", "shenhe-001"))
    # heping-001: 82.22 − 100.00 = −17.78 ≤ −10: 前治后乱; its management was recorded
    assert (one["composite"], one["baseline"], one["change"]) == (82.22, 100.0, -17.78)
    assert "backsliding" in one["flags"] and "management_missing" not in one["flags"]
    # heping-002: 73.33 − 82.22 = −8.89: no backsliding; its management record was withdrawn
    assert (two["composite"], two["baseline"], two["change"]) == (73.33, 82.22, -8.89)
    assert "backsliding" not in two["flags"] and "management_missing" in two["flags"]
    # shenhe-001 had no composite in r2018: no baseline, no change; management never recorded
    assert (three["composite"], three["baseline"], three["change"]) == (82.22, None, None)
    assert "backsliding" not in three["flags"] and "management_missing" in three["flags"]
    # the score breakdown carries the same
    breakdown = score(client, keys, A, "heping-001")
    assert (breakdown["baseline"], breakdown["change"]) == (100.0, -17.78)
    assert "backsliding" in breakdown["flags"]
    # acceptance rounds' bodies have no new keys
    accepted = rows(client, keys, ACCEPTANCE)["heping-001"]
    assert "baseline" not in accepted and "change" not in accepted
    assert "baseline" not in score(client, keys, ACCEPTANCE, "heping-001")
    # the bodies conform to their OpenAPI description, live and published
    lead = keys.header("leadership")
    for path in ("/rankings/communities", "/communities/heping-001/score", "/communities/shenhe-001/score"):
        conforms(document, path.replace("heping-001", "{community_id}").replace("shenhe-001", "{community_id}"),
                 client.get(A + path, headers=lead))
    post(client, keys.header("admin"), f"{A}/publish", expect=200)
    frozen = rows(client, keys, A)
    assert frozen == {k: v for k, v in ranking.items()}
    snapshot = client.get(f"{A}/snapshot", headers=lead)
    conforms(document, "/snapshot", snapshot)
    assert snapshot.get_json()["scores"]["heping-001"]["change"] == -17.78


def test_baseline_is_the_latest_published_acceptance_round(client, backsliding, world):
    """A later published acceptance round covering the same communities (a re-evaluation of 2018) is the
    baseline; an unpublished one is not."""
    keys, admin, c = backsliding, backsliding.header("admin"), world["communities"]
    again = "/api/v1/rounds/r2018b"
    post(client, admin, "/api/v1/rounds", {**ROUND, "round_id": "r2018b", "title": "2018年复评"})
    scored_round(client, keys, again, [c["heping-001"]], [3])
    assert rows(client, keys, A)["heping-001"]["baseline"] == 100.0  # not published yet
    post(client, admin, f"{again}/publish", expect=200)
    one = rows(client, keys, A)["heping-001"]
    # 82.22 − 82.22; r2018b has no 后续管理落实 record for it
    assert (one["baseline"], one["change"]) == (82.22, 0.0)
    assert "backsliding" not in one["flags"] and "management_missing" in one["flags"]
    assert rows(client, keys, A)["heping-002"]["baseline"] is None  # not scored in r2018b


def test_change_and_threshold_are_exact():
    assert kinds.baseline_change(72.22, 82.22) == -10.0  # in binary floats 72.22 − 82.22 is −9.999…
    assert kinds.backslid(kinds.baseline_change(72.22, 82.22))
    assert not kinds.backslid(kinds.baseline_change(72.23, 82.22))
    assert kinds.baseline_change(72.35, 0.0) == 72.35 and kinds.baseline_change(None, 50.0) is None
    assert not kinds.backslid(None)
    assert kinds.covers({"year": 2019, "kind": "aftercare", "covers_years": [2017, 2018]}, {"renovation_year": 2018})
    assert not kinds.covers({"year": 2019}, {"renovation_year": 2018})
    assert kinds.covers({"year": 2018}, {"renovation_year": 2018})


def test_store_lists_communities_of_several_years(app, world):
    store = app.extensions["scoring"].store
    ids = lambda **kw: [c["community_id"] for c in store.list_communities(**kw)]  # noqa: E731
    assert ids(renovation_years=[2019, 2018]) == ["heping-001", "heping-002", "shenhe-001", "shenhe-099"]
    assert ids(renovation_years=[2019]) == ["shenhe-099"] and ids(renovation_years=[]) == []
    assert ids(renovation_years=[2018, 2019], district_id="shenhe") == ["shenhe-001", "shenhe-099"]
    assert ids(renovation_years=[2018, 2019], renovation_year=2019) == ["shenhe-099"]
    assert ids(renovation_years=[2018], renovation_year=2019) == []
