"""Test set-up: stores (SQLite and a real MongoDB-wire server), app, keys, a small world.

The MongoDB runs use FerretDB v1.24.2 (SQLite backend) through the launcher in
``tools/ferretdb-launcher``, built here with Go when missing, or a real
MongoDB named by ``MONGODB_URI``. Without either, MongoDB tests skip with
the reason — unless ``SCORING_REQUIRE_MONGO=1`` (set by ``.ci/run``), which
makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from scoring_service import create_app
from scoring_service.services.keys import new_key
from scoring_service.domain.rubric_schema import load_rubric_file

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER_DIR = ROOT / "tools" / "ferretdb-launcher"
LAUNCHER = LAUNCHER_DIR / "bin" / "ferretdb-launcher"
RUBRIC = load_rubric_file(ROOT / "rubrics" / "shenyang-2018.json")
ARTIFACTS = ROOT / "test-artifacts"


def skip_or_fail(message: str, variable: str = "SCORING_REQUIRE_MONGO"):
    if os.environ.get(variable) == "1":
        pytest.fail(f"{message} ({variable}=1 makes this a failure)")
    pytest.skip(message)


def build_launcher() -> Path | None:
    if LAUNCHER.exists():
        return LAUNCHER
    go = shutil.which("go")
    if go is None:
        return None
    subprocess.run([go, "build", "-o", str(LAUNCHER), "."], cwd=LAUNCHER_DIR, check=True, timeout=900)
    return LAUNCHER


class FerretDB:
    """A FerretDB process on a free loopback port with its own data directory."""

    def __init__(self, launcher: Path, data_dir: Path, log_path: Path):
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [str(launcher), "-dir", str(data_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
        )
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("mongodb://"):
            self.stop()
            raise RuntimeError(f"FerretDB did not start; see {log_path}")
        self.uri = line

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()  # the launcher exits when its stdin closes
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory):
    """Base URI of a MongoDB-wire server for this test session."""
    if os.environ.get("MONGODB_URI"):
        yield os.environ["MONGODB_URI"]
        return
    try:
        launcher = build_launcher()
    except (subprocess.SubprocessError, OSError) as exc:
        skip_or_fail(f"could not build the FerretDB launcher: {exc}")
    if launcher is None:
        skip_or_fail("no MongoDB-wire server: Go is not installed and MONGODB_URI is not set")
    base = tmp_path_factory.mktemp("ferretdb")
    server = FerretDB(launcher, base / "data", base / "ferretdb.log")
    yield server.uri
    server.stop()


def with_database(uri: str, name: str) -> str:
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


STORES = ["sqlite", pytest.param("mongo", marks=pytest.mark.mongo)]


@pytest.fixture(params=STORES)
def database_url(request, tmp_path):
    """A fresh, empty store of each kind."""
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite3")
    return with_database(request.getfixturevalue("mongo_server"), "t" + uuid.uuid4().hex[:16])


@pytest.fixture
def store(database_url):
    from scoring_service.store import open_store

    s = open_store(database_url)
    s.init()
    yield s
    s.close()


def make_app(database_url: str, instance: Path, **overrides):
    config = {
        "INSTANCE_PATH": str(instance),
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret-key-not-for-production",
        "RATELIMIT_ENABLED": False,
        "TESTING": True,
        **overrides,
    }
    return create_app(config)


@pytest.fixture
def app(database_url, tmp_path):
    app = make_app(database_url, tmp_path / "instance")
    yield app
    app.extensions["scoring"].store.close()


@pytest.fixture
def client(app):
    return app.test_client()


class Keys(dict):
    """Role name → ``Authorization`` header."""

    def header(self, name: str) -> dict:
        return {"Authorization": f"Bearer {self[name]}"}


def add_key(app, role, name, agency_id=None, community_id=None, district_id=None) -> tuple[str, str]:
    record, token = new_key(role, name, agency_id, community_id, district_id)
    app.extensions["scoring"].store.create_key(record)
    return record["key_id"], token


COMMUNITIES = [
    # households 150: 10 % is exactly 15 (binary floats say 16)
    {"community_id": "heping-001", "name_zh": "南湖小区", "district_id": "heping", "households": 150,
     "renovation_year": 2018, "has_elevator": True, "heating_retrofit": True},
    {"community_id": "heping-002", "name_zh": "三好里", "district_id": "heping", "households": 80,
     "renovation_year": 2018, "has_elevator": False, "heating_retrofit": False},
    {"community_id": "shenhe-001", "name_zh": "大什字社区", "district_id": "shenhe", "households": 1200,
     "renovation_year": 2018, "has_elevator": False, "heating_retrofit": True},
    {"community_id": "shenhe-099", "name_zh": "二〇一九年小区", "district_id": "shenhe", "households": 300,
     "renovation_year": 2019, "has_elevator": False, "heating_retrofit": False},
]

ROUND = {
    "round_id": "r2018",
    "year": 2018,
    "rubric_id": "shenyang-2018",
    "title": "2018年验收测评",
    "opens_at": "2018-09-01T00:00:00+08:00",
    "closes_at": "2018-09-30T23:59:59+08:00",
    "quotas": {"heping": 2, "shenhe": 2},
    "reward": {"pool_fen": 1_000_000, "district_share_pct": 40, "top_districts": 1},
}


@pytest.fixture
def keys(app) -> Keys:
    k = Keys()
    k.ids = {}
    for name, role, agency, community in (
        ("admin", "admin", None, None),
        ("leadership", "leadership", None, None),
        ("agency_a", "agency", "agency-a", None),
        ("agency_b", "agency", "agency-b", None),
        ("kiosk_1", "kiosk", None, "heping-001"),
        ("kiosk_2", "kiosk", None, "heping-002"),
    ):
        k.ids[name], k[name] = add_key(app, role, name, agency, community)
    for name, district in (("district_heping", "heping"), ("district_shenhe", "shenhe")):  # SPEC §3 district keys
        k.ids[name], k[name] = add_key(app, "district", name, district_id=district)
    return k


@pytest.fixture
def world(client, keys):
    """Rubric, two districts, four communities (one of another year), two agencies, an open round."""
    admin = keys.header("admin")
    assert client.post("/api/v1/rubrics", json=RUBRIC.body, headers=admin).status_code == 201
    for district_id, zh, en in (("heping", "和平区", "Heping"), ("shenhe", "沈河区", "Shenhe")):
        r = client.put(f"/api/v1/districts/{district_id}", json={"name_zh": zh, "name_en": en}, headers=admin)
        assert r.status_code == 201, r.get_json()
    r = client.post("/api/v1/communities/import", json=COMMUNITIES, headers=admin)
    assert r.status_code == 200, r.get_json()
    for agency_id, name in (("agency-a", "甲测评机构"), ("agency-b", "乙测评机构")):
        assert client.put(f"/api/v1/agencies/{agency_id}", json={"name": name}, headers=admin).status_code == 201
    r = client.post("/api/v1/rounds", json=ROUND, headers=admin)
    assert r.status_code == 201, r.get_json()
    return {"round_id": "r2018", "communities": {c["community_id"]: c for c in COMMUNITIES}}


# -- payload builders ---------------------------------------------------------

def survey(community_id="heping-001", **fields) -> dict:
    body = {
        "response_id": str(uuid.uuid4()),
        "community_id": community_id,
        "submitted_at": "2018-09-10T10:00:00+08:00",
        "answers": {"roads": 4, "water": 5},
        "overall": 4,
    }
    body.update(fields)
    return body


def full_checks(community: dict, points=None) -> dict:
    """Every check of every applicable item; ``points(check)`` or full marks."""
    checks = {}
    for item in RUBRIC.items:
        if not RUBRIC.applies(item, community):
            continue
        for check in item["checks"]:
            checks[check["code"]] = points(check) if points else check["max_points"]
    return checks


def inspection(community: dict, checks=None, **fields) -> dict:
    body = {
        "inspection_id": str(uuid.uuid4()),
        "community_id": community["community_id"],
        "inspector": "王工",
        "inspected_at": "2018-09-12T09:00:00+08:00",
        "checks": checks if checks is not None else full_checks(community),
    }
    body.update(fields)
    return body


# -- per-store test counts in the summary --------------------------------------

def pytest_terminal_summary(terminalreporter):
    counts: dict[str, Counter] = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            for kind in ("sqlite", "mongo"):
                if f"[{kind}" in nodeid or f"-{kind}]" in nodeid or f"-{kind}-" in nodeid:
                    counts.setdefault(kind, Counter())[outcome] += 1
    if counts:
        terminalreporter.write_sep("-", "tests per store")
        for kind in ("sqlite", "mongo"):
            c = counts.get(kind, Counter())
            terminalreporter.write_line(
                f"{kind:>6}: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped, {c['error']} errors"
            )
