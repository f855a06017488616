"""API keys (admin): create (token shown once), list, revoke."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView

from ..services import keys
from .auth import ROLES, current_principal, require
from ..domain.ids import DISTRICT_ID_PATTERN, ID_PATTERN
from ..extensions import state
from .common import Blueprint, StrictSchema, note_audit

blp = Blueprint("keys", __name__, url_prefix="/api/v1/keys", description="API keys (admin)")


class KeyCreateSchema(StrictSchema):
    role = ma.fields.String(required=True, validate=ma.validate.OneOf(ROLES))
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=100))
    agency_id = ma.fields.String(validate=ma.validate.Regexp(ID_PATTERN))
    community_id = ma.fields.String(validate=ma.validate.Regexp(ID_PATTERN))
    district_id = ma.fields.String(validate=ma.validate.Regexp(DISTRICT_ID_PATTERN))

    @ma.validates_schema
    def scope_matches_role(self, data, **kwargs):
        role = data.get("role")
        if role == "agency" and not data.get("agency_id"):
            raise ma.ValidationError("an agency key needs agency_id", "agency_id")
        if role == "kiosk" and not data.get("community_id"):
            raise ma.ValidationError("a kiosk key needs community_id", "community_id")
        if role != "agency" and data.get("agency_id"):
            raise ma.ValidationError("only agency keys have agency_id", "agency_id")
        if role != "kiosk" and data.get("community_id"):
            raise ma.ValidationError("only kiosk keys have community_id", "community_id")
        if role == "district" and not data.get("district_id"):
            raise ma.ValidationError("a district key needs district_id", "district_id")
        if role != "district" and data.get("district_id"):
            raise ma.ValidationError("only district keys have district_id", "district_id")


class KeySchema(ma.Schema):
    key_id = ma.fields.String()
    role = ma.fields.String()
    name = ma.fields.String()
    agency_id = ma.fields.String(allow_none=True)
    community_id = ma.fields.String(allow_none=True)
    district_id = ma.fields.String(allow_none=True)
    created_at = ma.fields.String()
    revoked_at = ma.fields.String(allow_none=True)


class KeyCreatedSchema(KeySchema):
    token = ma.fields.String(metadata={"description": "shown once; only its hash is stored"})


class KeyListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(KeySchema))


@blp.route("")
class Keys(MethodView):
    @require("admin")
    @blp.arguments(KeyCreateSchema)
    @blp.response(201, KeyCreatedSchema)
    def post(self, data):
        record, token = keys.create_key(state(), data["role"], data["name"], data.get("agency_id"),
                                        data.get("community_id"), data.get("district_id"))
        note_audit("key", record["key_id"], "created", role=record["role"])
        return {**keys.key_view(record), "token": token}

    @require("admin")
    @blp.response(200, KeyListSchema)
    def get(self):
        return {"items": [keys.key_view(k) for k in state().store.list_keys()]}


@blp.route("/me")
class OwnKey(MethodView):
    @require(*ROLES)
    @blp.response(200, KeySchema)
    def get(self):
        """The caller's own key (any role, never the token): lets a page show what its holder may do."""
        return keys.key_view(state().store.get_key(current_principal().key_id))


@blp.route("/<key_id>")
class Key(MethodView):
    @require("admin")
    @blp.response(200, KeySchema)
    def delete(self, key_id):
        view = keys.revoke_key(state(), key_id)
        note_audit("key", key_id, "revoked")
        return view
