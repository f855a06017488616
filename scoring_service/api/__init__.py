"""HTTP API (``/api/v1``): one flask-smorest blueprint per resource."""

from __future__ import annotations

from flask import Flask, request

from .errors import abort
from ..extensions import Api
from . import agencies, audit, communities, districts, inspections, keys, ops, results, rounds, rubrics, surveys

BLUEPRINTS = (
    keys.blp,
    rubrics.blp,
    districts.blp,
    communities.blp,
    agencies.blp,
    rounds.blp,
    surveys.blp,
    inspections.blp,
    results.blp,
    audit.blp,
)

#: request bodies other than JSON that an endpoint accepts
EXTRA_CONTENT_TYPES = {"communities.Import": ("text/csv",)}


def register_blueprints(app: Flask) -> None:
    # One Api per app: its OpenAPI spec belongs to that app (tests build many).
    api = Api(app)
    api.spec.options.setdefault("info", {})["description"] = (
        "Scores, grades, rankings and rewards for the old residential community renovation programme."
    )
    for blp in BLUEPRINTS:
        api.register_blueprint(blp)
    app.register_blueprint(ops.bp)
    app.before_request(check_request_body)
    audit.register_audit(app)


def check_request_body() -> None:
    """Refuse oversize and non-JSON bodies before anything parses them."""
    if not request.path.startswith("/api/v1/") or request.method not in ("POST", "PUT", "PATCH", "DELETE"):
        return
    limit = request.max_content_length
    if request.content_length is not None and limit is not None and request.content_length > limit:
        abort(413, message=f"request body larger than {limit} bytes")
    has_body = (request.content_length or 0) > 0 or request.headers.get("Transfer-Encoding") == "chunked"
    if not has_body:
        return
    allowed = ("application/json", *EXTRA_CONTENT_TYPES.get(request.endpoint or "", ()))
    if request.mimetype not in allowed:
        abort(
            415,
            message=f"Content-Type must be {' or '.join(allowed)}",
            errors={"Content-Type": [f"expected {' or '.join(allowed)}, got {request.mimetype or 'none'}"]},
        )
