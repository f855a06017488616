"""The ledger follows what changed (issue 14 performance, SPEC §12 unchanged), on both stores: after a
funding write it reads that community's new funding version only (no disbursement, milestone, survey
or community data); writes from another app instance on the same store are seen; the kept JSON rows
are the ledger computed afresh from the store's current records."""

from __future__ import annotations

import json
from datetime import date

import pytest

from scoring_service.domain import ledger as lg
from scoring_service.domain import milestones as ms
from scoring_service.domain.canonical import canonical_bytes
from scoring_service.services.ledger import ledger_json, ledger_report
from scoring_service.services.supervision import as_of_date, covered_communities

from . import test_supervision_follow as follow
from .conftest import make_app
from .test_ledger import ALL_REACHED, R, TODAY, fund, funded, grade_good, ledger, pay, reach, row  # noqa: F401

COUNTED = (*follow.TABLES, "funding_versions", "disbursements")


def afresh(ctx, round_id: str, as_of: date | None = None, district_id: str | None = None) -> dict:
    """The ledger as it was computed before it followed changes: every current funding record,
    disbursement and milestone record of the round read from the store, every row shaped again."""
    from scoring_service.services.results import live_results

    round_ = ctx.store.get_round(round_id)
    t = as_of_date(ctx, round_, as_of)
    communities = covered_communities(ctx, round_)
    funding = {r["community_id"]: lg.Funding.of(r) for r in ctx.store.current_funding(round_id)}
    payments: dict[str, dict[int, lg.Payment]] = {}
    for d in ctx.store.disbursements(round_id):
        payments.setdefault(d["community_id"], {})[d["tranche"]] = lg.Payment(
            d["amount_fen"], date.fromisoformat(d["paid_on"]), d["disbursement_id"], d.get("voucher"))
    reached: dict[str, dict[str, date | None]] = {}
    for record in ctx.store.current_milestones(round_id):
        reached.setdefault(record["community_id"], {})[record["code"]] = ms.effective_reach_date(record)
    results = live_results(ctx, round_id)
    grades = dict(zip(results.inputs.ids, results.raw.grade))
    rows, committed = [], 0
    for c in communities:
        cid, f = c["community_id"], funding.get(c["community_id"])
        ledger_ = lg.community_ledger(f, reached.get(cid, {}), payments.get(cid, {}), grades.get(cid), t)
        committed += ledger_.subsidy_fen or 0
        rows.append((c, ledger_, {
            "community_id": cid, "district_id": c["district_id"],
            **{name: getattr(f, name) if f else None for name in lg.FUNDING_FIELDS},
            "subsidy_fen": ledger_.subsidy_fen,
            "tranches": [{"tranche": s.tranche, "milestone": s.milestone, "amount_fen": s.amount_fen,
                          "status": s.status, "reasons": list(s.reasons),
                          **({"paid_on": s.payment.paid_on.isoformat(), "disbursement_id": s.payment.disbursement_id,
                              "voucher": s.payment.voucher} if s.payment else {})}
                         for s in ledger_.tranches]}))
    money = lg.round_money(round_)
    uncommitted = lg.uncommitted(money, committed)
    names = {d["district_id"]: d.get("name_zh") for d in ctx.store.list_districts()}
    district_ids = sorted(set(round_.get("quotas", {})) | {c["district_id"] for c in communities})
    if district_id is not None:
        district_ids = [d for d in district_ids if d == district_id]
        rows = [r for r in rows if r[0]["district_id"] == district_id]
    by_district = {d: lg.Totals() for d in district_ids}
    totals = lg.Totals()
    for c, ledger_, _ in rows:
        by_district[c["district_id"]].add(ledger_)
        totals.add(ledger_)
    return {"round_id": round_id, "as_of": t.isoformat(), "city_budget_fen": money.city_budget_fen,
            "reward_pool_fen": money.reward_pool_fen, "committed_subsidy_fen": committed,
            "uncommitted_fen": uncommitted, "over_committed": uncommitted is not None and uncommitted < 0,
            "totals": totals.as_dict(),
            "districts": [{"district_id": d, "name_zh": names.get(d), **by_district[d].as_dict()}
                          for d in district_ids],
            "communities": [r[2] for r in rows]}


def test_one_funding_write_reads_that_communitys_funding_only(app, client, funded, monkeypatch):
    monkeypatch.setattr(follow, "TABLES", COUNTED)
    for community in ("heping-001", "heping-002", "shenhe-001"):
        fund(client, funded, community, district_funds_in_place_fen=1_000_000)
    reach(client, funded, "heping-001", *ALL_REACHED)
    pay(client, funded, 1, 150_000, paid_on="2018-05-01")
    before = ledger(client, funded)
    assert row(before, "heping-002")["district_funds_in_place_fen"] == 1_000_000

    fund(client, funded, "heping-002", district_funds_in_place_fen=250_000)  # tranche 2 not covered any more
    with follow.counting(app) as reads:
        after = ledger(client, funded)
    funding_rows = reads.rows["funding_versions"]
    assert len(funding_rows) == 1, funding_rows  # the new version only, not the round's three records
    assert "heping-002" in json.dumps(funding_rows[0], ensure_ascii=False)
    assert reads.count("disbursements") == 0 and reads.count("milestone_versions") == 0
    assert reads.count("survey_stats") + reads.count("responses") + reads.count("inspection") == 0
    assert reads.count("communities") == 0  # reference data cached
    assert row(after, "heping-002")["district_funds_in_place_fen"] == 250_000
    assert {k: v for k, v in after.items() if k != "communities"} == \
        {k: v for k, v in before.items() if k != "communities"}  # no tranche of heping-002 reached yet
    assert [c for c in after["communities"] if c["community_id"] != "heping-002"] == \
        [c for c in before["communities"] if c["community_id"] != "heping-002"]

    # a payment: that disbursement only
    with follow.counting(app) as reads:
        pay(client, funded, 2, 250_000, paid_on="2018-09-01")
    with follow.counting(app) as reads:
        paid = ledger(client, funded)
    assert len(reads.rows["disbursements"]) == 1 and reads.count("funding_versions") == 0
    assert row(paid)["tranches"][1]["status"] == "paid"


def test_writes_by_another_instance_are_seen(app, client, funded, database_url, tmp_path):
    """Two app instances on one store (as two gunicorn workers or servers): the first has read the
    round's funding; funding and a payment recorded through the second are in the first's next ledger."""
    fund(client, funded, "heping-001", district_funds_in_place_fen=0)
    reach(client, funded, "heping-001", ("contract_signed", "2018-04-20"))
    first = ledger(client, funded)
    assert [t["status"] for t in row(first)["tranches"]] == ["held", "not_due", "not_due"]
    other = make_app(database_url, tmp_path / "other-instance", TODAY=TODAY)
    try:
        other_client = other.test_client()
        fund(other_client, funded, "heping-001", district_funds_in_place_fen=1_000_000)
        pay(other_client, funded, 1, 150_000, paid_on="2018-05-01")
        fund(other_client, funded, "shenhe-001", approved_budget_fen=333)
    finally:
        other.extensions["scoring"].store.close()
    second = ledger(client, funded)
    assert [t["status"] for t in row(second)["tranches"]] == ["paid", "not_due", "not_due"]
    assert row(second)["district_funds_in_place_fen"] == 1_000_000
    assert row(second, "shenhe-001")["subsidy_fen"] == 166
    assert second["totals"]["paid_fen"] == 150_000


def test_kept_json_rows_are_the_ledger_afresh(app, client, funded):
    """The JSON answer (rows kept as JSON until their community changes) is byte for byte the canonical
    JSON of the ledger computed afresh from the store, through funding writes, milestones, payments, a
    withdrawn milestone, a grade that lifts a hold without a funding or milestone write, other as-of
    dates and a district's ledger."""
    from scoring_service.extensions import state

    lead = funded.header("leadership")

    def same(**query):
        q = "&".join(f"{k}={v}" for k, v in query.items())
        served = client.get(f"{R}/ledger?{q}", headers=lead)
        assert served.status_code == 200
        with app.app_context():
            as_of = date.fromisoformat(query["as_of"]) if "as_of" in query else None
            fresh = afresh(state(), "f2018", as_of, query.get("district_id"))
            assert ledger_json(state(), "f2018", None, as_of, query.get("district_id")) == served.data
            assert canonical_bytes(ledger_report(state(), "f2018", None, as_of, query.get("district_id"))) \
                == served.data
        assert served.data == canonical_bytes(fresh)
        return fresh

    same()
    fund(client, funded, "heping-001", approved_budget_fen=1_000_001, district_funds_in_place_fen=1_000_001)
    fund(client, funded, "shenhe-001", approved_budget_fen=333, district_funds_in_place_fen=100)
    same()
    same(as_of="2018-06-01", district_id="heping")
    for code, day in ALL_REACHED:
        reach(client, funded, "heping-001", (code, day))
        same()
        same(as_of="2018-09-01")
    body = same()
    assert row(body)["tranches"][2]["reasons"] == ["acceptance_failed"]  # settled, not graded
    pay(client, funded, 1, 150_000, paid_on="2018-05-01")
    pay(client, funded, 2, 250_000, paid_on="2018-09-01")
    same(as_of="2018-09-01")
    fund(client, funded, "heping-001", approved_budget_fen=1_000_001, district_funds_in_place_fen=1_000_001,
         settled_budget_fen=800_001)
    body = same()
    assert row(body)["tranches"][2]["amount_fen"] == 0  # S_final 400,000 = what was paid
    grade_good(client, funded)  # the grade changes, no funding or milestone write
    body = same()
    assert row(body)["tranches"][2]["reasons"] == []
    reach(client, funded, "shenhe-001", ("contract_signed", "2018-05-01"))
    r = client.delete(f"{R}/communities/heping-001/milestones/settled", json={"changed_reason": "结算有误"},
                      headers=funded.header("admin"))
    assert r.status_code == 200, r.get_json()
    body = same()
    assert row(body)["tranches"][2]["status"] == "not_due"
    assert [t["status"] for t in row(body, "shenhe-001")["tranches"]] == ["due", "not_due", "not_due"]  # 100 ≥ 49
    same(as_of="2018-06-01")
    same(district_id="shenhe")


@pytest.mark.parametrize("rows_per_part", [1, 2])
def test_rows_joined_a_few_at_a_time_are_the_ledger(app, client, funded, monkeypatch, rows_per_part):
    """Memory at national size (issue 18 item 4): the JSON answer is sent in pieces of a few kept rows,
    made as they are sent, with no joined copy of every row; the pieces, commas between rows included,
    are the ledger's canonical JSON and the stated Content-Length is their length, for every district and
    for one, before and after a funding write."""
    from scoring_service.extensions import state
    from scoring_service.services import ledger as service

    monkeypatch.setattr(service, "ROWS_PER_PART", rows_per_part)
    lead = funded.header("leadership")
    for write in (False, True):
        if write:
            fund(client, funded, "heping-001", approved_budget_fen=1_000_001, district_funds_in_place_fen=7)
        for district in (None, "heping"):
            query = {"as_of": "2018-06-01", **({"district_id": district} if district else {})}
            served = client.get(f"{R}/ledger", query_string=query, headers=lead)
            assert served.status_code == 200 and served.mimetype == "application/json"
            assert served.is_streamed and int(served.headers["Content-Length"]) == len(served.data)
            with app.app_context():
                whole = ledger_json(state(), "f2018", None, date(2018, 6, 1), district)
                length, stream = service.ledger_stream(state(), "f2018", None, date(2018, 6, 1), district)
                pieces = list(stream)
                fresh = afresh(state(), "f2018", date(2018, 6, 1), district)
            assert served.data == b"".join(pieces) == whole == canonical_bytes(fresh) and length == len(whole)
            rows = len(fresh["communities"])
            assert len(pieces) == 2 + -(-rows // rows_per_part) and (district or rows > 2)  # split, at least once
            assert row(json.loads(served.data))["approved_budget_fen"] == (1_000_001 if write else None)


def test_kept_rows_are_deflated_and_inflate_to_the_served_rows(app, client, funded):
    """Memory at national size (issue 18 item 4): the board keeps each row deflated against the first row
    made (one dictionary for all), fewer bytes than the row; inflated, the kept rows are the served rows,
    in order."""
    from scoring_service.domain.canonical import Deflated
    from scoring_service.extensions import state

    fund(client, funded, "heping-001", approved_budget_fen=1_000_001, district_funds_in_place_fen=7)
    served = client.get(f"{R}/ledger?as_of=2018-06-01", headers=funded.header("leadership"))
    assert served.status_code == 200
    rows = [canonical_bytes(r) for r in json.loads(served.data)["communities"]]
    with app.app_context():
        boards = state().ledger_boards
        kept = [k for board in boards._values.values() for k in board._kept.values()]
    assert len(kept) == 1 and all(isinstance(r, Deflated) and r.zdict is kept[0].zdict for r in kept[0].json)
    assert [b"".join(r.pieces()) for r in kept[0].json] == rows and len(rows) >= 3
    assert [r.length for r in kept[0].json] == list(map(len, rows))
    assert all(len(r.deflated) < r.length for r in kept[0].json[1:])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_first_read_goes_in_chunks(app, client, funded, monkeypatch):
    """A board's first read holds a chunk of versions at a time and still sees every record."""
    from scoring_service.services.ledger_board import LedgerBoard

    monkeypatch.setattr(LedgerBoard, "CHUNK", 2)
    for community in ("heping-001", "heping-002", "shenhe-001"):
        fund(client, funded, community, district_funds_in_place_fen=1_000_000)
    fund(client, funded, "heping-002", district_funds_in_place_fen=5)
    reach(client, funded, "heping-001", ("contract_signed", "2018-04-20"))
    pay(client, funded, 1, 150_000, paid_on="2018-05-01")
    body = ledger(client, funded)
    assert [c["district_funds_in_place_fen"] for c in body["communities"] if c["community_id"] != "shenhe-099"] \
        == [1_000_000, 5, 1_000_000]
    assert row(body)["tranches"][0]["status"] == "paid"
