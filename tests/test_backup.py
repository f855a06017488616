"""Backup (JSON Lines) and restore into an empty store: every score and ranking identical."""

from __future__ import annotations

import io
import json

import pytest

from scoring_service.ops.backup import RestoreError, export_round, import_round, write_jsonl
from scoring_service.services.results import compute_results

from .conftest import make_app, survey
from .test_results import scored  # noqa: F401  (fixture)

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
