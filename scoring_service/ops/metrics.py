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

            token = current_app.config.get("METRICS_TOKEN")
            presented = request.headers.get("Authorization", "")[7:].strip()
            if not (token and presented and hmac.compare_digest(token, presented)):
                principal = current_principal()
                if principal is None:
                    abort(401, message="metrics need the metrics token or an admin key",
                          headers={"WWW-Authenticate": "Bearer"})
                if principal.role != "admin":
                    abort(403, message="metrics are for administrators")
        return view(*args, **kwargs)

    return wrapper


def init_metrics(app: Flask) -> None:
    options = dict(path="/metrics", group_by="url_rule", metrics_decorator=guard_metrics,
                   excluded_paths=["/metrics", "/healthz", "/static"])
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics = GunicornInternalPrometheusMetrics(app, **options)
    else:
        metrics = PrometheusMetrics(app, registry=CollectorRegistry(), **options)
    metrics.info("scoring_service_info", "Scoring service", version="0.1.0")
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
    """Accepted, duplicate and rejected submissions of this request (batches count each item)."""
    kind = SUBMISSION_ENDPOINTS.get(request.endpoint or "")
    if kind is None or request.method not in ("POST", "PUT"):
        return response
    note = g.get("audit") or {}
    if note.get("entity_type") == "survey_batch" and response.status_code == 200:
        outcomes = {"accepted": note["created"], "duplicate": note["duplicate"], "rejected": note["rejected"]}
    elif response.status_code in (200, 201) and note.get("outcome") in ("created", "amended"):
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
