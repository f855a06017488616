"""Run the service under gunicorn, as in production (``scoring-service serve``).

The same settings serve ``deploy/gunicorn.conf.py``, so the command line and
the container run one configuration.
"""

from __future__ import annotations

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


def gunicorn_settings(host: str | None = None, port: int | None = None, workers: int | None = None) -> dict:
    """Production settings; environment variables override the defaults."""
    return {
        "bind": f"{host or os.environ.get('SCORING_HOST', '127.0.0.1')}:{port or os.environ.get('SCORING_PORT', 8000)}",
        "workers": int(workers or os.environ.get("SCORING_WORKERS", 2 * (os.cpu_count() or 1) + 1)),
        "worker_class": "sync",  # scoring is CPU-bound and stores are blocking: processes, not threads
        "timeout": 60,
        "graceful_timeout": 30,
        "keepalive": 5,
        "max_requests": 20000,
        "max_requests_jitter": 2000,
        "worker_tmp_dir": "/dev/shm" if os.path.isdir("/dev/shm") else None,
        "accesslog": None,  # the app logs each request as JSON with its request id
        "errorlog": "-",
        "child_exit": child_exit,
    }


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


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 2) -> None:
    prepare_metrics_dir()
    GunicornServer(gunicorn_settings(host, port, workers)).run()
