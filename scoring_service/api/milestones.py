"""Milestones of a covered community (SPEC §11): record, replace, withdraw, read with history."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView

from .auth import current_principal, require
from ..domain import milestones as ms
from ..extensions import state
from ..services import milestones
from ..store import Outcome
from .common import Blueprint, StrictSchema, note_audit
from .result_schemas import Body, nullable, nullable_object, required

blp = Blueprint(
    "milestones", __name__, url_prefix="/api/v1/rounds/<round_id>/communities/<community_id>/milestones",
    description="Milestones of a community's works (全程监督): admin or the community's district key",
)

REASON = ma.validate.Length(min=1, max=500)


class VotesSchema(StrictSchema):
    eligible_households = ma.fields.Integer(required=True, strict=True,
                                            validate=ma.validate.Range(min=1, max=1_000_000))
    participants = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(min=0, max=1_000_000))
    in_favour = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(min=0, max=1_000_000))


class MilestoneInSchema(StrictSchema):
    reached_on = ma.fields.Date(required=True, metadata={"description": "China time; not after today"})
    note = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=500))
    votes = ma.fields.Nested(VotesSchema, allow_none=True,
                             metadata={"description": "required for residents_voted, refused for the others"})
    management_mode = ma.fields.String(allow_none=True, validate=ma.validate.OneOf(ms.MANAGEMENT_MODES),
                                       metadata={"description": "required for management_assigned"})
    changed_reason = ma.fields.String(allow_none=True, validate=REASON,
                                      metadata={"description": "required to replace a recorded milestone"})


class WithdrawSchema(StrictSchema):
    changed_reason = ma.fields.String(required=True, validate=REASON)


DATE = ma.validate.Regexp(r"^\d{4}-\d{2}-\d{2}$")


class VotesOutSchema(Body):
    eligible_households = required(ma.fields.Integer)
    participants = required(ma.fields.Integer)
    in_favour = required(ma.fields.Integer)


class MilestoneVersionSchema(Body):
    """One version of a milestone record (a closed object: every field always present but vote_passed)."""

    version = required(ma.fields.Integer, validate=ma.validate.Range(min=1))
    reached_on = nullable(ma.fields.String, validate=DATE, metadata={"description": "null: withdrawn"})
    withdrawn = required(ma.fields.Boolean)
    note = nullable(ma.fields.String)
    votes = nullable_object(VotesOutSchema, required=True)
    vote_passed = ma.fields.Boolean(metadata={"description": "residents_voted with votes only"})
    management_mode = nullable(ma.fields.String, validate=ma.validate.OneOf(ms.MANAGEMENT_MODES))
    changed_reason = nullable(ma.fields.String)
    key_id = nullable(ma.fields.String)
    recorded_at = required(ma.fields.String)


class MilestoneSchema(MilestoneVersionSchema):
    code = required(ma.fields.String, validate=ma.validate.OneOf(ms.CODES))
    name_zh = required(ma.fields.String)
    deadline = nullable(ma.fields.String, validate=DATE, metadata={"description": "the round's deadline, if any"})
    reached = required(ma.fields.Boolean,
                       metadata={"description": "counts as reached: recorded, not withdrawn, vote passed"})
    history = required(ma.fields.List, ma.fields.Nested(MilestoneVersionSchema),
                       metadata={"description": "every version, oldest first"})


class CommunityMilestonesSchema(Body):
    round_id = required(ma.fields.String)
    community_id = required(ma.fields.String)
    items = required(ma.fields.List, ma.fields.Nested(MilestoneSchema),
                     metadata={"description": "recorded milestones, in milestone order"})


@blp.route("")
class CommunityMilestones(MethodView):
    @require("admin", "leadership", "district")
    @blp.response(200, CommunityMilestonesSchema)
    def get(self, round_id, community_id):
        """The community's recorded milestones, in order, each with every version (oldest first)."""
        return milestones.community_milestones(state(), round_id, community_id, current_principal())


@blp.route("/<code>")
class CommunityMilestone(MethodView):
    @require("admin", "leadership", "district")
    @blp.response(200, MilestoneSchema)
    def get(self, round_id, community_id, code):
        return milestones.community_milestone(state(), round_id, community_id, code, current_principal())

    @require("admin", "district")
    @blp.arguments(MilestoneInSchema)
    @blp.response(200, MilestoneSchema)
    @blp.alt_response(201, schema=MilestoneSchema, description="first record of this milestone")
    def put(self, data, round_id, community_id, code):
        """Record that the community reached the milestone; replacing a record needs ``changed_reason``
        (every version is kept). An identical replay answers 200 without a new version."""
        outcome, view = milestones.record_milestone(state(), round_id, community_id, code, data,
                                                    current_principal())
        created = outcome is Outcome.CREATED
        first = created and view["version"] == 1
        note_audit("milestone", f"{community_id}:{code}",
                   "created" if first else "replaced" if created else outcome.value)
        return view, 201 if first else 200

    @require("admin", "district")
    @blp.arguments(WithdrawSchema)
    @blp.response(200, MilestoneSchema)
    def delete(self, data, round_id, community_id, code):
        """Withdraw the milestone: a version without a date, kept in the history; it then counts as never
        reached. Withdrawing again answers 200 without a new version."""
        outcome, view = milestones.withdraw_milestone(state(), round_id, community_id, code,
                                                      data["changed_reason"], current_principal())
        note_audit("milestone", f"{community_id}:{code}",
                   "withdrawn" if outcome is Outcome.CREATED else outcome.value)
        return view
