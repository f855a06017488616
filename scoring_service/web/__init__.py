"""Pages served by the service itself: the kiosk survey and the leadership dashboard."""

from __future__ import annotations

from flask import Blueprint, Flask, abort, render_template

from ..state import state

bp = Blueprint("web", __name__, template_folder="templates", static_folder="static", static_url_path="/static")


@bp.get("/")
def index():
    return render_template("index.html")


@bp.get("/kiosk/<community_id>")
def kiosk(community_id: str):
    community = state().store.get_community(community_id)
    if community is None:
        abort(404)
    return render_template("kiosk.html", community=community)


@bp.get("/dashboard")
def dashboard():
    return render_template("dashboard.html")


def register_pages(app: Flask) -> None:
    app.register_blueprint(bp)
