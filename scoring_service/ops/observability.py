"""Request ids, structured JSON logs and Prometheus metrics."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid

from flask import Flask, g, request

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


_encode = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(…, ensure_ascii=False), one encoder for all


class JsonFormatter(logging.Formatter):
    """One JSON object per line; request fields when inside a request."""

    #: (whole second, its text): an access log writes many lines a second
    _second: tuple[int, str] = (-1, "")

    def _time(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        cached = self._second
        if cached[0] != second:
            cached = self._second = (second, self.formatTime(record, "%Y-%m-%dT%H:%M:%S"))
        return cached[1]

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self._time(record) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry["pid"] = record.process
        for name in ("request_id", "method", "path", "status", "duration_ms", "key_id", "remote_addr"):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encode(entry)


def configure_logging(level: str = "INFO") -> None:
    logging.Formatter.converter = time.gmtime
    root = logging.getLogger()
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("werkzeug").setLevel("WARNING")


access_log = logging.getLogger("scoring_service.access")


def init_observability(app: Flask) -> None:
    configure_logging(app.config.get("LOG_LEVEL", "INFO"))

    @app.before_request
    def assign_request_id():
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def log_request(response):
        ctx_g, req = g._get_current_object(), request._get_current_object()  # one look-up each
        response.headers["X-Request-ID"] = ctx_g.get("request_id", "")
        principal = ctx_g.get("principal")
        # The path only: query strings and headers (tokens) never reach the log.
        access_log.info(
            "request",
            extra={
                "request_id": ctx_g.get("request_id"),
                "method": req.method,
                "path": req.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - ctx_g.get("started", time.perf_counter())) * 1000, 2),
                "key_id": principal.key_id if principal else None,
                "remote_addr": req.remote_addr,
            },
        )
        return response
