"""One JSON error shape for every error (SPEC §6).

``{"code", "status", "message", "errors": {field: [messages]}}`` plus
``"error": <reason>`` on a 409. Use cases raise domain errors
(:mod:`scoring_service.services.errors`); :func:`register_error_handlers` maps
them here, in one place. ``abort`` is for refusals that belong to HTTP itself
(authentication, content types, sizes).
"""

from __future__ import annotations

from flask import Flask
from flask_smorest import abort as _abort
from werkzeug.exceptions import default_exceptions

from ..services.errors import NotFound, ServiceError


def abort(code: int, message: str | None = None, errors: dict | None = None, error: str | None = None, **kwargs):
    """Raise the HTTP error ``code`` with the service's JSON body."""
    data = dict(kwargs)
    if message is not None:
        data["message"] = message
    if errors is not None:
        data["errors"] = errors
    if error is not None:
        data["error"] = error
    _abort(code, **data)


def field_error(field: str, message: str, code: int = 422):
    """A 422 (or other) naming the field at fault."""
    abort(code, message=f"{field}: {message}", errors={field: [message]})


def http_exception(error: ServiceError):
    """The werkzeug exception that carries a domain error's body."""
    exc = default_exceptions[error.status]()
    data = {"message": error.message}
    if error.errors:
        data["errors"] = error.errors
    if error.reason:
        data["error"] = error.reason
    if error.headers:
        data["headers"] = error.headers
    exc.data = data
    return exc


def register_error_handlers(app: Flask, api) -> None:
    """Domain errors answer with the same JSON body as every other error."""

    @app.errorhandler(ServiceError)
    def handle_service_error(error: ServiceError):
        return api.handle_http_exception(http_exception(error))


def not_found(what: str, ident: str):
    raise NotFound(what, ident)
