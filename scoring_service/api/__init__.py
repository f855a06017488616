"""HTTP API (``/api/v1``): one flask-smorest blueprint per resource."""

from __future__ import annotations

import functools
import json
import re

import marshmallow as ma
from flask import Flask, current_app, g, request
from webargs.core import parse_json

from .errors import abort, register_error_handlers
from ..extensions import Api
from . import agencies, audit, communities, districts, inspections, keys, ops, results, rounds, rubrics, surveys
from . import history, ledger, milestones, rectification, supervision, survey_links
from . import attachments

BLUEPRINTS = (
    keys.blp,
    rubrics.blp,
    districts.blp,
    communities.blp,
    agencies.blp,
    rounds.blp,
    surveys.blp,
    survey_links.blp,
    attachments.blp,
    inspections.blp,
    milestones.blp,
    supervision.blp,
    ledger.blp,
    rectification.blp,
    results.blp,
    history.blp,
    audit.blp,
)

#: request bodies other than JSON that an endpoint accepts
EXTRA_CONTENT_TYPES = {"communities.Import": ("text/csv",), "attachments.Attachments": attachments.BODY_TYPES}
#: endpoints that take bodies larger than MAX_CONTENT_LENGTH: their limit for a request's type (None: the app's)
BODY_LIMITS = {"attachments.Attachments": attachments.body_limit}


def register_blueprints(app: Flask) -> None:
    # One Api per app: its OpenAPI spec belongs to that app (tests build many).
    api = Api(app)
    register_error_handlers(app, api)
    api.spec.options.setdefault("info", {})["description"] = (
        "Scores, grades, rankings and rewards for the old residential community renovation programme."
    )
    for blp in BLUEPRINTS:
        api.register_blueprint(blp)
    app.register_blueprint(ops.bp)
    app.before_request(check_request_body)
    app.before_request(check_json_body)
    app.before_request(check_query_args)
    audit.register_audit(app)


def check_request_body() -> None:
    """Refuse oversize and non-JSON bodies before anything parses them."""
    req = request._get_current_object()  # one context look-up, not one per attribute
    if not req.path.startswith("/api/v1/") or req.method not in ("POST", "PUT", "PATCH", "DELETE"):
        return
    limit_of = BODY_LIMITS.get(req.endpoint or "")
    larger = limit_of(req.mimetype) if limit_of is not None else None
    if larger is not None:
        req.max_content_length = larger  # werkzeug's reading stops there too
    limit = req.max_content_length
    if req.content_length is not None and limit is not None and req.content_length > limit:
        too_large(f"request body larger than {limit} bytes")
    if (req.content_length is None and limit is not None
            and "chunked" in req.headers.get("Transfer-Encoding", "").lower()):
        # A chunked body has no length to check up front. werkzeug stops reading it at
        # the limit, and the JSON parser would report the cut-off body as a 400: read it
        # here instead (at most the limit) and refuse one that reaches the limit.
        if len(req.get_data(cache=True)) >= limit:
            too_large(f"request body larger than {limit - 1} bytes")
    has_body = (req.content_length or 0) > 0 or req.headers.get("Transfer-Encoding") == "chunked"
    if not has_body:
        return
    allowed = ("application/json", *EXTRA_CONTENT_TYPES.get(req.endpoint or "", ()))
    if req.mimetype not in allowed:
        abort(
            415,
            message=f"Content-Type must be {' or '.join(allowed)}",
            errors={"Content-Type": [f"expected {' or '.join(allowed)}, got {req.mimetype or 'none'}"]},
        )


def too_large(message: str):
    """413; an upload's names its field (``file``)."""
    abort(413, message=message, errors={"file": [message]} if request.endpoint in BODY_LIMITS else None)


#: deeper JSON than any request body of the API needs (a batch of responses is 4 levels)
MAX_JSON_DEPTH = 32


def check_json_body() -> None:
    """A JSON body that cannot be read is a 400 here, whatever the reason.

    webargs answers 400 for a syntax error only; a number of more than 4300 digits (ValueError)
    or very deep nesting (RecursionError) would escape it as a 500. The body is parsed here once,
    with webargs' own function, and its depth bounded; the views' parser reuses it.
    """
    req = request._get_current_object()  # one context look-up, not one per attribute
    if not req.path.startswith("/api/v1/") or req.method not in ("POST", "PUT", "PATCH", "DELETE"):
        return
    if req.mimetype != "application/json":
        return
    data = req.get_data(cache=True)
    if not data:
        return
    try:
        body = parse_json(data)
    except json.JSONDecodeError as exc:
        bad_json(f"Invalid JSON body: {exc.msg} (line {exc.lineno}, column {exc.colno})")
    except RecursionError:
        bad_json(f"Invalid JSON body: nested more than {MAX_JSON_DEPTH} levels deep")
    except ValueError:  # int() refuses more than sys.get_int_max_str_digits() digits
        bad_json("Invalid JSON body: a number is too long")
    # every object or array opens with a '{' or '[' byte (strings may add more): a body with no more of
    # them than the bound cannot be nested deeper, and its walk is skipped (a single survey has two)
    if data.count(b"{") + data.count(b"[") > MAX_JSON_DEPTH and json_depth(body) > MAX_JSON_DEPTH:
        bad_json(f"Invalid JSON body: nested more than {MAX_JSON_DEPTH} levels deep")
    # JSON may write a lone UTF-16 surrogate as an escape (\ud800): it parses, but no UTF-8 text holds it,
    # so hashing or storing it failed as a 500. Only a body with such an escape is walked
    if SURROGATE_ESCAPE.search(data):
        where = lone_surrogate(body)
        if where is not None:
            message = "contains a lone UTF-16 surrogate escape (\\ud800-\\udfff), which is not text"
            abort(400, message=f"Invalid JSON body: {where or 'the body'} {message}",
                  errors={where or "json": [message]})
    g.json_body = body  # the views' argument parser reads it from here (api.common.BodyParser)


def bad_json(message: str):
    abort(400, message=message, errors={"json": [message]})


#: a JSON escape of a UTF-16 surrogate (a pair makes one character; a lone one is not text)
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def lone_surrogate(value) -> str | None:
    """The dotted path of the first key or string of parsed JSON holding a lone surrogate ("" for the
    body itself), or None when there is none. Without recursion.

    >>> lone_surrogate(json.loads(r'{"a": [1, {"note": "\\ud800"}]}'))
    'a.1.note'
    >>> lone_surrogate(json.loads(r'{"a": "\\ud83d\\ude00"}')) is None  # a pair is one character (U+1F600)
    True
    """
    stack: list[tuple[object, str]] = [(value, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if _has_surrogate(node):
                return path
        elif isinstance(node, dict):
            for key, child in node.items():
                where = f"{path}.{key}" if path else str(key)
                if _has_surrogate(key):
                    return path or ""
                stack.append((child, where))
        elif isinstance(node, list):
            stack.extend((child, f"{path}.{k}" if path else str(k)) for k, child in enumerate(node))
    return None


def json_depth(value) -> int:
    """Nesting depth of parsed JSON (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if depth <= MAX_JSON_DEPTH:
            stack.extend((child, depth + 1) for child in children)
    return deepest


def check_query_args() -> None:
    """Query parameters an endpoint does not declare are a 422 (``district_id[$ne]=…`` included)."""
    if request.blueprint not in API_BLUEPRINT_NAMES or not request.args:
        return
    view_class = getattr(current_app.view_functions.get(request.endpoint), "view_class", None)
    method = getattr(view_class, request.method.lower(), None)
    if method is None and request.method == "HEAD":
        method = getattr(view_class, "get", None)
    if method is None:
        return  # 405 follows
    unknown = sorted(set(request.args) - declared_query_args(method))
    if unknown:
        abort(422, message=f"unknown query parameters: {', '.join(unknown)}",
              errors={name: ["Unknown field."] for name in unknown})


API_BLUEPRINT_NAMES = frozenset(blp.name for blp in BLUEPRINTS)


@functools.cache
def declared_query_args(view) -> frozenset[str]:
    """Names of the query parameters a view declares with ``blp.arguments(..., location="query")``."""
    names: set[str] = set()
    for parameter in getattr(view, "_apidoc", {}).get("arguments", {}).get("parameters", []):
        schema = parameter.get("schema")
        if parameter.get("in") != "query":
            continue
        if isinstance(schema, type) and issubclass(schema, ma.Schema):
            schema = schema()
        names.update(field.data_key or name for name, field in schema.load_fields.items())
    return frozenset(names)
