"""The single-survey POST path (issue 18 item 3): what a write reads of the responses table is found by
index search on its own keys, never by walking the round's responses (the household check walked them:
50 ms a POST in a round of 36,000 responses)."""

from __future__ import annotations

import re
import time

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
    # three households of one community: each searched in the household index, not a walk of the
    # community's households (household_hash > NULL)
    assert store.add_responses(ROUND, [record(1002 + i, "c0", f"hh-x{i}") for i in range(3)], 4) == [
        Outcome.CREATED] * 3
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
        assert not re.search(r"household_hash>", plan), (sql, plan)


# -- group commit: concurrent survey writes of one process share a transaction and its fsync ----------

def open_store(tmp_path):
    store = SQLiteStore(tmp_path / "g.sqlite3")
    store.init()
    assert store.create_round({"round_id": ROUND, "year": 2030, "rubric_id": "x", "status": "open", "digest": "d",
                               "created_at": "2030-01-01T00:00:00.000000Z"}) is Outcome.CREATED
    return store


def test_concurrent_writes_share_commits_and_end_as_if_written_one_by_one(tmp_path, monkeypatch):
    import threading

    store = open_store(tmp_path)
    groups: list[int] = []
    commit = store._commit_group
    first = threading.Event()

    def slow_commit(take):  # the first commit takes long enough for every other writer to queue
        def counted():
            group = take()
            groups.append(len(group))
            if not first.is_set():
                first.set()
                time.sleep(0.3)
            return group

        commit(counted)

    monkeypatch.setattr(store, "_commit_group", slow_commit)
    # 24 writers: 20 new responses, 2 households twice (in two communities: one refused, one not), one id twice
    records = [record(i, "c1") for i in range(20)]
    records += [record(100, "c1", "hh-a"), record(101, "c1", "hh-a"), record(102, "c2", "hh-a")]
    records += [record(5, "c1")]  # a replay of response 5
    outcomes: dict[int, Outcome] = {}

    def write(i):
        if i:
            first.wait()
        outcomes[i] = store.add_responses(ROUND, [records[i]], 4)[0]

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(records))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(outcomes) == len(records)
    assert groups[0] == 1 and max(groups) > 1 and sum(groups) == len(records) and len(groups) < len(records)
    assert [outcomes[i] for i in range(20)] == [Outcome.CREATED] * 20
    assert sorted(outcomes[i].value for i in (20, 21)) == ["created", "household_already_responded"]
    assert outcomes[22] is Outcome.CREATED and outcomes[23] is Outcome.DUPLICATE
    assert store.count_responses(ROUND) == 22
    assert store.recount(ROUND, 4, fix=False) == []


def test_a_writer_waiting_for_the_write_lock_starts_as_soon_as_it_is_released(tmp_path):
    """Writers of separate connections (another gunicorn worker's, another thread's) queue for the write
    lock on the lock file and the next starts when it is released. Before, SQLite's busy handler polled
    the database's lock with growing sleeps (…, 50, 50, 100 ms): a writer that had waited 240 ms slept on
    until 328 ms, the lock free for the last 85 ms or so, and a two-worker server's survey writers sat out
    the other worker's commits."""
    import threading

    store = open_store(tmp_path)
    other = SQLiteStore(store.path)  # another writer with its own connection, as another worker's
    holding, waiting = threading.Event(), threading.Event()
    times: dict[str, float] = {}

    def hold():
        with store._write():
            holding.set()
            assert waiting.wait(5)
            time.sleep(0.24)
        times["released"] = time.perf_counter()

    def wait():
        assert holding.wait(5)
        waiting.set()
        with other._write():
            times["started"] = time.perf_counter()

    threads = [threading.Thread(target=hold), threading.Thread(target=wait)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    other.close()
    store.close()
    # the busy handler's sleeps started it 88 ms after the release; 60 ms leaves a loaded machine room to
    # schedule the thread
    assert times["started"] - times["released"] < 0.06, times


def test_a_write_whose_sql_fails_is_undone_alone_and_raised_in_its_thread(tmp_path):
    import sqlite3

    import pytest

    from scoring_service.store.sqlite import _Ticket

    store = open_store(tmp_path)

    def broken(conn):
        store._add_responses_in(conn, ROUND, [record(2)], 4, None, None)  # written, then undone
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    group = [_Ticket(lambda conn: store._add_responses_in(conn, ROUND, [record(1)], 4, None, None)),
             _Ticket(broken),
             _Ticket(lambda conn: store._add_responses_in(conn, ROUND, [record(3)], 4, None, None))]
    store._commit_group(lambda: group)
    assert group[0].value == [Outcome.CREATED] and group[2].value == [Outcome.CREATED]
    assert isinstance(group[1].error, sqlite3.OperationalError)
    assert store.get_response(ROUND, "resp-00002") is None and store.count_responses(ROUND) == 2
    assert store.recount(ROUND, 4, fix=False) == []

    def bug(conn):
        raise RuntimeError("a bug")

    # any other failure leaves the transaction: nothing of the group is committed, every write raises it
    group = [_Ticket(lambda conn: store._add_responses_in(conn, ROUND, [record(4)], 4, None, None)), _Ticket(bug)]
    with pytest.raises(RuntimeError):
        store._commit_group(lambda: group)
    assert all(isinstance(t.error, RuntimeError) and t.value is None for t in group)
    assert store.get_response(ROUND, "resp-00004") is None
    # a lone write (no savepoint): its failing SQL rolls the transaction back and is raised; nothing changes,
    # not even the generation tokens, and the next write goes on
    generations = store.generation(), store.generation("surveys")
    with pytest.raises(sqlite3.OperationalError):
        store._group_commit().submit(store._commit_group, broken)
    assert store.get_response(ROUND, "resp-00002") is None and store.count_responses(ROUND) == 2
    assert (store.generation(), store.generation("surveys")) == generations
    assert store.add_responses(ROUND, [record(5)], 4) == [Outcome.CREATED]
    assert store.recount(ROUND, 4, fix=False) == []


# -- a commit group's survey writes run as one batch under the write lock ---------------------------

def survey_ticket(store, records: list[dict], audit=None, quota=None):
    """A group-commit ticket as ``SQLiteStore.add_responses`` submits it."""
    from scoring_service.store.sqlite import _stored_parts, _Ticket

    prepared = [_stored_parts(r) for r in records]
    return _Ticket(lambda conn: store._add_responses_in(conn, ROUND, records, 4, audit, quota, prepared),
                   batch=(ROUND, records, 4, audit, quota, prepared))


def audit_of(name: str):
    from scoring_service.store.base import AuditEvent

    return AuditEvent(lambda outcomes: {"at": "2030-06-01T08:00:00.000000Z", "key_id": name, "round_id": ROUND,
                                        "entity_id": name, "outcomes": [o.value for o in outcomes]})


def test_a_groups_survey_writes_run_as_one_batch_with_the_outcomes_and_audit_of_one_by_one(tmp_path):
    """One round gate, one look-up of ids for the whole group (no savepoint per write); each
    write gets its own outcomes and audit event, as if written one by one in order."""
    store = open_store(tmp_path)
    assert store.add_responses(ROUND, [record(1, "c1", "hh-old")], 4) == [Outcome.CREATED]
    group = [survey_ticket(store, [record(2, "c1", "hh-x")], audit_of("w1")),
             survey_ticket(store, [record(3, "c1", "hh-x")], audit_of("w2")),  # household taken by write 1
             survey_ticket(store, [record(4, "c2", "hh-x"), record(5, "c1", "hh-old")], audit_of("w3")),
             survey_ticket(store, [record(6, "c1")])]  # no audit event
    statements: list[str] = []
    store._conn().set_trace_callback(statements.append)
    store._commit_group(lambda: group)
    store._conn().set_trace_callback(None)
    assert [t.error for t in group] == [None] * 4
    assert [t.value for t in group] == [[Outcome.CREATED], [Outcome.HOUSEHOLD], [Outcome.CREATED, Outcome.HOUSEHOLD],
                                        [Outcome.CREATED]]
    assert sum("FROM responses WHERE response_id IN" in s for s in statements) == 1
    assert not any("group_write" in s for s in statements)
    assert sum("FROM rounds" in s for s in statements) == 1
    assert [(e["key_id"], e["outcomes"]) for e in store.list_audit({}, 10)] == [
        ("w1", ["created"]), ("w2", ["household_already_responded"]),
        ("w3", ["created", "household_already_responded"])]
    assert store.count_responses(ROUND) == 4 and store.recount(ROUND, 4, fix=False) == []


def test_writes_that_cannot_be_merged_or_whose_batch_fails_are_written_one_by_one(tmp_path, monkeypatch):
    import sqlite3

    store = open_store(tmp_path)
    # an id in two writes of the group: one by one (the second is a replay of the first)
    group = [survey_ticket(store, [record(1)], audit_of("w1")), survey_ticket(store, [record(1)], audit_of("w2"))]
    store._commit_group(lambda: group)
    assert [t.value for t in group] == [[Outcome.CREATED], [Outcome.DUPLICATE]]
    # the merged batch's SQL fails: undone whole, then each write alone in its savepoint
    write = store._add_responses_in

    def failing_when_merged(conn, *args, audits=None, **kwargs):
        if audits is not None:
            write(conn, *args, audits=audits, **kwargs)  # written, then undone
            raise sqlite3.OperationalError("disk I/O error")
        return write(conn, *args, **kwargs)

    monkeypatch.setattr(store, "_add_responses_in", failing_when_merged)
    group = [survey_ticket(store, [record(2)], audit_of("w3")), survey_ticket(store, [record(3)], audit_of("w4"))]
    store._commit_group(lambda: group)
    assert [t.value for t in group] == [[Outcome.CREATED], [Outcome.CREATED]] and group[1].error is None
    assert store.count_responses(ROUND) == 3 and store.recount(ROUND, 4, fix=False) == []
    assert [e["key_id"] for e in store.list_audit({}, 10)] == ["w1", "w2", "w3", "w4"]


# -- Flask asks whether a hook or view is a coroutine function once per function ------------------

def test_flask_asks_once_whether_each_hook_and_view_is_async_and_still_runs_an_async_one(client, keys, world,
                                                                                       monkeypatch):
    """ServiceFlask.ensure_sync remembers plain functions (Flask asked inspect.iscoroutinefunction of
    every hook and view on every request, 19 times per survey POST); an ``async def`` hook still runs."""
    from .conftest import survey

    import flask.app

    app = client.application
    url = f"/api/v1/rounds/{world['round_id']}/surveys"
    assert client.post(url, json=survey(), headers=keys.header("admin")).status_code == 201
    asked: list = []
    real = flask.app.iscoroutinefunction
    monkeypatch.setattr(flask.app, "iscoroutinefunction", lambda func: asked.append(func) or real(func))
    r = client.post(url, json=survey(), headers=keys.header("admin"))
    assert r.status_code == 201 and asked == []
    # a function made anew (here an async one) is asked about, and an async one goes to async_to_sync
    ran: list = []

    async def hook():
        ran.append(True)

    converted: list = []
    monkeypatch.setattr(app, "async_to_sync", lambda func: converted.append(func) or (lambda *a, **k: ran.append(1)))
    app.ensure_sync(hook)()
    assert converted == [hook] and ran and asked == [hook]
    assert app.ensure_sync(hook) is not hook  # never remembered as plain


def test_writes_queued_while_the_leader_waits_for_the_write_lock_join_its_commit(tmp_path, monkeypatch):
    """The leader takes its group once it holds the write lock: the writes of its worker that queued while
    another worker committed go into its commit (one fsync), not into one more after it."""
    import threading

    store = open_store(tmp_path)
    other = SQLiteStore(store.path)  # another worker's writer
    groups: list[int] = []
    commit = store._commit_group

    def counting_commit(take):
        def counted():
            group = take()
            groups.append(len(group))
            return group

        commit(counted)

    monkeypatch.setattr(store, "_commit_group", counting_commit)
    outcomes: dict[int, list] = {}

    def write(i):
        outcomes[i] = store.add_responses(ROUND, [record(i)], 4)

    queue = store._group_commit()._queue
    with other._write():  # the other worker commits meanwhile
        threads = [threading.Thread(target=write, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 5
        while len(queue) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    for thread in threads:
        thread.join(10)
    other.close()
    assert groups == [3]
    assert outcomes == {i: [Outcome.CREATED] for i in range(3)} and store.count_responses(ROUND) == 3


def test_a_shallow_body_skips_the_depth_walk_and_a_deep_one_is_still_refused(client, keys, world, monkeypatch):
    """A body with no more '{' and '[' bytes than the depth bound cannot be nested deeper: the walk of its
    parsed JSON is skipped (a single survey has two); a deeper body is still walked and refused."""
    from .conftest import survey

    import scoring_service.api as api

    walked: list = []
    real = api.json_depth
    monkeypatch.setattr(api, "json_depth", lambda body: walked.append(body) or real(body))
    url = f"/api/v1/rounds/{world['round_id']}/surveys"
    assert client.post(url, json=survey(), headers=keys.header("admin")).status_code == 201
    assert walked == []
    deep = "{\"responses\": " + "[" * 40 + "]" * 40 + "}"
    r = client.post(f"{url}/batch", data=deep, headers={**keys.header("admin"), "Content-Type": "application/json"})
    assert r.status_code == 400 and "levels deep" in r.get_json()["message"] and len(walked) == 1


def test_a_commit_that_fails_before_taking_its_group_fails_every_queued_write(tmp_path, monkeypatch):
    """Taking the write lock or BEGIN fails: the leader and the writes queued behind it all raise it, none
    is left waiting or answered without an outcome."""
    import threading

    import pytest

    from scoring_service.store.sqlite import GroupCommit

    commits = GroupCommit()
    entered, release = threading.Event(), threading.Event()

    def failing(take):
        entered.set()
        assert release.wait(5)
        raise OSError("lock file unavailable")

    errors: list = []

    def follower():
        try:
            commits.submit(failing, lambda conn: "written")
        except OSError as exc:
            errors.append(exc)

    leader = threading.Thread(target=follower)
    leader.start()
    assert entered.wait(5)
    other = threading.Thread(target=follower)
    other.start()
    deadline = time.monotonic() + 5
    while len(commits._queue) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    leader.join(5)
    other.join(5)
    assert len(errors) == 2 and commits._queue == [] and not commits._busy
    with pytest.raises(RuntimeError):  # a commit that never takes its group does not answer silently
        commits.submit(lambda take: None, lambda conn: "written")
    assert commits._queue == [] and not commits._busy
