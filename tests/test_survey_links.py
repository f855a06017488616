"""Survey links (SPEC §14) on both stores: the credential, what it may post, its abuse controls,
the phone page's view, the anomaly report's repeated devices, audit and the OpenAPI description."""

from __future__ import annotations

import threading
import uuid

import pytest

from scoring_service.api import survey_links as api_links
from scoring_service.api.result_schemas import AnomaliesSchema
from scoring_service.services import survey_links

from .conftest import ROUND, make_app, survey
from .test_authorization import MATRIX

LIVE = "r-live"
LINKS = f"/api/v1/rounds/{LIVE}/communities/heping-001/survey-links"


@pytest.fixture
def live(client, keys, world, monkeypatch):
    """An open round of 2018 that closes far ahead (links of r2018 would be expired), public_cap 3;
    the hourly window fixed to this hour so a test never straddles two."""
    window = survey_links.hour_start()
    monkeypatch.setattr(survey_links, "hour_start", lambda now=None: window)
    body = {**ROUND, "round_id": LIVE, "closes_at": "2099-12-31T23:59:59+08:00", "public_cap": 3}
    r = client.post("/api/v1/rounds", json=body, headers=keys.header("admin"))
    assert r.status_code == 201, r.get_json()
    return LIVE


def new_link(client, keys, community_id="heping-001", round_id=LIVE) -> dict:
    r = client.post(f"/api/v1/rounds/{round_id}/communities/{community_id}/survey-links", headers=keys.header("admin"))
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def bearer(link: dict) -> dict:
    return {"Authorization": f"Bearer {link['token']}"}


def post(client, link, round_id=LIVE, **fields):
    body = survey(**{"household_ref": f"7-3-{uuid.uuid4().int % 10**6}", **fields})
    return client.post(f"/api/v1/rounds/{round_id}/surveys", json=body, headers=bearer(link))


def public(client, link, **fields):
    return post(client, link, respondent_type="public", household_ref=None, **fields)


def store_of(app):
    return app.extensions["scoring"].store


# -- the credential ------------------------------------------------------------------------------

def test_create_list_revoke(app, client, keys, live):
    link = new_link(client, keys)
    api_links.NewSurveyLinkSchema().load(link)  # closed: no field more, none missing
    assert link["link_id"].startswith("l_") and link["token"].startswith(link["link_id"] + ".")
    assert link["url"] == "http://127.0.0.1:8000/s/" + link["token"]
    assert link["expires_at"] == store_of(app).get_round(LIVE)["closes_at"]
    stored = store_of(app).get_survey_link(link["link_id"])
    assert link["token"].split(".", 1)[1] not in str(stored)  # only the secret's hash is kept
    listed = client.get(LINKS, headers=keys.header("admin")).get_json()
    api_links.SurveyLinkListSchema().load(listed)
    assert [i["link_id"] for i in listed["items"]] == [link["link_id"]]
    assert "token" not in listed["items"][0]
    assert client.get("/api/v1/link", headers=bearer(link)).status_code == 200

    r = client.delete(f"{LINKS}/{link['link_id']}", headers=keys.header("admin"))
    assert r.status_code == 200 and r.get_json()["revoked_at"]
    revoked_at = r.get_json()["revoked_at"]
    assert client.get("/api/v1/link", headers=bearer(link)).status_code == 401
    assert post(client, link).status_code == 401  # a revoked link
    again = client.delete(f"{LINKS}/{link['link_id']}", headers=keys.header("admin"))
    assert again.status_code == 200 and again.get_json()["revoked_at"] == revoked_at
    assert client.delete(f"{LINKS}/l_0123456789abcdef", headers=keys.header("admin")).status_code == 404


def test_public_base_url_setting(app, client, keys, live):
    app.config["PUBLIC_BASE_URL"] = "https://pj.example.gov.cn/"
    link = new_link(client, keys)
    assert link["url"] == "https://pj.example.gov.cn/s/" + link["token"]


def test_links_only_of_an_open_round_and_its_communities(client, keys, live):
    admin = keys.header("admin")
    r = client.post("/api/v1/rounds/r2018/communities/heping-001/survey-links", headers=admin)
    assert r.status_code == 409 and r.get_json()["error"] == "round_closed"  # r2018 closed in 2018
    r = client.post(f"/api/v1/rounds/{LIVE}/communities/shenhe-099/survey-links", headers=admin)
    assert r.status_code == 422 and "community_id" in r.get_json()["errors"]  # a 2019 community
    r = client.post(f"/api/v1/rounds/{LIVE}/communities/nowhere/survey-links", headers=admin)
    assert r.status_code == 404


def test_expired_link_is_refused(app, client, keys, live):
    link = new_link(client, keys)
    store = store_of(app)
    record = {**store.get_survey_link(link["link_id"]), "link_id": "l_00000000000000ee",
              "expires_at": "2020-01-01T00:00:00.000000Z"}
    store.create_survey_link(record)
    expired = {"token": "l_00000000000000ee." + link["token"].split(".", 1)[1]}  # its hash is the same secret's
    assert client.get("/api/v1/link", headers=bearer(link)).status_code == 200
    assert client.get("/api/v1/link", headers=bearer(expired)).status_code == 401
    assert post(client, expired).status_code == 401


def test_tampered_link_token_is_refused(client, keys, live):
    link = new_link(client, keys)
    assert client.get("/api/v1/link", headers={"Authorization": f"Bearer {link['token']}x"}).status_code == 401
    assert client.get("/api/v1/link", headers={"Authorization": "Bearer l_0123456789abcdef.x"}).status_code == 401


# -- what a link may post ------------------------------------------------------------------------

def test_link_posts_its_own_community_and_round_online_only(app, client, keys, live):
    link = new_link(client, keys)
    r = post(client, link)
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["channel"] == "online"  # the default through a link
    assert post(client, link, community_id="heping-002").status_code == 403  # community A posting for B
    assert post(client, link, round_id="r2018").status_code == 403  # another round
    for channel in ("kiosk", "paper", "door_to_door"):
        assert post(client, link, channel=channel).status_code == 403
    assert post(client, link, channel="online").status_code == 201
    batch = {"responses": [survey(household_ref="1-1-101"), survey(community_id="heping-002", household_ref="1")]}
    r = client.post(f"/api/v1/rounds/{LIVE}/surveys/batch", json=batch, headers=bearer(link))
    assert r.status_code == 403  # one item for another community refuses the batch
    assert store_of(app).count_responses(LIVE) == 2
    r = client.post("/api/v1/rounds/r2018/surveys/batch", json={"responses": [survey()]}, headers=bearer(link))
    assert r.status_code == 403


def test_resident_needs_a_household_public_none(client, keys, live):
    link = new_link(client, keys)
    for missing in (None, "", " - "):
        r = post(client, link, household_ref=missing)
        assert r.status_code == 422 and "household_ref" in r.get_json()["errors"], r.get_json()
    r = post(client, link, respondent_type="public", household_ref="7-3-501")
    assert r.status_code == 422 and "household_ref" in r.get_json()["errors"]
    r = public(client, link)
    assert r.status_code == 201 and r.get_json()["respondent_type"] == "public"
    assert r.get_json()["household_ref_given"] is False
    r = client.post(f"/api/v1/rounds/{LIVE}/surveys/batch", json={"responses": [survey()]}, headers=bearer(link))
    assert r.get_json()["results"][0]["status"] == "invalid"
    assert "household_ref" in r.get_json()["results"][0]["errors"]


def test_after_the_round_closes_early(client, keys, live):
    link = new_link(client, keys)
    accepted = survey(household_ref="1-1-101")
    assert client.post(f"/api/v1/rounds/{LIVE}/surveys", json=accepted, headers=bearer(link)).status_code == 201
    assert client.post(f"/api/v1/rounds/{LIVE}/close", headers=keys.header("admin")).status_code == 200
    r = post(client, link)
    assert r.status_code == 409 and r.get_json()["error"] == "round_closed"
    # a phone's queued replay of what was accepted drains as before
    assert client.post(f"/api/v1/rounds/{LIVE}/surveys", json=accepted, headers=bearer(link)).status_code == 200


def test_link_is_refused_everywhere_else(client, keys, live):
    link = new_link(client, keys)
    for method, path, body, _ in MATRIX:
        if path.endswith(("/surveys", "/surveys/batch", "/link")):
            continue  # a link may post surveys (its own round only, above) and read its own view
        r = client.open(path, method=method, json=body, headers=bearer(link))
        assert r.status_code == 403, (method, path, r.status_code)
    for method, path in (("POST", LINKS), ("GET", LINKS), ("DELETE", f"{LINKS}/{link['link_id']}"),
                         ("GET", f"/api/v1/rounds/{LIVE}/evidence/anomalies")):
        assert client.open(path, method=method, headers=bearer(link)).status_code == 403
    assert client.get("/api/v1/link", headers=keys.header("kiosk_1")).status_code == 403
    assert client.get("/api/v1/link").status_code == 401


# -- abuse controls ------------------------------------------------------------------------------

def test_public_cap_is_exact(app, client, keys, live):
    link = new_link(client, keys)
    for _ in range(3):
        assert public(client, link).status_code == 201
    r = public(client, link)
    assert r.status_code == 409 and r.get_json()["error"] == "public_cap_reached"
    assert post(client, link).status_code == 201  # residents are not capped
    counts = store_of(app).survey_counts(LIVE, 0 + len(app.extensions["scoring"].rubric("shenyang-2018").item_codes))
    assert counts.get("public", "heping-001").responses == 3
    # voiding a public response frees its place
    first = next(r for r in store_of(app).iter_responses(LIVE) if r["respondent_type"] == "public")
    r = client.post(f"/api/v1/rounds/{LIVE}/surveys/{first['response_id']}/void", json={"reason": "重复"},
                    headers=keys.header("admin"))
    assert r.status_code == 200
    assert public(client, link).status_code == 201
    assert public(client, link).status_code == 409


def admin_public(client, keys, **fields):
    """A public response typed in by the city (paper forms), not through a link: never capped, but counted."""
    body = survey(respondent_type="public", household_ref=None, channel="paper", **fields)
    return client.post(f"/api/v1/rounds/{LIVE}/surveys", json=body, headers=keys.header("admin"))


def test_public_cap_counts_public_responses_of_every_channel(app, client, keys, live):
    """Before: the MongoDB store counted only link responses against public_cap (a fourth public response
    through the link was taken after three paper ones); the embedded store counted all three."""
    link = new_link(client, keys)
    papers = [admin_public(client, keys) for _ in range(3)]
    assert [r.status_code for r in papers] == [201] * 3
    assert admin_public(client, keys, response_id=papers[0].get_json()["response_id"]).status_code == 200  # replay
    r = public(client, link)
    assert r.status_code == 409 and r.get_json()["error"] == "public_cap_reached"
    assert admin_public(client, keys).status_code == 201  # the city's own entries are never refused
    # two voided: one place free again, then none
    for paper in papers[:2]:
        rid = paper.get_json()["response_id"]
        assert client.post(f"/api/v1/rounds/{LIVE}/surveys/{rid}/void", json={"reason": "录入重复"},
                           headers=keys.header("admin")).status_code == 200
    assert public(client, link).status_code == 201
    assert public(client, link).status_code == 409
    counts = store_of(app).survey_counts(LIVE, len(app.extensions["scoring"].rubric("shenyang-2018").item_codes))
    assert counts.get("public", "heping-001").responses == 3


def test_mongo_gives_old_public_responses_their_places(app, client, keys, live):
    """Public responses a MongoDB store holds from before they took places get them when it starts, once,
    however many workers start at once; a voided one gets none."""
    from scoring_service.store.mongo import MongoStore

    store = store_of(app)
    if not isinstance(store, MongoStore):
        pytest.skip("the embedded store counts standing public responses in its statistics")
    link = new_link(client, keys)
    standing, voided = (admin_public(client, keys).get_json()["response_id"] for _ in range(2))
    assert client.post(f"/api/v1/rounds/{LIVE}/surveys/{voided}/void", json={"reason": "录入重复"},
                       headers=keys.header("admin")).status_code == 200
    store.db.quota_slots.delete_many({"unlinked": True})  # as stored before they took places
    store.db.meta.delete_one({"_id": "public_places"})
    assert public(client, link).status_code == 201
    store.init()
    store.init()  # a second worker starting: no second place
    assert [d["response_id"] for d in store.db.quota_slots.find({"unlinked": True})] == [standing]
    assert public(client, link).status_code == 201  # the third place: a link's, a link's, the paper one
    assert public(client, link).status_code == 409
    assert store._fill_public_places() == 0


def test_public_cap_defaults_to_households(app, client, keys, live):
    body = {**ROUND, "round_id": "r-default", "closes_at": "2099-12-31T23:59:59+08:00"}
    assert client.post("/api/v1/rounds", json=body, headers=keys.header("admin")).status_code == 201
    quota = survey_links.link_quota(app.extensions["scoring"], store_of(app).get_round("r-default"), "heping-002")
    assert quota.public_cap == 80  # 三好里's households
    link = new_link(client, keys, "heping-002", "r-default")
    batch = {"responses": [survey("heping-002", respondent_type="public") for _ in range(81)]}
    app.config["LINK_HOURLY_CAP"] = 1000
    r = client.post("/api/v1/rounds/r-default/surveys/batch", json=batch, headers=bearer(link))
    assert r.get_json()["created"] == 80
    assert [x.get("error") for x in r.get_json()["results"]].count("public_cap_reached") == 1


def test_public_cap_exact_under_concurrency(app, database_url, tmp_path, client, keys, live):
    """Two apps (two workers) and eight threads post public responses at once: exactly the cap is stored."""
    link = new_link(client, keys)
    other = make_app(database_url, tmp_path / "other")
    clients = [app.test_client(), other.test_client()]
    statuses = []

    def worker(n):
        c = clients[n % 2]
        for _ in range(2):
            statuses.append(public(c, link).status_code)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.extensions["scoring"].store.close()
    assert sorted(statuses) == [201] * 3 + [409] * 13
    assert sum(r["respondent_type"] == "public" for r in store_of(app).iter_responses(LIVE)) == 3


def test_hourly_cap_per_address_is_exact_across_workers(app, database_url, tmp_path, client, keys, live):
    app.config["LINK_HOURLY_CAP"] = 4
    other = make_app(database_url, tmp_path / "other", LINK_HOURLY_CAP=4)
    link = new_link(client, keys)
    first, second = app.test_client(), other.test_client()
    statuses = [post(c, link).status_code for c in (first, second) * 3]
    assert statuses == [201] * 4 + [429] * 2
    r = post(second, link)
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 3600
    # another address has its own count
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "10.1.2.3"
    assert post(elsewhere, link).status_code == 201
    other.extensions["scoring"].store.close()
    links = [r for r in store_of(app).iter_responses(LIVE) if r.get("link_id") == link["link_id"]]
    assert len(links) == 5  # counted from the store: 4 from one address, 1 from the other
    assert len({r["address_hash"] for r in links}) == 2
    assert all("127.0.0.1" not in str(r) for r in links)  # addresses are kept only as keyed hashes


def test_hourly_cap_concurrent(app, database_url, tmp_path, client, keys, live):
    app.config["LINK_HOURLY_CAP"] = 5
    other = make_app(database_url, tmp_path / "other", LINK_HOURLY_CAP=5)
    link = new_link(client, keys)
    clients = [app.test_client(), other.test_client()]
    statuses = []

    def worker(n):
        for _ in range(2):
            statuses.append(post(clients[n % 2], link).status_code)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.extensions["scoring"].store.close()
    assert sorted(statuses) == [201] * 5 + [429] * 7
    assert store_of(app).count_responses(LIVE) == 5


# -- the phone page's view, devices, anomalies ---------------------------------------------------

def test_link_view_counts_participants(app, client, keys, live):
    link = new_link(client, keys)
    r = client.get("/api/v1/link", headers=bearer(link))
    body = r.get_json()
    api_links.LinkSurveySchema().load(body)
    assert body["participants"] == 0
    assert body["community_name"] == "南湖小区" and body["district_name"] == "和平区"
    assert body["round_id"] == LIVE and body["labels"][0] == "非常不满意"
    rubric = app.extensions["scoring"].rubric("shenyang-2018")
    community = store_of(app).get_community("heping-001")
    assert [q["code"] for q in body["questions"]] == [i["code"] for i in rubric.items if rubric.applies(i, community)]
    assert post(client, link).status_code == 201
    assert public(client, link).status_code == 201
    kiosk = survey(household_ref="9-9-909")
    assert client.post(f"/api/v1/rounds/{LIVE}/surveys", json=kiosk, headers=keys.header("kiosk_1")).status_code == 201
    other = survey("heping-002", household_ref="1-1-1")
    assert client.post(f"/api/v1/rounds/{LIVE}/surveys", json=other, headers=keys.header("kiosk_2")).status_code == 201
    assert client.get("/api/v1/link", headers=bearer(link)).get_json()["participants"] == 3  # all types, own community
    r = client.post(f"/api/v1/rounds/{LIVE}/surveys/{kiosk['response_id']}/void", json={"reason": "x"},
                    headers=keys.header("admin"))
    assert r.status_code == 200
    assert client.get("/api/v1/link", headers=bearer(link)).get_json()["participants"] == 2


def test_device_id_stored_and_counted_in_anomalies(app, client, keys, live):
    link = new_link(client, keys)
    client.set_cookie("sd", "dev-AAAAAAAAAAAAAAAA")
    ids = []
    for _ in range(4):
        r = post(client, link)
        assert r.status_code == 201
        ids.append(r.get_json()["response_id"])
        assert "device_id" not in r.get_json()
    stored = store_of(app).get_response(LIVE, ids[0])
    assert stored["device_id"] == "dev-AAAAAAAAAAAAAAAA" and stored["link_id"] == link["link_id"]
    client.set_cookie("sd", "dev-BBBBBBBBBBBBBBBB")
    assert post(client, link).status_code == 201
    client.set_cookie("sd", "<script>")  # malformed: not stored
    r = post(client, link)
    assert store_of(app).get_response(LIVE, r.get_json()["response_id"])["device_id"] is None
    # the device is not part of the content: the same response from another phone is a replay
    body = survey(household_ref="5-5-505")
    assert client.post(f"/api/v1/rounds/{LIVE}/surveys", json=body, headers=bearer(link)).status_code == 201
    client.set_cookie("sd", "dev-CCCCCCCCCCCCCCCC")
    assert client.post(f"/api/v1/rounds/{LIVE}/surveys", json=body, headers=bearer(link)).status_code == 200

    r = client.get(f"/api/v1/rounds/{LIVE}/evidence/anomalies", headers=keys.header("admin"))
    assert r.status_code == 200
    document = r.get_json()
    AnomaliesSchema().load(document)
    assert document["repeated_devices"] == [{"community_id": "heping-001", "device_id": "dev-AAAAAAAAAAAAAAAA",
                                             "responses": sorted(ids), "limit": 3}]


# -- audit and description -----------------------------------------------------------------------

def test_every_write_is_audited(app, client, keys, live):
    link = new_link(client, keys)
    assert post(client, link).status_code == 201
    assert post(client, link, community_id="heping-002").status_code == 403
    assert client.delete(f"{LINKS}/{link['link_id']}", headers=keys.header("admin")).status_code == 200
    events = store_of(app).list_audit({}, 1000)
    mine = [(e["entity_type"], e["outcome"], e["status"], e["key_id"]) for e in events
            if e["key_id"] == link["link_id"] or e["entity_id"] == link["link_id"]]
    assert ("survey_link", "created", 201, keys.ids["admin"]) in mine
    assert ("survey_link", "revoked", 200, keys.ids["admin"]) in mine
    assert ("survey", "created", 201, link["link_id"]) in mine
    assert any(status == 403 and key == link["link_id"] for _, _, status, key in mine)


def test_rate_limited_and_capped_attempts_are_audited(app, client, keys, live):
    app.config["LINK_HOURLY_CAP"] = 1
    link = new_link(client, keys)
    assert public(client, link).status_code == 201
    assert public(client, link).status_code == 429
    statuses = [e["status"] for e in store_of(app).list_audit({"key_id": link["link_id"]}, 100)]
    assert sorted(statuses) == [201, 429]


def test_openapi_describes_closed_objects(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    paths = spec["paths"]
    links = "/api/v1/rounds/{round_id}/communities/{community_id}/survey-links"
    assert {"post", "get"} <= set(paths[links]) and "delete" in paths[links + "/{link_id}"]
    assert "get" in paths["/api/v1/link"]
    schemas = spec["components"]["schemas"]
    for name in ("SurveyLink", "NewSurveyLink", "SurveyLinkList", "LinkSurvey", "Question", "RepeatedDevice"):
        assert schemas[name]["additionalProperties"] is False, name
    assert "public_cap" in schemas["RoundCreate"]["properties"]


def test_replay_at_the_caps_is_a_duplicate(app, client, keys, live):
    """A phone's queued retry of an accepted response is answered 200 even when its caps are full."""
    app.config["LINK_HOURLY_CAP"] = 3
    link = new_link(client, keys)
    bodies = [survey(respondent_type="public") for _ in range(3)]
    for body in bodies:
        assert client.post(f"/api/v1/rounds/{LIVE}/surveys", json=body, headers=bearer(link)).status_code == 201
    assert public(client, link).status_code == 429
    for body in bodies:
        assert client.post(f"/api/v1/rounds/{LIVE}/surveys", json=body, headers=bearer(link)).status_code == 200
    app.config["LINK_HOURLY_CAP"] = 100
    r = public(client, link)
    assert r.status_code == 409 and r.get_json()["error"] == "public_cap_reached"
    assert store_of(app).count_responses(LIVE) == 3


# -- posters (drawn by reports/posters.py) -------------------------------------------------------

def test_poster_qr_round_trip(app, client, keys, live, tmp_path):
    """The QR code decoded from the served PNG and PDF is the link's URL, and that URL's token works."""
    from scoring_service.reports.supervision import PdfFontError, find_font

    from .test_posters import REQUIRE, decode_qr, pdf_text, render_pdf, skip_or_fail

    try:
        find_font()
    except PdfFontError as exc:
        skip_or_fail(f"no CJK font ({exc})", REQUIRE)
    app.config["PUBLIC_BASE_URL"] = "https://pj.example.gov.cn"
    link = new_link(client, keys)
    base = f"{LINKS}/{link['link_id']}"
    png = client.get(f"{base}/poster.png", headers=keys.header("admin"))
    assert png.status_code == 200 and png.mimetype == "image/png"
    (tmp_path / "poster.png").write_bytes(png.data)
    assert decode_qr(tmp_path / "poster.png") == [link["url"]]
    pdf = client.get(f"{base}/poster.pdf", headers=keys.header("admin"))
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF-")
    assert decode_qr(render_pdf(pdf.data, tmp_path)) == [link["url"]]
    text = "".join(pdf_text(pdf.data, tmp_path).split())
    assert "南湖小区" in text and "和平区" in text
    token = link["url"].rsplit("/s/", 1)[1]
    assert client.get("/api/v1/link", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    for suffix in ("poster.png", "poster.pdf"):
        assert client.get(f"{base}/{suffix}", headers=bearer(link)).status_code == 403
        assert client.get(f"{base}/{suffix}", headers=keys.header("leadership")).status_code == 403
        other = f"/api/v1/rounds/{LIVE}/communities/heping-002/survey-links/{link['link_id']}/{suffix}"
        assert client.get(other, headers=keys.header("admin")).status_code == 404


def test_no_poster_for_a_link_that_takes_no_surveys(app, client, keys, live, monkeypatch):
    """Before: a revoked or expired link's poster was printed, and its QR code led residents to a refusal."""
    revoked, expiring = new_link(client, keys), new_link(client, keys)
    assert client.delete(f"{LINKS}/{revoked['link_id']}", headers=keys.header("admin")).status_code == 200
    for suffix in ("poster.png", "poster.pdf"):
        r = client.get(f"{LINKS}/{revoked['link_id']}/{suffix}", headers=keys.header("admin"))
        assert r.status_code == 409 and r.get_json()["error"] == "link_revoked"
        assert client.get(f"{LINKS}/{expiring['link_id']}/{suffix}", headers=keys.header("admin")).status_code == 200
    monkeypatch.setattr(survey_links, "now_stored", lambda: "2100-01-01T00:00:00.000000Z")  # after closes_at
    r = client.get(f"{LINKS}/{expiring['link_id']}/poster.png", headers=keys.header("admin"))
    assert r.status_code == 409 and r.get_json()["error"] == "link_expired"


def test_poster_after_the_secret_key_changed(app, client, keys, live):
    link = new_link(client, keys)
    app.extensions["scoring"].secret_key = "another-secret-key"
    r = client.get(f"{LINKS}/{link['link_id']}/poster.png", headers=keys.header("admin"))
    assert r.status_code == 409 and r.get_json()["error"] == "link_secret_changed"


# -- the store's part ------------------------------------------------------------------------------

def test_store_links_and_quota_contract(store):
    from scoring_service.store import Outcome
    from scoring_service.store.base import LinkQuota

    from .test_store_contract import N_ITEMS, open_round, response

    at = "2026-01-01T10:00:00.000000Z"
    link = {"link_id": "l_1", "round_id": "R", "community_id": "c1", "secret_hash": "x", "created_at": at,
            "created_by": "k1", "expires_at": "2099-01-01T00:00:00.000000Z"}
    store.create_survey_link(link)
    assert store.get_survey_link("l_1") == {**link, "revoked_at": None}
    assert store.get_survey_link("l_2") is None
    assert [r["link_id"] for r in store.list_survey_links("R", "c1")] == ["l_1"]
    assert store.list_survey_links("R", "c2") == []
    # the whole round's links in one read: by community, then oldest first; other rounds' left out
    an_hour_on = "2026-01-01T11:00:00.000000Z"
    for link_id, round_id, community_id, created_at in (("l_0", "R", "c2", at), ("l_3", "R", "c1", an_hour_on),
                                                        ("l_4", "S", "c1", at), ("l_5", "R", "c2", at)):
        store.create_survey_link({**link, "link_id": link_id, "round_id": round_id, "community_id": community_id,
                                  "created_at": created_at})
    assert [r["link_id"] for r in store.list_survey_links("R")] == ["l_1", "l_3", "l_0", "l_5"]
    assert [r["link_id"] for r in store.list_survey_links("R", "c1")] == ["l_1", "l_3"]
    assert store.list_survey_links("T") == []
    assert store.revoke_survey_link("l_1", "2026-01-02T00:00:00.000000Z")
    assert store.revoke_survey_link("l_1", "2026-01-03T00:00:00.000000Z")  # keeps the first time
    assert store.get_survey_link("l_1")["revoked_at"] == "2026-01-02T00:00:00.000000Z"
    assert not store.revoke_survey_link("l_2", at)

    open_round(store)

    def linked(rid, address="a1", **kw):
        return {**response(rid, **kw), "received_at": "2026-01-01T10:30:00.000000Z", "link_id": "l_1",
                "address_hash": address, "device_id": "d1"}

    quota = LinkQuota(public_cap=2, hourly_cap=3, window_start=at)
    batch = [linked("p1", respondent_type="public"), linked("p1", respondent_type="public"),
             linked("p2", respondent_type="public"), linked("p3", respondent_type="public"),
             linked("r1", household="h1"), linked("r2", household="h2")]
    assert store.add_responses("R", batch, N_ITEMS, quota=quota) == [
        Outcome.CREATED, Outcome.DUPLICATE, Outcome.CREATED, Outcome.PUBLIC_CAP, Outcome.CREATED,
        Outcome.RATE_LIMITED]
    assert store.add_responses("R", [linked("r1", household="h1")], N_ITEMS, quota=quota) == [Outcome.DUPLICATE]
    assert store.add_responses("R", [linked("r3", address="a2", household="h1")], N_ITEMS, quota=quota) == [
        Outcome.HOUSEHOLD]  # refused: its place goes back
    assert store.add_responses("R", [linked("r4", address="a2", household="h4")], N_ITEMS, quota=quota) == [
        Outcome.CREATED]
    later = LinkQuota(public_cap=2, hourly_cap=3, window_start="2026-01-01T11:00:00.000000Z")
    assert store.add_responses("R", [linked("r5", household="h5")], N_ITEMS, quota=quota) == [Outcome.RATE_LIMITED]
    # the next hour's window counts afresh
    assert store.add_responses("R", [linked("r5", household="h5")], N_ITEMS, quota=later) == [Outcome.CREATED]
    assert store.get_response("R", "p1")["device_id"] == "d1"
    assert store.count_responses("R") == 5


def test_sqlite_file_from_before_links_gets_their_columns(tmp_path):
    import sqlite3

    from scoring_service.store.sqlite import SQLiteStore

    path = tmp_path / "old.sqlite3"
    SQLiteStore(path).init()
    with sqlite3.connect(path) as conn:  # as a file made before survey links
        conn.execute("DROP INDEX responses_by_link_address")
        conn.execute("DROP INDEX responses_by_device")  # the anomaly report's, made later still
        for column in ("link_id", "address_hash", "device_id"):
            conn.execute(f"ALTER TABLE responses DROP COLUMN {column}")
        conn.execute("DROP TABLE survey_links")
    store = SQLiteStore(path)
    store.init()
    with sqlite3.connect(path) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(responses)")}
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(responses)")}
    assert {"link_id", "address_hash", "device_id"} <= columns and "responses_by_link_address" in indexes
    assert store.list_survey_links("R", "c1") == []
    store.close()


def test_batch_beyond_the_hourly_cap_is_429_and_its_retry_completes(app, client, keys, live):
    """The phone's queue keeps a batch answered 429: those stored answer as duplicates when it is sent again."""
    app.config["LINK_HOURLY_CAP"] = 2
    link = new_link(client, keys)
    batch = {"responses": [survey(household_ref=f"1-1-{n}") for n in range(3)]}
    r = client.post(f"/api/v1/rounds/{LIVE}/surveys/batch", json=batch, headers=bearer(link))
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert store_of(app).count_responses(LIVE) == 2
    events = store_of(app).list_audit({"key_id": link["link_id"]}, 10)
    assert [(e["status"], e["detail"]) for e in events] == [(429, {"created": 2, "duplicate": 0, "rejected": 1})]
    app.config["LINK_HOURLY_CAP"] = 3
    r = client.post(f"/api/v1/rounds/{LIVE}/surveys/batch", json=batch, headers=bearer(link))
    assert r.status_code == 200
    assert (r.get_json()["created"], r.get_json()["duplicate"]) == (1, 2)
    assert store_of(app).count_responses(LIVE) == 3


def test_mongo_public_places_of_a_batch_posted_without_a_link(store):
    """A batch's public responses take their places in one insert; a replay, a response refused as a
    conflict and a replay of a voided one leave exactly one place per standing public response."""
    from scoring_service.store import Outcome
    from scoring_service.store.mongo import MongoStore

    from .test_store_contract import N_ITEMS, open_round, response

    if not isinstance(store, MongoStore):
        pytest.skip("the embedded store counts standing public responses in its statistics")
    open_round(store)

    def places():
        return sorted(d["response_id"] for d in store.db.quota_slots.find({"scope": "public|R|c1"}))

    batch = [response("p1", respondent_type="public"), response("p2", respondent_type="public"),
             response("r1"), response("p1", respondent_type="public")]
    assert store.add_responses("R", batch, N_ITEMS) == [Outcome.CREATED, Outcome.CREATED, Outcome.CREATED,
                                                        Outcome.DUPLICATE]
    assert places() == ["p1", "p2"]
    assert store.add_responses("R", [response("p1", respondent_type="public")], N_ITEMS) == [Outcome.DUPLICATE]
    assert store.add_responses("R", [response("p2", respondent_type="public", content="other")], N_ITEMS) == [
        Outcome.CONFLICT]
    assert places() == ["p1", "p2"]  # the stored responses keep theirs
    assert store.void_response("R", "p1", "重复", "k1", AT_VOID, N_ITEMS) is Outcome.CHANGED
    assert places() == ["p2"]
    assert store.add_responses("R", [response("p1", respondent_type="public")], N_ITEMS) == [Outcome.VOIDED]
    assert places() == ["p2"]  # a voided response holds no place, replayed or not
    assert store.add_responses("R", [response("r9", community="c1", respondent_type="public")], N_ITEMS) == [
        Outcome.CREATED]
    assert places() == ["p2", "r9"]


AT_VOID = "2026-01-02T00:00:00.000000Z"
