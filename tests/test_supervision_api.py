"""GET /rounds/{r}/supervision and milestone progress in the district index (SPEC §11), on both stores,
worked by hand on the conftest world: heping (quota 3, two communities registered) and shenhe (quota 2,
one registered; shenhe-099 is a 2019 community the round does not cover)."""

from __future__ import annotations

import csv
import io
import subprocess

import pytest
from openpyxl import load_workbook

from .conftest import ROUND, full_checks, inspection

R = "/api/v1/rounds/m2018"
DEADLINES = {"plan_approved": "2018-04-30", "residents_voted": "2018-04-30", "illegal_structures_cleared": "2018-04-30",
             "contract_signed": "2018-04-30", "works_completed": "2018-08-31", "accepted": "2018-09-30",
             "management_assigned": "2018-09-30"}
PASSING = {"eligible_households": 150, "participants": 120, "in_favour": 100}
FAILING = {"eligible_households": 1200, "participants": 500, "in_favour": 400}  # fewer than two thirds took part


def put(client, headers, community, code, reached_on, **extra):
    r = client.put(f"{R}/communities/{community}/milestones/{code}", json={"reached_on": reached_on, **extra},
                   headers=headers)
    assert r.status_code in (200, 201), r.get_json()


@pytest.fixture
def supervised(client, keys, world):
    admin, heping = keys.header("admin"), keys.header("district_heping")
    body = {**ROUND, "round_id": "m2018", "quotas": {"heping": 3, "shenhe": 2}, "milestone_deadlines": DEADLINES,
            "progress_rule": "milestones", "progress_as_of": "2018-06-01"}
    assert client.post("/api/v1/rounds", json=body, headers=admin).status_code == 201
    put(client, admin, "heping-001", "plan_approved", "2018-04-20")
    put(client, heping, "heping-001", "residents_voted", "2018-05-05", votes=PASSING)  # late by 5 days
    put(client, heping, "heping-002", "plan_approved", "2018-05-10")  # late by 10 days
    put(client, admin, "shenhe-001", "plan_approved", "2018-04-25")
    put(client, admin, "shenhe-001", "residents_voted", "2018-04-28", votes=FAILING)  # stored, not reached
    return keys


def report(client, keys, key="leadership", **query):
    q = "&".join(f"{k}={v}" for k, v in query.items())
    r = client.get(f"{R}/supervision?{q}", headers=keys.header(key))
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def test_progress_and_warnings_worked_by_hand(client, supervised):
    body = report(client, supervised, as_of="2018-06-01")
    assert body["as_of"] == "2018-06-01" and body["progress_rule"] == "milestones"
    districts = {d["district_id"]: d for d in body["districts"]}
    # M_due at 1 June: plan_approved, residents_voted, illegal_structures_cleared, contract_signed (4 milestones)
    # heping: 001 plan 1 + vote 0.5; 002 plan 0.5 → 2 of 3 × 4 → 16.67
    # shenhe: 001 plan 1 (the failed vote counts 0) → 1 of 2 × 4 → 12.5
    assert districts["heping"]["progress"] == 16.67 and districts["shenhe"]["progress"] == 12.5
    assert [d["district_id"] for d in body["districts"]] == ["shenhe", "heping"]  # slowest first
    h = districts["heping"]
    assert (h["quota"], h["communities"], h["milestones_due"]) == (3, 2, 4)
    assert (h["on_time"], h["late"], h["overdue"], h["overdue_communities"]) == (1, 2, 5, 2)
    assert h["warning"] is True
    assert h["reasons"] == [{"code": "overdue_milestones", "communities": ["heping-001", "heping-002"]},
                            {"code": "communities_missing", "communities": []}]
    s = districts["shenhe"]
    assert s["reasons"][0] == {"code": "overdue_milestones", "communities": ["shenhe-001"]}
    assert {"code": "communities_missing", "communities": []} in s["reasons"]
    rows = {c["community_id"]: c for c in body["communities"]}
    assert set(rows) == {"heping-001", "heping-002", "shenhe-001"}
    vote = rows["shenhe-001"]["milestones"]["residents_voted"]
    assert vote["status"] == "overdue" and vote["days_overdue"] == 32 and vote["votes"]["passed"] is False
    assert vote["reached_on"] == "2018-04-28"  # the record's date is shown, the status says not reached
    assert rows["heping-001"]["milestones"]["residents_voted"] == {
        "deadline": "2018-04-30", "reached_on": "2018-05-05", "status": "late", "days_late": 5,
        "votes": {**PASSING, "passed": True}}
    assert rows["heping-001"]["milestones"]["works_started"] == {"deadline": None, "reached_on": None,
                                                                 "status": "pending"}


def test_as_of_before_the_first_deadline(client, supervised):
    body = report(client, supervised, as_of="2018-04-15")
    assert {d["district_id"] for d in body["districts"]} == {"heping", "shenhe"}
    assert all(d["progress"] == 100 and d["milestones_due"] == 0 and not d["warning"] for d in body["districts"])
    # the 20 April record is after t: not reached at t, yet shown with its date
    plan = next(c for c in body["communities"] if c["community_id"] == "heping-001")["milestones"]["plan_approved"]
    assert plan == {"deadline": "2018-04-30", "reached_on": "2018-04-20", "status": "pending"}


def test_the_district_index_uses_milestone_progress(client, supervised):
    ranking = client.get(f"{R}/rankings/districts", headers=supervised.header("leadership")).get_json()
    progress = {d["district_id"]: d["progress"] for d in ranking["districts"]}
    assert progress == {"heping": 16.67, "shenhe": 12.5}  # at the round's progress_as_of
    # a round created as before keeps the graded share (nothing graded yet: 0)
    before = client.get("/api/v1/rounds/r2018/rankings/districts", headers=supervised.header("leadership")).get_json()
    assert {d["progress"] for d in before["districts"]} == {0.0}


def test_published_snapshot_keeps_the_progress_of_publication(client, supervised):
    admin = supervised.header("admin")
    assert client.post(f"{R}/publish", headers=admin).status_code == 200
    put(client, admin, "heping-002", "residents_voted", "2018-04-29", votes=PASSING)  # milestones stay writable
    published = client.get(f"{R}/rankings/districts").get_json()
    assert {d["district_id"]: d["progress"] for d in published["districts"]} == {"heping": 16.67, "shenhe": 12.5}
    assert report(client, supervised, as_of="2018-06-01")["districts"][1]["progress"] == 25.0  # live: + 1 on time


def test_accepted_but_failing_and_construction_below_pass(client, supervised):
    admin = supervised.header("admin")
    for code, day in (("residents_voted", "2018-05-12"), ("illegal_structures_cleared", "2018-05-01"),
                      ("contract_signed", "2018-05-15"), ("works_started", "2018-05-20"),
                      ("works_completed", "2018-08-20"), ("accepted", "2018-09-20")):
        put(client, admin, "heping-002", code, day, **({"votes": PASSING} if code == "residents_voted" else {}))
    community = {"community_id": "shenhe-001", "has_elevator": False, "heating_retrofit": True}
    low = inspection(community, full_checks(community, lambda c: 0 if not c.get("critical") else c["max_points"]),
                     stage="construction")
    r = client.post(f"{R}/inspections", json=low, headers=supervised.header("agency_a"))
    assert r.status_code == 201, r.get_json()
    body = report(client, supervised, as_of="2018-10-01")
    reasons = {d["district_id"]: {x["code"]: x["communities"] for x in d["reasons"]} for d in body["districts"]}
    assert reasons["heping"]["accepted_but_failing"] == ["heping-002"]  # accepted, no grade yet
    assert reasons["shenhe"]["construction_below_pass"] == ["shenhe-001"]
    flags = {c["community_id"]: c["flags"] for c in body["communities"]}
    assert flags["heping-002"] == ["accepted_but_failing"] and flags["heping-001"] == []


def test_who_reads_the_report(client, supervised):
    body = report(client, supervised, key="district_heping", as_of="2018-06-01")
    assert [d["district_id"] for d in body["districts"]] == ["heping"]
    assert {c["district_id"] for c in body["communities"]} == {"heping"}
    assert client.get(f"{R}/supervision?district_id=shenhe", headers=supervised.header("district_heping")).status_code == 403
    assert client.get(f"{R}/supervision?district_id=heping",
                      headers=supervised.header("district_heping")).status_code == 200
    assert client.get(f"{R}/supervision", headers=supervised.header("agency_a")).status_code == 403
    assert client.get(f"{R}/supervision", headers=supervised.header("kiosk_1")).status_code == 403
    assert client.get(f"{R}/supervision").status_code == 401
    assert client.get("/api/v1/rounds/nope/supervision", headers=supervised.header("admin")).status_code == 404
    r = client.get(f"{R}/supervision?as_of=2018-02-30", headers=supervised.header("admin"))
    assert r.status_code == 422 and "as_of" in r.get_json()["errors"]


def test_the_printable_report(client, supervised, tmp_path):
    lead = supervised.header("leadership")
    r = client.get(f"{R}/supervision?as_of=2018-06-01&format=csv", headers=lead)
    assert r.status_code == 200 and r.mimetype == "text/csv"
    text = r.data.decode("utf-8-sig")
    assert "和平区" in text and "沈河区" in text and "南湖小区" in text
    r = client.get(f"{R}/supervision?as_of=2018-06-01&format=xlsx", headers=lead)
    workbook = load_workbook(io.BytesIO(r.data))
    assert any("和平区" in str(cell.value) for sheet in workbook for row in sheet.iter_rows() for cell in row)
    r = client.get(f"{R}/supervision?as_of=2018-06-01&format=pdf", headers=lead)
    assert r.status_code == 200 and r.mimetype == "application/pdf" and r.data.startswith(b"%PDF")
    assert "filename*=UTF-8''m2018-" in r.headers["Content-Disposition"]
    pdf = tmp_path / "notice.pdf"
    pdf.write_bytes(r.data)
    words = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    for expected in ("和平区", "沈河区", "逾期节点较多", "登记小区不足", "三好里"):
        assert expected in words
    rows = [r[:5] for r in csv.reader(io.StringIO(text))]
    assert ["heping", "和平区", "3", "2", "16.67"] in rows  # the district table, worked by hand above
