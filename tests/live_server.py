"""Run the service under gunicorn in a subprocess, as production does.

The one live-server helper: the tests use it, and so does the benchmark
(``bench/``), for the service and for its bare baseline app.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
#: ``scoring-service serve``; another module taking the same ``--host/--port/--workers`` may replace it
SERVE = ("-m", "scoring_service.cli", "serve")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``scoring-service serve`` (or ``command``) with its own environment; stopped on exit.

    Ready once every worker has loaded the app and answered ``/readyz``, as its
    JSON access log says (so the app must log at INFO).
    """

    def __init__(self, database_url: str | None, instance: Path, workers: int = 2, port: int | None = None,
                 extra_env: dict | None = None, command: Sequence[str] = SERVE):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.instance = instance
        self.log_path = instance / f"gunicorn-{self.port}.log"
        self.env = {
            **os.environ,
            "SCORING_INSTANCE_PATH": str(instance),
            **({"SCORING_DATABASE_URL": database_url} if database_url else {}),
            "SCORING_SECRET_KEY": "test-secret-key-not-for-production",
            "SCORING_RATELIMIT_ENABLED": "false",
            "SCORING_LOG_LEVEL": "INFO",  # readiness is read from the access log
            **(extra_env or {}),
        }
        self.workers = workers
        self.command = tuple(command)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> LiveServer:
        self.instance.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, *self.command, "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(self.workers)],
            env=self.env, stdout=self.log, stderr=self.log, start_new_session=True, cwd=ROOT,
        )
        offset = self.log_path.stat().st_size
        deadline = time.monotonic() + timeout
        with ThreadPoolExecutor(max_workers=2 * self.workers) as pool:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"gunicorn exited early; see {self.log_path}")
                # concurrent probes, until every worker has loaded the app and answered one
                list(pool.map(self._probe, range(2 * self.workers)))
                if len(self._ready_pids(offset)) >= self.workers:
                    return self
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not become ready; see {self.log_path}")

    def _probe(self, _) -> None:
        try:
            requests.get(f"{self.url}/readyz", timeout=1)
        except requests.RequestException:
            pass

    def _ready_pids(self, offset: int) -> set[int]:
        """Workers that answered /readyz with 200 since ``offset`` in the log (the app logs its pid)."""
        with open(self.log_path, "rb") as fh:
            fh.seek(offset)
            lines = fh.read().decode("utf-8", "replace").splitlines()
        pids = set()
        for line in lines:
            if line.startswith("{") and '"/readyz"' in line:
                entry = json.loads(line)
                if entry.get("path") == "/readyz" and entry.get("status") == 200:
                    pids.add(entry["pid"])
        return pids

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def kill(self) -> None:
        """SIGKILL the whole server (master and workers), as a power cut would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.log.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if not self.log.closed:
            self.log.close()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
