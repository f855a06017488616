"""Backup (JSON Lines) and restore into an empty store: every score and ranking identical."""

from __future__ import annotations

import io
import json
import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest

from scoring_service.domain import surveys as surveys_domain
from scoring_service.domain.timeutil import from_stored
from scoring_service.ops.backup import RestoreError, export_round, import_round, write_jsonl
from scoring_service.services import survey_links
from scoring_service.services.results import compute_results
from scoring_service.services.supervision import supervision_report

from .conftest import ROUND, add_key, make_app, survey, with_database
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


# -- the funding ledger (SPEC §12) and survey links (SPEC §14) -------------------------------------

B = "/api/v1/rounds/b2018"
TODAY = "2019-01-15"


@pytest.fixture
def banked(app, client, keys, world, monkeypatch):
    """The round b2018, open until 2099 (its links live) with public_cap 3 and a city budget, where:
    heping-001's funding has three versions (admin, district, admin) and tranches 1 and 2 paid; shenhe-001's
    tranche 1 is held (no district money); heping-002 is independent (nothing applicable); the live link
    took three responses from 127.0.0.1 and one public response from 10.0.0.2 that was voided; the revoked
    link took one response before it was revoked. Every response is received in one hour (that of the
    hourly cap, LINK_HOURLY_CAP 4)."""
    window = survey_links.hour_start()
    monkeypatch.setattr(survey_links, "hour_start", lambda now=None: window)
    monkeypatch.setattr(surveys_domain, "utcnow", lambda: from_stored(window) + timedelta(minutes=5))
    app.config.update(TODAY=TODAY, LINK_HOURLY_CAP=4)
    admin, heping = keys.header("admin"), keys.header("district_heping")
    body = {**ROUND, "round_id": "b2018", "closes_at": "2099-12-31T23:59:59+08:00", "public_cap": 3,
            "city_budget_fen": 3_000_000}
    assert client.post("/api/v1/rounds", json=body, headers=admin).status_code == 201

    def fund(community, headers, **fields):
        body = {"land_category": "non_independent", "approved_budget_fen": 1_000_000,
                "district_funds_in_place_fen": 0, **fields}
        r = client.put(f"{B}/communities/{community}/funding", json=body, headers=headers)
        assert r.status_code in (200, 201), r.get_json()  # 200: a new version replaced the record

    def reach(community, code, day):
        r = client.put(f"{B}/communities/{community}/milestones/{code}", json={"reached_on": day}, headers=admin)
        assert r.status_code == 201, r.get_json()

    def pay(tranche, amount):
        r = client.post(f"{B}/communities/heping-001/disbursements", headers=admin, json={
            "disbursement_id": str(uuid.uuid4()), "tranche": tranche, "amount_fen": amount, "paid_on": "2019-01-10",
            "voucher": f"拨付凭证-{tranche}"})
        assert r.status_code == 201, r.get_json()

    fund("heping-001", admin)
    fund("heping-001", heping, district_funds_in_place_fen=400_000)  # the district's money in place
    fund("heping-001", admin, approved_budget_fen=1_200_001, district_funds_in_place_fen=1_200_001)
    fund("shenhe-001", admin, approved_budget_fen=333)
    fund("heping-002", admin, land_category="independent")
    reach("heping-001", "contract_signed", "2018-04-20")
    reach("heping-001", "works_completed", "2018-08-20")
    reach("shenhe-001", "contract_signed", "2018-04-25")
    pay(1, 180_000)  # S = ⌊1,200,001 / 2⌋ = 600,000; cum₁ = 180,000, cum₂ = 480,000
    pay(2, 300_000)

    links = f"{B}/communities/heping-001/survey-links"
    live, revoked = (client.post(links, headers=admin).get_json() for _ in range(2))

    def post(link, address="127.0.0.1", **fields):
        body = survey(**{"household_ref": f"7-3-{uuid.uuid4().int % 10**6}", **fields})
        r = client.post(f"{B}/surveys", json=body, headers={"Authorization": f"Bearer {link['token']}"},
                        environ_base={"REMOTE_ADDR": address})
        assert r.status_code == 201, r.get_json()
        return body

    post(revoked)
    assert client.delete(f"{links}/{revoked['link_id']}", headers=admin).status_code == 200
    post(live)
    post(live, respondent_type="public", household_ref=None)
    post(live, respondent_type="public", household_ref=None)
    gone = post(live, "10.0.0.2", respondent_type="public", household_ref=None)
    r = client.post(f"{B}/surveys/{gone['response_id']}/void", json={"reason": "重复提交"}, headers=admin)
    assert r.status_code == 200
    return SimpleNamespace(keys=keys, live=live, revoked=revoked)


def views(app, client, admin) -> dict:
    """What the round's money, supervision and links look like through the API and the services."""
    got = {path: client.get(f"{B}/{path}", headers=admin) for path in (
        "ledger", "ledger?as_of=2018-06-01", "ledger?district_id=heping", "ledger?format=csv", "supervision",
        "communities/heping-001/survey-links", "communities/heping-001/funding")}
    assert all(r.status_code == 200 for r in got.values()), {p: r.status_code for p, r in got.items()}
    state = app.extensions["scoring"]
    with app.app_context():
        results = compute_results(state, "b2018")
        report = supervision_report(state, "b2018", None)
    store = state.store
    return {"api": {p: r.get_json() if r.is_json else r.data for p, r in got.items()}, "supervision": report,
            "results": (results.scores, results.community_ranking, results.district_ranking, results.rewards),
            "funding": {c: store.funding_versions("b2018", c) for c in ("heping-001", "heping-002", "shenhe-001")},
            "funding_feed": store.funding_changes("b2018")[0], "disbursements": store.disbursement_changes("b2018")[0]}


def test_restore_keeps_the_ledger_and_the_survey_links(app, client, banked, tmp_path, request):
    admin = banked.keys.header("admin")
    before = views(app, client, admin)
    ledger = before["api"]["ledger"]
    heping = next(c for c in ledger["communities"] if c["community_id"] == "heping-001")
    assert [(t["status"], t["amount_fen"]) for t in heping["tranches"]] == [("paid", 180_000), ("paid", 300_000),
                                                                            ("not_due", 120_000)]
    assert ledger["totals"]["paid_fen"] == 480_000
    assert ledger["totals"]["held_fen"] == 49  # shenhe-001's tranche 1: ⌊166 × 30 / 100⌋
    assert [v["version"] for v in before["funding"]["heping-001"]] == [1, 2, 3]
    listed = before["api"]["communities/heping-001/survey-links"]["items"]
    assert sorted((i["link_id"], i["revoked_at"] is None) for i in listed) == sorted(
        [(banked.live["link_id"], True), (banked.revoked["link_id"], False)])

    buffer = io.StringIO()
    write_jsonl(export_round(app.extensions["scoring"].store, "b2018"), buffer)
    kinds = [json.loads(line)["type"] for line in buffer.getvalue().splitlines()]
    assert (kinds.count("funding"), kinds.count("disbursement"), kinds.count("survey_link")) == (5, 2, 2)
    target = make_app(same_kind_of_store(app, request, tmp_path), tmp_path / "restored", TODAY=TODAY,
                      LINK_HOURLY_CAP=4)
    try:
        counts = import_round(target.extensions["scoring"].store, buffer.getvalue().splitlines())
        assert (counts["funding"], counts["disbursement"], counts["survey_link"]) == (5, 2, 2)
        target_client = target.test_client()
        # one comparison: the scores and the supervision report were restored before the money and links were
        assert views(target, target_client, admin_header(target)) == before

        # the links work where they did, and their quotas go on from where they were: 127.0.0.1 used 3 of
        # its 4 responses this hour, the community 2 of its 3 public places (the voided one gave its back)
        bearer = {"Authorization": f"Bearer {banked.live['token']}"}

        def post_to_target(address, **fields):
            body = survey(**{"household_ref": f"7-3-{uuid.uuid4().int % 10**6}", **fields})
            return target_client.post(f"{B}/surveys", json=body, headers=bearer, environ_base={"REMOTE_ADDR": address})

        assert post_to_target("10.0.0.2", respondent_type="public", household_ref=None).status_code == 201
        r = post_to_target("10.0.0.3", respondent_type="public", household_ref=None)
        assert r.status_code == 409 and r.get_json()["error"] == "public_cap_reached"
        assert post_to_target("127.0.0.1").status_code == 201
        assert post_to_target("127.0.0.1").status_code == 429  # the hourly cap of the link and address
    finally:
        target.extensions["scoring"].store.close()


def test_restore_refuses_money_and_links_of_another_round_or_not_new(app, client, banked, tmp_path):
    records = [json.loads(line) for line in
               (json.dumps(r, ensure_ascii=False) for r in export_round(app.extensions["scoring"].store, "b2018"))]

    def where(kind, **fields):
        return next(i for i, r in enumerate(records) if r["type"] == kind
                    and all(r["data"].get(k) == v for k, v in fields.items()))

    def edited(i, **fields):
        return records[:i] + [{**records[i], "data": {**records[i]["data"], **fields}}] + records[i + 1:]

    second = where("funding", community_id="heping-001", version=2)
    payment, link = where("disbursement", tranche=2), where("survey_link", link_id=banked.revoked["link_id"])
    paid, link_id = records[payment]["data"]["disbursement_id"], banked.revoked["link_id"]
    cases = [
        (records[:second] + records[second + 1:], "funding of heping-001: version 3 of round 'b2018' where version 2"),
        (edited(second, round_id="r2018"), "funding of heping-001: version 2 of round 'r2018'"),
        (edited(payment, round_id="r2018"), f"disbursement {paid} of round 'r2018' in a backup of 'b2018'"),
        (records[:payment + 1] + records[payment:], rf"disbursement {paid} could not be restored as new \(duplicate\)"),
        (edited(link, round_id="r2018"), f"survey link {link_id} of round 'r2018' in a backup of 'b2018'"),
        (records[:link + 1] + records[link:], f"survey link {link_id} could not be restored as new"),
    ]
    for n, (lines, message) in enumerate(cases):
        target = make_app(str(tmp_path / f"restored-{n}.sqlite3"), tmp_path / f"restored-{n}")
        try:
            with pytest.raises(RestoreError, match=message) as refused:
                import_round(target.extensions["scoring"].store, [json.dumps(r, ensure_ascii=False) for r in lines])
            # what came before stays: the operator is told so, and a second try is refused whole
            assert "The store now holds round 'b2018' in part" in str(refused.value)
            assert "into a new, empty store" in str(refused.value)
            with pytest.raises(RestoreError, match="round 'b2018' already exists; restore into an empty store$"):
                import_round(target.extensions["scoring"].store, [json.dumps(r, ensure_ascii=False) for r in lines])
        finally:
            target.extensions["scoring"].store.close()


@pytest.mark.parametrize("written", ["funding", "milestone"])
def test_export_refuses_money_written_while_the_disbursements_are_read(app, client, banked, written):
    """A writer between the funding (or milestone) read and the disbursement read: shenhe-001's district money
    comes in and its tranche 1 is paid on it (or a milestone is reached). The backup would hold a payment
    without the funding version it was computed from, and the restored ledger would not be the same."""
    store, admin = app.extensions["scoring"].store, banked.keys.header("admin")
    read = store.disbursement_changes
    meanwhile = []

    def concurrently(round_id, after=None, limit=None):
        if not meanwhile:
            meanwhile.append(written)
            if written == "funding":
                r = client.put(f"{B}/communities/shenhe-001/funding", headers=admin, json={
                    "land_category": "non_independent", "approved_budget_fen": 333,
                    "district_funds_in_place_fen": 333})
                assert r.status_code == 200, r.get_json()
                r = client.post(f"{B}/communities/shenhe-001/disbursements", headers=admin, json={
                    "disbursement_id": str(uuid.uuid4()), "tranche": 1, "amount_fen": 49, "paid_on": "2019-01-10"})
                assert r.status_code == 201, r.get_json()
            else:
                r = client.put(f"{B}/communities/heping-002/milestones/contract_signed",
                               json={"reached_on": "2018-04-26"}, headers=admin)
                assert r.status_code == 201, r.get_json()
        return read(round_id, after, limit)

    store.disbursement_changes = concurrently
    try:
        what = "funding of shenhe-001" if written == "funding" else "milestone heping-002/contract_signed"
        with pytest.raises(RestoreError, match=f"round 'b2018': the {what} changed while the round was "
                                               "exported; export again"):
            write_jsonl(export_round(store, "b2018"), io.StringIO())
    finally:
        del store.disbursement_changes
    assert meanwhile == [written]


def test_restore_names_the_malformed_line(app, scored, tmp_path):
    """A backup line that is not JSON, or a record without a field its type needs, stops the restore with a
    RestoreError naming the line (an operator's message, not a Python trace)."""
    lines = backup(app).splitlines()
    for n, broken, problem in ((5, '{"type": "district", "data": ', "line 5 of the backup is malformed: Expecting"),
                               (3, '{"type": "district"}', "line 3 of the backup is malformed: missing field 'data'")):
        target = make_app(str(tmp_path / f"restored-{n}.sqlite3"), tmp_path / f"restored-{n}")
        try:
            with pytest.raises(RestoreError, match=problem) as refused:
                import_round(target.extensions["scoring"].store, [*lines[:n - 1], broken, *lines[n:]])
            assert f"holds round 'r2018' in part (the lines before line {n})" in str(refused.value)
        finally:
            target.extensions["scoring"].store.close()


def test_a_refused_export_leaves_no_file_and_keeps_the_last_backup(app, scored, tmp_path):
    """export-round writes beside --out and renames once whole: a refused export neither leaves a file that
    looks like a backup nor replaces the last good one."""
    from scoring_service.cli import export_round as export_command

    runner = app.test_cli_runner()
    fresh, kept = tmp_path / "fresh.jsonl", tmp_path / "kept.jsonl"
    result = runner.invoke(export_command, ["r2018", "--out", str(kept)])
    assert result.exit_code == 0, result.output
    good = kept.read_text(encoding="utf-8")
    assert good.splitlines()[0].startswith('{"data": {"format": "scoring-service/round-backup/1"')
    for out in (fresh, kept):
        result = runner.invoke(export_command, ["no-such-round", "--out", str(out)])
        assert result.exit_code != 0 and "unknown round 'no-such-round'" in result.output
    assert not fresh.exists()
    assert kept.read_text(encoding="utf-8") == good
    assert sorted(p.name for p in tmp_path.glob("*.jsonl*")) == ["kept.jsonl"]


def test_export_to_a_missing_folder_is_a_one_line_error(app, scored, tmp_path):
    """An --out in a folder that does not exist ends with the operator's message and a non-zero exit, not a
    Python trace, and leaves no file."""
    from scoring_service.cli import export_round as export_command

    out = tmp_path / "no-such-folder" / "round.jsonl"
    result = app.test_cli_runner().invoke(export_command, ["r2018", "--out", str(out)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.output.strip() == f"Error: cannot write the backup {out}: No such file or directory"
    assert not out.parent.exists()


def test_import_of_a_cut_backup_restores_nothing(app, scored, tmp_path, request):
    """A backup file cut short in the middle of a line is refused before anything is written, so the same
    store takes the whole backup afterwards (a partial round would make it answer "already exists")."""
    from scoring_service.cli import import_round as import_command

    whole = backup(app)
    cut_text = whole[:len(whole) // 2]
    assert not cut_text.endswith("\n") and cut_text.count("\n") > 10
    (tmp_path / "cut.jsonl").write_text(cut_text, encoding="utf-8")
    (tmp_path / "whole.jsonl").write_text(whole, encoding="utf-8")
    target = make_app(same_kind_of_store(app, request, tmp_path), tmp_path / "restored")
    try:
        runner = target.test_cli_runner()
        result = runner.invoke(import_command, [str(tmp_path / "cut.jsonl")])
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        assert result.output.startswith("Error: ") and "nothing restored" in result.output
        assert len(result.output.strip().splitlines()) == 1
        assert target.extensions["scoring"].store.get_round("r2018") is None
        result = runner.invoke(import_command, [str(tmp_path / "whole.jsonl")])
        assert result.exit_code == 0, result.output
        assert results_of(target) == results_of(app)
    finally:
        target.extensions["scoring"].store.close()


def cli_backup(app, tmp_path) -> str:
    from scoring_service.cli import export_round as export_command

    out = tmp_path / "cli-backup.jsonl"
    result = app.test_cli_runner().invoke(export_command, ["r2018", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out.read_text(encoding="utf-8")


def test_import_refuses_a_backup_cut_at_the_end_of_a_line(app, scored, tmp_path, request):
    """export-round ends the file with an end line counting the records, so a backup cut between two lines (which
    would restore half a round and say nothing) is refused and restores nothing; a whole one restores."""
    from scoring_service.cli import import_round as import_command

    whole = cli_backup(app, tmp_path)
    lines = whole.splitlines(keepends=True)
    assert json.loads(lines[-1]) == {"type": "end", "data": {"records": len(lines) - 1}}
    (tmp_path / "half.jsonl").write_text("".join(lines[:len(lines) // 2]), encoding="utf-8")
    (tmp_path / "no-end.jsonl").write_text("".join(lines[:-1]), encoding="utf-8")
    (tmp_path / "whole.jsonl").write_text(whole, encoding="utf-8")
    target = make_app(same_kind_of_store(app, request, tmp_path), tmp_path / "restored")
    try:
        runner = target.test_cli_runner()
        for name in ("half.jsonl", "no-end.jsonl"):
            result = runner.invoke(import_command, [str(tmp_path / name)])
            assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
            assert result.output == "Error: the backup has no end line (cut short?); nothing restored\n"
            assert target.extensions["scoring"].store.get_round("r2018") is None
        result = runner.invoke(import_command, [str(tmp_path / "whole.jsonl")])
        assert result.exit_code == 0 and "end" not in result.output, result.output
        assert results_of(target) == results_of(app)
    finally:
        target.extensions["scoring"].store.close()


def test_import_refuses_a_backup_made_with_another_secret_key(app, scored, tmp_path, request):
    """The header keeps a check of SCORING_SECRET_KEY (not the key): a store with another key refuses the
    backup and restores nothing unless told --other-secret-key; a backup without the check (older) restores."""
    from scoring_service.cli import import_round as import_command

    whole = cli_backup(app, tmp_path)
    assert app.config["SECRET_KEY"] not in whole
    (tmp_path / "whole.jsonl").write_text(whole, encoding="utf-8")
    (tmp_path / "older.jsonl").write_text(backup(app), encoding="utf-8")
    for n, name in enumerate(("whole.jsonl", "older.jsonl")):
        target = make_app(same_kind_of_store(app, request, tmp_path / str(n)), tmp_path / f"restored-{n}",
                          SECRET_KEY="another-secret-key-of-another-city")
        try:
            runner = target.test_cli_runner()
            if name == "whole.jsonl":
                result = runner.invoke(import_command, [str(tmp_path / name)])
                assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
                assert result.output.startswith("Error: the backup was made with another SCORING_SECRET_KEY")
                assert len(result.output.splitlines()) == 1
                assert target.extensions["scoring"].store.get_round("r2018") is None
            args = ["--other-secret-key"] if name == "whole.jsonl" else []
            result = runner.invoke(import_command, [*args, str(tmp_path / name)])
            assert result.exit_code == 0, result.output
            assert results_of(target) == results_of(app)
        finally:
            target.extensions["scoring"].store.close()
