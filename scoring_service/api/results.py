"""Scores, rankings, rewards and the published snapshot; CSV/XLSX exports."""

from __future__ import annotations

import marshmallow as ma
from flask import Response
from flask.views import MethodView

from ..services import evidence
from ..reports import exports
from .auth import current_principal
from .errors import abort, not_found
from ..services.documents import Results
from ..services.results import round_results
from ..extensions import state
from .common import Blueprint, StrictSchema, download, json_response
from .result_schemas import (
    CSV,
    CSV_BODY,
    EXPORTS,
    SNAPSHOT_HEADERS,
    XLSX,
    XLSX_BODY,
    AnomaliesSchema,
    CommunityRankingSchema,
    DistrictRankingSchema,
    FunnelSchema,
    PublishedSnapshotSchema,
    RewardsSchema,
    ScoreBreakdownSchema,
)
from .rounds import get_round_or_404

blp = Blueprint(
    "results", __name__, url_prefix="/api/v1/rounds/<round_id>", description="Scores, rankings and rewards"
)

READERS = ("leadership", "admin")
EXPORT_NAMES = {"小区排名": "community-ranking", "区排名": "district-ranking", "奖励分配": "rewards"}
MIMETYPES = {
    "csv": "text/csv",  # the response adds "; charset=utf-8"
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


class FormatQuerySchema(StrictSchema):
    format = ma.fields.String(load_default="json", validate=ma.validate.OneOf(("json", "csv", "xlsx")))


class RankingQuerySchema(FormatQuerySchema):
    uncertainty = ma.fields.Boolean(load_default=False, metadata={"description": "add Monte Carlo rank intervals"})
    draws = ma.fields.Integer(validate=ma.validate.Range(min=10, max=5000),
                              metadata={"description": "default 1000; a published round serves the draws frozen "
                                                       "at publication"})
    seed = ma.fields.Integer(validate=ma.validate.Range(min=0, max=2**32 - 1), metadata={"description": "default 0"})


class CommunityRankingQuerySchema(RankingQuerySchema):
    district_id = ma.fields.String()


def exportable(schema):
    """A 200 that is the JSON ``schema`` or, with ``?format=``, the same table as CSV or XLSX."""
    def decorate(view):
        view = blp.alt_response(200, schema=XLSX_BODY, content_type=XLSX, description=EXPORTS, success=True)(view)
        view = blp.alt_response(200, schema=CSV_BODY, content_type=CSV, description=EXPORTS, success=True)(view)
        return blp.response(200, schema, description=EXPORTS)(view)

    return decorate


def results_for(round_id: str, public_once_published: bool = True) -> Results:
    """Results the caller may read: leadership/admin always, anyone once published."""
    record = get_round_or_404(round_id)
    principal = current_principal()
    published = record["status"] == "published"
    if not (published and public_once_published):
        if principal is None:
            abort(401, message="a leadership or admin key is required until the round is published",
                  headers={"WWW-Authenticate": "Bearer"})
        if principal.role not in READERS:
            abort(403, message=f"the {principal.role} role may not read results")
    return round_results(state(), round_id, record)


def export(fmt: str, name: str, round_id: str, headers: list[str], rows: list[list]) -> Response:
    body = exports.to_csv(headers, rows) if fmt == "csv" else exports.to_xlsx(name, headers, rows)
    return download(body, MIMETYPES[fmt], f"{round_id}-{EXPORT_NAMES[name]}.{fmt}", f"{round_id}-{name}.{fmt}")


def rank_spread(results: Results, round_id: str, query: dict) -> dict:
    """Rank intervals: those frozen at publication for anyone, on-demand draws for leadership and admins."""
    frozen = getattr(results, "uncertainty", None)
    asked = {name: query[name] for name in ("draws", "seed") if name in query}
    if frozen is not None and all(frozen["about"][name] == value for name, value in asked.items()):
        return frozen
    principal = current_principal()
    if principal is None or principal.role not in READERS:
        if frozen is None:
            abort(401, message="rank intervals of this round need a leadership or admin key",
                  headers={"WWW-Authenticate": "Bearer"})
        abort(401 if principal is None else 403,
              message=f"the public reads the rank intervals frozen at publication "
                      f"(draws={frozen['about']['draws']}, seed={frozen['about']['seed']}); "
                      "other draws or seeds need a leadership or admin key",
              headers={"WWW-Authenticate": "Bearer"} if principal is None else None)
    return evidence.uncertainty(state(), round_id, query.get("draws", 1000), query.get("seed", 0))


def check_texts(round_id: str) -> dict[str, str]:
    rubric = state().rubric(get_round_or_404(round_id)["rubric_id"])
    return {code: check["text_zh"] for code, check in rubric.checks.items()}


@blp.route("/communities/<community_id>/score")
class CommunityScore(MethodView):
    @blp.response(200, ScoreBreakdownSchema)
    def get(self, round_id, community_id):
        """Score breakdown of one community (SPEC §5)."""
        results = results_for(round_id, public_once_published=False)
        breakdown = results.breakdown(community_id)
        if breakdown is None:
            not_found("community in this round", community_id)
        return json_response(breakdown)


@blp.route("/rankings/communities")
class CommunityRanking(MethodView):
    @blp.arguments(CommunityRankingQuerySchema, location="query")
    @exportable(CommunityRankingSchema)
    def get(self, query, round_id):
        """Ranked communities (city rank and rank within district)."""
        results = results_for(round_id)
        if query["format"] == "json" and not query["uncertainty"] and not query.get("district_id"):
            # the whole ranking in pieces made as they are sent, its length stated (never joined whole)
            length, body = results.ranking_stream()
            return Response(body, mimetype="application/json", headers={"Content-Length": str(length)})
        ranking = results.community_ranking
        if query.get("district_id"):
            d = query["district_id"]
            ranking = {
                **ranking,
                "communities": [r for r in ranking["communities"] if r["district_id"] == d],
                "unranked": [r for r in ranking.get("unranked", []) if r["district_id"] == d],
            }
        if query["format"] != "json":
            return export(query["format"], "小区排名", round_id, *exports.community_table(ranking, check_texts(round_id)))
        if query["uncertainty"]:
            spread = rank_spread(results, round_id, query)
            return json_response(evidence.with_uncertainty(ranking, "communities", "community_id", spread))
        return json_response(ranking)


@blp.route("/rankings/districts")
class DistrictRanking(MethodView):
    @blp.arguments(RankingQuerySchema, location="query")
    @exportable(DistrictRankingSchema)
    def get(self, query, round_id):
        """Districts ranked by their index D = 0.7·quality + 0.3·progress."""
        results = results_for(round_id)
        if query["format"] != "json":
            return export(query["format"], "区排名", round_id, *exports.district_table(results.district_ranking))
        if query["uncertainty"]:
            spread = rank_spread(results, round_id, query)
            return json_response(evidence.with_uncertainty(results.district_ranking, "districts", "district_id",
                                                           spread))
        return json_response(results.section_bytes("district_ranking"))


@blp.route("/rewards")
class Rewards(MethodView):
    @blp.arguments(FormatQuerySchema, location="query")
    @exportable(RewardsSchema)
    def get(self, query, round_id):
        """Reward allocations in integer fen (largest-remainder method)."""
        results = results_for(round_id)
        if query["format"] != "json":
            return export(query["format"], "奖励分配", round_id, *exports.rewards_table(results.rewards))
        return json_response(results.section_bytes("rewards"))


@blp.route("/evidence/funnel")
class Funnel(MethodView):
    @blp.response(200, FunnelSchema)
    def get(self, round_id):
        """Satisfaction rate against number of answers, with 95 % and 99.8 % limits around the city rate."""
        results_for(round_id, public_once_published=False)
        return json_response(evidence.funnel(state(), round_id))


@blp.route("/evidence/anomalies")
class Anomalies(MethodView):
    @blp.response(200, AnomaliesSchema)
    def get(self, round_id):
        """Straight-lining, bursts, duplicate-looking responses and biased agencies (flags only)."""
        results_for(round_id, public_once_published=False)
        return json_response(evidence.anomalies(state(), round_id))


@blp.route("/snapshot")
class Snapshot(MethodView):
    @blp.response(200, PublishedSnapshotSchema, headers=SNAPSHOT_HEADERS)
    def get(self, round_id):
        """The published snapshot, byte for byte; its SHA-256 is in ``X-Snapshot-SHA256``."""
        get_round_or_404(round_id)
        snapshot = state().store.get_snapshot(round_id)
        if snapshot is None:
            not_found("published snapshot of round", round_id)
        body, sha256 = snapshot
        return Response(body, mimetype="application/json", headers={"X-Snapshot-SHA256": sha256})
