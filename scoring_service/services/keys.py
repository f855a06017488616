"""API keys: tokens ``<key_id>.<secret>``; only a SHA-256 of the secret is stored.

The secret has 256 bits of entropy, so a fast hash is as safe as a slow one
and costs nothing per request; comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from ..domain.timeutil import now_stored
from .context import ServiceState
from .errors import Conflict, Forbidden, Invalid, NotFound

ROLES = ("admin", "leadership", "agency", "kiosk", "district")
#: the scope field each scoped role carries (SPEC §3)
SCOPES = {"agency": "agency_id", "kiosk": "community_id", "district": "district_id"}


@dataclass(frozen=True)
class Principal:
    """The holder of a valid key."""

    key_id: str
    role: str
    name: str
    agency_id: str | None = None
    community_id: str | None = None
    district_id: str | None = None
    #: a survey link's round (role "link", SPEC §14)
    round_id: str | None = None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_key(role: str, name: str, agency_id: str | None = None, community_id: str | None = None,
            district_id: str | None = None) -> tuple[dict, str]:
    """A key record to store and the token to show once."""
    key_id = "k_" + secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    record = {
        "key_id": key_id,
        "role": role,
        "name": name,
        "agency_id": agency_id,
        "community_id": community_id,
        "district_id": district_id,
        "secret_hash": hash_secret(secret),
        "created_at": now_stored(),
    }
    return record, f"{key_id}.{secret}"


def key_view(record: dict) -> dict:
    """A key as the API shows it: never the hash."""
    return {k: record.get(k) for k in ("key_id", "role", "name", "agency_id", "community_id", "district_id",
                                     "created_at", "revoked_at")}


def authenticate(ctx: ServiceState, token: str) -> Principal | None:
    """The principal of a token; None for a malformed, unknown or revoked one (or an expired link)."""
    key_id, _, secret = token.strip().partition(".")
    if key_id.startswith(LINK_PREFIX):
        return authenticate_link(ctx, key_id, secret)
    record = ctx.store.get_key(key_id) if key_id and secret else None
    expected = record["secret_hash"] if record else hash_secret("no such key")
    # Compare even for unknown keys so timing does not tell which ids exist.
    valid = hmac.compare_digest(expected, hash_secret(secret or ""))
    if record is None or not valid or record.get("revoked_at"):
        return None
    return Principal(record["key_id"], record["role"], record["name"], record.get("agency_id"),
                     record.get("community_id"), record.get("district_id"))


#: survey link ids (SPEC §14) begin so; key ids begin with "k_"
LINK_PREFIX = "l_"


def authenticate_link(ctx: ServiceState, link_id: str, secret: str) -> Principal | None:
    """A survey link's principal (role "link"); None when unknown, revoked or past its expiry."""
    record = ctx.store.get_survey_link(link_id) if secret else None
    expected = record["secret_hash"] if record else hash_secret("no such link")
    valid = hmac.compare_digest(expected, hash_secret(secret or ""))
    if record is None or not valid or record.get("revoked_at") or now_stored() > record["expires_at"]:
        return None
    return Principal(record["link_id"], "link", "survey link", community_id=record["community_id"],
                     round_id=record["round_id"])


def create_key(ctx: ServiceState, role: str, name: str, agency_id: str | None = None,
               community_id: str | None = None, district_id: str | None = None) -> tuple[dict, str]:
    """Check the scope matches the role and exists, store the key, return (record, token)."""
    store = ctx.store
    given = {"agency_id": agency_id, "community_id": community_id, "district_id": district_id}
    for field, value in given.items():
        if SCOPES.get(role) == field and not value:
            raise Invalid.field(field, f"a {role} key needs {field}")
        if SCOPES.get(role) != field and value:
            raise Invalid.field(field, f"only {next(r for r, f in SCOPES.items() if f == field)} keys have {field}")
    if district_id and store.get_district(district_id) is None:
        raise Invalid.field("district_id", f"unknown district {district_id!r}")
    if agency_id and store.get_agency(agency_id) is None:
        raise Invalid.field("agency_id", f"unknown agency {agency_id!r}")
    if community_id and store.get_community(community_id) is None:
        raise Invalid.field("community_id", f"unknown community {community_id!r}")
    record, token = new_key(role, name, agency_id, community_id, district_id)
    store.create_key(record)
    return record, token


def revoke_key(ctx: ServiceState, key_id: str) -> dict:
    """Revoke a key (revoking twice keeps the first time). The last active admin key stays:
    without it nobody could manage the service except from the command line."""
    store = ctx.store
    record = store.get_key(key_id)
    if record is None:
        raise NotFound("key", key_id)
    if record["role"] == "admin" and not record.get("revoked_at"):
        active_admins = [k for k in store.list_keys() if k["role"] == "admin" and not k.get("revoked_at")]
        if len(active_admins) <= 1:
            raise Conflict("last_admin_key", "the last active admin key cannot be revoked; create another first")
    store.revoke_key(key_id, now_stored())
    return key_view(store.get_key(key_id))


def check_district_scope(principal: Principal, district_id: str | None, roles: tuple[str, ...] = ("admin",)) -> None:
    """Object-level check for district-scoped rows (SPEC §3): keys of ``roles`` pass, a district key
    passes only for its own district; everyone else is refused (Forbidden)."""
    if principal.role in roles:
        return
    if principal.role == "district":
        if district_id is not None and principal.district_id == district_id:
            return
        raise Forbidden(f"this district key belongs to district {principal.district_id!r}")
    raise Forbidden(f"the {principal.role} role may not do this")
