"""Backup (JSON Lines) and restore into an empty store: every score and ranking identical."""

from __future__ import annotations

import io
import json
import uuid

import pytest

from scoring_service.ops.backup import RestoreError, export_round, import_round, write_jsonl
from scoring_service.services.results import compute_results
from scoring_service.services.supervision import supervision_report

from .conftest import add_key, make_app, survey, with_database
from .test_results import scored  # noqa: F401  (fixture)
from .test_supervision_api import put, supervised  # noqa: F401  (fixture)

R = "/api/v1/rounds/r2018"


def results_of(app):
    with app.app_context():
        r = compute_results(app.extensions["scoring"], "r2018")
    return r.scores, r.community_ranking, r.district_ranking, r.rewards


def backup(app) -> str:
    buffer = io.StringIO()
    write_jsonl(export_round(app.extensions["scoring"].store, "r2018"), buffer)
    return buffer.getvalue()


def restore(text, tmp_path):
    target = make_app(str(tmp_path / "restored.sqlite3"), tmp_path / "restored")
    counts = import_round(target.extensions["scoring"].store, text.splitlines())
    return target, counts


def test_restore_reproduces_live_results(app, client, scored, tmp_path):
    text = backup(app)
    kinds = [json.loads(line)["type"] for line in text.splitlines()]
    assert kinds[0] == "header" and kinds.count("response") == 32 and kinds.count("inspection") == 5
    assert "audit" in kinds
    target, counts = restore(text, tmp_path)
    assert counts["response"] == 32
    assert results_of(target) == results_of(app)
    source, restored = app.extensions["scoring"].store, target.extensions["scoring"].store
    assert restored.count_responses("r2018") == source.count_responses("r2018") == 31  # one voided
    assert restored.count_responses("r2018", include_voided=True) == 32
    history = [v["amend_reason"] for i in restored.current_inspections("r2018")
               for v in restored.get_inspection("r2018", i["inspection_id"])["versions"]]
    assert "复核排水" in history
    assert restored.recount("r2018", 11, fix=False) == []
    assert len(restored.list_audit({"round_id": "r2018"}, 10_000)) == len(source.list_audit({"round_id": "r2018"}, 10_000))


def test_restore_of_a_published_round_serves_the_same_snapshot(app, client, scored, tmp_path):
    client.post(f"{R}/publish", headers=scored.header("admin"))
    published = {p: client.get(f"{R}/{p}").data for p in ("rankings/districts", "rewards", "snapshot")}
    target, _ = restore(backup(app), tmp_path)
    target_client = target.test_client()
    assert target.extensions["scoring"].store.get_round("r2018")["status"] == "published"
    assert {p: target_client.get(f"{R}/{p}").data for p in published} == published


def test_restore_refuses_a_store_that_has_the_round(app, scored):
    with pytest.raises(RestoreError):
        import_round(app.extensions["scoring"].store, backup(app).splitlines())
    with pytest.raises(RestoreError):
        import_round(app.extensions["scoring"].store, ['{"type": "response", "data": {}}'])


def test_restore_of_a_household_that_answered_again_after_a_void(app, client, keys, world, tmp_path):
    """A voided response freed its household and the household answered again: both restore as they were."""
    url, kiosk = f"{R}/surveys", keys.header("kiosk_1")
    voided, again = survey(household_ref="7-3-501"), survey(household_ref="7栋3单元501室")
    assert client.post(url, json=voided, headers=kiosk).status_code == 201
    r = client.post(f"{url}/{voided['response_id']}/void", json={"reason": "代填，作废"}, headers=keys.header("admin"))
    assert r.status_code == 200
    assert client.post(url, json=again, headers=kiosk).status_code == 201
    target, counts = restore(backup(app), tmp_path)
    restored = target.extensions["scoring"].store
    assert counts["response"] == 2
    assert restored.get_response("r2018", voided["response_id"])["void_reason"] == "代填，作废"
    assert restored.get_response("r2018", again["response_id"])["voided_at"] is None
    assert restored.count_responses("r2018") == 1


# -- milestones (SPEC §11) ---------------------------------------------------------------

def same_kind_of_store(app, request, tmp_path):
    """An empty store of the source app's kind (a new database on the same MongoDB-wire server)."""
    if str(app.config["DATABASE_URL"]).startswith("mongodb"):
        return with_database(request.getfixturevalue("mongo_server"), "r" + uuid.uuid4().hex[:16])
    return str(tmp_path / "restored.sqlite3")


def test_restore_keeps_every_milestone_version_and_the_supervision_report(app, client, supervised, tmp_path,
                                                                          request):
    admin, heping = supervised.header("admin"), supervised.header("district_heping")
    url = "/api/v1/rounds/m2018/communities/heping-001/milestones"
    # a correction and a withdrawal, then recorded again: four versions of one milestone
    put(client, heping, "heping-001", "plan_approved", "2018-04-18", changed_reason="按区政府批复日期更正")
    assert client.delete(f"{url}/plan_approved", json={"changed_reason": "批复文件待补"}, headers=admin).status_code == 200
    put(client, admin, "heping-001", "plan_approved", "2018-04-18")
    put(client, admin, "heping-001", "management_assigned", "2018-05-20", management_mode="self_managed")
    source = app.extensions["scoring"]
    with app.app_context():
        before = supervision_report(source, "m2018", None)

    buffer = io.StringIO()
    write_jsonl(export_round(source.store, "m2018"), buffer)
    records = [json.loads(line) for line in buffer.getvalue().splitlines()]
    milestones = [r["data"] for r in records if r["type"] == "milestone"]
    assert len(milestones) == 9  # every version, not only the current ones
    target = make_app(same_kind_of_store(app, request, tmp_path), tmp_path / "restored")
    try:
        counts = import_round(target.extensions["scoring"].store, buffer.getvalue().splitlines())
        assert counts["milestone"] == 9
        restored = target.extensions["scoring"]
        for community in ("heping-001", "heping-002", "shenhe-001"):
            assert restored.store.milestone_versions("m2018", community) == source.store.milestone_versions(
                "m2018", community)
        history = restored.store.milestone_versions("m2018", "heping-001")
        plan = [(v["version"], v["reached_on"], v["changed_reason"]) for v in history if v["code"] == "plan_approved"]
        assert plan == [(1, "2018-04-20", None), (2, "2018-04-18", "按区政府批复日期更正"),
                        (3, None, "批复文件待补"), (4, "2018-04-18", None)]
        with target.app_context():
            assert supervision_report(restored, "m2018", None) == before
        assert target.test_client().get(url, headers=admin_header(target)).get_json() == client.get(
            url, headers=admin).get_json()
        # a replay of the current version is still a duplicate in the restored store
        r = target.test_client().put(f"{url}/plan_approved", json={"reached_on": "2018-04-18"},
                                     headers=admin_header(target))
        assert r.status_code == 200
    finally:
        target.extensions["scoring"].store.close()


def admin_header(app) -> dict:
    _, token = add_key(app, "admin", "restore check")
    return {"Authorization": f"Bearer {token}"}


def test_restore_refuses_milestone_versions_out_of_order(app, client, supervised, tmp_path):
    put(client, supervised.header("admin"), "heping-001", "plan_approved", "2018-04-19", changed_reason="更正")
    lines = [json.dumps(r, ensure_ascii=False) for r in export_round(app.extensions["scoring"].store, "m2018")]
    first = next(i for i, line in enumerate(lines) if '"type": "milestone"' in line and '"version": 1' in line
                 and '"plan_approved"' in line and "heping-001" in line)
    target = make_app(str(tmp_path / "restored.sqlite3"), tmp_path / "restored")
    try:
        with pytest.raises(RestoreError, match="heping-001/plan_approved: version 2"):
            import_round(target.extensions["scoring"].store, lines[:first] + lines[first + 1:])
    finally:
        target.extensions["scoring"].store.close()
