"""Prometheus metrics (prometheus-flask-exporter), correct with several gunicorn workers.

Under gunicorn ``scoring-service serve`` sets ``PROMETHEUS_MULTIPROC_DIR``, so
every worker writes its samples there and ``/metrics`` (in any worker) adds
them up. ``/metrics`` is public only while ``SCORING_METRICS_PUBLIC`` is true
(the development default); in production it needs ``SCORING_METRICS_TOKEN``
or an admin key.
"""

from __future__ import annotations

import functools
import hmac
import os
import re
from timeit import default_timer

from flask import Flask, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_flask_exporter import PrometheusMetrics
from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

from ..api.errors import abort


def guard_metrics(view):
    """Let a scraper in with the metrics token or an admin key, unless metrics are public."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if not current_app.config["METRICS_PUBLIC"]:
            from ..api.auth import current_principal

            if not metrics_token_presented():
                principal = current_principal()
                if principal is None:
                    abort(401, message="metrics need the metrics token or an admin key",
                          headers={"WWW-Authenticate": "Bearer"})
                if principal.role != "admin":
                    abort(403, message="metrics are for administrators")
        return view(*args, **kwargs)

    return wrapper


def metrics_token_presented() -> bool:
    """Whether the whole ``Authorization`` header is ``Bearer <metrics token>`` (constant time)."""
    token = current_app.config.get("METRICS_TOKEN")
    if not token:
        return False
    presented = request.headers.get("Authorization", "")
    return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), f"Bearer {token}".encode("utf-8"))


#: methods that keep their own label; any other (made-up) method is counted as OTHER
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"


def url_rule(req) -> str:
    """The route's pattern as the label; every request that matched no route shares one label."""
    return req.url_rule.rule if req.url_rule is not None else UNMATCHED


def normalise_method_label(response):
    """Made-up methods must not add a series each: count them under one ``method="OTHER"``.

    Runs after the view (the response exists) and before the exporter's own
    after-request hook, which reads ``request.method`` for its labels.
    """
    if request.method not in KNOWN_METHODS:
        request.method = "OTHER"
    return response


class RequestMetrics:
    """prometheus-flask-exporter's default request metrics, recorded as its own hooks record them.

    ``flask_http_request_duration_seconds`` (histogram by method, url_rule and status, the client's
    default buckets), ``flask_http_request_total`` and ``flask_http_request_exceptions_total`` (by
    method and status) and ``flask_exporter_info``: the same names, labels, values and exclusions as
    the exporter's ``export_defaults``, which this replaces. Its hooks looked every labelled series up
    by keyword arguments and probed the request with ``hasattr`` on every request, about 5 % of a
    survey POST's CPU; here each series is looked up once per (method, rule, status).
    """

    def __init__(self, app: Flask, metrics: PrometheusMetrics, excluded_paths: list[str]):
        registry = metrics.registry
        metrics.info("flask_exporter_info", "Information about the Prometheus Flask exporter",
                     version=metrics.version)
        self.duration = Histogram("flask_http_request_duration_seconds", "Flask HTTP request duration in seconds",
                                  ("method", url_rule.__name__, "status"), registry=registry)
        self.total = Counter("flask_http_request_total", "Total number of HTTP requests", ("method", "status"),
                             registry=registry)
        self.exceptions = Counter("flask_http_request_exceptions_total",
                                  "Total number of HTTP requests which resulted in an exception",
                                  ("method", "status"), registry=registry)
        #: the exporter matches each pattern at the start of the path
        self.excluded = re.compile("|".join(f"(?:{pattern})" for pattern in excluded_paths))
        self._series: dict[tuple, tuple] = {}
        app.before_request(self.started)
        app.after_request(self.answered)
        app.teardown_request(self.failed)

    def _record(self, req, status: int) -> None:
        """The duration (once, when the request was timed) and the count (once) of this request."""
        ctx_g = g._get_current_object()
        if ctx_g.get("metrics_recorded"):
            return
        ctx_g.metrics_recorded = True
        key = (req.method, url_rule(req), status)
        series = self._series.get(key)
        if series is None:
            series = self._series.setdefault(key, (self.duration.labels(key[0], key[1], status),
                                                   self.total.labels(key[0], status)))
        started = ctx_g.get("metrics_started")
        if started is not None:
            series[0].observe(max(default_timer() - started, 0))
        series[1].inc()

    def started(self) -> None:
        g.metrics_started = default_timer()

    def answered(self, response):
        req = request._get_current_object()
        if not self.excluded.match(req.path):
            self._record(req, response.status_code)
        return response

    def failed(self, exception=None) -> None:
        """An exception that no handler answered: counted, and (if the response hook did not run) a 500."""
        if exception is None:
            return
        req = request._get_current_object()
        if self.excluded.match(req.path):
            return
        self.exceptions.labels(req.method, 500).inc()
        self._record(req, 500)


def init_metrics(app: Flask) -> None:
    # group_by is a function named url_rule: the label keeps its name, unmatched routes share one value
    excluded = ["/metrics", "/healthz", "/static"]
    options = dict(path="/metrics", group_by=url_rule, metrics_decorator=guard_metrics, excluded_paths=excluded,
                   export_defaults=False)  # RequestMetrics records the default metrics
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics = GunicornInternalPrometheusMetrics(app, **options)
    else:
        metrics = PrometheusMetrics(app, registry=CollectorRegistry(), **options)
    RequestMetrics(app, metrics, excluded)
    metrics.info("scoring_service_info", "Scoring service", version="0.1.0")
    # after_request functions run last-registered first: this one runs before the exporter's
    app.after_request(normalise_method_label)
    app.extensions["scoring_metrics"] = {
        "submissions": Counter(
            "scoring_submissions_total", "Survey responses and inspections by outcome",
            ["kind", "outcome"], registry=metrics.registry,
        ),
    }


    app.after_request(count_submissions)


SUBMISSION_ENDPOINTS = {"surveys.Surveys": "survey", "surveys.Batch": "survey",
                        "inspections.Inspections": "inspection", "inspections.Inspection": "inspection"}


def count_submissions(response):
    """Accepted, duplicate and rejected submissions of this request (batches count each item).

    Read from the response status (201 created, 200 identical replay) and, for a batch, the counts
    its view leaves in ``g.batch_counts``, so it holds whichever layer records the audit event; an amended
    inspection (200) is told apart from an unchanged one by the audit note.
    """
    req = request._get_current_object()  # one context look-up, not one per attribute
    kind = SUBMISSION_ENDPOINTS.get(req.endpoint or "")
    if kind is None or req.method not in ("POST", "PUT"):
        return response
    note = g.get("audit") or {}
    if req.endpoint == "surveys.Batch" and response.status_code == 200:
        counts = g.get("batch_counts") or {}  # set by the view: no second parse of a 1000-result body
        outcomes = {"accepted": counts.get("created", 0), "duplicate": counts.get("duplicate", 0),
                    "rejected": counts.get("rejected", 0)}
    elif response.status_code == 201 or (response.status_code == 200 and note.get("outcome") == "amended"):
        outcomes = {"accepted": 1}
    elif response.status_code == 200:
        outcomes = {"duplicate": 1}
    else:
        outcomes = {"rejected": 1}
    counter = current_app.extensions["scoring_metrics"]["submissions"]
    for outcome, n in outcomes.items():
        if n:
            counter.labels(kind=kind, outcome=outcome).inc(n)
    return response
