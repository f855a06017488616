"""Extension objects, created unbound and initialised in :func:`create_app`."""

from __future__ import annotations

from flask_smorest import Api as _Api
from werkzeug.exceptions import HTTPException


class Api(_Api):
    """flask-smorest's Api with the error body of SPEC §6."""

    def handle_http_exception(self, error: HTTPException):
        payload, code, headers = super().handle_http_exception(error)
        data = getattr(error, "data", None) or {}
        payload.setdefault("message", error.description or error.name)
        errors = payload.get("errors")
        # webargs nests validation errors under the request location
        # ("json", "query", …); the contract names fields directly.
        if isinstance(errors, dict) and len(errors) == 1:
            (location, inner), = errors.items()
            if location in ("json", "query", "path", "form", "headers") and isinstance(inner, dict):
                payload["errors"] = inner
        if isinstance(payload.get("errors"), dict) and code == 422 and payload["message"] == error.description:
            fields = ", ".join(sorted(map(str, payload["errors"])))
            payload["message"] = f"Invalid input: {fields}"
        if "error" in data:
            payload["error"] = data["error"]
        return payload, code, headers



def state():
    """This app's :class:`~scoring_service.services.context.ServiceState` (inside a request or app context)."""
    from flask import current_app

    return current_app.extensions["scoring"]
