"""Milestones of a covered community (SPEC §11 "Recording"), on both stores; the round fields of §11."""

from __future__ import annotations

from datetime import date

import pytest

from scoring_service.domain import milestones as ms
from scoring_service.domain.canonical import digest

from .conftest import ROUND

R = "/api/v1/rounds/r2018"
TODAY = "2018-09-15"
VOTES_PASSING = {"eligible_households": 90, "participants": 60, "in_favour": 31}


@pytest.fixture
def today(app):
    """The app's "today" (China time) fixed by its TODAY setting."""
    app.config["TODAY"] = TODAY
    return date.fromisoformat(TODAY)


def path(code=None, community="heping-001"):
    base = f"{R}/communities/{community}/milestones"
    return f"{base}/{code}" if code else base


def body(code, reached_on, **extra):
    """A valid record of ``code`` (votes and management mode where the code carries them)."""
    out = {"reached_on": reached_on}
    if code == "residents_voted":
        out["votes"] = VOTES_PASSING
    if code == "management_assigned":
        out["management_mode"] = "property_company"
    return {**out, **extra}


def put(client, keys, code, reached_on, community="heping-001", role="admin", **extra):
    return client.put(path(code, community), json=body(code, reached_on, **extra), headers=keys.header(role))


def errors_of(response):
    assert response.status_code == 422, (response.status_code, response.get_json())
    return response.get_json()["errors"]


# -- recording, replaying, replacing -------------------------------------------------------

def test_first_record_then_identical_replay_then_replacement(client, keys, world, today):
    r = put(client, keys, "plan_approved", "2018-04-20", note="区政府常务会审定")
    assert r.status_code == 201, r.get_json()
    first = r.get_json()
    assert first["code"] == "plan_approved" and first["name_zh"] == "设计和施工方案经区政府审定"
    assert (first["version"], first["reached_on"], first["note"], first["reached"]) == (1, "2018-04-20",
                                                                                         "区政府常务会审定", True)
    assert first["key_id"] == keys.ids["admin"] and first["deadline"] is None
    # an identical replay: 200, no new version
    r = put(client, keys, "plan_approved", "2018-04-20", note="区政府常务会审定")
    assert r.status_code == 200 and r.get_json()["version"] == 1 and len(r.get_json()["history"]) == 1
    # other content without changed_reason: refused, naming it
    assert "changed_reason" in errors_of(put(client, keys, "plan_approved", "2018-04-21"))
    assert "changed_reason" in errors_of(put(client, keys, "plan_approved", "2018-04-20", note="另一说明"))
    r = put(client, keys, "plan_approved", "2018-04-21", changed_reason="会议纪要日期更正")
    assert r.status_code == 200, r.get_json()
    replaced = r.get_json()
    assert replaced["version"] == 2 and replaced["reached_on"] == "2018-04-21"
    assert replaced["changed_reason"] == "会议纪要日期更正" and replaced["note"] is None
    assert [(h["version"], h["reached_on"]) for h in replaced["history"]] == [(1, "2018-04-20"), (2, "2018-04-21")]
    # the replay of the replacement (its reason may differ) writes nothing
    r = put(client, keys, "plan_approved", "2018-04-21", changed_reason="再次提交")
    assert r.status_code == 200 and r.get_json()["version"] == 2


def test_listing_is_in_milestone_order_with_history_oldest_first(client, keys, world, today):
    assert put(client, keys, "contract_signed", "2018-04-25").status_code == 201
    assert put(client, keys, "plan_approved", "2018-04-10").status_code == 201
    assert put(client, keys, "plan_approved", "2018-04-12", changed_reason="更正").status_code == 200
    assert put(client, keys, "plan_approved", "2018-04-11", changed_reason="再更正").status_code == 200
    assert put(client, keys, "plan_approved", "2018-04-05", community="heping-002").status_code == 201
    listed = client.get(path(), headers=keys.header("admin")).get_json()
    assert listed["round_id"] == "r2018" and listed["community_id"] == "heping-001"
    assert [i["code"] for i in listed["items"]] == ["plan_approved", "contract_signed"]
    plan = listed["items"][0]
    assert plan["version"] == 3 and plan["reached_on"] == "2018-04-11"
    assert [h["reached_on"] for h in plan["history"]] == ["2018-04-10", "2018-04-12", "2018-04-11"]
    assert [h["changed_reason"] for h in plan["history"]] == [None, "更正", "再更正"]
    one = client.get(path("plan_approved"), headers=keys.header("admin")).get_json()
    assert one == plan
    assert client.get(path("settled"), headers=keys.header("admin")).status_code == 404
    empty = client.get(path(community="shenhe-001"), headers=keys.header("admin")).get_json()
    assert empty["items"] == []


def test_writes_are_audited(client, keys, world, today):
    put(client, keys, "plan_approved", "2018-04-20")
    put(client, keys, "plan_approved", "2018-04-20")
    put(client, keys, "plan_approved", "2018-04-22", changed_reason="更正")
    client.delete(path("plan_approved"), json={"changed_reason": "错录"}, headers=keys.header("admin"))
    events = client.get("/api/v1/audit?entity_id=heping-001:plan_approved", headers=keys.header("admin")).get_json()
    assert [(e["entity_type"], e["outcome"], e["status"]) for e in events["items"]] == [
        ("milestone", "created", 201), ("milestone", "duplicate", 200), ("milestone", "replaced", 200),
        ("milestone", "withdrawn", 200)]
    assert {e["round_id"] for e in events["items"]} == {"r2018"}


# -- the rules, each a 422 naming the field ------------------------------------------------

def test_reached_on_is_not_after_today(client, keys, world, today):
    assert "reached_on" in errors_of(put(client, keys, "plan_approved", "2018-09-16"))
    assert put(client, keys, "plan_approved", "2018-09-15").status_code == 201


def test_today_is_china_time_and_can_be_monkeypatched(client, keys, world, monkeypatch):
    from scoring_service.domain import timeutil

    monkeypatch.setattr(timeutil, "today_china", lambda: date(2018, 5, 1))
    assert "reached_on" in errors_of(put(client, keys, "plan_approved", "2018-05-02"))
    assert put(client, keys, "plan_approved", "2018-05-01").status_code == 201


def test_today_china_is_the_date_at_utc_plus_8(monkeypatch):
    from datetime import datetime, timezone

    from scoring_service.domain import timeutil

    assert timeutil.china_date(datetime(2018, 4, 30, 15, 59, tzinfo=timezone.utc)) == date(2018, 4, 30)
    assert timeutil.china_date(datetime(2018, 4, 30, 16, 0, tzinfo=timezone.utc)) == date(2018, 5, 1)
    assert timeutil.today_china() == datetime.now(timezone.utc).astimezone(timeutil.CHINA).date()


@pytest.mark.parametrize("later, earlier", ms.ORDER_RULES, ids=[f"{a}>={b}" for a, b in ms.ORDER_RULES])
def test_order_rules_in_both_directions(client, keys, world, today, later, earlier):
    # the earlier one first: the later one cannot be dated before it, may share its date
    assert put(client, keys, earlier, "2018-05-10").status_code == 201
    assert errors_of(put(client, keys, later, "2018-05-09"))["reached_on"] == [
        f"must not be before {earlier} (2018-05-10)"]
    assert put(client, keys, later, "2018-05-10").status_code == 201
    # moving the earlier one after the later one is refused too
    moved = errors_of(put(client, keys, earlier, "2018-05-11", changed_reason="更正"))
    assert moved["reached_on"] == [f"must not be after {later} (2018-05-10)"]
    # the later one first (another community): the earlier one cannot be dated after it
    assert put(client, keys, later, "2018-05-10", community="heping-002").status_code == 201
    assert errors_of(put(client, keys, earlier, "2018-05-11", community="heping-002"))["reached_on"] == [
        f"must not be after {later} (2018-05-10)"]
    assert put(client, keys, earlier, "2018-05-10", community="heping-002").status_code == 201


def test_order_is_checked_through_milestones_not_yet_recorded(client, keys, world, today):
    """works_started needs contract_signed, which needs plan_approved: a works_started before plan_approved
    would leave no date possible for contract_signed."""
    assert put(client, keys, "plan_approved", "2018-05-10").status_code == 201
    assert "plan_approved (2018-05-10)" in errors_of(put(client, keys, "works_started", "2018-05-01"))["reached_on"][0]
    assert put(client, keys, "settled", "2018-09-10").status_code == 201
    assert "settled (2018-09-10)" in errors_of(put(client, keys, "works_completed", "2018-09-11"))["reached_on"][0]
    # unrelated milestones may come in any order
    assert put(client, keys, "illegal_structures_cleared", "2018-03-01").status_code == 201
    assert put(client, keys, "management_assigned", "2018-03-02").status_code == 201


def test_withdrawn_milestones_do_not_constrain_the_order(client, keys, world, today):
    assert put(client, keys, "works_completed", "2018-08-01").status_code == 201
    assert "reached_on" in errors_of(put(client, keys, "accepted", "2018-07-31"))
    r = client.delete(path("works_completed"), json={"changed_reason": "竣工验收未通过"}, headers=keys.header("admin"))
    assert r.status_code == 200
    assert put(client, keys, "accepted", "2018-07-31").status_code == 201


def test_votes_are_required_valid_and_only_for_residents_voted(client, keys, world, today):
    def vote(**votes):
        return client.put(path("residents_voted"), json={"reached_on": "2018-04-20", "votes": votes},
                          headers=keys.header("admin"))

    missing = client.put(path("residents_voted"), json={"reached_on": "2018-04-20"}, headers=keys.header("admin"))
    assert "votes" in errors_of(missing)
    assert "votes" in errors_of(vote(eligible_households=90, participants=91, in_favour=50))
    assert "votes" in errors_of(vote(eligible_households=90, participants=60, in_favour=61))
    assert "votes" in errors_of(vote(eligible_households=0, participants=0, in_favour=0))
    assert "votes" in errors_of(vote(eligible_households=90, participants=-1, in_favour=0))
    assert "votes" in errors_of(vote(eligible_households=90, participants=60.5, in_favour=31))
    assert "votes" in errors_of(vote(eligible_households=90, participants=60))
    assert "votes" in errors_of(put(client, keys, "plan_approved", "2018-04-20", votes=VOTES_PASSING))
    assert client.get(path(), headers=keys.header("admin")).get_json()["items"] == []


@pytest.mark.parametrize("votes, passed", [
    ((90, 60, 31), True),    # exactly two-thirds take part, a majority approves
    ((90, 59, 59), False),   # fewer than two-thirds take part
    ((90, 60, 30), False),   # half is not a majority
    ((1, 1, 1), True),
    ((3, 1, 1), False),
])
def test_vote_rule_exact_integers(votes, passed):
    assert ms.vote_passes(dict(zip(ms.VOTE_FIELDS, votes))) is passed


def test_a_failed_vote_is_stored_shown_and_not_reached(client, keys, world, today):
    failed = {"eligible_households": 90, "participants": 59, "in_favour": 59}
    r = put(client, keys, "residents_voted", "2018-04-20", votes=failed)
    assert r.status_code == 201, r.get_json()
    shown = client.get(path(), headers=keys.header("admin")).get_json()["items"][0]
    assert shown["votes"] == failed and shown["vote_passed"] is False and shown["reached"] is False
    assert shown["reached_on"] == "2018-04-20"
    # a second vote that passes replaces it
    r = put(client, keys, "residents_voted", "2018-05-20", votes=VOTES_PASSING, changed_reason="重新表决")
    assert r.status_code == 200
    assert (r.get_json()["vote_passed"], r.get_json()["reached"]) == (True, True)
    assert [h["vote_passed"] for h in r.get_json()["history"]] == [False, True]
    stored = {v["code"]: v for v in ms_current(client.application)}
    assert ms.effective_reach(stored["residents_voted"]) == "2018-05-20"


def ms_current(app):
    return app.extensions["scoring"].store.current_milestones("r2018")


def test_management_mode_required_for_management_assigned_only(client, keys, world, today):
    r = client.put(path("management_assigned"), json={"reached_on": "2018-09-01"}, headers=keys.header("admin"))
    assert "management_mode" in errors_of(r)
    r = client.put(path("management_assigned"), json={"reached_on": "2018-09-01", "management_mode": "landlord"},
                   headers=keys.header("admin"))
    assert "management_mode" in errors_of(r)
    assert "management_mode" in errors_of(put(client, keys, "accepted", "2018-09-01", management_mode="self_managed"))
    r = put(client, keys, "management_assigned", "2018-09-01", management_mode="self_managed")
    assert r.status_code == 201 and r.get_json()["management_mode"] == "self_managed"


def test_bad_bodies_name_the_field(client, keys, world, today):
    admin = keys.header("admin")
    for bad, field in (({}, "reached_on"), ({"reached_on": "2018-13-01"}, "reached_on"),
                       ({"reached_on": "2018-04-20T10:00:00+08:00"}, "reached_on"),
                       ({"reached_on": "2018-04-20", "note": "说" * 501}, "note"),
                       ({"reached_on": "2018-04-20", "changed_reason": ""}, "changed_reason"),
                       ({"reached_on": "2018-04-20", "extra": 1}, "extra")):
        assert field in errors_of(client.put(path("plan_approved"), json=bad, headers=admin)), bad
    assert put(client, keys, "plan_approved", "2018-04-20", note="说" * 500).status_code == 201


def test_unknown_code_community_round_and_uncovered_community(client, keys, world, today):
    admin = keys.header("admin")
    assert put(client, keys, "ribbon_cut", "2018-04-20").status_code == 404
    assert put(client, keys, "plan_approved", "2018-04-20", community="nowhere").status_code == 404
    r = client.put(f"/api/v1/rounds/r1999/communities/heping-001/milestones/plan_approved",
                   json={"reached_on": "2018-04-20"}, headers=admin)
    assert r.status_code == 404
    # shenhe-099 was renovated in 2019: the 2018 round does not cover it
    assert "community_id" in errors_of(put(client, keys, "plan_approved", "2018-04-20", community="shenhe-099"))
    assert client.get(path(community="shenhe-099"), headers=admin).status_code == 422


# -- withdrawing ----------------------------------------------------------------------

def test_delete_withdraws_and_keeps_the_history(client, keys, world, today):
    admin = keys.header("admin")
    assert client.delete(path("plan_approved"), json={"changed_reason": "x"}, headers=admin).status_code == 404
    assert put(client, keys, "plan_approved", "2018-04-20").status_code == 201
    assert "changed_reason" in errors_of(client.delete(path("plan_approved"), json={}, headers=admin))
    r = client.delete(path("plan_approved"), json={"changed_reason": "误报，方案尚未审定"}, headers=admin)
    assert r.status_code == 200, r.get_json()
    gone = r.get_json()
    assert gone["version"] == 2 and gone["reached_on"] is None and gone["withdrawn"] is True
    assert gone["reached"] is False and gone["changed_reason"] == "误报，方案尚未审定"
    assert [h["reached_on"] for h in gone["history"]] == ["2018-04-20", None]
    again = client.delete(path("plan_approved"), json={"changed_reason": "再撤回"}, headers=admin)
    assert again.status_code == 200 and again.get_json()["version"] == 2
    listed = client.get(path(), headers=admin).get_json()["items"]
    assert [(i["code"], i["withdrawn"]) for i in listed] == [("plan_approved", True)]
    # recording it again needs no changed_reason: nothing stands to be replaced
    r = put(client, keys, "plan_approved", "2018-05-02")
    assert r.status_code == 200 and r.get_json()["version"] == 3 and r.get_json()["reached"] is True


# -- when and who ------------------------------------------------------------------------

def test_writable_after_the_round_is_closed_and_published(client, keys, world, today):
    admin = keys.header("admin")
    assert put(client, keys, "plan_approved", "2018-04-20").status_code == 201
    assert client.post(f"{R}/close", headers=admin).status_code == 200
    assert put(client, keys, "contract_signed", "2018-04-25").status_code == 201
    assert client.post(f"{R}/publish", headers=admin).status_code == 200
    assert put(client, keys, "works_started", "2018-05-02", role="district_heping").status_code == 201
    r = client.delete(path("works_started"), json={"changed_reason": "日期待核"}, headers=admin)
    assert r.status_code == 200
    assert len(client.get(path(), headers=admin).get_json()["items"]) == 3


def test_district_keys_act_only_for_their_own_district(client, keys, world, today):
    heping, shenhe = keys.header("district_heping"), keys.header("district_shenhe")
    r = put(client, keys, "plan_approved", "2018-04-20", role="district_heping")
    assert r.status_code == 201 and r.get_json()["key_id"] == keys.ids["district_heping"]
    assert client.get(path(), headers=heping).status_code == 200
    for role in ("district_shenhe",):
        assert put(client, keys, "contract_signed", "2018-04-25", role=role).status_code == 403
        assert client.get(path(), headers=shenhe).status_code == 403
        assert client.get(path("plan_approved"), headers=shenhe).status_code == 403
        r = client.delete(path("plan_approved"), json={"changed_reason": "x"}, headers=shenhe)
        assert r.status_code == 403 and "heping" not in r.get_json()["message"]
    assert put(client, keys, "plan_approved", "2018-04-20", community="shenhe-001",
               role="district_shenhe").status_code == 201
    assert put(client, keys, "plan_approved", "2018-04-20", community="shenhe-001",
               role="district_heping").status_code == 403
    # the refused writes changed nothing
    assert [i["version"] for i in client.get(path(), headers=heping).get_json()["items"]] == [1]


def test_other_roles_may_not_write_and_leadership_reads(client, keys, world, today):
    assert put(client, keys, "plan_approved", "2018-04-20").status_code == 201
    for role in ("leadership", "agency_a", "kiosk_1"):
        assert put(client, keys, "contract_signed", "2018-04-25", role=role).status_code == 403, role
        r = client.delete(path("plan_approved"), json={"changed_reason": "x"}, headers=keys.header(role))
        assert r.status_code == 403, role
    lead = client.get(path(), headers=keys.header("leadership"))
    assert lead.status_code == 200 and [i["code"] for i in lead.get_json()["items"]] == ["plan_approved"]
    for role in ("agency_a", "kiosk_1"):
        assert client.get(path(), headers=keys.header(role)).status_code == 403, role
    assert client.get(path()).status_code == 401


# -- round fields (SPEC §11) ----------------------------------------------------------------

def test_round_fields_are_stored_shown_and_used(client, keys, world, today):
    admin = keys.header("admin")
    fields = {"milestone_deadlines": {"works_completed": "2018-08-31", "plan_approved": "2018-04-30"},
              "progress_rule": "milestones", "late_credit": 0.25, "warning_share": 1, "progress_as_of": "2018-09-01"}
    r = client.post("/api/v1/rounds", json={**ROUND, "round_id": "r2018b", **fields}, headers=admin)
    assert r.status_code == 201, r.get_json()
    shown = r.get_json()
    assert shown["milestone_deadlines"] == {"plan_approved": "2018-04-30", "works_completed": "2018-08-31"}
    assert (shown["progress_rule"], shown["late_credit"], shown["warning_share"], shown["progress_as_of"]) == (
        "milestones", 0.25, 1.0, "2018-09-01")
    assert client.post("/api/v1/rounds", json={**ROUND, "round_id": "r2018b", **fields},
                       headers=admin).status_code == 200
    settings = ms.round_settings(client.get(f"/api/v1/rounds/r2018b", headers=admin).get_json())
    assert settings.deadlines == {"plan_approved": date(2018, 4, 30), "works_completed": date(2018, 8, 31)}
    assert (settings.progress_rule, settings.late_credit, settings.warning_share) == ("milestones", 0.25, 1.0)
    assert settings.progress_as_of == date(2018, 9, 1)
    r = client.put(f"/api/v1/rounds/r2018b/communities/heping-001/milestones/plan_approved",
                   json={"reached_on": "2018-04-20"}, headers=admin)
    assert r.get_json()["deadline"] == "2018-04-30"


@pytest.mark.parametrize("field, value", [
    ("milestone_deadlines", {"ribbon_cut": "2018-04-30"}),
    ("milestone_deadlines", {"plan_approved": "30/04/2018"}),
    ("milestone_deadlines", ["plan_approved"]),
    ("progress_rule", "fastest"),
    ("late_credit", 1.5),
    ("late_credit", -0.1),
    ("warning_share", 2),
    ("warning_share", True),
    ("progress_as_of", "2018-02-30"),
])
def test_round_fields_are_validated(client, keys, world, field, value):
    r = client.post("/api/v1/rounds", json={**ROUND, "round_id": "r2018c", field: value}, headers=keys.header("admin"))
    assert field in errors_of(r)


def test_a_round_created_as_before_is_stored_as_before(client, keys, world):
    stored = client.application.extensions["scoring"].store.get_round("r2018")
    assert not set(ms.ROUND_FIELDS) & set(stored)
    content = {**ROUND, "opens_at": "2018-08-31T16:00:00.000000Z", "closes_at": "2018-09-30T15:59:59.000000Z"}
    assert stored["digest"] == digest(content)
    shown = client.get(R, headers=keys.header("admin")).get_json()
    assert not set(ms.ROUND_FIELDS) & set(shown)
    settings = ms.round_settings(shown)
    assert settings == ms.RoundSettings() and settings.deadlines == {} and settings.progress_rule == "graded_share"
    assert (settings.late_credit, settings.warning_share, settings.progress_as_of) == (0.5, 0.2, None)


def test_the_seeded_2018_round_has_the_notices_deadlines(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["seed", "shenyang-2018"])
    assert result.exit_code == 0, result.output
    settings = ms.round_settings(app.extensions["scoring"].store.get_round("shenyang-2018"))
    assert settings.progress_rule == "milestones"
    assert {code: d.isoformat() for code, d in settings.deadlines.items()} == {
        "plan_approved": "2018-04-30", "residents_voted": "2018-04-30", "illegal_structures_cleared": "2018-04-30",
        "contract_signed": "2018-04-30", "works_completed": "2018-08-31", "accepted": "2018-09-30",
        "management_assigned": "2018-09-30"}


# -- the OpenAPI document describes the bodies strictly ---------------------------------------

def test_responses_conform_to_the_openapi_document(app, client, keys, world, today):
    import json

    import schemathesis
    from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance
    from schemathesis.errors import FailureGroup

    document = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    template = "/api/v1/rounds/{round_id}/communities/{community_id}/milestones"
    params = {"round_id": "r2018", "community_id": "heping-001"}

    def conforms(method, suffix, response, code=None):
        case = document[template + suffix][method].Case(path_parameters={**params, **({"code": code} if code else {})})
        case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                                 response_schema_conformance])

    failed = {"eligible_households": 90, "participants": 10, "in_favour": 10}
    conforms("PUT", "/{code}", put(client, keys, "residents_voted", "2018-04-20", votes=failed), "residents_voted")
    conforms("PUT", "/{code}", put(client, keys, "management_assigned", "2018-09-01"), "management_assigned")
    conforms("PUT", "/{code}", put(client, keys, "plan_approved", "2018-04-20", note="审定"), "plan_approved")
    withdrawn = client.delete(path("plan_approved"), json={"changed_reason": "撤回"}, headers=keys.header("admin"))
    conforms("DELETE", "/{code}", withdrawn, "plan_approved")
    listed = client.get(path(), headers=keys.header("leadership"))
    conforms("GET", "", listed)
    body = listed.get_json()
    assert {i["code"] for i in body["items"]} == {"plan_approved", "residents_voted", "management_assigned"}
    for wrong in ({**body, "unexpected": 1},
                  {**body, "items": [{**body["items"][0], "reached_on": 20180420}]},
                  {**body, "items": [{k: v for k, v in body["items"][0].items() if k != "history"}]}):
        listed.set_data(json.dumps(wrong, ensure_ascii=False).encode())
        with pytest.raises(FailureGroup):
            conforms("GET", "", listed)
