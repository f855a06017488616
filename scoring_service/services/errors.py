"""Domain errors: what a use case refuses, and why. The HTTP layer maps them to status codes
(``scoring_service.api.errors``); the CLI prints their message."""

from __future__ import annotations

from datetime import datetime, timezone

from ..store import Outcome


class ServiceError(Exception):
    """A refusal with a message, optional field errors and, for conflicts, a reason code."""

    status = 400

    def __init__(self, message: str, errors: dict[str, list[str]] | None = None, reason: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors
        self.reason = reason
        self.headers = headers


class Invalid(ServiceError):
    """Input that does not fit the contract (422), naming the fields at fault."""

    status = 422

    @classmethod
    def field(cls, field: str, message: str) -> Invalid:
        return cls(f"{field}: {message}", {field: [message]})

    @classmethod
    def fields(cls, errors: dict[str, list[str]]) -> Invalid:
        return cls("; ".join(f"{k}: {_first(v)}" for k, v in errors.items()), errors)


def _first(messages) -> str:
    """The first message of a field's errors (marshmallow nests them for dicts and lists)."""
    while isinstance(messages, (dict, list)) and messages:
        messages = next(iter(messages.values())) if isinstance(messages, dict) else messages[0]
    return str(messages)


class NotFound(ServiceError):
    status = 404

    def __init__(self, what: str, ident: str):
        super().__init__(f"{what} {ident!r} not found")


class Forbidden(ServiceError):
    status = 403


class TooLarge(ServiceError):
    """A body or file over its size limit (413)."""

    status = 413


class UnsupportedType(ServiceError):
    """A file of a type the service does not take, or not of the type it claims (415)."""

    status = 415


class Busy(ServiceError):
    """The service is at its limit for this kind of work; try again later (429 with Retry-After)."""

    status = 429


class Unavailable(ServiceError):
    """Something the service needs is missing on this machine (503), e.g. a CJK font for PDFs."""

    status = 503


#: messages for the 409 reasons of SPEC §6
REASON_MESSAGES = {
    "conflict": "The same id was already used with different content.",
    "voided": "This response was voided by an administrator and cannot be resubmitted.",
    "household_already_responded": "This household has already answered in this community and round.",
    "round_closed": "The round is closed; no more submissions are accepted.",
    "round_published": "The round is published; its results are frozen.",
    "rubric_in_use": "The rubric is used by a round and cannot change.",
    "tranche_not_due": "The funding tranche is not due: its milestone is not reached, it is held, or it does "
                       "not apply.",
    "already_paid": "The funding tranche has already been paid; paid is final.",
    "public_cap_reached": "This community has received as many public (社会公众) responses as the round allows.",
}

OUTCOME_REASONS = {
    Outcome.CONFLICT: "conflict",
    Outcome.VOIDED: "voided",
    Outcome.HOUSEHOLD: "household_already_responded",
    Outcome.ROUND_CLOSED: "round_closed",
    Outcome.ROUND_PUBLISHED: "round_published",
    Outcome.ALREADY_PAID: "already_paid",
    Outcome.PUBLIC_CAP: "public_cap_reached",
    Outcome.RATE_LIMITED: "rate_limited",
}


class Conflict(ServiceError):
    """409 with one of the contract's reasons."""

    status = 409

    def __init__(self, reason: str, message: str | None = None):
        super().__init__(message or REASON_MESSAGES.get(reason, reason), reason=reason)


def raise_for_outcome(outcome: Outcome, what: str = "", ident: str = "") -> None:
    """Turn a store outcome that is a refusal into its domain error."""
    if outcome is Outcome.RATE_LIMITED:
        raise Busy("too many responses from this address through this survey link in this hour; try again later",
                   headers={"Retry-After": str(seconds_to_next_hour())})
    if outcome in OUTCOME_REASONS:
        raise Conflict(OUTCOME_REASONS[outcome])
    if outcome is Outcome.NOT_FOUND:
        raise NotFound(what, ident)
    if outcome is Outcome.FORBIDDEN:
        raise Forbidden(f"this key may not change {what} {ident!r}")


def seconds_to_next_hour(now: datetime | None = None) -> int:
    """Seconds until the next whole UTC hour, when a survey link's hourly cap starts again (at least 1)."""
    now = now or datetime.now(timezone.utc)
    return max(1, 3600 - (now.minute * 60 + now.second))
