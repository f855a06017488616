"""Scores, rankings, rewards, publishing and exports through the API, on a worked example."""

from __future__ import annotations

import csv
import hashlib
import io

import pytest
from openpyxl import load_workbook

from .conftest import full_checks, inspection, survey

R = "/api/v1/rounds/r2018"


def post(client, headers, path, body, expect=201):
    r = client.post(path, json=body, headers=headers)
    assert r.status_code == expect, r.get_json()
    return r.get_json()


@pytest.fixture
def scored(client, keys, world):
    """The worked example (values derived in the test docstrings below)."""
    c = world["communities"]
    a, b, admin = keys.header("agency_a"), keys.header("agency_b"), keys.header("admin")
    k1, k2 = keys.header("kiosk_1"), keys.header("kiosk_2")

    # heping-001: agency A, an old all-zero inspection superseded by a later one
    zeros = full_checks(c["heping-001"], lambda ch: ch["max_points"] if ch.get("critical") else 0)
    post(client, a, f"{R}/inspections", inspection(c["heping-001"], zeros, inspected_at="2018-09-05T09:00:00+08:00"))
    post(client, a, f"{R}/inspections", inspection(c["heping-001"], {**full_checks(c["heping-001"]), "roads.surface": 3}))
    # agency B: drainage 0 at first, amended to drainage 6 + supply 2
    first_b = inspection(c["heping-001"], {**full_checks(c["heping-001"]), "water.drainage": 0})
    post(client, b, f"{R}/inspections", first_b)
    amended = {**first_b, "checks": {**first_b["checks"], "water.drainage": 6, "water.supply_pipes": 2},
               "amend_reason": "复核排水"}
    assert client.put(f"{R}/inspections/{first_b['inspection_id']}", json=amended, headers=b).status_code == 200
    # residents: 15 (= 10 % of 150) answer roads 4; overall 12 × 5 and 3 × 2
    responses = [survey("heping-001", answers={"roads": 4}, overall=5 if i < 12 else 2) for i in range(15)]
    fraud = survey("heping-001", answers={"roads": 1}, overall=1)
    body = post(client, k1, f"{R}/surveys/batch", {"responses": responses + [fraud]}, expect=200)
    assert body["created"] == 16
    post(client, admin, f"{R}/surveys/{fraud['response_id']}/void", {"reason": "重复"}, expect=200)
    post(client, k1, f"{R}/surveys", survey("heping-001", respondent_type="public", channel="online",
                                            answers={"roads": 5}, overall=None))

    # heping-002: illegal structures not removed → veto; 10 residents all 5
    post(client, a, f"{R}/inspections", inspection(c["heping-002"], full_checks(
        c["heping-002"], lambda ch: 0 if ch["code"] == "illegal_structures.removed" else ch["max_points"])))
    post(client, k2, f"{R}/surveys/batch", {"responses": [
        survey("heping-002", answers={code: 5 for code in ("roads", "water")}, overall=5) for _ in range(10)]},
        expect=200)

    # shenhe-001: full marks, 5 residents of the 100 required
    post(client, a, f"{R}/inspections", inspection(c["shenhe-001"]))
    post(client, admin, f"{R}/surveys/batch", {"responses": [
        survey("shenhe-001", answers={"roads": 5}, overall=5) for _ in range(5)]}, expect=200)
    return keys



# heping-001 (all 11 items apply, Σw = 100):
#   roads: A = 100·(3+4+4)/14 = 78.571…, B = 100 → 89.2857…; water: A = 100, B(amended) = 100·8/10 = 80 → 90
ROADS_1 = (100 * 11 / 14 + 100) / 2
P_1 = (10 * ROADS_1 + 10 * 90 + 80 * 100) / 100
COMPOSITE_1 = 0.5 * P_1 + 0.4 * 80 + 0.1 * 100  # R = 80 (roads only), U = 100
# heping-002 (9 items, Σw = 81): illegal structures 100·4/10 = 40, the rest 100; R = 100
P_2 = (72 * 100 + 9 * 40) / 81
COMPOSITE_2 = (0.5 * P_2 + 0.4 * 100) / 0.9
# shenhe-001: everything 100
COMPOSITE_3 = 100.0
Q_HEPING = (150 * COMPOSITE_1 + 80 * COMPOSITE_2) / 230


def test_score_breakdown_worked_example(client, scored):
    r = client.get(f"{R}/communities/heping-001/score", headers=scored.header("leadership"))
    assert r.status_code == 200
    s = r.get_json()
    assert s["professional"]["items"]["roads"] == round(ROADS_1, 2) == 89.29
    assert s["professional"]["items"]["water"] == 90.0
    assert s["professional"]["score"] == round(P_1, 2)
    assert s["professional"]["agencies"] == ["agency-a", "agency-b"]
    assert s["resident"]["score"] == 80.0 and s["resident"]["items"]["roads"] == 80.0
    assert s["resident"]["items"]["water"] is None
    assert s["resident"]["responses"] == 15 and s["resident"]["required_responses"] == 15
    assert s["resident"]["satisfaction_rate"] == 0.8  # exactly the acceptance rate: no flag
    lo, hi = s["resident"]["satisfaction_ci95"]
    assert lo < 0.8 < hi
    assert s["public"] == {"score": 100.0, "items": s["public"]["items"], "responses": 1}
    assert s["composite"] == round(COMPOSITE_1, 2) == 90.96
    assert (s["grade"], s["grade_zh"], s["flags"]) == ("excellent", "优秀", [])
    assert (s["rank"], s["rank_in_district"]) == (3, 2)


def test_flags_vetoes_and_caps(client, scored):
    lead = scored.header("leadership")
    s2 = client.get(f"{R}/communities/heping-002/score", headers=lead).get_json()
    assert s2["composite"] == round(COMPOSITE_2, 2) == 96.3
    assert s2["flags"] == ["veto:illegal_structures.removed"] and s2["grade"] == "fail"
    assert "elevator" not in s2["professional"]["items"]  # not applicable
    s3 = client.get(f"{R}/communities/shenhe-001/score", headers=lead).get_json()
    assert s3["composite"] == 100.0 and s3["flags"] == ["insufficient_sample"] and s3["grade"] == "pass"
    assert s3["resident"]["required_responses"] == 100
    r = client.get(f"{R}/communities/shenhe-099/score", headers=lead)
    assert r.status_code == 404  # another year's community is not in this round


def test_rankings_and_rewards(client, scored):
    lead = scored.header("leadership")
    ranking = client.get(f"{R}/rankings/communities", headers=lead).get_json()
    assert ranking["published"] is False
    assert [(r["community_id"], r["rank"], r["rank_in_district"]) for r in ranking["communities"]] == [
        ("shenhe-001", 1, 1), ("heping-002", 2, 1), ("heping-001", 3, 2)]
    heping = client.get(f"{R}/rankings/communities?district_id=heping", headers=lead).get_json()
    assert [r["community_id"] for r in heping["communities"]] == ["heping-002", "heping-001"]

    districts = client.get(f"{R}/rankings/districts", headers=lead).get_json()["districts"]
    assert [d["district_id"] for d in districts] == ["heping", "shenhe"]
    h, s = districts
    assert h["quality"] == round(Q_HEPING, 2) and h["progress"] == 100.0
    assert h["index"] == round(0.7 * Q_HEPING + 30, 2)
    assert (s["quality"], s["progress"], s["index"]) == (100.0, 50.0, 85.0)
    assert h["grade_counts"] == {"excellent": 1, "good": 0, "pass": 0, "fail": 1}
    assert h["share_good_or_better"] == 0.5 and s["share_good_or_better"] == 0.0
    assert (h["quota"], h["graded"], h["name_zh"]) == (2, 2, "和平区")

    rewards = client.get(f"{R}/rewards", headers=lead).get_json()
    assert (rewards["pool_fen"], rewards["district_pool_fen"], rewards["community_pool_fen"]) == (
        1_000_000, 400_000, 600_000)
    assert [(d["district_id"], d["amount_fen"]) for d in rewards["districts"]] == [("heping", 400_000)]
    # only heping-001 is good or better without a veto
    assert [(c["community_id"], c["amount_fen"]) for c in rewards["communities"]] == [("heping-001", 600_000)]
    assert rewards["unallocated_fen"] == 0


def test_only_acceptance_inspections_are_scored(client, scored, world):
    """SPEC §13: construction inspections feed supervision (§11), never the scores of an acceptance round."""
    lead, b = scored.header("leadership"), scored.header("agency_b")
    c3 = world["communities"]["shenhe-001"]

    def state():
        score = client.get(f"{R}/communities/shenhe-001/score", headers=lead).get_json()
        ranking = client.get(f"{R}/rankings/districts", headers=lead).get_json()["districts"]
        return score, ranking

    before = state()
    assert before[0]["professional"]["score"] == 100.0 and before[0]["professional"]["agencies"] == ["agency-a"]
    failing = full_checks(c3, lambda check: 0)  # the critical illegal_structures.removed check included
    construction = inspection(c3, failing, stage="construction", inspected_at="2018-09-20T09:00:00+08:00")
    assert post(client, b, f"{R}/inspections", construction)["stage"] == "construction"
    assert state() == before
    # an amendment that does not name the stage keeps the current one
    r = client.put(f"{R}/inspections/{construction['inspection_id']}", headers=b,
                   json={**{k: v for k, v in construction.items() if k != "stage"}, "inspector": "李工",
                         "amend_reason": "补记检查人"})
    assert r.status_code == 200 and r.get_json()["stage"] == "construction" and r.get_json()["version"] == 2
    assert state() == before
    # the same checklist as an acceptance inspection (no stage: the default) is scored: veto, P = (100 + 0) / 2
    post(client, b, f"{R}/inspections", inspection(c3, failing, inspected_at="2018-09-20T09:00:00+08:00"))
    after, ranking = state()
    assert after["professional"]["agencies"] == ["agency-a", "agency-b"] and after["professional"]["score"] == 50.0
    assert "veto:illegal_structures.removed" in after["flags"] and after["grade"] == "fail"
    assert ranking != before[1]


def test_live_results_follow_new_responses_and_voids(client, scored, world):
    lead, admin = scored.header("leadership"), scored.header("admin")
    before = client.get(f"{R}/communities/heping-002/score", headers=lead).get_json()
    assert before["resident"]["responses"] == 10
    one = survey("heping-002", answers={"roads": 1}, overall=1)
    client.post(f"{R}/surveys", json=one, headers=scored.header("kiosk_2"))
    after = client.get(f"{R}/communities/heping-002/score", headers=lead).get_json()
    assert after["resident"]["responses"] == 11 and after["resident"]["score"] < before["resident"]["score"]
    client.post(f"{R}/surveys/{one['response_id']}/void", json={"reason": "测试"}, headers=admin)
    again = client.get(f"{R}/communities/heping-002/score", headers=lead).get_json()
    assert again == before


def test_publish_freezes_results_byte_for_byte(client, scored, world):
    lead, admin = scored.header("leadership"), scored.header("admin")
    live = {p: client.get(f"{R}/{p}", headers=lead).get_json()
            for p in ("rankings/communities", "rankings/districts", "rewards")}
    r = client.post(f"{R}/publish", headers=admin)
    assert r.status_code == 200 and r.get_json()["status"] == "published"
    sha = r.get_json()["snapshot_sha256"]

    snapshot = client.get(f"{R}/snapshot")  # public
    assert snapshot.status_code == 200
    assert hashlib.sha256(snapshot.data).hexdigest() == sha == snapshot.headers["X-Snapshot-SHA256"]

    first = {p: client.get(f"{R}/{p}").data for p in ("rankings/communities", "rankings/districts", "rewards")}
    districts = client.get(f"{R}/rankings/districts").get_json()
    assert districts["published"] is True and districts["snapshot_sha256"] == sha
    assert districts["districts"] == live["rankings/districts"]["districts"]
    assert client.get(f"{R}/rewards").get_json()["communities"] == live["rewards"]["communities"]

    # writes are refused from now on
    k1 = scored.header("kiosk_1")
    r = client.post(f"{R}/surveys", json=survey(), headers=k1)
    assert r.status_code == 409 and r.get_json()["error"] == "round_published"
    c = world["communities"]["shenhe-001"]
    r = client.post(f"{R}/inspections", json=inspection(c), headers=scored.header("agency_a"))
    assert r.status_code == 409 and r.get_json()["error"] == "round_published"
    ranking = client.get(f"{R}/rankings/communities").get_json()["communities"]
    any_id = ranking[0]["community_id"]
    r = client.post(f"{R}/close", headers=admin)
    assert r.status_code == 409 and r.get_json()["error"] == "round_published"
    assert client.post(f"{R}/publish", headers=admin).get_json()["snapshot_sha256"] == sha  # idempotent

    # a community edited after publication changes nothing published
    client.put("/api/v1/communities/shenhe-001", json={**c, "households": 5}, headers=admin)
    assert {p: client.get(f"{R}/{p}").data for p in first} == first
    assert client.get(f"{R}/communities/{any_id}/score").status_code == 401  # breakdown stays for leadership
    assert client.get(f"{R}/communities/{any_id}/score", headers=lead).status_code == 200


def test_unpublished_results_are_not_public(client, scored):
    assert client.get(f"{R}/rankings/districts").status_code == 401
    assert client.get(f"{R}/rewards", headers=scored.header("kiosk_1")).status_code == 403
    assert client.get(f"{R}/snapshot").status_code == 404


def test_csv_exports_have_bom_and_chinese_headers(client, scored):
    lead = scored.header("leadership")
    r = client.get(f"{R}/rankings/communities?format=csv", headers=lead)
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert r.data.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(r.data.decode("utf-8-sig"))))
    assert rows[0][:4] == ["排名", "区内排名", "小区编号", "小区名称"]
    assert rows[1][2] == "shenhe-001" and rows[1][6] == "合格" and rows[1][7] == "样本量不足"
    assert "一票否决：私搭乱建已全部拆除" in rows[2][7]
    r = client.get(f"{R}/rewards?format=csv", headers=lead)
    rewards = list(csv.reader(io.StringIO(r.data.decode("utf-8-sig"))))
    assert rewards[1] == ["区", "heping", "和平区", "400000", "4000.00"]
    assert r.headers["Content-Disposition"].encode("latin-1")  # gunicorn accepts only Latin-1 headers
    assert 'filename="r2018-rewards.csv"' in r.headers["Content-Disposition"]
    assert "filename*=UTF-8''r2018-%E5%A5%96" in r.headers["Content-Disposition"]


def test_xlsx_export_opens_with_chinese_headers(client, scored):
    r = client.get(f"{R}/rankings/districts?format=xlsx", headers=scored.header("leadership"))
    assert r.status_code == 200
    sheet = load_workbook(io.BytesIO(r.data)).active
    assert [c.value for c in sheet[1]][:4] == ["排名", "区编号", "区名称", "综合指数"]
    assert sheet["B2"].value == "heping" and sheet["C2"].value == "和平区"
    assert sheet["D2"].value == round(0.7 * Q_HEPING + 30, 2)
    r = client.get(f"{R}/rankings/districts?format=pdf", headers=scored.header("leadership"))
    assert r.status_code == 422 and "format" in r.get_json()["errors"]


def test_reference_data_edits_reach_live_results(client, scored, world):
    """Cached reference arrays are invalidated by a community edit (households → sample rule)."""
    lead, admin = scored.header("leadership"), scored.header("admin")
    before = client.get(f"{R}/communities/heping-001/score", headers=lead).get_json()
    assert before["resident"]["required_responses"] == 15 and before["grade"] == "excellent"
    body = {**world["communities"]["heping-001"], "households": 200}
    assert client.put("/api/v1/communities/heping-001", json=body, headers=admin).status_code == 200
    after = client.get(f"{R}/communities/heping-001/score", headers=lead).get_json()
    assert after["resident"]["required_responses"] == 20
    assert after["flags"] == ["insufficient_sample"] and after["grade"] == "pass"
    # and an amended inspection reaches them too (cached inspection arrays)
    c2 = world["communities"]["heping-002"]
    iid = client.get("/api/v1/audit?limit=5000", headers=admin).get_json()["items"]
    inspection_ids = [e["entity_id"] for e in iid if e["entity_type"] == "inspection" and e["path"].endswith(
        "/inspections") and e["key_id"] == scored.ids["agency_a"]]
    for candidate in inspection_ids:
        current = client.get(f"{R}/inspections/{candidate}", headers=admin).get_json()
        if current["community_id"] == "heping-002":
            fixed = {"inspection_id": candidate, "community_id": "heping-002", "inspector": "复查",
                     "inspected_at": current["inspected_at"].replace("Z", "+00:00")[:19] + "+00:00",
                     "checks": full_checks(c2), "amend_reason": "违建已拆除"}
            assert client.put(f"{R}/inspections/{candidate}", json=fixed,
                              headers=scored.header("agency_a")).status_code == 200
    s2 = client.get(f"{R}/communities/heping-002/score", headers=lead).get_json()
    assert s2["flags"] == [] and s2["professional"]["score"] == 100.0


@pytest.mark.parametrize("per_piece", [1, 2])
def test_community_ranking_is_sent_in_pieces_that_are_its_canonical_json(app, client, scored, world, monkeypatch,
                                                                          per_piece):
    """Memory at national size (issue 18 item 4): the whole community ranking is sent in pieces of a few
    kept rows, made as they are sent, with its Content-Length; joined, the pieces (commas between rows,
    ranked rows then unranked ones) are the canonical JSON of the ranking made afresh as one document,
    before and after a survey write, and once published the canonical JSON of the snapshot's ranking."""
    import json

    from scoring_service.domain.canonical import canonical_bytes
    from scoring_service.extensions import state
    from scoring_service.services import documents
    from scoring_service.services.results import compute_results, round_results

    monkeypatch.setattr(documents, "RANKING_ROWS_PER_PIECE", per_piece)
    lead, admin = scored.header("leadership"), scored.header("admin")
    for community_id in ("heping-003", "heping-004"):  # no data: unranked
        pending = {**world["communities"]["heping-002"], "community_id": community_id, "name_zh": "待测小区"}
        assert client.put(f"/api/v1/communities/{community_id}", json=pending, headers=admin).status_code == 201
    for step in ("live", "after a write", "published"):
        if step == "after a write":
            post(client, scored.header("kiosk_2"), f"{R}/surveys", survey("heping-002", answers={"roads": 1}, overall=1))
            # a district's ranking first: the whole one is then kept from the rows made for it
            district = client.get(f"{R}/rankings/communities?district_id=heping", headers=lead).get_json()
            assert [r["community_id"] for r in district["communities"]] == ["heping-002", "heping-001"]
        if step == "published":
            assert client.post(f"{R}/publish", headers=admin).status_code == 200
        served = client.get(f"{R}/rankings/communities", headers=lead)
        assert served.status_code == 200 and served.mimetype == "application/json" and served.is_streamed
        with app.app_context():
            length, stream = round_results(state(), "r2018").ranking_stream()
            pieces = list(stream)
            if step == "published":
                fresh = json.loads(client.get(f"{R}/snapshot").data)["community_ranking"]
            else:
                fresh = compute_results(state(), "r2018").community_ranking  # a new object: rows as dicts
        whole = canonical_bytes(fresh)
        assert served.data == b"".join(pieces) == whole
        assert int(served.headers["Content-Length"]) == length == len(whole)
        ranked, unranked = len(fresh["communities"]), len(fresh["unranked"])
        assert (ranked, unranked) == (3, 2)  # both arrays have rows
        assert len(pieces) == 4 + -(-ranked // per_piece) + -(-unranked // per_piece)  # split as asked
        assert [r["community_id"] for r in json.loads(served.data)["communities"]][0] == "shenhe-001"
