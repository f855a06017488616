"""MongoDB store through pymongo (production), exact on FerretDB too.

Design for correctness without transactions (FerretDB has none, and
``update``/``findAndModify`` there read and write in separate steps):

* raw records are insert-only with client ids as ``_id``: a unique index
  (``_id``) is the idempotency mechanism, ``DuplicateKeyError`` the signal;
* a household answers once through a claim document whose ``_id`` is the
  (round, community, household hash) triple; voiding a response deletes its
  claim (matched by its response id too, so a claim made since stays), and a
  claim still held by a voided response is released when the household
  answers again;
* survey statistics are never kept with ``$inc``: each community's responses
  and voidings are numbered in an insert-only journal (one insert both claims
  the next number and records what it counts, once), and a head document per
  community keeps its counts over its entries 1..n, inserted (never updated)
  by the writer before the write is answered; a ranking reads the heads'
  numbers and only the heads of the communities that changed (see
  :meth:`MongoStore._journal`);
* caches are keyed by a generation token that every write replaces with a
  fresh random value *after* its data is written — so a cache filled before
  a write can never be mistaken for one filled after.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
from gridfs import GridFSBucket
from gridfs.errors import NoFile
from pymongo import ASCENDING, IndexModel, MongoClient, ReplaceOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError
from pymongo.write_concern import WriteConcern

from .base import (
    DEFAULT_STAGE,
    MARK_LIMITS,
    AnomalyCandidates,
    AnomalyFacts,
    AuditEvent,
    CommunityCounts,
    FundingCheck,
    InspectionRows,
    LinkQuota,
    MilestoneCheck,
    Outcome,
    RoundCounts,
    Store,
    StoreError,
    amendment_refusal,
    attachment_grants,
    attachment_ref,
    audit_conditions,
    count_differences,
    first_occurrences,
    latest_by_code,
    next_funding_version,
    next_milestone_version,
    parse_mark,
    quota_refusal,
    replay_outcome,
    response_count_rows,
    response_replay,
    round_gate,
    same_as_current,
    settle_repeats,
    table_of,
    tally,
    void_fields,
    with_void_fields,
)

DUPLICATE_KEY = 11000
#: locks per process over the communities' survey journals (see MongoStore._journal_locks)
JOURNAL_LOCKS = 64
#: how long a writer waits for one of them before it writes without it (seconds)
JOURNAL_LOCK_WAIT_S = 10.0

#: GridFS buckets of attachments' bytes and of their thumbnails (SPEC §13)
ATTACHMENT_BUCKET = "attachments"
THUMBNAIL_BUCKET = "attachment_thumbs"

#: the query operators of :func:`~.base.audit_conditions`
_OPERATORS = {"=": "$eq", ">=": "$gte", "<": "$lt", ">": "$gt"}

#: named indexes, created idempotently at start
INDEXES: dict[str, list[IndexModel]] = {
    "communities": [IndexModel([("renovation_year", ASCENDING), ("district_id", ASCENDING)], name="by_year")],
    "rounds": [IndexModel([("rubric_id", ASCENDING)], name="by_rubric")],
    "responses": [
        IndexModel([("round_id", ASCENDING), ("community_id", ASCENDING)], name="by_round_community"),
        IndexModel([("round_id", ASCENDING), ("seq", ASCENDING)], name="by_round_seq"),
        # the anomaly report (MongoStore.anomaly_candidates): responses of a mark, a key's and a
        # content's first response, straight-lined responses
        IndexModel([("round_id", ASCENDING), ("marks", ASCENDING)], name="by_round_mark"),
        IndexModel([("round_id", ASCENDING), ("key_id", ASCENDING), ("community_id", ASCENDING),
                    ("seq", ASCENDING)], name="by_round_sender"),
        IndexModel([("round_id", ASCENDING), ("content_key", ASCENDING), ("seq", ASCENDING)],
                   name="by_round_content"),
        IndexModel([("round_id", ASCENDING), ("straight", ASCENDING)], name="by_round_straight"),
    ],
    # survey statistics (MongoStore._journal): an entry's _id is what it counts (a response id, or
    # "void|<response id>"), one_position numbers a community's entries 1, 2, … without a gap; a head
    # "<round>|<community>|<n>" keeps the community's counts over its entries 1..n
    "survey_journal": [
        IndexModel([("round_id", ASCENDING), ("community_id", ASCENDING), ("n", ASCENDING)],
                   name="one_position", unique=True),
    ],
    "survey_heads": [
        IndexModel([("round_id", ASCENDING), ("community_id", ASCENDING), ("n", ASCENDING)],
                   name="by_round_community"),
    ],
    "inspections": [IndexModel([("round_id", ASCENDING)], name="by_round")],
    "inspection_versions": [IndexModel([("round_id", ASCENDING)], name="by_round")],
    # a version's _id "<round>#<seq>" numbers the round's versions 1, 2, … in the order they were
    # written (the change feed, see MongoStore.milestone_changes); versions of one community are
    # serialised by one_slot (n counts the community's versions). one_version finds a community's
    # versions and keeps (code, version) unique. Versions stored before seq existed have the _id
    # "<round>|<community>|<n>" and no seq.
    "milestone_versions": [
        IndexModel([("round_id", ASCENDING), ("community_id", ASCENDING), ("code", ASCENDING),
                    ("version", ASCENDING)], name="one_version", unique=True),
        IndexModel([("round_id", ASCENDING), ("community_id", ASCENDING), ("n", ASCENDING)], name="one_slot",
                   unique=True),
        IndexModel([("round_id", ASCENDING), ("seq", ASCENDING)], name="by_round_seq"),
    ],
    # funding ledger (SPEC §12): a funding version's or a disbursement's _id "<round>#<seq>" numbers the
    # round's documents 1, 2, … in the order they were written, as milestone versions' (the ledger's
    # change feeds, see MongoStore._feed_changes); one_funding_version serialises a community's
    # versions, one_tranche pays a tranche once, and a disbursement's client id is unique. Documents
    # stored before seq existed have the _id "<round>|<community>|<version or tranche>" and no seq.
    "funding_versions": [
        IndexModel([("round_id", ASCENDING), ("community_id", ASCENDING), ("version", ASCENDING)],
                   name="one_funding_version", unique=True),
        IndexModel([("round_id", ASCENDING), ("seq", ASCENDING)], name="by_round_seq"),
    ],
    "disbursements": [
        IndexModel([("disbursement_id", ASCENDING)], name="one_disbursement_id", unique=True),
        IndexModel([("round_id", ASCENDING), ("community_id", ASCENDING)], name="by_round_community"),
        IndexModel([("round_id", ASCENDING), ("community_id", ASCENDING), ("tranche", ASCENDING)],
                   name="one_tranche", unique=True),
        IndexModel([("round_id", ASCENDING), ("seq", ASCENDING)], name="by_round_seq"),
    ],
    # rectification responses (SPEC §13): numbered "<round>#<seq>" as funding versions (the change feed);
    # a response's client id is unique
    "rectification_responses": [
        IndexModel([("response_id", ASCENDING)], name="one_response_id", unique=True),
        IndexModel([("round_id", ASCENDING), ("item_id", ASCENDING)], name="by_round_item"),
        IndexModel([("round_id", ASCENDING), ("seq", ASCENDING)], name="by_round_seq"),
    ],
    # attachments (SPEC §13): a record's _id is the file's SHA-256 and names its GridFS files (bucket
    # "attachments", thumbnails in bucket "attachment_thumbs"); a reference's _id is
    # "<sha256>|<source>|<source id>", a grant's "<sha256>|<grantee>" (read by _id alone)
    "attachment_refs": [
        IndexModel([("sha256", ASCENDING)], name="by_sha256"),
        IndexModel([("round_id", ASCENDING)], name="by_round"),
    ],
    # survey links (SPEC §14); a quota slot "<scope>|<n>" (n < cap) is held by one response, so
    # inserting it claims one of the cap's places exactly, without transactions
    "survey_links": [
        IndexModel([("round_id", ASCENDING), ("community_id", ASCENDING), ("created_at", ASCENDING)],
                   name="by_round_community"),
    ],
    "quota_slots": [
        IndexModel([("scope", ASCENDING)], name="by_scope"),
        IndexModel([("response_id", ASCENDING)], name="by_response"),
    ],
    "audit": [
        IndexModel([("seq", ASCENDING)], name="by_seq"),
        IndexModel([("key_id", ASCENDING), ("seq", ASCENDING)], name="by_key"),
        IndexModel([("entity_id", ASCENDING), ("seq", ASCENDING)], name="by_entity"),
        IndexModel([("round_id", ASCENDING), ("seq", ASCENDING)], name="by_round"),
    ],
}


def _plain(doc: Mapping | None, id_field: str | None = None) -> dict | None:
    """A document without Mongo's ``_id`` (renamed to ``id_field`` when given)."""
    if doc is None:
        return None
    out = {k: v for k, v in doc.items() if k != "_id"}
    if id_field:
        out[id_field] = doc["_id"]
    return out


def journal_entry(record: Mapping, sign: int) -> dict:
    """What the survey journal keeps of a response counted (``sign`` 1) or voided (-1): its ``_id`` is
    what it counts, so each is counted once whoever writes it (see :meth:`MongoStore._journal`)."""
    key = record["response_id"] if sign > 0 else f"void|{record['response_id']}"
    return {"_id": key, "community_id": record["community_id"], "respondent_type": record["respondent_type"],
            "levels": [int(level) for level in record["levels"]], "sign": sign}


def _head_id(round_id: str, community_id: str, n: int) -> str:
    """``_id`` of the head of a community's survey journal over its entries 1..n."""
    return f"{round_id}|{community_id}|{n:012d}"


def _head_tables(doc: Mapping) -> dict[str, CommunityCounts]:
    """The count tables of a head, per respondent type."""
    shape = (len(doc["types"]), doc["n_items"] + 1, 5)
    counts = np.frombuffer(doc["counts"], dtype="<i8").reshape(shape).astype(np.int64)
    return {t: CommunityCounts(counts[k], int(r)) for k, (t, r) in enumerate(zip(doc["types"], doc["responses"]))}


def _plus_entries(tables: Mapping[str, CommunityCounts], entries: Iterable[Mapping]) -> dict[str, CommunityCounts]:
    """``tables`` with the journal ``entries`` counted (a copy)."""
    out = {t: CommunityCounts(c.counts.copy(), c.responses) for t, c in tables.items()}
    for entry in entries:
        n_items = len(entry["levels"]) - 1
        table = table_of(out, entry["respondent_type"], n_items)
        table.counts += entry["sign"] * response_count_rows(entry["levels"], n_items)
        table.responses += entry["sign"]
    return out


def _head_doc(round_id: str, community_id: str, n: int, tables: Mapping[str, CommunityCounts]) -> dict:
    types = sorted(tables)
    counts = np.stack([tables[t].counts for t in types]).astype("<i8")
    return {"_id": _head_id(round_id, community_id, n), "round_id": round_id, "community_id": community_id,
            "n": n, "n_items": counts.shape[1] - 1, "types": types,
            "responses": [int(tables[t].responses) for t in types], "counts": counts.tobytes()}


def _standing(tables: Mapping[str, CommunityCounts]) -> dict[str, CommunityCounts]:
    """The tables with anything counted (all of a type's responses voided leaves none, as SQLite)."""
    return {t: c for t, c in tables.items() if c.responses or c.counts.any()}


#: what a response document keeps for the anomaly report (store.base.AnomalyFacts)
ANOMALY_FIELDS = ("marks", "straight", "content_key")


def anomaly_fields(record: Mapping) -> dict:
    """The anomaly facts of a response as fields of its document: its marks (the report groups the
    standing responses by them inside the database), its straight-lined level and its content digest."""
    facts = AnomalyFacts.of(record)
    return {"marks": facts.marks(), "straight": facts.straight, "content_key": facts.content}


def _encode_version(version: Mapping) -> dict:
    """Check codes contain dots, which field names may not (FerretDB also has no nested arrays)."""
    doc = dict(version)
    doc["checks"] = [{"code": code, "points": value} for code, value in sorted(version.get("checks", {}).items())]
    if "check_evidence" in version:
        doc["check_evidence"] = [{"code": code, "hashes": list(hashes)}
                                 for code, hashes in sorted(version["check_evidence"].items())]
    return doc


def _decode_version(doc: Mapping) -> dict:
    out = _plain(doc)
    out["checks"] = {pair["code"]: pair["points"] for pair in doc.get("checks", [])}
    if "check_evidence" in doc:
        out["check_evidence"] = {pair["code"]: list(pair["hashes"]) for pair in doc["check_evidence"]}
    return out


def _household_key(round_id: str, community_id: str, household_hash: str) -> str:
    """``_id`` of a household claim: one per (round, community, household hash)."""
    return f"{round_id}|{community_id}|{household_hash}"


def _unnumbered(doc: Mapping | None) -> dict | None:
    """A funding version or disbursement without ``_id`` and ``seq``."""
    return None if doc is None else {k: v for k, v in doc.items() if k not in ("_id", "seq")}


def _milestone_id(round_id: str, seq: int) -> str:
    """``_id`` of the round's ``seq``-th milestone version (round ids hold no ``#``)."""
    return f"{round_id}#{seq}"


#: milestone_changes looks up this many versions one by one before it reads the rest of a long run at once
MILESTONE_PROBES = 32


def _seq() -> int:
    """Arrival order across processes without a shared counter (FerretDB's $inc is not atomic)."""
    return time.time_ns()


class MongoStore(Store):
    def __init__(self, url: str, write_concern: str | int = "majority", timeout_ms: int = 5000):
        self.url = url
        self.write_concern = write_concern
        self.timeout_ms = timeout_ms
        self._client: MongoClient | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        #: per round, each community's last head read: its number and count tables (see survey_counts)
        self._heads_cache: dict[str, dict[str, tuple[int, dict[str, CommunityCounts]]]] = {}
        #: per round, the heads' numbers and the RoundCounts last assembled from them
        self._round_counts: dict[str, tuple[dict[str, int], RoundCounts]] = {}
        #: rounds whose journal is known to hold every stored response (see _journal_ready)
        self._journaled_rounds: set[str] = set()
        #: the anomaly candidates of a round, with the survey generation they were read at
        self._anomaly_cache: dict[tuple, tuple[str, AnomalyCandidates]] = {}
        #: a seq of each round's milestone versions known to exist (where the search for the last starts)
        #: the same for the ledger's feeds, per (collection, round)
        self._feed_seq: dict[tuple[str, str], int] = {}
        #: this process's journal locks (see _journal_locks) and the process they were made in
        self._stripes: list[threading.Lock] = []
        self._stripes_pid: int | None = None

    # -- client per process, created after fork ---------------------------------
    @property
    def db(self):
        if self._client is None or self._pid != os.getpid():
            with self._lock:
                if self._client is None or self._pid != os.getpid():
                    self._client = MongoClient(
                        self.url, connect=False, serverSelectionTimeoutMS=self.timeout_ms, tz_aware=False,
                        appname="scoring-service",
                    )
                    self._pid = os.getpid()
        w = WriteConcern(w=self.write_concern)
        return self._client.get_default_database(default="scoring", write_concern=w)

    def close(self) -> None:
        if self._client is not None and self._pid == os.getpid():
            self._client.close()
        self._client = None

    def _bump(self, scope: str | None = None) -> None:
        """Replace the generation tokens after a write (never ``$inc``: see the module docstring)."""
        token = uuid.uuid4().hex
        if scope:
            self._upsert(self.db.meta, {"_id": f"generation:{scope}", "token": token})
        self._upsert(self.db.meta, {"_id": "generation", "token": token})

    @staticmethod
    def _upsert(collection, doc: dict) -> bool:
        """Create or replace ``doc`` by ``_id``; True when created.

        Two concurrent upserts of a new ``_id`` may both try to insert and one gets a
        duplicate-key error (FerretDB always, MongoDB sometimes): the document then
        exists, so the loser replaces it.
        """
        try:
            return collection.replace_one({"_id": doc["_id"]}, doc, upsert=True).upserted_id is not None
        except DuplicateKeyError:
            collection.replace_one({"_id": doc["_id"]}, doc)
            return False

    # -- life cycle -------------------------------------------------------------
    def init(self) -> None:
        db = self.db
        try:
            for collection, indexes in INDEXES.items():
                # Only the missing ones, one at a time: FerretDB 1.24 drops the
                # connection when one createIndexes names several existing indexes.
                existing = set(db[collection].index_information())
                for index in indexes:
                    if index.document["name"] not in existing:
                        db[collection].create_indexes([index])
            seeds = {"schema_version": {"value": 1}}
            for name in ("generation", "generation:reference", "generation:inspections", "generation:surveys",
                         "generation:milestones"):
                seeds[name] = {"token": uuid.uuid4().hex}
            for name, fields in seeds.items():
                try:
                    db.meta.update_one({"_id": name}, {"$setOnInsert": fields}, upsert=True)
                except DuplicateKeyError:  # another worker starting at the same moment created it
                    pass
            if db.meta.find_one({"_id": "anomaly_facts"}) is None:  # documents stored before the facts existed
                self._recount_anomalies(None, fix=True)
                self._upsert(db.meta, {"_id": "anomaly_facts", "value": 1})
            if db.meta.find_one({"_id": "public_places"}) is None:  # public responses stored before they had one
                self._fill_public_places()
                self._upsert(db.meta, {"_id": "public_places", "value": 1})
        except PyMongoError as exc:
            raise StoreError(f"cannot initialise MongoDB store: {exc}") from exc

    def ping(self) -> None:
        try:
            self.db.command("ping")
            if self.db.meta.find_one({"_id": "schema_version"}) is None:
                raise StoreError("MongoDB store not initialised")
        except PyMongoError as exc:
            raise StoreError(f"MongoDB not reachable: {exc}") from exc

    def generation(self, scope: str | None = None) -> str:
        doc = self.db.meta.find_one({"_id": f"generation:{scope}" if scope else "generation"})
        return doc["token"] if doc else ""

    # -- keys -------------------------------------------------------------------
    def create_key(self, record: Mapping[str, Any]) -> None:
        doc = {"agency_id": None, "community_id": None, "district_id": None, "revoked_at": None, **record}
        doc["_id"] = doc.pop("key_id")
        self.db.keys.insert_one(doc)

    def get_key(self, key_id: str) -> dict | None:
        return _plain(self.db.keys.find_one({"_id": key_id}), "key_id")

    def list_keys(self) -> list[dict]:
        return [_plain(d, "key_id") for d in self.db.keys.find().sort([("created_at", 1), ("_id", 1)])]

    def revoke_key(self, key_id: str, at: str) -> bool:
        if self.db.keys.find_one({"_id": key_id}, {"_id": 1}) is None:
            return False
        self.db.keys.update_one({"_id": key_id, "revoked_at": None}, {"$set": {"revoked_at": at}})
        return True

    # -- rubrics ----------------------------------------------------------------
    def put_rubric(self, rubric_id: str, body: Mapping, digest: str, at: str) -> Outcome:
        try:
            self.db.rubrics.insert_one({"_id": rubric_id, "body": dict(body), "digest": digest, "created_at": at})
        except DuplicateKeyError:
            existing = self.db.rubrics.find_one({"_id": rubric_id}, {"digest": 1})
            return replay_outcome(existing["digest"], digest)
        self._bump("reference")
        return Outcome.CREATED

    def get_rubric(self, rubric_id: str) -> dict | None:
        doc = self.db.rubrics.find_one({"_id": rubric_id})
        return doc["body"] if doc else None

    def list_rubrics(self) -> list[dict]:
        return [d["body"] for d in self.db.rubrics.find().sort("_id", 1)]

    # -- reference data ---------------------------------------------------------
    def _get(self, collection: str, id_field: str, value: str) -> dict | None:
        return _plain(self.db[collection].find_one({"_id": value}), id_field)

    def _list(self, collection: str, id_field: str, query: Mapping | None = None) -> list[dict]:
        return [_plain(d, id_field) for d in self.db[collection].find(query or {}).sort("_id", 1)]

    def _replace(self, collection: str, id_field: str, record: Mapping) -> bool:
        doc = dict(record)
        doc["_id"] = doc.pop(id_field)
        created = self._upsert(self.db[collection], doc)
        self._bump("reference")
        return created

    def put_district(self, record: Mapping) -> bool:
        return self._replace("districts", "district_id", record)

    def get_district(self, district_id: str) -> dict | None:
        return self._get("districts", "district_id", district_id)

    def list_districts(self) -> list[dict]:
        return self._list("districts", "district_id")

    def put_communities(self, records: list[Mapping]) -> list[bool]:
        # Validated before this call; one ordered bulk of idempotent replaces,
        # so a crash mid-way is completed by retrying the same import.
        ids = [r["community_id"] for r in records]
        existing = {d["_id"] for d in self.db.communities.find({"_id": {"$in": ids}}, {"_id": 1})}
        docs = []
        for record in records:
            doc = dict(record)
            doc["_id"] = doc.pop("community_id")
            docs.append(doc)
        for start in range(0, len(docs), 1000):
            part = docs[start:start + 1000]
            try:
                self.db.communities.bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in part],
                                               ordered=True)
            except BulkWriteError as exc:  # a concurrent upsert created one first: replace one by one
                if any(e["code"] != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                    raise
                for doc in part:
                    self._upsert(self.db.communities, doc)
        self._bump("reference")
        return [cid not in existing for cid in ids]

    def get_community(self, community_id: str) -> dict | None:
        return self._get("communities", "community_id", community_id)

    def list_communities(self, district_id: str | None = None, renovation_year: int | None = None,
                         renovation_years: Iterable[int] | None = None) -> list[dict]:
        query: dict[str, Any] = {}
        if renovation_years is not None:
            years = {int(y) for y in renovation_years}
            if renovation_year is not None:
                years &= {int(renovation_year)}
                renovation_year = None
            query["renovation_year"] = {"$in": sorted(years)}
        if district_id is not None:
            query["district_id"] = district_id
        if renovation_year is not None:
            query["renovation_year"] = int(renovation_year)
        return self._list("communities", "community_id", query)

    def put_agency(self, record: Mapping) -> bool:
        return self._replace("agencies", "agency_id", record)

    def get_agency(self, agency_id: str) -> dict | None:
        return self._get("agencies", "agency_id", agency_id)

    def list_agencies(self) -> list[dict]:
        return self._list("agencies", "agency_id")

    # -- rounds -----------------------------------------------------------------
    def create_round(self, record: Mapping) -> Outcome:
        doc = dict(record)
        doc["_id"] = doc["round_id"]
        try:
            self.db.rounds.insert_one(doc)
        except DuplicateKeyError:
            existing = self.db.rounds.find_one({"_id": record["round_id"]}, {"digest": 1})
            return replay_outcome(existing["digest"], record["digest"])
        self._upsert(self.db.meta, {"_id": f"survey_journal:{record['round_id']}", "value": 1})  # see _journal_ready
        self._bump()
        return Outcome.CREATED

    def get_round(self, round_id: str) -> dict | None:
        return _plain(self.db.rounds.find_one({"_id": round_id}))

    def list_rounds(self) -> list[dict]:
        return [_plain(d) for d in self.db.rounds.find().sort("_id", 1)]

    def close_round(self, round_id: str, at: str) -> Outcome:
        result = self.db.rounds.update_one({"_id": round_id, "status": "open"},
                                           {"$set": {"status": "closed", "closed_at": at}})
        if result.modified_count:
            # no response is taken from now on: count any a writer stopped before journaling (see _journal)
            if self._complete_journal(round_id):
                self._bump("surveys")
            self._bump()
            return Outcome.CHANGED
        current = self.db.rounds.find_one({"_id": round_id}, {"status": 1})
        if current is None:
            return Outcome.NOT_FOUND
        return Outcome.ROUND_PUBLISHED if current["status"] == "published" else Outcome.UNCHANGED

    def publish_round(self, round_id: str, snapshot: bytes, sha256: str, at: str) -> Outcome:
        current = self.db.rounds.find_one({"_id": round_id})
        if current is None:
            return Outcome.NOT_FOUND
        try:
            # The snapshot document is the commit point: written once, never replaced.
            self.db.snapshots.insert_one({"_id": round_id, "body": snapshot, "sha256": sha256})
            outcome = Outcome.CHANGED
        except DuplicateKeyError:
            outcome = Outcome.UNCHANGED
        stored = self.db.snapshots.find_one({"_id": round_id}, {"sha256": 1})
        changes = {"status": "published", "published_at": at, "snapshot_sha256": stored["sha256"]}
        if current.get("status") == "open":
            changes["closed_at"] = at
        self.db.rounds.update_one({"_id": round_id, "status": {"$ne": "published"}}, {"$set": changes})
        self._bump()
        return outcome

    def get_snapshot(self, round_id: str) -> tuple[bytes, str] | None:
        doc = self.db.snapshots.find_one({"_id": round_id})
        return (bytes(doc["body"]), doc["sha256"]) if doc else None

    def rubric_in_use(self, rubric_id: str) -> bool:
        return self.db.rounds.find_one({"rubric_id": rubric_id}, {"_id": 1}) is not None

    def _round_gate(self, round_id: str, closed_ok: bool = False) -> Outcome | None:
        current = self.db.rounds.find_one({"_id": round_id}, {"status": 1})
        return round_gate(current["status"] if current else None, closed_ok=closed_ok)

    # -- surveys ----------------------------------------------------------------
    def _stored_response(self, response_id: str) -> dict | None:
        """What :func:`response_replay` compares of a stored response."""
        return self.db.responses.find_one({"_id": response_id}, {"round_id": 1, "content_hash": 1, "voided_at": 1})

    def _claim_taken(self, key: str, response_id: str) -> str:
        """Settle a household claim whose insert collided: "held" (``response_id`` holds it already),
        "claimed" (it was held by a voided response and is now ``response_id``'s) or "refused".

        A claim is normally released when its response is voided; one still held by a voided
        response (a crash between the two writes) is released here, deleted only together with
        that holder's id so that a claim made meanwhile by another response stays.
        """
        db = self.db
        for _ in range(3):
            owner = db.households.find_one({"_id": key})
            if owner is None:  # released meanwhile: take it
                try:
                    db.households.insert_one({"_id": key, "response_id": response_id})
                    return "claimed"
                except DuplicateKeyError:
                    continue
            if owner["response_id"] == response_id:  # a retry of our own claim
                return "held"
            holder = db.responses.find_one({"_id": owner["response_id"]}, {"voided_at": 1})
            if holder is None or holder.get("voided_at") is None:  # standing, or being written now
                return "refused"
            db.households.delete_one({"_id": key, "response_id": owner["response_id"]})
        return "refused"

    def _release_household(self, response: Mapping) -> None:
        """Delete the household claim of a voided response (only if it is still that response's)."""
        if response.get("household_hash"):
            key = _household_key(response["round_id"], response["community_id"], response["household_hash"])
            self.db.households.delete_one({"_id": key, "response_id": response["_id"]})

    @staticmethod
    def _insert_many(collection, docs: list[dict]) -> list[int]:
        """Insert what is new; return the indexes of documents whose _id was already taken."""
        if not docs:
            return []
        try:
            collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e["code"] != DUPLICATE_KEY for e in errors):
                raise
            return sorted(e["index"] for e in errors)
        return []

    def _claim_slot(self, scope: str, kind: str, cap: int | None, response_id: str) -> str | None:
        """Insert one of the ``cap`` places of ``scope`` for ``response_id``: its ``_id``, None when all are held
        (``cap`` None: no limit).

        A place is a numbered slot, or one held by a public response posted without a link
        (:meth:`_hold_unlinked_place`: counted, never refused). Every claim that read the same places tries
        the same numbers, the first ``cap`` − held free ones in order, so claims made at once take at most
        as many places as were free; a claim that read later tries a part of those, or one freed since.
        """
        slots = self.db.quota_slots
        while True:  # more than once only without a cap, when another claim took the number tried
            held = {doc["_id"] for doc in slots.find({"scope": scope}, {"_id": 1})}
            free = 1 if cap is None else cap - len(held)
            numbers = itertools.islice((n for n in itertools.count() if f"{scope}|{n}" not in held), max(free, 0))
            for n in numbers:
                try:
                    slots.insert_one({"_id": f"{scope}|{n}", "scope": scope, "kind": kind, "response_id": response_id})
                    return f"{scope}|{n}"
                except DuplicateKeyError:
                    continue
            if cap is not None:
                return None

    @classmethod
    def _unlinked_place(cls, round_id: str, community_id: str, response_id: str) -> dict:
        """A public place of the community for a public response posted without a link (SPEC §14 counts
        every standing public response against ``public_cap``; only a link's is refused), keyed by the
        response: a replay, a twin or a second worker filling old responses holds it once."""
        scope = cls._public_scope(round_id, community_id)
        return {"_id": f"{scope}|r|{response_id}", "scope": scope, "kind": "public", "unlinked": True,
                "response_id": response_id}

    def _hold_unlinked_place(self, round_id: str, community_id: str, response_id: str) -> str | None:
        """Insert :meth:`_unlinked_place`: its ``_id``, None when it was held already."""
        place = self._unlinked_place(round_id, community_id, response_id)
        try:
            self.db.quota_slots.insert_one(place)
        except DuplicateKeyError:
            return None
        return place["_id"]

    @staticmethod
    def _public_scope(round_id: str, community_id: str) -> str:
        return f"public|{round_id}|{community_id}"

    def _fill_public_places(self) -> int:
        """Give each standing public response posted without a link its public place (those stored before
        such responses held one); how many were given. Workers starting at once give each one place."""
        given = 0
        for doc in self.db.responses.find({"respondent_type": "public", "voided_at": None, "link_id": None},
                                          {"round_id": 1, "community_id": 1}):
            place = self._hold_unlinked_place(doc["round_id"], doc["community_id"], doc["_id"])
            if place is None:
                continue
            if self.db.responses.find_one({"_id": doc["_id"], "voided_at": None}, {"_id": 1}) is None:
                self.db.quota_slots.delete_one({"_id": place})  # voided meanwhile: its void found none to free
            else:
                given += 1
        return given

    def _claim_quota(self, round_id: str, record: Mapping, quota: LinkQuota) -> tuple[list[str], Outcome | None]:
        """The slots a new link response holds (hourly place of its link and address, public place of its
        community), or the refusal of :func:`quota_refusal` with nothing held."""
        held: list[str] = []
        wanted = []
        if quota.hourly_cap is not None:
            wanted.append((f"rate|{record.get('link_id')}|{record.get('address_hash')}|{quota.window_start}",
                           "rate", quota.hourly_cap, Outcome.RATE_LIMITED))
        if record["respondent_type"] == "public":
            wanted.append((self._public_scope(round_id, record["community_id"]), "public", quota.public_cap,
                           Outcome.PUBLIC_CAP))
        for scope, kind, cap, refusal in wanted:
            slot = self._claim_slot(scope, kind, cap, record["response_id"])
            if slot is None:
                self._release_slots(held, record["response_id"])
                return [], refusal
            held.append(slot)
        return held, None

    def _release_slots(self, slots: list[str], response_id: str) -> None:
        for slot in slots:
            self.db.quota_slots.delete_one({"_id": slot, "response_id": response_id})

    def add_responses(self, round_id: str, records: list[Mapping], n_items: int,
                      audit: AuditEvent | None = None, quota: LinkQuota | None = None) -> list[Outcome]:
        gate = self._round_gate(round_id)
        if gate is not None:
            return [gate] * len(records)
        db = self.db
        outcomes: list[Outcome | None] = [None] * len(records)
        # No "$in" look-ups: FerretDB scans the collection for them. The unique _id
        # does the work; only ids that collide are read back, one by one.
        first = first_occurrences(records)

        # Link quotas (SPEC §14): a new response first claims its places; a replay claims none.
        quota_slots: dict[int, list[str]] = {}
        if quota is not None:
            for i in first.values():
                if self._stored_response(records[i]["response_id"]) is not None:
                    continue
                held, refusal = self._claim_quota(round_id, records[i], quota)
                if refusal is not None:
                    outcomes[i] = refusal
                else:
                    quota_slots[i] = held
        # A public response posted without a link fills a public place of its community too (counted, as
        # the embedded store counts every standing public response; never refused): one insert for the
        # batch, a place keyed by its response, so a replay's or a twin's collides and holds nothing new.
        unlinked: dict[int, str] = {}
        if quota is None:
            public = [i for i in first.values() if records[i]["respondent_type"] == "public"]
            places = [self._unlinked_place(round_id, records[i]["community_id"], records[i]["response_id"])
                      for i in public]
            collided = set(self._insert_many(db.quota_slots, places))
            unlinked = {i: places[j]["_id"] for j, i in enumerate(public) if j not in collided}

        # Household claims: one per (round, community, household hash), held by a standing response.
        claims = [(i, _household_key(round_id, records[i]["community_id"], records[i]["household_hash"]))
                  for i in first.values() if records[i].get("household_hash") and outcomes[i] is None]
        collided = set(self._insert_many(db.households, [{"_id": key, "response_id": records[i]["response_id"]}
                                                         for i, key in claims]))
        claimed_now = {i: key for j, (i, key) in enumerate(claims) if j not in collided}
        for j in sorted(collided):
            i, key = claims[j]
            settled = self._claim_taken(key, records[i]["response_id"])
            if settled == "claimed":
                claimed_now[i] = key
            elif settled == "refused":
                stored = self._stored_response(records[i]["response_id"])
                outcomes[i] = response_replay(stored, records[i], round_id) if stored else Outcome.HOUSEHOLD

        pending = [i for i in first.values() if outcomes[i] is None]
        docs = []
        for i in pending:
            doc = {k: v for k, v in records[i].items() if k != "levels"}
            doc.update(_id=records[i]["response_id"], round_id=round_id, seq=_seq(), voided_at=None,
                       levels=list(records[i]["levels"]), **anomaly_fields(records[i]))
            docs.append(doc)
        stored_before = {pending[j] for j in self._insert_many(db.responses, docs)}
        for i in pending:
            # stored before: a replay, a conflict, or a concurrent twin
            outcomes[i] = (response_replay(self._stored_response(records[i]["response_id"]), records[i], round_id)
                           if i in stored_before else Outcome.CREATED)
        for i, key in claimed_now.items():
            if outcomes[i] in (Outcome.VOIDED, Outcome.CONFLICT):  # its id is a voided or another response
                db.households.delete_one({"_id": key, "response_id": records[i]["response_id"]})
        for i, held in quota_slots.items():
            if outcomes[i] is not Outcome.CREATED:  # refused or a concurrent twin's: the places go back
                self._release_slots(held, records[i]["response_id"])
        for i, place in unlinked.items():
            # not stored now: the place goes back unless the response of that id stands here, public (a
            # twin stored it first, and its own insert of this place collided with this one)
            if outcomes[i] is not Outcome.CREATED:
                stored = db.responses.find_one({"_id": records[i]["response_id"]},
                                               {"round_id": 1, "community_id": 1, "respondent_type": 1, "voided_at": 1})
                if not stored or (stored["round_id"], stored["community_id"], stored["respondent_type"],
                                  stored["voided_at"]) != (round_id, records[i]["community_id"], "public", None):
                    db.quota_slots.delete_one({"_id": place})
        settle_repeats(records, outcomes, first)
        # counted before the answer: what was stored now, and what a replay finds stored (a writer that
        # stopped between the response and its journal entry left it uncounted)
        counted = [i for i in first.values() if outcomes[i] in (Outcome.CREATED, Outcome.DUPLICATE)]
        moved = self._journal(round_id, [journal_entry(records[i], 1) for i in counted],
                              maybe_present={records[i]["response_id"] for i in counted
                                             if outcomes[i] is Outcome.DUPLICATE})
        if moved or any(o is Outcome.CREATED for o in outcomes):
            self._bump("surveys")
        if audit is not None:  # no transactions here: written right after the data
            self.append_audit(audit.complete(outcomes))
        return outcomes

    @staticmethod
    def _response(doc: Mapping) -> dict:
        return with_void_fields({k: v for k, v in doc.items() if k not in ("_id", "cells", "seq", *ANOMALY_FIELDS)})

    def get_response(self, round_id: str, response_id: str) -> dict | None:
        doc = self.db.responses.find_one({"_id": response_id, "round_id": round_id})
        return self._response(doc) if doc else None

    def void_response(self, round_id: str, response_id: str, reason: str, key_id: str, at: str, n_items: int) -> Outcome:
        gate = self._round_gate(round_id, closed_ok=True)
        if gate is not None:
            return gate
        result = self.db.responses.update_one(
            {"_id": response_id, "round_id": round_id, "voided_at": None},
            {"$set": void_fields(at, reason, key_id)},
        )
        response = self.db.responses.find_one({"_id": response_id, "round_id": round_id},
                                              {"round_id": 1, "community_id": 1, "household_hash": 1,
                                               "respondent_type": 1, "levels": 1})
        if response is None:
            return Outcome.NOT_FOUND
        # after the void (also when voided before: completes a release lost to a crash)
        self._release_household(response)
        self.db.quota_slots.delete_one({"response_id": response_id, "kind": "public"})  # frees a public place
        # the voiding counted, after the response itself (journaled now if a crash left it out)
        record = {**response, "response_id": response_id}
        entries = [journal_entry(record, 1), journal_entry(record, -1)]
        moved = self._journal(round_id, entries, maybe_present={e["_id"] for e in entries})
        if result.modified_count or moved:
            self._bump("surveys")
        return Outcome.CHANGED if result.modified_count else Outcome.UNCHANGED

    # -- survey statistics: a journal per community and its heads --------------------------------------
    def _journal(self, round_id: str, entries: list[dict], maybe_present: Iterable[str] = ()) -> bool:
        """Count each of ``entries`` (:func:`journal_entry`) once in its community's statistics; True when
        a community's head moved.

        A community's entries are numbered 1, 2, … by the unique index one_position, so one insert both
        takes the next number and records what it counts, and the unique ``_id`` counts each response and
        each voiding once, whoever journals it (the writer, a replay, a recount). A writer reads the
        community's last head (its counts over entries 1..n), inserts its entries as n + 1, n + 2, … in one
        ordered insert (which stops at the first refusal, so no number is ever skipped), reads what others
        journaled when a number was taken, and inserts the head over everything up to its last entry before
        the write is answered. A head is the same whoever computes it, so heads are inserted, never updated,
        and the older ones deleted; readers take each community's highest. No transaction and no
        read-modify-write of a document: exact on FerretDB too.

        Entries of ``maybe_present`` may be journaled already (a replay): they are looked up first, and the
        head is brought up to them as well (a writer may have stopped between its entries and its head).
        Those look-ups and the reads after a taken number are the only reads of the journal; a write
        otherwise reads its communities' heads and inserts."""
        entries = list({e["_id"]: e for e in entries}.values())
        maybe_present = set(maybe_present)
        if not entries:
            return False
        floor: dict[str, int] = {}
        present = self._journal_positions([e["_id"] for e in entries if e["_id"] in maybe_present])
        for community_id, n in present.values():
            floor[community_id] = max(floor.get(community_id, 0), n)
        pending: dict[str, list[dict]] = {}
        for entry in entries:
            if entry["_id"] not in present:
                pending.setdefault(entry["community_id"], []).append(entry)
        communities = sorted(set(pending) | set(floor))
        if not communities:
            return False
        with contextlib.ExitStack() as held:
            for lock in self._journal_locks(round_id, communities):
                # the locks only save work (the journal is exact without them): a writer held up behind
                # one stuck in a slow database call goes on without it after a while
                if lock.acquire(timeout=JOURNAL_LOCK_WAIT_S):
                    held.callback(lock.release)
            return self._journal_in_order(round_id, communities, pending, floor)

    def _journal_in_order(self, round_id: str, communities: list[str], pending: dict[str, list[dict]],
                          floor: dict[str, int]) -> bool:
        """The numbering and heads of :meth:`_journal`, with this process's locks of ``communities`` held."""
        heads: dict[str, list[dict]] = {}
        query = {"round_id": round_id,
                 "community_id": communities[0] if len(communities) == 1 else {"$in": communities}}
        for doc in self.db.survey_heads.find(query):
            heads.setdefault(doc["community_id"], []).append(doc)
        last = {c: max(heads.get(c, []), key=lambda d: d["n"], default=None) for c in communities}
        # one ordered insert of every community's entries, each numbered after its last head: a refusal
        # stops it there, and each community's rest goes through _append
        numbered = [{**e, "round_id": round_id, "n": (last[c]["n"] if last[c] else 0) + 1 + k}
                    for c in communities for k, e in enumerate(pending.get(c, []))]
        journaled: dict[str, list[dict]] = {}
        for doc in numbered[:self._insert_in_order(numbered)]:
            journaled.setdefault(doc["community_id"], []).append(doc)
        moved, older = [], []
        for community_id in communities:
            done = journaled.get(community_id, [])
            head = self._append(round_id, community_id, pending.get(community_id, [])[len(done):],
                                last[community_id], floor.get(community_id, 0), done)
            if head is not None:
                moved.append(head)
                older += [d["_id"] for d in heads.get(community_id, []) if d["n"] < head["n"]]
        if not moved:
            return False
        self._insert_many(self.db.survey_heads, moved)  # one found there holds the same counts
        if older:
            self.db.survey_heads.delete_many({"_id": {"$in": older}})
        return True

    def _journal_locks(self, round_id: str, communities: list[str]) -> list[threading.Lock]:
        """This process's locks of ``communities``' journals, in one order (so two writers never wait on each
        other). A saving, not a guarantee: one process's writers to a community take its numbers one after
        another instead of asking for the same ones, and each refused number costs a read of what follows
        it (a scan of the whole journal on FerretDB). Writers in other processes still collide, which
        :meth:`_append` handles. A fixed set of locks, shared by hash, so that it never grows."""
        if self._stripes_pid != os.getpid():  # created after fork: a lock held at fork would stay held
            with self._lock:
                if self._stripes_pid != os.getpid():
                    self._stripes = [threading.Lock() for _ in range(JOURNAL_LOCKS)]
                    self._stripes_pid = os.getpid()
        stripes = self._stripes
        return [stripes[i] for i in sorted({hash((round_id, c)) % JOURNAL_LOCKS for c in communities})]

    def _insert_in_order(self, docs: list[dict]) -> int:
        """Insert journal entries in order until one is refused for a key taken: the index of the refused
        one (all before it are in), or ``len(docs)``.

        FerretDB 1.24 does not stop at the refused entry: it goes on to the end of its internal batch of
        100 and counts those in ``nInserted``. So the refused entry's index is taken from the error, not
        from ``nInserted``, and entries after it may be in the journal too: :meth:`_append` finds them
        where it reads what follows its position (and fills the number left free, :meth:`_fill_hole`)."""
        if not docs:
            return 0
        try:
            self.db.survey_journal.insert_many(docs, ordered=True)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e["code"] != DUPLICATE_KEY for e in errors):
                raise
            return min(e["index"] for e in errors)
        return len(docs)

    def _fill_hole(self, round_id: str, community_id: str, n: int, n_items: int) -> None:
        """Take number ``n`` of a community's journal with an entry that counts nothing, where it was left
        free while later numbers are taken (the refused entry of an insert FerretDB went on past; on
        MongoDB an ordered insert leaves none). A number taken meanwhile by a real entry is as good."""
        try:
            self.db.survey_journal.insert_one({
                "_id": f"hole|{round_id}|{community_id}|{n}", "round_id": round_id, "community_id": community_id,
                "respondent_type": "resident", "levels": [0] * (n_items + 1), "sign": 0, "n": n})
        except DuplicateKeyError:
            pass

    def _append(self, round_id: str, community_id: str, pending: list[dict], head: Mapping | None,
                floor: int, journaled: list[dict]) -> dict | None:
        """Journal one community's ``pending`` entries after ``head`` (its last head read, None before the
        first) and the entries ``journaled`` right after it, and reach entry ``floor`` at least; the head
        over the last entry, None when none was added."""
        journal = self.db.survey_journal
        start = head["n"] if head else 0
        position = start + len(journaled)
        added: list[Mapping] = list(journaled)

        def read_after() -> None:
            """What was journaled after ``position`` (by other writers, or entries of ours an insert stored
            past a refused one on FerretDB, which are dropped from ``pending``). Numbers are taken in order:
            a free number below a taken one stays free (see :meth:`_insert_in_order`) and is filled."""
            nonlocal position, pending
            query = {"round_id": round_id, "community_id": community_id, "n": {"$gt": position}}
            found = {d["n"]: d for d in journal.find(query)}
            if found and position + 1 not in found:
                sample = next(iter(found.values()))
                self._fill_hole(round_id, community_id, position + 1, len(sample["levels"]) - 1)
                found = {d["n"]: d for d in journal.find(query)}
            while position + 1 in found:
                position += 1
                added.append(found[position])
            ours = {d["_id"] for d in added}
            pending = [e for e in pending if e["_id"] not in ours]

        for _ in range(100):
            if position < floor:
                read_after()
                continue
            if not pending:
                break
            docs = [{**e, "round_id": round_id, "n": position + 1 + k} for k, e in enumerate(pending)]
            inserted = self._insert_in_order(docs)
            added += docs[:inserted]
            position += inserted
            pending = pending[inserted:]
            if not pending:
                continue
            there = journal.find_one({"_id": pending[0]["_id"]}, {"n": 1})
            if there is not None:  # journaled already at its own number (by a replay, a recount or a twin)
                pending = pending[1:]
                floor = max(floor, there["n"])
            else:  # its number was taken by another writer
                read_after()
        else:
            raise StoreError(f"survey statistics of community {community_id} are being written concurrently; "
                             "try again")
        if position == start:
            return None
        return _head_doc(round_id, community_id, position, _plus_entries(_head_tables(head) if head else {}, added))

    def _journal_positions(self, keys: list[str]) -> dict[str, tuple[str, int]]:
        """(community, number) of the journaled ones among ``keys``: a look-up by ``_id`` each for a few
        (FerretDB hands a filter on ``_id`` alone to SQLite), one ``$in`` query for more."""
        journal = self.db.survey_journal
        if len(keys) <= 4:
            docs = [journal.find_one({"_id": key}, {"community_id": 1, "n": 1}) for key in keys]
        else:
            docs = list(journal.find({"_id": {"$in": keys}}, {"community_id": 1, "n": 1}))
        return {d["_id"]: (d["community_id"], d["n"]) for d in docs if d is not None}

    def _heads(self, round_id: str) -> dict[str, list[dict]]:
        """Every head of the round, per community."""
        heads: dict[str, list[dict]] = {}
        for doc in self.db.survey_heads.find({"round_id": round_id}):
            heads.setdefault(doc["community_id"], []).append(doc)
        return heads

    def _complete_journal(self, round_id: str) -> bool:
        """Journal what the round's stored responses hold and its journal lacks (responses stored before the
        journal existed, or by a writer that stopped between a response and its entry), then bring each
        community's head up to all its entries, rebuilt from them where it is behind or disagrees. True
        when a head changed. Reads the round's responses and journal whole: run by recount, when a round
        closes and once for a round stored before the journal (:meth:`_journal_ready`)."""
        journal = self.db.survey_journal
        present = {d["_id"] for d in journal.find({"round_id": round_id}, {"_id": 1})}
        missing = []
        for doc in self.db.responses.find({"round_id": round_id}, {"community_id": 1, "respondent_type": 1,
                                                                   "levels": 1, "voided_at": 1}):
            record = {**doc, "response_id": doc["_id"]}
            for sign in (1, -1) if doc.get("voided_at") is not None else (1,):
                entry = journal_entry(record, sign)
                if entry["_id"] not in present:
                    missing.append(entry)
        changed = self._journal(round_id, missing)
        entries: dict[str, dict[int, dict]] = {}
        for doc in journal.find({"round_id": round_id}):
            entries.setdefault(doc["community_id"], {})[doc["n"]] = doc
        heads = self._heads(round_id)
        for community_id, numbered in entries.items():
            holes = set(range(1, max(numbered) + 1)) - set(numbered)
            if holes:  # numbers left free below taken ones (see _insert_in_order)
                n_items = len(next(iter(numbered.values()))["levels"]) - 1
                for n in sorted(holes):
                    self._fill_hole(round_id, community_id, n, n_items)
                numbered = {d["n"]: d for d in journal.find({"round_id": round_id, "community_id": community_id})}
            tail = 0
            while tail + 1 in numbered:
                tail += 1
            docs = heads.get(community_id, [])
            last = max(docs, key=lambda d: d["n"], default=None)
            if tail == 0 or (last is not None and last["n"] > tail):  # written since the journal was read
                continue
            want = _head_doc(round_id, community_id, tail, _plus_entries({}, (numbered[n] for n in range(1, tail + 1))))
            if last is None or any(last.get(field) != want[field] for field in ("n", "types", "responses", "counts")):
                self._upsert(self.db.survey_heads, want)  # the same counts whoever writes them
                changed = True
            older = [d["_id"] for d in docs if d["n"] < tail]
            if older:
                self.db.survey_heads.delete_many({"_id": {"$in": older}})
        return changed

    def _journal_ready(self, round_id: str) -> None:
        """Journal, once, the responses of a round stored before the journal existed (a round created since
        is marked so from the start)."""
        if round_id in self._journaled_rounds:
            return
        mark = f"survey_journal:{round_id}"
        if self.db.meta.find_one({"_id": mark}, {"_id": 1}) is None:
            if self._complete_journal(round_id):
                self._bump("surveys")
            self._upsert(self.db.meta, {"_id": mark, "value": 1})
        self._journaled_rounds.add(round_id)

    def _heads_by_id(self, ids: list[str]) -> list[dict]:
        """Heads by ``_id``: a look-up each for a few, one ``$in`` query for more (as _journal_positions)."""
        if len(ids) <= 8:
            found = (self.db.survey_heads.find_one({"_id": head_id}) for head_id in ids)
            return [doc for doc in found if doc is not None]
        return list(self.db.survey_heads.find({"_id": {"$in": ids}}))

    def survey_counts(self, round_id: str, n_items: int) -> RoundCounts:
        """The heads of the communities' journals (:meth:`_journal`): one query for each community's highest
        head number, then only the heads this process has not read yet, by ``_id``. After a write to one
        community a ranking reads that community's counts and the numbers, never a response."""
        self._journal_ready(round_id)
        cache = self._heads_cache.setdefault(round_id, {})
        for _ in range(10):
            latest: dict[str, tuple[int, str]] = {}
            for doc in self.db.survey_heads.find({"round_id": round_id}, {"community_id": 1, "n": 1}):
                if doc["n"] > latest.get(doc["community_id"], (0, ""))[0]:
                    latest[doc["community_id"]] = (doc["n"], doc["_id"])
            wanted = [head_id for c, (n, head_id) in latest.items() if cache.get(c, (None,))[0] != n]
            found = self._heads_by_id(wanted)
            for doc in found:
                cache[doc["community_id"]] = (doc["n"], _head_tables(doc))
            if len(found) == len(wanted):
                break
            # else a newer head replaced one of them meanwhile: read the numbers again
        else:
            raise StoreError(f"survey statistics of round {round_id} keep changing; try again")
        used = {c: cache[c] for c in latest}
        numbers = {c: n for c, (n, _) in used.items()}
        assembled = self._round_counts.get(round_id)
        if assembled is not None and assembled[0] == numbers and assembled[1].n_items == n_items:
            return assembled[1]
        tables: dict[tuple[str, str], CommunityCounts] = {}
        for community_id, (_, by_type) in used.items():
            for respondent_type, counts in _standing(by_type).items():
                if counts.counts.shape[0] != n_items + 1:
                    raise StoreError(f"survey statistics of round {round_id} have {counts.counts.shape[0] - 1} "
                                     f"items, not {n_items}")
                tables[(community_id, respondent_type)] = counts
        counts = RoundCounts.from_tables(n_items, tables)
        self._round_counts[round_id] = (numbers, counts)
        return counts

    def iter_responses(self, round_id: str) -> Iterator[dict]:
        for doc in self.db.responses.find({"round_id": round_id}).sort("seq", 1):
            yield self._response(doc)

    def count_responses(self, round_id: str, include_voided: bool = False) -> int:
        query: dict[str, Any] = {"round_id": round_id}
        if not include_voided:
            query["voided_at"] = None
        return self.db.responses.count_documents(query)

    # -- anomaly statistics (store.base.AnomalyFacts) ------------------------------------------
    def anomaly_candidates(self, round_id: str, excluded_keys: Iterable[str] = ()) -> AnomalyCandidates:
        """Hot marks counted inside the database over the marks each response document keeps (one
        ``$unwind``/``$group`` that returns only groups of two or more), then the responses of the hot
        ones; cached per round, keyed by the survey generation read first (see the module docstring).
        Voiding needs no bookkeeping: only standing documents are counted."""
        excluded = sorted(set(excluded_keys))
        token = self.generation("surveys")
        cached = self._anomaly_cache.get((round_id, tuple(excluded)))
        if cached is not None and cached[0] == token:
            return cached[1]
        responses = self.db.responses
        standing = {"round_id": round_id, "voided_at": None}
        hot = sorted(row["_id"] for row in responses.aggregate([
            {"$match": standing}, {"$unwind": "$marks"}, {"$group": {"_id": "$marks", "n": {"$sum": 1}}},
            {"$match": {"n": {"$gt": 1}}}]) if row["n"] > MARK_LIMITS[row["_id"].partition("|")[0]])
        kinds: dict[str, set[str]] = {"minute": set(), "window": set(), "device": set()}
        for mark in hot:
            kind, parts = parse_mark(mark)
            if not (kind == "minute" and parts[0] in excluded):
                kinds[kind].add(mark)
        found: dict[str, list[dict]] = {kind: [] for kind in ("straight", *kinds)}
        wanted = [m for marks in kinds.values() for m in marks]
        for doc in responses.find({**standing, "$or": [{"marks": {"$in": wanted}}, {"straight": {"$ne": None}}]}
                                  ).sort("seq", 1):
            marks = set(doc.get("marks") or ())
            if doc.get("straight") is not None:
                found["straight"].append(doc)
            for kind, of_kind in kinds.items():
                if marks & of_kind and not (kind == "window" and doc.get("key_id") in excluded):
                    found[kind].append(doc)

        def first_seq(query: dict, doc: Mapping) -> int:
            first = responses.find_one({**standing, **query}, {"seq": 1}, sort=[("seq", 1)])
            return first["seq"] if first else doc["seq"]  # None: voided since it was read

        burst_first: dict[tuple, int] = {}
        for doc in found["minute"]:
            key = (doc.get("key_id"), doc["community_id"])
            if key not in burst_first:
                burst_first[key] = first_seq({"key_id": key[0], "community_id": key[1]}, doc)
        not_excluded = {"key_id": {"$nin": excluded}} if excluded else {}
        content_first: dict[str, int] = {}
        for doc in found["window"]:
            if doc["content_key"] not in content_first:
                content_first[doc["content_key"]] = first_seq({"content_key": doc["content_key"], **not_excluded}, doc)
        candidates = AnomalyCandidates(
            straight=[self._response(d) for d in found["straight"]],
            bursts=[self._response(d) for d in found["minute"]], burst_first=burst_first,
            duplicates=[self._response(d) for d in found["window"]],
            duplicate_first={d["_id"]: content_first[d["content_key"]] for d in found["window"]},
            devices=[self._response(d) for d in found["device"]])
        self._anomaly_cache[(round_id, tuple(excluded))] = (token, candidates)
        return candidates

    def _recount_anomalies(self, round_id: str | None, fix: bool) -> list[dict]:
        """The anomaly facts each response document keeps, against those of its content (all rounds'
        documents without them when ``round_id`` is None); a fix sets them (a value computed from the
        document alone, so a repeated or concurrent fix writes the same)."""
        query = {"round_id": round_id} if round_id is not None else {"marks": {"$exists": False}}
        differences = []
        for doc in self.db.responses.find(query, {"cells": 0, "levels": 0}):
            want = anomaly_fields(doc)
            kept = {name: doc.get(name) for name in ANOMALY_FIELDS}
            if kept != want:
                differences.append({"statistic": "anomalies", "response_id": doc["_id"], "kept_facts": kept,
                                    "raw_facts": want})
                if fix:
                    self.db.responses.update_one({"_id": doc["_id"]}, {"$set": want})
        return differences

    # -- inspections -------------------------------------------------------------
    def add_inspection(self, record: Mapping) -> Outcome:
        gate = self._round_gate(record["round_id"])
        if gate is not None:
            return gate
        version = _encode_version(record["versions"][0])
        iid = record["inspection_id"]
        doc = {**version, "_id": f"{iid}:1", "inspection_id": iid, "round_id": record["round_id"], "version": 1}
        outcome = Outcome.CREATED
        try:
            self.db.inspection_versions.insert_one(doc)
        except DuplicateKeyError:
            first = self.db.inspection_versions.find_one({"_id": f"{iid}:1"}, {"round_id": 1, "content_hash": 1})
            outcome = replay_outcome(first["content_hash"], version["content_hash"],
                                     same_round=first["round_id"] == record["round_id"])
            if outcome is Outcome.CONFLICT:
                return outcome
        try:  # the header: also completes a header lost to a crash after the version was written
            self.db.inspections.insert_one({
                "_id": iid, "round_id": record["round_id"], "community_id": record["community_id"],
                "agency_id": record["agency_id"], "seq": _seq(),
            })
        except DuplicateKeyError:
            pass
        if outcome is Outcome.CREATED:
            self._bump("inspections")
        return outcome

    def _versions(self, inspection_id: str) -> list[dict]:
        cursor = self.db.inspection_versions.find({"inspection_id": inspection_id}).sort("version", 1)
        return [_decode_version(d) for d in cursor]

    def amend_inspection(self, round_id: str, inspection_id: str, version: Mapping, agency_id: str | None) -> Outcome:
        header = self.db.inspections.find_one({"_id": inspection_id, "round_id": round_id})
        refusal = amendment_refusal(header, version, agency_id) or self._round_gate(round_id)
        if refusal is not None:
            return refusal
        for _ in range(10):
            current = self._versions(inspection_id)[-1]
            if same_as_current(current, version):
                return Outcome.DUPLICATE
            number = current["version"] + 1
            try:
                # version numbers are unique _ids: two concurrent amendments cannot both be version n+1
                self.db.inspection_versions.insert_one({
                    **_encode_version(version), "_id": f"{inspection_id}:{number}", "inspection_id": inspection_id,
                    "round_id": round_id, "version": number,
                })
            except DuplicateKeyError:
                continue
            self._bump("inspections")
            return Outcome.CREATED
        raise StoreError(f"inspection {inspection_id} is being amended concurrently; try again")

    def get_inspection(self, round_id: str, inspection_id: str) -> dict | None:
        header = self.db.inspections.find_one({"_id": inspection_id, "round_id": round_id})
        if header is None:
            return None
        versions = self._versions(inspection_id)
        return {**_plain(header, "inspection_id"), "version": versions[-1]["version"], "versions": versions}

    def _current_versions(self, round_id: str, fields: dict | None = None) -> list[tuple[dict, dict]]:
        """(header, current version document) of every inspection of the round, in arrival order."""
        headers = {d["_id"]: d for d in self.db.inspections.find({"round_id": round_id})}
        latest: dict[str, dict] = {}
        for doc in self.db.inspection_versions.find({"round_id": round_id}, fields):
            iid = doc["inspection_id"]
            if iid in headers and (iid not in latest or doc["version"] > latest[iid]["version"]):
                latest[iid] = doc
        return sorted(((headers[iid], doc) for iid, doc in latest.items()), key=lambda pair: pair[0]["seq"])

    def current_inspections(self, round_id: str) -> list[dict]:
        return [{**_decode_version(doc), "inspection_id": header["_id"], "seq": header["seq"],
                 "community_id": header["community_id"], "agency_id": header["agency_id"]}
                for header, doc in self._current_versions(round_id)]

    def inspection_sums(self, round_id: str, n_items: int, stage: str = DEFAULT_STAGE) -> InspectionRows:
        fields = {"inspection_id": 1, "version": 1, "inspected_at": 1, "item_points": 1, "item_max": 1, "vetoes": 1,
                  "stage": 1}
        # The stage of the current version decides (an amendment may correct it); none stored = acceptance.
        pairs = [(h, d) for h, d in self._current_versions(round_id, fields)
                 if (d.get("stage") or DEFAULT_STAGE) == stage]
        shape = (len(pairs), n_items)
        return InspectionRows(
            community_ids=[h["community_id"] for h, _ in pairs],
            agency_ids=[h["agency_id"] for h, _ in pairs],
            seq=[h["seq"] for h, _ in pairs],
            inspected_at=[d["inspected_at"] for _, d in pairs],
            points=np.array([d["item_points"] for _, d in pairs], dtype=np.float64).reshape(shape),
            maxima=np.array([d["item_max"] for _, d in pairs], dtype=np.float64).reshape(shape),
            vetoes=[list(d.get("vetoes", [])) for _, d in pairs],
        )

    # -- milestones -------------------------------------------------------------------
    def add_milestone_version(self, record: Mapping, check: MilestoneCheck | None = None) -> Outcome:
        """Insert-only, one document per version carrying two unique numbers: n, the community's next
        (index one_slot), and seq, the round's next (in its ``_id``).

        Two writers of one community that read the same versions both try its n: one wins, the other
        reads again, so its check and version number see the winner. Writers of any community take
        seq = the last seq + 1, and the one that finds it taken looks for the last again: so seq s is
        only ever written after s - 1 was, and the round's versions are numbered 1, 2, … without a gap,
        in the order they were written. Exact without transactions (one insert decides both)."""
        round_id, community_id = record["round_id"], record["community_id"]
        collection = self.db.milestone_versions
        for _ in range(20):
            docs = list(collection.find({"round_id": round_id, "community_id": community_id}))
            version = next_milestone_version(latest_by_code(docs), record, check)
            if version is None:
                return Outcome.DUPLICATE
            number = max((d["n"] for d in docs), default=0) + 1
            # False: not the seq but the community's n was taken by another writer: read again
            if self._insert_numbered(collection, round_id, {**version, "n": number}):
                self._bump("milestones")
                return Outcome.CREATED
        raise StoreError(f"milestones of community {community_id} are being written concurrently; try again")

    @staticmethod
    def _milestone(doc: Mapping) -> dict:
        return {k: v for k, v in doc.items() if k not in ("_id", "n", "seq")}

    def milestone_changes(self, round_id: str, after: int | None = None,
                          limit: int | None = None) -> tuple[list[dict], int]:
        """The cursor is a seq. Since seq s is written only after s - 1 (see add_milestone_version),
        the versions after the cursor are found by looking up ``_id`` s = cursor + 1, + 2, … until one
        is missing: every version acknowledged before that look-up has a smaller seq. A long run (and
        the first read) is read with range queries instead; one may miss a version written while it
        runs and still see a later one: the gap is then looked up, as it was written before the later
        one. Versions stored before seq existed come with the first call of a chain."""
        return self._feed_changes(self.db.milestone_versions, round_id, after, limit, shape=self._milestone)

    def milestone_versions(self, round_id: str, community_id: str) -> list[dict]:
        cursor = self.db.milestone_versions.find({"round_id": round_id, "community_id": community_id})
        return sorted((self._milestone(d) for d in cursor), key=lambda v: (v["code"], v["version"]))

    def current_milestones(self, round_id: str) -> list[dict]:
        latest: dict[tuple[str, str], dict] = {}
        for doc in self.db.milestone_versions.find({"round_id": round_id}):
            key = (doc["community_id"], doc["code"])
            if key not in latest or doc["version"] > latest[key]["version"]:
                latest[key] = doc
        return [self._milestone(latest[key]) for key in sorted(latest)]

    # -- funding ledger (SPEC §12) ---------------------------------------------------
    def _bump_funding(self) -> None:
        """Only the "funding" token: money changes no score, so cached results stay valid."""
        self._upsert(self.db.meta, {"_id": "generation:funding", "token": uuid.uuid4().hex})

    def put_funding(self, record: Mapping, check: FundingCheck | None = None) -> Outcome:
        """Insert-only, one document per version carrying two unique numbers, as milestone versions:
        the community's next version (index one_funding_version) and the round's next seq (in its
        ``_id``). Two writers that read the same current version both try that number; one wins and
        the other reads again, so its check and version number see the winner; seq s is only written
        after s - 1 (see :meth:`_insert_numbered`)."""
        round_id, community_id = record["round_id"], record["community_id"]
        collection = self.db.funding_versions
        for _ in range(20):
            current = collection.find_one({"round_id": round_id, "community_id": community_id},
                                          sort=[("version", -1)])
            version = next_funding_version(_unnumbered(current), record, check)
            if version is None:
                return Outcome.DUPLICATE
            if self._insert_numbered(collection, round_id, version):
                self._bump_funding()
                return Outcome.CREATED
        raise StoreError(f"funding of community {community_id} is being written concurrently; try again")

    def _insert_numbered(self, collection, round_id: str, document: Mapping) -> bool:
        """Insert ``document`` with the round's next seq in ``collection`` (``_id`` "<round>#<seq>"):
        True once inserted, False when another unique index refused it. The writer that finds its seq
        taken looks for the last again, so the round's documents are numbered 1, 2, … without a gap in
        the order they were written."""
        for attempt in range(100):
            seq = self._last_feed_seq(collection, round_id) + 1
            try:
                collection.insert_one({**document, "_id": _milestone_id(round_id, seq), "seq": seq})
            except DuplicateKeyError:
                if collection.find_one({"_id": _milestone_id(round_id, seq)}, {"_id": 1}) is None:
                    return False  # not the seq: another unique key
                if attempt >= 3:  # many writers at once: let them through
                    time.sleep(random.uniform(0, 0.001 * attempt))
                continue
            key = (collection.name, round_id)
            self._feed_seq[key] = max(seq, self._feed_seq.get(key, 0))
            return True
        raise StoreError(f"{collection.name} of round {round_id} are being written concurrently; try again")

    def _last_feed_seq(self, collection, round_id: str) -> int:
        """The highest seq of the round's documents in ``collection``, by look-ups of ``_id`` (as
        a doubling search from a seq known to exist, then a bisection: O(log) look-ups, since the seqs
        written are 1..last).

        A filter on ``_id`` alone is the only query FerretDB 1.24 (SQLite backend) hands to SQLite;
        any other filter, range or sort is applied in Go after decoding every document of the
        collection (about 15 times slower here). SQLite still scans for it (FerretDB's ``_id`` index
        is on ``->"_id"``, the filter reads ``->'$._id'``) and stops at the first match, so a look-up
        costs up to one scan of the table; on MongoDB it is one index look-up."""
        def exists(seq: int) -> bool:
            return seq == 0 or collection.find_one({"_id": _milestone_id(round_id, seq)}, {"_id": 1}) is not None

        key = (collection.name, round_id)
        low = self._feed_seq.get(key, 0)
        if not exists(low):
            low = 0  # the database was replaced under this process
        step = 1
        while exists(low + step):
            low, step = low + step, step * 2
        high = low + step
        while high - low > 1:
            middle = (low + high) // 2
            if exists(middle):
                low = middle
            else:
                high = middle
        self._feed_seq[key] = max(low, self._feed_seq.get(key, 0))
        return low

    def _feed_changes(self, collection, round_id: str, after: int | None, limit: int | None,
                      shape: Callable[[Mapping], dict] = _unnumbered) -> tuple[list[dict], int]:
        """The change feed of ``collection`` for a round, as :meth:`milestone_changes`: ``_id`` look-ups
        of seq cursor + 1, + 2, … until one is missing, range queries for long runs (and the first
        read), a gap looked up; documents stored before seq existed come with the first call."""
        unnumbered: list[dict] = []
        probes = 0
        if after is None:
            after, probes = 0, MILESTONE_PROBES  # start with a range query
            unnumbered = list(collection.find({"round_id": round_id, "seq": {"$exists": False}}))
        wanted = float("inf") if limit is None else int(limit)
        found: dict[int, dict] = {}
        cursor = after
        while True:
            while cursor + 1 in found and cursor - after < wanted:
                cursor += 1
            if cursor - after >= wanted:
                break
            if probes >= MILESTONE_PROBES:
                query = collection.find({"round_id": round_id, "seq": {"$gt": cursor}})
                if limit is not None:
                    query = query.sort("seq", ASCENDING).limit(int(wanted - (cursor - after)))
                for doc in query:
                    found.setdefault(doc["seq"], doc)
                probes = 0
                continue
            doc = collection.find_one({"_id": _milestone_id(round_id, cursor + 1)})
            if doc is None:
                break
            found[cursor + 1] = doc
            probes += 1
        key = (collection.name, round_id)
        self._feed_seq[key] = max(cursor, self._feed_seq.get(key, 0))
        ordered = unnumbered + [found[s] for s in range(after + 1, cursor + 1)]
        return [shape(d) for d in ordered], cursor

    def funding_changes(self, round_id: str, after: int | None = None,
                        limit: int | None = None) -> tuple[list[dict], int]:
        return self._feed_changes(self.db.funding_versions, round_id, after, limit)

    def disbursement_changes(self, round_id: str, after: int | None = None,
                             limit: int | None = None) -> tuple[list[dict], int]:
        return self._feed_changes(self.db.disbursements, round_id, after, limit)

    def funding_versions(self, round_id: str, community_id: str) -> list[dict]:
        cursor = self.db.funding_versions.find({"round_id": round_id, "community_id": community_id})
        return sorted((_unnumbered(d) for d in cursor), key=lambda v: v["version"])

    def current_funding(self, round_id: str) -> list[dict]:
        latest: dict[str, dict] = {}
        for doc in self.db.funding_versions.find({"round_id": round_id}):
            key = doc["community_id"]
            if key not in latest or doc["version"] > latest[key]["version"]:
                latest[key] = doc
        return [_unnumbered(latest[key]) for key in sorted(latest)]

    def add_disbursement(self, record: Mapping) -> Outcome:
        """Insert-only with the round's next seq (``_id`` "<round>#<seq>", see :meth:`_insert_numbered`),
        a unique ``disbursement_id`` and a unique (round, community, tranche): whichever key a
        concurrent writer collides on, the stored document decides the outcome."""
        if not self._insert_numbered(self.db.disbursements, record["round_id"], record):
            same_id = self.db.disbursements.find_one({"disbursement_id": record["disbursement_id"]})
            if same_id is not None:
                return replay_outcome(same_id["content_hash"], record["content_hash"])
            return Outcome.ALREADY_PAID
        self._bump_funding()
        return Outcome.CREATED

    def get_disbursement(self, disbursement_id: str) -> dict | None:
        return _unnumbered(self.db.disbursements.find_one({"disbursement_id": disbursement_id}))

    def disbursements(self, round_id: str, community_id: str | None = None) -> list[dict]:
        query = {"round_id": round_id, **({"community_id": community_id} if community_id is not None else {})}
        return sorted((_unnumbered(d) for d in self.db.disbursements.find(query)),
                      key=lambda d: (d["community_id"], d["tranche"]))

    # -- rectification (SPEC §13) ------------------------------------------------------
    def inspection_version_numbers(self, round_id: str) -> dict[str, int]:
        headers = {d["_id"] for d in self.db.inspections.find({"round_id": round_id}, {"_id": 1})}
        numbers: dict[str, int] = {}
        for doc in self.db.inspection_versions.find({"round_id": round_id}, {"inspection_id": 1, "version": 1}):
            iid = doc["inspection_id"]
            if iid in headers:  # a version whose header a crash lost is not an inspection yet (as current_inspections)
                numbers[iid] = max(numbers.get(iid, 0), int(doc["version"]))
        return numbers

    def inspection_histories(self, round_id: str, inspection_ids: Iterable[str] | None = None) -> list[dict]:
        query: dict[str, Any] = {"round_id": round_id}
        if inspection_ids is not None:
            query["_id"] = {"$in": sorted(set(inspection_ids))}
        headers = {d["_id"]: d for d in self.db.inspections.find(query)}
        if inspection_ids is not None:
            query = {"round_id": round_id, "inspection_id": {"$in": sorted(headers)}}
        versions = []
        for doc in self.db.inspection_versions.find(query):
            header = headers.get(doc["inspection_id"])
            if header is not None:
                versions.append({**_decode_version(doc), "community_id": header["community_id"],
                                 "agency_id": header["agency_id"]})
        return sorted(versions, key=lambda v: (v["inspection_id"], v["version"]))

    def add_rectification_response(self, record: Mapping) -> Outcome:
        """Insert-only with the round's next seq (``_id`` "<round>#<seq>", see :meth:`_insert_numbered`) and
        a unique ``response_id``: a writer that collides on the id finds the stored response and compares."""
        collection = self.db.rectification_responses
        if not self._insert_numbered(collection, record["round_id"], record):
            stored = collection.find_one({"response_id": record["response_id"]})
            return replay_outcome(stored["content_hash"], record["content_hash"])
        self._upsert(self.db.meta, {"_id": "generation:rectifications", "token": uuid.uuid4().hex})
        return Outcome.CREATED

    def get_rectification_response(self, response_id: str) -> dict | None:
        return _unnumbered(self.db.rectification_responses.find_one({"response_id": response_id}))

    def rectification_responses(self, round_id: str, item_id: str | None = None) -> list[dict]:
        query = {"round_id": round_id, **({"item_id": item_id} if item_id is not None else {})}
        docs = sorted(self.db.rectification_responses.find(query), key=lambda d: d.get("seq", 0))
        return [_unnumbered(d) for d in docs]

    def rectification_response_changes(self, round_id: str, after: int | None = None,
                                       limit: int | None = None) -> tuple[list[dict], int]:
        return self._feed_changes(self.db.rectification_responses, round_id, after, limit)

    # -- attachments (SPEC §13) ----------------------------------------------------------
    def _bucket(self, thumbnail: bool = False) -> GridFSBucket:
        return GridFSBucket(self.db, bucket_name=THUMBNAIL_BUCKET if thumbnail else ATTACHMENT_BUCKET)

    def put_attachment(self, record: Mapping, data: bytes, thumbnail: bytes | None) -> Outcome:
        """The bytes go into GridFS as new files (ids of their own, file name the hash), then the record,
        whose ``_id`` is the hash, names them. Of two writers of one new hash the first record wins and
        the other deletes its own files, so a record always names complete files; a crash in between
        leaves files that no record names, never read."""
        sha256 = record["sha256"]
        outcome = Outcome.DUPLICATE
        if self.db.attachment_records.find_one({"_id": sha256}, {"_id": 1}) is None:
            file_id = self._bucket().upload_from_stream(sha256, data,
                                                         metadata={"content_type": record["content_type"]})
            thumb_id = None if thumbnail is None else self._bucket(thumbnail=True).upload_from_stream(
                sha256, thumbnail, metadata={"content_type": "image/jpeg"})
            try:
                self.db.attachment_records.insert_one({**record, "_id": sha256, "file_id": file_id,
                                                       "thumb_id": thumb_id})
                outcome = Outcome.CREATED
            except DuplicateKeyError:  # another writer stored the same bytes first
                self._bucket().delete(file_id)
                if thumb_id is not None:
                    self._bucket(thumbnail=True).delete(thumb_id)
        self._grant(sha256, [f"key:{record['uploaded_by']}"])
        return outcome

    def _grant(self, sha256: str, grants: Iterable[str]) -> None:
        self._insert_many(self.db.attachment_access,
                          [{"_id": f"{sha256}|{grant}", "sha256": sha256} for grant in grants])

    def get_attachment(self, sha256: str) -> dict | None:
        doc = self.db.attachment_records.find_one({"_id": sha256})
        return None if doc is None else {k: v for k, v in doc.items() if k not in ("_id", "file_id", "thumb_id")}

    def attachment_bytes(self, sha256: str, thumbnail: bool = False) -> bytes | None:
        doc = self.db.attachment_records.find_one({"_id": sha256}, {"file_id": 1, "thumb_id": 1})
        file_id = None if doc is None else doc.get("thumb_id" if thumbnail else "file_id")
        if file_id is None:
            return None
        try:
            return self._bucket(thumbnail).open_download_stream(file_id).read()
        except NoFile:
            return None

    def add_attachment_uploader(self, sha256: str, key_id: str) -> None:
        self._grant(sha256, [f"key:{key_id}"])

    def add_attachment_refs(self, refs: list[Mapping]) -> None:
        refs = [attachment_ref(ref) for ref in refs]
        # the grants first: a reference is never seen without the reading it allows
        for ref in refs:
            self._grant(ref["sha256"], attachment_grants(ref))
        self._insert_many(self.db.attachment_refs, [
            {**ref, "_id": f"{ref['sha256']}|{ref['source']}|{ref['source_id']}"} for ref in refs])

    def attachment_refs(self, sha256: str) -> list[dict]:
        return sorted((_plain(d) for d in self.db.attachment_refs.find({"sha256": sha256})),
                      key=lambda r: (r["round_id"], r["source"], r["source_id"]))

    def round_attachment_refs(self, round_id: str) -> list[dict]:
        return sorted((_plain(d) for d in self.db.attachment_refs.find({"round_id": round_id})),
                      key=lambda r: (r["sha256"], r["source"], r["source_id"]))

    def attachment_access(self, sha256: str, grants: Iterable[str]) -> bool:
        # one look-up by _id each (FerretDB hands only a filter on _id alone to its backend)
        return any(self.db.attachment_access.find_one({"_id": f"{sha256}|{grant}"}, {"_id": 1}) is not None
                   for grant in grants)

    # -- survey links (SPEC §14) -------------------------------------------------------
    def create_survey_link(self, record: Mapping[str, Any]) -> None:
        doc = {"created_by": None, "revoked_at": None, **record}
        doc["_id"] = doc.pop("link_id")
        self.db.survey_links.insert_one(doc)

    def get_survey_link(self, link_id: str) -> dict | None:
        return _plain(self.db.survey_links.find_one({"_id": link_id}), "link_id")

    def list_survey_links(self, round_id: str, community_id: str | None = None) -> list[dict]:
        query = {"round_id": round_id} if community_id is None else {"round_id": round_id,
                                                                     "community_id": community_id}
        return sorted((_plain(d, "link_id") for d in self.db.survey_links.find(query)),
                      key=lambda d: (d["community_id"], d["created_at"], d["link_id"]))

    def revoke_survey_link(self, link_id: str, at: str) -> bool:
        if self.db.survey_links.find_one({"_id": link_id}, {"_id": 1}) is None:
            return False
        self.db.survey_links.update_one({"_id": link_id, "revoked_at": None}, {"$set": {"revoked_at": at}})
        return True

    def append_audit(self, event: Mapping) -> None:
        self.db.audit.insert_one({**event, "seq": _seq()})

    def list_audit(self, filters: Mapping[str, Any], limit: int) -> list[dict]:
        query: dict[str, dict] = {}
        for name, operator, value in audit_conditions(filters):
            query.setdefault(name, {})[_OPERATORS[operator]] = value
        return [_plain(d) for d in self.db.audit.find(query).sort("seq", 1).limit(int(limit))]

    # -- maintenance ----------------------------------------------------------------
    def recount(self, round_id: str, n_items: int, fix: bool = True) -> list[dict]:
        """Count raw responses in Python and compare with the kept statistics (each community's last head);
        a fix journals what the journal lacks and rebuilds the heads from it (:meth:`_complete_journal`)."""
        raw = tally(((d["community_id"], d["respondent_type"], d["levels"]) for d in self.db.responses.find(
            {"round_id": round_id, "voided_at": None}, {"community_id": 1, "respondent_type": 1, "levels": 1})), n_items)
        kept = {(community_id, respondent_type): counts
                for community_id, docs in self._heads(round_id).items()
                for respondent_type, counts in _standing(_head_tables(max(docs, key=lambda d: d["n"]))).items()}
        differences = count_differences(raw, kept, n_items)
        if fix and differences and self._complete_journal(round_id):
            self._bump("surveys")
        return differences + self._recount_anomalies(round_id, fix)
