"""Inspection checklists: validation against the rubric, replay, amendments and history."""

from __future__ import annotations

import json

import pytest

from .conftest import full_checks, inspection

URL = "/api/v1/rounds/r2018/inspections"


def test_post_replay_and_conflict(client, keys, world):
    agency = keys.header("agency_a")
    c1 = world["communities"]["heping-001"]
    body = inspection(c1, notes="资料齐全", evidence=["https://evidence.example/1.jpg"])
    r = client.post(URL, json=body, headers=agency)
    assert r.status_code == 201, r.get_json()
    stored = r.get_json()
    assert stored["agency_id"] == "agency-a" and stored["version"] == 1
    assert stored["history"][0]["amend_reason"] is None
    assert client.post(URL, json=body, headers=agency).status_code == 200
    r = client.post(URL, json={**body, "inspector": "别人"}, headers=agency)
    assert r.status_code == 409 and r.get_json()["error"] == "conflict"


def test_applicable_items_decide_which_checks_are_required(client, keys, world):
    agency = keys.header("agency_a")
    c2 = world["communities"]["heping-002"]  # no elevator, no heating retrofit
    checks = full_checks(c2)
    assert "elevator.certificate" not in checks and "insulation.walls" not in checks
    assert client.post(URL, json=inspection(c2, checks), headers=agency).status_code == 201
    c1 = world["communities"]["heping-001"]  # elevator and retrofit: those checks are required
    r = client.post(URL, json=inspection(c1, full_checks(c2)), headers=agency)
    assert r.status_code == 422
    assert "elevator.certificate" in r.get_json()["errors"]["checks"][0]


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"roads.surface": 7}, "between 0 and 6"),
        ({"roads.surface": -1}, "between 0 and 6"),
        ({"elevator.certificate": 3}, "critical"),
        ({"roads.moonwalk": 1}, "unknown check"),
        ({"roads.surface": "good"}, "number"),
        ({"roads.surface": True}, "number"),
    ],
)
def test_bad_checklists_are_refused(client, keys, world, change, fragment):
    c1 = world["communities"]["heping-001"]
    checks = {**full_checks(c1), **change}
    r = client.post(URL, json=inspection(c1, checks), headers=keys.header("agency_a"))
    assert r.status_code == 422
    assert fragment in json.dumps(r.get_json()["errors"]["checks"], ensure_ascii=False)


def test_missing_checks_and_fields(client, keys, world):
    c1 = world["communities"]["heping-001"]
    checks = full_checks(c1)
    checks.pop("water.drainage")
    r = client.post(URL, json=inspection(c1, checks), headers=keys.header("agency_a"))
    assert r.status_code == 422 and "water.drainage" in r.get_json()["errors"]["checks"][0]
    body = inspection(c1)
    body.pop("inspector")
    r = client.post(URL, json=body, headers=keys.header("agency_a"))
    assert r.status_code == 422 and "inspector" in r.get_json()["errors"]


def test_na_is_accepted(client, keys, world):
    c1 = world["communities"]["heping-001"]
    checks = {**full_checks(c1), "parking.ebike_charging": "na", "roads.barrier_free": "na"}
    assert client.post(URL, json=inspection(c1, checks), headers=keys.header("agency_a")).status_code == 201


def test_agency_scope_and_admin_submission(client, keys, world):
    c1 = world["communities"]["heping-001"]
    r = client.post(URL, json=inspection(c1, agency_id="agency-b"), headers=keys.header("agency_a"))
    assert r.status_code == 403
    r = client.post(URL, json=inspection(c1), headers=keys.header("admin"))
    assert r.status_code == 422 and "agency_id" in r.get_json()["errors"]
    r = client.post(URL, json=inspection(c1, agency_id="agency-b"), headers=keys.header("admin"))
    assert r.status_code == 201 and r.get_json()["agency_id"] == "agency-b"


def test_amendments_keep_every_version(client, keys, world):
    c1 = world["communities"]["heping-001"]
    agency = keys.header("agency_a")
    body = inspection(c1)
    client.post(URL, json=body, headers=agency)
    iid = body["inspection_id"]
    amended = {**body, "checks": {**body["checks"], "roads.surface": 2}, "amend_reason": "复查发现路面破损"}
    r = client.put(f"{URL}/{iid}", json=amended, headers=agency)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["version"] == 2
    # a retried amendment does not add a version
    assert client.put(f"{URL}/{iid}", json=amended, headers=agency).get_json()["version"] == 2
    third = {**amended, "checks": {**amended["checks"], "roads.curbs": 1}, "amend_reason": "补充复查"}
    client.put(f"{URL}/{iid}", json=third, headers=keys.header("admin"))
    got = client.get(f"{URL}/{iid}", headers=keys.header("leadership")).get_json()
    assert got["version"] == 3 and got["checks"]["roads.curbs"] == 1
    assert [v["version"] for v in got["history"]] == [1, 2, 3]
    assert [v["amend_reason"] for v in got["history"]] == [None, "复查发现路面破损", "补充复查"]
    assert got["history"][0]["checks"]["roads.surface"] == 6
    assert got["history"][2]["key_id"] == keys.ids["admin"]


def test_amendment_rules(client, keys, world):
    c1 = world["communities"]["heping-001"]
    body = inspection(c1)
    client.post(URL, json=body, headers=keys.header("agency_a"))
    iid = body["inspection_id"]
    r = client.put(f"{URL}/{iid}", json=body, headers=keys.header("agency_a"))
    assert r.status_code == 422 and "amend_reason" in r.get_json()["errors"]
    r = client.put(f"{URL}/{iid}", json={**body, "amend_reason": "x"}, headers=keys.header("agency_b"))
    assert r.status_code == 403
    assert client.get(f"{URL}/{iid}", headers=keys.header("agency_b")).status_code == 403
    assert client.get(f"{URL}/{iid}", headers=keys.header("agency_a")).status_code == 200
    r = client.put(f"{URL}/{iid}", json={**body, "community_id": "heping-002", "amend_reason": "x"},
                   headers=keys.header("agency_a"))
    assert r.status_code == 422 and "community_id" in r.get_json()["errors"]
    r = client.put(f"{URL}/00000000-0000-0000-0000-000000000000", json={**body, "amend_reason": "x"},
                   headers=keys.header("agency_a"))
    assert r.status_code == 422  # body id differs from the path
    r = client.put(f"{URL}/00000000-0000-0000-0000-000000000000",
                   json={**{k: v for k, v in body.items() if k != "inspection_id"}, "amend_reason": "x"},
                   headers=keys.header("agency_a"))
    assert r.status_code == 404
    client.post("/api/v1/rounds/r2018/close", headers=keys.header("admin"))
    r = client.put(f"{URL}/{iid}", json={**body, "amend_reason": "late"}, headers=keys.header("agency_a"))
    assert r.status_code == 409 and r.get_json()["error"] == "round_closed"


def test_stage_is_stored_shown_and_validated(client, keys, world):
    """SPEC §13: acceptance (default) | construction | aftercare, on each version."""
    c1 = world["communities"]["heping-001"]
    agency = keys.header("agency_a")
    plain = client.post(URL, json=inspection(c1), headers=agency).get_json()
    assert plain["stage"] == "acceptance" and plain["history"][0]["stage"] == "acceptance"
    body = inspection(c1, stage="construction", inspected_at="2018-06-12T09:00:00+08:00")
    r = client.post(URL, json=body, headers=agency)
    assert r.status_code == 201 and r.get_json()["stage"] == "construction"
    iid = body["inspection_id"]
    assert client.get(f"{URL}/{iid}", headers=keys.header("leadership")).get_json()["stage"] == "construction"
    assert client.post(URL, json=body, headers=agency).status_code == 200  # replay
    r = client.post(URL, json={**body, "stage": "acceptance"}, headers=agency)
    assert r.status_code == 409 and r.get_json()["error"] == "conflict"  # the stage is part of the content
    r = client.post(URL, json=inspection(c1, stage="final"), headers=agency)
    assert r.status_code == 422 and "stage" in r.get_json()["errors"]
    # naming another stage in an amendment changes it, with a new version
    r = client.put(f"{URL}/{iid}", json={**body, "stage": "acceptance", "amend_reason": "误填阶段"}, headers=agency)
    assert r.status_code == 200 and r.get_json()["version"] == 2 and r.get_json()["stage"] == "acceptance"
    assert [v["stage"] for v in r.get_json()["history"]] == ["construction", "acceptance"]


# content hash of the body below, computed before inspections had a stage (commit ef9e549)
PINNED_ID = "00000000-0000-4000-8000-000000000013"
PINNED_HASH = "eb2a98cc53650e0c2d33ce6d679f30427b4663cdf4296e3fd8bfa9cf0b306cb0"


def test_acceptance_stage_keeps_the_content_hash_of_inspections_before_stages(app, client, keys, world):
    from scoring_service.domain.inspections import inspection_view

    c1 = world["communities"]["heping-001"]
    agency = keys.header("agency_a")
    body = inspection(c1, inspection_id=PINNED_ID)
    assert client.post(URL, json=body, headers=agency).status_code == 201
    stored = app.extensions["scoring"].store.get_inspection("r2018", PINNED_ID)
    assert stored["versions"][0]["content_hash"] == PINNED_HASH
    # naming the default stage is the same content: a replay, not a conflict
    assert client.post(URL, json={**body, "stage": "acceptance"}, headers=agency).status_code == 200
    # a version stored before stages existed has no stage field: it reads as an acceptance inspection
    old = {**stored, "versions": [{k: v for k, v in version.items() if k != "stage"} for version in stored["versions"]]}
    assert inspection_view(old)["stage"] == "acceptance"
