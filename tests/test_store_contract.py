"""The store contract, run against every backend (SQLite and a real MongoDB-wire server)."""

from __future__ import annotations

import numpy as np
import pytest

from scoring_service.store import Outcome

N_ITEMS = 3
AT = "2018-09-10T02:00:00.000000Z"


def response(rid, community="c1", levels=(4, 5, 0, 3), household=None, content="h", respondent_type="resident"):
    return {"response_id": rid, "round_id": "R", "community_id": community, "respondent_type": respondent_type,
            "household_hash": household, "content_hash": content, "levels": list(levels),
            "submitted_at": AT, "answers": {}, "overall": levels[-1] or None}


def open_round(store, round_id="R"):
    record = {"round_id": round_id, "year": 2018, "rubric_id": "rb", "status": "open", "digest": "d1",
              "quotas": {"d1": 1}, "reward": {"pool_fen": 0, "district_share_pct": 0, "top_districts": 0}}
    assert store.create_round(record) is Outcome.CREATED
    return record


def test_init_is_idempotent_and_ping_works(store):
    store.init()
    store.ping()
    assert isinstance(store.generation(), str)


def test_keys_round_trip_and_revocation(store):
    store.create_key({"key_id": "k1", "role": "admin", "name": "ops", "secret_hash": "x", "created_at": AT})
    assert store.get_key("k1")["role"] == "admin"
    assert store.get_key("nope") is None
    assert [k["key_id"] for k in store.list_keys()] == ["k1"]
    assert store.revoke_key("k1", "2018-01-01T00:00:00.000000Z")
    assert store.revoke_key("k1", "2019-01-01T00:00:00.000000Z")  # second time keeps the first time
    assert store.get_key("k1")["revoked_at"] == "2018-01-01T00:00:00.000000Z"
    assert not store.revoke_key("nope", AT)


def test_keys_carry_their_district(store):
    store.create_key({"key_id": "k1", "role": "district", "name": "和平区政府", "district_id": "heping",
                      "secret_hash": "x", "created_at": AT})
    store.create_key({"key_id": "k2", "role": "admin", "name": "ops", "secret_hash": "y", "created_at": AT})
    assert store.get_key("k1")["district_id"] == "heping"
    assert store.get_key("k2")["district_id"] is None
    assert {k["key_id"]: k["district_id"] for k in store.list_keys()} == {"k1": "heping", "k2": None}


def test_rubric_versions_are_immutable(store):
    assert store.put_rubric("rb", {"rubric_id": "rb", "x": 1}, "d1", AT) is Outcome.CREATED
    assert store.put_rubric("rb", {"rubric_id": "rb", "x": 1}, "d1", AT) is Outcome.DUPLICATE
    assert store.put_rubric("rb", {"rubric_id": "rb", "x": 2}, "d2", AT) is Outcome.CONFLICT
    assert store.get_rubric("rb") == {"rubric_id": "rb", "x": 1}
    assert store.rubric_in_use("rb") is False
    open_round(store)
    assert store.rubric_in_use("rb") is True


def test_reference_data_create_replace_and_filters(store):
    assert store.put_district({"district_id": "d1", "name_zh": "甲区", "name_en": "A"}) is True
    assert store.put_district({"district_id": "d1", "name_zh": "甲区", "name_en": "A2"}) is False
    assert store.get_district("d1")["name_en"] == "A2"
    made = store.put_communities([
        {"community_id": "c1", "district_id": "d1", "renovation_year": 2018, "households": 10, "name_zh": "一"},
        {"community_id": "c2", "district_id": "d2", "renovation_year": 2019, "households": 20, "name_zh": "二"},
    ])
    assert made == [True, True]
    assert store.put_communities([{"community_id": "c1", "district_id": "d1", "renovation_year": 2018,
                                   "households": 11, "name_zh": "一"}]) == [False]
    assert store.get_community("c1")["households"] == 11
    assert [c["community_id"] for c in store.list_communities(renovation_year=2018)] == ["c1"]
    assert [c["community_id"] for c in store.list_communities(district_id="d2")] == ["c2"]
    assert store.put_agency({"agency_id": "a", "name": "甲"}) is True
    assert store.list_agencies() == [{"agency_id": "a", "name": "甲"}]


def test_round_life_cycle(store):
    record = open_round(store)
    assert store.create_round(record) is Outcome.DUPLICATE
    assert store.create_round({**record, "digest": "other"}) is Outcome.CONFLICT
    assert store.close_round("R", AT) is Outcome.CHANGED
    assert store.close_round("R", AT) is Outcome.UNCHANGED
    assert store.get_round("R")["status"] == "closed"
    assert store.publish_round("R", b'{"a":1}', "sha", AT) is Outcome.CHANGED
    assert store.publish_round("R", b'{"a":2}', "sha2", AT) is Outcome.UNCHANGED
    assert store.get_snapshot("R") == (b'{"a":1}', "sha")
    assert store.get_round("R")["status"] == "published"
    assert store.close_round("R", AT) is Outcome.ROUND_PUBLISHED
    assert store.close_round("nope", AT) is Outcome.NOT_FOUND


def test_responses_idempotency_households_and_counts(store):
    open_round(store)
    before = store.generation()
    outcomes = store.add_responses("R", [
        response("r1", household="h1"),
        response("r2", household="h1"),              # same household → refused
        response("r3", levels=(1, 0, 0, 5)),
        response("r3", levels=(1, 0, 0, 5)),          # same id twice in one batch, same content
        response("r4", content="a"),
        response("r4", content="b"),                  # same id, other content
        response("r5", respondent_type="public"),
    ], N_ITEMS)
    assert outcomes == [Outcome.CREATED, Outcome.HOUSEHOLD, Outcome.CREATED, Outcome.DUPLICATE, Outcome.CREATED,
                        Outcome.CONFLICT, Outcome.CREATED]
    assert store.generation() != before
    again = store.add_responses("R", [response("r1", household="h1"), response("r3", content="other")], N_ITEMS)
    assert again == [Outcome.DUPLICATE, Outcome.CONFLICT]
    assert store.count_responses("R") == 4

    counts = store.survey_counts("R", N_ITEMS)
    residents = counts.get("resident", "c1")
    assert residents.responses == 3
    expected = np.zeros((N_ITEMS + 1, 5), dtype=int)
    for levels in ((4, 5, 0, 3), (1, 0, 0, 5), (4, 5, 0, 3)):
        for k, level in enumerate(levels):
            if level:
                expected[k, level - 1] += 1
    np.testing.assert_array_equal(residents.counts, expected)
    assert counts.get("public", "c1").responses == 1


def test_void_excludes_from_counts_and_blocks_resubmission(store):
    open_round(store)
    store.add_responses("R", [response("r1"), response("r2")], N_ITEMS)
    assert store.void_response("R", "r1", "fraud", "k", AT, N_ITEMS) is Outcome.CHANGED
    assert store.void_response("R", "r1", "fraud", "k", AT, N_ITEMS) is Outcome.UNCHANGED
    assert store.void_response("R", "nope", "x", "k", AT, N_ITEMS) is Outcome.NOT_FOUND
    assert store.survey_counts("R", N_ITEMS).get("resident", "c1").responses == 1
    assert store.add_responses("R", [response("r1")], N_ITEMS) == [Outcome.VOIDED]
    assert store.get_response("R", "r1")["void_reason"] == "fraud"
    assert store.count_responses("R", include_voided=True) == 2
    assert [r["response_id"] for r in store.iter_responses("R")] == ["r1", "r2"]
    assert store.recount("R", N_ITEMS) == []


def test_closed_and_published_rounds_refuse_submissions(store):
    open_round(store)
    store.close_round("R", AT)
    assert store.add_responses("R", [response("r1")], N_ITEMS) == [Outcome.ROUND_CLOSED]
    store.publish_round("R", b"{}", "sha", AT)
    assert store.add_responses("R", [response("r1")], N_ITEMS) == [Outcome.ROUND_PUBLISHED]
    assert store.void_response("R", "r1", "x", "k", AT, N_ITEMS) is Outcome.ROUND_PUBLISHED


def version(content="v1", **extra):
    return {"community_id": "c1", "content_hash": content, "inspected_at": AT, "item_points": [1.0, 2.0, 0.0],
            "item_max": [2.0, 2.0, 0.0], "vetoes": [], "amend_reason": None, "version": 1, **extra}


def test_inspections_versions_and_scoping(store):
    open_round(store)
    record = {"inspection_id": "i1", "round_id": "R", "community_id": "c1", "agency_id": "a", "versions": [version()]}
    assert store.add_inspection(record) is Outcome.CREATED
    assert store.add_inspection(record) is Outcome.DUPLICATE
    assert store.add_inspection({**record, "versions": [version("other")]}) is Outcome.CONFLICT
    assert store.amend_inspection("R", "i1", version("v2", amend_reason="typo"), "b") is Outcome.FORBIDDEN
    assert store.amend_inspection("R", "i1", version("v2", amend_reason="typo"), "a") is Outcome.CREATED
    assert store.amend_inspection("R", "i1", version("v2", amend_reason="typo"), None) is Outcome.DUPLICATE
    assert store.amend_inspection("R", "nope", version("v3"), None) is Outcome.NOT_FOUND
    stored = store.get_inspection("R", "i1")
    assert [v["content_hash"] for v in stored["versions"]] == ["v1", "v2"]
    assert [v["version"] for v in stored["versions"]] == [1, 2]
    current = store.current_inspections("R")
    assert len(current) == 1 and current[0]["content_hash"] == "v2" and current[0]["agency_id"] == "a"
    store.close_round("R", AT)
    assert store.amend_inspection("R", "i1", version("v3", amend_reason="late"), None) is Outcome.ROUND_CLOSED


def test_inspection_sums_take_the_stage_of_the_current_version(store):
    """SPEC §13: an acceptance round scores acceptance inspections only; a version without a stage is one."""
    open_round(store)
    for iid, community, first in (("i1", "c1", version()), ("i2", "c2", version(stage="construction")),
                                  ("i3", "c3", version(stage="acceptance")), ("i4", "c4", version())):
        record = {"inspection_id": iid, "round_id": "R", "community_id": community, "agency_id": "a",
                  "versions": [{**first, "community_id": community}]}
        assert store.add_inspection(record) is Outcome.CREATED
    # i3 was filed as acceptance by mistake and corrected to construction; i4 the other way round
    assert store.amend_inspection("R", "i3", version("v2", community_id="c3", stage="construction",
                                                     amend_reason="施工中检查"), None) is Outcome.CREATED
    assert store.amend_inspection("R", "i4", version("v2", community_id="c4", stage="construction",
                                                     amend_reason="x"), None) is Outcome.CREATED
    assert store.amend_inspection("R", "i4", version("v3", community_id="c4", stage="acceptance",
                                                     amend_reason="y"), None) is Outcome.CREATED
    acceptance = store.inspection_sums("R", N_ITEMS)
    assert acceptance.community_ids == ["c1", "c4"]
    assert acceptance.points.shape == (2, N_ITEMS) and acceptance.points[0].tolist() == [1.0, 2.0, 0.0]
    assert store.inspection_sums("R", N_ITEMS, stage="construction").community_ids == ["c2", "c3"]
    assert len(store.inspection_sums("R", N_ITEMS, stage="aftercare")) == 0
    assert store.inspection_sums("R", N_ITEMS, stage="aftercare").points.shape == (0, N_ITEMS)
    stages = [v.get("stage") for v in store.get_inspection("R", "i4")["versions"]]
    assert stages == [None, "construction", "acceptance"]


def test_audit_is_append_only_and_filterable(store):
    for i, key in enumerate(("k1", "k2", "k1")):
        store.append_audit({"at": f"2018-09-1{i}T00:00:00.000000Z", "key_id": key, "round_id": "R",
                            "entity_id": f"e{i}", "method": "POST", "path": "/x", "status": 201})
    assert [e["entity_id"] for e in store.list_audit({"key_id": "k1"}, 10)] == ["e0", "e2"]
    assert [e["entity_id"] for e in store.list_audit({"since": "2018-09-11T00:00:00.000000Z"}, 10)] == ["e1", "e2"]
    events = store.list_audit({}, 2)
    assert len(events) == 2
    assert [e["entity_id"] for e in store.list_audit({"after_seq": events[-1]["seq"]}, 10)] == ["e2"]


def test_concurrent_first_writes_of_one_id_do_not_fail(database_url, store):
    """Several processes' first upsert of the same id at once: one creates it, none errors."""
    from concurrent.futures import ThreadPoolExecutor

    from scoring_service.store import open_store

    others = [open_store(database_url) for _ in range(8)]
    open_round(store)
    barrier = __import__("threading").Barrier(len(others))

    def write(pair):
        i, other = pair
        barrier.wait()
        created = other.put_district({"district_id": "new", "name_zh": "新区", "name_en": f"New {i}"})
        other.add_responses("R", [response(f"r{i}", community=f"c{i}")], N_ITEMS)
        return created

    with ThreadPoolExecutor(max_workers=len(others)) as pool:
        created = list(pool.map(write, enumerate(others)))
    assert created.count(True) == 1
    assert store.get_district("new")["name_zh"] == "新区"
    assert store.count_responses("R") == len(others)
    for other in others:
        other.close()


def test_audit_filters_combine_and_until_is_exclusive(store):
    for i, (key, entity) in enumerate((("k1", "e0"), ("k2", "e1"), ("k1", "e1"), ("k1", "e1"))):
        store.append_audit({"at": f"2018-09-1{i}T00:00:00.000000Z", "key_id": key, "round_id": f"R{i % 2}",
                            "entity_id": entity, "method": "POST", "path": "/x", "status": 201})
    found = store.list_audit({"key_id": "k1", "entity_id": "e1", "until": "2018-09-13T00:00:00.000000Z"}, 10)
    assert [e["at"] for e in found] == ["2018-09-12T00:00:00.000000Z"]
    found = store.list_audit({"round_id": "R1", "since": "2018-09-11T00:00:00.000000Z", "key_id": ""}, 10)
    assert [e["at"] for e in found] == ["2018-09-11T00:00:00.000000Z", "2018-09-13T00:00:00.000000Z"]


def test_repeats_of_an_id_in_one_batch_take_the_first_ones_outcome(store):
    open_round(store)
    outcomes = store.add_responses("R", [
        response("r1", household="h1"),
        response("r2", household="h1"),               # refused: household
        response("r2", household="h1"),               # the same again: refused the same way
        response("r2", household="h1", content="x"),  # the same id with other content
        response("r3"), response("r3"),
    ], N_ITEMS)
    assert outcomes == [Outcome.CREATED, Outcome.HOUSEHOLD, Outcome.HOUSEHOLD, Outcome.CONFLICT,
                        Outcome.CREATED, Outcome.DUPLICATE]
    assert store.count_responses("R") == 2


def test_sqlite_file_is_created_for_its_owner_only(tmp_path):
    from scoring_service.store import open_store

    path = tmp_path / "new" / "store.sqlite3"
    store = open_store(str(path))
    store.init()
    open_round(store)  # a write, so the WAL files exist too
    try:
        for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"),
                     path.with_name(path.name + "-lock")):  # the writers' lock file (SQLiteStore._transaction)
            assert name.exists() and name.stat().st_mode & 0o777 == 0o600, name
    finally:
        store.close()


def test_sqlite_store_of_the_first_schema_lets_a_voided_response_free_its_household(tmp_path):
    """A database made before voiding freed households has an index over voided responses too: init replaces it."""
    import sqlite3

    from scoring_service.store import open_store

    path = str(tmp_path / "old.sqlite3")
    store = open_store(path)
    store.init()
    with sqlite3.connect(path) as conn:
        conn.executescript("DROP INDEX responses_one_live_per_household;"
                           "CREATE UNIQUE INDEX responses_one_per_household ON responses"
                           " (round_id, community_id, household_hash) WHERE household_hash IS NOT NULL;")
    store.init()
    open_round(store)
    store.add_responses("R", [response("r1", household="h1")], N_ITEMS)
    store.void_response("R", "r1", "fraud", "k", AT, N_ITEMS)
    try:
        assert store.add_responses("R", [response("r2", household="h1")], N_ITEMS) == [Outcome.CREATED]
    finally:
        store.close()


def test_sqlite_store_of_an_older_schema_gains_district_and_stage_columns(tmp_path):
    """A file made before district keys and inspection stages: init adds the columns; old rows read
    as keys without a district and acceptance inspections."""
    import sqlite3

    from scoring_service.store import open_store

    path = str(tmp_path / "old.sqlite3")
    with sqlite3.connect(path) as conn:
        conn.executescript("""
            CREATE TABLE keys (key_id TEXT PRIMARY KEY, role TEXT NOT NULL, name TEXT NOT NULL, agency_id TEXT,
                community_id TEXT, secret_hash TEXT NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT);
            CREATE TABLE inspection_versions (inspection_id TEXT NOT NULL, version INTEGER NOT NULL,
                content_hash TEXT NOT NULL, inspected_at TEXT NOT NULL, points BLOB NOT NULL, maxima BLOB NOT NULL,
                vetoes TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (inspection_id, version));
            INSERT INTO keys VALUES ('k_old', 'admin', 'ops', NULL, NULL, 'x', '2018-01-01T00:00:00.000000Z', NULL);
        """)
        conn.execute("INSERT INTO inspection_versions VALUES ('i_old', 1, 'v1', ?, ?, ?, '[]', '{}')",
                     (AT, np.array([1.0, 2.0, 0.0]).tobytes(), np.array([2.0, 2.0, 0.0]).tobytes()))
    store = open_store(path)
    try:
        store.init()
        store.init()  # idempotent once the columns are there
        assert store.get_key("k_old")["district_id"] is None
        store.create_key({"key_id": "k_new", "role": "district", "name": "d", "district_id": "heping",
                          "secret_hash": "y", "created_at": AT})
        assert store.get_key("k_new")["district_id"] == "heping"
        open_round(store)
        store._conn().execute("INSERT INTO inspections VALUES ('i_old', 1, 'R', 'c1', 'a', 1)")
        assert store.inspection_sums("R", N_ITEMS).community_ids == ["c1"]
        assert len(store.inspection_sums("R", N_ITEMS, stage="construction")) == 0
    finally:
        store.close()


# -- milestones (SPEC §11) ---------------------------------------------------------

def milestone(code="plan_approved", reached_on="2018-04-20", community="c1", content=None, **extra):
    return {"round_id": "R", "community_id": community, "code": code, "reached_on": reached_on, "note": None,
            "votes": None, "management_mode": None, "changed_reason": None, "key_id": "k",
            "recorded_at": AT, "content_hash": content or f"{code}:{reached_on}", **extra}


def test_milestone_versions_current_records_and_generation(store):
    open_round(store)
    before = store.generation("milestones")
    assert store.add_milestone_version(milestone()) is Outcome.CREATED
    assert store.generation("milestones") != before
    assert store.add_milestone_version(milestone()) is Outcome.DUPLICATE
    assert store.add_milestone_version(milestone(reached_on="2018-04-21", changed_reason="typo")) is Outcome.CREATED
    assert store.add_milestone_version(milestone(reached_on=None, content="withdrawn")) is Outcome.CREATED
    assert store.add_milestone_version(milestone("contract_signed", "2018-04-25")) is Outcome.CREATED
    assert store.add_milestone_version(milestone(community="c2")) is Outcome.CREATED
    versions = store.milestone_versions("R", "c1")
    assert [(v["code"], v["version"], v["reached_on"]) for v in versions] == [
        ("contract_signed", 1, "2018-04-25"),
        ("plan_approved", 1, "2018-04-20"), ("plan_approved", 2, "2018-04-21"), ("plan_approved", 3, None)]
    assert versions[2]["changed_reason"] == "typo" and versions[2]["key_id"] == "k"
    current = store.current_milestones("R")
    assert [(v["community_id"], v["code"], v["version"], v["reached_on"]) for v in current] == [
        ("c1", "contract_signed", 1, "2018-04-25"), ("c1", "plan_approved", 3, None),
        ("c2", "plan_approved", 1, "2018-04-20")]
    assert store.current_milestones("other") == [] and store.milestone_versions("R", "c9") == []
    # writable whatever the round's status
    store.publish_round("R", b"{}", "sha", AT)
    assert store.add_milestone_version(milestone("settled", "2018-12-01")) is Outcome.CREATED


def test_milestone_check_sees_the_current_records_and_can_refuse(store):
    open_round(store)
    store.add_milestone_version(milestone())
    seen = []

    class Refused(Exception):
        pass

    def refuse(current):
        seen.append(current)
        raise Refused

    try:
        store.add_milestone_version(milestone("contract_signed", "2018-04-25"), check=refuse)
    except Refused:
        pass
    assert list(seen[0]) == ["plan_approved"] and seen[0]["plan_approved"]["version"] == 1
    assert [v["code"] for v in store.milestone_versions("R", "c1")] == ["plan_approved"]
    # an identical replay is a DUPLICATE before any check
    assert store.add_milestone_version(milestone(), check=refuse) is Outcome.DUPLICATE and len(seen) == 1


def test_concurrent_milestone_writes_are_exact(database_url, store):
    """Eight writers at once on one community: versions numbered 1..8 without gaps, one creation of
    identical content, and a check that allows one milestone only lets exactly one through."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from scoring_service.store import open_store

    others = [open_store(database_url) for _ in range(8)]
    open_round(store)
    barrier = threading.Barrier(len(others))

    class Refused(Exception):
        pass

    def only_first(current):
        if any(code.startswith("x") for code in current):
            raise Refused

    def write(pair):
        i, other = pair
        barrier.wait()
        distinct = other.add_milestone_version(milestone(reached_on=f"2018-04-{10 + i}"))
        barrier.wait()
        same = other.add_milestone_version(milestone("contract_signed", "2018-04-25"))
        barrier.wait()
        try:
            alone = other.add_milestone_version(milestone(f"x{i}", community="c2"), check=only_first)
        except Refused:
            alone = None
        return distinct, same, alone

    with ThreadPoolExecutor(max_workers=len(others)) as pool:
        results = list(pool.map(write, enumerate(others)))
    assert [r[0] for r in results] == [Outcome.CREATED] * 8
    versions = [v for v in store.milestone_versions("R", "c1") if v["code"] == "plan_approved"]
    assert sorted(v["version"] for v in versions) == list(range(1, 9))
    assert sorted(v["reached_on"] for v in versions) == [f"2018-04-{10 + i}" for i in range(8)]
    assert sorted(r[1] for r in results).count(Outcome.CREATED) == 1
    assert [r[1] for r in results].count(Outcome.DUPLICATE) == 7
    assert [r[2] for r in results].count(Outcome.CREATED) == 1
    assert len(store.milestone_versions("R", "c2")) == 1
    for other in others:
        other.close()


# -- the milestone change feed (issue 13: the supervision report follows what changed) ----------------

def test_milestone_changes_follow_the_writes(store):
    open_round(store)
    assert store.milestone_changes("R") == ([], 0)
    store.add_milestone_version(milestone())
    store.add_milestone_version(milestone("contract_signed", "2018-04-25"))
    store.add_milestone_version(milestone(community="c2"))
    store.add_milestone_version(milestone(community="c1", round_id="other"))
    records, cursor = store.milestone_changes("R")
    assert [(r["community_id"], r["code"], r["version"]) for r in records] == [
        ("c1", "plan_approved", 1), ("c1", "contract_signed", 1), ("c2", "plan_approved", 1)]
    assert all(set(r) == set(store.milestone_versions("R", r["community_id"])[0]) for r in records)
    assert store.milestone_changes("R", cursor) == ([], cursor)  # nothing since
    assert store.add_milestone_version(milestone()) is Outcome.DUPLICATE
    assert store.milestone_changes("R", cursor) == ([], cursor)  # a replay writes nothing
    store.add_milestone_version(milestone(reached_on="2018-04-21", changed_reason="typo", content="v2"))
    records, later = store.milestone_changes("R", cursor)
    assert [(r["community_id"], r["code"], r["version"], r["reached_on"]) for r in records] == [
        ("c1", "plan_approved", 2, "2018-04-21")]
    assert later != cursor and store.milestone_changes("R", later) == ([], later)
    assert [r["round_id"] for r in store.milestone_changes("other")[0]] == ["other"]


def test_milestone_changes_of_a_long_run(store):
    """Many writes since the cursor, read at once and in chunks: all of them, in order, once."""
    open_round(store)
    store.add_milestone_version(milestone(community="c0"))
    _, cursor = store.milestone_changes("R")
    for i in range(1, 80):
        store.add_milestone_version(milestone(community=f"c{i}"))
    records, later = store.milestone_changes("R", cursor)
    assert [r["community_id"] for r in records] == [f"c{i}" for i in range(1, 80)]
    every, last = store.milestone_changes("R")
    assert [r["community_id"] for r in every] == [f"c{i}" for i in range(80)] and last == later
    chunks, cursor = [], None  # read in chunks of 7
    while True:
        records, cursor = store.milestone_changes("R", cursor, limit=7)
        assert len(records) <= 7
        chunks += records
        if len(records) < 7:
            break
    assert [r["community_id"] for r in chunks] == [f"c{i}" for i in range(80)] and cursor == later


def test_milestone_changes_miss_no_concurrent_write(database_url, store):
    """Four writers (each its own connection, as other processes) and a reader following the cursor at
    the same time: every write acknowledged before a read is returned by it or an earlier one, and no
    version is returned twice."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from scoring_service.store import open_store

    writers = [open_store(database_url) for _ in range(4)]
    reader = open_store(database_url)
    open_round(store)
    acknowledged: list[tuple[str, str, int]] = []
    done = threading.Event()
    barrier = threading.Barrier(len(writers))

    def write(pair):
        w, other = pair
        barrier.wait()
        for i in range(12):
            community = f"w{w}-{i % 3}"
            record = milestone(community=community, reached_on=f"2018-04-{10 + i}", changed_reason="next",
                               content=f"{w}:{i}")
            assert other.add_milestone_version(record) is Outcome.CREATED
            version = max(v["version"] for v in other.milestone_versions("R", community))
            acknowledged.append((community, "plan_approved", version))

    def follow():
        seen: list[tuple[str, str, int]] = []
        cursor = 0
        while True:
            finished = done.is_set()
            before = list(acknowledged)  # acknowledged before this read
            records, cursor = reader.milestone_changes("R", cursor)
            seen += [(r["community_id"], r["code"], r["version"]) for r in records]
            assert set(before) <= set(seen)
            if finished:
                return seen

    with ThreadPoolExecutor(max_workers=len(writers) + 1) as pool:
        following = pool.submit(follow)
        list(pool.map(write, enumerate(writers)))
        done.set()
        seen = following.result()
    assert len(seen) == len(set(seen)) == 48 and set(seen) == set(acknowledged)
    for other in (*writers, reader):
        other.close()


def test_sqlite_milestones_stored_before_seq_are_numbered_at_init(tmp_path):
    """A file whose milestone versions have no seq: init numbers them in insertion order, the feed
    returns them first and the versions written after them next."""
    import json
    import sqlite3

    from scoring_service.store import open_store

    path = str(tmp_path / "old.sqlite3")
    with sqlite3.connect(path) as conn:
        conn.executescript("""
            CREATE TABLE milestone_versions (round_id TEXT NOT NULL, community_id TEXT NOT NULL, code TEXT NOT NULL,
                version INTEGER NOT NULL, reached_on TEXT, content_hash TEXT NOT NULL, body TEXT NOT NULL,
                PRIMARY KEY (round_id, community_id, code, version));
        """)
        for record in (milestone(community="c2"), milestone(community="c1")):
            conn.execute("INSERT INTO milestone_versions VALUES ('R', ?, 'plan_approved', 1, '2018-04-20', ?, ?)",
                         (record["community_id"], record["content_hash"], json.dumps({**record, "version": 1})))
    store = open_store(path)
    try:
        store.init()
        store.init()
        open_round(store)
        records, cursor = store.milestone_changes("R")
        assert [r["community_id"] for r in records] == ["c2", "c1"]
        store.add_milestone_version(milestone(community="c3"))
        records, later = store.milestone_changes("R", cursor)
        assert [r["community_id"] for r in records] == ["c3"] and later > cursor
    finally:
        store.close()


@pytest.mark.parametrize("database_url", [pytest.param("mongo", marks=pytest.mark.mongo)], indirect=True)
def test_mongo_milestones_stored_before_seq_are_read_and_written_after(store):
    """Versions stored with the first _id scheme ("<round>|<community>|<n>", no seq): the feed's first
    read returns them, a new version of their community takes the next n, and the feed follows it."""
    open_round(store)
    store.db.milestone_versions.insert_one({**milestone(), "version": 1, "_id": "R|c1|1", "n": 1})
    records, cursor = store.milestone_changes("R")
    assert [(r["community_id"], r["version"]) for r in records] == [("c1", 1)] and cursor == 0
    assert "n" not in records[0] and "_id" not in records[0]
    store.add_milestone_version(milestone(reached_on="2018-04-21", changed_reason="typo", content="v2"))
    assert store.db.milestone_versions.find_one({"_id": "R#1"})["n"] == 2
    records, cursor = store.milestone_changes("R", cursor)
    assert [(r["community_id"], r["version"]) for r in records] == [("c1", 2)] and cursor == 1


# -- the ledger's change feeds (issue 14: the ledger follows what changed) ----------------------

def funding(community="c1", funds=0, round_id="R"):
    from scoring_service.domain import ledger as lg

    record = {"round_id": round_id, "community_id": community, "land_category": "non_independent",
              "approved_budget_fen": 100, "settled_budget_fen": None, "district_funds_in_place_fen": funds,
              "key_id": "k", "recorded_at": AT}
    record["content_hash"] = lg.funding_hash(record)
    return record


def payment(community="c1", tranche=1, did=None, round_id="R"):
    from scoring_service.domain import ledger as lg

    record = {"disbursement_id": did or f"{round_id}-{community}-{tranche}", "round_id": round_id,
              "community_id": community, "tranche": tranche, "amount_fen": 30, "paid_on": "2018-05-01",
              "voucher": None, "key_id": "k", "recorded_at": AT}
    record["content_hash"] = lg.disbursement_hash(record)
    return record


def test_funding_and_disbursement_changes_follow_the_writes(store):
    open_round(store)
    assert store.funding_changes("R") == ([], 0) and store.disbursement_changes("R") == ([], 0)
    store.put_funding(funding())
    store.put_funding(funding("c2"))
    store.put_funding(funding(round_id="other"))
    store.add_disbursement(payment())
    store.add_disbursement(payment(round_id="other"))
    records, cursor = store.funding_changes("R")
    assert [(r["community_id"], r["version"]) for r in records] == [("c1", 1), ("c2", 1)]
    assert records == [store.funding_versions("R", "c1")[0], store.funding_versions("R", "c2")[0]]  # no seq, no _id
    paid, paid_cursor = store.disbursement_changes("R")
    assert paid == store.disbursements("R") and [(d["community_id"], d["tranche"]) for d in paid] == [("c1", 1)]
    assert store.funding_changes("R", cursor) == ([], cursor)  # nothing since
    assert store.put_funding(funding()) is Outcome.DUPLICATE
    assert store.add_disbursement(payment()) is Outcome.DUPLICATE
    assert store.add_disbursement(payment(did="another")) is Outcome.ALREADY_PAID
    assert store.funding_changes("R", cursor) == ([], cursor)  # replays and refusals write nothing
    assert store.disbursement_changes("R", paid_cursor) == ([], paid_cursor)
    store.put_funding(funding(funds=5))
    store.add_disbursement(payment("c2", 2))
    records, later = store.funding_changes("R", cursor)
    assert [(r["community_id"], r["version"], r["district_funds_in_place_fen"]) for r in records] == [("c1", 2, 5)]
    assert later != cursor and store.funding_changes("R", later) == ([], later)
    paid, paid_later = store.disbursement_changes("R", paid_cursor)
    assert [(d["community_id"], d["tranche"]) for d in paid] == [("c2", 2)]
    assert store.disbursement_changes("R", paid_later) == ([], paid_later)
    assert [r["round_id"] for r in store.funding_changes("other")[0]] == ["other"]
    assert [d["round_id"] for d in store.disbursement_changes("other")[0]] == ["other"]


def test_funding_changes_of_a_long_run_and_in_chunks(store):
    open_round(store)
    store.put_funding(funding("c0"))
    _, cursor = store.funding_changes("R")
    for i in range(1, 50):
        store.put_funding(funding(f"c{i}"))
        store.add_disbursement(payment(f"c{i}"))
    records, later = store.funding_changes("R", cursor)
    assert [r["community_id"] for r in records] == [f"c{i}" for i in range(1, 50)]
    for feed, expected in ((store.funding_changes, [f"c{i}" for i in range(50)]),
                           (store.disbursement_changes, [f"c{i}" for i in range(1, 50)])):
        chunks, cursor = [], None  # read in chunks of 7
        while True:
            records, cursor = feed("R", cursor, limit=7)
            assert len(records) <= 7
            chunks += records
            if len(records) < 7:
                break
        assert [r["community_id"] for r in chunks] == expected and feed("R", cursor) == ([], cursor)


def test_funding_changes_miss_no_concurrent_write(database_url, store):
    """Four writers (each its own connection, as other processes) of funding versions and
    disbursements, and a reader following both feeds at the same time: every write acknowledged before
    a read is returned by it or an earlier one, none twice."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from scoring_service.store import open_store

    writers = [open_store(database_url) for _ in range(4)]
    reader = open_store(database_url)
    open_round(store)
    acknowledged: list[tuple] = []
    done = threading.Event()
    barrier = threading.Barrier(len(writers))

    def write(pair):
        w, other = pair
        barrier.wait()
        for i in range(9):
            community = f"w{w}-{i % 3}"
            assert other.put_funding(funding(community, funds=i)) is Outcome.CREATED
            version = max(v["version"] for v in other.funding_versions("R", community))
            acknowledged.append(("funding", community, version))
            if i < 3:
                assert other.add_disbursement(payment(community)) is Outcome.CREATED
                acknowledged.append(("paid", community, 1))

    def follow():
        seen: list[tuple] = []
        cursors = {"funding": 0, "paid": 0}
        while True:
            finished = done.is_set()
            before = list(acknowledged)  # acknowledged before this read
            records, cursors["funding"] = reader.funding_changes("R", cursors["funding"])
            seen += [("funding", r["community_id"], r["version"]) for r in records]
            paid, cursors["paid"] = reader.disbursement_changes("R", cursors["paid"])
            seen += [("paid", d["community_id"], d["tranche"]) for d in paid]
            assert set(before) <= set(seen)
            if finished:
                return seen

    with ThreadPoolExecutor(max_workers=len(writers) + 1) as pool:
        following = pool.submit(follow)
        list(pool.map(write, enumerate(writers)))
        done.set()
        seen = following.result()
    assert len(seen) == len(set(seen)) == 48 and set(seen) == set(acknowledged)
    for other in (*writers, reader):
        other.close()


def test_sqlite_funding_stored_before_seq_is_numbered_at_init(tmp_path):
    """A file whose funding versions and disbursements have no seq: init numbers them in insertion
    order, the feeds return them first and what is written after them next."""
    import json
    import sqlite3

    from scoring_service.store import open_store

    path = str(tmp_path / "old.sqlite3")
    with sqlite3.connect(path) as conn:
        conn.executescript("""
            CREATE TABLE funding_versions (round_id TEXT NOT NULL, community_id TEXT NOT NULL,
                version INTEGER NOT NULL, content_hash TEXT NOT NULL, body TEXT NOT NULL,
                PRIMARY KEY (round_id, community_id, version));
            CREATE TABLE disbursements (disbursement_id TEXT PRIMARY KEY, round_id TEXT NOT NULL,
                community_id TEXT NOT NULL, tranche INTEGER NOT NULL, content_hash TEXT NOT NULL,
                body TEXT NOT NULL, UNIQUE (round_id, community_id, tranche));
        """)
        for record in (funding("c2"), funding("c1")):
            conn.execute("INSERT INTO funding_versions VALUES ('R', ?, 1, ?, ?)",
                         (record["community_id"], record["content_hash"], json.dumps({**record, "version": 1})))
        d = payment("c2")
        conn.execute("INSERT INTO disbursements VALUES (?, 'R', 'c2', 1, ?, ?)",
                     (d["disbursement_id"], d["content_hash"], json.dumps(d)))
    store = open_store(path)
    try:
        store.init()
        store.init()
        open_round(store)
        records, cursor = store.funding_changes("R")
        assert [r["community_id"] for r in records] == ["c2", "c1"]
        paid, paid_cursor = store.disbursement_changes("R")
        assert [d["community_id"] for d in paid] == ["c2"]
        store.put_funding(funding("c3"))
        assert store.add_disbursement(payment("c2")) is Outcome.DUPLICATE
        store.add_disbursement(payment("c3"))
        records, later = store.funding_changes("R", cursor)
        assert [r["community_id"] for r in records] == ["c3"] and later > cursor
        assert [d["community_id"] for d in store.disbursement_changes("R", paid_cursor)[0]] == ["c3"]
    finally:
        store.close()


@pytest.mark.parametrize("database_url", [pytest.param("mongo", marks=pytest.mark.mongo)], indirect=True)
def test_mongo_funding_stored_before_seq_is_read_and_written_after(store):
    """Funding versions and disbursements stored with the first _id scheme ("<round>|<community>|<n>",
    no seq): the feeds' first read returns them, a new version takes the next number, a paid tranche
    stays paid, and the feeds follow what is written after."""
    open_round(store)
    store.init()  # the indexes again, over the old documents
    store.db.funding_versions.insert_one({**funding(), "version": 1, "_id": "R|c1|1"})
    store.db.disbursements.insert_one({**payment(), "_id": "R|c1|1"})
    records, cursor = store.funding_changes("R")
    assert [(r["community_id"], r["version"]) for r in records] == [("c1", 1)] and cursor == 0
    assert "_id" not in records[0] and "seq" not in records[0]
    paid, paid_cursor = store.disbursement_changes("R")
    assert [(d["community_id"], d["tranche"]) for d in paid] == [("c1", 1)] and paid_cursor == 0
    assert store.add_disbursement(payment(did="another")) is Outcome.ALREADY_PAID
    assert store.put_funding(funding(funds=5)) is Outcome.CREATED
    assert store.db.funding_versions.find_one({"_id": "R#1"})["version"] == 2
    records, cursor = store.funding_changes("R", cursor)
    assert [(r["community_id"], r["version"]) for r in records] == [("c1", 2)] and cursor == 1
    assert store.funding_versions("R", "c1")[-1] == records[0]


@pytest.mark.parametrize("database_url", [pytest.param("mongo", marks=pytest.mark.mongo)], indirect=True)
def test_mongo_change_feed_from_every_cursor(store, monkeypatch):
    """With three look-ups before a range query: the feed from every cursor, whole and in chunks; a
    writer that has seen no seq (a new process), or one not in the database, numbers without a gap."""
    from scoring_service.store import mongo

    monkeypatch.setattr(mongo, "MILESTONE_PROBES", 3)
    open_round(store)
    for i in range(1, 31):
        assert store.add_milestone_version(milestone(community=f"c{i:02d}")) is Outcome.CREATED
        if i == 12:
            store._feed_seq.clear()  # as a new process
        if i == 20:
            store._feed_seq[("milestone_versions", "R")] = 10_000  # not in this database
    assert sorted(d["seq"] for d in store.db.milestone_versions.find({"round_id": "R"})) == list(range(1, 31))
    for cursor in range(0, 31):
        records, last = store.milestone_changes("R", cursor)
        assert [r["community_id"] for r in records] == [f"c{i:02d}" for i in range(cursor + 1, 31)] and last == 30
        chunks, at = [], cursor
        while True:
            records, at = store.milestone_changes("R", at, limit=4)
            chunks += records
            if len(records) < 4:
                break
        assert [r["community_id"] for r in chunks] == [f"c{i:02d}" for i in range(cursor + 1, 31)] and at == 30


# -- rectification (SPEC §13) ----------------------------------------------------------------------------

def answer(rid, item="i1:roads.surface", round_id="R", note="已修复", community="c1"):
    from scoring_service.services.rectification import response_hash

    record = {"response_id": rid, "round_id": round_id, "item_id": item, "inspection_id": item.split(":")[0],
              "check_code": item.split(":")[1], "community_id": community, "district_id": "d1",
              "fixed_on": "2018-09-15", "note": note, "evidence": ["a" * 64], "key_id": "k", "recorded_at": AT}
    record["content_hash"] = response_hash(record)
    return record


def test_rectification_responses_replays_and_their_feed(store):
    open_round(store)
    assert store.rectification_response_changes("R") == ([], 0)
    before, unscoped = store.generation("rectifications"), store.generation()
    assert store.add_rectification_response(answer("r1")) is Outcome.CREATED
    after = store.generation("rectifications")
    assert after != before and store.generation() == unscoped  # no score depends on a response
    assert store.add_rectification_response(answer("r1")) is Outcome.DUPLICATE
    assert store.add_rectification_response(answer("r1", note="另一个")) is Outcome.CONFLICT
    assert store.add_rectification_response(answer("r1", round_id="other")) is Outcome.CONFLICT
    assert store.generation("rectifications") == after  # replays and refusals write nothing
    assert store.add_rectification_response(answer("r2", "i2:water.drainage")) is Outcome.CREATED
    assert store.add_rectification_response(answer("r3", round_id="other")) is Outcome.CREATED
    assert store.add_rectification_response(answer("r4")) is Outcome.CREATED
    assert store.get_rectification_response("r1") == answer("r1")  # no seq, no _id
    assert store.get_rectification_response("nope") is None
    assert [r["response_id"] for r in store.rectification_responses("R")] == ["r1", "r2", "r4"]
    assert [r["response_id"] for r in store.rectification_responses("R", "i1:roads.surface")] == ["r1", "r4"]
    records, cursor = store.rectification_response_changes("R")
    assert records == store.rectification_responses("R")
    assert store.rectification_response_changes("R", cursor) == ([], cursor)
    assert store.add_rectification_response(answer("r5")) is Outcome.CREATED
    records, later = store.rectification_response_changes("R", cursor)
    assert [r["response_id"] for r in records] == ["r5"] and store.rectification_response_changes("R", later) == (
        [], later)
    assert [r["response_id"] for r in store.rectification_response_changes("other")[0]] == ["r3"]


def test_rectification_response_feed_in_chunks(store):
    open_round(store)
    for i in range(30):
        assert store.add_rectification_response(answer(f"r{i:02d}", item=f"i{i % 4}:roads.surface")) is \
            Outcome.CREATED
    chunks, cursor = [], None
    while True:
        records, cursor = store.rectification_response_changes("R", cursor, limit=7)
        assert len(records) <= 7
        chunks += records
        if len(records) < 7:
            break
    assert [r["response_id"] for r in chunks] == [f"r{i:02d}" for i in range(30)]
    assert store.rectification_response_changes("R", cursor) == ([], cursor)


def test_rectification_responses_concurrent_writers_and_a_reader(database_url, store):
    """Four writers (each its own connection) and a reader following the feed: every response acknowledged
    before a read is returned by it or an earlier one, none twice; a replay racing its first write is a
    DUPLICATE, never a second response."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from scoring_service.store import open_store

    writers = [open_store(database_url) for _ in range(4)]
    reader = open_store(database_url)
    open_round(store)
    acknowledged: list[str] = []
    outcomes: list[Outcome] = []
    done = threading.Event()
    barrier = threading.Barrier(len(writers))

    def write(pair):
        w, other = pair
        barrier.wait()
        for i in range(8):
            outcome = other.add_rectification_response(answer(f"w{w}-{i}", item=f"i{w}:roads.surface"))
            assert outcome is Outcome.CREATED
            acknowledged.append(f"w{w}-{i}")
            outcomes.append(other.add_rectification_response(answer("shared")))  # all four race on one id

    def follow():
        seen: list[str] = []
        cursor = 0
        while True:
            finished = done.is_set()
            before = list(acknowledged)
            records, cursor = reader.rectification_response_changes("R", cursor)
            seen += [r["response_id"] for r in records]
            assert set(before) <= set(seen)
            if finished:
                return seen

    with ThreadPoolExecutor(max_workers=len(writers) + 1) as pool:
        following = pool.submit(follow)
        list(pool.map(write, enumerate(writers)))
        done.set()
        seen = following.result()
    assert outcomes.count(Outcome.CREATED) == 1 and set(outcomes) == {Outcome.CREATED, Outcome.DUPLICATE}
    assert len(seen) == len(set(seen)) == 33 and set(seen) == {*acknowledged, "shared"}
    for other in (*writers, reader):
        other.close()


def test_inspection_version_numbers_and_histories(store):
    open_round(store)
    open_round(store, "other")
    for iid, round_id, community in (("i1", "R", "c1"), ("i2", "R", "c2"), ("i3", "other", "c1")):
        record = {"inspection_id": iid, "round_id": round_id, "community_id": community, "agency_id": "a",
                  "versions": [{**version(f"{iid}-v1", checks={"roads.surface": 2}), "community_id": community}]}
        assert store.add_inspection(record) is Outcome.CREATED
    assert store.amend_inspection("R", "i1", version("i1-v2", amend_reason="复验", checks={"roads.surface": 5},
                                                     check_evidence={"roads.surface": ["b" * 64]}),
                                  None) is Outcome.CREATED
    assert store.inspection_version_numbers("R") == {"i1": 2, "i2": 1}
    assert store.inspection_version_numbers("nope") == {}
    every = store.inspection_histories("R")
    assert [(v["inspection_id"], v["version"], v["community_id"], v["agency_id"], v["content_hash"]) for v in every] \
        == [("i1", 1, "c1", "a", "i1-v1"), ("i1", 2, "c1", "a", "i1-v2"), ("i2", 1, "c2", "a", "i2-v1")]
    assert every[1]["checks"] == {"roads.surface": 5} and every[1]["amend_reason"] == "复验"
    assert every[1]["check_evidence"] == {"roads.surface": ["b" * 64]}
    assert [(v["inspection_id"], v["version"]) for v in store.inspection_histories("R", ["i2", "i3", "nope"])] == [
        ("i2", 1)]  # i3 is another round's
    assert store.inspection_histories("R", []) == []
