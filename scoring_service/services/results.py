"""Round results: computed from store statistics, cached per store generation, frozen when published.

The math is in :mod:`scoring_service.scoring`; the arrays it takes come from
:mod:`.round_inputs`; the documents it produces are shaped in :mod:`.documents`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from ..domain import rounds as kinds
from ..domain.canonical import canonical_bytes, digest
from ..domain.timeutil import now_stored
from ..scoring.engine import (
    CommunityInputs,
    CommunityScores,
    InspectionInputs,
    SurveyCounts,
    allocate_rewards,
    district_index,
    score_communities,
)
from ..store import Outcome
from .context import ServiceState
from .documents import LiveResults, PublishedResults, Results
from .errors import NotFound
from .rounds import covered_communities
from .round_inputs import Reference, inspection_arrays, survey_arrays


#: the kinds of write that can change a community's score (SPEC §5); milestones change only the
#: district index of a round that follows them (SPEC §11)
SCORE_SCOPES = ("reference", "inspections", "surveys")


def round_reference(ctx: ServiceState, round_: dict, reference_token: str | None = None) -> Reference:
    """The communities the round covers (SPEC §3, §15) as arrays, with the district names;
    cached per covered years and reference-data generation."""
    store = ctx.store
    rubric = ctx.rubric(round_["rubric_id"])
    token = reference_token if reference_token is not None else store.generation("reference")

    def load_reference() -> Reference:
        # kept for as long as the reference data stays: each record's keys (and district) as the one
        # interned copy, not the copy each record's own JSON parse made (some 8 MB at 20,000 communities)
        # (each record replaced in its list in turn, so the parsed and the interned copies are not all
        # held at once)
        # Whole numbers (households, renovation year) are one object per value too: each parse made its own.
        communities = list(covered_communities(store, round_))
        numbers: dict[int, int] = {}
        for i, c in enumerate(communities):
            communities[i] = {sys.intern(k): sys.intern(v) if k == "district_id" and isinstance(v, str)
                              else numbers.setdefault(v, v) if type(v) is int else v for k, v in c.items()}
        return Reference(communities, CommunityInputs.build(rubric, communities),
                         {d["district_id"]: d.get("name_zh") for d in store.list_districts()})

    return ctx.reference_arrays.get((kinds.covered_years(round_), rubric.rubric_id, token), load_reference)


@dataclass(frozen=True)
class RoundScores:
    """Every community of a round scored (SPEC §5), before the district index."""

    reference: Reference
    inspections: InspectionInputs
    residents: SurveyCounts
    public: SurveyCounts
    scores: CommunityScores

    def grade_of(self) -> dict[str, str | None]:
        return dict(zip(self.reference.inputs.ids, self.scores.grade))


def round_scores(ctx: ServiceState, round_: dict) -> RoundScores:
    """Community scores, cached per round and the generations of the writes that change them (surveys,
    inspections, reference data): a milestone write leaves them as they are. Only the inspections of the
    round's stage count (SPEC §13, §15): acceptance ones in an acceptance round, aftercare ones in an
    aftercare round."""
    store = ctx.store
    round_id = round_["round_id"]
    rubric = ctx.rubric(round_["rubric_id"])
    n_items = len(rubric.item_codes)
    stage = kinds.inspection_stage(round_)
    # Reference data and inspections change rarely during acceptance, surveys all the
    # time: each part is cached under the generation token of its own kind of write.
    reference_token, inspections_token, surveys_token = (store.generation(scope) for scope in SCORE_SCOPES)

    def score() -> RoundScores:
        reference = round_reference(ctx, round_, reference_token)
        ids = list(reference.inputs.ids)
        inspections = ctx.inspection_arrays.get(
            (round_id, reference_token, inspections_token),
            lambda: inspection_arrays(store.inspection_sums(round_id, n_items, stage=stage), ids),
            family=round_id,
        )
        residents, public = survey_arrays(store.survey_counts(round_id, n_items), ids)
        scores = score_communities(rubric, reference.inputs, residents, public, inspections)
        return RoundScores(reference, inspections, residents, public, scores)

    return ctx.live_scores.get((round_id, rubric.rubric_id, reference_token, inspections_token, surveys_token), score,
                               family=(round_id, rubric.rubric_id))


def compute_results(ctx: ServiceState, round_id: str, round_: dict | None = None) -> LiveResults:
    """Score every community of the round; rankings, rewards and breakdowns are shaped on demand."""
    store = ctx.store
    round_ = round_ or store.get_round(round_id)
    if round_ is None:
        raise NotFound("round", round_id)
    rubric = ctx.rubric(round_["rubric_id"])
    scored = round_scores(ctx, round_)
    reference, scores = scored.reference, scored.scores
    progress = None
    t = milestone_date(ctx, round_)
    if t is not None:  # SPEC §11: G(d) is the milestone progress at t
        from .supervision import district_progress  # supervision reads results (its warnings need grades)

        progress = district_progress(ctx, round_, t)
    districts = district_index(rubric, round_.get("quotas", {}), reference.inputs, scores, progress)
    rewards = allocate_rewards(round_.get("reward", {}), rubric, reference.inputs, scores, districts)
    aftercare = None
    if kinds.is_aftercare(round_):  # SPEC §15: baseline, change and the 前治后乱 flags
        from .aftercare import baselines  # aftercare reads published results

        aftercare = baselines(ctx, reference.communities)
    return LiveResults(round_, rubric, reference, scored.inspections, scored.residents, scored.public, scores,
                       districts, rewards, aftercare)


def milestone_date(ctx: ServiceState, round_: dict):
    """The as-of date of a round whose district progress follows milestones (None for the graded share,
    which does not depend on the date)."""
    if round_.get("progress_rule") != "milestones":
        return None
    from .supervision import as_of_date

    return as_of_date(ctx, round_)


def results_key(ctx: ServiceState, round_: dict) -> tuple:
    """What live results depend on: the round, the generations of the writes that change a score and,
    for a round whose district progress follows milestones, the as-of date and the milestone generation
    (the date matters as milestone progress changes at midnight without a write). A milestone write
    leaves the results of a round that does not follow milestones as they are."""
    store = ctx.store
    key = (round_["round_id"], round_["rubric_id"], *(store.generation(scope) for scope in SCORE_SCOPES))
    if kinds.is_aftercare(round_):
        # baselines follow other rounds' publication and milestones: any write may change them
        key += (store.generation(),)
    t = milestone_date(ctx, round_)
    if t is not None:
        key += (t, store.generation("milestones"))
    return key


def live_results(ctx: ServiceState, round_id: str, round_: dict | None = None) -> LiveResults:
    """Live results (cached per :func:`results_key`), also for a published round (its data is frozen).
    Community scores are cached apart (:func:`round_scores`), so after a milestone write a round that
    follows milestones recomputes its district index only."""
    round_ = round_ or ctx.store.get_round(round_id)
    if round_ is None:
        raise NotFound("round", round_id)
    return ctx.live_results.get(results_key(ctx, round_), lambda: compute_results(ctx, round_id, round_),
                                family=(round_id, round_["rubric_id"]))


def round_results(ctx: ServiceState, round_id: str, record: dict | None = None) -> Results:
    """Results of a round: the frozen snapshot once published, else live (cached per store generation).

    ``record`` is the round when the caller has just read it.
    """
    record = record or ctx.store.get_round(round_id)
    if record is None:
        raise NotFound("round", round_id)
    if record["status"] == "published":
        return ctx.snapshots.get(round_id, lambda: PublishedResults(*ctx.store.get_snapshot(round_id)))
    return live_results(ctx, round_id, record)


def snapshot_document(results: LiveResults, round_: dict, published_at: str, uncertainty: dict | None) -> dict:
    """The frozen document whose canonical JSON is hashed (SPEC §5 Publishing).

    ``uncertainty`` holds the rank intervals computed once at publication (fixed draws and seed), so the
    public reads them from the snapshot instead of asking for new Monte Carlo runs.
    """
    def mark(section: dict) -> dict:
        return {**section, "published": True}

    document = {
        "round_id": results.round_id,
        "rubric_id": round_["rubric_id"],
        "published_at": published_at,
        "scores": results.scores,
        "community_ranking": mark(results.community_ranking),
        "district_ranking": mark(results.district_ranking),
        "rewards": mark(results.rewards),
    }
    if uncertainty is not None:
        document["uncertainty"] = uncertainty
    return document


def publish(ctx: ServiceState, round_id: str, attempts: int = 5) -> Outcome:
    """Close (if open), freeze results and their rank intervals into a snapshot with its SHA-256, mark published.

    CHANGED when published now, UNCHANGED when it already was.
    """
    from .evidence import publication_uncertainty  # evidence builds on results

    store = ctx.store
    at = now_stored()
    record = store.get_round(round_id)
    if record is None:
        raise NotFound("round", round_id)
    if record["status"] == "open":
        store.close_round(round_id, at)
    for _ in range(attempts):
        round_ = store.get_round(round_id)
        if round_["status"] == "published":
            return Outcome.UNCHANGED
        generation = store.generation()
        results = compute_results(ctx, round_id, round_)
        if store.generation() != generation:
            continue  # a void landed while scoring: score again so the snapshot has it
        document = snapshot_document(results, round_, at, publication_uncertainty(ctx, results))
        body = canonical_bytes(document)
        return store.publish_round(round_id, body, digest(document), at)
    raise RuntimeError(f"round {round_id!r} kept changing while it was being published")
