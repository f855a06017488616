"""Where a single-survey POST's time goes in a gunicorn worker under wrk load (issue 18 item 3).

    python -m bench.postprofile [--seconds 10] [--keep DIR]     # demo instance, bare, service, profile

The service runs under the production gunicorn settings (``scoring_service.ops.server``) with the same
wrk load as figure 1 (bench/wrk.py), in three runs back to back with the bare baseline:

* **as served**: the real app, nothing added; the CPU time its worker processes used during the run
  (``/proc/<pid>/stat``) divided by the requests answered is what one POST costs the machine, the bare
  endpoint's the same way beside it;
* **profiled**: the real app with timers around its parts (``instrument``): each part's CPU time of its
  own thread (``time.thread_time``, so waiting for the GIL or the disk is not counted) minus the parts
  nested in it, per POST. The parts: auth, JSON body, validation, the submission's checks and hashes,
  the store's SQL, anomaly marks, audit, the commit, logging, metrics, the response body, and what is
  left of Flask/werkzeug/flask-smorest and of gunicorn. The commit's and the group-commit wait's wall
  times are given too, since fsync is waiting, not CPU. The timers cost a little themselves: the
  profiled run's throughput is reported beside the plain one;
* **without fsync**: the real app with SQLite's ``synchronous=OFF`` set on its connections by this
  benchmark only (the service has no such setting): what acknowledging before the disk confirms would
  gain, measured, not estimated.

Nothing here changes the service: the profiled and fsync-less apps are built by ``serve`` below (a
gunicorn entry for ``tests.live_server.LiveServer``) by wrapping functions of the app it creates.
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import json
import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: the parts of a POST, in table order: (name, what it covers)
PARTS = (
    ("auth", "bearer token: key read by id, SHA-256 of the secret, constant-time compare"),
    ("JSON body", "reading and parsing the body once, its depth bound (check_request_body, check_json_body)"),
    ("validation", "webargs + marshmallow SurveySchema.load"),
    ("round and rubric", "round read and rubric (round_context)"),
    ("submission checks", "prepare_response: community read, times, household HMAC, content hash"),
    ("store: SQL of the write", "replay and household look-ups, insert, survey counts (_add_responses_in)"),
    ("store: anomaly marks", "facts of the response and its marks' counts (AnomalyFacts.of, _refresh_marks)"),
    ("audit", "the event built and inserted in the write's transaction, the after-request audit hook"),
    ("store: waiting for the write lock", "flock of the lock file: every writer of every worker queues here"),
    ("store: BEGIN IMMEDIATE", "SQLite's own write lock, free once the lock file is held"),
    ("store: COMMIT", "the WAL write and its fsync (synchronous=FULL), once per group of writes"),
    ("store: group commit", "waiting for this worker's group to be committed, savepoints, generation tokens"),
    ("logging", "request id and the JSON access-log line"),
    ("metrics", "request duration and count (RequestMetrics) and the submissions counter (multiprocess files)"),
    ("response body", "ResponseSchema.dump and JSON encoding"),
    ("Flask, werkzeug, flask-smorest", "request/app contexts, routing, decorators, the view's own code"),
    ("gunicorn", "reading the socket, HTTP parsing, WSGI environ, writing the response"),
    ("other hooks", "security headers, Retry-After (rate limits are off in the benchmark)"),
)


class Meter:
    """Per-part CPU (own thread) and wall time, exclusive of the parts nested inside, over all threads."""

    def __init__(self):
        self.cpu: dict[str, int] = {}
        self.wall: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self.requests = 0
        #: wall time from BEGIN IMMEDIATE's return to COMMIT's: how long writes hold the database's write lock
        self.lock_held_ns = 0
        self.commits = 0
        self._lock = threading.Lock()
        self._local = threading.local()

    @contextmanager
    def part(self, name: str):
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        frame = [name, time.thread_time_ns(), time.perf_counter_ns(), 0, 0]  # name, cpu0, wall0, child cpu, wall
        stack.append(frame)
        try:
            yield
        finally:
            cpu = time.thread_time_ns() - frame[1]
            wall = time.perf_counter_ns() - frame[2]
            stack.pop()
            if stack:
                stack[-1][3] += cpu
                stack[-1][4] += wall
            with self._lock:
                self.cpu[name] = self.cpu.get(name, 0) + cpu - frame[3]
                self.wall[name] = self.wall.get(name, 0) + wall - frame[4]
                self.calls[name] = self.calls.get(name, 0) + 1

    def wrap(self, name: str, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.part(name):
                return fn(*args, **kwargs)

        return wrapper

    def report(self) -> dict:
        with self._lock:
            return {"pid": os.getpid(), "requests": self.requests, "lock_held_ns": self.lock_held_ns,
                    "commits": self.commits, "cpu_ns": dict(self.cpu),
                    "wall_ns": dict(self.wall), "calls": dict(self.calls)}


METER = Meter()

#: before/after-request functions of the app, by qualified name, and the part they belong to
HOOK_PARTS = {
    "init_observability.<locals>.assign_request_id": "logging",
    "init_observability.<locals>.log_request": "logging",
    "check_request_body": "JSON body",
    "check_json_body": "JSON body",
    "check_query_args": "Flask, werkzeug, flask-smorest",
    "register_audit.<locals>.record_write": "audit",
    "normalise_method_label": "metrics",
    "count_submissions": "metrics",
    "security_headers": "other hooks",
    "retry_after_only_when_refused": "other hooks",
}


def hook_part(fn) -> str:
    name = getattr(fn, "__qualname__", "")
    if name in HOOK_PARTS:
        return HOOK_PARTS[name]
    module = getattr(fn, "__module__", "") or ""
    if module.startswith("prometheus_flask_exporter") or name.startswith("RequestMetrics."):
        return "metrics"
    if module.startswith("flask_limiter"):
        return "rate limits (off here)"
    return f"hook {name}"


def instrument(app, meter: Meter = METER) -> None:
    """Timers around the parts of a POST of ``app`` (a service app from ``create_app``)."""
    from flask_smorest import response as smorest_response

    from scoring_service.api import auth, surveys
    from scoring_service.api.common import Blueprint
    from scoring_service.services import audit, submissions
    from scoring_service.store import base, sqlite

    wsgi = app.wsgi_app

    def wsgi_app(environ, start_response):
        if environ.get("REQUEST_METHOD") != "POST" or not environ.get("PATH_INFO", "").endswith("/surveys"):
            return wsgi(environ, start_response)
        with meter._lock:
            meter.requests += 1
        with meter.part("Flask, werkzeug, flask-smorest"):
            return wsgi(environ, start_response)

    app.wsgi_app = wsgi_app
    for funcs in (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs):
        for key, hooks in funcs.items():
            funcs[key] = [meter.wrap(hook_part(fn), fn) for fn in hooks]
    auth._principal_from_header = meter.wrap("auth", auth._principal_from_header)
    parser = Blueprint.ARGUMENTS_PARSER
    parser.parse = meter.wrap("validation", parser.parse)
    submissions.round_context = meter.wrap("round and rubric", submissions.round_context)
    submissions.prepare_response = meter.wrap("submission checks", submissions.prepare_response)
    surveys.request_actor = meter.wrap("audit", surveys.request_actor)
    audit.Actor.event = meter.wrap("audit", audit.Actor.event)
    store_cls = sqlite.SQLiteStore
    store_cls.add_responses = meter.wrap("store: group commit", store_cls.add_responses)
    store_cls._add_responses_in = meter.wrap("store: SQL of the write", store_cls._add_responses_in)
    store_cls._refresh_marks = staticmethod(meter.wrap("store: anomaly marks", store_cls._refresh_marks))
    store_cls._insert_audit = staticmethod(meter.wrap("audit", store_cls._insert_audit))
    facts_of = base.AnomalyFacts.of.__func__
    base.AnomalyFacts.of = classmethod(meter.wrap("store: anomaly marks", facts_of))

    @contextmanager
    def timed_transaction(conn):
        """``store.sqlite.immediate_transaction`` with the BEGIN and COMMIT timed (same statements)."""
        with meter.part("store: BEGIN IMMEDIATE"):
            conn.execute("BEGIN IMMEDIATE")
        locked = time.perf_counter_ns()
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        with meter.part("store: COMMIT"):
            conn.execute("COMMIT")
        with meter._lock:
            meter.lock_held_ns += time.perf_counter_ns() - locked
            meter.commits += 1

    sqlite.immediate_transaction = timed_transaction

    class TimedFcntl:
        """The store's ``fcntl``, its taking of the lock file timed."""

        LOCK_EX, LOCK_UN = fcntl.LOCK_EX, fcntl.LOCK_UN

        @staticmethod
        def flock(fd, operation):
            if operation == fcntl.LOCK_EX:
                with meter.part("store: waiting for the write lock"):
                    return fcntl.flock(fd, operation)
            return fcntl.flock(fd, operation)

    sqlite.fcntl = TimedFcntl
    surveys.ResponseSchema.dump = meter.wrap("response body", surveys.ResponseSchema.dump)
    smorest_response.jsonify = meter.wrap("response body", smorest_response.jsonify)


def instrument_gunicorn(meter: Meter = METER) -> None:
    """Time gunicorn's handling of each connection's request (the WSGI call nested inside it)."""
    from gunicorn.workers import gthread

    handle = gthread.ThreadWorker.handle

    def timed(self, conn):
        with meter.part("gunicorn"):
            return handle(self, conn)

    gthread.ThreadWorker.handle = timed


def fsync_off() -> None:
    """SQLite connections of this process with ``synchronous=OFF`` (this benchmark only)."""
    from scoring_service.store import sqlite

    connect = sqlite.SQLiteStore._conn

    def conn(self):
        c = connect(self)
        if not getattr(self._local, "fsync_off", False):
            c.execute("PRAGMA synchronous = OFF")
            self._local.fsync_off = True
        return c

    sqlite.SQLiteStore._conn = conn


def serve(argv=None) -> None:
    """gunicorn entry with ``scoring-service serve``'s options (for LiveServer), plus --profile/--fsync-off."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--fsync-off", action="store_true")
    args = parser.parse_args(argv)
    from scoring_service.ops.server import GunicornServer, gunicorn_settings, prepare_metrics_dir

    prepare_metrics_dir()
    from scoring_service import create_app

    def factory():
        app = create_app()
        if args.profile:
            instrument(app)
            instrument_gunicorn()
        if args.fsync_off:
            fsync_off()
        return app

    settings = gunicorn_settings(args.host, args.port, args.workers)
    if args.profile:
        out = Path(os.environ["SCORING_INSTANCE_PATH"])

        def worker_exit(server, worker):
            (out / f"profile-{os.getpid()}.json").write_text(json.dumps(METER.report()))

        settings["worker_exit"] = worker_exit
    GunicornServer(settings, app_factory=factory).run()


# -- the measurement -------------------------------------------------------------------------------

def worker_cpu(server) -> float:
    """CPU seconds (user + system) the server's workers have used: the live ones' own and, through the
    master's children times, those of workers that already exited (gunicorn's max_requests replaces a
    worker after 20,000 requests, which the bare endpoint reaches within a run)."""
    tick = os.sysconf("SC_CLK_TCK")

    def stat(pid: int) -> list[str]:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()

    master = stat(server.proc.pid)
    total = int(master[13]) + int(master[14])  # cutime, cstime: waited-for children
    for pid in server.worker_pids():
        try:
            fields = stat(pid)
        except FileNotFoundError:  # exited meanwhile: counted in cutime once waited for
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def loaded(server, path: str, token: str | None, seconds: float) -> dict:
    """wrk against a started server, with its workers' CPU time per answered request."""
    from bench import wrk

    before = worker_cpu(server)
    result = wrk.run(server.url, path, token=token, seconds=seconds)
    result["worker_cpu_us_per_request"] = 1e6 * (worker_cpu(server) - before) / max(1, result["ok"])
    return result


def measure(env: dict, seconds: float) -> dict:
    """The three runs and the bare baseline, back to back (see the module's docstring)."""
    from bench.__main__ import DEMO_ROUND, start_server
    from tests.live_server import LiveServer

    instance = Path(env["SCORING_INSTANCE_PATH"])
    path = f"/api/v1/rounds/{DEMO_ROUND}/surveys"
    out: dict = {"load_before": os.getloadavg()[0]}
    bare = start_server("bare", env)
    out["bare"] = loaded(bare, "/echo", None, seconds)
    bare.stop()
    service = start_server("scoring", env)
    out["served"] = loaded(service, path, env["KIOSK"], seconds)
    service.stop()
    for name, flags in (("profiled", ("--profile",)), ("fsync_off", ("--fsync-off",))):
        for old in instance.glob("profile-*.json"):
            old.unlink()
        server = LiveServer(env.get("SCORING_DATABASE_URL"), instance, 2, extra_env=env,
                            command=("-m", "bench.postprofile", "serve", *flags)).start()
        out[name] = loaded(server, path, env["KIOSK"], seconds)
        server.stop()
        if name == "profiled":
            out["parts"] = merge([json.loads(p.read_text()) for p in instance.glob("profile-*.json")])
    out["load_after"] = os.getloadavg()[0]
    return out


def merge(reports: list[dict]) -> dict:
    """The workers' reports added up, per POST: CPU µs of each part (exclusive), wall µs where it waits."""
    requests = sum(r["requests"] for r in reports)
    cpu: dict[str, int] = {}
    wall: dict[str, int] = {}
    calls: dict[str, int] = {}
    for r in reports:
        for kind, into in (("cpu_ns", cpu), ("wall_ns", wall), ("calls", calls)):
            for name, value in r[kind].items():
                into[name] = into.get(name, 0) + value
    per = max(1, requests)
    commits = sum(r.get("commits", 0) for r in reports)
    return {"requests": requests, "workers": len(reports), "commits": commits,
            "writes_per_commit": requests / max(1, commits),
            "lock_held_us": sum(r.get("lock_held_ns", 0) for r in reports) / 1000 / per,
            "cpu_us": {name: cpu[name] / 1000 / per for name in cpu},
            "wall_us": {name: wall[name] / 1000 / per for name in wall},
            "calls_per_request": {name: calls[name] / per for name in calls}}


def table(p: dict) -> list[str]:
    """The markdown table of a ``measure`` result (RESULTS.md)."""
    served, bare, profiled = p["served"], p["bare"], p["profiled"]
    parts = p["parts"]
    cpu, wall = parts["cpu_us"], parts["wall_us"]
    measured = sum(cpu.values())
    total = served["worker_cpu_us_per_request"]
    lines = [
        "| part of one POST (profiled run, 2 workers × 8 threads, wrk -t1 -c8) | CPU µs per POST | share of "
        "the measured CPU | wall µs per POST |",
        "| --- | --- | --- | --- |",
    ]
    names = [name for name, _ in PARTS] + sorted(set(cpu) - {name for name, _ in PARTS})
    described = dict(PARTS)
    for name in names:
        if name not in cpu:
            continue
        waits = name in ("store: waiting for the write lock", "store: BEGIN IMMEDIATE", "store: COMMIT",
                         "store: group commit")
        label = f"{name}: {described[name]}" if name in described else name
        lines.append(f"| {label} | {cpu[name]:.0f} | {100 * cpu[name] / measured:.0f} % | "
                     f"{wall[name]:.0f} |" if waits else
                     f"| {label} | {cpu[name]:.0f} | {100 * cpu[name] / measured:.0f} % | |")
    lines += [
        f"| **measured parts together** | **{measured:.0f}** | 100 % | |",
        f"| the database's write lock held (BEGIN IMMEDIATE's return to COMMIT's; all writes wait for it) | | | "
        f"{parts['lock_held_us']:.0f} |",
        f"| writes per commit (group commit) | {parts['writes_per_commit']:.2f} | | |",
        f"| worker processes' CPU per POST, profiled run (/proc: all threads, incl. the poller, GIL hand-offs) "
        f"| {profiled['worker_cpu_us_per_request']:.0f} | | |",
        f"| worker processes' CPU per POST, as served (no timers) | {total:.0f} | | |",
        f"| bare endpoint's worker CPU per request (same gunicorn) | {bare['worker_cpu_us_per_request']:.0f} | | |",
        "",
        "| run (back to back, same wrk load) | req/s | / bare | p50 ms |",
        "| --- | --- | --- | --- |",
        f"| bare Flask endpoint | {bare['rps']:.0f} | 1.00 | {bare['p50_ms']:.1f} |",
        f"| service as served | {served['rps']:.0f} | {served['rps'] / bare['rps']:.2f} | {served['p50_ms']:.1f} |",
        f"| service profiled (timers cost this much) | {profiled['rps']:.0f} | {profiled['rps'] / bare['rps']:.2f} | "
        f"{profiled['p50_ms']:.1f} |",
        f"| service with `synchronous=OFF` (benchmark only: no fsync before the answer) | {p['fsync_off']['rps']:.0f} "
        f"| {p['fsync_off']['rps'] / bare['rps']:.2f} | {p['fsync_off']['p50_ms']:.1f} |",
        f"| (machine load, 1-minute average, before / after) | {p['load_before']:.1f} / {p['load_after']:.1f} | | |",
    ]
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--keep", help="build the demo instance in DIR and reuse it next time")
    args = parser.parse_args()
    import tempfile

    from bench.__main__ import demo_instance

    with tempfile.TemporaryDirectory(prefix="scoring-bench-post-") as tmp:
        base = Path(args.keep or tmp)
        marker = base / "post-demo.json"
        if args.keep and marker.exists():
            env = json.loads(marker.read_text())
        else:
            env = demo_instance(base / "post-demo")
            marker.write_text(json.dumps(env))
        result = measure(env, args.seconds)
    print("\n".join(table(result)))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2:])
    else:
        main()
