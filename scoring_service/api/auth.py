"""Authentication and role checks of HTTP requests (keys themselves: :mod:`scoring_service.services.keys`)."""

from __future__ import annotations

import functools

from flask import g, request

from .errors import abort
from ..extensions import state
from ..services.keys import ROLES, Principal, authenticate, check_district_scope

__all__ = ["ROLES", "Principal", "current_principal", "require", "require_district_scope", "require_kiosk_scope"]


def _principal_from_header() -> Principal | None:
    """The caller's key, ``None`` without a token; 401 for a bad or revoked one."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        abort(401, message="Authorization must be 'Bearer <token>'", headers={"WWW-Authenticate": "Bearer"})
    principal = authenticate(state(), token)
    if principal is None:
        abort(401, message="invalid or revoked token", headers={"WWW-Authenticate": "Bearer"})
    return principal


def current_principal() -> Principal | None:
    ctx_g = g._get_current_object()  # one context look-up
    if "principal" not in ctx_g:
        ctx_g.principal = _principal_from_header()
    return ctx_g.principal


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


def require_district_scope(principal: Principal, district_id: str | None, roles: tuple[str, ...] = ("admin",)) -> None:
    """Object-level check of a district's rows (SPEC §3): ``roles`` pass (e.g. ``("admin", "leadership")``
    for reads), a district key only for its own ``district_id``; anyone else gets 403."""
    check_district_scope(principal, district_id, roles)
