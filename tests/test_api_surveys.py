"""Survey responses: single, batch, idempotency, households, void, and every refusal."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from .conftest import ROUND, survey

URL = "/api/v1/rounds/r2018/surveys"


def test_single_response_created_then_replayed(client, keys, world):
    kiosk = keys.header("kiosk_1")
    body = survey(household_ref="3-2-401", comment="路修得很平整，谢谢！")
    r = client.post(URL, json=body, headers=kiosk)
    assert r.status_code == 201, r.get_json()
    stored = r.get_json()
    assert stored["response_id"] == body["response_id"]
    assert stored["respondent_type"] == "resident" and stored["channel"] == "kiosk"
    assert stored["submitted_at"] == "2018-09-10T02:00:00.000000Z"  # stored in UTC
    assert stored["household_ref_given"] is True and "household_hash" not in stored
    assert stored["comment"] == "路修得很平整，谢谢！"
    again = client.post(URL, json=body, headers=kiosk)
    assert again.status_code == 200
    assert again.get_json() == stored


def test_same_id_other_content_is_a_conflict(client, keys, world):
    kiosk = keys.header("kiosk_1")
    body = survey()
    assert client.post(URL, json=body, headers=kiosk).status_code == 201
    r = client.post(URL, json={**body, "overall": 1}, headers=kiosk)
    assert r.status_code == 409
    assert r.get_json()["error"] == "conflict" and r.get_json()["code"] == 409


def test_null_answers_equal_absent_answers_for_replay(client, keys, world):
    kiosk = keys.header("kiosk_1")
    body = survey(answers={"roads": 4, "water": None})
    assert client.post(URL, json=body, headers=kiosk).status_code == 201
    assert client.post(URL, json={**body, "answers": {"roads": 4}}, headers=kiosk).status_code == 200


def test_household_answers_once_per_community_and_round(client, keys, world):
    kiosk = keys.header("kiosk_1")
    assert client.post(URL, json=survey(household_ref="5-1-202"), headers=kiosk).status_code == 201
    r = client.post(URL, json=survey(household_ref=" 5-1-202 "), headers=kiosk)
    assert r.status_code == 409 and r.get_json()["error"] == "household_already_responded"
    # the same reference in another community is another household
    other = client.post(URL, json=survey("heping-002", household_ref="5-1-202"), headers=keys.header("kiosk_2"))
    assert other.status_code == 201


def test_voided_response_is_excluded_and_cannot_return(client, keys, world, app):
    kiosk, admin = keys.header("kiosk_1"), keys.header("admin")
    body = survey()
    client.post(URL, json=body, headers=kiosk)
    store = app.extensions["scoring"].store
    assert store.count_responses("r2018") == 1
    r = client.post(f"{URL}/{body['response_id']}/void", json={"reason": "同一人重复填写"}, headers=admin)
    assert r.status_code == 200 and r.get_json()["void_reason"] == "同一人重复填写"
    assert store.count_responses("r2018") == 0
    assert store.count_responses("r2018", include_voided=True) == 1  # kept for audit
    r = client.post(URL, json=body, headers=kiosk)
    assert r.status_code == 409 and r.get_json()["error"] == "voided"
    assert client.post(f"{URL}/{uuid.uuid4()}/void", json={"reason": "x"}, headers=admin).status_code == 404
    r = client.post(f"{URL}/{body['response_id']}/void", json={}, headers=admin)
    assert r.status_code == 422 and "reason" in r.get_json()["errors"]


@pytest.mark.parametrize(
    "change, field",
    [
        ({"answers": {"roads": 6}}, "answers"),
        ({"answers": {"roads": 0}}, "answers"),
        ({"answers": {"roads": "4"}}, "answers"),
        ({"answers": {"swimming_pool": 4}}, "answers"),
        ({"answers": {}, "overall": None}, "answers"),
        ({"overall": 9}, "overall"),
        ({"overall": 4.5}, "overall"),
        ({"response_id": "not-a-uuid"}, "response_id"),
        ({"respondent_type": "tourist"}, "respondent_type"),
        ({"channel": "pigeon"}, "channel"),
        ({"household_ref": "x" * 65}, "household_ref"),
        ({"comment": "长" * 501}, "comment"),
        ({"submitted_at": "2018-09-10 10:00"}, "submitted_at"),
        ({"submitted_at": "2018-09-10T10:00:00"}, "submitted_at"),  # no offset
        ({"community_id": "shenhe-099"}, "community_id"),  # another year's community
        ({"community_id": "nope"}, "community_id"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_bad_responses_get_422_naming_the_field(client, keys, world, app, change, field):
    r = client.post(URL, json=survey(**change), headers=keys.header("admin"))
    assert r.status_code == 422, r.get_json()
    body = r.get_json()
    assert body["code"] == 422 and field in body["errors"], body
    assert app.extensions["scoring"].store.count_responses("r2018", include_voided=True) == 0


def test_future_submissions_are_refused_but_ten_minutes_of_clock_skew_are_fine(client, keys, world):
    kiosk = keys.header("kiosk_1")
    now = datetime.now(timezone.utc)
    current = {**ROUND, "round_id": "r-now", "opens_at": (now - timedelta(days=1)).isoformat(),
               "closes_at": (now + timedelta(days=1)).isoformat()}  # the window holds "now" (SPEC §14)
    assert client.post("/api/v1/rounds", json=current, headers=keys.header("admin")).status_code == 201
    url = "/api/v1/rounds/r-now/surveys"
    soon = (now + timedelta(minutes=8)).isoformat()
    later = (now + timedelta(minutes=12)).isoformat()
    assert client.post(url, json=survey(submitted_at=soon), headers=kiosk).status_code == 201
    r = client.post(url, json=survey(submitted_at=later), headers=kiosk)
    assert r.status_code == 422 and "submitted_at" in r.get_json()["errors"]


def test_kiosk_posts_only_for_its_own_community(client, keys, world):
    r = client.post(URL, json=survey("heping-002"), headers=keys.header("kiosk_1"))
    assert r.status_code == 403


def test_unknown_round_is_404(client, keys, world):
    r = client.post("/api/v1/rounds/none/surveys", json=survey(), headers=keys.header("kiosk_1"))
    assert r.status_code == 404


def test_batch_statuses_in_input_order_and_valid_items_stored(client, keys, world, app):
    kiosk = keys.header("kiosk_1")
    first = survey()
    client.post(URL, json=first, headers=kiosk)
    household = survey(household_ref="9-9-909")
    client.post(URL, json=household, headers=kiosk)
    items = [
        survey(),                                           # created
        first,                                              # duplicate
        {**first, "overall": 2},                            # conflict
        survey(answers={"roads": 7}),                       # invalid
        "not an object",                                    # invalid
        survey("heping-002"),                               # invalid: another community's kiosk
        survey(household_ref="9-9-909"),                    # conflict: household
        survey(respondent_type="public", channel="online"),  # created
    ]
    r = client.post(f"{URL}/batch", json={"responses": items}, headers=kiosk)
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert [x["status"] for x in body["results"]] == [
        "created", "duplicate", "conflict", "invalid", "invalid", "invalid", "conflict", "created"]
    assert body["results"][6]["error"] == "household_already_responded"
    assert body["results"][2]["error"] == "conflict"
    assert "answers" in body["results"][3]["errors"]
    assert "community_id" in body["results"][5]["errors"]
    assert [x["response_id"] for x in body["results"]][:4] == [items[0]["response_id"], first["response_id"],
                                                               first["response_id"], items[3]["response_id"]]
    assert (body["created"], body["duplicate"], body["rejected"]) == (2, 1, 5)
    assert app.extensions["scoring"].store.count_responses("r2018") == 4
    # replaying the whole batch stores nothing new
    again = client.post(f"{URL}/batch", json={"responses": items}, headers=kiosk).get_json()
    assert (again["created"], again["duplicate"]) == (0, 3)
    assert app.extensions["scoring"].store.count_responses("r2018") == 4


def test_batch_limits(client, keys, world):
    admin = keys.header("admin")
    assert client.post(f"{URL}/batch", json={"responses": []}, headers=admin).status_code == 422
    r = client.post(f"{URL}/batch", json={"responses": [survey() for _ in range(1001)]}, headers=admin)
    assert r.status_code == 422 and "responses" in r.get_json()["errors"]
    r = client.post(f"{URL}/batch", json={"responses": [survey() for _ in range(1000)]}, headers=admin)
    assert r.status_code == 200 and r.get_json()["created"] == 1000


def test_batch_to_closed_round_is_409(client, keys, world):
    client.post("/api/v1/rounds/r2018/close", headers=keys.header("admin"))
    r = client.post(f"{URL}/batch", json={"responses": [survey()]}, headers=keys.header("kiosk_1"))
    assert r.status_code == 409 and r.get_json()["error"] == "round_closed"


def test_each_submission_is_audited_once(client, keys, world):
    kiosk, admin = keys.header("kiosk_1"), keys.header("admin")
    body = survey()
    client.post(URL, json=body, headers=kiosk)
    client.post(URL, json=body, headers=kiosk)
    client.post(f"{URL}/batch", json={"responses": [survey(), body]}, headers=kiosk)
    client.post(URL, json=survey(overall=7), headers=kiosk)
    events = [e for e in client.get("/api/v1/audit?round_id=r2018", headers=admin).get_json()["items"]
              if e["path"].startswith(URL)]
    assert [(e["status"], e["outcome"]) for e in events] == [
        (201, "created"), (200, "duplicate"), (200, "batch"), (422, "refused")]
    assert events[0]["entity_id"] == body["response_id"] and events[0]["key_id"] == keys.ids["kiosk_1"]
    assert events[2]["detail"] == {"created": 1, "duplicate": 1, "rejected": 0}
