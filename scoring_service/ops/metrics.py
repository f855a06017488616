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

from flask import Flask, current_app, g, request
from prometheus_client import CollectorRegistry, Counter
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


def init_metrics(app: Flask) -> None:
    # group_by is a function named url_rule: the label keeps its name, unmatched routes share one value
    options = dict(path="/metrics", group_by=url_rule, metrics_decorator=guard_metrics,
                   excluded_paths=["/metrics", "/healthz", "/static"])
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics = GunicornInternalPrometheusMetrics(app, **options)
    else:
        metrics = PrometheusMetrics(app, registry=CollectorRegistry(), **options)
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
    kind = SUBMISSION_ENDPOINTS.get(request.endpoint or "")
    if kind is None or request.method not in ("POST", "PUT"):
        return response
    note = g.get("audit") or {}
    if request.endpoint == "surveys.Batch" and response.status_code == 200:
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
