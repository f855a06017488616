"""MongoDB store: survey statistics follow what changed (issue 18 item 1).

Each community's responses and voidings are numbered in an insert-only journal and a head per community
keeps its counts (MongoStore._journal). Shown here through pymongo's command monitoring: a ranking after
one write to a community reads that community's head and the heads' numbers, never a response nor the
journal; and exactness through concurrent writers of one community, writers stopped between their
writes (then a replay, another write, closing the round or a recount completes the counts), a round
stored before the journal, and a tampered head.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import pytest
from pymongo import MongoClient
from pymongo.monitoring import CommandListener

from scoring_service.store import Outcome, open_store
from scoring_service.store.base import response_count_rows, tally
from scoring_service.store.mongo import MongoStore

from .conftest import survey
from .test_store_contract import AT, N_ITEMS, open_round, response

MONGO = pytest.mark.parametrize("database_url", [pytest.param("mongo", marks=pytest.mark.mongo)], indirect=True)
STATS = ("survey_heads", "survey_journal")


class Commands(CommandListener):
    """Every command a client sends (name, collection, the command) and the documents each read returned."""

    def __init__(self):
        self.sent: list[tuple[str, str, dict]] = []
        self.returned: dict[str, list[dict]] = defaultdict(list)
        self._collections: dict[int, str] = {}
        self.on = False

    def started(self, event):
        if not self.on:
            return
        name = event.command_name
        collection = event.command.get(name) if name != "getMore" else event.command.get("collection")
        if isinstance(collection, str):
            self.sent.append((name, collection, dict(event.command)))
            self._collections[event.request_id] = collection

    def succeeded(self, event):
        collection = self._collections.pop(event.request_id, None)
        cursor = event.reply.get("cursor") if collection else None
        if cursor:
            self.returned[collection] += list(cursor.get("firstBatch", cursor.get("nextBatch", [])))

    def failed(self, event):
        self._collections.pop(event.request_id, None)

    def on_collection(self, collection: str) -> list[str]:
        return [name for name, c, _ in self.sent if c == collection]


@contextmanager
def monitored(store):
    """The commands ``store`` sends inside the block (its client swapped for a monitored one)."""
    commands = Commands()
    old, old_pid = store._client, store._pid
    store._client = MongoClient(store.url, connect=False, tz_aware=False, event_listeners=[commands])
    store._pid = os.getpid()
    commands.on = True
    try:
        yield commands
    finally:
        commands.on = False
        store._client.close()
        store._client, store._pid = old, old_pid


def raw_counts(store, round_id="R"):
    """Count tables of the standing responses, tallied here from the raw documents."""
    return tally(((d["community_id"], d["respondent_type"], d["levels"]) for d in store.iter_responses(round_id)
                  if d["voided_at"] is None), N_ITEMS)


def survey_differences(store, round_id="R", n_items=N_ITEMS, fix=False):
    """What recount finds in the survey statistics (not the anomaly facts, another statistic)."""
    return [d for d in store.recount(round_id, n_items, fix=fix) if d.get("statistic") != "anomalies"]


def assert_exact(store, round_id="R"):
    """The statistics equal a tally of the raw responses, through a fresh process's store as well."""
    want = raw_counts(store, round_id)
    assert survey_differences(store, round_id) == []
    fresh = open_store(store.url)
    try:
        for reader in (store, fresh):
            got = reader.survey_counts(round_id, N_ITEMS).tables()
            assert sorted(got) == sorted(want)
            for key, counts in want.items():
                assert got[key].responses == counts.responses, key
                np.testing.assert_array_equal(got[key].counts, counts.counts)
    finally:
        fresh.close()


def batch(prefix, community, n, start=0):
    return [response(f"{prefix}{start + i}", community=community, levels=(1 + i % 5, (i * 3) % 6, 0, 1 + i % 4),
                     respondent_type="public" if i % 7 == 3 else "resident") for i in range(n)]


# -- what a ranking and a write read -----------------------------------------------------------------

@MONGO
def test_ranking_after_one_write_reads_that_communitys_counts_alone(app, client, keys, world):
    """Through the app: after one survey to heping-002 the district ranking reads the heads' numbers and
    heping-002's head, no response and no journal entry; the write itself only inserts journal entries
    and reads heping-002's head; the statistics stay exact."""
    store = app.extensions["scoring"].store
    lead = keys.header("leadership")
    url = "/api/v1/rounds/r2018/rankings/districts"
    for kiosk, community in (("kiosk_1", "heping-001"), ("kiosk_2", "heping-002")):
        for k in range(3):
            body = survey(community, answers={"roads": 1 + k, "water": 5}, overall=3)
            assert client.post("/api/v1/rounds/r2018/surveys", json=body, headers=keys.header(kiosk)).status_code == 201
    first = client.get(url, headers=lead)
    assert first.status_code == 200

    with monitored(store) as write:
        body = survey("heping-002", answers={"roads": 2}, overall=5)
        assert client.post("/api/v1/rounds/r2018/surveys", json=body, headers=keys.header("kiosk_2")).status_code == 201
    assert write.on_collection("survey_journal") == ["insert"]
    assert [c["filter"]["community_id"] for name, coll, c in write.sent if (name, coll) == ("find", "survey_heads")] \
        == ["heping-002"]
    assert not [s for s in write.sent if s[0] == "aggregate" and s[1] in ("responses", *STATS)]

    with monitored(store) as ranking:
        after = client.get(url, headers=lead)
    assert after.status_code == 200
    assert not ranking.on_collection("responses") and not ranking.on_collection("survey_journal")
    assert not [s for s in ranking.sent if s[0] == "aggregate"]
    counted = [d["community_id"] for d in ranking.returned["survey_heads"] if "counts" in d]
    assert counted == ["heping-002"]
    n_items = len(app.extensions["scoring"].rubric("shenyang-2018").item_codes)
    counts = store.survey_counts("r2018", n_items)
    assert counts.get("resident", "heping-002").responses == 4
    assert counts.get("resident", "heping-001").responses == 3
    assert survey_differences(store, "r2018", n_items) == []


@MONGO
def test_store_reads_only_the_heads_that_changed(store):
    """Another process writes to c3 and voids a response of c1: this process's next read fetches those two
    heads alone (by _id) beside the numbers; with nothing written since it fetches none."""
    open_round(store)
    for c in ("c1", "c2", "c3", "c4"):
        store.add_responses("R", batch(f"{c}-", c, 6), N_ITEMS)
    store.survey_counts("R", N_ITEMS)
    other = open_store(store.url)
    try:
        assert other.add_responses("R", batch("late-", "c3", 2), N_ITEMS) == [Outcome.CREATED] * 2
        assert other.void_response("R", "c1-2", "fraud", "k", AT, N_ITEMS) is Outcome.CHANGED
    finally:
        other.close()
    with monitored(store) as read:
        counts = store.survey_counts("R", N_ITEMS)
    assert {d["community_id"] for d in read.returned["survey_heads"] if "counts" in d} == {"c1", "c3"}
    assert set(read.on_collection("survey_heads")) == {"find"} and set(c for _, c, _ in read.sent) == {"survey_heads"}
    assert counts.get("resident", "c3").responses + counts.get("public", "c3").responses == 8
    with monitored(store) as again:
        store.survey_counts("R", N_ITEMS)
    assert not [d for d in again.returned["survey_heads"] if "counts" in d]
    assert_exact(store)


# -- exactness without transactions ------------------------------------------------------------------

def test_concurrent_writers_of_one_community_are_exact(database_url, store):
    """Six processes write batches to the same communities at once (with replays and voids): every
    response is counted once, on both stores; on MongoDB the journal numbers each community's entries
    1..n without a gap and the highest head is over all of them."""
    open_round(store)
    writers = [open_store(database_url) for _ in range(6)]
    barrier = threading.Barrier(len(writers))

    def write(pair):
        w, other = pair
        barrier.wait()
        for b in range(4):
            records = batch(f"w{w}b{b}-", "c1", 5) + batch(f"w{w}b{b}-x", "c2", 2)
            other.add_responses("R", records, N_ITEMS)
            other.add_responses("R", records[:3], N_ITEMS)  # a replay
        other.void_response("R", f"w{w}b0-1", "fraud", "k", AT, N_ITEMS)

    with ThreadPoolExecutor(max_workers=len(writers)) as pool:
        list(pool.map(write, enumerate(writers)))
    for other in writers:
        other.close()
    assert store.count_responses("R", include_voided=True) == 6 * 4 * 7
    if isinstance(store, MongoStore):
        for community, voids in (("c1", 6), ("c2", 0)):
            numbers = sorted(d["n"] for d in store.db.survey_journal.find({"round_id": "R", "community_id": community}))
            assert numbers == list(range(1, 6 * 4 * (5 if community == "c1" else 2) + voids + 1))
            # the highest head is over them all (a slower writer may have left a lower one beside it)
            heads = store.db.survey_heads.find({"round_id": "R", "community_id": community}, {"n": 1})
            assert max(d["n"] for d in heads) == numbers[-1]
        assert_exact(store)
    else:
        assert survey_differences(store) == []
    counts = store.survey_counts("R", N_ITEMS)
    assert sum(counts.get(t, "c1").responses for t in ("resident", "public")) == 6 * 4 * 5 - 6


@MONGO
def test_one_processs_writers_of_a_community_take_numbers_in_turn(store):
    """Threads of one process writing batches to one community at once never ask for a number another
    took (each such refusal reads what follows it: a scan of the whole journal on FerretDB, issue 18's
    batch ingest): the process's journal lock of the community orders them. Counts exact."""
    open_round(store)
    threads = 6
    barrier = threading.Barrier(threads)

    def write(w):
        barrier.wait()
        for b in range(3):
            store.add_responses("R", batch(f"t{w}b{b}-", "c1", 40), N_ITEMS)

    with monitored(store) as commands:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(write, range(threads)))
    reads_after = [c for name, collection, c in commands.sent
                   if name == "find" and collection == "survey_journal" and "n" in c.get("filter", {})]
    assert reads_after == []
    inserts = [c for name, collection, c in commands.sent if name == "insert" and collection == "survey_journal"]
    assert len(inserts) == threads * 3  # one insert per batch: none was refused and retried
    numbers = sorted(d["n"] for d in store.db.survey_journal.find({"round_id": "R", "community_id": "c1"}))
    assert numbers == list(range(1, threads * 3 * 40 + 1))
    assert_exact(store)


@MONGO
def test_a_writer_goes_on_without_a_journal_lock_held_too_long(store, monkeypatch):
    """The locks only save work: a writer kept waiting (another one stuck in a slow call) writes without
    the lock after JOURNAL_LOCK_WAIT_S, and its response is counted exactly."""
    from scoring_service.store import mongo

    open_round(store)
    monkeypatch.setattr(mongo, "JOURNAL_LOCK_WAIT_S", 0.2)
    (lock,) = store._journal_locks("R", ["c1"])
    with lock:  # held for the whole write below, as by a stuck writer
        writer = threading.Thread(target=store.add_responses, args=("R", batch("held-", "c1", 3), N_ITEMS))
        writer.start()
        writer.join(timeout=30)
        assert not writer.is_alive()
    assert store.survey_counts("R", N_ITEMS).get("resident", "c1").responses == 3
    assert_exact(store)


def test_journal_locks_are_per_community_and_taken_in_one_order(tmp_path):
    """The same community's writers share a lock; a write to several communities takes their locks sorted
    (two such writers cannot each hold one the other waits for); a forked process makes its own."""
    store = MongoStore("mongodb://127.0.0.1:1/x")
    one = store._journal_locks("R", ["c1"])
    assert store._journal_locks("R", ["c1"]) == one and len(one) == 1
    many = store._journal_locks("R", [f"c{i}" for i in range(200)])
    assert len(many) == len(set(map(id, many))) and len(many) <= 64
    assert [store._stripes.index(lock) for lock in many] == sorted(store._stripes.index(lock) for lock in many)
    assert store._journal_locks("R", ["c2", "c1"]) == store._journal_locks("R", ["c1", "c2"])
    store._stripes_pid = -1  # as in a process forked after the locks were made
    assert store._journal_locks("R", ["c1"])[0] is not one[0]


class Stop(Exception):
    """A process stopping between two writes."""


def stop_once(monkeypatch, name):
    """Make ``MongoStore.name`` raise Stop on its next call only (the process dies there)."""
    real = getattr(MongoStore, name)
    calls = []

    def stopping(self, *args, **kwargs):
        if not calls:
            calls.append(1)
            raise Stop(name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MongoStore, name, stopping)


def stop_before_heads(monkeypatch):
    """Stop the next write of survey heads (after its journal entries)."""
    real = MongoStore._insert_many
    calls = []

    def stopping(collection, docs):
        if collection.name == "survey_heads" and not calls:
            calls.append(1)
            raise Stop("heads")
        return real(collection, docs)

    monkeypatch.setattr(MongoStore, "_insert_many", staticmethod(stopping))


@MONGO
def test_a_writer_stopped_before_its_journal_entries_is_completed_by_the_replay(store, monkeypatch):
    open_round(store)
    store.add_responses("R", batch("a", "c1", 4), N_ITEMS)
    stop_once(monkeypatch, "_journal")
    with pytest.raises(Stop):
        store.add_responses("R", batch("b", "c1", 3) + batch("b", "c2", 2, start=3), N_ITEMS)
    assert store.count_responses("R") == 9  # stored, not yet counted
    assert {d["community_id"] for d in survey_differences(store)} == {"c1", "c2"}
    outcomes = store.add_responses("R", batch("b", "c1", 3) + batch("b", "c2", 2, start=3), N_ITEMS)
    assert outcomes == [Outcome.DUPLICATE] * 5
    assert_exact(store)


@MONGO
def test_a_writer_stopped_before_its_head_is_completed_by_the_next_write_or_the_replay(store, monkeypatch):
    """Journal entries written, head not: the next writer of that community finds its number taken and
    counts them; a replay of the stopped batch brings the other community's head up to its entries."""
    open_round(store)
    store.add_responses("R", batch("a", "c1", 4) + batch("a", "c2", 4, start=4), N_ITEMS)
    stop_before_heads(monkeypatch)
    stopped = batch("b", "c1", 3) + batch("b", "c2", 2, start=3)
    with pytest.raises(Stop):
        store.add_responses("R", stopped, N_ITEMS)
    assert store.db.survey_journal.count_documents({"round_id": "R"}) == 13
    assert survey_differences(store)
    assert store.add_responses("R", batch("c", "c1", 1), N_ITEMS) == [Outcome.CREATED]
    assert {d["community_id"] for d in survey_differences(store)} == {"c2"}
    assert store.add_responses("R", stopped[3:], N_ITEMS) == [Outcome.DUPLICATE] * 2
    assert_exact(store)


def journal_numbers(store, community, round_id="R"):
    return sorted(d["n"] for d in store.db.survey_journal.find({"round_id": round_id, "community_id": community}))


@MONGO
def test_an_ordered_journal_insert_reports_the_entry_refused(store):
    """Entries numbered 1..150 of c1 where number 6 is taken: the first five are in and the sixth is the
    refused one (FerretDB 1.24 counts in ``nInserted`` the entries it stored past it, to the end of its
    internal batch of 100; the store must not take those counts as "the first n are in")."""
    open_round(store)
    store.db.survey_journal.insert_one({"_id": "taken", "round_id": "R", "community_id": "c1", "n": 6,
                                        "respondent_type": "resident", "levels": [4, 5, 0, 3], "sign": 1})
    docs = [{"_id": f"e{n}", "round_id": "R", "community_id": "c1", "n": n, "respondent_type": "resident",
             "levels": [4, 5, 0, 3], "sign": 1} for n in range(1, 151)]
    assert store._insert_in_order(docs) == 5
    assert set(journal_numbers(store, "c1")) >= {1, 2, 3, 4, 5, 6}
    assert store.db.survey_journal.find_one({"_id": "e6"}) is None


@MONGO
def test_a_large_write_after_a_writer_stopped_before_its_head_is_exact(store, monkeypatch):
    """A writer stopped between its journal entries and its head (a worker killed mid-upload) left c1's
    journal ahead of its head; the next write numbers c1's entries after that head, so its first one is
    refused while, on FerretDB, the entries after it in the same insert are stored anyway. Every write
    after that is counted once, the journal stays numbered 1..n, and the heads catch up."""
    open_round(store)
    store.add_responses("R", batch("a", "c1", 4) + batch("a", "c2", 4, start=4), N_ITEMS)
    stop_before_heads(monkeypatch)
    with pytest.raises(Stop):
        store.add_responses("R", batch("b", "c1", 3), N_ITEMS)
    big = batch("c", "c1", 60) + batch("c", "c2", 60, start=60) + batch("c", "c3", 60, start=120)
    assert store.add_responses("R", big, N_ITEMS) == [Outcome.CREATED] * 180
    assert_exact(store)
    for community, n in (("c1", 4 + 3 + 60), ("c2", 4 + 60), ("c3", 60)):
        assert journal_numbers(store, community)[-1] >= n
        heads = store.db.survey_heads.find({"round_id": "R", "community_id": community}, {"n": 1})
        assert max(d["n"] for d in heads) == journal_numbers(store, community)[-1]
    assert store.add_responses("R", batch("d", "c1", 5), N_ITEMS) == [Outcome.CREATED] * 5
    assert_exact(store)


@MONGO
def test_a_number_left_free_below_taken_ones_is_filled(store, monkeypatch):
    """Two responses journaled at numbers 6 and 7 of c1 with 5 left free (what an insert FerretDB went on
    past leaves): the next write to c1 takes 5, the one after finds 6 taken and counts 6 and 7; a number
    left free that no write takes (c2's 3) is filled by a recount with an entry that counts nothing."""
    open_round(store)
    store.add_responses("R", batch("a", "c1", 4) + batch("a", "c2", 2, start=4), N_ITEMS)
    stop_once(monkeypatch, "_journal")
    stopped = batch("b", "c1", 2) + batch("b", "c2", 2, start=2)
    with pytest.raises(Stop):
        store.add_responses("R", stopped, N_ITEMS)
    from scoring_service.store.mongo import journal_entry

    for n, record in zip((6, 7, 4, 5), stopped):
        store.db.survey_journal.insert_one({**journal_entry(record, 1), "round_id": "R", "n": n})
    assert journal_numbers(store, "c1") == [1, 2, 3, 4, 6, 7]
    assert journal_numbers(store, "c2") == [1, 2, 4, 5]
    assert store.add_responses("R", batch("c", "c1", 1), N_ITEMS) == [Outcome.CREATED]
    assert journal_numbers(store, "c1") == [1, 2, 3, 4, 5, 6, 7]
    assert store.add_responses("R", batch("d", "c1", 1), N_ITEMS) == [Outcome.CREATED]
    assert journal_numbers(store, "c1") == [1, 2, 3, 4, 5, 6, 7, 8]
    assert {d["community_id"] for d in survey_differences(store, fix=True)} == {"c2"}
    assert journal_numbers(store, "c2") == [1, 2, 3, 4, 5]
    assert store.db.survey_journal.find_one({"round_id": "R", "community_id": "c2", "n": 3})["sign"] == 0
    assert_exact(store)


@MONGO
def test_a_write_that_finds_a_free_number_below_taken_ones_fills_it(store):
    """c1's journal holds 1..4 and 6 (5 left free) and the head is over 4; a replay of the response at 6
    finds it journaled beyond its head: it fills 5 and counts 6."""
    open_round(store)
    store.add_responses("R", batch("a", "c1", 4), N_ITEMS)
    late = batch("b", "c1", 1)
    from scoring_service.store.mongo import journal_entry

    store.db.responses.insert_one({**{k: v for k, v in late[0].items() if k != "response_id"},
                                   "_id": late[0]["response_id"], "seq": 99, "voided_at": None})
    store.db.survey_journal.insert_one({**journal_entry(late[0], 1), "round_id": "R", "n": 6})
    assert store.add_responses("R", late, N_ITEMS) == [Outcome.DUPLICATE]
    assert journal_numbers(store, "c1") == [1, 2, 3, 4, 5, 6]
    assert store.db.survey_journal.find_one({"round_id": "R", "community_id": "c1", "n": 5})["sign"] == 0
    assert_exact(store)


@MONGO
def test_a_void_stopped_before_its_journal_entry_is_completed_by_voiding_again(store, monkeypatch):
    open_round(store)
    store.add_responses("R", batch("a", "c1", 4), N_ITEMS)
    stop_once(monkeypatch, "_journal")
    with pytest.raises(Stop):
        store.void_response("R", "a1", "fraud", "k", AT, N_ITEMS)
    assert survey_differences(store)
    assert store.void_response("R", "a1", "fraud", "k", AT, N_ITEMS) is Outcome.UNCHANGED
    assert_exact(store)
    assert store.void_response("R", "a1", "fraud", "k", AT, N_ITEMS) is Outcome.UNCHANGED
    assert store.db.survey_journal.count_documents({"round_id": "R"}) == 5


@MONGO
def test_closing_a_round_counts_what_a_stopped_writer_left_out(store, monkeypatch):
    open_round(store)
    store.add_responses("R", batch("a", "c1", 4), N_ITEMS)
    stop_once(monkeypatch, "_journal")
    with pytest.raises(Stop):
        store.add_responses("R", batch("b", "c2", 3), N_ITEMS)
    before = store.generation("surveys")
    assert store.close_round("R", AT) is Outcome.CHANGED
    assert store.generation("surveys") != before
    assert_exact(store)


@MONGO
def test_recount_reports_and_rebuilds_a_tampered_head(store):
    open_round(store)
    store.add_responses("R", batch("a", "c1", 5) + batch("a", "c2", 3, start=5), N_ITEMS)
    head = store.db.survey_heads.find_one({"round_id": "R", "community_id": "c1"})
    counts = np.frombuffer(head["counts"], dtype="<i8").copy()
    counts[0] += 7
    store.db.survey_heads.update_one({"_id": head["_id"]}, {"$set": {"counts": counts.tobytes()}})
    differences = survey_differences(store)
    assert [(d["community_id"], d["cells_differing"]) for d in differences] == [("c1", 1)]
    assert survey_differences(store, fix=True) == differences
    assert_exact(store)


@MONGO
def test_a_round_stored_before_the_journal_is_journaled_once(store):
    """Responses stored by the earlier store (no journal, counts aggregated from their cells): the first
    read journals them, marks the round and counts them; a second process reads heads only."""
    open_round(store)
    store.db.meta.delete_one({"_id": "survey_journal:R"})
    docs = []
    for k, record in enumerate(batch("old", "c1", 6) + batch("old", "c2", 3, start=6)):
        doc = {key: value for key, value in record.items() if key != "response_id"}
        docs.append({**doc, "_id": record["response_id"], "seq": k, "voided_at": None, "cells": ["n|x|y"]})
    docs[2]["voided_at"] = AT
    store.db.responses.insert_many(docs)
    counts = store.survey_counts("R", N_ITEMS)
    assert sum(counts.get(t, "c1").responses for t in ("resident", "public")) == 5
    assert store.db.meta.find_one({"_id": "survey_journal:R"}) is not None
    second = open_store(store.url)
    try:
        with monitored(second) as read:
            second.survey_counts("R", N_ITEMS)
        assert {c for _, c, _ in read.sent} == {"meta", "survey_heads"}
    finally:
        second.close()
    assert_exact(store)


def test_one_response_counts_as_its_levels(store):
    """The journal's unit (store.base.response_count_rows) on both stores: a response answered on
    some items adds one to those (item, level) cells and to its type's response count."""
    open_round(store)
    store.add_responses("R", [response("x", levels=(5, 0, 2, 1))], N_ITEMS)
    counts = store.survey_counts("R", N_ITEMS).get("resident", "c1")
    assert counts.responses == 1
    np.testing.assert_array_equal(counts.counts, response_count_rows((5, 0, 2, 1), N_ITEMS))
