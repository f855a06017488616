"""Survey links (SPEC §14): a credential for residents' own phones and the public, bound to one
round and one community, shown once as ``l_<16 hex>.<secret>`` (only the secret's SHA-256 is
stored, like keys), expiring when the round closes.

What a link may post, and its limits (channel ``online`` only, the hourly cap per client address,
the round's ``public_cap``), are checked in :mod:`scoring_service.services.submissions`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timezone

from ..domain.timeutil import now_stored, to_stored
from ..store.base import LinkQuota
from .context import ServiceState
from .errors import Conflict, NotFound
from .keys import LINK_PREFIX, Principal, hash_secret
from .rounds import covered_community, get_round

#: where the phone page is served when SCORING_PUBLIC_BASE_URL is not set
DEFAULT_PUBLIC_BASE_URL = "http://127.0.0.1:8000"
#: the five answers, level 1 to 5 (the kiosk's words)
LIKERT_LABELS = ["非常不满意", "不满意", "一般", "满意", "非常满意"]
DEFAULT_OVERALL_QUESTION = "总体来说，您对本小区的改造满意吗？"
#: accepted responses per client address per link per hour (SCORING_LINK_HOURLY_CAP)
DEFAULT_HOURLY_CAP = 30


def link_view(record: dict) -> dict:
    """A link as the API lists it: never the secret or its hash."""
    return {k: record.get(k) for k in ("link_id", "round_id", "community_id", "created_at", "created_by",
                                     "expires_at", "revoked_at")}


def link_url(ctx: ServiceState, token: str) -> str:
    base = str(ctx.setting("PUBLIC_BASE_URL") or DEFAULT_PUBLIC_BASE_URL).rstrip("/")
    return f"{base}/s/{token}"


def create_link(ctx: ServiceState, round_id: str, community_id: str, principal: Principal) -> dict:
    """A new link of an open round for one of its communities: ``{link_id, token, url, expires_at, …}``
    (the token is shown only here)."""
    round_ = get_round(ctx, round_id)
    if round_["status"] != "open":
        raise Conflict("round_closed" if round_["status"] == "closed" else "round_published")
    covered_community(ctx, round_, community_id)
    if now_stored() > round_["closes_at"]:
        raise Conflict("round_closed", "the round's closing time has passed; a link would be expired already")
    link_id = LINK_PREFIX + secrets.token_hex(8)
    secret = link_secret(ctx, link_id)
    record = {
        "link_id": link_id,
        "round_id": round_id,
        "community_id": community_id,
        "secret_hash": hash_secret(secret),
        "created_at": now_stored(),
        "created_by": principal.key_id,
        "expires_at": round_["closes_at"],
        "revoked_at": None,
    }
    ctx.store.create_survey_link(record)
    token = f"{link_id}.{secret}"
    return {**link_view(record), "token": token, "url": link_url(ctx, token)}


def link_secret(ctx: ServiceState, link_id: str) -> str:
    """A link's secret: keyed by the service's secret key from its (random) id, so that a poster can be
    printed again from the link id while the store keeps only the secret's hash, as for keys."""
    mac = hmac.new(ctx.secret_key.encode("utf-8"), f"survey-link\x1f{link_id}".encode("utf-8"), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode("ascii").rstrip("=")


def get_link(ctx: ServiceState, round_id: str, community_id: str, link_id: str) -> dict:
    record = ctx.store.get_survey_link(link_id)
    if record is None or record["round_id"] != round_id or record["community_id"] != community_id:
        raise NotFound("survey link", link_id)
    return record


def list_links(ctx: ServiceState, round_id: str, community_id: str) -> list[dict]:
    round_ = get_round(ctx, round_id)
    covered_community(ctx, round_, community_id)
    return [link_view(r) for r in ctx.store.list_survey_links(round_id, community_id)]


def revoke_link(ctx: ServiceState, round_id: str, community_id: str, link_id: str) -> tuple[bool, dict]:
    """Revoke a link (revoking twice keeps the first time): (changed now, the link)."""
    was = get_link(ctx, round_id, community_id, link_id)
    ctx.store.revoke_survey_link(link_id, now_stored())
    return was.get("revoked_at") is None, link_view(ctx.store.get_survey_link(link_id))


def poster_view(ctx: ServiceState, round_id: str, community_id: str, link_id: str) -> dict:
    """What a poster shows of a link: the round, community and district names, the round's dates and
    the link's URL (its token made again from the id: :func:`link_secret`)."""
    record = get_link(ctx, round_id, community_id, link_id)
    # a poster is put up to be scanned: one whose link no longer takes surveys would only meet refusals
    if record.get("revoked_at"):
        raise Conflict("link_revoked", "this link was revoked, so its poster would lead to a refusal; "
                                       "create a new link")
    if now_stored() > record["expires_at"]:
        raise Conflict("link_expired", "this link expired when the round closed, so its poster would lead to a "
                                       "refusal")
    secret = link_secret(ctx, link_id)
    if not hmac.compare_digest(record["secret_hash"], hash_secret(secret)):
        raise Conflict("link_secret_changed", "the service's secret key changed since this link was made, so its "
                                              "poster cannot be printed again; create a new link")
    token = f"{link_id}.{secret}"
    round_ = get_round(ctx, round_id)
    community = ctx.store.get_community(community_id) or {}
    district = ctx.store.get_district(community.get("district_id", "")) or {}
    return {**link_view(record), "round_title": round_["title"], "opens_at": round_["opens_at"],
            "closes_at": round_["closes_at"], "community_name": community.get("name_zh"),
            "district_name": district.get("name_zh"), "url": link_url(ctx, token)}


# -- the phone page's view of its link ------------------------------------------------------------

def participants(ctx: ServiceState, round_id: str, community_id: str) -> int:
    """Accepted responses of the community in the round that stand (every respondent type), from the
    kept statistics (no response is read)."""
    round_ = get_round(ctx, round_id)
    counts = ctx.store.survey_counts(round_id, len(ctx.rubric(round_["rubric_id"]).item_codes))
    return int(sum(int(n) for c, n in zip(counts.community_ids, counts.responses) if c == community_id))


def link_survey(ctx: ServiceState, principal: Principal) -> dict:
    """``GET /api/v1/link``: what the phone page needs to ask its community's questions."""
    round_ = get_round(ctx, principal.round_id)
    rubric = ctx.rubric(round_["rubric_id"])
    community = ctx.store.get_community(principal.community_id) or {}
    district = ctx.store.get_district(community.get("district_id", "")) or {}
    questions = [{"code": item["code"], "name_zh": item["name_zh"], "question_zh": item["question_zh"]}
                 for item in rubric.items if rubric.applies(item, community)]
    return {
        "round_id": round_["round_id"],
        "round_title": round_["title"],
        "community_id": principal.community_id,
        "community_name": community.get("name_zh"),
        "district_name": district.get("name_zh"),
        "opens_at": round_["opens_at"],
        "closes_at": round_["closes_at"],
        "participants": participants(ctx, round_["round_id"], principal.community_id),
        "questions": questions,
        "overall_question": rubric.body.get("overall_question_zh", DEFAULT_OVERALL_QUESTION),
        "labels": LIKERT_LABELS,
    }


# -- abuse controls ---------------------------------------------------------------------------------

def address_hash(ctx: ServiceState, link_id: str, address: str | None) -> str | None:
    """A keyed hash of the client's address per link: counted for the hourly cap, never stored in clear."""
    if not address:
        return None
    message = f"{link_id}\x1f{address}".encode("utf-8")
    return hmac.new(ctx.secret_key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def hour_start(now: datetime | None = None) -> str:
    """The start of the current UTC hour as a stored time (the hourly cap's window)."""
    now = now or datetime.now(timezone.utc)
    return to_stored(now.replace(minute=0, second=0, microsecond=0))


def link_quota(ctx: ServiceState, round_: dict, community_id: str) -> LinkQuota:
    """The limits of a link's responses: the round's ``public_cap`` (default the community's households)
    and ``LINK_HOURLY_CAP`` per client address per link in the current hour."""
    public_cap = round_.get("public_cap")
    if public_cap is None:
        public_cap = (ctx.store.get_community(community_id) or {}).get("households")
    return LinkQuota(public_cap=public_cap, hourly_cap=int(ctx.setting("LINK_HOURLY_CAP", DEFAULT_HOURLY_CAP)),
                     window_start=hour_start())
