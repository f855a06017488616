"""Households (SPEC §14): one canonical form for every spelling, and voiding a response frees its household."""

from __future__ import annotations

import hashlib
import hmac
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from scoring_service.domain.surveys import household_canonical, household_hash
from scoring_service.store import Outcome, open_store

from .conftest import survey
from .test_store_contract import AT, N_ITEMS, open_round, response

URL = "/api/v1/rounds/r2018/surveys"

#: the spellings of one household that an outside review got accepted as ten (issue 12, item 6)
SPELLINGS = ["7-3-501", "07-03-0501", "７-３-５０１", "7－3－501", "7-3-501\u200b", "7 - 3 - 501", "7_3_501",
             "7/3/501", "7-3-501室", "7栋3单元501室"]


@pytest.mark.parametrize("spelling", SPELLINGS + ["7号楼3单元501号", "7幢3门501", "\ufeff7-3-501\u00ad", " 7--3//501- "])
def test_every_spelling_of_one_household_has_one_canonical_form(spelling):
    assert household_canonical(spelling) == "7-3-501"


@pytest.mark.parametrize("ref, canonical", [
    ("A-101", "a-101"), ("a-101", "a-101"), ("Ａ－１０１", "a-101"),
    ("000-00", "0-0"),           # a run of zeros becomes 0
    ("B007", "b7"),               # leading zeros of a digit run inside a word
    ("101-1010", "101-1010"),     # zeros inside or at the end of a run stay
    ("东区7幢", "东区7"),          # Chinese letters are letters
    ("--", None), (" \t ", None), ("室", None), ("\u200b", None), (None, None),
])
def test_canonical_form(ref, canonical):
    assert household_canonical(ref) == canonical


def test_references_already_canonical_hash_as_before():
    """Households stored before the canonical form keep their hash when written the plain way."""
    def before(ref):  # the hash of the first release: HMAC of round, community and the stripped reference
        message = "\x1f".join(("r2018", "heping-001", ref.strip())).encode("utf-8")
        return hmac.new(b"k", message, hashlib.sha256).hexdigest()

    for ref in ("7-3-501", "3-2-401", "a-101"):
        assert household_hash("k", "r2018", "heping-001", ref) == before(ref)
    assert household_hash("k", "r2018", "heping-001", "7栋3单元501室") == before("7-3-501")
    assert household_hash("k", "r2018", "heping-001", "- -") is None


def test_ten_spellings_are_one_household(client, keys, world):
    kiosk = keys.header("kiosk_1")
    first, *others = SPELLINGS
    assert client.post(URL, json=survey(household_ref=first), headers=kiosk).status_code == 201
    for spelling in others:
        r = client.post(URL, json=survey(household_ref=spelling), headers=kiosk)
        assert r.status_code == 409, spelling
        assert r.get_json()["error"] == "household_already_responded", spelling
    # a batch with the same spellings: every one refused as that household
    r = client.post(f"{URL}/batch", json={"responses": [survey(household_ref=s) for s in others]},
                    headers=kiosk)
    assert r.status_code == 200 and r.get_json()["created"] == 0
    assert {item.get("error") for item in r.get_json()["results"]} == {"household_already_responded"}


def test_letter_case_is_one_household(client, keys, world):
    kiosk = keys.header("kiosk_1")
    assert client.post(URL, json=survey(household_ref="A-101"), headers=kiosk).status_code == 201
    r = client.post(URL, json=survey(household_ref="a-101"), headers=kiosk)
    assert r.status_code == 409 and r.get_json()["error"] == "household_already_responded"


def test_a_reference_with_nothing_in_it_is_no_household(client, keys, world):
    kiosk = keys.header("kiosk_1")
    for ref in ("--", "室"):
        r = client.post(URL, json=survey(household_ref=ref), headers=kiosk)
        assert r.status_code == 201 and r.get_json()["household_ref_given"] is False


def test_voiding_a_response_frees_its_household(client, keys, world):
    kiosk, admin = keys.header("kiosk_1"), keys.header("admin")
    voided = survey(household_ref="7-3-501")
    assert client.post(URL, json=voided, headers=kiosk).status_code == 201
    assert client.post(URL, json=survey(household_ref="7栋3单元501室"), headers=kiosk).status_code == 409
    r = client.post(f"{URL}/{voided['response_id']}/void", json={"reason": "代填，作废"}, headers=admin)
    assert r.status_code == 200
    # the voided response's replay stays refused and takes nothing back
    r = client.post(URL, json=voided, headers=kiosk)
    assert r.status_code == 409 and r.get_json()["error"] == "voided"
    fresh = survey(household_ref="7栋3单元501室")
    assert client.post(URL, json=fresh, headers=kiosk).status_code == 201
    assert client.post(URL, json=fresh, headers=kiosk).status_code == 200  # its replay
    # the new response holds the household now
    r = client.post(URL, json=survey(household_ref="07-03-0501"), headers=kiosk)
    assert r.status_code == 409 and r.get_json()["error"] == "household_already_responded"


# -- the store contract --------------------------------------------------------

def test_store_void_frees_the_household_and_a_voided_replay_does_not_take_it(store):
    open_round(store)
    assert store.add_responses("R", [response("r1", household="h1")], N_ITEMS) == [Outcome.CREATED]
    assert store.add_responses("R", [response("r2", household="h1")], N_ITEMS) == [Outcome.HOUSEHOLD]
    assert store.void_response("R", "r1", "fraud", "k", AT, N_ITEMS) is Outcome.CHANGED
    assert store.add_responses("R", [response("r1", household="h1")], N_ITEMS) == [Outcome.VOIDED]
    assert store.add_responses("R", [response("r2", household="h1"), response("r3", household="h1")],
                               N_ITEMS) == [Outcome.CREATED, Outcome.HOUSEHOLD]
    assert store.void_response("R", "r1", "fraud", "k", AT, N_ITEMS) is Outcome.UNCHANGED
    assert store.add_responses("R", [response("r4", household="h1")], N_ITEMS) == [Outcome.HOUSEHOLD]
    assert store.count_responses("R") == 1 and store.recount("R", N_ITEMS) == []


def test_concurrent_responses_of_a_freed_household_create_one(database_url, store):
    open_round(store)
    store.add_responses("R", [response("r0", household="h1")], N_ITEMS)
    store.void_response("R", "r0", "fraud", "k", AT, N_ITEMS)
    writers = [open_store(database_url) for _ in range(6)]
    barrier = threading.Barrier(len(writers))

    def write(pair):
        i, writer = pair
        barrier.wait()
        return writer.add_responses("R", [response(f"r{i + 1}", household="h1")], N_ITEMS)[0]

    try:
        with ThreadPoolExecutor(max_workers=len(writers)) as pool:
            outcomes = list(pool.map(write, enumerate(writers)))
    finally:
        for writer in writers:
            writer.close()
    assert sorted(outcomes) == sorted([Outcome.CREATED] + [Outcome.HOUSEHOLD] * (len(writers) - 1))
    assert store.count_responses("R") == 1


@pytest.mark.parametrize("database_url", [pytest.param("mongo", marks=pytest.mark.mongo)], indirect=True)
def test_mongo_claim_left_by_a_voided_response_is_released_on_the_next_answer(store):
    """A crash between the void and the release of its claim must not keep the household blocked."""
    open_round(store)
    store.add_responses("R", [response("r1", household="h1")], N_ITEMS)
    claim = store.db.households.find_one({"response_id": "r1"})
    store.void_response("R", "r1", "fraud", "k", AT, N_ITEMS)
    assert store.db.households.find_one({"_id": claim["_id"]}) is None
    store.db.households.insert_one(claim)  # as if the release had been lost
    assert store.add_responses("R", [response("r2", household="h1")], N_ITEMS) == [Outcome.CREATED]
    assert store.db.households.find_one({"_id": claim["_id"]})["response_id"] == "r2"
