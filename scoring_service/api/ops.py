"""Operations endpoints: health, readiness, interactive docs (served locally)."""

from __future__ import annotations

import logging
from pathlib import Path

import swagger_ui_bundle
from flask import Blueprint, jsonify, render_template, send_from_directory

from ..extensions import state
from ..store import StoreError

log = logging.getLogger(__name__)
bp = Blueprint("ops", __name__, template_folder="../web/templates")
SWAGGER_DIR = Path(swagger_ui_bundle.swagger_ui_path)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    try:
        state().store.ping()
    except StoreError:
        # the reason (hosts, paths, driver text) goes to the log, not to anonymous callers
        log.warning("readiness check failed: the store is unreachable", exc_info=True)
        return jsonify(status="unavailable", store="unreachable"), 503
    return jsonify(status="ready")


@bp.get("/docs")
def docs():
    """Swagger UI under the pages' Content-Security-Policy (its script is a file, web/static/docs.js)."""
    from ..web import CONTENT_SECURITY_POLICY

    return render_template("docs.html"), 200, {"Content-Security-Policy": CONTENT_SECURITY_POLICY}


@bp.get("/docs/static/<path:filename>")
def docs_static(filename: str):
    return send_from_directory(SWAGGER_DIR, filename, max_age=86400)
