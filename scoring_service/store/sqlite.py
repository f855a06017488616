"""SQLite store: the embedded default (standard library, WAL, synchronous=FULL).

Every write is one ``BEGIN IMMEDIATE`` transaction, so several gunicorn
workers serialise their writes on the database lock and each acknowledged
write is on disk (``synchronous=FULL``) before the response leaves. Survey
statistics are kept as one counts blob per (round, community, respondent
type), updated in the same transaction as the responses they count.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import re
import sqlite3
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

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
    TableKey,
    amendment_refusal,
    attachment_grants,
    attachment_ref,
    audit_conditions,
    count_differences,
    first_occurrences,
    hot_marks,
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
    tally,
    void_fields,
    with_void_fields,
)

#: tables and indexes, idempotent (run by :meth:`SQLiteStore.init`)
SCHEMA = resources.files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")

#: columns added after the first schema: (table, column, declaration). ``CREATE TABLE IF NOT EXISTS``
#: leaves an older file's tables as they were, so :meth:`SQLiteStore.init` adds what they lack.
ADDED_COLUMNS = (
    ("keys", "district_id", "TEXT"),
    ("inspection_versions", "stage", "TEXT NOT NULL DEFAULT 'acceptance'"),
    ("milestone_versions", "seq", "INTEGER"),
    ("funding_versions", "seq", "INTEGER"),
    ("disbursements", "seq", "INTEGER"),
    ("responses", "link_id", "TEXT"),
    ("responses", "address_hash", "TEXT"),
    ("responses", "device_id", "TEXT"),
    ("responses", "key_id", "TEXT"),
    ("responses", "received_minute", "INTEGER"),
    ("responses", "content_key", "TEXT"),
    ("responses", "content_window", "INTEGER"),
    ("responses", "straight_level", "INTEGER"),
)

#: the anomaly facts of a response (AnomalyFacts) in its row: columns and values
FACT_COLUMNS = ("key_id", "received_minute", "content_key", "content_window", "straight_level")


def _fact_values(facts: AnomalyFacts) -> tuple:
    return facts.key_id, facts.minute, facts.content, facts.window, facts.straight


#: how the standing responses of a mark are found: (condition, how its parts become parameters)
_MARK_ROWS = {
    "minute": ("key_id IS ? AND community_id = ? AND received_minute IN (?, ?)",
               lambda key, community, p: (key, community, p, p + 1)),
    "window": ("content_key = ? AND content_window IN (?, ?)", lambda content, p: (content, p, p + 1)),
    "device": ("community_id = ? AND device_id = ?", lambda community, device: (community, device)),
}

#: the same conditions over the columns of a VALUES table ``m`` (one row per mark: its parts as v0, v1, …)
_MARK_GROUPED = {
    "minute": "key_id IS m.v0 AND community_id = m.v1 AND received_minute IN (m.v2, m.v2 + 1)",
    "window": "content_key = m.v0 AND content_window IN (m.v1, m.v1 + 1)",
    "device": "community_id = m.v0 AND device_id = m.v1",
}


@functools.lru_cache(maxsize=64)
def _mark_sql(kind: str, width: int, rows: int) -> str:
    """For ``rows`` marks of ``kind`` (``width`` parts each) given as (n, mark, parts…) and then the round
    twice: (n, hot, kept) of each mark: hot when a standing response lies beyond its limit, kept when
    anomaly_marks holds it."""
    columns = ", ".join(f"v{i}" for i in range(width))
    values = ", ".join([f"({', '.join('?' * (width + 2))})"] * rows)
    return (f"WITH m(n, mark, {columns}) AS (VALUES {values}) SELECT n,"
            f" EXISTS (SELECT 1 FROM responses WHERE round_id = ? AND {_MARK_GROUPED[kind]}"
            f" AND voided_at IS NULL LIMIT 1 OFFSET {MARK_LIMITS[kind]:d}),"
            " EXISTS (SELECT 1 FROM anomaly_marks AS a WHERE a.round_id = ? AND a.mark = m.mark) FROM m")


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


def _stored_parts(record: Mapping) -> tuple[str, str, AnomalyFacts, list[str]]:
    """What storing a response writes besides its plain columns: its levels and body as JSON, its anomaly
    facts and their marks (made before the write lock is taken)."""
    facts = AnomalyFacts.of(record)
    return (_dumps(list(record["levels"])), _dumps({k: v for k, v in record.items() if k != "levels"}), facts,
            facts.marks())


class _ArrayRows:
    """Rows of one shape and dtype filled one at a time into an array sized up front (the count of a
    query), grown when more rows come than were counted (rows written between the count and the read)."""

    def __init__(self, shape: tuple[int, ...], dtype, expected: int):
        self._rows = np.empty((expected, *shape), dtype=dtype)
        self._n = 0

    def _next(self) -> int:
        if self._n == len(self._rows):
            self._rows = np.concatenate([self._rows, np.empty_like(self._rows[:max(1, self._n)])])
        self._n += 1
        return self._n - 1

    def add(self, value) -> None:
        r = self._next()  # before reading self._rows, which growing replaces
        self._rows[r] = value

    def add_bytes(self, blob: bytes) -> None:
        """A row given as its array's bytes (ValueError when their size is not one row's)."""
        r = self._next()
        row = self._rows[r]
        row[...] = np.frombuffer(blob, dtype=self._rows.dtype).reshape(row.shape)

    def array(self) -> np.ndarray:
        return self._rows if self._n == len(self._rows) else self._rows[:self._n].copy()


def _create_private(path: str) -> None:
    """Create the database file for its owner only (0600) unless it exists: it holds key and
    household hashes. SQLite gives the ``-wal`` and ``-shm`` files the database file's mode."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(folder: Path) -> None:
    """Create ``folder`` and its missing parents (owner only), each new entry fsynced into its parent."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for new in reversed(missing):
        try:
            new.mkdir(mode=0o700)
        except FileExistsError:  # another worker made it meanwhile
            continue
        _fsync_dir(new.parent)


def write_durably(path: Path, data: bytes) -> None:
    """Write ``path`` so that after a crash it is either whole or absent: a temporary file in the same
    folder, written and fsynced, renamed over ``path``, then the folder fsynced (the rename itself)."""
    _make_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


@contextmanager
def immediate_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``: the write lock is taken first, so concurrent writers wait on
    the busy timeout instead of failing to upgrade a read; any exception rolls everything back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class _Ticket:
    """One write submitted to a :class:`GroupCommit`: its work, then its value or error."""

    __slots__ = ("work", "value", "error", "finished", "batch")

    def __init__(self, work: Callable[[sqlite3.Connection], Any], batch: tuple | None = None):
        self.work = work
        #: a survey write's (round_id, records, n_items, audit, quota, prepared): what lets a group's
        #: writes run as one batch (:meth:`SQLiteStore._write_merged`); None for any other work
        self.batch = batch
        self.value: Any = None
        self.error: BaseException | None = None
        self.finished = False


class GroupCommit:
    """Group commit: writes that concurrent threads of one process submit share one transaction, so one
    fsync (``synchronous=FULL``), and each is acknowledged only once that transaction is on disk.

    The first thread to find no commit running leads: once it holds the write lock it takes every write
    queued so far (its own included), runs them in one ``BEGIN IMMEDIATE`` transaction (merged into one
    batch, or each in a savepoint: a write whose SQL fails is rolled back alone and raised in its own
    thread) and commits; writes queued meanwhile wait for the next leader, one of them. A write that
    comes alone is a group of one and waits for nobody; under load a group holds what arrived during the
    previous commit and while its leader waited for the lock (another worker's commit), so the disk
    bounds the commits per second, not the writes. What each write reads (ids, households, quotas) it
    reads inside the transaction, after the writes before it in the group: the outcomes are those of
    writing one by one.

    ``commit`` is called with a function that takes the group (call it once, with the write lock held);
    if ``commit`` fails before taking it, every queued write raises that failure.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._queue: list[_Ticket] = []
        self._busy = False

    def submit(self, commit: Callable[[Callable[[], list[_Ticket]]], None],
               work: Callable[[sqlite3.Connection], Any], batch: tuple | None = None) -> Any:
        ticket = _Ticket(work, batch)
        with self._cond:
            self._queue.append(ticket)
            while self._busy and not ticket.finished:
                self._cond.wait()
            lead = not ticket.finished
            if lead:
                self._busy = True
        if lead:
            group: list[_Ticket] = []
            taken = False

            def take() -> list[_Ticket]:
                nonlocal taken
                with self._cond:
                    group[:], self._queue, taken = self._queue, [], True
                return group

            try:
                commit(take)
                if not taken:
                    raise RuntimeError("the commit did not take its group of writes")
            except BaseException as exc:
                if not taken:  # failed before it took the group (the write lock, BEGIN): all raise it
                    for queued in take():
                        queued.value, queued.error = None, exc
                raise
            finally:
                with self._cond:
                    for queued in group:
                        queued.finished = True
                    self._busy = False
                    self._cond.notify_all()
        if ticket.error is not None:
            raise ticket.error
        return ticket.value


class SQLiteStore(Store):
    """``blob_dir``: where attachments' bytes go (SPEC §13); default the folder ``attachments`` beside the
    database file (the instance folder's, by default), one subfolder per first two hex digits."""

    def __init__(self, path: str | os.PathLike, busy_timeout_ms: int = 30_000,
                 blob_dir: str | os.PathLike | None = None):
        self.path = str(path)
        self.busy_timeout_ms = busy_timeout_ms
        self.blob_dir = Path(blob_dir) if blob_dir is not None else Path(self.path).parent / "attachments"
        self._local = threading.local()

    # -- connections --------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            # One connection per thread and process: a connection must never
            # cross a gunicorn fork.
            try:
                _create_private(self.path)
                conn = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout_ms / 1000)
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from exc
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
            self._local.pid = os.getpid()
        return conn

    def _lock_fd(self) -> int:
        """This thread's descriptor of the writers' lock file (the database's path + ``-lock``), opened anew
        after a fork."""
        fd = getattr(self._local, "lock_fd", None)
        if fd is None or self._local.lock_pid != os.getpid():
            try:
                fd = os.open(self.path + "-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise StoreError(f"cannot open the lock file of {self.path}: {exc}") from exc
            self._local.lock_fd, self._local.lock_pid = fd, os.getpid()
        return fd

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """:func:`immediate_transaction` behind an exclusive ``flock`` of the lock file.

        The service's writers (gunicorn's workers and their threads) queue for the lock in the kernel,
        and the next one starts as soon as it is released. Before, they met only SQLite's busy handler,
        which polls the database's lock with sleeps of 1 ms growing to 100 ms: one worker's writers
        slept while the other worker committed again and again, and the write lock stood idle meanwhile
        (a two-worker server took about 500 survey POSTs/s here, 690 with the lock file, tail latency
        hundreds of ms). The lock file is held around one transaction only, whose own waits stay bounded
        by the busy timeout (a writer outside the service, such as the sqlite3 shell, still meets SQLite's
        lock alone), and the kernel releases it when its process dies."""
        conn = self._conn()
        fd = self._lock_fd()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            with immediate_transaction(conn):
                yield conn
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    @contextmanager
    def _write(self, scope: str | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction; its commit replaces the generation tokens (all, and ``scope``'s)."""
        with self._transaction() as conn:
            yield conn
            token = uuid.uuid4().hex
            if scope:  # both tokens in one statement (init made the 'generation' row)
                conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('generation', ?), (?, ?)",
                             (token, f"generation:{scope}", token))
            else:
                conn.execute("UPDATE meta SET value = ? WHERE name = 'generation'", (token,))

    def _read(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        return self._conn().execute(sql, params).fetchall()

    def _one(self, sql: str, params: tuple = ()) -> sqlite3.Row | None:
        return self._conn().execute(sql, params).fetchone()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        fd = getattr(self._local, "lock_fd", None)
        if fd is not None and self._local.lock_pid == os.getpid():
            os.close(fd)
        self._local.lock_fd = None

    # -- life cycle ---------------------------------------------------------
    def init(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(SCHEMA)
        with immediate_transaction(conn):  # several workers may start on one old file at once
            for table, column, declaration in ADDED_COLUMNS:
                if column not in {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            # milestone versions stored before seq existed take theirs in insertion order, after any numbered one
            conn.execute("UPDATE milestone_versions SET seq = rowid + (SELECT COALESCE(MAX(seq), 0)"
                         " FROM milestone_versions) WHERE seq IS NULL")
            conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS milestone_versions_by_seq ON milestone_versions (seq)")
            conn.execute("CREATE INDEX IF NOT EXISTS milestone_changes ON milestone_versions (round_id, seq)")
            # so do funding versions and disbursements (the ledger's change feeds)
            for table in ("funding_versions", "disbursements"):
                conn.execute(f"UPDATE {table} SET seq = rowid + (SELECT COALESCE(MAX(seq), 0) FROM {table})"
                             " WHERE seq IS NULL")
                conn.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {table}_by_seq ON {table} (seq)")
                conn.execute(f"CREATE INDEX IF NOT EXISTS {table}_changes ON {table} (round_id, seq)")
            conn.execute("CREATE INDEX IF NOT EXISTS responses_by_link_address"
                         " ON responses (link_id, address_hash) WHERE link_id IS NOT NULL")
            self._init_anomaly_facts(conn)
        conn.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('generation', ?)", (uuid.uuid4().hex,))
        conn.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('schema_version', '1')")

    def ping(self) -> None:
        try:
            row = self._one("SELECT value FROM meta WHERE name = 'schema_version'")
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store not ready: {exc}") from exc
        if row is None:
            raise StoreError("SQLite store not initialised (run `scoring-service init`)")

    def generation(self, scope: str | None = None) -> str:
        row = self._one("SELECT value FROM meta WHERE name = ?", (f"generation:{scope}" if scope else "generation",))
        return row["value"] if row else ""

    # -- keys ---------------------------------------------------------------
    def create_key(self, record: Mapping[str, Any]) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO keys (key_id, role, name, agency_id, community_id, district_id, secret_hash, created_at,"
                " revoked_at) VALUES (:key_id, :role, :name, :agency_id, :community_id, :district_id, :secret_hash,"
                " :created_at, NULL)",
                {"agency_id": None, "community_id": None, "district_id": None, **record},
            )

    def get_key(self, key_id: str) -> dict | None:
        row = self._one("SELECT * FROM keys WHERE key_id = ?", (key_id,))
        return dict(row) if row else None

    def list_keys(self) -> list[dict]:
        return [dict(r) for r in self._read("SELECT * FROM keys ORDER BY created_at, key_id")]

    def revoke_key(self, key_id: str, at: str) -> bool:
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE keys SET revoked_at = COALESCE(revoked_at, ?) WHERE key_id = ?", (at, key_id)
            )
            return cur.rowcount > 0

    # -- rubrics ------------------------------------------------------------
    def put_rubric(self, rubric_id: str, body: Mapping, digest: str, at: str) -> Outcome:
        with self._write("reference") as conn:
            row = conn.execute("SELECT digest FROM rubrics WHERE rubric_id = ?", (rubric_id,)).fetchone()
            if row:
                return replay_outcome(row["digest"], digest)
            conn.execute(
                "INSERT INTO rubrics (rubric_id, body, digest, created_at) VALUES (?, ?, ?, ?)",
                (rubric_id, _dumps(body), digest, at),
            )
            return Outcome.CREATED

    def _body(self, table: str, id_column: str, value: str) -> dict | None:
        row = self._one(f"SELECT body FROM {table} WHERE {id_column} = ?", (value,))
        return json.loads(row["body"]) if row else None

    def _bodies(self, table: str, id_column: str) -> list[dict]:
        return [json.loads(r["body"]) for r in self._read(f"SELECT body FROM {table} ORDER BY {id_column}")]

    def get_rubric(self, rubric_id: str) -> dict | None:
        return self._body("rubrics", "rubric_id", rubric_id)

    def list_rubrics(self) -> list[dict]:
        return self._bodies("rubrics", "rubric_id")

    # -- reference data -----------------------------------------------------
    def _put_body(self, table: str, id_column: str, record: Mapping, extra: Mapping | None = None) -> bool:
        extra = dict(extra or {})
        columns = [id_column, *extra, "body"]
        with self._write("reference") as conn:
            existed = conn.execute(f"SELECT 1 FROM {table} WHERE {id_column} = ?", (record[id_column],)).fetchone()
            conn.execute(
                f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                (record[id_column], *extra.values(), _dumps(record)),
            )
            return existed is None

    def put_district(self, record: Mapping) -> bool:
        return self._put_body("districts", "district_id", record)

    def get_district(self, district_id: str) -> dict | None:
        return self._body("districts", "district_id", district_id)

    def list_districts(self) -> list[dict]:
        return self._bodies("districts", "district_id")

    def put_communities(self, records: list[Mapping]) -> list[bool]:
        created = []
        with self._write("reference") as conn:
            for record in records:
                existed = conn.execute(
                    "SELECT 1 FROM communities WHERE community_id = ?", (record["community_id"],)
                ).fetchone()
                conn.execute(
                    "INSERT OR REPLACE INTO communities (community_id, district_id, renovation_year, body)"
                    " VALUES (?, ?, ?, ?)",
                    (record["community_id"], record["district_id"], record["renovation_year"], _dumps(record)),
                )
                created.append(existed is None)
        return created

    def get_community(self, community_id: str) -> dict | None:
        return self._body("communities", "community_id", community_id)

    def list_communities(self, district_id: str | None = None, renovation_year: int | None = None,
                         renovation_years: Iterable[int] | None = None) -> list[dict]:
        sql, params = "SELECT body FROM communities WHERE 1 = 1", []
        if renovation_years is not None:
            years = sorted({int(y) for y in renovation_years})
            sql += f" AND renovation_year IN ({', '.join('?' * len(years))})" if years else " AND 0"
            params.extend(years)
        if district_id is not None:
            sql += " AND district_id = ?"
            params.append(district_id)
        if renovation_year is not None:
            sql += " AND renovation_year = ?"
            params.append(int(renovation_year))
        # through the cursor: not every row's JSON text held beside the parsed records
        return [json.loads(r["body"]) for r in self._conn().execute(sql + " ORDER BY community_id", tuple(params))]

    def put_agency(self, record: Mapping) -> bool:
        return self._put_body("agencies", "agency_id", record)

    def get_agency(self, agency_id: str) -> dict | None:
        return self._body("agencies", "agency_id", agency_id)

    def list_agencies(self) -> list[dict]:
        return self._bodies("agencies", "agency_id")

    # -- rounds -------------------------------------------------------------
    def create_round(self, record: Mapping) -> Outcome:
        digest = record["digest"]
        with self._write() as conn:
            row = conn.execute("SELECT digest FROM rounds WHERE round_id = ?", (record["round_id"],)).fetchone()
            if row:
                return replay_outcome(row["digest"], digest)
            conn.execute(
                "INSERT INTO rounds (round_id, rubric_id, status, body, digest) VALUES (?, ?, ?, ?, ?)",
                (record["round_id"], record["rubric_id"], record["status"], _dumps(record), digest),
            )
            return Outcome.CREATED

    @staticmethod
    def _round_row(row: sqlite3.Row) -> dict:
        body = json.loads(row["body"])
        body["status"] = row["status"]
        return body

    def get_round(self, round_id: str) -> dict | None:
        row = self._one("SELECT status, body FROM rounds WHERE round_id = ?", (round_id,))
        return self._round_row(row) if row else None

    def list_rounds(self) -> list[dict]:
        return [self._round_row(r) for r in self._read("SELECT status, body FROM rounds ORDER BY round_id")]

    def _set_round(self, conn, round_id: str, status: str, **changes) -> None:
        row = conn.execute("SELECT body FROM rounds WHERE round_id = ?", (round_id,)).fetchone()
        body = json.loads(row["body"])
        body.update(changes, status=status)
        conn.execute("UPDATE rounds SET status = ?, body = ? WHERE round_id = ?", (status, _dumps(body), round_id))

    def close_round(self, round_id: str, at: str) -> Outcome:
        with self._write() as conn:
            row = conn.execute("SELECT status FROM rounds WHERE round_id = ?", (round_id,)).fetchone()
            if row is None:
                return Outcome.NOT_FOUND
            if row["status"] == "published":
                return Outcome.ROUND_PUBLISHED
            if row["status"] == "closed":
                return Outcome.UNCHANGED
            self._set_round(conn, round_id, "closed", closed_at=at)
            return Outcome.CHANGED

    def publish_round(self, round_id: str, snapshot: bytes, sha256: str, at: str) -> Outcome:
        with self._write() as conn:
            row = conn.execute("SELECT status, body FROM rounds WHERE round_id = ?", (round_id,)).fetchone()
            if row is None:
                return Outcome.NOT_FOUND
            if row["status"] == "published":
                return Outcome.UNCHANGED
            changes = {"published_at": at, "snapshot_sha256": sha256}
            if row["status"] == "open":
                changes["closed_at"] = at
            self._set_round(conn, round_id, "published", **changes)
            conn.execute("INSERT INTO snapshots (round_id, body, sha256) VALUES (?, ?, ?)", (round_id, snapshot, sha256))
            return Outcome.CHANGED

    def get_snapshot(self, round_id: str) -> tuple[bytes, str] | None:
        row = self._one("SELECT body, sha256 FROM snapshots WHERE round_id = ?", (round_id,))
        return (bytes(row["body"]), row["sha256"]) if row else None

    def rubric_in_use(self, rubric_id: str) -> bool:
        return self._one("SELECT 1 FROM rounds WHERE rubric_id = ? LIMIT 1", (rubric_id,)) is not None

    @staticmethod
    def _round_gate(conn, round_id: str, closed_ok: bool = False) -> Outcome | None:
        row = conn.execute("SELECT status FROM rounds WHERE round_id = ?", (round_id,)).fetchone()
        return round_gate(row["status"] if row else None, closed_ok=closed_ok)

    # -- surveys ------------------------------------------------------------
    def _add_counts(self, conn, round_id: str, deltas: dict[TableKey, CommunityCounts], n_items: int) -> None:
        for (community_id, respondent_type), change in deltas.items():
            delta, responses = change.counts, change.responses
            row = conn.execute(
                "SELECT responses, counts FROM survey_stats"
                " WHERE round_id = ? AND community_id = ? AND respondent_type = ?",
                (round_id, community_id, respondent_type),
            ).fetchone()
            if row is None:
                counts, total = delta, responses
            else:
                counts = np.frombuffer(row["counts"], dtype=np.int64).reshape(n_items + 1, 5) + delta
                total = row["responses"] + responses
            conn.execute(
                "INSERT OR REPLACE INTO survey_stats (round_id, community_id, respondent_type, responses, counts)"
                " VALUES (?, ?, ?, ?, ?)",
                (round_id, community_id, respondent_type, int(total), counts.astype(np.int64).tobytes()),
            )

    @staticmethod
    def _link_usage(conn, round_id: str, quota: LinkQuota) -> tuple[Callable, Callable]:
        """Counters of what a link quota limits, read inside the write transaction: standing public
        responses per community (from the kept statistics) and accepted responses per (link, address)
        since the window's start; each read once per key, then counted on by the caller."""
        public: dict[str, int] = {}
        rate: dict[tuple, int] = {}

        def public_used(community_id: str) -> dict[str, int]:
            if community_id not in public:
                row = conn.execute("SELECT responses FROM survey_stats WHERE round_id = ? AND community_id = ?"
                                   " AND respondent_type = 'public'", (round_id, community_id)).fetchone()
                public[community_id] = row["responses"] if row else 0
            return public

        def rate_used(key: tuple) -> dict[tuple, int]:
            if key not in rate:
                rate[key] = conn.execute(
                    "SELECT COUNT(*) FROM responses WHERE link_id = ? AND address_hash IS ?"
                    " AND json_extract(body, '$.received_at') >= ?", (*key, quota.window_start)).fetchone()[0]
            return rate

        return public_used, rate_used

    def add_responses(self, round_id: str, records: list[Mapping], n_items: int,
                      audit: AuditEvent | None = None, quota: LinkQuota | None = None) -> list[Outcome]:
        """One transaction shared with the survey writes other threads of this process make meanwhile
        (:class:`GroupCommit`): acknowledged after its commit, as alone."""
        prepared = [_stored_parts(record) for record in records]  # before the write lock, not under it
        return self._group_commit().submit(
            self._commit_group,
            lambda conn: self._add_responses_in(conn, round_id, records, n_items, audit, quota, prepared),
            batch=(round_id, records, n_items, audit, quota, prepared))

    def _group_commit(self) -> GroupCommit:
        """This process's group commit (made after a fork: its lock must not cross one)."""
        if getattr(self, "_group", None) is None or self._group_pid != os.getpid():
            self._group, self._group_pid = GroupCommit(), os.getpid()
        return self._group

    def _commit_group(self, take: Callable[[], list[_Ticket]]) -> None:
        """The writes of a group in one transaction, merged into one batch or each in a savepoint (a lone
        write in none); nothing is acknowledged before the commit. When the transaction fails, every write
        of the group raises its error (so does a lone write whose SQL fails: the transaction is rolled
        back, generations unchanged). ``take``: :class:`GroupCommit`'s function that takes the group,
        called once the write lock is held (writes queued while this leader waited join it)."""
        group: list[_Ticket] = []
        committed = False
        try:
            with self._write("surveys") as conn:
                group = take()
                if len(group) == 1:  # a lone write needs no savepoint: its failure rolls everything back
                    group[0].value = group[0].work(conn)
                elif len(group) > 1 and not self._write_merged(conn, group):  # one by one, each in a savepoint
                    for ticket in group:
                        conn.execute("SAVEPOINT group_write")
                        try:
                            ticket.value = ticket.work(conn)
                        except sqlite3.Error as exc:  # this write alone is undone; the others go on
                            conn.execute("ROLLBACK TO group_write")
                            ticket.error = exc
                        conn.execute("RELEASE group_write")
            committed = True
        finally:
            if not committed:  # an exception is leaving the transaction, which committed nothing
                failed = sys.exc_info()[1]
                for ticket in group:
                    ticket.value, ticket.error = None, failed

    def _write_merged(self, conn, group: list[_Ticket]) -> bool:
        """The survey writes of ``group`` as one batch (one round gate, one look-up of ids and of
        households, one insert, one update of the counts and of the marks, then each write's audit event),
        inside a savepoint; False, with nothing written, when they cannot be merged (another round or
        rubric size, a link quota, an id in two writes) or the batch's SQL fails: then they are written
        one by one. The outcomes are those of writing one by one, in order: each write's records come
        after the earlier writes' (households taken), their ids are distinct, and each mark's state
        follows only from its own responses. Under load the write lock was held about 1.8 ms per POST with
        about two writes per commit, each write running its seven statements and two savepoint ones."""
        batches = [ticket.batch for ticket in group]
        if any(batch is None or batch[4] is not None for batch in batches):
            return False
        round_id, n_items = batches[0][0], batches[0][2]
        if any(batch[0] != round_id or batch[2] != n_items for batch in batches):
            return False
        records = [record for batch in batches for record in batch[1]]
        if len({record["response_id"] for record in records}) != len(records):
            return False
        prepared = [part for batch in batches for part in batch[5]]
        conn.execute("SAVEPOINT group_batch")
        try:
            outcomes = self._add_responses_in(conn, round_id, records, n_items, None, None, prepared,
                                              audits=[(batch[3], len(batch[1])) for batch in batches])
        except sqlite3.Error:  # undone whole; the writes then go one by one, each in its savepoint
            conn.execute("ROLLBACK TO group_batch")
            conn.execute("RELEASE group_batch")
            return False
        conn.execute("RELEASE group_batch")
        start = 0
        for ticket, batch in zip(group, batches):
            ticket.value, start = outcomes[start:start + len(batch[1])], start + len(batch[1])
        return True

    def _add_responses_in(self, conn, round_id: str, records: list[Mapping], n_items: int,
                          audit: AuditEvent | None, quota: LinkQuota | None,
                          prepared: list[tuple] | None = None,
                          audits: list[tuple[AuditEvent | None, int]] | None = None) -> list[Outcome]:
        """Inside the write transaction. ``prepared``: :func:`_stored_parts` of each record, made before.
        ``audits``: for writes merged into one batch, each write's audit event and number of records (in
        order), each event completed with its own write's outcomes."""
        outcomes: list[Outcome | None] = [None] * len(records)
        gate = self._round_gate(conn, round_id)
        if gate is not None:
            return [gate] * len(records)
        # one look-up for every id and household of the batch, then one insert
        existing = self._select_in(conn, "SELECT response_id, round_id, content_hash, voided_at FROM responses"
                                   " WHERE response_id IN ({})", [r["response_id"] for r in records])
        households: dict[str, set[str]] = {}
        for r in records:
            if r.get("household_hash"):
                households.setdefault(r["community_id"], set()).add(r["household_hash"])
        # only standing responses hold their household: a voided one has freed it. Asked per community,
        # so that the search is one of the household index (round, community, household), not a walk
        # through the round's responses. No "household_hash IS NOT NULL" (the IN implies it, and the
        # partial index is still chosen): with it, from three households on, SQLite walked every household
        # of the community (a range household_hash > NULL) instead of searching each
        taken_pairs = {(row[0], row[1]) for community_id, hashes in sorted(households.items())
                       for row in self._select_in(
                           conn, "SELECT community_id, household_hash FROM responses WHERE round_id = ?"
                           " AND community_id = ? AND voided_at IS NULL"
                           " AND household_hash IN ({})", sorted(hashes), leading=[round_id, community_id])}
        known = {row[0]: dict(zip(("round_id", "content_hash", "voided_at"), row[1:])) for row in existing}
        if quota is not None:
            public_used, rate_used = self._link_usage(conn, round_id, quota)
        first = first_occurrences(records)
        rows, created, marks = [], [], set()
        for rid, i in first.items():
            record = records[i]
            if rid in known:
                outcomes[i] = response_replay(known[rid], record, round_id)
                continue
            if quota is not None:
                rate_key = (record.get("link_id"), record.get("address_hash"))
                public = public_used(record["community_id"])
                rate = rate_used(rate_key)
                refusal = quota_refusal(record, quota, rate[rate_key], public[record["community_id"]])
                if refusal is not None:
                    outcomes[i] = refusal
                    continue
            household = record.get("household_hash")
            if household and (record["community_id"], household) in taken_pairs:
                outcomes[i] = Outcome.HOUSEHOLD
                continue
            if household:
                taken_pairs.add((record["community_id"], household))
            if quota is not None:
                rate[rate_key] += 1
                public[record["community_id"]] += record["respondent_type"] == "public"
            outcomes[i] = Outcome.CREATED
            levels_json, body_json, facts, response_marks = prepared[i] if prepared else _stored_parts(record)
            rows.append((rid, round_id, record["community_id"], record["respondent_type"], household,
                         record["content_hash"], levels_json, body_json,
                         record.get("link_id"), record.get("address_hash"), record.get("device_id"),
                         *_fact_values(facts)))
            created.append((record["community_id"], record["respondent_type"], record["levels"]))
            marks.update(response_marks)
        settle_repeats(records, outcomes, first)
        conn.executemany(
            "INSERT INTO responses (response_id, round_id, community_id, respondent_type, household_hash,"
            f" content_hash, levels, voided_at, body, link_id, address_hash, device_id, {', '.join(FACT_COLUMNS)})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self._add_counts(conn, round_id, tally(created, n_items), n_items)
        self._refresh_marks(conn, round_id, marks)
        self._insert_audits(conn, outcomes, audit, audits)  # one commit, one fsync, for the data and its audit
        return outcomes

    def _insert_audits(self, conn, outcomes: list[Outcome], audit: AuditEvent | None,
                       audits: list[tuple[AuditEvent | None, int]] | None) -> None:
        """The write's audit event, or each merged write's, completed with its own outcomes."""
        if audits is None:
            audits = [(audit, len(outcomes))]
        start = 0
        for event, size in audits:
            if event is not None:
                self._insert_audit(conn, event.complete(outcomes[start:start + size]))
            start += size

    @staticmethod
    def _select_in(conn, sql: str, values: list, chunk: int = 500, leading: list | None = None) -> list[tuple]:
        """``sql`` with its ``IN ({})`` filled, over chunks of ``values`` (after ``leading`` parameters)."""
        rows: list[tuple] = []
        for start in range(0, len(values), chunk):
            part = values[start:start + chunk]
            cur = conn.execute(sql.format(", ".join("?" * len(part))), [*(leading or []), *part])
            cur.row_factory = None
            rows += cur.fetchall()
        return rows

    @staticmethod
    def _response_row(row: sqlite3.Row) -> dict:
        body = json.loads(row["body"])
        body["levels"] = json.loads(row["levels"])
        return with_void_fields(body)

    def get_response(self, round_id: str, response_id: str) -> dict | None:
        row = self._one(
            "SELECT body, levels FROM responses WHERE round_id = ? AND response_id = ?", (round_id, response_id)
        )
        return self._response_row(row) if row else None

    def void_response(self, round_id: str, response_id: str, reason: str, key_id: str, at: str, n_items: int) -> Outcome:
        with self._write("surveys") as conn:
            gate = self._round_gate(conn, round_id, closed_ok=True)
            if gate is not None:
                return gate
            row = conn.execute(
                "SELECT community_id, respondent_type, levels, voided_at, body FROM responses"
                " WHERE round_id = ? AND response_id = ?",
                (round_id, response_id),
            ).fetchone()
            if row is None:
                return Outcome.NOT_FOUND
            if row["voided_at"] is not None:
                return Outcome.UNCHANGED
            body = {**json.loads(row["body"]), **void_fields(at, reason, key_id)}
            # setting voided_at also frees the household (the unique index counts standing responses only)
            conn.execute(
                "UPDATE responses SET voided_at = ?, body = ? WHERE response_id = ?", (at, _dumps(body), response_id)
            )
            delta = CommunityCounts(-response_count_rows(json.loads(row["levels"]), n_items), -1)
            self._add_counts(conn, round_id, {(row["community_id"], row["respondent_type"]): delta}, n_items)
            self._refresh_marks(conn, round_id, AnomalyFacts.of(body).marks())
            return Outcome.CHANGED

    def survey_counts(self, round_id: str, n_items: int) -> RoundCounts:
        # Read row by row into arrays sized by a count first (grown if rows arrived since): not a list
        # of every row and its blob beside the joined copy (twice the counts, some 25 MB at 20,000
        # communities, at the moment the ranking's arrays are built).
        conn = self._conn()
        (expected,) = conn.execute("SELECT COUNT(*) FROM survey_stats WHERE round_id = ?", (round_id,)).fetchone()
        cur = conn.execute(
            "SELECT community_id, respondent_type, responses, counts FROM survey_stats WHERE round_id = ?"
            " ORDER BY community_id, respondent_type", (round_id,))
        cur.row_factory = None
        width = (n_items + 1) * 5
        counts, responses = _ArrayRows((width,), np.int64, expected), _ArrayRows((), np.int64, expected)
        community_ids, respondent_types, types = [], [], {}
        for community_id, respondent_type, n, blob in cur:
            community_ids.append(community_id)
            respondent_types.append(types.setdefault(respondent_type, respondent_type))
            responses.add(n)
            counts.add_bytes(blob)
        return RoundCounts(n_items=n_items, community_ids=community_ids, respondent_types=respondent_types,
                           responses=responses.array(), counts=counts.array().reshape(-1, n_items + 1, 5))

    def iter_responses(self, round_id: str) -> Iterator[dict]:
        cur = self._conn().execute("SELECT body, levels FROM responses WHERE round_id = ? ORDER BY seq", (round_id,))
        for row in cur:
            yield self._response_row(row)

    def count_responses(self, round_id: str, include_voided: bool = False) -> int:
        sql = "SELECT COUNT(*) AS n FROM responses WHERE round_id = ?"
        if not include_voided:
            sql += " AND voided_at IS NULL"
        return self._one(sql, (round_id,))["n"]

    # -- anomaly statistics (store.base.AnomalyFacts) -------------------------
    def _init_anomaly_facts(self, conn) -> None:
        """Indexes of the anomaly facts; rows stored before the facts existed get theirs, once."""
        conn.execute("CREATE INDEX IF NOT EXISTS responses_by_sender_minute ON responses"
                     " (round_id, key_id, community_id, received_minute) WHERE voided_at IS NULL")
        conn.execute("CREATE INDEX IF NOT EXISTS responses_by_content ON responses"
                     " (round_id, content_key, content_window) WHERE content_key IS NOT NULL AND voided_at IS NULL")
        conn.execute("CREATE INDEX IF NOT EXISTS responses_by_device ON responses"
                     " (round_id, community_id, device_id) WHERE device_id IS NOT NULL AND voided_at IS NULL")
        conn.execute("CREATE INDEX IF NOT EXISTS responses_straight_lined ON responses"
                     " (round_id, seq) WHERE straight_level IS NOT NULL AND voided_at IS NULL")
        if conn.execute("SELECT 1 FROM meta WHERE name = 'anomaly_facts'").fetchone() is None:
            for (round_id,) in conn.execute("SELECT DISTINCT round_id FROM responses").fetchall():
                self._recount_anomalies(conn, round_id, fix=True)
            conn.execute("INSERT INTO meta (name, value) VALUES ('anomaly_facts', '1')")

    @staticmethod
    def _refresh_marks(conn, round_id: str, marks: Iterable[str]) -> None:
        """Inside a write: keep each of ``marks`` hot exactly when its standing responses exceed its limit.

        Grouped: per kind of mark, one statement per 300 marks asks of each whether it has a standing
        response beyond its limit (an index search per mark that stops there) and whether it is kept hot
        now; only the changes are written. A batch of 1000 responses asked about each of its 2,000-odd
        marks in two statements of its own before."""
        by_kind: dict[str, list[tuple[str, list]]] = {}
        for mark in set(marks):
            kind, parts = parse_mark(mark)
            by_kind.setdefault(kind, []).append((mark, parts))
        insert, delete = [], []
        for kind, entries in by_kind.items():
            for start in range(0, len(entries), 300):
                part = entries[start:start + 300]
                values = [value for i, (mark, parts) in enumerate(part) for value in (i, mark, *parts)]
                for n, hot, kept in conn.execute(_mark_sql(kind, len(part[0][1]), len(part)),
                                                  (*values, round_id, round_id)).fetchall():
                    if hot and not kept:
                        insert.append((round_id, part[n][0]))
                    elif kept and not hot:
                        delete.append((round_id, part[n][0]))
        if insert:
            conn.executemany("INSERT INTO anomaly_marks (round_id, mark) VALUES (?, ?)", insert)
        if delete:
            conn.executemany("DELETE FROM anomaly_marks WHERE round_id = ? AND mark = ?", delete)

    def _candidate_rows(self, conn, where: str, params: tuple) -> list[tuple[int, str | None, dict]]:
        """(seq, content_key, response) of the standing responses of the round matching ``where``."""
        rows = conn.execute(f"SELECT seq, content_key, body, levels FROM responses WHERE {where}"
                            " AND voided_at IS NULL", params).fetchall()
        return [(row["seq"], row["content_key"], self._response_row(row)) for row in rows]

    def anomaly_candidates(self, round_id: str, excluded_keys: Iterable[str] = ()) -> AnomalyCandidates:
        excluded = sorted(set(excluded_keys))
        conn = self._conn()
        conn.execute("BEGIN")  # every read from one snapshot
        try:
            straight = [r for _, _, r in sorted(self._candidate_rows(
                conn, "round_id = ? AND straight_level IS NOT NULL", (round_id,)), key=lambda x: x[0])]
            found: dict[str, dict[str, tuple]] = {kind: {} for kind in _MARK_ROWS}
            for (mark,) in conn.execute("SELECT mark FROM anomaly_marks WHERE round_id = ?", (round_id,)).fetchall():
                kind, parts = parse_mark(mark)
                if kind == "minute" and parts[0] in excluded:
                    continue
                condition, params = _MARK_ROWS[kind]
                for seq, content, row in self._candidate_rows(conn, f"round_id = ? AND {condition}",
                                                              (round_id, *params(*parts))):
                    found[kind][row["response_id"]] = (seq, content, row)
            bursts = [row for _, _, row in sorted(found["minute"].values(), key=lambda x: x[0])]
            burst_first = {key: conn.execute(
                "SELECT MIN(seq) FROM responses WHERE round_id = ? AND key_id IS ? AND community_id = ?"
                " AND voided_at IS NULL", (round_id, *key)).fetchone()[0]
                for key in {(row.get("key_id"), row["community_id"]) for row in bursts}}
            duplicates = sorted((x for x in found["window"].values() if x[2].get("key_id") not in excluded),
                                key=lambda x: x[0])
            not_excluded = f" AND (key_id IS NULL OR key_id NOT IN ({', '.join('?' * len(excluded))}))" if excluded else ""
            content_first = {content: conn.execute(
                "SELECT MIN(seq) FROM responses WHERE round_id = ? AND content_key = ? AND voided_at IS NULL"
                + not_excluded, (round_id, content, *excluded)).fetchone()[0]
                for content in {content for _, content, _ in duplicates}}
            devices = [row for _, _, row in sorted(found["device"].values(), key=lambda x: x[0])]
        finally:
            conn.execute("COMMIT")
        return AnomalyCandidates(
            straight=straight, bursts=bursts, burst_first=burst_first,
            duplicates=[row for _, _, row in duplicates],
            duplicate_first={row["response_id"]: content_first[content] for _, content, row in duplicates},
            devices=devices)

    def _recount_anomalies(self, conn, round_id: str, fix: bool) -> list[dict]:
        """Inside a write: the anomaly facts of every response and the hot marks, from the raw rows,
        one community at a time (every mark lies inside one community)."""
        differences: list[dict] = []
        raw: set[str] = set()
        updates = []
        communities = [r[0] for r in conn.execute(
            "SELECT DISTINCT community_id FROM responses WHERE round_id = ?", (round_id,)).fetchall()]
        for community_id in communities:
            standing = []
            for row in conn.execute(f"SELECT seq, body, voided_at, {', '.join(FACT_COLUMNS)} FROM responses"
                                    " WHERE round_id = ? AND community_id = ?", (round_id, community_id)).fetchall():
                body = json.loads(row["body"])
                facts = AnomalyFacts.of(body)
                kept, want = tuple(row[c] for c in FACT_COLUMNS), _fact_values(facts)
                if kept != want:
                    differences.append({"statistic": "anomalies", "response_id": body["response_id"],
                                        "kept_facts": list(kept), "raw_facts": list(want)})
                    updates.append((*want, row["seq"]))
                if row["voided_at"] is None:
                    standing.append(facts)
            raw |= hot_marks(standing)
        kept_marks = {r[0] for r in conn.execute("SELECT mark FROM anomaly_marks WHERE round_id = ?", (round_id,))}
        differences += [{"statistic": "anomalies", "mark": mark, "kept_hot": mark in kept_marks, "raw_hot": mark in raw}
                        for mark in sorted(raw ^ kept_marks)]
        if fix and differences:
            conn.executemany(f"UPDATE responses SET {', '.join(f'{c} = ?' for c in FACT_COLUMNS)} WHERE seq = ?",
                             updates)
            conn.execute("DELETE FROM anomaly_marks WHERE round_id = ?", (round_id,))
            conn.executemany("INSERT INTO anomaly_marks (round_id, mark) VALUES (?, ?)",
                             [(round_id, mark) for mark in sorted(raw)])
        return differences

    # -- inspections --------------------------------------------------------
    def add_inspection(self, record: Mapping) -> Outcome:
        version = record["versions"][0]
        with self._write("inspections") as conn:
            gate = self._round_gate(conn, record["round_id"])
            if gate is not None:
                return gate
            row = conn.execute(
                "SELECT i.round_id, v.content_hash FROM inspections i JOIN inspection_versions v"
                " ON v.inspection_id = i.inspection_id AND v.version = 1 WHERE i.inspection_id = ?",
                (record["inspection_id"],),
            ).fetchone()
            if row is not None:
                return replay_outcome(row["content_hash"], version["content_hash"],
                                      same_round=row["round_id"] == record["round_id"])
            seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 AS s FROM inspections").fetchone()["s"]
            conn.execute(
                "INSERT INTO inspections (inspection_id, seq, round_id, community_id, agency_id, version)"
                " VALUES (?, ?, ?, ?, ?, 1)",
                (record["inspection_id"], seq, record["round_id"], record["community_id"], record["agency_id"]),
            )
            self._insert_version(conn, record["inspection_id"], 1, version)
            return Outcome.CREATED

    @staticmethod
    def _insert_version(conn, inspection_id: str, number: int, version: Mapping) -> None:
        conn.execute(
            "INSERT INTO inspection_versions (inspection_id, version, content_hash, inspected_at, stage, points,"
            " maxima, vetoes, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (inspection_id, number, version["content_hash"], version["inspected_at"],
             version.get("stage") or DEFAULT_STAGE,
             np.asarray(version["item_points"], dtype=np.float64).tobytes(),
             np.asarray(version["item_max"], dtype=np.float64).tobytes(),
             _dumps(list(version.get("vetoes", []))), _dumps(version)),
        )

    def amend_inspection(self, round_id: str, inspection_id: str, version: Mapping, agency_id: str | None) -> Outcome:
        with self._write("inspections") as conn:
            row = conn.execute(
                "SELECT agency_id, community_id, version FROM inspections WHERE round_id = ? AND inspection_id = ?",
                (round_id, inspection_id),
            ).fetchone()
            refusal = amendment_refusal(row, version, agency_id) or self._round_gate(conn, round_id)
            if refusal is not None:
                return refusal
            current = conn.execute(
                "SELECT body FROM inspection_versions WHERE inspection_id = ? AND version = ?",
                (inspection_id, row["version"]),
            ).fetchone()
            if same_as_current(json.loads(current["body"]), version):
                return Outcome.DUPLICATE
            number = row["version"] + 1
            self._insert_version(conn, inspection_id, number, {**version, "version": number})
            conn.execute("UPDATE inspections SET version = ? WHERE inspection_id = ?", (number, inspection_id))
            return Outcome.CREATED

    def get_inspection(self, round_id: str, inspection_id: str) -> dict | None:
        row = self._one(
            "SELECT * FROM inspections WHERE round_id = ? AND inspection_id = ?", (round_id, inspection_id)
        )
        if row is None:
            return None
        versions = [
            json.loads(v["body"])
            for v in self._read(
                "SELECT body FROM inspection_versions WHERE inspection_id = ? ORDER BY version", (inspection_id,)
            )
        ]
        return {**dict(row), "versions": versions}

    def current_inspections(self, round_id: str) -> list[dict]:
        rows = self._read(
            "SELECT i.inspection_id, i.seq, i.community_id, i.agency_id, v.body FROM inspections i"
            " JOIN inspection_versions v ON v.inspection_id = i.inspection_id AND v.version = i.version"
            " WHERE i.round_id = ? ORDER BY i.seq",
            (round_id,),
        )
        return [
            {**json.loads(r["body"]), "inspection_id": r["inspection_id"], "seq": r["seq"],
             "community_id": r["community_id"], "agency_id": r["agency_id"]}
            for r in rows
        ]

    def inspection_sums(self, round_id: str, n_items: int, stage: str = DEFAULT_STAGE) -> InspectionRows:
        # Row by row into arrays sized by a count first, each repeated id one string: not the list of
        # every row with its two blobs beside the joined copies (some 35 MB at 20,000 communities).
        conn = self._conn()
        joined = (" FROM inspections i JOIN inspection_versions v"
                  " ON v.inspection_id = i.inspection_id AND v.version = i.version WHERE i.round_id = ? AND v.stage = ?")
        (expected,) = conn.execute("SELECT COUNT(*)" + joined, (round_id, stage)).fetchone()
        cur = conn.execute("SELECT i.community_id, i.agency_id, i.seq, v.inspected_at, v.points, v.maxima, v.vetoes"
                           + joined + " ORDER BY i.seq", (round_id, stage))
        cur.row_factory = None
        points, maxima = _ArrayRows((n_items,), np.float64, expected), _ArrayRows((n_items,), np.float64, expected)
        community_ids, agency_ids, seq, inspected_at, vetoes, ids = [], [], [], [], [], {}
        for community_id, agency_id, number, at, row_points, row_maxima, row_vetoes in cur:
            community_ids.append(ids.setdefault(community_id, community_id))
            agency_ids.append(ids.setdefault(agency_id, agency_id))
            seq.append(number)
            inspected_at.append(at)
            points.add_bytes(row_points)
            maxima.add_bytes(row_maxima)
            vetoes.append(json.loads(row_vetoes) if row_vetoes != "[]" else [])
        return InspectionRows(community_ids=community_ids, agency_ids=agency_ids, seq=seq, inspected_at=inspected_at,
                              points=points.array(), maxima=maxima.array(), vetoes=vetoes)

    # -- milestones -------------------------------------------------------------
    def add_milestone_version(self, record: Mapping, check: MilestoneCheck | None = None) -> Outcome:
        # one BEGIN IMMEDIATE transaction: the read, the check and the insert see no other writer
        with self._write("milestones") as conn:
            current = latest_by_code(json.loads(r["body"]) for r in conn.execute(
                "SELECT body, MAX(version) FROM milestone_versions WHERE round_id = ? AND community_id = ?"
                " GROUP BY code", (record["round_id"], record["community_id"])))
            version = next_milestone_version(current, record, check)
            if version is None:
                return Outcome.DUPLICATE
            # numbered inside the write transaction: seq order is commit order
            conn.execute(
                "INSERT INTO milestone_versions (round_id, community_id, code, version, reached_on, content_hash, body,"
                " seq) VALUES (?, ?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM milestone_versions))",
                (version["round_id"], version["community_id"], version["code"], version["version"],
                 version["reached_on"], version["content_hash"], _dumps(version)))
            return Outcome.CREATED

    def milestone_versions(self, round_id: str, community_id: str) -> list[dict]:
        rows = self._read("SELECT body FROM milestone_versions WHERE round_id = ? AND community_id = ?"
                          " ORDER BY code, version", (round_id, community_id))
        return [json.loads(r["body"]) for r in rows]

    def current_milestones(self, round_id: str) -> list[dict]:
        # SQLite takes the bare column (body) from the row holding MAX(version)
        rows = self._read("SELECT body, MAX(version) FROM milestone_versions WHERE round_id = ?"
                          " GROUP BY community_id, code ORDER BY community_id, code", (round_id,))
        return [json.loads(r["body"]) for r in rows]

    def milestone_changes(self, round_id: str, after: int | None = None,
                          limit: int | None = None) -> tuple[list[dict], int]:
        return self._changes("milestone_versions", round_id, after, limit)

    # -- funding ledger (SPEC §12) --------------------------------------------------
    @contextmanager
    def _funding_write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that replaces only the "funding" generation token: money changes no
        score, so cached results keyed by the other tokens stay valid."""
        with self._transaction() as conn:
            yield conn
            conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('generation:funding', ?)",
                         (uuid.uuid4().hex,))

    def put_funding(self, record: Mapping, check: FundingCheck | None = None) -> Outcome:
        # one BEGIN IMMEDIATE transaction: the read, the check and the insert see no other writer
        with self._funding_write() as conn:
            row = conn.execute("SELECT body FROM funding_versions WHERE round_id = ? AND community_id = ?"
                               " ORDER BY version DESC LIMIT 1",
                               (record["round_id"], record["community_id"])).fetchone()
            version = next_funding_version(json.loads(row["body"]) if row else None, record, check)
            if version is None:
                return Outcome.DUPLICATE
            # numbered inside the write transaction: seq order is commit order (funding_changes)
            conn.execute("INSERT INTO funding_versions (round_id, community_id, version, content_hash, body, seq)"
                         " VALUES (?, ?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM funding_versions))",
                         (version["round_id"], version["community_id"], version["version"],
                          version["content_hash"], _dumps(version)))
            return Outcome.CREATED

    def funding_versions(self, round_id: str, community_id: str) -> list[dict]:
        rows = self._read("SELECT body FROM funding_versions WHERE round_id = ? AND community_id = ?"
                          " ORDER BY version", (round_id, community_id))
        return [json.loads(r["body"]) for r in rows]

    def current_funding(self, round_id: str) -> list[dict]:
        # SQLite takes the bare column (body) from the row holding MAX(version)
        rows = self._read("SELECT body, MAX(version) FROM funding_versions WHERE round_id = ?"
                          " GROUP BY community_id ORDER BY community_id", (round_id,))
        return [json.loads(r["body"]) for r in rows]

    def add_disbursement(self, record: Mapping) -> Outcome:
        with self._funding_write() as conn:
            row = conn.execute("SELECT content_hash FROM disbursements WHERE disbursement_id = ?",
                               (record["disbursement_id"],)).fetchone()
            if row is not None:
                return replay_outcome(row["content_hash"], record["content_hash"])
            try:
                conn.execute("INSERT INTO disbursements (disbursement_id, round_id, community_id, tranche,"
                             " content_hash, body, seq) VALUES (?, ?, ?, ?, ?, ?,"
                             " (SELECT COALESCE(MAX(seq), 0) + 1 FROM disbursements))",
                             (record["disbursement_id"], record["round_id"], record["community_id"],
                              record["tranche"], record["content_hash"], _dumps(record)))
            except sqlite3.IntegrityError:  # UNIQUE (round_id, community_id, tranche)
                return Outcome.ALREADY_PAID
            return Outcome.CREATED

    def get_disbursement(self, disbursement_id: str) -> dict | None:
        return self._body("disbursements", "disbursement_id", disbursement_id)

    def disbursements(self, round_id: str, community_id: str | None = None) -> list[dict]:
        if community_id is None:
            rows = self._read("SELECT body FROM disbursements WHERE round_id = ? ORDER BY community_id, tranche",
                              (round_id,))
        else:
            rows = self._read("SELECT body FROM disbursements WHERE round_id = ? AND community_id = ?"
                              " ORDER BY tranche", (round_id, community_id))
        return [json.loads(r["body"]) for r in rows]

    def funding_changes(self, round_id: str, after: int | None = None,
                        limit: int | None = None) -> tuple[list[dict], int]:
        return self._changes("funding_versions", round_id, after, limit)

    def disbursement_changes(self, round_id: str, after: int | None = None,
                             limit: int | None = None) -> tuple[list[dict], int]:
        return self._changes("disbursements", round_id, after, limit)

    def _changes(self, table: str, round_id: str, after: int | None, limit: int | None) -> tuple[list[dict], int]:
        # one statement, one snapshot; seq is unique across rounds and given in commit order
        after = int(after or 0)
        rows = self._read(f"SELECT seq, body FROM {table} WHERE seq > ? AND round_id = ? ORDER BY seq LIMIT ?",
                          (after, round_id, -1 if limit is None else int(limit)))
        return [json.loads(r["body"]) for r in rows], (rows[-1]["seq"] if rows else after)

    # -- rectification (SPEC §13) ---------------------------------------------------
    def inspection_version_numbers(self, round_id: str) -> dict[str, int]:
        cur = self._conn().execute("SELECT inspection_id, version FROM inspections WHERE round_id = ?", (round_id,))
        cur.row_factory = None
        return dict(cur.fetchall())

    def inspection_histories(self, round_id: str, inspection_ids: Iterable[str] | None = None) -> list[dict]:
        sql = ("SELECT i.inspection_id, i.community_id, i.agency_id, v.version, v.body FROM inspections i"
               " JOIN inspection_versions v ON v.inspection_id = i.inspection_id WHERE i.round_id = ?")
        if inspection_ids is None:
            cur = self._conn().execute(sql, (round_id,))
            cur.row_factory = None
            rows = cur.fetchall()
        else:
            rows = self._select_in(self._conn(), sql + " AND i.inspection_id IN ({})", sorted(set(inspection_ids)),
                                   leading=[round_id])
        rows.sort(key=lambda r: (r[0], r[3]))
        return [{**json.loads(body), "inspection_id": iid, "community_id": cid, "agency_id": aid, "version": number}
                for iid, cid, aid, number, body in rows]

    def add_rectification_response(self, record: Mapping) -> Outcome:
        # one BEGIN IMMEDIATE transaction: the look-up and the insert see no other writer
        with self._transaction() as conn:
            row = conn.execute("SELECT content_hash FROM rectification_responses WHERE response_id = ?",
                               (record["response_id"],)).fetchone()
            if row is not None:  # a replay or a conflict writes nothing, not even a generation token
                return replay_outcome(row["content_hash"], record["content_hash"])
            # numbered inside the write transaction: seq order is commit order (the change feed)
            conn.execute("INSERT INTO rectification_responses (response_id, round_id, item_id, content_hash, body,"
                         " seq) VALUES (?, ?, ?, ?, ?,"
                         " (SELECT COALESCE(MAX(seq), 0) + 1 FROM rectification_responses))",
                         (record["response_id"], record["round_id"], record["item_id"], record["content_hash"],
                          _dumps(record)))
            # only this scope's token: no score depends on a response, so cached results stay valid
            conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('generation:rectifications', ?)",
                         (uuid.uuid4().hex,))
            return Outcome.CREATED

    def get_rectification_response(self, response_id: str) -> dict | None:
        return self._body("rectification_responses", "response_id", response_id)

    def rectification_responses(self, round_id: str, item_id: str | None = None) -> list[dict]:
        if item_id is None:
            rows = self._read("SELECT body FROM rectification_responses WHERE round_id = ? ORDER BY seq", (round_id,))
        else:
            rows = self._read("SELECT body FROM rectification_responses WHERE round_id = ? AND item_id = ?"
                              " ORDER BY seq", (round_id, item_id))
        return [json.loads(r["body"]) for r in rows]

    def rectification_response_changes(self, round_id: str, after: int | None = None,
                                       limit: int | None = None) -> tuple[list[dict], int]:
        return self._changes("rectification_responses", round_id, after, limit)

    # -- survey links (SPEC §14) -------------------------------------------------
    def create_survey_link(self, record: Mapping[str, Any]) -> None:
        with self._transaction() as conn:  # no score depends on links: generations stay
            conn.execute(
                "INSERT INTO survey_links (link_id, round_id, community_id, secret_hash, created_at, created_by,"
                " expires_at, revoked_at) VALUES (:link_id, :round_id, :community_id, :secret_hash, :created_at,"
                " :created_by, :expires_at, NULL)", {"created_by": None, **record})

    def get_survey_link(self, link_id: str) -> dict | None:
        row = self._one("SELECT * FROM survey_links WHERE link_id = ?", (link_id,))
        return dict(row) if row else None

    def list_survey_links(self, round_id: str, community_id: str | None = None) -> list[dict]:
        if community_id is None:
            return [dict(r) for r in self._read("SELECT * FROM survey_links WHERE round_id = ?"
                                                " ORDER BY community_id, created_at, link_id", (round_id,))]
        return [dict(r) for r in self._read("SELECT * FROM survey_links WHERE round_id = ? AND community_id = ?"
                                            " ORDER BY created_at, link_id", (round_id, community_id))]

    def revoke_survey_link(self, link_id: str, at: str) -> bool:
        with self._transaction() as conn:
            cur = conn.execute("UPDATE survey_links SET revoked_at = COALESCE(revoked_at, ?) WHERE link_id = ?",
                               (at, link_id))
            return cur.rowcount > 0

    # -- attachments (SPEC §13) -------------------------------------------------
    def _blob_path(self, sha256: str, thumbnail: bool = False) -> Path:
        if not _SHA256.fullmatch(sha256):  # a hash names a file: nothing else may reach the file system
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.blob_dir / sha256[:2] / (f"{sha256}.thumb.jpg" if thumbnail else sha256)

    def put_attachment(self, record: Mapping, data: bytes, thumbnail: bytes | None) -> Outcome:
        sha256 = record["sha256"]
        if self.get_attachment(sha256) is None:
            # the bytes first, each whole or absent after a crash; then the record that names them
            try:
                write_durably(self._blob_path(sha256), data)
                if thumbnail is not None:
                    write_durably(self._blob_path(sha256, thumbnail=True), thumbnail)
            except OSError as exc:
                raise StoreError(f"cannot write attachment {sha256} under {self.blob_dir}: {exc}") from exc
        with self._transaction() as conn:  # no score depends on a file: generations stay
            created = conn.execute("INSERT OR IGNORE INTO attachments (sha256, body) VALUES (?, ?)",
                                   (sha256, _dumps(dict(record)))).rowcount == 1
            conn.execute("INSERT OR IGNORE INTO attachment_access (sha256, grantee) VALUES (?, ?)",
                         (sha256, f"key:{record['uploaded_by']}"))
        return Outcome.CREATED if created else Outcome.DUPLICATE

    def get_attachment(self, sha256: str) -> dict | None:
        return self._body("attachments", "sha256", sha256)

    def attachment_bytes(self, sha256: str, thumbnail: bool = False) -> bytes | None:
        record = self.get_attachment(sha256)
        if record is None or (thumbnail and not record.get("has_thumbnail")):
            return None
        try:
            return self._blob_path(sha256, thumbnail).read_bytes()
        except FileNotFoundError:
            return None

    def add_attachment_uploader(self, sha256: str, key_id: str) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO attachment_access (sha256, grantee) VALUES (?, ?)",
                         (sha256, f"key:{key_id}"))

    def add_attachment_refs(self, refs: list[Mapping]) -> None:
        if not refs:
            return
        with self._transaction() as conn:
            for ref in map(attachment_ref, refs):
                conn.execute("INSERT OR IGNORE INTO attachment_refs (sha256, source, source_id, round_id, body)"
                             " VALUES (?, ?, ?, ?, ?)",
                             (ref["sha256"], ref["source"], ref["source_id"], ref["round_id"], _dumps(ref)))
                conn.executemany("INSERT OR IGNORE INTO attachment_access (sha256, grantee) VALUES (?, ?)",
                                 [(ref["sha256"], grant) for grant in attachment_grants(ref)])

    def attachment_refs(self, sha256: str) -> list[dict]:
        rows = self._read("SELECT body FROM attachment_refs WHERE sha256 = ? ORDER BY round_id, source, source_id",
                          (sha256,))
        return [json.loads(r["body"]) for r in rows]

    def round_attachment_refs(self, round_id: str) -> list[dict]:
        rows = self._read("SELECT body FROM attachment_refs WHERE round_id = ? ORDER BY sha256, source, source_id",
                          (round_id,))
        return [json.loads(r["body"]) for r in rows]

    def attachment_access(self, sha256: str, grants: Iterable[str]) -> bool:
        grants = list(grants)
        if not grants:
            return False
        row = self._one(f"SELECT 1 FROM attachment_access WHERE sha256 = ? AND grantee IN"
                        f" ({', '.join('?' * len(grants))}) LIMIT 1", (sha256, *grants))
        return row is not None

    # -- audit ----------------------------------------------------------------
    @staticmethod
    def _insert_audit(conn, event: Mapping) -> None:
        conn.execute(
            "INSERT INTO audit (at, key_id, round_id, entity_id, body) VALUES (?, ?, ?, ?, ?)",
            (event["at"], event.get("key_id"), event.get("round_id"), event.get("entity_id"), _dumps(event)),
        )

    def append_audit(self, event: Mapping) -> None:
        # Its own short transaction (autocommit); the generation token is not
        # bumped since audit events change no score.
        self._insert_audit(self._conn(), event)

    def list_audit(self, filters: Mapping[str, Any], limit: int) -> list[dict]:
        conditions = audit_conditions(filters)
        where = "".join(f" AND {column} {operator} ?" for column, operator, _ in conditions)
        rows = self._read(f"SELECT seq, body FROM audit WHERE 1 = 1{where} ORDER BY seq LIMIT ?",
                          (*(value for _, _, value in conditions), int(limit)))
        return [{**json.loads(r["body"]), "seq": r["seq"]} for r in rows]

    # -- maintenance --------------------------------------------------------
    def recount(self, round_id: str, n_items: int, fix: bool = True) -> list[dict]:
        with self._write("surveys") as conn:
            rebuilt = tally(((r["community_id"], r["respondent_type"], json.loads(r["levels"])) for r in conn.execute(
                "SELECT community_id, respondent_type, levels FROM responses WHERE round_id = ? AND voided_at IS NULL",
                (round_id,))), n_items)
            kept = {
                (r["community_id"], r["respondent_type"]): CommunityCounts(
                    np.frombuffer(r["counts"], dtype=np.int64).reshape(n_items + 1, 5), r["responses"])
                for r in conn.execute(
                    "SELECT community_id, respondent_type, responses, counts FROM survey_stats WHERE round_id = ?",
                    (round_id,),
                )
            }
            differences = count_differences(rebuilt, kept, n_items)
            if fix and differences:
                conn.execute("DELETE FROM survey_stats WHERE round_id = ?", (round_id,))
                self._add_counts(conn, round_id, rebuilt, n_items)
            return differences + self._recount_anomalies(conn, round_id, fix)
