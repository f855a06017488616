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


@pytest.mark.parametrize("setting, value, named", [
    ("SCORING_TRUSTED_PROXIES", "abc", "SCORING_TRUSTED_PROXIES must be a whole number"),
    ("SCORING_LINK_HOURLY_CAP", "1.5", "SCORING_LINK_HOURLY_CAP must be a whole number"),
    ("SCORING_METRICS_PUBLIC", "maybe", "SCORING_METRICS_PUBLIC must be a boolean"),
    ("SCORING_SECRET_KEY", "CHANGE-ME-64-random-characters", "SCORING_SECRET_KEY still holds the template"),
    ("SCORING_RATELIMIT_DEFAULT", "garbage", "SCORING_RATELIMIT_DEFAULT must be a rate limit"),
    ("SCORING_LOG_LEVEL", "LOUD", "SCORING_LOG_LEVEL must be one of"),
    ("SCORING_DATABASE_URL", "mongo://db.internal/scoring", "SCORING_DATABASE_URL must be mongodb://"),
    ("SCORING_RATELIMIT_STORAGE_URI", "foo://bar", "SCORING_RATELIMIT_STORAGE_URI: unknown storage scheme"),
    ("SCORING_INSTANCE_PATH", "/proc/no-such-folder", "cannot use /proc/no-such-folder"),
    # each server would make its own random key in its own instance folder and hash households differently
    ("SCORING_DATABASE_URL", "mongodb://127.0.0.1:1/scoring", "SCORING_SECRET_KEY must be set with a MongoDB store"),
])
def test_a_setting_the_service_cannot_use_is_one_line_naming_it(env, tmp_path, setting, value, named):
    """Before: a Python traceback (ValueError, limits' ConfigurationError, FileNotFoundError); a rate limit
    it could not read started the service, which then answered every API request 500; and a database URL
    of another scheme ('mongo://' for 'mongodb://') made a new, empty SQLite store in a folder 'mongo:'."""
    result = subprocess.run([sys.executable, "-m", "scoring_service.cli", "init"], env=env | {setting: value},
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"Error: {named}"), result.stderr
    assert not (tmp_path / "mongo:").exists()


def test_serve_takes_host_port_and_workers_from_the_environment(monkeypatch):
    """Before: 'scoring-service serve' always ran 2 workers on 127.0.0.1:8000 whatever SCORING_WORKERS,
    SCORING_HOST and SCORING_PORT said (README: gunicorn runs SCORING_WORKERS processes); options still win."""
    from click.testing import CliRunner

    from scoring_service import cli
    from scoring_service.ops import server

    calls = []
    monkeypatch.setattr(server, "serve", lambda **kwargs: calls.append(kwargs))
    environment = {"SCORING_WORKERS": "5", "SCORING_HOST": "0.0.0.0", "SCORING_PORT": "8123"}
    assert CliRunner().invoke(cli.main, ["serve"], env=environment).exit_code == 0
    assert calls[-1] == {"host": "0.0.0.0", "port": 8123, "workers": 5}
    assert CliRunner().invoke(cli.main, ["serve", "--workers", "3"], env=environment).exit_code == 0
    assert calls[-1]["workers"] == 3
    assert CliRunner().invoke(cli.main, ["serve"], env={"SCORING_WORKERS": None, "SCORING_HOST": None,
                                                        "SCORING_PORT": None}).exit_code == 0
    assert calls[-1] == {"host": "127.0.0.1", "port": 8000, "workers": 2}


def refused_serve(env) -> subprocess.CompletedProcess:
    """``serve`` with settings it must refuse at once (a server that starts anyway is stopped after 30 s)."""
    return subprocess.run([sys.executable, "-m", "scoring_service.cli", "serve", "--port", "1"], env=env,
                          capture_output=True, text=True, timeout=30)


def test_serve_refuses_a_template_placeholder_without_a_traceback(env):
    result = refused_serve(env | {"SCORING_METRICS_TOKEN": "CHANGE-ME"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: SCORING_METRICS_TOKEN still holds the template placeholder")


def test_keys_create_errors_name_the_options(env):
    """Before: the API's field names in a JSON object ({"agency_id": [...]}), and an empty --name was
    'Missing data for required field.'"""
    run(env, "init")
    agency = run(env, "keys", "create", "--role", "agency", "--name", "测评机构", check=False)
    assert agency.returncode == 1 and agency.stderr.strip() == "Error: --agency: an agency key needs agency_id"
    scoped = run(env, "keys", "create", "--role", "admin", "--name", "x", "--community", "heping-001", check=False)
    assert scoped.stderr.strip() == "Error: --community: only kiosk keys have community_id"
    empty = run(env, "keys", "create", "--role", "admin", "--name", "", check=False)
    assert empty.returncode == 1 and empty.stderr.startswith("Error: --name: ")
    assert "Missing data" not in empty.stderr


def test_export_round_writes_the_backup_for_its_owner_only(demo, tmp_path):
    """Before: the backup (household hashes, audit trail, evidence photos) was readable by every user (0644
    under the usual umask) while the SQLite file it copies is 0600."""
    env, _, _ = demo
    out = tmp_path / "round.jsonl"
    run(env, "export-round", "shenyang-2018", "--out", str(out))
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert out.read_text(encoding="utf-8").splitlines()[-1].startswith('{"data": {"records": ')


def test_a_backup_whose_end_line_miscounts_says_the_two_numbers(tmp_path):
    """Before: 'the end line of the backup counts {'records': 5} records', a Python dict in the message."""
    from scoring_service.ops.backup import RestoreError, check_backup_file, key_check, sealed, write_jsonl

    records = [{"type": "header", "data": {"format": "scoring-service/round-backup/1", "round_id": "r"}},
               {"type": "district", "data": {"district_id": "d"}}]
    path = tmp_path / "backup.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        write_jsonl(sealed(records, key_check("k")), fh)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[-1] = json.dumps({"type": "end", "data": {"records": 5}})
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(RestoreError) as refused:
        check_backup_file(str(path), key_check("k"))
    assert str(refused.value) == ("the end line of the backup counts 5 records, not the 2 before it; "
                                  "nothing restored")


def test_the_limiter_commands_listed_in_help_work(env):
    """Before: 'scoring-service limiter config' and 'limiter limits' (Flask-Limiter's commands, listed by
    --help) ended in a TypeError traceback: the app replaced Flask-Limiter's set of limiters in
    app.extensions with the Limiter itself; and 'config' then needed the storage's client."""
    run(env, "init")
    assert "limiter" in run(env, "--help").stdout
    wide = env | {"COLUMNS": "250"}  # rich draws the table that wide, without cutting the cells
    config = run(wide, "limiter", "config", check=False)
    assert config.returncode == 0 and "Traceback" not in config.stderr, config.stderr
    assert "SQLiteStorage" in config.stdout and "ratelimits.sqlite3" in config.stdout
    limits = run(wide, "limiter", "limits", check=False)
    assert limits.returncode == 0 and "Traceback" not in limits.stderr, limits.stderr
    assert "1200 per 1 minute" in limits.stdout and "3000 per 1 minute" in limits.stdout


@pytest.mark.parametrize("url, shown", [
    ("mongodb://scoring:s3cret%21@mongo-0.mongo,mongo-1.mongo/scoring?replicaSet=rs0",
     "mongodb://scoring:***@mongo-0.mongo,mongo-1.mongo/scoring?replicaSet=rs0"),
    ("mongodb+srv://scoring:s3cret@cluster.example/scoring", "mongodb+srv://scoring:***@cluster.example/scoring"),
    ("mongodb://127.0.0.1:27017/scoring", "mongodb://127.0.0.1:27017/scoring"),
    ("/srv/scoring/scoring.sqlite3", "/srv/scoring/scoring.sqlite3"),
])
def test_the_store_is_printed_without_its_password(url, shown):
    """Before: 'init' printed SCORING_DATABASE_URL as it was, MongoDB password and all, onto the terminal and into
    whatever log keeps the command's output (and the seed conflict message did too); and for SQLite it named
    the instance folder, not the database file."""
    from flask import Flask

    from scoring_service import cli

    app = Flask("t")
    app.config["DATABASE_URL"] = url
    with app.app_context():
        assert cli._store_named() == shown
    app.config["DATABASE_URL"] = None
    with app.app_context():
        assert cli._store_named() == os.path.join(app.instance_path, "scoring.sqlite3")


def test_init_names_the_sqlite_file(env, tmp_path):
    assert run(env, "init").stdout.strip() == f"store ready: {tmp_path / 'instance' / 'scoring.sqlite3'}"


@pytest.mark.parametrize("setting, value, said", [
    ("SCORING_THREADS", "eight", "Error: SCORING_THREADS must be a whole number, got 'eight'"),
    ("SCORING_THREADS", "0", "Error: SCORING_THREADS must be at least 1, got 0"),
    ("SCORING_WORKER_CONNECTIONS", "-5", "Error: SCORING_WORKER_CONNECTIONS must be at least 1, got -5"),
    ("SCORING_WORKERS", "0", "SCORING_WORKERS'): 0 is not in the range x>=1"),
])
def test_serve_refuses_a_count_it_cannot_run_with(env, setting, value, said):
    """Before: a word was a ValueError traceback, 0 threads a server whose workers failed to boot, and 0
    workers silently became the default (2 × cores + 1)."""
    result = refused_serve(env | {setting: value})
    assert result.returncode in (1, 2) and "Traceback" not in result.stderr
    assert said in result.stderr, result.stderr
