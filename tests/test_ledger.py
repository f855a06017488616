"""Funding ledger (SPEC §12), on both stores: funding records, disbursements and the ledger, worked by
hand on the conftest world (heping-001, heping-002, shenhe-001 renovated in 2018; shenhe-099 in 2019).

The round ``f2018`` has a city budget of 2,000,000 fen and a reward pool of 1,000,000 fen; "today" is
fixed at 2019-01-15 (China time). Milestones are recorded through the milestones API, in order.
"""

from __future__ import annotations

import csv
import doctest
import io
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook
from schemathesis.errors import FailureGroup
from schemathesis.openapi.checks import JsonSchemaError

from scoring_service.domain import ledger as lg
from scoring_service.store import Outcome

from .conftest import ROUND, full_checks, inspection, survey

R = "/api/v1/rounds/f2018"
TODAY = "2019-01-15"
CITY_BUDGET = 2_000_000
POOL = ROUND["reward"]["pool_fen"]  # 1,000,000


@pytest.fixture
def funded(app, client, keys, world):
    """The round f2018 (city budget set) on the conftest world, with today fixed."""
    app.config["TODAY"] = TODAY
    body = {**ROUND, "round_id": "f2018", "city_budget_fen": CITY_BUDGET}
    r = client.post("/api/v1/rounds", json=body, headers=keys.header("admin"))
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["city_budget_fen"] == CITY_BUDGET
    return keys


def fund(client, keys, community="heping-001", role="admin", expect=(200, 201), **fields):
    body = {"land_category": "non_independent", "approved_budget_fen": 1_000_000, "district_funds_in_place_fen": 0,
            **fields}
    body = {k: v for k, v in body.items() if v is not ...}
    r = client.put(f"{R}/communities/{community}/funding", json=body, headers=keys.header(role))
    expected = expect if isinstance(expect, tuple) else (expect,)
    assert r.status_code in expected, (r.status_code, r.get_json())
    return r


def reach(client, keys, community, *pairs):
    """Record milestones (code, date) in order."""
    for code, day in pairs:
        body = {"reached_on": day}
        if code == "residents_voted":
            body["votes"] = {"eligible_households": 90, "participants": 60, "in_favour": 31}
        r = client.put(f"{R}/communities/{community}/milestones/{code}", json=body, headers=keys.header("admin"))
        assert r.status_code in (200, 201), r.get_json()


def pay(client, keys, tranche, amount, paid_on="2019-01-10", community="heping-001", disbursement_id=None,
        expect=201, **extra):
    body = {"disbursement_id": disbursement_id or str(uuid.uuid4()), "tranche": tranche, "amount_fen": amount,
            "paid_on": paid_on, **extra}
    r = client.post(f"{R}/communities/{community}/disbursements", json=body, headers=keys.header("admin"))
    assert r.status_code == expect, (r.status_code, r.get_json())
    return r


def ledger(client, keys, role="leadership", round_path=R, **query):
    q = "&".join(f"{k}={v}" for k, v in query.items())
    r = client.get(f"{round_path}/ledger?{q}", headers=keys.header(role))
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def row(body, community="heping-001"):
    return next(c for c in body["communities"] if c["community_id"] == community)


def tranches(body, community="heping-001"):
    """(amount, status, reasons) of each tranche."""
    return [(t["amount_fen"], t["status"], t["reasons"]) for t in row(body, community)["tranches"]]


def grade_good(client, keys, community="heping-001", households=150):
    """Full marks from agency A and 10 % of the households answering 5: a good-or-better grade."""
    c = {"community_id": community, "has_elevator": True, "heating_retrofit": True} if community == "heping-001" \
        else {"community_id": community, "has_elevator": False, "heating_retrofit": False}
    r = client.post(f"{R}/inspections", json=inspection(c, full_checks(c)), headers=keys.header("agency_a"))
    assert r.status_code == 201, r.get_json()
    answers = {"roads": 5, "water": 5}
    batch = [survey(community, answers=answers, overall=5) for _ in range(-(-households // 10))]
    r = client.post(f"{R}/surveys/batch", json={"responses": batch}, headers=keys.header("admin"))
    assert r.status_code == 200 and r.get_json()["created"] == len(batch), r.get_json()
    score = client.get(f"{R}/communities/{community}/score", headers=keys.header("leadership")).get_json()
    assert score["grade"] in ("excellent", "good"), score


ALL_REACHED = (("contract_signed", "2018-04-20"), ("works_completed", "2018-08-20"), ("accepted", "2018-09-25"),
               ("settled", "2018-12-01"))


# -- the subsidy and its tranches, worked by hand ----------------------------------------------

def test_odd_budgets_worked_by_hand(client, funded):
    # heping-001: 1,000,001 fen → S = 500,000 (the odd fen is the district's); cum 150,000 / 400,000 / 500,000
    fund(client, funded, approved_budget_fen=1_000_001, district_funds_in_place_fen=1_000_001, expect=201)
    # shenhe-001: 333 fen → S = 166; cum ⌊49.8⌋ = 49, ⌊132.8⌋ = 132, 166 → amounts 49, 83, 34
    fund(client, funded, "shenhe-001", approved_budget_fen=333, district_funds_in_place_fen=333, expect=201)
    reach(client, funded, "heping-001", ("contract_signed", "2018-04-20"))
    body = ledger(client, funded, as_of="2018-06-01")
    assert body["as_of"] == "2018-06-01"
    h = row(body)
    assert (h["land_category"], h["approved_budget_fen"], h["settled_budget_fen"], h["district_funds_in_place_fen"],
            h["subsidy_fen"]) == ("non_independent", 1_000_001, None, 1_000_001, 500_000)
    assert tranches(body) == [(150_000, "due", []), (250_000, "not_due", []), (100_000, "not_due", [])]
    assert [t["milestone"] for t in h["tranches"]] == ["contract_signed", "works_completed", "settled"]
    assert "paid_on" not in h["tranches"][0] and "disbursement_id" not in h["tranches"][0]
    assert row(body, "shenhe-001")["subsidy_fen"] == 166
    assert tranches(body, "shenhe-001") == [(49, "not_due", []), (83, "not_due", []), (34, "not_due", [])]
    assert body["totals"] == {"subsidy_fen": 500_166, "paid_fen": 0, "due_fen": 150_000, "held_fen": 0,
                              "refund_due_fen": 0}
    districts = {d["district_id"]: d for d in body["districts"]}
    assert districts["heping"] == {"district_id": "heping", "name_zh": "和平区", "subsidy_fen": 500_000,
                                   "paid_fen": 0, "due_fen": 150_000, "held_fen": 0, "refund_due_fen": 0}
    assert districts["shenhe"]["subsidy_fen"] == 166 and districts["shenhe"]["due_fen"] == 0
    # paid: the tranche shows the payment; the ledger as of a day before the payment does not count it
    d1 = pay(client, funded, 1, 150_000, paid_on="2018-05-10", voucher="沈财拨〔2018〕12号").get_json()
    assert d1["milestone"] == "contract_signed" and d1["voucher"] == "沈财拨〔2018〕12号"
    body = ledger(client, funded, as_of="2018-06-01")
    assert row(body)["tranches"][0] == {"tranche": 1, "milestone": "contract_signed", "amount_fen": 150_000,
                                        "status": "paid", "reasons": [], "paid_on": "2018-05-10",
                                        "disbursement_id": d1["disbursement_id"], "voucher": "沈财拨〔2018〕12号"}
    assert body["totals"]["paid_fen"] == 150_000 and body["totals"]["due_fen"] == 0
    assert tranches(ledger(client, funded, as_of="2018-05-01"))[0] == (150_000, "due", [])


def test_settlement_lower_than_the_approval_is_a_refund(client, funded):
    fund(client, funded, approved_budget_fen=1_000_000, district_funds_in_place_fen=1_000_000)
    grade_good(client, funded)
    reach(client, funded, "heping-001", *ALL_REACHED[:2])
    pay(client, funded, 1, 150_000, paid_on="2018-05-01")
    pay(client, funded, 2, 250_000, paid_on="2018-09-01")
    reach(client, funded, "heping-001", *ALL_REACHED[2:])
    # before the settled budget is known, tranche 3 is the last 20 % of S
    assert tranches(ledger(client, funded))[2] == (100_000, "due", [])
    # settled at 600,000: S_final = 300,000 < 400,000 paid → tranche 3 = −100,000, owed back by the district
    fund(client, funded, approved_budget_fen=1_000_000, settled_budget_fen=600_000,
         district_funds_in_place_fen=1_000_000)
    body = ledger(client, funded)
    assert body["as_of"] == TODAY
    assert row(body)["subsidy_fen"] == 300_000 and row(body)["settled_budget_fen"] == 600_000
    assert tranches(body)[2] == (-100_000, "due", [])
    assert body["totals"] == {"subsidy_fen": 300_000, "paid_fen": 400_000, "due_fen": 0, "held_fen": 0,
                              "refund_due_fen": 100_000}
    # a settlement above the approval never raises the subsidy
    fund(client, funded, approved_budget_fen=1_000_000, settled_budget_fen=1_500_000,
         district_funds_in_place_fen=1_000_000)
    assert row(ledger(client, funded))["subsidy_fen"] == 500_000
    fund(client, funded, approved_budget_fen=1_000_000, settled_budget_fen=600_000,
         district_funds_in_place_fen=1_000_000)
    # the refund received is recorded with the negative amount
    r = pay(client, funded, 3, 100_000, expect=422)
    assert "-100000" in r.get_json()["errors"]["amount_fen"][0]
    pay(client, funded, 3, -100_000, paid_on="2019-01-10")
    body = ledger(client, funded)
    assert tranches(body)[2] == (-100_000, "paid", [])
    assert body["totals"]["paid_fen"] == 300_000 and body["totals"]["refund_due_fen"] == 0
    # the account is settled: the budgets are final, the district's money may still be corrected
    r = fund(client, funded, approved_budget_fen=1_000_002, settled_budget_fen=600_000,
             district_funds_in_place_fen=1_000_000, expect=409)
    assert r.get_json()["error"] == "already_paid" and "approved_budget_fen" in r.get_json()["message"]
    fund(client, funded, approved_budget_fen=1_000_000, settled_budget_fen=600_000,
         district_funds_in_place_fen=999_999, expect=200)


def test_budget_changed_after_tranche_1_was_paid(client, funded):
    fund(client, funded, approved_budget_fen=1_000_000, district_funds_in_place_fen=2_000_000)
    reach(client, funded, "heping-001", ("contract_signed", "2018-04-20"))
    pay(client, funded, 1, 150_000)
    # raised to 1,200,000: S = 600,000, cum₂ = 480,000 → tranche 2 = 480,000 − 150,000 (it absorbs the 30,000)
    fund(client, funded, approved_budget_fen=1_200_000, district_funds_in_place_fen=2_000_000)
    body = ledger(client, funded)
    assert tranches(body) == [(150_000, "paid", []), (330_000, "not_due", []), (120_000, "not_due", [])]
    assert body["totals"]["subsidy_fen"] == 600_000
    reach(client, funded, "heping-001", ("works_completed", "2018-08-20"))
    r = pay(client, funded, 2, 330_001, expect=422)
    assert r.get_json()["errors"] == {"amount_fen": [
        f"must be 330000 fen (3300.00 yuan), the amount of tranche 2 computed today ({TODAY})"]}
    pay(client, funded, 2, 330_000)
    # lowered below what was paid: tranche 3 becomes the refund even before settlement
    fund(client, funded, approved_budget_fen=800_000, district_funds_in_place_fen=2_000_000)
    assert tranches(ledger(client, funded))[2] == (-80_000, "not_due", [])
    # the land category is final once money was paid
    r = fund(client, funded, land_category="independent", approved_budget_fen=800_000,
             district_funds_in_place_fen=2_000_000, expect=409)
    assert r.get_json()["error"] == "already_paid" and "land_category" in r.get_json()["message"]


def test_a_lowered_budget_never_makes_tranche_2_negative(client, funded):
    fund(client, funded, approved_budget_fen=1_000_000, district_funds_in_place_fen=1_000_000)
    reach(client, funded, "heping-001", ("contract_signed", "2018-04-20"), ("works_completed", "2018-08-20"))
    pay(client, funded, 1, 150_000)
    # S = 150,000: cum₂ = 120,000 < 150,000 paid → tranche 2 is 0, tranche 3 takes back 0 (150,000 − 150,000)
    fund(client, funded, approved_budget_fen=300_000, district_funds_in_place_fen=1_000_000)
    assert tranches(ledger(client, funded)) == [(150_000, "paid", []), (0, "due", []), (0, "not_due", [])]


# -- holds -----------------------------------------------------------------------------------

def test_holds_lift_when_the_districts_money_arrives(client, funded):
    fund(client, funded, approved_budget_fen=1_000_000, district_funds_in_place_fen=0)
    reach(client, funded, "heping-001", ("contract_signed", "2018-04-20"))
    body = ledger(client, funded)
    assert tranches(body)[0] == (150_000, "held", ["district_match_missing"])
    assert body["totals"]["held_fen"] == 150_000 and body["totals"]["due_fen"] == 0
    r = pay(client, funded, 1, 150_000, expect=409)
    assert r.get_json()["error"] == "tranche_not_due"
    assert "district_match_missing" in r.get_json()["message"] and "150000" in r.get_json()["message"]
    # the district's key records its money in place: exactly cum₁ is enough
    fund(client, funded, role="district_heping", approved_budget_fen=1_000_000, district_funds_in_place_fen=150_000)
    assert tranches(ledger(client, funded))[0] == (150_000, "due", [])
    pay(client, funded, 1, 150_000)
    reach(client, funded, "heping-001", ("works_completed", "2018-08-20"))
    assert tranches(ledger(client, funded))[1] == (250_000, "held", ["district_match_missing"])
    fund(client, funded, role="district_heping", approved_budget_fen=1_000_000, district_funds_in_place_fen=400_000)
    body = ledger(client, funded)
    assert tranches(body)[1] == (250_000, "due", [])
    assert body["totals"] == {"subsidy_fen": 500_000, "paid_fen": 150_000, "due_fen": 250_000, "held_fen": 0,
                              "refund_due_fen": 0}


def test_acceptance_failed_holds_tranche_3(client, funded):
    fund(client, funded, approved_budget_fen=1_000_000, district_funds_in_place_fen=400_000)
    reach(client, funded, "heping-001", *ALL_REACHED)
    # not graded yet, and the district's money is short of the whole subsidy
    assert tranches(ledger(client, funded))[2] == (100_000, "held", ["district_match_missing", "acceptance_failed"])
    fund(client, funded, approved_budget_fen=1_000_000, district_funds_in_place_fen=500_000)
    assert tranches(ledger(client, funded))[2] == (100_000, "held", ["acceptance_failed"])
    r = pay(client, funded, 3, 100_000, expect=409)
    assert r.get_json()["error"] == "tranche_not_due" and "acceptance_failed" in r.get_json()["message"]
    grade_good(client, funded)
    assert tranches(ledger(client, funded))[2] == (100_000, "due", [])
    # tranches 1 and 2 never wait for the grade
    assert [s for _, s, _ in tranches(ledger(client, funded))] == ["due", "due", "due"]


def test_independent_land_has_no_subsidy(client, funded):
    fund(client, funded, land_category="independent", approved_budget_fen=5_000_000,
         district_funds_in_place_fen=5_000_000)
    reach(client, funded, "heping-001", ("contract_signed", "2018-04-20"))
    body = ledger(client, funded)
    assert row(body)["subsidy_fen"] == 0
    assert tranches(body) == [(0, "not_applicable", [])] * 3
    assert body["totals"] == {"subsidy_fen": 0, "paid_fen": 0, "due_fen": 0, "held_fen": 0, "refund_due_fen": 0}
    r = pay(client, funded, 1, 0, expect=409)
    assert r.get_json()["error"] == "tranche_not_due" and "not_applicable" in r.get_json()["message"]


def test_communities_without_a_funding_record_are_listed_with_nulls(client, funded):
    fund(client, funded, approved_budget_fen=1_000_000, district_funds_in_place_fen=1_000_000)
    reach(client, funded, "heping-002", ("contract_signed", "2018-04-20"))
    body = ledger(client, funded)
    assert [c["community_id"] for c in body["communities"]] == ["heping-001", "heping-002", "shenhe-001"]
    assert row(body, "heping-002") == {
        "community_id": "heping-002", "district_id": "heping", "land_category": None, "approved_budget_fen": None,
        "settled_budget_fen": None, "district_funds_in_place_fen": None, "subsidy_fen": None,
        "tranches": [{"tranche": k, "milestone": m, "amount_fen": None, "status": "not_due", "reasons": []}
                     for k, m in ((1, "contract_signed"), (2, "works_completed"), (3, "settled"))]}
    districts = {d["district_id"]: d for d in body["districts"]}
    assert districts["shenhe"] == {"district_id": "shenhe", "name_zh": "沈河区", "subsidy_fen": 0, "paid_fen": 0,
                                   "due_fen": 0, "held_fen": 0, "refund_due_fen": 0}
    assert body["committed_subsidy_fen"] == 500_000 and body["totals"]["subsidy_fen"] == 500_000
    r = pay(client, funded, 1, 0, community="heping-002", expect=409)
    assert r.get_json()["error"] == "tranche_not_due" and "no funding record" in r.get_json()["message"]


def test_uncommitted_and_over_committed(client, funded, keys):
    body = ledger(client, funded)
    assert (body["city_budget_fen"], body["reward_pool_fen"], body["committed_subsidy_fen"],
            body["uncommitted_fen"], body["over_committed"]) == (CITY_BUDGET, POOL, 0, 1_000_000, False)
    # 2,000,000 − 1,000,000 (S of 2,000,001) − 1,000,000 (pool) = 0: fully committed, not over
    fund(client, funded, approved_budget_fen=2_000_001)
    body = ledger(client, funded)
    assert (body["committed_subsidy_fen"], body["uncommitted_fen"], body["over_committed"]) == (1_000_000, 0, False)
    fund(client, funded, "shenhe-001", approved_budget_fen=3)  # S = 1
    body = ledger(client, funded)
    assert (body["committed_subsidy_fen"], body["uncommitted_fen"], body["over_committed"]) == (1_000_001, -1, True)
    # a district's view: its own totals, the city budget's commitment still city-wide
    body = ledger(client, funded, role="district_heping")
    assert body["totals"]["subsidy_fen"] == 1_000_000 and body["committed_subsidy_fen"] == 1_000_001
    # a round without a city budget: nulls, never over-committed
    body = ledger(client, keys, round_path="/api/v1/rounds/r2018")
    assert (body["city_budget_fen"], body["uncommitted_fen"], body["over_committed"]) == (None, None, False)


# -- disbursements ----------------------------------------------------------------------------

def test_disbursement_replay_conflict_already_paid_and_audit(client, funded):
    fund(client, funded, approved_budget_fen=1_000_000, district_funds_in_place_fen=1_000_000)
    reach(client, funded, "heping-001", ("contract_signed", "2018-04-20"))
    did = str(uuid.uuid4())
    first = pay(client, funded, 1, 150_000, disbursement_id=did, voucher="V-1").get_json()
    assert first == {"disbursement_id": did, "round_id": "f2018", "community_id": "heping-001", "tranche": 1,
                     "milestone": "contract_signed", "amount_fen": 150_000, "paid_on": "2019-01-10",
                     "voucher": "V-1", "key_id": funded.ids["admin"], "recorded_at": first["recorded_at"]}
    assert pay(client, funded, 1, 150_000, disbursement_id=did, voucher="V-1", expect=200).get_json() == first
    r = pay(client, funded, 1, 150_000, disbursement_id=did, voucher="V-2", expect=409)
    assert r.get_json()["error"] == "conflict"
    r = pay(client, funded, 1, 150_000, voucher="V-1", expect=409)
    assert r.get_json()["error"] == "already_paid" and did in r.get_json()["message"]
    r = pay(client, funded, 2, 250_000, expect=409)
    assert r.get_json()["error"] == "tranche_not_due" and "works_completed" in r.get_json()["message"]
    events = client.get(f"/api/v1/audit?entity_id={did}", headers=funded.header("admin")).get_json()["items"]
    assert [(e["entity_type"], e["outcome"], e["status"]) for e in events] == [
        ("disbursement", "created", 201), ("disbursement", "duplicate", 200)]
    assert events[0]["detail"] == {"community_id": "heping-001", "tranche": 1, "amount_fen": 150_000}
    events = client.get("/api/v1/audit?round_id=f2018", headers=funded.header("admin")).get_json()["items"]
    refused = [e["status"] for e in events if e["path"].endswith("/disbursements") and e["outcome"] == "refused"]
    assert refused == [409, 409, 409]  # conflict, already_paid, tranche_not_due: refused attempts are audited too


def test_disbursement_input_is_checked(client, funded):
    fund(client, funded, approved_budget_fen=1_000_000, district_funds_in_place_fen=1_000_000)
    reach(client, funded, "heping-001", ("contract_signed", "2018-04-20"))
    r = pay(client, funded, 1, 150_000, paid_on="2019-01-16", expect=422)
    assert "after today" in r.get_json()["errors"]["paid_on"][0]
    r = pay(client, funded, 1, 150_000, paid_on="2018-04-19", expect=422)
    assert "contract_signed" in r.get_json()["errors"]["paid_on"][0]
    for bad in ({"tranche": 4}, {"amount_fen": 1.5}, {"amount_fen": "150000"}, {"disbursement_id": "x"},
                {"voucher": "v" * 65}, {"paid_on": "2018-02-30"}, {"extra": 1}):
        body = {"disbursement_id": str(uuid.uuid4()), "tranche": 1, "amount_fen": 150_000, "paid_on": "2019-01-10",
                **bad}
        r = client.post(f"{R}/communities/heping-001/disbursements", json=body, headers=funded.header("admin"))
        assert r.status_code == 422 and set(bad) <= set(r.get_json()["errors"]), (bad, r.get_json())
    r = client.post(f"{R}/communities/shenhe-099/disbursements", headers=funded.header("admin"),
                    json={"disbursement_id": str(uuid.uuid4()), "tranche": 1, "amount_fen": 0, "paid_on": "2019-01-10"})
    assert r.status_code == 422 and "community_id" in r.get_json()["errors"]
    r = client.post(f"/api/v1/rounds/nope/communities/heping-001/disbursements", headers=funded.header("admin"),
                    json={"disbursement_id": str(uuid.uuid4()), "tranche": 1, "amount_fen": 0, "paid_on": "2019-01-10"})
    assert r.status_code == 404


# -- funding records and who may change them ---------------------------------------------------

def test_funding_versions_and_the_district_keys_limits(client, funded):
    r = fund(client, funded, role="district_heping", expect=403)
    assert "admin" in r.get_json()["message"]  # no record yet: the admin records it first
    first = fund(client, funded, approved_budget_fen=1_000_000, district_funds_in_place_fen=0, expect=201).get_json()
    assert (first["version"], first["settled_budget_fen"], first["key_id"]) == (1, None, funded.ids["admin"])
    assert fund(client, funded, approved_budget_fen=1_000_000, district_funds_in_place_fen=0,
                expect=200).get_json()["version"] == 1  # an identical replay writes nothing
    # the district key tries to change the budget: 403 naming the field, nothing written
    r = fund(client, funded, role="district_heping", approved_budget_fen=2_000_000,
             district_funds_in_place_fen=300_000, expect=403)
    assert "approved_budget_fen" in r.get_json()["message"]
    r = fund(client, funded, role="district_heping", approved_budget_fen=1_000_000, settled_budget_fen=900_000,
             district_funds_in_place_fen=300_000, expect=403)
    assert "settled_budget_fen" in r.get_json()["message"]
    # its funds in place: 200, a new version by the district's key
    view = fund(client, funded, role="district_heping", approved_budget_fen=1_000_000,
                district_funds_in_place_fen=300_000, expect=200).get_json()
    assert (view["version"], view["district_funds_in_place_fen"], view["key_id"]) == (
        2, 300_000, funded.ids["district_heping"])
    # another district's key, leadership, an agency: 403
    fund(client, funded, role="district_shenhe", approved_budget_fen=1_000_000, district_funds_in_place_fen=1,
         expect=403)
    fund(client, funded, role="leadership", expect=403)
    fund(client, funded, role="agency_a", expect=403)
    # the admin replaces every field
    fund(client, funded, land_category="independent", approved_budget_fen=7, settled_budget_fen=5,
         district_funds_in_place_fen=300_000, expect=200)
    for role in ("admin", "leadership", "district_heping"):
        got = client.get(f"{R}/communities/heping-001/funding", headers=funded.header(role))
        assert got.status_code == 200, got.get_json()
        body = got.get_json()
        assert (body["version"], body["land_category"], body["settled_budget_fen"]) == (3, "independent", 5)
        assert [(v["version"], v["approved_budget_fen"], v["district_funds_in_place_fen"]) for v in body["history"]] \
            == [(1, 1_000_000, 0), (2, 1_000_000, 300_000), (3, 7, 300_000)]
    other = client.get(f"{R}/communities/heping-001/funding", headers=funded.header("district_shenhe"))
    assert other.status_code == 403
    assert client.get(f"{R}/communities/heping-002/funding", headers=funded.header("admin")).status_code == 404
    events = client.get("/api/v1/audit?entity_id=heping-001", headers=funded.header("admin")).get_json()["items"]
    outcomes = [(e["outcome"], e["status"]) for e in events if e["entity_type"] == "funding"]
    assert outcomes[:4] == [("created", 201), ("duplicate", 200), ("replaced", 200), ("replaced", 200)]


def test_funding_input_is_checked(client, funded):
    for bad, field in (({"land_category": "mixed"}, "land_category"),
                       ({"approved_budget_fen": -1}, "approved_budget_fen"),
                       ({"approved_budget_fen": 1.0}, "approved_budget_fen"),
                       ({"approved_budget_fen": ...}, "approved_budget_fen"),
                       ({"district_funds_in_place_fen": "1"}, "district_funds_in_place_fen"),
                       ({"settled_budget_fen": 10**16}, "settled_budget_fen"), ({"note": "x"}, "note"),
                       ({"community_id": "heping-002"}, "community_id")):
        r = fund(client, funded, expect=422, **bad)
        assert field in r.get_json()["errors"], (bad, r.get_json())
    assert fund(client, funded, community_id="heping-001", expect=201).get_json()["version"] == 1
    r = fund(client, funded, "shenhe-099", expect=422)  # renovated in 2019: not covered by the round
    assert "community_id" in r.get_json()["errors"]
    fund(client, funded, "nowhere", expect=404)
    r = client.put("/api/v1/rounds/nope/communities/heping-001/funding", headers=funded.header("admin"),
                   json={"land_category": "independent", "approved_budget_fen": 0, "district_funds_in_place_fen": 0})
    assert r.status_code == 404


def test_round_city_budget_field(client, funded, keys):
    r2018 = client.get("/api/v1/rounds/r2018", headers=keys.header("admin")).get_json()
    assert "city_budget_fen" not in r2018  # absent unless given: rounds created before keep their content
    for bad in (-1, 1.5, "100", None):
        r = client.post("/api/v1/rounds", json={**ROUND, "round_id": "x", "city_budget_fen": bad},
                        headers=keys.header("admin"))
        assert r.status_code == 422 and "city_budget_fen" in r.get_json()["errors"], bad
    assert client.get(R, headers=keys.header("leadership")).get_json()["city_budget_fen"] == CITY_BUDGET


# -- reading the ledger --------------------------------------------------------------------------

def test_who_reads_the_ledger(client, funded):
    fund(client, funded, approved_budget_fen=1_000_000)
    fund(client, funded, "shenhe-001", approved_budget_fen=500)
    body = ledger(client, funded, role="district_heping")
    assert [d["district_id"] for d in body["districts"]] == ["heping"]
    assert {c["district_id"] for c in body["communities"]} == {"heping"}
    assert body["totals"]["subsidy_fen"] == 500_000
    assert ledger(client, funded, role="district_heping", district_id="heping")["totals"] == body["totals"]
    assert client.get(f"{R}/ledger?district_id=shenhe", headers=funded.header("district_heping")).status_code == 403
    only = ledger(client, funded, district_id="shenhe")
    assert [c["community_id"] for c in only["communities"]] == ["shenhe-001"] and only["totals"]["subsidy_fen"] == 250
    for role in ("agency_a", "kiosk_1"):
        assert client.get(f"{R}/ledger", headers=funded.header(role)).status_code == 403
    assert client.get(f"{R}/ledger").status_code == 401
    assert client.get("/api/v1/rounds/nope/ledger", headers=funded.header("admin")).status_code == 404
    r = client.get(f"{R}/ledger?as_of=2018-02-30", headers=funded.header("admin"))
    assert r.status_code == 422 and "as_of" in r.get_json()["errors"]
    r = client.get(f"{R}/ledger?format=pdf", headers=funded.header("admin"))
    assert r.status_code == 422 and "format" in r.get_json()["errors"]


def test_the_ledger_as_csv_and_xlsx(client, funded):
    fund(client, funded, approved_budget_fen=1_000_001, district_funds_in_place_fen=0)
    fund(client, funded, "shenhe-001", land_category="independent", approved_budget_fen=3)
    reach(client, funded, "heping-001", ("contract_signed", "2018-04-20"))
    lead = funded.header("leadership")
    r = client.get(f"{R}/ledger?format=csv", headers=lead)
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert "filename*=UTF-8''f2018-%E8%B5%84%E9%87%91%E5%8F%B0%E8%B4%A6" in r.headers["Content-Disposition"]
    table = list(csv.reader(io.StringIO(r.data.decode("utf-8-sig"))))
    text = r.data.decode("utf-8-sig")
    assert table[0] == ["老旧小区改造市级补助资金台账"]
    assert "市级资金预算" in text and "小区拨付明细" in text and "南湖小区" in text and "和平区" in text
    header = next(line for line in table if line and line[0] == "小区编号")
    rows = {line[0]: dict(zip(header, line)) for line in table if line and line[0] in ("heping-001", "shenhe-001")}
    h = rows["heping-001"]
    assert (h["土地类别"], h["批复预算（元）"], h["市级补贴（元）"]) == ("原土地非独立操作区", "10000.01", "5000.00")
    assert (h["第一笔（签订施工合同）金额（元）"], h["第一笔状态"], h["第一笔暂缓原因"]) == (
        "1500.00", "暂缓拨付", "区级配套资金未同步到位")
    assert rows["shenhe-001"]["第一笔状态"] == "不适用" and rows["shenhe-001"]["市级补贴（元）"] == "0.00"
    summary = {line[0]: line[1] for line in table if len(line) == 2}
    assert summary["市级资金预算"] == "20000.00" and summary["暂缓拨付"] == "1500.00"
    r = client.get(f"{R}/ledger?format=xlsx", headers=lead)
    assert r.status_code == 200
    book = load_workbook(io.BytesIO(r.data))
    assert book.sheetnames == ["资金汇总", "各区资金", "小区拨付明细"]
    sheet = book["小区拨付明细"]
    headers = [c.value for c in sheet[1]]
    first = next(r for r in sheet.iter_rows(min_row=2) if r[0].value == "heping-001")
    cells = dict(zip(headers, first))
    assert cells["批复预算（元）"].value == 10000.01 and cells["批复预算（元）"].number_format == "#,##0.00"
    assert cells["小区名称"].value == "南湖小区" and cells["第一笔状态"].value == "暂缓拨付"
    district = book["各区资金"]
    assert [c.value for c in district[1]][:3] == ["区编号", "区名称", "市级补贴（元）"]
    # a district key's export: its own district only
    r = client.get(f"{R}/ledger?format=csv", headers=funded.header("district_heping"))
    assert r.status_code == 200 and "shenhe-001" not in r.data.decode("utf-8-sig")
    assert "（和平区）" in r.data.decode("utf-8-sig")


def test_ledger_responses_conform_to_the_openapi_document(app, client, funded):
    import schemathesis
    from schemathesis.checks import content_type_conformance, response_schema_conformance, status_code_conformance

    fund(client, funded, approved_budget_fen=1_000_000, district_funds_in_place_fen=1_000_000)
    reach(client, funded, "heping-001", ("contract_signed", "2018-04-20"))
    paid = pay(client, funded, 1, 150_000)
    document = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    checks = [status_code_conformance, content_type_conformance, response_schema_conformance]
    prefix = "/api/v1/rounds/{round_id}"
    lead = funded.header("leadership")
    for template, method, path, response in (
            ("/ledger", "GET", "/ledger", client.get(f"{R}/ledger", headers=lead)),
            ("/ledger", "GET", "/ledger?format=xlsx", client.get(f"{R}/ledger?format=xlsx", headers=lead)),
            ("/communities/{community_id}/funding", "GET", "", client.get(f"{R}/communities/heping-001/funding",
                                                                         headers=lead)),
            ("/communities/{community_id}/disbursements", "POST", "", paid)):
        assert response.status_code in (200, 201)
        params = {"round_id": "f2018"} | ({"community_id": "heping-001"} if "community_id" in template else {})
        query = dict(p.split("=") for p in path.partition("?")[2].split("&") if p)
        case = document[prefix + template][method].Case(path_parameters=params, query=query)
        case.validate_response(response, checks=checks)
    # the shape is closed: an unknown field in a tranche row does not conform
    body = client.get(f"{R}/ledger", headers=lead)
    drifted = body.get_json()
    drifted["communities"][0]["tranches"][0]["unexpected"] = 1
    body.set_data(json.dumps(drifted).encode())
    case = document[prefix + "/ledger"]["GET"].Case(path_parameters={"round_id": "f2018"})
    with pytest.raises(FailureGroup) as failures:
        case.validate_response(body, checks=checks)
    assert [type(e) for e in failures.value.exceptions] == [JsonSchemaError]


# -- the stores ------------------------------------------------------------------------------------

AT = "2019-01-15T00:00:00.000000Z"


def funding_record(community="c1", approved=100, funds=0, **extra):
    record = {"round_id": "R", "community_id": community, "land_category": "non_independent",
              "approved_budget_fen": approved, "settled_budget_fen": None, "district_funds_in_place_fen": funds,
              "key_id": "k", "recorded_at": AT, **extra}
    record["content_hash"] = lg.funding_hash(record)
    return record


def disbursement(tranche=1, amount=30, did=None, community="c1", **extra):
    record = {"disbursement_id": did or str(uuid.uuid4()), "round_id": "R", "community_id": community,
              "tranche": tranche, "amount_fen": amount, "paid_on": "2018-05-01", "voucher": None, "key_id": "k",
              "recorded_at": AT, **extra}
    record["content_hash"] = lg.disbursement_hash(record)
    return record


def test_store_funding_versions_and_disbursements(store):
    before, funding_before = store.generation(), store.generation("funding")
    assert store.put_funding(funding_record()) is Outcome.CREATED
    assert store.generation("funding") != funding_before
    assert store.generation() == before  # money changes no score: cached results stay
    assert store.put_funding(funding_record()) is Outcome.DUPLICATE
    seen = []

    class Refused(Exception):
        pass

    def refuse(current):
        seen.append(current)
        raise Refused

    with pytest.raises(Refused):
        store.put_funding(funding_record(funds=5), check=refuse)
    assert seen[0]["version"] == 1 and seen[0]["district_funds_in_place_fen"] == 0
    assert store.put_funding(funding_record(funds=5), check=lambda current: None) is Outcome.CREATED
    assert store.put_funding(funding_record("c2", approved=7)) is Outcome.CREATED
    versions = store.funding_versions("R", "c1")
    assert [(v["version"], v["district_funds_in_place_fen"]) for v in versions] == [(1, 0), (2, 5)]
    assert [(v["community_id"], v["version"]) for v in store.current_funding("R")] == [("c1", 2), ("c2", 1)]
    assert store.current_funding("other") == [] and store.funding_versions("R", "c9") == []
    seen_first = []
    assert store.put_funding(funding_record("c3"), check=seen_first.append) is Outcome.CREATED
    assert seen_first == [None]

    d = disbursement()
    assert store.add_disbursement(d) is Outcome.CREATED
    assert store.generation() == before
    assert store.add_disbursement(d) is Outcome.DUPLICATE
    assert store.add_disbursement({**d, "voucher": "x", "content_hash": "other"}) is Outcome.CONFLICT
    assert store.add_disbursement(disbursement()) is Outcome.ALREADY_PAID
    assert store.add_disbursement(disbursement(2, 50, community="c2")) is Outcome.CREATED
    assert store.add_disbursement(disbursement(3, -20)) is Outcome.CREATED
    assert store.get_disbursement(d["disbursement_id"])["amount_fen"] == 30
    assert store.get_disbursement(str(uuid.uuid4())) is None
    assert [(x["community_id"], x["tranche"], x["amount_fen"]) for x in store.disbursements("R")] == [
        ("c1", 1, 30), ("c1", 3, -20), ("c2", 2, 50)]
    assert [x["tranche"] for x in store.disbursements("R", "c1")] == [1, 3]


def test_concurrent_funding_and_disbursement_writes_are_exact(database_url, store):
    """Eight writers at once: funding versions 1..8 without gaps; of eight disbursements of one tranche
    exactly one is created; eight replays of one disbursement create it once."""
    from scoring_service.store import open_store

    others = [open_store(database_url) for _ in range(8)]
    barrier = threading.Barrier(len(others))
    shared = disbursement(2, 80, community="c2")

    def write(pair):
        i, other = pair
        barrier.wait()
        versioned = other.put_funding(funding_record(funds=i))
        barrier.wait()
        tranche = other.add_disbursement(disbursement())
        barrier.wait()
        replay = other.add_disbursement(shared)
        return versioned, tranche, replay

    with ThreadPoolExecutor(max_workers=len(others)) as pool:
        results = list(pool.map(write, enumerate(others)))
    assert [r[0] for r in results] == [Outcome.CREATED] * 8
    assert sorted(v["version"] for v in store.funding_versions("R", "c1")) == list(range(1, 9))
    assert sorted(v["district_funds_in_place_fen"] for v in store.funding_versions("R", "c1")) == list(range(8))
    assert sorted(r[1] for r in results) == sorted([Outcome.CREATED] + [Outcome.ALREADY_PAID] * 7)
    assert sorted(r[2] for r in results) == sorted([Outcome.CREATED] + [Outcome.DUPLICATE] * 7)
    assert [(x["community_id"], x["tranche"]) for x in store.disbursements("R")] == [("c1", 1), ("c2", 2)]
    for other in others:
        other.close()


# -- pure rules ---------------------------------------------------------------------------------

def test_domain_examples():
    result = doctest.testmod(lg)
    assert result.attempted > 0 and result.failed == 0


T = date(2019, 1, 15)

operation = st.one_of(
    st.tuples(st.just("budget"), st.integers(0, 10**9), st.one_of(st.none(), st.integers(0, 10**9)),
              st.integers(0, 10**9)),
    st.tuples(st.just("reach"), st.sampled_from(["contract_signed", "works_completed", "settled"])),
    st.tuples(st.just("pay"), st.integers(1, 3)),
)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**9), st.lists(operation, max_size=30))
def test_paid_plus_outstanding_equals_the_final_subsidy(approved, operations):
    """Any sequence of budget changes, milestones and payments (a payment only when due, of the computed
    amount; the budgets final once tranche 3 is paid): once settled, the paid amounts plus the
    outstanding tranche amounts are S_final."""
    funding = lg.Funding("non_independent", approved, None, 0)
    reached: dict[str, date] = {}
    payments: dict[int, lg.Payment] = {}
    grade = "good"
    for op in operations:
        if op[0] == "budget":
            _, new_approved, new_settled, funds = op
            if 3 in payments:  # final: only the district's money may still change
                funding = lg.Funding("non_independent", funding.approved_budget_fen, funding.settled_budget_fen, funds)
            else:
                funding = lg.Funding("non_independent", new_approved, new_settled, funds)
        elif op[0] == "reach":
            reached[op[1]] = T
        else:
            state = lg.community_ledger(funding, reached, payments, grade, T).tranche(op[1])
            if state.status == "due":
                payments[op[1]] = lg.Payment(state.amount_fen, T)
    reached["settled"] = T
    if funding.settled_budget_fen is None and 3 not in payments:
        funding = lg.Funding("non_independent", funding.approved_budget_fen, approved,
                             funding.district_funds_in_place_fen)
    result = lg.community_ledger(funding, reached, payments, grade, T)
    s_final = lg.final_subsidy(funding.approved_budget_fen, funding.settled_budget_fen) \
        if funding.settled_budget_fen is not None else lg.subsidy(funding.approved_budget_fen)
    paid = sum(s.amount_fen for s in result.tranches if s.status == "paid")
    outstanding = sum(s.amount_fen for s in result.tranches if s.status != "paid")
    assert paid + outstanding == s_final == result.subsidy_fen
    assert all(s.amount_fen >= 0 for s in result.tranches[:2])
    assert all(isinstance(s.amount_fen, int) for s in result.tranches)
