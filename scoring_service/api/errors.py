"""One JSON error shape for every error (SPEC §6).

``{"code", "status", "message", "errors": {field: [messages]}}`` plus
``"error": <reason>`` on a 409.
"""

from __future__ import annotations

from flask_smorest import abort as _abort

from ..store import Outcome

#: messages for the 409 reasons of SPEC §6
REASON_MESSAGES = {
    "conflict": "The same id was already used with different content.",
    "voided": "This response was voided by an administrator and cannot be resubmitted.",
    "household_already_responded": "This household has already answered in this community and round.",
    "round_closed": "The round is closed; no more submissions are accepted.",
    "round_published": "The round is published; its results are frozen.",
    "rubric_in_use": "The rubric is used by a round and cannot change.",
}

OUTCOME_REASONS = {
    Outcome.CONFLICT: "conflict",
    Outcome.VOIDED: "voided",
    Outcome.HOUSEHOLD: "household_already_responded",
    Outcome.ROUND_CLOSED: "round_closed",
    Outcome.ROUND_PUBLISHED: "round_published",
}


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


def conflict(reason: str, message: str | None = None):
    abort(409, message=message or REASON_MESSAGES[reason], error=reason)


def not_found(what: str, ident: str):
    abort(404, message=f"{what} {ident!r} not found")


def raise_for_outcome(outcome: Outcome, what: str = "", ident: str = "") -> None:
    """Turn a store outcome that is a refusal into its HTTP error."""
    if outcome in OUTCOME_REASONS:
        conflict(OUTCOME_REASONS[outcome])
    if outcome is Outcome.NOT_FOUND:
        not_found(what, ident)
    if outcome is Outcome.FORBIDDEN:
        abort(403, message=f"this key may not change {what} {ident!r}")
