"""Audit trail: every write is recorded; admins read it, nobody changes it."""

from __future__ import annotations

import marshmallow as ma
import logging

from flask import Flask, g, request
from flask.views import MethodView

from .auth import require
from ..extensions import state
from ..domain.timeutil import to_stored
from ..services.audit import MAX_PATH
from .common import Blueprint, StrictSchema, request_actor, utc_time

log = logging.getLogger(__name__)

blp = Blueprint("audit", __name__, url_prefix="/api/v1/audit", description="Audit events (admin)")

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class AuditQuerySchema(StrictSchema):
    key_id = ma.fields.String()
    round_id = ma.fields.String()
    entity_id = ma.fields.String()
    since = ma.fields.AwareDateTime(validate=utc_time)
    until = ma.fields.AwareDateTime(validate=utc_time)
    after_seq = ma.fields.Integer(validate=ma.validate.Range(min=0, max=2**63 - 1))  # the stores' integer range
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
    """Write the audit event of every write that its use case did not record itself.

    Refused attempts are recorded only for callers with a valid key: anonymous and
    bad-token requests (401, and 404/405/413/415 before any key was checked) would
    let anybody grow the audit table and hold the write lock, so they are logged and
    counted instead (bounded: one log line, one counter per status).
    """

    @app.after_request
    def record_write(response):
        if request.method not in WRITE_METHODS or not request.path.startswith("/api/v1/"):
            return response
        actor = request_actor()
        if actor.audited and response.status_code < 500:
            return response  # committed with the data it describes
        if actor.key_id is None:
            log.info("refused anonymous write", extra={"status": response.status_code,
                                                       "path": request.path[:MAX_PATH]})
            return response
        note = g.get("audit") or {}
        detail = {k: v for k, v in note.items() if k not in ("entity_type", "entity_id", "outcome")}
        state().store.append_audit(actor.event(response.status_code, note.get("entity_type"), note.get("entity_id"),
                                               note.get("outcome"), **detail))
        return response
