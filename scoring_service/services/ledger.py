"""Funding ledger (SPEC §12): funding records, disbursements and the round's ledger.

Who: an admin sets every funding field; the district key of the community's district may change only
``district_funds_in_place_fen``; leadership reads. Disbursements are an admin's, judged at today's
date (China time). The ledger is computed at the as-of date of §11 from the current funding records,
the milestones reached by then, the disbursements paid by then and the communities' live grades.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import numpy as np

from ..domain import ledger as lg
from ..domain import milestones as ms
from ..domain.canonical import Deflated, array_length, array_pieces, canonical_bytes, split_at
from ..domain.timeutil import now_stored
from ..store import Outcome
from .clock import today
from .context import ServiceState
from .errors import Conflict, Forbidden, Invalid, NotFound
from .keys import Principal
from .ledger_board import LEDGER_COLUMNS, NOT_NEEDED, TOTAL_FIELDS, funding_stamps, paid_of, reached_dates, totals_of
from .ledger_board import board as ledger_board
from .milestone_board import board as milestone_board
from .rounds import covered_community, get_round
from .supervision import as_of_date, covered_communities

#: roles that pass the district check for any district (a district key passes for its own)
READERS = ("admin", "leadership")


def _covered(ctx: ServiceState, round_id: str, community_id: str, principal: Principal,
             roles: tuple[str, ...]) -> tuple[dict, dict]:
    """The round and the community the key may act for and the round covers."""
    round_ = get_round(ctx, round_id)
    return round_, covered_community(ctx, round_, community_id, principal, roles)


# -- funding records -------------------------------------------------------------------

def _funding_version_view(record: dict) -> dict:
    return {"version": record["version"], **{name: record.get(name) for name in lg.FUNDING_FIELDS},
            "key_id": record.get("key_id"), "recorded_at": record["recorded_at"]}


def _funding_view(versions: list[dict]) -> dict:
    current = versions[-1]
    return {"round_id": current["round_id"], "community_id": current["community_id"],
            **_funding_version_view(current), "history": [_funding_version_view(v) for v in versions]}


def _paid_tranches(ctx: ServiceState, round_id: str, community_id: str) -> dict[int, dict]:
    return {d["tranche"]: d for d in ctx.store.disbursements(round_id, community_id)}


def put_funding(ctx: ServiceState, round_id: str, community_id: str, data: dict[str, Any],
                principal: Principal) -> tuple[Outcome, dict]:
    """Record (replace) a community's funding: CREATED with the new version, or DUPLICATE for a replay
    of the current one. A district key may change only ``district_funds_in_place_fen`` (Forbidden
    naming the other fields it would change); fields made final by payments refuse to change
    (Conflict ``already_paid``)."""
    _covered(ctx, round_id, community_id, principal, ("admin",))
    record = {"round_id": round_id, "community_id": community_id,
              **{name: data.get(name) for name in lg.FUNDING_FIELDS},
              "key_id": principal.key_id, "recorded_at": now_stored()}
    record["content_hash"] = lg.funding_hash(record)

    def check(current: dict | None) -> None:
        changed = lg.changed_fields(current, record)
        if principal.role == "district":
            others = [name for name in changed if name not in lg.DISTRICT_FIELDS]
            if current is None:
                raise Forbidden(f"community {community_id!r} has no funding record yet: an admin records it "
                                f"first; a district key may then change only district_funds_in_place_fen")
            if others:
                raise Forbidden(f"a district key may change only district_funds_in_place_fen, not "
                                f"{', '.join(others)}")
        paid = _paid_tranches(ctx, round_id, community_id)
        final = [name for name in lg.final_fields(sorted(paid)) if name in changed]
        if final:
            last = paid[max(paid)]
            raise Conflict("already_paid", f"{', '.join(final)} can no longer change: tranche {last['tranche']} "
                                           f"was paid on {last['paid_on']} (disbursement {last['disbursement_id']})")

    outcome = ctx.store.put_funding(record, check)
    return outcome, _funding_view(ctx.store.funding_versions(round_id, community_id))


def get_funding(ctx: ServiceState, round_id: str, community_id: str, principal: Principal) -> dict:
    """The community's current funding record with every version (oldest first); 404 when none."""
    _covered(ctx, round_id, community_id, principal, READERS)
    versions = ctx.store.funding_versions(round_id, community_id)
    if not versions:
        raise NotFound("funding record", f"{round_id}/{community_id}")
    return _funding_view(versions)


# -- one community's ledger --------------------------------------------------------------

def _reached(records: dict[str, dict]) -> dict[str, date | None]:
    return {code: ms.effective_reach_date(record) for code, record in records.items()}


def _payments(disbursements: list[dict]) -> dict[int, lg.Payment]:
    return {d["tranche"]: lg.Payment(d["amount_fen"], date.fromisoformat(d["paid_on"]), d["disbursement_id"],
                                     d.get("voucher"))
            for d in disbursements}


def _grades(ctx: ServiceState, round_id: str) -> dict[str, str | None]:
    from .results import live_results  # results build on supervision, which this module reads

    results = live_results(ctx, round_id)
    return {cid: results.raw.grade[i] for i, cid in enumerate(results.inputs.ids)}


def _needs_grade(funding: lg.Funding | None, reached: dict[str, date | None], t: date) -> bool:
    """Only a reached tranche 3 on non-independent land asks for the grade (so a ledger or a payment
    that does not need it does not score the round)."""
    settled = reached.get("settled")
    return funding is not None and funding.land_category == "non_independent" and settled is not None \
        and settled <= t


def _not_due_message(state: lg.TrancheState, funding: lg.Funding | None, cumulative: int | None) -> str:
    """Why tranche ``state`` cannot be paid, in words naming the status and reasons."""
    k = state.tranche
    if funding is None:
        return f"tranche {k} is not due: the community has no funding record"
    if state.status == "not_applicable":
        return f"tranche {k} is not_applicable: independent land (独立操作区) receives no city subsidy"
    if state.status == "not_due":
        return f"tranche {k} is not_due: milestone {state.milestone} is not reached"
    words = []
    for reason in state.reasons:
        if reason == "district_match_missing":
            words.append(f"district_match_missing (the district's funds in place, "
                         f"{funding.district_funds_in_place_fen} fen, are below the cumulative city share "
                         f"{cumulative} fen)")
        elif reason == "acceptance_failed":
            words.append("acceptance_failed (the community's grade is fail or not yet given)")
    return f"tranche {k} is held: {'; '.join(words)}"


def record_disbursement(ctx: ServiceState, round_id: str, community_id: str, data: dict[str, Any],
                        principal: Principal) -> tuple[Outcome, dict]:
    """Record that a tranche was paid (a negative tranche 3: the refund received). CREATED, or DUPLICATE
    for an identical replay; Conflict ``conflict`` (same id, other content), ``tranche_not_due`` (not
    due, held or not applicable at today's date; the message names why), ``already_paid``; Invalid
    naming ``amount_fen`` with the computed amount, or ``paid_on``."""
    _covered(ctx, round_id, community_id, principal, ("admin",))
    k = data["tranche"]
    record = {"disbursement_id": str(data["disbursement_id"]), "round_id": round_id, "community_id": community_id,
              "tranche": k, "amount_fen": data["amount_fen"], "paid_on": data["paid_on"].isoformat(),
              "voucher": data.get("voucher"), "key_id": principal.key_id, "recorded_at": now_stored()}
    record["content_hash"] = lg.disbursement_hash(record)
    stored = ctx.store.get_disbursement(record["disbursement_id"])
    if stored is not None:
        if stored["content_hash"] != record["content_hash"]:
            raise Conflict("conflict", f"disbursement {record['disbursement_id']} exists with other content")
        return Outcome.DUPLICATE, disbursement_view(stored)

    day = today(ctx)
    if data["paid_on"] > day:
        raise Invalid.field("paid_on", f"must not be after today ({day.isoformat()}, China time)")
    paid = _paid_tranches(ctx, round_id, community_id)
    if k in paid:
        raise Conflict("already_paid", f"tranche {k} was already paid on {paid[k]['paid_on']} "
                                       f"(disbursement {paid[k]['disbursement_id']}, {paid[k]['amount_fen']} fen)")
    current = ctx.store.funding_versions(round_id, community_id)
    funding = lg.Funding.of(current[-1]) if current else None
    records = {r["code"]: r for r in ctx.store.milestone_versions(round_id, community_id)}  # last version wins
    reached = _reached(records)
    grade = _grades(ctx, round_id).get(community_id) if k == 3 and _needs_grade(funding, reached, day) else None
    ledger = lg.community_ledger(funding, reached, _payments(list(paid.values())), grade, day)
    state = ledger.tranche(k)
    if state.status != "due":
        cumulative = None
        if funding is not None and funding.land_category == "non_independent":
            s = lg.subsidy(funding.approved_budget_fen)
            s_final = (lg.final_subsidy(funding.approved_budget_fen, funding.settled_budget_fen)
                       if ledger.settled else s)
            cumulative = lg.cumulative_shares(s, s_final)[k - 1]
        raise Conflict("tranche_not_due", _not_due_message(state, funding, cumulative))
    if record["amount_fen"] != state.amount_fen:
        raise Invalid.field("amount_fen", f"must be {state.amount_fen} fen ({lg.yuan(state.amount_fen)} yuan), "
                                          f"the amount of tranche {k} computed today ({day.isoformat()})")
    reached_on = reached[state.milestone]
    if data["paid_on"] < reached_on:
        raise Invalid.field("paid_on", f"must not be before {state.milestone} was reached ({reached_on.isoformat()})")

    outcome = ctx.store.add_disbursement(record)
    if outcome is Outcome.CONFLICT:
        raise Conflict("conflict", f"disbursement {record['disbursement_id']} exists with other content")
    if outcome is Outcome.ALREADY_PAID:
        raise Conflict("already_paid", f"tranche {k} of {community_id} was paid by another disbursement")
    return outcome, disbursement_view(ctx.store.get_disbursement(record["disbursement_id"]))


def disbursement_view(record: dict) -> dict:
    return {name: record.get(name) for name in ("disbursement_id", "round_id", "community_id", "tranche",
                                                "amount_fen", "paid_on", "voucher", "key_id", "recorded_at")} | {
        "milestone": lg.BY_NUMBER[record["tranche"]].milestone}


# -- the round's ledger ------------------------------------------------------------------

def _tranche_row(state: lg.TrancheState) -> dict:
    row = {"tranche": state.tranche, "milestone": state.milestone, "amount_fen": state.amount_fen,
           "status": state.status, "reasons": list(state.reasons)}
    if state.payment is not None:
        row["paid_on"] = state.payment.paid_on.isoformat()
        row["disbursement_id"] = state.payment.disbursement_id
        row["voucher"] = state.payment.voucher
    return row


def _community_row(community_id: str, district_id: str, f: lg.Funding | None,
                   ledger: lg.CommunityLedger) -> dict:
    return {"community_id": community_id, "district_id": district_id,
            **{name: getattr(f, name) if f else None for name in lg.FUNDING_FIELDS},
            "subsidy_fen": ledger.subsidy_fen,
            "tranches": [_tranche_row(s) for s in ledger.tranches]}


def _prepare(ctx: ServiceState, round_id: str, principal: Principal | None, as_of: date | None,
             district_id: str | None) -> tuple[dict, list[Deflated]]:
    """The ledger's head (everything but the community rows) and the rows asked for as canonical JSON,
    from the kept rows brought up to date: a row is shaped again only when its community's funding,
    payments, milestones or (for a reached tranche 3) grade changed since."""
    round_ = get_round(ctx, round_id)
    if principal is not None and principal.role == "district":
        if district_id not in (None, principal.district_id):
            raise Forbidden("a district key reads its own district's ledger only")
        district_id = principal.district_id
    from .results import round_reference, round_scores  # results build on supervision, which this module reads

    t = as_of_date(ctx, round_, as_of)
    reference_token = ctx.store.generation("reference")
    reference = round_reference(ctx, round_, reference_token)
    milestones = milestone_board(ctx, round_id)
    with milestones.lock:
        milestones.sync(ctx.store, reference_token, reference.communities)
        layout = milestones.layout
        reach = layout.reach[:, LEDGER_COLUMNS]  # a copy
        milestone_stamp = layout.stamp.copy()
    ids, district_of = layout.ids, layout.district_ids
    if district_id is not None:
        selected = [i for i, d in enumerate(district_of) if d == district_id]
    else:
        selected = list(range(len(ids)))
    grades: dict[str, str | None] | None = None

    def grade_of(community_id: str) -> str | None:
        nonlocal grades
        if grades is None:  # a ledger without a reached tranche 3 does not score the round
            grades = round_scores(ctx, round_).grade_of()
        return grades.get(community_id)

    ledgers = ledger_board(ctx, round_id)
    with ledgers.lock:
        ledgers.sync(ctx.store)
        kept = ledgers.kept(t, layout, len(ids))
        funding_stamp = funding_stamps(ledgers, ids)
        stale = (kept.funding_stamp != funding_stamp) | (kept.milestone_stamp != milestone_stamp)
        for i in np.flatnonzero(~stale).tolist():  # rows whose ledger read a grade: has it changed?
            if kept.grade[i] is not NOT_NEEDED and kept.grade[i] != grade_of(ids[i]):
                stale[i] = True
        for i in np.flatnonzero(stale).tolist():
            cid = ids[i]
            current = ledgers.funding.get(cid)
            f = current[1] if current is not None else None
            reached = reached_dates(reach[i].tolist())
            grade = grade_of(cid) if _needs_grade(f, reached, t) else NOT_NEEDED
            ledger = lg.community_ledger(f, reached, paid_of(ledgers.payments.get(cid)),
                                         None if grade is NOT_NEEDED else grade, t)
            row = canonical_bytes(_community_row(cid, district_of[i], f, ledger))
            kept.zdict = kept.zdict or row  # the dictionary of the rows kept (the first one made)
            kept.json[i] = Deflated(row, kept.zdict)
            kept.totals[i] = totals_of(ledger)
            kept.grade[i] = grade
            kept.funding_stamp[i], kept.milestone_stamp[i] = funding_stamp[i], milestone_stamp[i]
        totals = kept.totals.copy()
        rows = [kept.json[i] for i in selected]  # under the lock: the rows of these totals

    committed = int(totals[:, TOTAL_FIELDS.index("subsidy_fen")].sum())
    money = lg.round_money(round_)
    uncommitted = lg.uncommitted(money, committed)
    district_ids = sorted(set(round_.get("quotas", {})) | set(district_of))
    if district_id is not None:
        district_ids = [d for d in district_ids if d == district_id]
    position = {d: k for k, d in enumerate(district_ids)}
    member = np.array([position.get(d, -1) for d in district_of], dtype=np.int64)
    inside = member >= 0
    by_district = np.zeros((len(district_ids), len(TOTAL_FIELDS)), dtype=np.int64)
    np.add.at(by_district, member[inside], totals[inside])

    def sums(values: np.ndarray) -> dict[str, int]:
        return dict(zip(TOTAL_FIELDS, (int(v) for v in values)))

    head = {
        "round_id": round_id,
        "as_of": t.isoformat(),
        "city_budget_fen": money.city_budget_fen,
        "reward_pool_fen": money.reward_pool_fen,
        "committed_subsidy_fen": committed,
        "uncommitted_fen": uncommitted,
        "over_committed": uncommitted is not None and uncommitted < 0,
        "totals": sums(by_district.sum(axis=0)),
        "districts": [{"district_id": d, "name_zh": reference.district_names.get(d), **sums(by_district[k])}
                      for k, d in enumerate(district_ids)],
    }
    return head, rows


def ledger_report(ctx: ServiceState, round_id: str, principal: Principal | None, as_of: date | None = None,
                  district_id: str | None = None) -> dict:
    """The ledger of SPEC §12 ``GET /rounds/{r}/ledger`` at the as-of date; a district key reads its own
    district only. ``committed_subsidy_fen``, ``uncommitted_fen`` and ``over_committed`` concern the
    city's budget and so cover the whole round; ``totals``, ``districts`` and ``communities`` cover the
    district asked for (or all)."""
    head, rows = _prepare(ctx, round_id, principal, as_of, district_id)
    return {**head, "communities": [json.loads(b"".join(row.pieces())) for row in rows]}


def ledger_json(ctx: ServiceState, round_id: str, principal: Principal | None, as_of: date | None = None,
                district_id: str | None = None) -> bytes:
    """:func:`ledger_report` as canonical JSON, the same bytes, from the kept rows."""
    before, after, rows = _kept_rows(ctx, round_id, principal, as_of, district_id)
    return b"".join(array_pieces(before, after, rows, ROWS_PER_PART))


#: community rows joined to a piece of :func:`ledger_stream`
ROWS_PER_PART = 1000


def ledger_stream(ctx: ServiceState, round_id: str, principal: Principal | None, as_of: date | None = None,
                  district_id: str | None = None) -> tuple[int, Iterator[bytes]]:
    """:func:`ledger_json` in pieces made as they are sent (the rows :data:`ROWS_PER_PART` to a piece), with
    their total length: a national ledger (some 10 MB) is not joined into one more copy of its kept rows.
    The ledger is computed (and refused) here, before the first piece."""
    before, after, rows = _kept_rows(ctx, round_id, principal, as_of, district_id)
    return array_length(before, after, rows), array_pieces(before, after, rows, ROWS_PER_PART)


def _kept_rows(ctx: ServiceState, round_id: str, principal: Principal | None, as_of: date | None,
               district_id: str | None) -> tuple[bytes, bytes, list[Deflated]]:
    """The ledger's JSON before and after its community rows, and the rows (the kept ones, not copied)."""
    head, rows = _prepare(ctx, round_id, principal, as_of, district_id)
    return (*split_at(head, "communities"), rows)


def ledger_names(ctx: ServiceState, report: dict) -> dict[str, str | None]:
    """Community id → Chinese name, for the spreadsheets of a ledger."""
    wanted = {c["community_id"] for c in report["communities"]}
    round_ = get_round(ctx, report["round_id"])
    return {c["community_id"]: c.get("name_zh") for c in covered_communities(ctx, round_)
            if c["community_id"] in wanted}
