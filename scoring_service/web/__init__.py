"""Pages served by the service itself: the kiosk survey and the leadership dashboard.

Everything a page needs (scripts, styles, charts) is in this package; no page
fetches anything from outside the service (government intranets are offline).
"""

from __future__ import annotations

import secrets

from flask import Blueprint, Flask, make_response, render_template, request, send_from_directory

from ..api.surveys import DEVICE_COOKIE, DEVICE_ID
from ..domain import ledger as lg
from ..domain.milestones import MANAGEMENT_MODE_NAMES, MILESTONES
from ..domain.rounds import covers
from ..reports.exports import FLAG_LABELS
from ..reports.supervision import REASON_LABELS
from ..extensions import state

bp = Blueprint("web", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static")

LIKERT_LABELS = ["非常不满意", "不满意", "一般", "满意", "非常满意"]


def open_round_for(community: dict) -> dict | None:
    """The open round covering this community (SPEC §3, §15), the latest if several."""
    rounds = [r for r in state().store.list_rounds() if r["status"] == "open" and covers(r, community)]
    return max(rounds, key=lambda r: r["opens_at"]) if rounds else None


@bp.get("/")
def index():
    return render_template("index.html")


@bp.get("/kiosk/<community_id>")
def kiosk(community_id: str):
    s = state()
    community = s.store.get_community(community_id)
    if community is None:  # a page in Chinese for whoever set the kiosk up, not the API's JSON
        return render_template("kiosk_missing.html", community_id=community_id), 404
    round_ = open_round_for(community)
    questions, overall = [], None
    if round_:
        rubric = s.rubric(round_["rubric_id"])
        questions = [{"code": i["code"], "name_zh": i["name_zh"], "question_zh": i["question_zh"]}
                     for i in rubric.items if rubric.applies(i, community)]
        overall = rubric.body.get("overall_question_zh", "总体来说，您对本小区的改造满意吗？")
    district = s.store.get_district(community["district_id"]) or {}
    config = {
        "community_id": community_id,
        "community_name": community["name_zh"],
        "district_name": district.get("name_zh", ""),
        "round_id": round_["round_id"] if round_ else None,
        "round_title": round_["title"] if round_ else None,
        "questions": questions,
        "overall_question": overall,
        "labels": LIKERT_LABELS,
    }
    return render_template("kiosk.html", config=config, community=community, round=round_)


@bp.get("/kiosk/sw.js")
def kiosk_service_worker():
    """Served under /kiosk/ so that its scope covers every kiosk page."""
    response = send_from_directory(bp.static_folder, "kiosk-sw.js", mimetype="text/javascript", max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response


#: The phone survey's device cookie (SPEC §14, named where the API reads it): random, stored with each
#: link response.
DEVICE_COOKIE_MAX_AGE = 400 * 24 * 3600  # the longest browsers keep a cookie


@bp.get("/s/<token>")
def phone_survey(token: str):
    """The survey on a resident's own phone. The token is not checked here: the page sends it to the API
    (``GET /api/v1/link``), which answers 401 for an unknown, revoked or expired link."""
    config = {"token": token, "labels": LIKERT_LABELS}
    response = make_response(render_template("survey.html", config=config))
    if not DEVICE_ID.fullmatch(request.cookies.get(DEVICE_COOKIE) or ""):  # missing, or one the API would not keep
        response.set_cookie(DEVICE_COOKIE, secrets.token_urlsafe(16), max_age=DEVICE_COOKIE_MAX_AGE, path="/",
                            httponly=True, samesite="Lax", secure=request.is_secure)
    # the link's secret is in the address: never send it on in a Referer, never keep the page in shared caches
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


@bp.get("/dashboard")
def dashboard():
    s = state()
    check_texts = {code: check["text_zh"] for body in s.store.list_rubrics()
                   for item in body["items"] for code, check in ((c["code"], c) for c in item["checks"])}
    config = {
        "flag_labels": FLAG_LABELS,
        "check_texts": check_texts,
        # the 进度督办 tab: names from the one table of SPEC §11, so the script hard-codes none
        "milestones": [{"code": m.code, "name_zh": m.name_zh, "carries": m.carries} for m in MILESTONES],
        "management_modes": MANAGEMENT_MODE_NAMES,
        "reason_labels": REASON_LABELS,
        # the 资金台账 tab: the ledger's words from domain/ledger.py, as in its spreadsheets
        "ledger": {"statuses": lg.STATUS_NAMES, "hold_reasons": lg.HOLD_REASON_NAMES,
                   "land_categories": lg.LAND_CATEGORY_NAMES,
                   "tranches": [{"tranche": t.number, "milestone": t.milestone, "cumulative_pct": t.cumulative_pct,
                                 "name_zh": t.name_zh} for t in lg.TRANCHES]},
        # a published round is public: the page may say how its progress is counted without a key
        "progress_rules": {r["round_id"]: r.get("progress_rule", "graded_share")
                           for r in s.store.list_rounds() if r["status"] == "published"},
    }
    return render_template("dashboard.html", config=config)


#: Pages load only what the service itself serves: no inline script or style, no framing.
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",  # blob: the dashboard's photos, fetched with the key (整改台账)
    "connect-src 'self'",
    "worker-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))


@bp.after_request
def page_security_headers(response):
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


def security_headers(response):
    """On every response: no MIME sniffing, no framing (the API's JSON included)."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


def register_pages(app: Flask) -> None:
    app.register_blueprint(bp)
    app.after_request(security_headers)
