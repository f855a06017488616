"""The single-survey POST path (issue 18 item 3): what a write reads of the responses table is found by
index search on its own keys, never by walking the round's responses (the household check walked them:
50 ms a POST in a round of 36,000 responses)."""

from __future__ import annotations

import re

from scoring_service.store.base import Outcome
from scoring_service.store.sqlite import SQLiteStore

ROUND = "r"


def record(i: int, community: str = "c1", household: str | None = None, **fields) -> dict:
    answers = {"a": 1 + i % 5, "b": 1 + (i // 5) % 5, "c": 3}
    return {"response_id": f"resp-{i:05d}", "round_id": ROUND, "community_id": community,
            "respondent_type": "resident", "household_hash": household, "content_hash": f"h{i}",
            "levels": [answers["a"], answers["b"], answers["c"], 0, 4], "answers": answers, "overall": 4,
            "comment": None, "key_id": "kiosk", "received_at": f"2030-06-01T08:{i % 60:02d}:00.000000Z",
            "submitted_at": "2030-06-01T08:00:00.000000Z", **fields}


def test_a_survey_write_searches_the_responses_table_by_index_on_its_own_keys(tmp_path):
    store = SQLiteStore(tmp_path / "s.sqlite3")
    store.init()
    assert store.create_round({"round_id": ROUND, "year": 2030, "rubric_id": "x", "status": "open", "digest": "d",
                               "created_at": "2030-01-01T00:00:00.000000Z"}) is Outcome.CREATED
    store.add_responses(ROUND, [record(i, f"c{i % 3}", f"hh-{i}") for i in range(600)], 4)
    statements: list[str] = []
    conn = store._conn()
    conn.set_trace_callback(statements.append)
    outcomes = store.add_responses(ROUND, [record(1000, "c1", "hh-new"), record(1001, "c2", "hh-8")], 4)
    store.void_response(ROUND, "resp-00004", "x", "admin", "2030-06-02T00:00:00.000000Z", 4)
    conn.set_trace_callback(None)
    assert outcomes == [Outcome.CREATED, Outcome.HOUSEHOLD]  # hh-8 answered already in c2 (8 % 3)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "FROM responses" in s]
    assert len(reads) >= 4
    for sql in reads:
        plan = " / ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql))
        assert not re.search(r"\bSCAN responses\b", plan), (sql, plan)
        # a search on the round (and community) alone walks every response there
        assert not re.search(r"USING INDEX \w+ \(round_id=\?( AND community_id=\?)?\)", plan), (sql, plan)
