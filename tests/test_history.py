"""History across rounds (SPEC §15): GET /communities/{c}/history and /districts/{d}/history."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from scoring_service.services.history import covers, history_order
from scoring_service.services.rounds import create_round

from .conftest import ROOT, ROUND, inspection, survey

R = "/api/v1/rounds"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def add_round(app, round_id: str, year: int, quotas: dict, **fields) -> None:
    """A round through the service (so an aftercare round needs no more of the round API than this)."""
    data = {**ROUND, "round_id": round_id, "year": year, "title": f"{year}年测评（{round_id}）", "quotas": quotas,
            "opens_at": datetime.fromisoformat(f"{year}-09-01T00:00:00+08:00"),
            "closes_at": datetime.fromisoformat(f"{year}-09-30T23:59:59+08:00"), **fields}
    outcome, _ = create_round(app.extensions["scoring"], data)
    assert outcome.value == "created"


def score_some(client, keys, world, round_id: str, answer: int, points_off: int = 0) -> None:
    """An inspection and a few resident responses for heping-001 and shenhe-001 in the round."""
    for community_id, kiosk in (("heping-001", "kiosk_1"), ("shenhe-001", None)):
        community = world["communities"][community_id]
        body = inspection(community)
        body["checks"]["roads.surface"] -= points_off
        r = client.post(f"{R}/{round_id}/inspections", json=body, headers=keys.header("agency_a"))
        assert r.status_code == 201, r.get_json()
        responses = [survey(community_id, answers={"roads": answer, "water": answer}, overall=answer)
                     for _ in range(3)]
        r = client.post(f"{R}/{round_id}/surveys/batch", json={"responses": responses},
                        headers=keys.header(kiosk or "admin"))
        assert r.status_code == 200 and r.get_json()["created"] == 3, r.get_json()


def history(client, keys, path: str, role: str = "leadership") -> list[dict]:
    r = client.get(f"/api/v1/{path}/history", headers=keys.header(role))
    assert r.status_code == 200, r.get_data(as_text=True)[:500]
    return r.get_json()["items"]


@pytest.fixture
def rounds(app, client, keys, world):
    """r2018 (the world's) and a2018, acceptance rounds of 2018, scored; b2019, acceptance of 2019 (covers
    shenhe-099 only); a2019-care, an aftercare round of 2019 over the 2018 renovations; a2020, acceptance
    of 2020 with heping in its quotas."""
    add_round(app, "a2018", 2018, {"heping": 2, "shenhe": 1})
    add_round(app, "b2019", 2019, {"heping": 1, "shenhe": 1})
    aftercare = json.loads((ROOT / "rubrics" / "shenyang-aftercare.json").read_text(encoding="utf-8"))
    assert client.post("/api/v1/rubrics", json=aftercare, headers=keys.header("admin")).status_code == 201
    add_round(app, "a2019-care", 2019, {"heping": 2}, kind="aftercare", covers_years=[2018],
              rubric_id="shenyang-aftercare")
    add_round(app, "a2020", 2020, {"heping": 3})
    score_some(client, keys, world, "r2018", answer=5)
    score_some(client, keys, world, "a2018", answer=3, points_off=6)
    return keys


def test_community_history_rows_equal_the_live_score_breakdowns(client, rounds):
    items = history(client, rounds, "communities/heping-001")
    # the 2019 aftercare round covers a community renovated in 2018, the 2019 and 2020 acceptance rounds do
    # not; the same year by round id
    assert [(row["round_id"], row["kind"], row["year"]) for row in items] == [
        ("a2018", "acceptance", 2018), ("r2018", "acceptance", 2018), ("a2019-care", "aftercare", 2019)]
    acceptance, care = items[:2], items[2]
    for row in acceptance:
        b = client.get(f"{R}/{row['round_id']}/communities/heping-001/score",
                       headers=rounds.header("leadership")).get_json()
        assert row == {
            "round_id": row["round_id"], "kind": "acceptance", "year": 2018, "title": f"2018年测评（{row['round_id']}）"
            if row["round_id"] != "r2018" else ROUND["title"], "published": False,
            "composite": b["composite"], "grade": b["grade"], "flags": b["flags"],
            "professional_items": b["professional"]["items"], "resident_items": b["resident"]["items"],
        }
    first, second = acceptance
    assert first["composite"] is not None and second["composite"] is not None
    assert first["composite"] < second["composite"]  # a2018 was scored lower: rows are not swapped
    assert first["professional_items"]["roads"] < second["professional_items"]["roads"]
    assert second["resident_items"]["roads"] == 100.0
    b = client.get(f"{R}/a2019-care/communities/heping-001/score", headers=rounds.header("leadership")).get_json()
    assert (care["composite"], care["grade"], care["flags"]) == (b["composite"], b["grade"], b["flags"])
    assert care["professional_items"] == b["professional"]["items"] and care["published"] is False
    assert set(care["professional_items"]) == {"cleaning", "order", "repairs", "greenery_upkeep", "management",
                                               "funds"}  # the aftercare rubric's items, nothing scored yet
    assert care["composite"] is None and "pending_inspection" in care["flags"]
    # a 2019 community: only the 2019 acceptance round (no data yet: nulls)
    only = history(client, rounds, "communities/shenhe-099")
    assert [(row["round_id"], row["composite"], row["flags"] != []) for row in only] == [("b2019", None, True)]


def test_published_rows_come_from_the_snapshot(client, rounds, app):
    admin, lead = rounds.header("admin"), rounds.header("leadership")
    assert client.post(f"{R}/r2018/publish", headers=admin).status_code == 200
    snapshot = json.loads(client.get(f"{R}/r2018/snapshot").get_data())
    items = {row["round_id"]: row for row in history(client, rounds, "communities/heping-001")}
    row, frozen = items["r2018"], snapshot["scores"]["heping-001"]
    assert row["published"] is True and items["a2018"]["published"] is False
    assert (row["composite"], row["grade"], row["flags"]) == (frozen["composite"], frozen["grade"], frozen["flags"])
    assert row["professional_items"] == frozen["professional"]["items"]
    assert row["resident_items"] == frozen["resident"]["items"]
    assert row["composite"] == client.get(f"{R}/r2018/communities/heping-001/score", headers=lead).get_json()[
        "composite"]
    districts = {row["round_id"]: row for row in history(client, rounds, "districts/heping")}
    frozen_row = next(d for d in snapshot["district_ranking"]["districts"] if d["district_id"] == "heping")
    assert districts["r2018"]["published"] is True
    assert {k: districts["r2018"][k] for k in ("index", "quality", "progress", "quota", "graded", "grade_counts")} \
        == {k: frozen_row[k] for k in ("index", "quality", "progress", "quota", "graded", "grade_counts")}


def test_district_history_oldest_year_first_equal_to_the_district_rankings(client, rounds):
    items = history(client, rounds, "districts/heping")
    # list_rounds is by id (a2018, a2019-care, a2020, b2019, r2018): history is by year, then kind, then id
    assert [(row["round_id"], row["kind"], row["year"]) for row in items] == [
        ("a2018", "acceptance", 2018), ("r2018", "acceptance", 2018), ("b2019", "acceptance", 2019),
        ("a2019-care", "aftercare", 2019), ("a2020", "acceptance", 2020)]
    for row in items:
        ranking = client.get(f"{R}/{row['round_id']}/rankings/districts", headers=rounds.header("leadership"))
        d = next(d for d in ranking.get_json()["districts"] if d["district_id"] == "heping")
        assert {k: row[k] for k in ("index", "quality", "progress", "quota", "graded", "grade_counts")} == {
            k: d[k] for k in ("index", "quality", "progress", "quota", "graded", "grade_counts")}
        assert row["published"] is False
    assert [row["quota"] for row in items] == [2, 2, 1, 2, 3]
    assert items[1]["graded"] >= 1 and items[1]["index"] > 0  # r2018 has heping-001 scored
    # shenhe is in the quotas of a2018, b2019 and r2018 only
    assert [row["round_id"] for row in history(client, rounds, "districts/shenhe")] == ["a2018", "r2018", "b2019"]


def test_district_keys_read_their_own_district_only(client, rounds):
    heping = rounds.header("district_heping")
    assert history(client, rounds, "communities/heping-001", role="district_heping")
    assert history(client, rounds, "districts/heping", role="district_heping")
    for path in ("communities/shenhe-001", "districts/shenhe"):
        r = client.get(f"/api/v1/{path}/history", headers=heping)
        assert r.status_code == 403, r.get_json()
        assert "heping" in r.get_json()["message"]
    assert client.get("/api/v1/districts/heping/history", headers=rounds.header("district_shenhe")).status_code == 403


@pytest.mark.parametrize("role", ["kiosk_1", "agency_a"])
def test_kiosk_and_agency_keys_may_not_read_history(client, rounds, role):
    # even the kiosk's own community
    for path in ("communities/heping-001", "districts/heping"):
        assert client.get(f"/api/v1/{path}/history", headers=rounds.header(role)).status_code == 403


def test_unknown_ids_and_missing_keys(client, rounds):
    lead = rounds.header("leadership")
    r = client.get("/api/v1/communities/nowhere-001/history", headers=lead)
    assert r.status_code == 404 and "nowhere-001" in r.get_json()["message"]
    r = client.get("/api/v1/districts/nowhere/history", headers=lead)
    assert r.status_code == 404 and "nowhere" in r.get_json()["message"]
    assert client.get("/api/v1/districts/heping/history").status_code == 401
    r = client.get("/api/v1/districts/heping/history?year=2018", headers=lead)
    assert r.status_code == 422 and "year" in r.get_json()["errors"]


def test_responses_conform_to_the_closed_schemas(app, client, rounds):
    document = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    lead = rounds.header("leadership")
    for template, name, value in (("/api/v1/communities/{community_id}/history", "community_id", "heping-001"),
                                  ("/api/v1/districts/{district_id}/history", "district_id", "heping")):
        response = client.get(template.replace("{" + name + "}", value), headers=lead)
        assert response.status_code == 200
        case = document[template]["GET"].Case(path_parameters={name: value})
        case.validate_response(response, checks=CHECKS)
    spec = app.test_client().get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    for name in ("CommunityHistory", "CommunityHistoryRow", "DistrictHistory", "DistrictHistoryRow"):
        assert spec[name]["additionalProperties"] is False, name


def test_covers_and_order_rules():
    community = {"renovation_year": 2018}
    acceptance = {"round_id": "x", "year": 2018, "status": "open"}
    assert covers(acceptance, community) and covers({**acceptance, "kind": "acceptance"}, community)
    assert not covers({**acceptance, "year": 2019}, community)
    care = {"round_id": "c", "year": 2019, "kind": "aftercare", "covers_years": [2017, 2018], "status": "open"}
    assert covers(care, community) and not covers({**care, "covers_years": [2019]}, community)
    assert not covers({**care, "year": 2018, "covers_years": [2017]}, community)  # its own year does not count
    rows = [{**care, "round_id": "a"}, {**acceptance, "round_id": "z", "year": 2019}, {**acceptance, "round_id": "b"},
            {**care, "round_id": "b", "year": 2018}]
    assert [(r["round_id"], r["year"]) for r in sorted(rows, key=history_order)] == [
        ("b", 2018), ("b", 2018), ("z", 2019), ("a", 2019)]
    assert [r.get("kind", "acceptance") for r in sorted(rows, key=history_order)][:2] == ["acceptance", "aftercare"]
