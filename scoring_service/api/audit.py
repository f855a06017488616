"""Audit trail: every write is recorded; admins read it, nobody changes it."""

from __future__ import annotations

import marshmallow as ma
from flask import Flask, g, request
from flask.views import MethodView
from flask_smorest import Blueprint

from .auth import require
from ..services.context import state
from ..domain.timeutil import now_stored, to_stored
from .common import StrictSchema

blp = Blueprint("audit", __name__, url_prefix="/api/v1/audit", description="Audit events (admin)")

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class AuditQuerySchema(StrictSchema):
    key_id = ma.fields.String()
    round_id = ma.fields.String()
    entity_id = ma.fields.String()
    since = ma.fields.AwareDateTime()
    until = ma.fields.AwareDateTime()
    after_seq = ma.fields.Integer(validate=ma.validate.Range(min=0))
    limit = ma.fields.Integer(load_default=500, validate=ma.validate.Range(min=1, max=5000))


class AuditEventSchema(ma.Schema):
    seq = ma.fields.Integer()
    at = ma.fields.String()
    key_id = ma.fields.String(allow_none=True)
    role = ma.fields.String(allow_none=True)
    method = ma.fields.String()
    path = ma.fields.String()
    round_id = ma.fields.String(allow_none=True)
    entity_type = ma.fields.String(allow_none=True)
    entity_id = ma.fields.String(allow_none=True)
    status = ma.fields.Integer()
    outcome = ma.fields.String(allow_none=True)
    request_id = ma.fields.String(allow_none=True)
    detail = ma.fields.Dict(allow_none=True)


class AuditListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(AuditEventSchema))


@blp.route("")
class AuditEvents(MethodView):
    @require("admin")
    @blp.arguments(AuditQuerySchema, location="query")
    @blp.response(200, AuditListSchema)
    def get(self, query):
        filters = dict(query)
        for name in ("since", "until"):
            if name in filters:
                filters[name] = to_stored(filters[name])
        limit = filters.pop("limit")
        return {"items": state().store.list_audit(filters, limit)}


def build_event(status: int, note: dict | None = None) -> dict:
    """The audit event of the current request."""
    note = note or {}
    principal = g.get("principal")
    detail = {k: v for k, v in note.items() if k not in ("entity_type", "entity_id", "outcome")}
    return {
        "at": now_stored(),
        "key_id": principal.key_id if principal else None,
        "role": principal.role if principal else None,
        "method": request.method,
        "path": request.path,
        "round_id": (request.view_args or {}).get("round_id"),
        "entity_type": note.get("entity_type"),
        "entity_id": note.get("entity_id"),
        "status": status,
        "outcome": note.get("outcome") or ("ok" if status < 400 else "refused"),
        "request_id": g.get("request_id"),
        "detail": detail or None,
    }


def audit_in_transaction(status_for, note_for):
    """A callback for a store write: it builds this request's audit event from the write's
    outcomes, so the store can commit the event in the same transaction as the data."""

    def callback(outcomes):
        note = note_for(outcomes)
        g.audit = note
        g.audit_written = True
        return build_event(status_for(outcomes), note)

    return callback


def register_audit(app: Flask) -> None:
    @app.after_request
    def record_write(response):
        if request.method not in WRITE_METHODS or not request.path.startswith("/api/v1/"):
            return response
        if g.get("audit_written") and response.status_code < 500:
            return response  # committed with the data it describes
        state().store.append_audit(build_event(response.status_code, g.get("audit")))
        return response
