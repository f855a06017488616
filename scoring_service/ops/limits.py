"""Rate limits (Flask-Limiter): per API token and per client address, 429 with Retry-After.

Limits count per token (a hash of the presented token, so nobody can spend
another key's quota by naming its id) and, separately, per client address
(which caps token guessing). Storage is in memory per worker by default; set
``SCORING_RATELIMIT_STORAGE_URI=redis://…`` to share counts between workers
and servers.
"""

from __future__ import annotations

import hashlib

from flask import Flask, request
from flask_limiter import Limit, Limiter
from flask_limiter.util import get_remote_address


def token_or_address() -> str:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer ") and header[7:].strip():
        return "token:" + hashlib.sha256(header[7:].strip().encode()).hexdigest()[:24]
    return "addr:" + (get_remote_address() or "unknown")


def _not_api() -> bool:
    return not request.path.startswith("/api/v1/")


def _reads() -> bool:
    return request.method in ("GET", "HEAD", "OPTIONS")


def init_rate_limits(app: Flask) -> Limiter:
    cfg = app.config
    limiter = Limiter(
        key_func=token_or_address,
        app=app,
        default_limits=[
            Limit(cfg["RATELIMIT_DEFAULT"], key_function=token_or_address, scope="token", exempt_when=_not_api),
            Limit(cfg["RATELIMIT_WRITE"], key_function=token_or_address, scope="token-writes",
                  exempt_when=lambda: _not_api() or _reads()),
            Limit(cfg["RATELIMIT_PER_ADDRESS"], key_function=get_remote_address, scope="address",
                  exempt_when=_not_api),
        ],
        headers_enabled=True,
        storage_uri=cfg["RATELIMIT_STORAGE_URI"],
        strategy="moving-window",
        enabled=cfg["RATELIMIT_ENABLED"],
        swallow_errors=False,
    )
    return limiter
