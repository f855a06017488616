"""The demo round's milestones (SPEC §11, issue 13 item 7): ``seed shenyang-2018 --demo`` records a living
supervision report — most milestones on time, some late, a few overdue, one failed residents' vote, one
district warned for overdue milestones — through the service the API uses, and seeding again adds nothing."""

from __future__ import annotations

import os
from collections import Counter
from datetime import date

import numpy as np
import pytest

from scoring_service.domain import milestones as ms
from scoring_service.seeding import reference
from scoring_service.seeding.demo import SLOW_DISTRICT, demo_communities, seed_milestones
from scoring_service.services.supervision import supervision_report

from .conftest import add_key, make_app
from .test_cli import run

ROUND_ID = "shenyang-2018"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    instance = tmp_path_factory.mktemp("demo") / "instance"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCORING_")} | {
        "SCORING_INSTANCE_PATH": str(instance)}
    run(env, "init")
    out = run(env, "seed", ROUND_ID, "--demo").stdout
    app = make_app(str(instance / "scoring.sqlite3"), instance, SECRET_KEY=None)
    yield env, app, out
    app.extensions["scoring"].store.close()


def statuses(body: dict) -> Counter:
    return Counter(m["status"] for c in body["communities"] for m in c["milestones"].values())


def check_demo_milestones(body: dict) -> None:
    """What the demo's milestones show at the round's as-of date, whatever the store."""
    assert body["as_of"] == "2018-10-08" and body["progress_rule"] == "milestones"
    assert len(body["communities"]) == 120
    counts = statuses(body)
    assert counts["on_time"] > 10 * counts["late"] > 0 and counts["late"] > counts["overdue"] > 0
    # most communities keep every deadline
    clean = [c for c in body["communities"] if not {m["status"] for m in c["milestones"].values()} & {"late", "overdue"}]
    assert len(clean) >= 70
    overdue = [c["community_id"] for c in body["communities"]
               if any(m["status"] == "overdue" for m in c["milestones"].values())]
    assert 3 <= len(overdue) <= 12

    # every residents_voted carries its votes; exactly one failed (fewer than two thirds took part)
    votes = {c["community_id"]: c["milestones"]["residents_voted"] for c in body["communities"]}
    assert all("votes" in v and v["reached_on"] for v in votes.values())
    failed = [cid for cid, v in votes.items() if not v["votes"]["passed"]]
    assert len(failed) == 1
    vote = votes[failed[0]]
    assert vote["votes"]["participants"] * 3 < vote["votes"]["eligible_households"] * 2
    assert vote["status"] == "overdue" and failed[0] in overdue  # a failed vote is not reached

    for c in body["communities"]:
        m = c["milestones"]
        if m["management_assigned"]["reached_on"]:
            assert m["management_assigned"]["management_mode"] in ms.MANAGEMENT_MODES
        reached = {code: date.fromisoformat(v["reached_on"]) for code, v in m.items() if v["reached_on"]}
        for later, earlier in ms.ORDER_RULES:  # 先设计后施工, 先拆违后改造
            if later in reached and earlier in reached:
                assert reached[later] >= reached[earlier], (c["community_id"], later, earlier)
        if "works_started" in reached:
            assert date(2018, 4, 1) <= reached["works_started"] <= date(2018, 8, 31)
        if "works_completed" in reached:
            assert reached["works_completed"] <= date(2018, 9, 30)
        if "accepted" in reached:
            assert reached["accepted"] <= date(2018, 10, 8)

    # one district is warned for overdue milestones; most districts have no warning at all
    districts = {d["district_id"]: d for d in body["districts"]}
    assert len(districts) == 9
    warned = {d for d, row in districts.items() if any(r["code"] == "overdue_milestones" for r in row["reasons"])}
    assert warned == {SLOW_DISTRICT}
    assert districts[SLOW_DISTRICT]["overdue_communities"] >= 0.2 * districts[SLOW_DISTRICT]["quota"]
    # (accepted_but_failing needs the grades, which only the full demo has)
    quiet = [d for d, row in districts.items() if not {r["code"] for r in row["reasons"]} - {"accepted_but_failing"}]
    assert len(quiet) >= 7
    assert sum(row["overdue"] for row in districts.values()) == counts["overdue"]


def test_demo_supervision_report(seeded):
    env, app, out = seeded
    assert "demo milestones: " in out and " records of 120 communities" in out
    body = supervision_report(app.extensions["scoring"], ROUND_ID, None)
    check_demo_milestones(body)
    # the accepted communities are those with a grade, but for one the district accepted against a veto
    flagged = [c["community_id"] for c in body["communities"] if "accepted_but_failing" in c["flags"]]
    assert len(flagged) == 1 and flagged[0].startswith(SLOW_DISTRICT)
    assert sum(not row["warning"] for row in body["districts"]) >= 7
    accepted = [c for c in body["communities"] if c["milestones"]["accepted"]["status"] in ("on_time", "late")]
    assert len(accepted) >= 100
    # the district ranking's progress is the milestone progress at the same date
    _, token = add_key(app, "leadership", "demo test")
    ranking = app.test_client().get(f"/api/v1/rounds/{ROUND_ID}/rankings/districts",
                                    headers={"Authorization": f"Bearer {token}"}).get_json()
    assert {d["district_id"]: d["progress"] for d in ranking["districts"]} == {
        d["district_id"]: d["progress"] for d in body["districts"]}


def test_demo_milestones_keep_their_history(seeded):
    env, app, _ = seeded
    store = app.extensions["scoring"].store
    current = store.current_milestones(ROUND_ID)
    replaced = [r for r in current if r["version"] > 1]
    assert replaced and all(r["changed_reason"] for r in replaced)
    first = store.milestone_versions(ROUND_ID, replaced[0]["community_id"])
    versions = [v for v in first if v["code"] == replaced[0]["code"]]
    assert [v["version"] for v in versions] == list(range(1, len(versions) + 1))
    assert all(v["key_id"] == "seed" for v in current)


def test_seeding_again_adds_nothing(seeded):
    env, app, _ = seeded
    store = app.extensions["scoring"].store
    communities = [c["community_id"] for c in store.list_communities(renovation_year=2018)]

    def versions():
        return sum(len(store.milestone_versions(ROUND_ID, cid)) for cid in communities)

    before = (versions(), store.count_responses(ROUND_ID, include_voided=True), len(communities))
    out = run(env, "seed", ROUND_ID, "--demo").stdout
    assert "demo milestones already present; nothing added" in out
    assert "demo surveys and inspections already present; nothing added" in out
    after = (versions(), store.count_responses(ROUND_ID, include_voided=True),
             len(store.list_communities(renovation_year=2018)))
    assert after == before


def test_demo_milestones_on_either_store(app):
    """The milestone part of the demo through the service, on both stores (without the surveys, so no
    community has a grade and every accepted one is flagged: only the milestones are checked here)."""
    result = app.test_cli_runner().invoke(args=["seed", ROUND_ID])
    assert result.exit_code == 0, result.output
    state = app.extensions["scoring"]
    communities = demo_communities(np.random.default_rng(2018))
    state.store.put_communities(communities)
    counts = seed_milestones(state, ROUND_ID, communities)
    assert counts["created"] > 900 and counts["duplicate"] == 0
    check_demo_milestones(supervision_report(state, ROUND_ID, None))


def test_seeding_over_an_older_round_says_what_to_do(tmp_path, monkeypatch):
    app = make_app(str(tmp_path / "store.sqlite3"), tmp_path / "instance")
    runner = app.test_cli_runner()
    older = {k: v for k, v in reference.SHENYANG_2018_ROUND.items() if k != "progress_as_of"}
    monkeypatch.setattr(reference, "SHENYANG_2018_ROUND", older)  # as an older build seeded it
    assert runner.invoke(args=["seed", ROUND_ID]).exit_code == 0
    monkeypatch.undo()
    result = runner.invoke(args=["seed", ROUND_ID, "--demo"])
    assert result.exit_code != 0
    message = " ".join(result.output.split())
    assert "round 'shenyang-2018' already exists in this store with other content" in message
    assert "(differs in: progress_as_of)" in message
    assert "re-initialise the instance" in message and "'scoring-service init'" in message
    assert "another round id" in message
    assert app.extensions["scoring"].store.current_milestones(ROUND_ID) == []  # nothing was changed
    app.extensions["scoring"].store.close()


def test_backup_of_the_demo_round_restores_its_supervision_report(seeded, tmp_path):
    env, app, seed_out = seeded
    recorded = int(seed_out.split("demo milestones: ")[1].split()[0])
    out = tmp_path / "shenyang-2018.jsonl"
    run(env, "export-round", ROUND_ID, "--out", str(out))
    other = {**env, "SCORING_INSTANCE_PATH": str(tmp_path / "other")}
    run(other, "init")
    restored_out = run(other, "import-round", str(out)).stdout
    assert f"milestone {recorded}," in restored_out  # every version, corrections included
    target = make_app(str(tmp_path / "other" / "scoring.sqlite3"), tmp_path / "other", SECRET_KEY=None)
    try:
        with target.app_context(), app.app_context():
            assert supervision_report(target.extensions["scoring"], ROUND_ID, None) == supervision_report(
                app.extensions["scoring"], ROUND_ID, None)
    finally:
        target.extensions["scoring"].store.close()
