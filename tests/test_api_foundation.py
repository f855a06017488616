"""Keys, rubrics, reference data, rounds, audit and ops endpoints through HTTP."""

from __future__ import annotations

import copy

from .conftest import COMMUNITIES, ROUND, RUBRIC


def test_health_ready_openapi_and_docs(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json()["status"] == "ready"
    spec = client.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/rounds/{round_id}/surveys/batch" in spec["paths"]
    page = client.get("/docs")
    assert page.status_code == 200
    assert b"/docs/static/swagger-ui-bundle.js" in page.data
    assert b"cdn" not in page.data.lower()
    assert client.get("/docs/static/swagger-ui-bundle.js").status_code == 200
    # the pages' policy: no inline script (Swagger UI is started from a file of the service's own)
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert b"<script>" not in page.data and b"/static/docs.js" in page.data
    assert b"SwaggerUIBundle" in client.get("/static/docs.js").data


def test_keys_created_listed_revoked(client, keys):
    admin = keys.header("admin")
    r = client.post("/api/v1/keys", json={"role": "leadership", "name": "市领导小组"}, headers=admin)
    assert r.status_code == 201
    body = r.get_json()
    token = body["token"]
    assert token.startswith(body["key_id"] + ".")
    listed = client.get("/api/v1/keys", headers=admin).get_json()["items"]
    assert body["key_id"] in [k["key_id"] for k in listed]
    assert all("token" not in k and "secret_hash" not in k for k in listed)
    assert client.get("/api/v1/rounds", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    r = client.delete(f"/api/v1/keys/{body['key_id']}", headers=admin)
    assert r.status_code == 200 and r.get_json()["revoked_at"]
    # revocation is effective on the very next request
    assert client.get("/api/v1/rounds", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert client.delete("/api/v1/keys/k_nope", headers=admin).status_code == 404


def test_key_scope_must_match_role(client, keys, world):
    admin = keys.header("admin")
    r = client.post("/api/v1/keys", json={"role": "agency", "name": "x"}, headers=admin)
    assert r.status_code == 422 and "agency_id" in r.get_json()["errors"]
    r = client.post("/api/v1/keys", json={"role": "kiosk", "name": "x", "community_id": "nope"}, headers=admin)
    assert r.status_code == 422 and "community_id" in r.get_json()["errors"]
    r = client.post("/api/v1/keys", json={"role": "admin", "name": "x", "community_id": "heping-001"}, headers=admin)
    assert r.status_code == 422
    r = client.post("/api/v1/keys", json={"role": "kiosk", "name": "终端1", "community_id": "heping-001"},
                    headers=admin)
    assert r.status_code == 201 and r.get_json()["community_id"] == "heping-001"


def test_rubric_read_add_and_validation(client, keys, world):
    admin = keys.header("admin")
    body = client.get("/api/v1/rubrics/shenyang-2018", headers=keys.header("kiosk_1")).get_json()
    assert len(body["items"]) == 11 and sum(i["weight"] for i in body["items"]) == 100
    assert body["items"][8]["checks"][0] == {**RUBRIC.body["items"][8]["checks"][0]}
    assert client.post("/api/v1/rubrics", json=RUBRIC.body, headers=admin).status_code == 200  # identical
    changed = copy.deepcopy(RUBRIC.body)
    changed["items"][0]["weight"] = 11
    r = client.post("/api/v1/rubrics", json=changed, headers=admin)
    assert r.status_code == 409 and r.get_json()["error"] == "rubric_in_use"

    def invalid(mutate):
        bad = copy.deepcopy(RUBRIC.body)
        bad["rubric_id"] = "new-rubric"
        mutate(bad)
        r = client.post("/api/v1/rubrics", json=bad, headers=admin)
        assert r.status_code == 422, r.get_json()
        return r.get_json()["errors"]

    assert "items" in invalid(lambda b: b["items"].append(copy.deepcopy(b["items"][0])))  # duplicate codes
    assert "source_weights" in invalid(lambda b: b["source_weights"].update(public=0.2))
    assert "grades" in invalid(lambda b: b["grades"].reverse())
    assert "items" in invalid(lambda b: b["items"][0].update(weight=0))
    assert "items" in invalid(lambda b: b["items"][0]["checks"][0].update(max_points=0))
    assert "items" in invalid(lambda b: b["items"][0]["checks"][0].update(code="water.surface"))
    assert "surprise" in invalid(lambda b: b.update(surprise=1))
    fresh = copy.deepcopy(RUBRIC.body)
    fresh["rubric_id"] = "shenyang-2019"
    assert client.post("/api/v1/rubrics", json=fresh, headers=admin).status_code == 201
    ids = [r["rubric_id"] for r in client.get("/api/v1/rubrics", headers=admin).get_json()["items"]]
    assert ids == ["shenyang-2018", "shenyang-2019"]
    assert client.get("/api/v1/rubrics/none", headers=admin).status_code == 404


def test_districts_agencies_and_put_id_rules(client, keys, world):
    admin = keys.header("admin")
    r = client.put("/api/v1/districts/heping", json={"district_id": "heping", "name_zh": "和平区", "name_en": "H"},
                   headers=admin)
    assert r.status_code == 200
    r = client.put("/api/v1/districts/heping", json={"district_id": "other", "name_zh": "x", "name_en": "x"},
                   headers=admin)
    assert r.status_code == 422 and "district_id" in r.get_json()["errors"]
    r = client.put("/api/v1/districts/Bad_ID", json={"name_zh": "x", "name_en": "x"}, headers=admin)
    assert r.status_code == 422
    names = [d["name_zh"] for d in client.get("/api/v1/districts", headers=keys.header("leadership")).get_json()["items"]]
    assert names == ["和平区", "沈河区"]
    agencies = client.get("/api/v1/agencies", headers=keys.header("agency_a")).get_json()["items"]
    assert [a["agency_id"] for a in agencies] == ["agency-a", "agency-b"]


def test_communities_read_filter_and_kiosk_scope(client, keys, world):
    lead = keys.header("leadership")
    items = client.get("/api/v1/communities?district_id=heping", headers=lead).get_json()["items"]
    assert [c["community_id"] for c in items] == ["heping-001", "heping-002"]
    items = client.get("/api/v1/communities?renovation_year=2019", headers=lead).get_json()["items"]
    assert [c["community_id"] for c in items] == ["shenhe-099"]
    kiosk = keys.header("kiosk_1")
    assert [c["community_id"] for c in client.get("/api/v1/communities", headers=kiosk).get_json()["items"]] == [
        "heping-001"]
    assert client.get("/api/v1/communities/heping-001", headers=kiosk).status_code == 200
    assert client.get("/api/v1/communities/heping-002", headers=kiosk).status_code == 403
    assert client.get("/api/v1/communities/nope", headers=lead).status_code == 404


def test_community_put_requires_known_district(client, keys, world):
    admin = keys.header("admin")
    body = {**COMMUNITIES[0], "district_id": "nowhere"}
    body.pop("community_id")
    r = client.put("/api/v1/communities/heping-001", json=body, headers=admin)
    assert r.status_code == 422 and "district_id" in r.get_json()["errors"]
    body["district_id"] = "heping"
    body["households"] = 151
    assert client.put("/api/v1/communities/heping-001", json=body, headers=admin).status_code == 200
    assert client.get("/api/v1/communities/heping-001", headers=admin).get_json()["households"] == 151
    r = client.put("/api/v1/communities/new-1", json={**body, "households": "many"}, headers=admin)
    assert r.status_code == 422 and "households" in r.get_json()["errors"]


def test_import_is_all_or_nothing(client, keys, world):
    admin = keys.header("admin")
    good = {"community_id": "new-001", "name_zh": "新村", "district_id": "heping", "households": 10,
            "renovation_year": 2018, "has_elevator": False, "heating_retrofit": False}
    bad = {**good, "community_id": "new-002", "households": 0}
    r = client.post("/api/v1/communities/import", json=[good, bad], headers=admin)
    assert r.status_code == 422
    assert "households" in r.get_json()["errors"]["1"]
    assert client.get("/api/v1/communities/new-001", headers=admin).status_code == 404  # nothing written
    r = client.post("/api/v1/communities/import", json=[good, {**good}], headers=admin)
    assert r.status_code == 422 and "community_id" in r.get_json()["errors"]["1"]
    r = client.post("/api/v1/communities/import", json={"items": [good]}, headers=admin)
    assert r.get_json() == {"imported": 1, "created": 1, "replaced": 0}


def test_import_csv_with_bom_and_chinese(client, keys, world):
    admin = keys.header("admin")
    csv_text = ("\ufeffcommunity_id,name_zh,district_id,households,renovation_year,has_elevator,heating_retrofit,"
                "address,built_year\r\n"
                "csv-001,砂山小区,shenhe,320,2018,是,否,沈河区砂山街,1988\r\n"
                "csv-002,五里河里,heping,95,2018,false,true,,\r\n")
    r = client.post("/api/v1/communities/import", data=csv_text.encode("utf-8"),
                    headers={**admin, "Content-Type": "text/csv; charset=utf-8"})
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["created"] == 2
    c = client.get("/api/v1/communities/csv-001", headers=admin).get_json()
    assert c == {"community_id": "csv-001", "name_zh": "砂山小区", "district_id": "shenhe", "households": 320,
                 "renovation_year": 2018, "has_elevator": True, "heating_retrofit": False,
                 "address": "沈河区砂山街", "built_year": 1988}
    bad = csv_text.replace("320", "三百")
    r = client.post("/api/v1/communities/import", data=bad.encode(), headers={**admin, "Content-Type": "text/csv"})
    assert r.status_code == 422 and "households" in r.get_json()["errors"]["0"]


def test_rounds_create_replay_conflict_and_validation(client, keys, world):
    admin = keys.header("admin")
    assert client.post("/api/v1/rounds", json=ROUND, headers=admin).status_code == 200  # identical replay
    r = client.post("/api/v1/rounds", json={**ROUND, "title": "另一个"}, headers=admin)
    assert r.status_code == 409 and r.get_json()["error"] == "conflict"
    r = client.post("/api/v1/rounds", json={**ROUND, "round_id": "x", "quotas": {"mars": 1}}, headers=admin)
    assert r.status_code == 422 and "quotas" in r.get_json()["errors"]
    r = client.post("/api/v1/rounds", json={**ROUND, "round_id": "x", "closes_at": ROUND["opens_at"]}, headers=admin)
    assert r.status_code == 422 and "closes_at" in r.get_json()["errors"]
    r = client.post("/api/v1/rounds", json={**ROUND, "round_id": "x", "reward": {**ROUND["reward"], "pool_fen": 1.5}},
                    headers=admin)
    assert r.status_code == 422 and "reward" in r.get_json()["errors"]
    r = client.post("/api/v1/rounds", json={**ROUND, "round_id": "x", "opens_at": "2018-09-01T00:00:00"},
                    headers=admin)
    assert r.status_code == 422 and "opens_at" in r.get_json()["errors"]  # no offset
    got = client.get("/api/v1/rounds/r2018", headers=keys.header("kiosk_1")).get_json()
    assert got["status"] == "open" and got["opens_at"] == "2018-08-31T16:00:00.000000Z"
    assert client.get("/api/v1/rounds/none", headers=admin).status_code == 404


def test_close_round_then_submissions_refused(client, keys, world):
    from .conftest import survey

    admin = keys.header("admin")
    r = client.post("/api/v1/rounds/r2018/close", headers=admin)
    assert r.status_code == 200 and r.get_json()["status"] == "closed"
    r = client.post("/api/v1/rounds/r2018/surveys", json=survey(), headers=keys.header("kiosk_1"))
    assert r.status_code == 409 and r.get_json()["error"] == "round_closed"


def test_every_write_is_audited_and_audit_is_read_only(client, keys, world):
    admin = keys.header("admin")
    client.post("/api/v1/keys", json={"role": "leadership", "name": "x"}, headers=admin)
    client.post("/api/v1/keys", json={"role": "leadership"}, headers=admin)  # refused: 422
    client.post("/api/v1/keys", json={"role": "leadership", "name": "x"}, headers=keys.header("leadership"))  # 403
    events = client.get("/api/v1/audit?limit=1000", headers=admin).get_json()["items"]
    key_posts = [e for e in events if e["path"] == "/api/v1/keys" and e["method"] == "POST"]
    assert [e["status"] for e in key_posts] == [201, 422, 403]
    assert key_posts[0]["key_id"] == keys.ids["admin"] and key_posts[0]["entity_type"] == "key"
    assert key_posts[2]["key_id"] == keys.ids["leadership"] and key_posts[2]["outcome"] == "refused"
    round_events = client.get("/api/v1/audit?round_id=r2018", headers=admin).get_json()["items"]
    assert all(e["round_id"] == "r2018" for e in round_events)
    # no endpoint changes or deletes audit events
    assert client.delete("/api/v1/audit", headers=admin).status_code == 405
    assert client.post("/api/v1/audit", json={}, headers=admin).status_code == 405
    assert client.get("/api/v1/audit", headers=keys.header("leadership")).status_code == 403
