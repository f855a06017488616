"""Run the service under gunicorn, as in production (``scoring-service serve``).

The same settings serve ``deploy/gunicorn.conf.py``, so the command line and
the container run one configuration.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from gunicorn.app.base import BaseApplication


def prepare_metrics_dir() -> str:
    """A clean ``PROMETHEUS_MULTIPROC_DIR`` shared by the workers (set before they fork).

    Must run before anything imports ``prometheus_client``: it picks its
    multiprocess value class from this variable at import time.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="scoring-metrics-")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def child_exit(server, worker) -> None:
    """A worker's gauges die with it; its counters stay summed in the files."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def json_protocol_errors(worker) -> None:
    """Answer requests that gunicorn itself refuses (414, 431, 400) with the service's JSON error body.

    gunicorn writes these before any application code runs, through
    ``gunicorn.util.write_error`` (its only caller is ``Worker.handle_error``);
    this ``post_worker_init`` hook points that at :func:`write_json_error`.
    """
    from gunicorn import util

    util.write_error = write_json_error


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """``gunicorn.util.write_error`` with the body of SPEC §6 instead of an HTML page."""
    from gunicorn import util

    body = json.dumps({"code": status_int, "status": reason, "message": mesg or reason},
                      ensure_ascii=False).encode("utf-8")
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


#: glibc ``mallopt`` parameters (malloc.h) and the values the workers run with; each is left to the
#: environment where its ``MALLOC_*`` variable is set (glibc reads those itself)
MALLOC_PARAMETERS = (
    # ("M_MMAP_THRESHOLD", -3): allocations from 128 KiB on (report bodies, numpy arrays, a cached
    # report's JSON) are mapped on their own and go back to the system when freed. glibc's default
    # raises the threshold to the largest block freed so far, so once a large report was built and
    # freed, the next one was carved from the heap, which fragments and keeps growing: a worker serving
    # the national part-two reports twice peaked some 40-50 MB higher (bench/NOTES.md).
    ("MALLOC_MMAP_THRESHOLD_", -3, 128 * 1024),
    # ("M_TRIM_THRESHOLD", -1): free memory at the top of the heap goes back from 128 KiB on (the
    # default, which the dynamic threshold above would otherwise raise with it)
    ("MALLOC_TRIM_THRESHOLD_", -1, 128 * 1024),
    # ("M_ARENA_MAX", -8): a worker's threads share two arenas instead of up to eight per core, each
    # holding its own free memory
    ("MALLOC_ARENA_MAX", -8, 2),
)


def tune_malloc(server=None) -> dict[str, int]:
    """Set glibc's allocator parameters of :data:`MALLOC_PARAMETERS` in the gunicorn master, before
    any worker forks (a forked worker keeps them); those the environment sets are left as they are.
    The parameters accepted, by name; none where the C library is not glibc."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): its allocator has no such knobs
        return {}
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return {name: value for name, param, value in MALLOC_PARAMETERS
            if name not in os.environ and mallopt(param, value) == 1}


def gunicorn_settings(host: str | None = None, port: int | None = None, workers: int | None = None,
                      threads: int | None = None) -> dict:
    """Production settings; environment variables override the defaults.

    Serving model: a few processes (one per core and some) each with a bounded
    pool of threads (``gthread``). A sync worker serves one connection at a
    time, so one client that sends its headers slowly held a whole worker and
    two such clients stopped a two-worker server. A threaded worker waits for a
    new connection's first bytes without a thread, keeps idle keep-alive
    connections in its poller and serves ``threads`` requests at once; a slow
    client still holds a thread while it sends its headers, so the number of
    slow connections a server absorbs is ``workers × threads``. The buffering
    proxy in front (``deploy/nginx.conf``, the nginx sidecar in ``deploy/k8s``)
    takes the rest: it reads a whole request, within a time limit, before the
    service sees it.
    """
    from ..config import from_environment

    from_environment()  # refuses template placeholders (CHANGE-ME) before any worker starts
    return {
        "bind": f"{host or os.environ.get('SCORING_HOST', '127.0.0.1')}:{port or os.environ.get('SCORING_PORT', 8000)}",
        "workers": _at_least_one("SCORING_WORKERS", workers, 2 * (os.cpu_count() or 1) + 1),
        # Threads share a worker's store (SQLite: one connection per thread; pymongo's
        # client is thread-safe) and its caches (locked); CPU-heavy numpy work releases the GIL.
        "worker_class": "gthread",
        "threads": _at_least_one("SCORING_THREADS", threads, 8),
        "worker_connections": _at_least_one("SCORING_WORKER_CONNECTIONS", None, 200),
        "timeout": 60,
        "graceful_timeout": 30,
        "keepalive": 5,
        "max_requests": 20000,
        "max_requests_jitter": 2000,
        "worker_tmp_dir": "/dev/shm" if os.path.isdir("/dev/shm") else None,
        "accesslog": None,  # the app logs each request as JSON with its request id
        "errorlog": "-",
        "child_exit": child_exit,
        "post_worker_init": json_protocol_errors,
        "on_starting": tune_malloc,
        # gunicorn's control socket (gunicornc) defaults to one path per user: a second server on the host
        # (staging beside production, a backup instance) takes it over, and a reload or shutdown sent
        # there reaches the wrong one. Off unless a path of this server's own is given.
        **({"control_socket": os.environ["SCORING_CONTROL_SOCKET"]} if os.environ.get("SCORING_CONTROL_SOCKET")
           else {"control_socket_disable": True}),
    }


def _at_least_one(name: str, given: int | None, default: int) -> int:
    """A count of processes, threads or connections: ``given`` (an option), else the variable ``name``, else
    ``default``; anything but a whole number of at least 1 is refused naming it (0 workers used to become the
    default, 0 threads a worker that failed to boot, a word a traceback)."""
    from ..config import ConfigError

    raw = given if given is not None else os.environ.get(name, default)
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, got {value}")
    return value


class GunicornServer(BaseApplication):
    """gunicorn with the app factory; each worker builds its own app after the fork."""

    def __init__(self, options: dict, app_config: dict | None = None, app_factory=None):
        self.options = options
        self.app_config = app_config
        self.app_factory = app_factory
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self):
        if self.app_factory is not None:
            return self.app_factory()
        from .. import create_app

        return create_app(self.app_config)


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 2, threads: int | None = None) -> None:
    prepare_metrics_dir()
    GunicornServer(gunicorn_settings(host, port, workers, threads)).run()
