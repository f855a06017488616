"""Pieces every blueprint uses: the blueprint class, schema base, audit notes, path-id checks."""

from __future__ import annotations

import re
from urllib.parse import quote

import flask_smorest
import marshmallow as ma
from flask import Response, g, request
from webargs import core
from webargs.flaskparser import FlaskParser

from ..domain.canonical import canonical_bytes
from ..domain.timeutil import has_utc_time
from ..extensions import state
from ..services.audit import Actor
from .errors import field_error


class BodyParser(FlaskParser):
    """webargs' parser, reading the JSON body that ``check_json_body`` already parsed and bounded,
    so a body is parsed once per request (a batch is up to 2 MiB)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._schemas: dict[type, ma.Schema] = {}

    def _raw_load_json(self, req):
        body = g.get("json_body", core.missing)
        return super()._raw_load_json(req) if body is core.missing else body

    def _get_schema(self, argmap, req):
        """One instance per schema class, made on first use: a marshmallow schema keeps no state between
        loads (so threads share it, as flask-smorest's response schemas are shared), and making one
        deep-copies its fields, which was about a third of a survey POST's validation."""
        if isinstance(argmap, type) and issubclass(argmap, ma.Schema):
            schema = self._schemas.get(argmap)
            if schema is None:
                schema = self._schemas.setdefault(argmap, argmap())
            return schema
        return super()._get_schema(argmap, req)


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's blueprint with :class:`BodyParser`."""

    ARGUMENTS_PARSER = BodyParser()


def utc_time(value) -> None:
    """Validator: an aware time that has a UTC equivalent (``0001-01-01T00:00:00+14:00`` has none)."""
    if not has_utc_time(value):
        raise ma.ValidationError("is outside the range of representable times")


class StrictSchema(ma.Schema):
    """Unknown fields are errors (SPEC §6)."""

    class Meta:
        unknown = ma.RAISE


def note_audit(entity_type: str, entity_id: str | None, outcome: str | None = None, **detail) -> None:
    """Tell the audit hook what this write touched and how it ended."""
    g.audit = {"entity_type": entity_type, "entity_id": entity_id, "outcome": outcome, **detail}


def same_id(body: dict, field: str, path_value: str) -> None:
    """A PUT body may repeat the path's id; it must then be equal."""
    if field in body and body[field] != path_value:
        field_error(field, f"must equal the id in the path ({path_value!r})")
    body[field] = path_value


def request_actor() -> Actor:
    """This request's :class:`Actor` (one per request: a use case that audits marks it done)."""
    ctx_g = g._get_current_object()  # one context look-up, not one per attribute
    actor = ctx_g.get("actor")
    if actor is None:
        principal = ctx_g.get("principal")
        req = request._get_current_object()
        actor = ctx_g.actor = Actor(
            key_id=principal.key_id if principal else None,
            role=principal.role if principal else None,
            method=req.method,
            path=req.path,
            round_id=(req.view_args or {}).get("round_id"),
            request_id=ctx_g.get("request_id"),
        )
    return actor


def put_reference(kind: str, pattern: str, data: dict, path_id: str, put) -> tuple[dict, int]:
    """Create or replace one reference record (district, community, agency) named by the path:
    201 when created, 200 when replaced."""
    field = f"{kind}_id"
    if not re.fullmatch(pattern, path_id):
        field_error(field, f"must match {pattern}")
    same_id(data, field, path_id)
    created = put(state(), data)
    note_audit(kind, path_id, "created" if created else "replaced")
    return data, 201 if created else 200


def download(body: bytes, mimetype: str, ascii_name: str, name_zh: str) -> Response:
    """A file to save: header values must be Latin-1, so an ASCII name and the Chinese one per RFC 6266/5987."""
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name_zh)}"
    return Response(body, mimetype=mimetype, headers={"Content-Disposition": disposition})


def json_response(document: dict | bytes) -> Response:
    """Canonical JSON bytes (SPEC §6): a published document is served identically every time."""
    body = document if isinstance(document, bytes) else canonical_bytes(document)
    return Response(body, mimetype="application/json")
