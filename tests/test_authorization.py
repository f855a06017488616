"""Authorization matrix: every endpoint × role (and scope), as a table.

For each endpoint the table names the roles allowed. A request without a
token must get 401, a role not allowed 403, an allowed role anything but
401/403. Destructive endpoints are called on ids that do not exist, so an
allowed call proves it passed authorization (404/422) without side effects.
"""

from __future__ import annotations

import uuid

import pytest

from .conftest import inspection, survey

ALL = {"admin", "leadership", "agency_a", "kiosk_1", "district_heping"}
ADMIN = {"admin"}
R = "/api/v1/rounds/r2018"

MATRIX = [
    # method, path, body, allowed roles
    ("POST", "/api/v1/keys", {"role": "leadership"}, ADMIN),
    ("GET", "/api/v1/keys", None, ADMIN),
    ("GET", "/api/v1/keys/me", None, ALL),
    ("DELETE", "/api/v1/keys/k_missing", None, ADMIN),
    ("GET", "/api/v1/rubrics", None, ALL),
    ("GET", "/api/v1/rubrics/shenyang-2018", None, ALL),
    ("POST", "/api/v1/rubrics", {"rubric_id": "x"}, ADMIN),
    ("PUT", "/api/v1/districts/newd", {"name_zh": ""}, ADMIN),
    ("GET", "/api/v1/districts", None, ALL),
    ("PUT", "/api/v1/communities/newc", {"name_zh": ""}, ADMIN),
    ("POST", "/api/v1/communities/import", [], ADMIN),
    ("GET", "/api/v1/communities", None, ALL),
    ("GET", "/api/v1/communities/heping-001", None, ALL),
    ("PUT", "/api/v1/agencies/newa", {"name": ""}, ADMIN),
    ("GET", "/api/v1/agencies", None, ALL),
    ("POST", "/api/v1/rounds", {"round_id": "x"}, ADMIN),
    ("GET", "/api/v1/rounds", None, ALL),
    ("GET", R, None, ALL),
    ("POST", "/api/v1/rounds/missing/close", None, ADMIN),
    ("POST", "/api/v1/rounds/missing/publish", None, ADMIN),
    ("POST", f"{R}/surveys", {"response_id": "bad"}, {"admin", "kiosk_1"}),
    ("POST", f"{R}/surveys/batch", {"responses": []}, {"admin", "kiosk_1"}),
    ("POST", f"{R}/surveys/{uuid.UUID(int=1)}/void", {"reason": "x"}, ADMIN),
    ("POST", f"{R}/inspections", {"inspection_id": "bad"}, {"admin", "agency_a"}),
    ("PUT", f"{R}/inspections/{uuid.UUID(int=2)}", {"inspection_id": "bad"}, {"admin", "agency_a"}),
    ("GET", f"{R}/inspections/{uuid.UUID(int=3)}", None, {"admin", "leadership", "agency_a"}),
    # attachments (SPEC §13): an empty upload is refused (422) after the role check; reading an unknown file
    # answers 404 to the roles that may read (object-level rules: tests/test_attachments.py)
    ("POST", "/api/v1/attachments", None, {"admin", "agency_a", "district_heping"}),
    ("GET", f"/api/v1/attachments/{'0' * 64}", None, {"admin", "leadership", "agency_a", "district_heping"}),
    ("GET", f"/api/v1/attachments/{'0' * 64}/thumbnail", None, {"admin", "leadership", "agency_a", "district_heping"}),
    ("GET", f"{R}/communities/heping-001/score", None, {"admin", "leadership"}),
    ("GET", f"{R}/rankings/communities", None, {"admin", "leadership"}),
    ("GET", f"{R}/rankings/communities?format=csv", None, {"admin", "leadership"}),
    ("GET", f"{R}/rankings/districts", None, {"admin", "leadership"}),
    ("GET", f"{R}/rankings/districts?format=xlsx", None, {"admin", "leadership"}),
    ("GET", f"{R}/rewards", None, {"admin", "leadership"}),
    ("GET", f"{R}/rankings/districts?uncertainty=1&draws=20", None, {"admin", "leadership"}),
    ("GET", f"{R}/evidence/funnel", None, {"admin", "leadership"}),
    ("GET", f"{R}/evidence/anomalies", None, {"admin", "leadership"}),
    ("GET", "/api/v1/audit", None, ADMIN),
    # supervision (SPEC §11): a district key reads its own district only
    ("GET", f"{R}/supervision", None, {"admin", "leadership", "district_heping"}),
    ("GET", f"{R}/supervision?district_id=shenhe", None, {"admin", "leadership"}),
    # rectification items (SPEC §13): a district key its own district, an agency its own inspections' items;
    # a response with a bad body is refused (422) after the role check, so nothing is written
    ("GET", f"{R}/rectifications", None, {"admin", "leadership", "district_heping", "agency_a"}),
    ("GET", f"{R}/rectifications?district_id=shenhe", None, {"admin", "leadership", "agency_a"}),
    ("POST", f"{R}/rectifications/{uuid.UUID(int=4)}:roads.surface/responses", {"response_id": "bad"},
     {"admin", "district_heping"}),
    # milestones (SPEC §11): a future date is refused after the scope check, so nothing is written
    ("GET", f"{R}/communities/heping-001/milestones", None, {"admin", "leadership", "district_heping"}),
    ("GET", f"{R}/communities/shenhe-001/milestones", None, {"admin", "leadership"}),
    ("GET", f"{R}/communities/heping-001/milestones/plan_approved", None, {"admin", "leadership", "district_heping"}),
    ("GET", f"{R}/communities/shenhe-001/milestones/plan_approved", None, {"admin", "leadership"}),
    ("PUT", f"{R}/communities/heping-001/milestones/plan_approved", {"reached_on": "2100-01-01"},
     {"admin", "district_heping"}),
    ("PUT", f"{R}/communities/shenhe-001/milestones/plan_approved", {"reached_on": "2100-01-01"}, ADMIN),
    ("DELETE", f"{R}/communities/heping-001/milestones/plan_approved", {"changed_reason": "x"},
     {"admin", "district_heping"}),
    ("DELETE", f"{R}/communities/shenhe-001/milestones/plan_approved", {"changed_reason": "x"}, ADMIN),
    # funding ledger (SPEC §12): a district key reads its own district and records its funds in place.
    # Roles are tried in sorted order, so the admin's PUT creates the record the district key then replays.
    ("GET", f"{R}/ledger", None, {"admin", "leadership", "district_heping"}),
    ("GET", f"{R}/ledger?format=csv", None, {"admin", "leadership", "district_heping"}),
    ("GET", f"{R}/ledger?district_id=shenhe", None, {"admin", "leadership"}),
    ("GET", f"{R}/communities/heping-001/funding", None, {"admin", "leadership", "district_heping"}),
    ("GET", f"{R}/communities/shenhe-001/funding", None, {"admin", "leadership"}),
    ("PUT", f"{R}/communities/heping-001/funding", {"land_category": "independent", "approved_budget_fen": 0,
                                                    "district_funds_in_place_fen": 0}, {"admin", "district_heping"}),
    ("PUT", f"{R}/communities/shenhe-001/funding", {"land_category": "independent", "approved_budget_fen": 0,
                                                    "district_funds_in_place_fen": 0}, ADMIN),
    ("POST", f"{R}/communities/heping-001/disbursements", {"disbursement_id": "bad"}, ADMIN),
    # survey links (SPEC §14): r2018 closed at the end of 2018, so creating one answers 409 and writes nothing;
    # GET /link answers only a link's own token (tests/test_survey_links.py), so every key here gets 403
    ("POST", f"{R}/communities/heping-001/survey-links", None, ADMIN),
    ("GET", f"{R}/communities/heping-001/survey-links", None, ADMIN),
    ("DELETE", f"{R}/communities/heping-001/survey-links/l_0000000000000000", None, ADMIN),
    ("GET", "/api/v1/link", None, set()),
    ("GET", f"{R}/communities/heping-001/survey-links/l_0000000000000000/poster.pdf", None, ADMIN),
    ("GET", f"{R}/communities/heping-001/survey-links/l_0000000000000000/poster.png", None, ADMIN),
    # history across rounds (SPEC §15): a district key reads its own district and its communities only
    ("GET", "/api/v1/communities/heping-001/history", None, {"admin", "leadership", "district_heping"}),
    ("GET", "/api/v1/communities/shenhe-001/history", None, {"admin", "leadership"}),
    ("GET", "/api/v1/districts/heping/history", None, {"admin", "leadership", "district_heping"}),
    ("GET", "/api/v1/districts/shenhe/history", None, {"admin", "leadership"}),
    # the 前治后乱 list (SPEC §15, §16): r2018 is an acceptance round, so an allowed call answers 422
    ("GET", f"{R}/backsliding", None, {"admin", "leadership", "district_heping"}),
    ("GET", f"{R}/backsliding?district_id=shenhe", None, {"admin", "leadership"}),
]


def call(client, method, path, body, headers):
    return client.open(path, method=method, json=body, headers=headers)


@pytest.mark.parametrize("method, path, body, allowed", MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX])
def test_authorization_matrix(client, keys, world, method, path, body, allowed):
    r = call(client, method, path, body, {})
    assert r.status_code == 401, (None, r.get_json())
    for role in sorted(ALL):
        r = call(client, method, path, body, keys.header(role))
        if role in allowed:
            assert r.status_code not in (401, 403), (role, r.status_code, r.get_json())
        else:
            assert r.status_code == 403, (role, r.status_code, r.get_data(as_text=True)[:300])


def test_matrix_covers_every_api_route(app):
    documented = {(m, p) for m, p, _, _ in MATRIX}
    normalised = {(m, p.split("?")[0].replace("/api/v1", "")) for m, p in documented}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.rule == "/api/v1/openapi.json":
            continue
        if "snapshot" in rule.rule:
            continue  # public by design once published (tested with results)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            shape = rule.rule.replace("/api/v1", "")
            assert any(m == method and _matches(shape, p) for m, p in normalised), (method, rule.rule)


def _matches(rule: str, path: str) -> bool:
    rule_parts, path_parts = rule.strip("/").split("/"), path.strip("/").split("/")
    return len(rule_parts) == len(path_parts) and all(
        a.startswith("<") or a == b for a, b in zip(rule_parts, path_parts))


# -- object-level checks ---------------------------------------------------------

def test_kiosk_cannot_act_for_another_community(client, keys, world):
    kiosk = keys.header("kiosk_1")
    assert client.post(f"{R}/surveys", json=survey("heping-002"), headers=kiosk).status_code == 403
    batch = client.post(f"{R}/surveys/batch", json={"responses": [survey("heping-002")]}, headers=kiosk).get_json()
    assert batch["results"][0]["status"] == "invalid" and batch["created"] == 0
    assert client.get("/api/v1/communities/heping-002", headers=kiosk).status_code == 403


def test_agency_cannot_amend_or_read_another_agencys_inspection(client, keys, world):
    c1 = world["communities"]["heping-001"]
    body = inspection(c1)
    assert client.post(f"{R}/inspections", json=body, headers=keys.header("agency_a")).status_code == 201
    iid = body["inspection_id"]
    amended = {**body, "amend_reason": "改分"}
    assert client.put(f"{R}/inspections/{iid}", json=amended, headers=keys.header("agency_b")).status_code == 403
    assert client.get(f"{R}/inspections/{iid}", headers=keys.header("agency_b")).status_code == 403
    assert client.post(f"{R}/inspections", json=inspection(c1, agency_id="agency-a"),
                       headers=keys.header("agency_b")).status_code == 403


def test_leadership_only_reads(client, keys, world):
    lead = keys.header("leadership")
    assert client.post(f"{R}/surveys", json=survey(), headers=lead).status_code == 403
    assert client.post(f"{R}/close", headers=lead).status_code == 403
    assert client.post(f"{R}/publish", headers=lead).status_code == 403
    assert client.put("/api/v1/districts/heping", json={"name_zh": "x", "name_en": "x"}, headers=lead).status_code == 403
    assert client.get(f"{R}/rankings/districts", headers=lead).status_code == 200


def test_district_key_reads_only_its_own_district(client, keys, world):
    heping = keys.header("district_heping")
    listed = client.get("/api/v1/communities", headers=heping).get_json()["items"]
    assert sorted(c["community_id"] for c in listed) == ["heping-001", "heping-002"]
    asked_other = client.get("/api/v1/communities?district_id=shenhe", headers=heping).get_json()["items"]
    assert asked_other == []
    assert client.get("/api/v1/communities/heping-002", headers=heping).status_code == 200
    r = client.get("/api/v1/communities/shenhe-001", headers=heping)
    assert r.status_code == 403 and "heping" in r.get_json()["message"]
    shenhe = keys.header("district_shenhe")
    assert client.get("/api/v1/communities/shenhe-001", headers=shenhe).status_code == 200
    assert client.get("/api/v1/communities/heping-001", headers=shenhe).status_code == 403


def test_district_key_never_reads_unpublished_results_nor_writes_elsewhere(client, keys, world):
    heping = keys.header("district_heping")
    for path in (f"{R}/rankings/districts", f"{R}/rankings/communities?district_id=heping", f"{R}/rewards",
                 f"{R}/communities/heping-001/score", f"{R}/evidence/funnel", "/api/v1/audit", "/api/v1/keys"):
        assert client.get(path, headers=heping).status_code == 403, path
    c1 = world["communities"]["heping-001"]
    assert client.post(f"{R}/inspections", json=inspection(c1, agency_id="agency-a"), headers=heping).status_code == 403
    assert client.post(f"{R}/surveys", json=survey(), headers=heping).status_code == 403
    assert client.put("/api/v1/communities/heping-001", json=world["communities"]["heping-001"],
                      headers=heping).status_code == 403
    # published rankings are public, so a district key reads them like anyone; the score breakdown stays closed
    assert client.post(f"{R}/publish", headers=keys.header("admin")).status_code == 200
    assert client.get(f"{R}/rankings/districts", headers=heping).status_code == 200
    assert client.get(f"{R}/communities/heping-001/score", headers=heping).status_code == 403


def test_district_keys_created_through_the_api(client, keys, world):
    admin = keys.header("admin")
    r = client.post("/api/v1/keys", json={"role": "district", "name": "和平区政府"}, headers=admin)
    assert r.status_code == 422 and "district_id" in r.get_json()["errors"]
    r = client.post("/api/v1/keys", json={"role": "district", "name": "x", "district_id": "nowhere"}, headers=admin)
    assert r.status_code == 422 and "nowhere" in r.get_json()["errors"]["district_id"][0]
    r = client.post("/api/v1/keys", json={"role": "district", "name": "x", "district_id": "Heping!"}, headers=admin)
    assert r.status_code == 422 and "district_id" in r.get_json()["errors"]
    r = client.post("/api/v1/keys", json={"role": "leadership", "name": "x", "district_id": "heping"}, headers=admin)
    assert r.status_code == 422 and "district_id" in r.get_json()["errors"]
    r = client.post("/api/v1/keys", json={"role": "district", "name": "x", "district_id": "heping",
                                          "community_id": "heping-001"}, headers=admin)
    assert r.status_code == 422 and "community_id" in r.get_json()["errors"]
    r = client.post("/api/v1/keys", json={"role": "district", "name": "沈河区政府", "district_id": "shenhe"},
                    headers=admin)
    assert r.status_code == 201, r.get_json()
    created = r.get_json()
    assert created["role"] == "district" and created["district_id"] == "shenhe"
    listed = {k["key_id"]: k for k in client.get("/api/v1/keys", headers=admin).get_json()["items"]}
    assert listed[created["key_id"]]["district_id"] == "shenhe"
    assert listed[keys.ids["admin"]]["district_id"] is None
    token = {"Authorization": f"Bearer {created['token']}"}
    listed = client.get("/api/v1/communities", headers=token).get_json()["items"]
    assert sorted(c["community_id"] for c in listed) == ["shenhe-001", "shenhe-099"]


def test_every_key_reads_only_itself(client, keys, world):
    """GET /keys/me: the pages learn the holder's role and scope (never a token, never another key)."""
    for role, expected in (("district_heping", ("district", "heping")), ("leadership", ("leadership", None)),
                           ("admin", ("admin", None))):
        body = client.get("/api/v1/keys/me", headers=keys.header(role)).get_json()
        assert (body["key_id"], body["role"], body["district_id"]) == (keys.ids[role], *expected)
        assert "token" not in body and "secret_hash" not in body


def test_district_scope_check():
    from scoring_service.services.errors import Forbidden
    from scoring_service.services.keys import Principal, check_district_scope

    admin, lead = Principal("k1", "admin", "a"), Principal("k2", "leadership", "l")
    heping = Principal("k3", "district", "d", district_id="heping")
    agency = Principal("k4", "agency", "g", agency_id="agency-a")
    check_district_scope(admin, "shenhe")
    check_district_scope(heping, "heping")
    check_district_scope(lead, "shenhe", roles=("admin", "leadership"))
    for principal, district in ((heping, "shenhe"), (heping, None), (lead, "heping"), (agency, "heping")):
        with pytest.raises(Forbidden):
            check_district_scope(principal, district)


def test_revoked_key_is_refused_on_next_request(client, keys, world):
    kiosk = keys.header("kiosk_1")
    assert client.post(f"{R}/surveys", json=survey(), headers=kiosk).status_code == 201
    client.delete(f"/api/v1/keys/{keys.ids['kiosk_1']}", headers=keys.header("admin"))
    assert client.post(f"{R}/surveys", json=survey(), headers=kiosk).status_code == 401


def test_tampered_secret_is_refused(client, keys, world):
    token = keys["admin"]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert client.get("/api/v1/keys", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
