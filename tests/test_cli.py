"""The ``scoring-service`` command: init, seed (with demo data), keys, recount."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from scoring_service.seeding.reference import SHENYANG_2018_DISTRICTS

from .conftest import make_app


def run(env, *args, check=True):
    result = subprocess.run([sys.executable, "-m", "scoring_service.cli", *args], env=env, capture_output=True,
                            text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def env(tmp_path):
    # no SCORING_SECRET_KEY: init creates a random one in the instance folder
    return {k: v for k, v in os.environ.items() if not k.startswith("SCORING_")} | {
        "SCORING_INSTANCE_PATH": str(tmp_path / "instance")}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    instance = tmp_path_factory.mktemp("demo") / "instance"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCORING_")} | {
        "SCORING_INSTANCE_PATH": str(instance)}
    run(env, "init")
    out = run(env, "seed", "shenyang-2018", "--demo").stdout
    return env, instance, out


def test_init_creates_store_and_secret(env, tmp_path):
    run(env, "init")
    secret = (tmp_path / "instance" / "secret_key").read_text()
    assert len(secret) >= 40
    assert oct((tmp_path / "instance" / "secret_key").stat().st_mode & 0o777) == "0o600"
    run(env, "init")  # idempotent
    assert (tmp_path / "instance" / "secret_key").read_text() == secret


def test_keys_create_prints_token_last(env, tmp_path):
    run(env, "init")
    result = run(env, "keys", "create", "--role", "admin", "--name", "运维")
    token = result.stdout.strip().splitlines()[-1]
    key_id = token.split(".")[0]
    app = make_app(str(tmp_path / "instance" / "scoring.sqlite3"), tmp_path / "instance", SECRET_KEY=None)
    client = app.test_client()
    assert client.get("/api/v1/keys", headers={"Authorization": f"Bearer {token}"}).get_json()["items"][0][
        "key_id"] == key_id
    bad = run(env, "keys", "create", "--role", "kiosk", "--name", "x", check=False)
    assert bad.returncode != 0 and "community_id" in bad.stderr


def test_keys_create_district_key(demo):
    env, instance, _ = demo
    missing = run(env, "keys", "create", "--role", "district", "--name", "和平区政府", check=False)
    assert missing.returncode != 0 and "district_id" in missing.stderr
    unknown = run(env, "keys", "create", "--role", "district", "--name", "x", "--district", "nowhere", check=False)
    assert unknown.returncode != 0 and "unknown district 'nowhere'" in unknown.stderr
    result = run(env, "keys", "create", "--role", "district", "--name", "和平区政府", "--district", "heping")
    token = result.stdout.strip().splitlines()[-1]
    assert "role: district" in result.stderr
    app = make_app(str(instance / "scoring.sqlite3"), instance, SECRET_KEY=None)
    try:
        listed = app.test_client().get("/api/v1/communities", headers={"Authorization": f"Bearer {token}"})
        assert listed.status_code == 200
        districts = {c["district_id"] for c in listed.get_json()["items"]}
        assert districts == {"heping"}
    finally:
        app.extensions["scoring"].store.close()


def test_demo_round_matches_the_notice(demo):
    env, instance, out = demo
    assert "demo: 120 communities" in out
    app = make_app(str(instance / "scoring.sqlite3"), instance, SECRET_KEY=None)
    store = app.extensions["scoring"].store
    communities = store.list_communities(renovation_year=2018)
    counts = {d: sum(c["district_id"] == d for c in communities) for d, *_ in SHENYANG_2018_DISTRICTS}
    assert counts == {d: quota for d, _, _, quota in SHENYANG_2018_DISTRICTS}
    assert store.get_round("shenyang-2018")["quotas"] == counts
    responses = store.count_responses("shenyang-2018")
    assert 25_000 <= responses <= 50_000
    assert len(store.current_inspections("shenyang-2018")) >= 150
    names = [d["name_zh"] for d in store.list_districts()]
    assert "铁西区（含经济技术开发区）" in names and "沈北新区" in names


def test_demo_round_has_meaningful_results(demo):
    env, instance, _ = demo
    app = make_app(str(instance / "scoring.sqlite3"), instance, SECRET_KEY=None)
    from scoring_service.services.results import compute_results

    with app.app_context():
        results = compute_results(app.extensions["scoring"], "shenyang-2018")
    grades = [s["grade"] for s in results.scores.values()]
    assert {"excellent", "good", "pass", "fail"} <= set(grades)
    flags = {f.split(":")[0] for s in results.scores.values() for f in s["flags"]}
    assert {"pending_inspection", "veto", "insufficient_sample"} <= flags
    assert len(results.district_ranking["districts"]) == 9
    assert results.rewards["districts"] and results.rewards["communities"]


def test_seed_again_adds_nothing(demo):
    env, instance, _ = demo
    out = run(env, "seed", "shenyang-2018", "--demo").stdout
    assert "already present" in out and "rubric shenyang-2018: duplicate" in out


def test_recount_reports_and_repairs_tampered_statistics(demo):
    env, instance, _ = demo
    assert "0 differences" in run(env, "recount").stdout
    with sqlite3.connect(instance / "scoring.sqlite3") as db:
        # the 2018 round's statistics (the demo's aftercare round has its own, of another shape)
        row = db.execute("SELECT community_id, counts FROM survey_stats WHERE community_id = 'heping-001'"
                         " AND respondent_type = 'resident' AND round_id = 'shenyang-2018'").fetchone()
        counts = np.frombuffer(row[1], dtype=np.int64).copy()
        counts[0] += 7
        db.execute("UPDATE survey_stats SET counts = ?, responses = responses + 1 WHERE community_id = ?"
                   " AND respondent_type = 'resident' AND round_id = 'shenyang-2018'", (counts.tobytes(), row[0]))
    dry = run(env, "recount", "--dry-run", check=False)
    assert dry.returncode == 1
    difference = json.loads(dry.stdout.splitlines()[0])
    assert difference["community_id"] == "heping-001" and difference["kept_responses"] == difference[
        "raw_responses"] + 1
    fixed = run(env, "recount")
    assert "1 differences (fixed)" in fixed.stdout
    assert "0 differences" in run(env, "recount", "--dry-run").stdout


def test_import_of_an_aftercare_round_without_its_baseline_round_says_so(demo, tmp_path):
    """The 2019 aftercare round's live ranking takes each community's baseline from the published 2018 round,
    which is another backup: import-round restores the aftercare round alone (exit 0) but says on stderr that
    the 2018 round is missing, and no more once it is restored too."""
    env, instance, _ = demo
    for round_id in ("shenyang-2018", "shenyang-2019-aftercare"):
        run(env, "export-round", round_id, "--out", str(tmp_path / f"{round_id}.jsonl"))
    target = {k: v for k, v in env.items()} | {
        "SCORING_INSTANCE_PATH": str(tmp_path / "restored"),
        "SCORING_SECRET_KEY": (instance / "secret_key").read_text(encoding="utf-8").strip()}
    run(target, "init")
    alone = run(target, "import-round", str(tmp_path / "shenyang-2019-aftercare.jsonl"))
    assert alone.stdout.startswith("restored: ")
    assert alone.stderr.strip() == (
        "note: aftercare round shenyang-2019-aftercare compares each community with the published acceptance "
        "round of its renovation year, and this store has none of 2018: restore that round too (before or "
        "after), else its live results have no baseline nor change")
    assert run(target, "import-round", str(tmp_path / "shenyang-2018.jsonl")).stderr == ""
    # in the other order nothing is missing
    target["SCORING_INSTANCE_PATH"] = str(tmp_path / "restored-in-order")
    run(target, "init")
    for round_id in ("shenyang-2018", "shenyang-2019-aftercare"):
        assert run(target, "import-round", str(tmp_path / f"{round_id}.jsonl")).stderr == ""
