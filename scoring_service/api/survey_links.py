"""Survey links (SPEC §14): an admin makes, lists and revokes a community's links; the phone page
reads what to ask through its own link (``GET /api/v1/link``)."""

from __future__ import annotations

from flask import Response, current_app
from flask.views import MethodView
from marshmallow import fields, validate

from .auth import current_principal, require
from ..extensions import state
from ..reports import posters
from ..reports.supervision import PdfFontError
from ..services import survey_links
from ..services.errors import Unavailable
from .common import Blueprint, note_audit
from .result_schemas import COUNT, Body, nullable, required

blp = Blueprint("survey_links", __name__, url_prefix="/api/v1",
                description="Survey links for residents' own phones and the public (SPEC §14)")

LINKS = "/rounds/<round_id>/communities/<community_id>/survey-links"
LINK_ID = validate.Regexp(r"^l_[0-9a-f]{16}$")


class SurveyLinkSchema(Body):
    link_id = required(fields.String, validate=LINK_ID)
    round_id = required(fields.String)
    community_id = required(fields.String)
    created_at = required(fields.String)
    created_by = nullable(fields.String)
    expires_at = required(fields.String, metadata={"description": "the round's closes_at"})
    revoked_at = nullable(fields.String)


class NewSurveyLinkSchema(SurveyLinkSchema):
    token = required(fields.String, metadata={"description": "l_<16 hex>.<secret>; shown only here"})
    url = required(fields.String, metadata={"description": "SCORING_PUBLIC_BASE_URL + /s/<token>"})


class SurveyLinkListSchema(Body):
    items = required(fields.List, fields.Nested(SurveyLinkSchema))


class QuestionSchema(Body):
    code = required(fields.String)
    name_zh = required(fields.String)
    question_zh = required(fields.String)


class LinkSurveySchema(Body):
    round_id = required(fields.String)
    round_title = required(fields.String)
    community_id = required(fields.String)
    community_name = nullable(fields.String)
    district_name = nullable(fields.String)
    opens_at = required(fields.String)
    closes_at = required(fields.String)
    participants = required(fields.Integer, validate=COUNT,
                            metadata={"description": "已有 N 人参与: standing responses of the community"})
    questions = required(fields.List, fields.Nested(QuestionSchema),
                         metadata={"description": "the items that apply to the community, in rubric order"})
    overall_question = required(fields.String)
    labels = required(fields.List, fields.String(), validate=validate.Length(equal=5),
                      metadata={"description": "the words of levels 1 to 5"})


@blp.route(LINKS)
class SurveyLinks(MethodView):
    @require("admin")
    @blp.response(201, NewSurveyLinkSchema)
    def post(self, round_id, community_id):
        """A new link of an open round for one of its communities; the token is shown only in this answer.
        It posts only online surveys of this round and community and expires when the round closes."""
        created = survey_links.create_link(state(), round_id, community_id, current_principal())
        note_audit("survey_link", created["link_id"], "created", community_id=community_id)
        return created, 201

    @require("admin")
    @blp.response(200, SurveyLinkListSchema)
    def get(self, round_id, community_id):
        """The community's links in the round, oldest first (never their tokens)."""
        return {"items": survey_links.list_links(state(), round_id, community_id)}


@blp.route(LINKS + "/<link_id>")
class SurveyLink(MethodView):
    @require("admin")
    @blp.response(200, SurveyLinkSchema)
    def delete(self, round_id, community_id, link_id):
        """Revoke the link: it answers 401 from now on (revoking again keeps the first time)."""
        changed, view = survey_links.revoke_link(state(), round_id, community_id, link_id)
        note_audit("survey_link", link_id, "revoked" if changed else "already_revoked", community_id=community_id)
        return view


POSTER_BODY = {"type": "string", "format": "binary"}


def poster(round_id: str, community_id: str, link_id: str, kind: str) -> Response:
    """The A4 poster of a link as ``kind`` ("pdf" or "png"): 503 naming SCORING_PDF_FONT without a CJK font."""
    view = survey_links.poster_view(state(), round_id, community_id, link_id)
    draw = posters.poster_pdf if kind == "pdf" else posters.poster_png
    try:
        body = draw(view, font_path=current_app.config.get("PDF_FONT"))
    except PdfFontError as exc:
        raise Unavailable(str(exc)) from None
    disposition = f'inline; filename="{community_id}-{link_id}.{kind}"'
    return Response(body, mimetype="application/pdf" if kind == "pdf" else "image/png",
                    headers={"Content-Disposition": disposition, "Cache-Control": "private, no-store"})


@blp.route(LINKS + "/<link_id>/poster.pdf")
class PosterPdf(MethodView):
    @require("admin")
    @blp.response(200, POSTER_BODY, content_type="application/pdf")
    def get(self, round_id, community_id, link_id):
        """The link's poster (A4 PDF): the community and district, the QR code of the link, instructions, dates.
        409 ``link_revoked`` or ``link_expired`` for a link that takes no more surveys, ``link_secret_changed``
        when the service's secret key changed since the link was made."""
        return poster(round_id, community_id, link_id, "pdf")


@blp.route(LINKS + "/<link_id>/poster.png")
class PosterPng(MethodView):
    @require("admin")
    @blp.response(200, POSTER_BODY, content_type="image/png")
    def get(self, round_id, community_id, link_id):
        """The link's poster as a PNG (A4 at 150 dpi), e.g. for the residents' WeChat group; refused as the
        PDF is."""
        return poster(round_id, community_id, link_id, "png")


@blp.route("/link")
class OwnLink(MethodView):
    @require("link")
    @blp.response(200, LinkSurveySchema)
    def get(self):
        """For the phone page, with the link's token: its round and community, 已有 N 人参与, the questions."""
        return survey_links.link_survey(state(), current_principal())
