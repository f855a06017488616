"""Rate limits (Flask-Limiter): application-wide per API token and per client address, 429 with Retry-After.

Each limit is one allowance for the whole API, whichever routes a client
calls (a shared scope, not one allowance per route), unknown routes under
``/api/v1/`` included:

- requests per token (a hash of the presented token, so nobody can spend
  another key's quota by naming its id), or per address without a token;
- writes per token;
- requests per client address, all tokens together (caps token guessing).

**Shared counts.** By default the counts live in one SQLite file in the
instance folder (``ratelimits.sqlite3``), which every gunicorn worker of the
server opens, so a limit holds for the server as a whole. Several servers
(compose, Kubernetes) need a storage they all reach: set
``SCORING_RATELIMIT_STORAGE_URI`` to ``mongodb://…`` (the ``limits``
library's MongoDB storage; it needs a real MongoDB, FerretDB lacks the
update pipelines it uses) or ``redis://…`` (needs the ``redis`` package).
``memory://`` counts per worker process.

**Client address.** The address is the connection's peer unless
``SCORING_TRUSTED_PROXIES`` is N > 0: then werkzeug's ``ProxyFix`` takes the
N-th address from the right of ``X-Forwarded-For``, the one the nearest
trusted proxy saw. Addresses a client writes further left are ignored, so
spoofing the header gains nothing; with the default 0 the header is ignored.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import os
import sqlite3
import threading
import time
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from flask import Flask, request
from flask_limiter import Limit, Limiter
from limits.storage import MovingWindowSupport, Storage
from werkzeug.middleware.proxy_fix import ProxyFix

from ..store.sqlite import immediate_transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hits (key TEXT NOT NULL, at REAL NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS hits_by_key ON hits (key, at);
CREATE INDEX IF NOT EXISTS hits_by_expiry ON hits (expires);
CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, count INTEGER NOT NULL, expires REAL NOT NULL);
"""


class SQLiteStorage(Storage, MovingWindowSupport):
    """A ``limits`` storage in one SQLite file, for the fixed and moving window strategies.

    Every process and thread that opens the file shares the counts; each
    check-and-count is one ``BEGIN IMMEDIATE`` transaction, so concurrent
    workers never both take the last slot. Counts are not precious: the file
    is written without fsync (``synchronous=OFF``) and entries that left
    their window are deleted as they are met and, now and then, all at once.
    """

    STORAGE_SCHEME = ["sqlite"]
    PURGE_EVERY = 1000

    def __init__(self, uri: str, wrap_exceptions: bool = False, busy_timeout_ms: int = 10_000, **options):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.path = unquote(urlsplit(uri).path)
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._calls = itertools.count(1)

    @staticmethod
    def uri_for(path: str | os.PathLike) -> str:
        return "sqlite://" + quote(str(Path(path).resolve()))

    @property
    def base_exceptions(self) -> type[Exception]:
        return sqlite3.Error

    @property
    def storage(self) -> str:
        """What 'scoring-service limiter config' shows as the storage (Flask-Limiter reads ``storage.storage``,
        the client of the library's own storages): the counts' file."""
        return self.path

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():  # never across a gunicorn fork
            conn = self._open()
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _open(self) -> sqlite3.Connection:
        """A connection of this thread. Openings take turns on a lock file beside the counts: two gunicorn
        workers switching a new file to WAL at once get "database is locked" or even "disk I/O error"
        from SQLite (the busy timeout does not cover that switch), which answered a request with a 500."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with open(self.path + ".lock", "a", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout_ms / 1000)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = OFF")
            conn.executescript(_SCHEMA)
        return conn

    def _transaction(self):
        return immediate_transaction(self._conn())

    def _maybe_purge(self, conn: sqlite3.Connection, now: float) -> None:
        if next(self._calls) % self.PURGE_EVERY == 0:
            conn.execute("DELETE FROM hits WHERE expires <= ?", (now,))
            conn.execute("DELETE FROM counters WHERE expires <= ?", (now,))

    # -- fixed window -------------------------------------------------------
    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        with self._transaction() as conn:
            conn.execute("DELETE FROM counters WHERE key = ? AND expires <= ?", (key, now))
            conn.execute("INSERT INTO counters (key, count, expires) VALUES (?, ?, ?) "
                         "ON CONFLICT (key) DO UPDATE SET count = count + excluded.count",
                         (key, amount, now + expiry))
            (count,) = conn.execute("SELECT count FROM counters WHERE key = ?", (key,)).fetchone()
            self._maybe_purge(conn, now)
        return count

    def get(self, key: str) -> int:
        row = self._conn().execute("SELECT count FROM counters WHERE key = ? AND expires > ?",
                                   (key, time.time())).fetchone()
        return row[0] if row else 0

    def get_expiry(self, key: str) -> float:
        now = time.time()
        row = self._conn().execute("SELECT expires FROM counters WHERE key = ? AND expires > ?",
                                   (key, now)).fetchone()
        return row[0] if row else now

    def clear(self, key: str) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM counters WHERE key = ?", (key,))
            conn.execute("DELETE FROM hits WHERE key = ?", (key,))

    def reset(self) -> int | None:
        with self._transaction() as conn:
            n = conn.execute("SELECT (SELECT count(DISTINCT key) FROM hits) + (SELECT count(*) FROM counters)"
                             ).fetchone()[0]
            conn.execute("DELETE FROM counters")
            conn.execute("DELETE FROM hits")
        return n

    def check(self) -> bool:
        try:
            self._conn().execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    # -- moving window ------------------------------------------------------
    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        now = time.time()
        with self._transaction() as conn:
            conn.execute("DELETE FROM hits WHERE key = ? AND at <= ?", (key, now - expiry))
            (taken,) = conn.execute("SELECT count(*) FROM hits WHERE key = ?", (key,)).fetchone()
            if taken + amount > limit:
                return False
            conn.executemany("INSERT INTO hits (key, at, expires) VALUES (?, ?, ?)",
                             [(key, now, now + expiry)] * amount)
            self._maybe_purge(conn, now)
        return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        now = time.time()
        oldest, taken = self._conn().execute("SELECT min(at), count(*) FROM hits WHERE key = ? AND at > ?",
                                             (key, now - expiry)).fetchone()
        return (oldest if taken else now), taken


def token_or_address() -> str:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer ") and header[7:].strip():
        return "token:" + hashlib.sha256(header[7:].strip().encode()).hexdigest()[:24]
    return "addr:" + client_address()


def client_address() -> str:
    """The client's address (after ``ProxyFix`` when proxies are trusted)."""
    return request.remote_addr or "unknown"


def _not_api() -> bool:
    return not request.path.startswith("/api/v1/")


def _reads() -> bool:
    return request.method in ("GET", "HEAD", "OPTIONS")


def _writes_exempt() -> bool:
    return _not_api() or _reads()


def _endpoint_or_unmatched() -> str:
    # Flask-Limiter exempts requests without an endpoint; unknown routes and
    # methods count against the same allowances instead.
    return request.endpoint or "unmatched"


def storage_uri(app: Flask) -> str:
    return app.config.get("RATELIMIT_STORAGE_URI") or SQLiteStorage.uri_for(
        Path(app.instance_path) / "ratelimits.sqlite3")


def trust_proxies(app: Flask) -> None:
    """Take the client address from ``X-Forwarded-For`` across exactly ``TRUSTED_PROXIES`` hops."""
    hops = int(app.config.get("TRUSTED_PROXIES") or 0)
    if hops < 0:
        from ..config import ConfigError

        raise ConfigError("SCORING_TRUSTED_PROXIES must be 0 or more")
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=0, x_host=0, x_port=0, x_prefix=0)


def retry_after_only_when_refused(response):
    """Flask-Limiter sets ``Retry-After`` on every response; keep it on 429 (and 503) only."""
    if response.status_code not in (429, 503):
        response.headers.pop("Retry-After", None)
    return response


def init_rate_limits(app: Flask) -> Limiter:
    cfg = app.config
    trust_proxies(app)
    # after_request functions run last-registered first: this one runs after the limiter's
    app.after_request(retry_after_only_when_refused)
    # ``shared=True``: one scope (and count) for every route, not one per endpoint
    limits = [
        Limit(cfg["RATELIMIT_DEFAULT"], key_function=token_or_address, scope="token", shared=True,
              exempt_when=_not_api),
        Limit(cfg["RATELIMIT_WRITE"], key_function=token_or_address, scope="token-writes", shared=True,
              exempt_when=_writes_exempt),
        Limit(cfg["RATELIMIT_PER_ADDRESS"], key_function=client_address, scope="address", shared=True,
              exempt_when=_not_api),
    ]
    limiter = Limiter(
        key_func=token_or_address,
        app=app,
        default_limits=limits,
        request_identifier=_endpoint_or_unmatched,
        headers_enabled=True,
        storage_uri=storage_uri(app) if cfg["RATELIMIT_ENABLED"] else "memory://",
        strategy="moving-window",
        enabled=cfg["RATELIMIT_ENABLED"],
        swallow_errors=False,
    )
    return limiter
