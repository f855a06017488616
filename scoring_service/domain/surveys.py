"""Resident and public survey responses: from validated input to stored record."""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .canonical import digest
from .rounds import covers
from .rubric import Rubric
from .timeutil import from_stored, has_utc_time, to_stored, utcnow


class SubmissionError(Exception):
    """A submission that cannot be accepted: ``status`` and field ``errors``."""

    def __init__(self, errors: dict[str, list[str]], status: int = 422):
        super().__init__(errors)
        self.errors = errors
        self.status = status


@dataclass
class RoundContext:
    """What checking a submission needs to know about its round (one request's worth)."""

    round: dict
    rubric: Rubric
    load_community: Callable[[str], dict | None]
    secret_key: str
    future_tolerance: timedelta
    _communities: dict[str, dict | None] = field(default_factory=dict)
    _window: tuple[datetime, datetime] | None = None

    def window(self) -> tuple[datetime, datetime]:
        """The round's opening and closing times, parsed once (a batch checks a thousand answers)."""
        if self._window is None:
            self._window = (from_stored(self.round["opens_at"]), from_stored(self.round["closes_at"]))
        return self._window

    def community(self, community_id: str) -> dict | None:
        """The community if the round covers it (SPEC §3, §15: :func:`.rounds.covers`)."""
        if community_id not in self._communities:
            record = self.load_community(community_id)
            in_round = covers(self.round, record)
            self._communities[community_id] = record if in_round else None
        return self._communities[community_id]


#: the words of a Chinese household number (栋/幢/号楼/楼 building, 单元 entrance, 门 door, 室/号 flat),
#: two-character ones first so that 单元 goes as a whole
_HOUSEHOLD_WORDS = re.compile("号楼|单元|[栋幢楼门室号]")
_DASHES = re.compile("-+")
_LEADING_ZEROS = re.compile(r"(?<!\d)0+(?=\d)")


def household_canonical(household_ref: str | None) -> str | None:
    """The canonical form of a household reference (SPEC §14); None when nothing is left.

    NFKC; casefold; whitespace and format characters (category Cf) deleted; the household
    words and every other character that is not a letter or digit replaced by ``-``; runs of
    ``-`` collapsed; leading zeros of every run of digits stripped; ``-`` trimmed at both ends.
    So ``7栋3单元501室``, ``07-03-0501`` and ``７－３－５０１`` are all ``7-3-501``.
    """
    if household_ref is None:
        return None
    text = unicodedata.normalize("NFKC", household_ref).casefold()
    text = "".join(ch for ch in text if not ch.isspace() and unicodedata.category(ch) != "Cf")
    text = _HOUSEHOLD_WORDS.sub("-", text)
    text = "".join(ch if ch.isalnum() else "-" for ch in text)
    text = _LEADING_ZEROS.sub("", _DASHES.sub("-", text)).strip("-")
    return text or None


def household_hash(secret_key: str, round_id: str, community_id: str, household_ref: str | None) -> str | None:
    """Keyed hash of a household reference's canonical form, None when it has none: never
    stored in clear, unlinkable across rounds.

    A reference already in canonical form (``7-3-501``) hashes as it did before the canonical
    form existed, so households stored then are still refused when written that way.
    """
    canonical = household_canonical(household_ref)
    if canonical is None:
        return None
    message = "\x1f".join((round_id, community_id, canonical)).encode("utf-8")
    return hmac.new(secret_key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def check_time(name: str, moment: datetime, ctx: RoundContext) -> None:
    if not has_utc_time(moment):
        raise SubmissionError({name: ["is outside the range of representable times"]})
    if moment > utcnow() + ctx.future_tolerance:
        raise SubmissionError({name: ["is more than 10 minutes in the future"]})


def check_in_window(name: str, moment: datetime, ctx: RoundContext) -> None:
    """A resident's answer time lies in the round's window (SPEC §14)."""
    opens, closes = ctx.round["opens_at"], ctx.round["closes_at"]
    opens_at, closes_at = ctx.window()
    if moment < opens_at:
        raise SubmissionError({name: [f"is before the round opens ({opens})"]})
    if moment > closes_at:
        raise SubmissionError({name: [f"is after the round closes ({closes})"]})


def community_of_round(community_id: str, ctx: RoundContext) -> dict:
    community = ctx.community(community_id)
    if community is None:
        raise SubmissionError(
            {"community_id": [f"community {community_id!r} is not part of round {ctx.round['round_id']!r}"]}
        )
    return community


def prepare_response(data: dict, ctx: RoundContext, key_id: str) -> dict:
    """The stored record of a validated response, with its content hash and count levels.

    Raises :class:`SubmissionError` when the response does not fit the round.
    """
    rubric = ctx.rubric
    community_of_round(data["community_id"], ctx)
    answers = {code: level for code, level in (data.get("answers") or {}).items() if level is not None}
    unknown = sorted(set(data.get("answers") or {}) - set(rubric.item_codes))
    if unknown:
        raise SubmissionError({"answers": [f"unknown item codes: {', '.join(unknown)}"]})
    overall = data.get("overall")
    if not answers and overall is None:
        raise SubmissionError({"answers": ["at least one answer or overall is required"]})
    check_time("submitted_at", data["submitted_at"], ctx)
    check_in_window("submitted_at", data["submitted_at"], ctx)
    ref = data.get("household_ref")
    content = {
        "response_id": str(data["response_id"]),
        "community_id": data["community_id"],
        "respondent_type": data.get("respondent_type", "resident"),
        "channel": data.get("channel", "kiosk"),
        "household_hash": household_hash(ctx.secret_key, ctx.round["round_id"], data["community_id"], ref),
        "submitted_at": to_stored(data["submitted_at"]),
        "answers": dict(sorted(answers.items())),
        "overall": overall,
        "comment": data.get("comment") or None,
    }
    levels = [answers.get(code, 0) for code in rubric.item_codes] + [overall or 0]
    return {
        **content,
        "round_id": ctx.round["round_id"],
        "content_hash": digest(content),
        "received_at": to_stored(utcnow()),
        "key_id": key_id,
        "levels": levels,
    }


def response_view(record: dict) -> dict:
    """A stored response as the API shows it (no household hash, no internals)."""
    shown = {
        k: record.get(k)
        for k in ("response_id", "round_id", "community_id", "respondent_type", "channel", "submitted_at",
                  "received_at", "answers", "overall", "comment", "voided_at", "void_reason")
    }
    shown["household_ref_given"] = bool(record.get("household_hash"))
    return shown
