"""API keys: tokens ``<key_id>.<secret>``; only a SHA-256 of the secret is stored.

The secret has 256 bits of entropy, so a fast hash is as safe as a slow one
and costs nothing per request; comparison is constant-time.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from flask import current_app, g, request

from .errors import abort
from ..domain.timeutil import now_stored

ROLES = ("admin", "leadership", "agency", "kiosk")


@dataclass(frozen=True)
class Principal:
    key_id: str
    role: str
    name: str
    agency_id: str | None = None
    community_id: str | None = None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_key(role: str, name: str, agency_id: str | None = None, community_id: str | None = None) -> tuple[dict, str]:
    """A key record to store and the token to show once."""
    key_id = "k_" + secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    record = {
        "key_id": key_id,
        "role": role,
        "name": name,
        "agency_id": agency_id,
        "community_id": community_id,
        "secret_hash": hash_secret(secret),
        "created_at": now_stored(),
    }
    return record, f"{key_id}.{secret}"


def public_key(record: dict) -> dict:
    """A key as the API shows it: never the hash."""
    return {k: record.get(k) for k in ("key_id", "role", "name", "agency_id", "community_id", "created_at", "revoked_at")}


def _principal_from_header() -> Principal | None:
    """The caller's key, ``None`` without a token; 401 for a bad or revoked one."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        abort(401, message="Authorization must be 'Bearer <token>'", headers={"WWW-Authenticate": "Bearer"})
    key_id, _, secret = token.strip().partition(".")
    record = current_app.extensions["scoring"].store.get_key(key_id) if key_id and secret else None
    expected = record["secret_hash"] if record else hash_secret("no such key")
    # Compare even for unknown keys so timing does not tell which ids exist.
    valid = hmac.compare_digest(expected, hash_secret(secret or ""))
    if record is None or not valid or record.get("revoked_at"):
        abort(401, message="invalid or revoked token", headers={"WWW-Authenticate": "Bearer"})
    return Principal(record["key_id"], record["role"], record["name"], record.get("agency_id"), record.get("community_id"))


def current_principal() -> Principal | None:
    if "principal" not in g:
        g.principal = _principal_from_header()
    return g.principal


def require(*roles: str, optional: bool = False):
    """Allow only keys of ``roles``: 401 without a valid key, 403 for another role.

    With ``optional=True`` a request without a token reaches the view with
    ``g.principal`` set to ``None`` (the view decides, e.g. published results).
    """

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            principal = current_principal()
            if principal is None:
                if not optional:
                    abort(401, message="a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
            elif roles and principal.role not in roles:
                abort(403, message=f"the {principal.role} role may not do this")
            return view(*args, **kwargs)

        return wrapper

    return decorator


ANY_KEY = ROLES


def require_kiosk_scope(principal: Principal, community_id: str) -> None:
    """A kiosk key acts only for its own community."""
    if principal.role == "kiosk" and principal.community_id != community_id:
        abort(403, message=f"this kiosk key belongs to community {principal.community_id!r}")
