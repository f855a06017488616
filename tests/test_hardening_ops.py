"""Issue 12, items 1, 4, 8 and part of 10: serving model, rate limits, metrics, smaller hardening.

Each test fails on the code before the fix (noted per test) and passes after.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import re
import socket
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests
import yaml

from scoring_service.config import from_environment
from scoring_service.store import StoreError

from .conftest import add_key, make_app
from .live_server import LiveServer

ROOT = Path(__file__).resolve().parents[1]

#: seven read routes that answer an admin key 200, even on an empty store
ROUTES = ["/api/v1/rounds", "/api/v1/districts", "/api/v1/communities", "/api/v1/agencies", "/api/v1/rubrics",
          "/api/v1/keys", "/api/v1/audit"]


@pytest.fixture
def sqlite_app(tmp_path):
    """An app on SQLite for behaviour that does not depend on the store."""
    def build(**overrides):
        app = make_app(str(tmp_path / "store.sqlite3"), tmp_path / "instance", **overrides)
        apps.append(app)
        return app

    apps = []
    yield build
    for app in apps:
        app.extensions["scoring"].store.close()


# -- rate limits (item 4) -----------------------------------------------------------

def limited_app(build, **overrides):
    settings = dict(RATELIMIT_ENABLED=True, RATELIMIT_DEFAULT="20 per minute", RATELIMIT_WRITE="1000 per minute",
                    RATELIMIT_PER_ADDRESS="1000 per minute")
    settings.update(overrides)
    return build(**settings)


def test_token_limit_is_one_allowance_across_routes(sqlite_app):
    """Before: one allowance per route, so 7 routes × 5 requests all passed a limit of 20."""
    app = limited_app(sqlite_app)
    client = app.test_client()
    _, token = add_key(app, "admin", "管理员")
    h = {"Authorization": f"Bearer {token}"}
    statuses = [client.get(route, headers=h).status_code for _ in range(5) for route in ROUTES]
    assert len(statuses) == 35
    assert statuses[:20] == [200] * 20 and statuses[20:] == [429] * 15


def test_address_limit_counts_unknown_routes_too(sqlite_app):
    """Before: requests that matched no route had no endpoint and were never counted."""
    app = limited_app(sqlite_app, RATELIMIT_PER_ADDRESS="10 per minute")
    client = app.test_client()
    statuses = [client.delete(f"/api/v1/{'A' * 40}{i}").status_code for i in range(12)]
    assert statuses[:10] == [404] * 10 and statuses[10:] == [429, 429]
    # the same allowance covers the known routes
    _, token = add_key(app, "leadership", "领导")
    assert client.get("/api/v1/rounds", headers={"Authorization": f"Bearer {token}"}).status_code == 429


def test_writes_limit_is_shared_across_routes(sqlite_app):
    app = limited_app(sqlite_app, RATELIMIT_WRITE="3 per minute")
    client = app.test_client()
    _, token = add_key(app, "admin", "管理员")
    h = {"Authorization": f"Bearer {token}"}
    statuses = [client.put("/api/v1/districts/d1", json={"name_zh": "甲", "name_en": "A"}, headers=h).status_code,
                client.put("/api/v1/agencies/a1", json={"name": "甲机构"}, headers=h).status_code,
                client.put("/api/v1/districts/d2", json={"name_zh": "乙", "name_en": "B"}, headers=h).status_code,
                client.put("/api/v1/agencies/a2", json={"name": "乙机构"}, headers=h).status_code]
    assert statuses == [201, 201, 201, 429]
    assert client.get("/api/v1/districts", headers=h).status_code == 200  # reads are not writes


def test_forwarded_for_is_ignored_unless_a_proxy_is_trusted(sqlite_app):
    app = limited_app(sqlite_app, RATELIMIT_DEFAULT="1000 per minute", RATELIMIT_PER_ADDRESS="3 per minute")
    client = app.test_client()
    spoofed = [client.get("/api/v1/rounds", headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code
               for i in range(5)]
    assert [s == 429 for s in spoofed] == [False] * 3 + [True] * 2


def test_one_trusted_proxy_hop_separates_clients_and_spoofing_does_not_help(sqlite_app):
    """Before: no such setting; behind nginx every client shared nginx's address."""
    app = limited_app(sqlite_app, RATELIMIT_DEFAULT="1000 per minute", RATELIMIT_PER_ADDRESS="3 per minute",
                      TRUSTED_PROXIES=1)
    client = app.test_client()
    proxy = {"REMOTE_ADDR": "10.0.0.2"}

    def limited(forwarded_for=None, remote=proxy):
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
        return client.get("/api/v1/rounds", headers=headers, environ_base=remote).status_code == 429

    # the client writes its own X-Forwarded-For; nginx appends the address it saw
    assert [limited(f"198.51.100.{i}, 203.0.113.7") for i in range(5)] == [False] * 3 + [True] * 2
    # another client behind the same proxy has its own allowance
    assert not limited("203.0.113.8")
    # and the proxy's own address was not the one counted
    assert not limited(remote={"REMOTE_ADDR": "10.0.0.2"})


def test_trusted_proxies_must_not_be_negative(sqlite_app):
    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        sqlite_app(TRUSTED_PROXIES=-1)


def test_retry_after_only_on_429(sqlite_app):
    """Before: Flask-Limiter put Retry-After on every API response."""
    app = limited_app(sqlite_app, RATELIMIT_DEFAULT="2 per minute")
    client = app.test_client()
    _, token = add_key(app, "leadership", "领导")
    h = {"Authorization": f"Bearer {token}"}
    ok = client.get("/api/v1/rounds", headers=h)
    assert ok.status_code == 200 and "Retry-After" not in ok.headers
    assert ok.headers["X-RateLimit-Remaining"] == "1"
    client.get("/api/v1/rounds", headers=h)
    refused = client.get("/api/v1/districts", headers=h)
    assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 60


# -- metrics (item 8) ----------------------------------------------------------------

def metrics_text(client, **headers) -> str:
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200
    return r.get_data(as_text=True)


def test_made_up_methods_and_paths_share_one_label(sqlite_app):
    """Before: each made-up method (and, in the log, each path) added its own series."""
    app = sqlite_app()
    client = app.test_client()
    client.get("/dashboard")
    for i in range(20):
        assert client.open("/dashboard", method=f"M{1000 + i}").status_code == 405
        assert client.open(f"/api/v1/{'A' * 100}{i}", method=f"X{2000 + i}").status_code == 404
        assert client.get(f"/no/such/page/{i}").status_code == 404
    text = metrics_text(client)
    assert not re.search(r'method="[MX]\d{4}"', text)
    assert "AAAA" not in text and "/no/such/page" not in text
    assert 'method="OTHER"' in text and 'url_rule="unmatched"' in text
    assert 'url_rule="/dashboard"' in text
    # twenty more made-up requests add no series at all
    series = {line.rsplit(" ", 1)[0] for line in text.splitlines() if not line.startswith("#")}
    for i in range(20):
        client.open("/dashboard", method=f"Q{3000 + i}")
        client.get(f"/elsewhere/{i}")
    again = {line.rsplit(" ", 1)[0] for line in metrics_text(client).splitlines() if not line.startswith("#")}
    assert again == series


def test_default_request_metrics_count_as_the_exporter_counted_them(sqlite_app):
    """The request metrics of prometheus-flask-exporter's defaults, now recorded by ops.metrics.RequestMetrics
    (issue 18: cheaper per request), keep their names, labels and rules: one duration and one count per
    request, /metrics, /healthz and /static left out, an unhandled exception counted once more as a 500.
    (Passes on the exporter's own hooks too.)"""
    app = sqlite_app()
    app.config["PROPAGATE_EXCEPTIONS"] = False

    def boom():
        raise RuntimeError("boom")

    app.add_url_rule("/boom", "boom", boom)
    client = app.test_client()
    assert client.get("/dashboard").status_code == 200
    for _ in range(2):
        assert client.get("/api/v1/rounds").status_code == 401
    assert client.get("/healthz").status_code == 200
    assert client.get("/static/no-such-file.js").status_code == 404
    assert client.get("/boom").status_code == 500
    text = metrics_text(client)
    assert 'flask_http_request_total{method="GET",status="200"} 1.0' in text  # /dashboard only
    assert 'flask_http_request_total{method="GET",status="401"} 2.0' in text
    assert 'flask_http_request_total{method="GET",status="500"} 1.0' in text
    assert 'flask_http_request_exceptions_total{method="GET",status="500"} 1.0' in text
    assert 'flask_http_request_duration_seconds_count{method="GET",status="401",url_rule="/api/v1/rounds"} 2.0' \
        in text or 'flask_http_request_duration_seconds_count{method="GET",url_rule="/api/v1/rounds",status="401"} 2.0' \
        in text
    assert re.search(r'flask_http_request_duration_seconds_bucket\{le="0.005",method="GET",status="200",'
                     r'url_rule="/dashboard"\}|flask_http_request_duration_seconds_bucket\{method="GET",'
                     r'url_rule="/dashboard",status="200",le="0.005"\}', text)
    assert 'url_rule="/boom"' in text and "flask_exporter_info{" in text
    assert "/healthz" not in text and "/static" not in text and 'url_rule="/metrics"' not in text


def test_metrics_token_must_be_the_whole_bearer_header(sqlite_app):
    """Before: the check took Authorization[7:], so 'XXXXXX <token>' passed."""
    app = sqlite_app(METRICS_PUBLIC=False, METRICS_TOKEN="metrics-secret-42")
    client = app.test_client()
    assert client.get("/metrics", headers={"Authorization": "Bearer metrics-secret-42"}).status_code == 200
    for header in ("XXXXXX metrics-secret-42", "Bearer metrics-secret-42x", "Bearer metrics-secret-4",
                   "Bearer  metrics-secret-42", "Basic metrics-secret-42", "metrics-secret-42"):
        assert client.get("/metrics", headers={"Authorization": header}).status_code == 401, header
    assert client.get("/metrics").status_code == 401


# -- smaller items (item 10) -----------------------------------------------------------

class ScriptsAndStyles(HTMLParser):
    def __init__(self):
        super().__init__()
        self.inline = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and "src" not in attrs and attrs.get("type") != "application/json":
            self.inline.append(("script", attrs))
        if tag == "style" or "style" in attrs or any(name.startswith("on") for name in attrs):
            self.inline.append((tag, attrs))


def test_kiosk_of_an_unknown_community_says_so_in_chinese(client, keys, world):
    r = client.get("/kiosk/nope-999")
    assert r.status_code == 404 and r.mimetype == "text/html"  # once the API's English JSON
    text = r.get_data(as_text=True)
    assert "找不到该小区" in text and "nope-999" in text
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]


def test_pages_send_a_strict_content_security_policy(client, keys, world):
    pages = ["/", "/dashboard", "/kiosk/heping-001", "/static/kiosk.js", "/kiosk/sw.js", "/s/l_0123456789abcdef.x",
             "/static/survey-queue.js", "/static/survey.js"]
    for path in pages:
        r = client.get(path)
        assert r.status_code == 200, path
        csp = r.headers["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["default-src"] == "'self'" and directives["script-src"] == "'self'"
        assert directives["style-src"] == "'self'" and directives["frame-ancestors"] == "'none'"
        assert directives["img-src"] == "'self' data: blob:"  # blob: the dashboard's photos fetched with the key
        assert "unsafe" not in csp
        assert r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        if r.mimetype == "text/html":
            # the policy forbids inline code: the pages must not need any
            parser = ScriptsAndStyles()
            parser.feed(r.get_data(as_text=True))
            assert parser.inline == [], path
    api = client.get("/api/v1/rounds", headers=keys.header("admin"))
    assert api.headers["X-Content-Type-Options"] == "nosniff"


def test_phone_survey_page_sets_a_device_cookie_once(client):
    """/s/<token> (SPEC §14): a random device cookie, HttpOnly and SameSite=Lax, Secure over https; kept once set.
    The link's secret is in the address: no Referer leaves the page and no shared cache keeps it."""
    first = client.get("/s/l_0123456789abcdef.secret")
    assert first.status_code == 200  # the token is checked by the API the page calls, not here
    [cookie] = first.headers.getlist("Set-Cookie")
    assert cookie.startswith("sd=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie and "Path=/;" in cookie
    value = cookie.split(";")[0].removeprefix("sd=")
    assert len(value) >= 20 and client.get_cookie("sd").value == value
    assert first.headers["Referrer-Policy"] == "no-referrer" and "no-store" in first.headers["Cache-Control"]
    again = client.get("/s/l_0123456789abcdef.secret")  # the browser sends it back: kept as it is
    assert again.status_code == 200 and again.headers.getlist("Set-Cookie") == []
    client.delete_cookie("sd")
    assert client.get("/s/other").headers["Set-Cookie"].split(";")[0] not in ("sd=" + value, "sd=")
    client.set_cookie("sd", "<bad>")  # one the API would not store is replaced
    assert client.get("/s/l_0123456789abcdef.secret").headers["Set-Cookie"].startswith("sd=")
    assert client.get_cookie("sd").value != "<bad>"
    client.delete_cookie("sd")
    over_https = client.get("/s/l_0123456789abcdef.secret", base_url="https://survey.example.gov.cn")
    assert "Secure" in over_https.headers["Set-Cookie"]


@pytest.mark.parametrize("name", ["SECRET_KEY", "METRICS_TOKEN", "DATABASE_URL", "RATELIMIT_STORAGE_URI"])
def test_template_placeholders_refuse_to_start(name, tmp_path, monkeypatch):
    """Before: the CHANGE-ME values of deploy/ were accepted as real secrets."""
    value = "mongodb://scoring:CHANGE-ME@mongo-0/scoring" if name.endswith(("URL", "URI")) else "CHANGE-ME-64"
    with pytest.raises(ValueError, match=f"SCORING_{name}.*CHANGE-ME"):
        from_environment({f"SCORING_{name}": value})
    monkeypatch.setenv(f"SCORING_{name}", value)
    with pytest.raises(ValueError, match="CHANGE-ME"):
        make_app(str(tmp_path / "store.sqlite3"), tmp_path / "instance")
    from scoring_service.ops.server import gunicorn_settings

    with pytest.raises(ValueError, match="CHANGE-ME"):
        gunicorn_settings()


def test_every_placeholder_in_the_secret_template_is_refused():
    secret = yaml.safe_load((ROOT / "deploy" / "k8s" / "secret.yaml").read_text())
    for name, value in secret["stringData"].items():
        assert "CHANGE-ME" in value
        with pytest.raises(ValueError, match=name):
            from_environment({name: value})


def test_readyz_does_not_echo_the_store_error(app, client, monkeypatch):
    """Before: the 503 body carried the exception text (hosts, paths) to anyone."""
    secret_detail = "cannot open /srv/private/scoring.sqlite3 on db-7.internal:27017"

    def broken():
        raise StoreError(secret_detail)

    monkeypatch.setattr(app.extensions["scoring"].store, "ping", broken)
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.get_json() == {"status": "unavailable", "store": "unreachable"}
    assert "db-7" not in r.get_data(as_text=True)


def test_oversized_chunked_body_is_413(sqlite_app):
    """Before: the JSON parser saw a body cut at the limit and answered 400 or 422."""
    app = sqlite_app()
    client = app.test_client()
    _, token = add_key(app, "admin", "管理员")

    def put(body: bytes):
        return client.put("/api/v1/districts/d1", input_stream=io.BytesIO(body),
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                                   "Transfer-Encoding": "chunked"},
                          environ_overrides={"wsgi.input_terminated": True})

    small = put(json.dumps({"name_zh": "和平区", "name_en": "Heping"}).encode())
    assert small.status_code == 201, small.get_json()
    big = put(json.dumps({"name_zh": "和" * 20, "name_en": "x" * (3 * 1024 * 1024)}).encode())
    assert big.status_code == 413
    assert big.get_json()["code"] == 413


def test_threads_asking_for_one_result_share_one_computation():
    """Threaded workers serve the dashboard's two parallel requests for one rank-interval run in one
    process. Before: the second computed again, found the per-worker slot taken and got 429."""
    import threading

    from scoring_service.services.context import BoundedCache

    cache, slot, calls = BoundedCache("test", 4), threading.BoundedSemaphore(1), []

    def compute():
        if not slot.acquire(blocking=False):
            raise RuntimeError("busy")
        try:
            calls.append(1)
            time.sleep(0.3)
            return {"draws": 1000}
        finally:
            slot.release()

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: cache.get(("r2018", "g1", 1000, 2018), compute), range(4)))
    assert results == [{"draws": 1000}] * 4 and len(calls) == 1

    def failing():
        calls.append(1)
        time.sleep(0.1)
        raise RuntimeError("store down")

    calls.clear()
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(cache.get, "broken", failing) for _ in range(3)]
    assert all(isinstance(f.exception(), RuntimeError) for f in futures)
    assert len(calls) == 3  # a failure is not handed to the waiters: each tries in turn
    assert cache.get("broken", lambda: "fine") == "fine"


# -- under gunicorn (items 1, 4 and 10) ------------------------------------------------

def raw_request(port: int, data: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading everything: read the answer
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


@pytest.mark.slow
def test_slow_clients_do_not_stop_the_server(tmp_path):
    """Before (sync workers): 2 × workers slow sockets held every worker; /healthz waited for the 60 s timeout."""
    workers = 2
    with LiveServer(str(tmp_path / "store.sqlite3"), tmp_path / "instance", workers=workers) as server:
        slow = []
        for _ in range(2 * workers):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            slow.append(s)
        try:
            timings = []
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                for i, s in enumerate(slow):
                    s.sendall(f"X-Slow-{i}: {time.monotonic()}\r\n".encode())  # one header line at a time
                started = time.monotonic()
                r = requests.get(f"{server.url}/healthz", timeout=2)
                timings.append(time.monotonic() - started)
                assert r.status_code == 200 and r.json() == {"status": "ok"}
                time.sleep(1)
            assert len(timings) >= 4 and max(timings) < 2
            # the slow requests are still being served when they finish
            for s in slow:
                s.sendall(b"\r\n")
                assert s.recv(4096).startswith(b"HTTP/1.1 200")
        finally:
            for s in slow:
                s.close()


@pytest.mark.slow
def test_protocol_errors_are_json_under_gunicorn(tmp_path):
    """Before: gunicorn answered an over-long request line with an HTML page; a big chunked body got 400."""
    db = str(tmp_path / "store.sqlite3")
    app = make_app(db, tmp_path / "instance")
    _, token = add_key(app, "admin", "管理员")
    app.extensions["scoring"].store.close()
    with LiveServer(db, tmp_path / "instance", workers=1) as server:
        out = raw_request(server.port, b"GET /api/v1/" + b"A" * 6000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 414 ")
        assert b"Content-Type: application/json" in head
        assert json.loads(body)["code"] == 414

        payload = json.dumps({"name_zh": "和平区", "name_en": "x" * (2 * 1024 * 1024 + 4096)}).encode()
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + 65536]), payload[i:i + 65536])
                          for i in range(0, len(payload), 65536)) + b"0\r\n\r\n"
        head = (f"PUT /api/v1/districts/d1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
        out = raw_request(server.port, head + chunks)
        status_line, _, rest = out.partition(b"\r\n")
        assert status_line.startswith(b"HTTP/1.1 413"), status_line
        assert json.loads(rest.partition(b"\r\n\r\n")[2])["code"] == 413


def _first_hit(path: str, barrier, results) -> None:
    from scoring_service.ops.limits import SQLiteStorage

    storage = SQLiteStorage(SQLiteStorage.uri_for(path))
    barrier.wait()  # every process opens the new file at once, as gunicorn's workers do on their first request
    try:
        storage.acquire_entry("token:x", 1000, 60)
        results.put("ok")
    except sqlite3.Error as exc:
        results.put(repr(exc))


def test_rate_limit_counts_file_opened_by_many_processes_at_once(tmp_path):
    """Before: two workers switching the new counts file to WAL at once got "database is locked" (or "disk I/O
    error") in about one start in six with eight processes, and the request was answered 500."""
    ctx = multiprocessing.get_context("fork")
    for trial in range(20):
        path = str(tmp_path / f"ratelimits-{trial}.sqlite3")
        barrier, results = ctx.Barrier(8), ctx.Queue()
        processes = [ctx.Process(target=_first_hit, args=(path, barrier, results)) for _ in range(8)]
        for p in processes:
            p.start()
        outcomes = [results.get(timeout=60) for _ in processes]
        for p in processes:
            p.join()
        assert outcomes == ["ok"] * 8, (trial, outcomes)


@pytest.mark.slow
def test_rate_limit_holds_across_routes_and_both_workers(tmp_path):
    """Before: counts per route and per worker: 253 of 315 requests passed a limit of 20."""
    db = str(tmp_path / "store.sqlite3")
    app = make_app(db, tmp_path / "instance")
    _, token = add_key(app, "admin", "管理员")
    app.extensions["scoring"].store.close()
    env = {"SCORING_RATELIMIT_ENABLED": "true", "SCORING_RATELIMIT_DEFAULT": "20 per minute",
           "SCORING_RATELIMIT_PER_ADDRESS": "1000 per minute"}
    with LiveServer(db, tmp_path / "instance", workers=2, extra_env=env) as server:
        h = {"Authorization": f"Bearer {token}"}

        def get(i):
            return requests.get(server.url + ROUTES[i % len(ROUTES)], headers=h, timeout=10).status_code

        def api_pids():
            entries = [json.loads(x) for x in server.log_path.read_text().splitlines() if x.startswith("{")]
            return {e["pid"] for e in entries if e.get("path", "").startswith("/api/v1/")}

        statuses: list[int] = []
        with ThreadPoolExecutor(max_workers=8) as pool:  # concurrent, so that both workers serve
            while len(statuses) < 70 or (len(api_pids()) < 2 and len(statuses) < 350):
                statuses += pool.map(get, range(len(statuses), len(statuses) + 35))
        assert len(api_pids()) == 2, "both workers served (and counted) requests"
    assert set(statuses) == {200, 429}
    assert statuses.count(200) == 20


def test_servers_on_one_host_do_not_share_gunicorns_control_socket(tmp_path, monkeypatch):
    """gunicorn 27 opens a control socket at one path per user ($XDG_RUNTIME_DIR or ~/.gunicorn): two servers
    on a host took it over from each other, so gunicornc's reload or shutdown reached the last one started.
    Off by default; SCORING_CONTROL_SOCKET gives a server its own. Two live servers leave no socket."""
    from scoring_service.ops.server import GunicornServer, gunicorn_settings

    monkeypatch.delenv("SCORING_CONTROL_SOCKET", raising=False)
    off = GunicornServer(gunicorn_settings("127.0.0.1", 8000, 1)).cfg
    assert off.control_socket_disable is True
    monkeypatch.setenv("SCORING_CONTROL_SOCKET", str(tmp_path / "a.ctl"))
    own = GunicornServer(gunicorn_settings("127.0.0.1", 8000, 1)).cfg
    assert own.control_socket_disable is False and own.control_socket == str(tmp_path / "a.ctl")

    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_RUNTIME_DIR": ""}
    with LiveServer(str(tmp_path / "one.sqlite3"), tmp_path / "one", workers=1, extra_env=env) as one, \
            LiveServer(str(tmp_path / "two.sqlite3"), tmp_path / "two", workers=1, extra_env=env) as two:
        assert requests.get(f"{one.url}/healthz", timeout=10).status_code == 200
        assert requests.get(f"{two.url}/healthz", timeout=10).status_code == 200
        assert not (home / ".gunicorn").exists()
