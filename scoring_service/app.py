"""Application factory."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask
from flask.sessions import SessionInterface

from .config import Config, from_environment, instance_secret
from .services.context import ServiceState
from .store import open_store


def create_app(config: dict | None = None) -> Flask:
    """Build the service. ``config`` overrides environment settings (tests)."""
    overrides = dict(config or {})
    instance_path = overrides.pop("INSTANCE_PATH", None) or os.environ.get("SCORING_INSTANCE_PATH")
    # static_folder=None: the pages blueprint serves /static (the app has no static folder of its own)
    app = ServiceFlask(__name__, static_folder=None,
                       instance_path=str(Path(instance_path).resolve()) if instance_path else None)
    app.config.from_object(Config)
    app.config.update(from_environment())
    app.config.update(overrides)
    app.json.ensure_ascii = False  # Chinese as Chinese, not \uXXXX escapes
    app.json.sort_keys = False
    app.session_interface = NoSessions()

    register_state(app)
    register_logging(app)
    register_api(app)
    register_pages(app)
    register_cli(app)
    return app


class ServiceFlask(Flask):
    """Flask whose ``ensure_sync`` remembers the plain (not ``async def``) functions it was given.

    Flask asks ``inspect.iscoroutinefunction`` of every hook, view and handler on every request (19
    times for a survey POST, some 2 % of its instructions); the answer never changes for a function.
    A bound method is remembered by its function (a new bound method is made for each request), and at
    most ``PLAIN_LIMIT`` functions are remembered (a function made per request is then asked each time,
    as Flask does). Coroutine functions go to Flask's ``async_to_sync`` as before."""

    PLAIN_LIMIT = 4096

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._plain_functions: set = set()

    def ensure_sync(self, func):
        key = getattr(func, "__func__", func)
        try:
            if key in self._plain_functions:
                return func
        except TypeError:  # an unhashable callable: asked each time
            return super().ensure_sync(func)
        result = super().ensure_sync(func)
        if result is func and len(self._plain_functions) < self.PLAIN_LIMIT:
            self._plain_functions.add(key)
        return result


class NoSessions(SessionInterface):
    """The service keeps no Flask session (API keys and survey links authenticate; no page stores
    anything in a cookie session): every request gets Flask's read-only null session, and no
    session cookie is read or written. Flask's default cookie session built a signing serializer
    for every request, about 5 % of a survey POST's CPU."""

    def open_session(self, app, request):
        return None  # Flask then uses make_null_session

    def save_session(self, app, session, response) -> None:
        return None


def database_url(app: Flask) -> str:
    return app.config["DATABASE_URL"] or os.path.join(app.instance_path, "scoring.sqlite3")


def register_state(app: Flask) -> None:
    secret = app.config.get("SECRET_KEY") or instance_secret(app.instance_path, create=True)
    app.config["SECRET_KEY"] = secret
    store = open_store(database_url(app))
    store.init()
    app.extensions["scoring"] = ServiceState(store, secret, app.config)


def register_logging(app: Flask) -> None:
    from .ops.limits import init_rate_limits
    from .ops.metrics import init_metrics
    from .ops.observability import init_observability

    init_observability(app)
    init_metrics(app)
    # the Limiter registers itself in app.extensions["limiter"], a set that Flask-Limiter's own commands
    # ('scoring-service limiter config|limits|clear') read: replacing it with the Limiter broke them
    init_rate_limits(app)


def register_api(app: Flask) -> None:
    from .api import register_blueprints

    register_blueprints(app)


def register_pages(app: Flask) -> None:
    from .web import register_pages as register

    register(app)


def register_cli(app: Flask) -> None:
    from .cli import register_commands

    register_commands(app)
