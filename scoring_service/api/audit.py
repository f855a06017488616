"""Audit trail: every write is recorded; admins read it, nobody changes it."""

from __future__ import annotations

import marshmallow as ma
from flask import Flask, g, request
from flask.views import MethodView
from flask_smorest import Blueprint

from ..auth import require
from ..state import state
from ..timeutil import now_stored, to_stored
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


def register_audit(app: Flask) -> None:
    @app.after_request
    def record_write(response):
        if request.method not in WRITE_METHODS or not request.path.startswith("/api/v1/"):
            return response
        note = g.get("audit") or {}
        principal = g.get("principal")
        detail = {k: v for k, v in note.items() if k not in ("entity_type", "entity_id", "outcome")}
        event = {
            "at": now_stored(),
            "key_id": principal.key_id if principal else None,
            "role": principal.role if principal else None,
            "method": request.method,
            "path": request.path,
            "round_id": (request.view_args or {}).get("round_id"),
            "entity_type": note.get("entity_type"),
            "entity_id": note.get("entity_id"),
            "status": response.status_code,
            "outcome": note.get("outcome") or ("ok" if response.status_code < 400 else "refused"),
            "request_id": g.get("request_id"),
            "detail": detail or None,
        }
        state().store.append_audit(event)
        return response
