"""Anomaly statistics kept at write time (issue 18 item 2): the report answered from them equals the
report computed from every raw response, on both stores, through writes, replays and voids; recount
checks and repairs them; files and databases from before them get them at start; on SQLite the report
reads through indexes only, never the round's responses one by one."""

from __future__ import annotations

import re
import sqlite3
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from scoring_service.domain.timeutil import to_stored
from scoring_service.services.evidence import anomalies, candidate_flags, response_flags
from scoring_service.store.base import AnomalyFacts, Outcome

from .conftest import survey
from .test_evidence import R, evidence_world  # noqa: F401  (fixture)

ROUND = "anomalies"
N_ITEMS = 4
ADMINS = {"key-admin"}
KEYS = ["key-kiosk-1", "key-kiosk-2", "key-admin", None]
START = datetime(2030, 6, 1, 8, 0, tzinfo=timezone.utc)
#: few contents, so that identical responses meet; the first is straight-lined
CONTENTS = [
    ({"a": 5, "b": 5, "c": 5, "d": 5}, 5, None),
    ({"a": 3, "b": 2, "c": 4}, 2, "同一个人？"),
    ({"a": 3, "b": 2, "c": 4}, 2, None),
    ({"a": 1, "b": 1}, 1, None),
]


def new_round(store) -> None:
    assert store.create_round({"round_id": ROUND, "year": 2030, "rubric_id": "x", "status": "open",
                               "digest": "d", "created_at": "2030-01-01T00:00:00.000000Z"}) is Outcome.CREATED


def record(rng, i: int) -> dict:
    """A response of one of two communities, received within four minutes by one of few keys and
    devices: bursts, duplicates, straight-lining and repeated devices all happen."""
    if rng.random() < 0.5:
        answers, overall, comment = CONTENTS[int(rng.integers(0, len(CONTENTS)))]
    else:
        answers, overall, comment = {c: int(rng.integers(1, 6)) for c in "abcd"[:int(rng.integers(1, 5))]}, \
            int(rng.integers(1, 6)), None
    received = START + timedelta(seconds=int(rng.integers(0, 240)), microseconds=int(rng.integers(0, 10**6)))
    if rng.random() < 0.3:  # days earlier, alone: a group's first response is often outside what is flagged
        received -= timedelta(days=int(rng.integers(1, 30)), minutes=int(rng.integers(0, 600)))
    return {"response_id": f"r{i:04d}-{uuid.UUID(int=int(rng.integers(0, 2**62))).hex[:8]}", "round_id": ROUND,
            "community_id": f"c{int(rng.integers(1, 3))}", "respondent_type": "resident", "household_hash": None,
            "content_hash": f"h{i}", "levels": [answers.get(c, 0) for c in "abcd"] + [overall],
            "answers": dict(answers), "overall": overall, "comment": comment,
            "key_id": KEYS[int(rng.integers(0, len(KEYS)))], "device_id": [None, None, "dev-1", "dev-2"][i % 4],
            "received_at": to_stored(received), "submitted_at": to_stored(received)}


def raw_flags(store) -> dict:
    return response_flags([r for r in store.iter_responses(ROUND) if not r["voided_at"]], ADMINS)


def anomaly_differences(store) -> list[dict]:
    return [d for d in store.recount(ROUND, N_ITEMS, fix=False) if d.get("statistic") == "anomalies"]


@pytest.mark.parametrize("seed", [1, 2])
def test_report_from_kept_statistics_equals_report_from_raw_responses(store, seed):
    rng = np.random.default_rng(seed)
    new_round(store)
    written: list[dict] = []
    seen = {"straight_lining": 0, "bursts": 0, "duplicates": 0, "repeated_devices": 0}
    steps = 14 if seed == 1 else 8
    for step in range(steps):
        batch = [record(rng, len(written) + j) for j in range(int(rng.choice([1, 1, 5, 40])))]
        if written and step % 3 == 2:  # replays of stored responses take no new place
            batch += [dict(written[int(k)]) for k in rng.integers(0, len(written), 3)]
        outcomes = store.add_responses(ROUND, batch, N_ITEMS)
        written += [r for r, o in zip(batch, outcomes) if o is Outcome.CREATED]
        for k in rng.choice(len(written), min(len(written), int(rng.integers(0, 4))), replace=False):
            store.void_response(ROUND, written[int(k)]["response_id"], "test", "key-admin",
                                "2030-06-02T00:00:00.000000Z", N_ITEMS)
        kept = candidate_flags(store.anomaly_candidates(ROUND, ADMINS))
        assert kept == raw_flags(store), f"step {step}"
        assert anomaly_differences(store) == []
        for name in seen:
            seen[name] += len(kept[name])
    assert all(seen.values()), seen  # every kind of flag was compared while present


def test_voiding_what_made_a_flag_removes_it(store):
    new_round(store)
    burst = [{**record(np.random.default_rng(i), i), "key_id": "key-kiosk-1", "community_id": "c1",
              "received_at": to_stored(START + timedelta(seconds=5 * i)), "device_id": None} for i in range(5)]
    assert store.add_responses(ROUND, burst, N_ITEMS) == [Outcome.CREATED] * 5
    flags = candidate_flags(store.anomaly_candidates(ROUND, ADMINS))
    assert [b["responses"] for b in flags["bursts"]] == [sorted(r["response_id"] for r in burst)]
    assert store.void_response(ROUND, burst[2]["response_id"], "x", "key-admin", "2030-06-02T00:00:00.000000Z",
                               N_ITEMS) is Outcome.CHANGED
    assert candidate_flags(store.anomaly_candidates(ROUND, ADMINS))["bursts"] == [] == raw_flags(store)["bursts"]
    # the same burst sent by an administrator is not one
    assert candidate_flags(store.anomaly_candidates(ROUND, {"key-kiosk-1"}))["bursts"] == []


def test_recount_reports_and_repairs_anomaly_statistics(store):
    from scoring_service.store.sqlite import SQLiteStore

    rng = np.random.default_rng(5)
    new_round(store)
    records = [{**record(rng, i), "key_id": "key-kiosk-1", "community_id": "c1",
                "received_at": to_stored(START + timedelta(seconds=i))} for i in range(8)]
    store.add_responses(ROUND, records, N_ITEMS)
    before = candidate_flags(store.anomaly_candidates(ROUND, ADMINS))
    assert before["bursts"]
    if isinstance(store, SQLiteStore):
        conn = store._conn()
        conn.execute("DELETE FROM anomaly_marks")
        conn.execute("UPDATE responses SET straight_level = NULL, received_minute = 7")
    else:
        store.db.responses.update_many({}, {"$unset": {"marks": "", "straight": ""}})
        store.db.meta.replace_one({"_id": "generation:surveys"}, {"token": "tampered"})
    assert candidate_flags(store.anomaly_candidates(ROUND, ADMINS)) != before
    differences = anomaly_differences(store)
    assert differences and {d["response_id"] for d in differences if "response_id" in d} == {
        r["response_id"] for r in records}
    assert store.recount(ROUND, N_ITEMS, fix=True)
    assert anomaly_differences(store) == []
    if not isinstance(store, SQLiteStore):
        store.db.meta.replace_one({"_id": "generation:surveys"}, {"token": "repaired"})
    assert candidate_flags(store.anomaly_candidates(ROUND, ADMINS)) == before == raw_flags(store)


def test_responses_stored_before_the_statistics_get_them_at_start(store, database_url):
    from scoring_service.store import open_store
    from scoring_service.store.sqlite import SQLiteStore

    rng = np.random.default_rng(9)
    new_round(store)
    store.add_responses(ROUND, [record(rng, i) for i in range(150)], N_ITEMS)
    expected = raw_flags(store)
    assert expected["bursts"] and expected["straight_lining"]
    if isinstance(store, SQLiteStore):  # a file from before: no facts, no marks, no marker
        conn = store._conn()
        conn.execute("UPDATE responses SET key_id = NULL, received_minute = NULL, content_key = NULL,"
                     " content_window = NULL, straight_level = NULL")
        conn.execute("DELETE FROM anomaly_marks")
        conn.execute("DELETE FROM meta WHERE name = 'anomaly_facts'")
    else:
        store.db.responses.update_many({}, {"$unset": {"marks": "", "straight": "", "content_key": ""}})
        store.db.meta.delete_one({"_id": "anomaly_facts"})
    restarted = open_store(database_url)
    restarted.init()
    try:
        assert candidate_flags(restarted.anomaly_candidates(ROUND, ADMINS)) == expected
        assert anomaly_differences(restarted) == []
    finally:
        restarted.close()


def test_sqlite_report_reads_through_indexes_only(tmp_path):
    """Every statement of the report is an index search: none scans the round's responses."""
    from scoring_service.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "s.sqlite3")
    store.init()
    new_round(store)
    rng = np.random.default_rng(3)
    store.add_responses(ROUND, [record(rng, i) for i in range(300)], N_ITEMS)
    statements: list[str] = []
    conn = store._conn()
    conn.set_trace_callback(statements.append)
    flags = candidate_flags(store.anomaly_candidates(ROUND, ADMINS))
    conn.set_trace_callback(None)
    assert flags == raw_flags(store) and flags["bursts"] and flags["duplicates"]
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) > 3
    for sql in selects:
        plan = " / ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql))
        assert not re.search(r"\bSCAN (responses|anomaly_marks)\b", plan), (sql, plan)
        if "FROM responses" in sql:
            assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (sql, plan)


def test_sqlite_batch_asks_about_its_marks_in_a_few_index_searches(tmp_path):
    """A batch of 1000 responses checks its 2,000-odd marks in a few grouped statements, each an index
    search (one count query per mark before: 1,573 responses/s for 8 concurrent batches against 3,337
    alone), and the kept statistics still equal those of the raw responses."""
    from scoring_service.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "s.sqlite3")
    store.init()
    new_round(store)
    rng = np.random.default_rng(8)
    store.add_responses(ROUND, [record(rng, i) for i in range(1000)], N_ITEMS)
    statements: list[str] = []
    conn = store._conn()
    conn.set_trace_callback(statements.append)
    outcomes = store.add_responses(ROUND, [record(rng, i) for i in range(1000, 2000)], N_ITEMS)
    conn.set_trace_callback(None)
    assert outcomes == [Outcome.CREATED] * 1000
    mark_reads = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH"))
                  and ("anomaly_marks" in s or "received_minute" in s or "content_window" in s or "device_id" in s)]
    assert 3 <= len(mark_reads) <= 20, len(mark_reads)
    for sql in mark_reads:
        plan = " / ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql))
        assert not re.search(r"\bSCAN (responses|anomaly_marks)\b", plan), (sql[:300], plan)
    assert candidate_flags(store.anomaly_candidates(ROUND, ADMINS)) == raw_flags(store)
    assert anomaly_differences(store) == []
    store.close()


def test_facts_of_a_response():
    base = {"community_id": "c1", "answers": {"a": 4, "b": 4, "c": 4, "d": 4}, "overall": 4, "comment": None,
            "key_id": "k", "received_at": "2030-06-01T08:00:59.999999Z"}
    facts = AnomalyFacts.of(base)
    minute = int(datetime(2030, 6, 1, 8, 0, tzinfo=timezone.utc).timestamp()) // 60
    assert (facts.straight, facts.minute, facts.window) == (4, minute, minute // 10)
    assert facts.marks()[:2] == [f'minute|["k", "c1", {minute - 1}]', f'minute|["k", "c1", {minute}]']
    assert AnomalyFacts.of({**base, "received_at": "2030-06-01T08:01:00.000000Z"}).minute == minute + 1
    # the duplicates rule compares community, answers, overall and comment
    assert AnomalyFacts.of({**base, "comment": "x"}).content != facts.content
    assert AnomalyFacts.of({**base, "answers": {"d": 4, "c": 4, "b": 4, "a": 4}}).content == facts.content
    assert AnomalyFacts.of({**base, "answers": {"a": 4, "b": 4}}).content is None  # fewer than 3 answers
    assert AnomalyFacts.of({**base, "answers": {"a": 4, "b": 4}, "device_id": "d"}).marks()[-1] == \
        'device|["c1", "d"]'


def test_marks_are_the_json_of_their_parts():
    """Marks are written without the JSON encoder for plain parts: the text is still exactly
    ``kind|`` + ``json.dumps(parts, ensure_ascii=False)`` (stored marks stay comparable)."""
    import json

    from scoring_service.store.base import _mark

    odd = [None, 0, -5, 29930685, "k_1", "heping-001", 'a"b', "a\\b", "a\x01b", "中文", "\u2028", "", "tab\t", True, 1.5]
    for first in odd:
        for second in odd:
            assert _mark("minute", first, second, 7) == f"minute|{json.dumps([first, second, 7], ensure_ascii=False)}"


def test_report_through_the_api_equals_the_report_from_raw_responses(app, client, evidence_world, keys):
    """The whole document (agency bias and note too), after field posts, a burst, twins and a void."""
    kiosk = keys.header("kiosk_1")
    liner = survey(answers={"roads": 5, "water": 5, "lighting": 5, "greenery": 5}, overall=5)
    assert client.post(f"{R}/surveys", json=liner, headers=kiosk).status_code == 201
    burst = [survey(answers={"roads": 2 + i % 3, "water": 4}, overall=3) for i in range(6)]
    assert client.post(f"{R}/surveys/batch", json={"responses": burst}, headers=kiosk).get_json()["created"] == 6
    twin = {"answers": {"roads": 3, "water": 2, "lighting": 4}, "overall": 2, "comment": "同一个人？"}
    twins = [survey(**twin), survey(**twin)]
    assert client.post(f"{R}/surveys/batch", json={"responses": twins}, headers=kiosk).get_json()["created"] == 2
    admin = keys.header("admin")

    def both():
        got = client.get(f"{R}/evidence/anomalies", headers=admin)
        assert got.status_code == 200
        ctx = app.extensions["scoring"]
        responses = [r for r in ctx.store.iter_responses("r2018") if not r["voided_at"]]
        admins = {k["key_id"] for k in ctx.store.list_keys() if k["role"] == "admin"}
        with app.app_context():
            expected = {**anomalies(ctx, "r2018"), **response_flags(responses, admins)}
        return got.get_json(), expected

    body, expected = both()
    assert body == expected
    assert body["bursts"] and body["duplicates"] and body["straight_lining"]
    void = client.post(f"{R}/surveys/{twins[0]['response_id']}/void", json={"reason": "重复"}, headers=admin)
    assert void.status_code == 200
    body, expected = both()
    assert body == expected and body["duplicates"] == []


def test_agency_bias_is_kept_across_survey_writes_and_follows_inspection_writes(app, client, evidence_world, keys,
                                                                               monkeypatch):
    from scoring_service.services import evidence
    from scoring_service.services.results import live_results

    from .conftest import full_checks, inspection
    from .test_evidence import TWINS, fraction_of_max

    computed = []
    original = evidence.agency_bias
    monkeypatch.setattr(evidence, "agency_bias", lambda results: computed.append(1) or original(results))
    admin = keys.header("admin")

    def bias():
        r = client.get(f"{R}/evidence/anomalies", headers=admin)
        assert r.status_code == 200
        return r.get_json()["agency_bias"]

    first = bias()
    assert computed == [1]
    assert client.post(f"{R}/surveys", json=survey(), headers=keys.header("kiosk_1")).status_code == 201
    assert bias() == first and computed == [1]  # a survey changes no inspection: the bias is kept
    r = client.post(f"{R}/inspections", json=inspection(TWINS[0], full_checks(TWINS[0], fraction_of_max(0.1))),
                    headers=keys.header("agency_a"))
    assert r.status_code == 201, r.get_json()
    after = bias()
    assert computed == [1, 1] and after != first
    assert after == original(live_results(app.extensions["scoring"], "r2018"))
