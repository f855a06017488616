"""Rectification items (整改台账, SPEC §13): the derivation worked by hand, its edge cases, the round
fields, responses and the list through the API on both stores, and the counts in the supervision report."""

from __future__ import annotations

import doctest
import json
import uuid
from datetime import date, datetime

import pytest

from scoring_service.domain import rectification as rx
from scoring_service.domain.timeutil import to_stored

from .conftest import COMMUNITIES, RUBRIC, full_checks, make_app

C1 = {c["community_id"]: c for c in COMMUNITIES}["heping-001"]
I, J, K = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222", \
    "33333333-3333-4333-8333-333333333333"
CHECK = "roads.surface"  # 6 points, not critical: below 3.6 fails at 0.6


def at(text: str) -> str:
    """An ``inspected_at`` (China time) as stored."""
    return to_stored(datetime.fromisoformat(text))


def version(inspection_id: str, number: int, inspected_at: str, agency_id: str = "agency-a", stage=None,
            community=C1, **points) -> dict:
    """A stored version of ``community``'s inspection: full marks but ``points`` (check code with _ for .)."""
    checks = full_checks(community)
    checks.update({code.replace("__", "."): value for code, value in points.items()})
    record = {"inspection_id": inspection_id, "community_id": community["community_id"], "agency_id": agency_id,
              "version": number, "inspected_at": at(inspected_at), "checks": checks,
              "check_evidence": {CHECK: [f"{number:064x}"]}, "amend_reason": None if number == 1 else "复验"}
    if stage:
        record["stage"] = stage
    return record


def response(response_id: str, fixed_on: str, item: str = f"{I}:{CHECK}", recorded_at: str = "") -> rx.Response:
    return rx.Response(response_id, item, date.fromisoformat(fixed_on), "已修复", ("e" * 64,), "k_district",
                       recorded_at)


def items_at(versions, responses, t: str, **settings) -> dict[str, rx.Item]:
    return {item.state.timeline.id: item for item in rx.derive_items(
        versions, RUBRIC, responses, date.fromisoformat(t), rx.Settings(**settings), {"heping-001": "heping"})}


# The hand-worked case: one community, two agencies, three versions.
#   09-12 agency A's inspection I, version 1: roads.surface 2 of 6 (< 3.6)  → opened, due 09-27
#   09-15 the district answers (fixed on 09-15)                            → submitted
#   09-20 agency A amends I (version 2, the 复验): 3 of 6, still failing     → reopened
#   09-25 the district answers again                                       → submitted
#   09-28 nothing verified and due 09-27 < 09-28                           → overdue
#   10-05 agency B's inspection J: 5 of 6                                  → verified on 10-05 (23 days)
HAND_WORKED = [
    version(I, 1, "2018-09-12T09:00:00+08:00", roads__surface=2),
    version(I, 2, "2018-09-20T10:00:00+08:00", roads__surface=3),
    version(J, 1, "2018-10-05T14:00:00+08:00", agency_id="agency-b", roads__surface=5),
]
HAND_RESPONSES = [response("r1", "2018-09-15"), response("r2", "2018-09-25")]


@pytest.mark.parametrize("t, status, overdue, points", [
    ("2018-09-12", "open", False, 2),
    ("2018-09-14", "open", False, 2),
    ("2018-09-15", "submitted", False, 2),
    ("2018-09-20", "reopened", False, 3),
    ("2018-09-24", "reopened", False, 3),
    ("2018-09-25", "submitted", False, 3),
    ("2018-09-27", "submitted", False, 3),  # due_on is not before t
    ("2018-09-28", "submitted", True, 3),
    ("2018-10-04", "submitted", True, 3),
    ("2018-10-05", "verified", False, 3),
    ("2019-06-01", "verified", False, 3),
])
def test_hand_worked_derivation(t, status, overdue, points):
    items = items_at(HAND_WORKED, HAND_RESPONSES, t)
    assert list(items) == [f"{I}:{CHECK}"]  # J opens nothing; the amendment opens no second item
    item = items[f"{I}:{CHECK}"]
    fields = item.as_dict()
    assert (fields["community_id"], fields["district_id"], fields["inspection_id"], fields["agency_id"],
            fields["check_code"], fields["severity"], fields["max_points"]) == (
        "heping-001", "heping", I, "agency-a", CHECK, "major", 6)
    assert (fields["opened_on"], fields["due_on"]) == ("2018-09-12", "2018-09-27")
    assert (fields["status"], fields["overdue"], fields["points"]) == (status, overdue, points)
    # the evidence of the failing version: version 2's once it is seen failing
    assert fields["evidence"] == [f"{1 if points == 2 else 2:064x}"]
    seen = [r["response_id"] for r in fields["responses"]]
    assert seen == [r.response_id for r in HAND_RESPONSES if r.fixed_on <= date.fromisoformat(t)]
    if status == "verified":
        assert fields["verified_on"] == "2018-10-05" and item.state.days_to_verification == 23
        assert {k: fields["verifying"][k] for k in ("inspection_id", "version", "agency_id", "on", "points")} == {
            "inspection_id": J, "version": 1, "agency_id": "agency-b", "on": "2018-10-05", "points": 5}
        assert fields["verifying"]["inspected_at"] == "2018-10-05T06:00:00.000000Z"
        assert [(h["on"], h["event"]) for h in fields["history"]] == [
            ("2018-09-12", "opened"), ("2018-09-15", "submitted"), ("2018-09-20", "reopened"),
            ("2018-09-25", "submitted"), ("2018-10-05", "verified")]
    else:
        assert fields["verified_on"] is None and fields["verifying"] is None


def test_nothing_exists_before_the_opening_day():
    assert items_at(HAND_WORKED, HAND_RESPONSES, "2018-09-11") == {}


def test_district_counts_of_the_hand_worked_case():
    def counted(t):
        return rx.district_counts(items_at(HAND_WORKED, HAND_RESPONSES, t).values(), ["heping", "shenhe"])

    zero = {"open": 0, "submitted": 0, "reopened": 0, "verified": 0, "overdue": 0,
            "median_days_to_verification": None}
    assert counted("2018-09-28") == {"heping": {**zero, "submitted": 1, "overdue": 1}, "shenhe": zero}
    assert counted("2018-10-05") == {"heping": {**zero, "verified": 1, "median_days_to_verification": 23},
                                     "shenhe": zero}


def test_median_days_of_several_verified_items():
    # three checks fail on 09-12; a later version verifies two of them on 09-15 and 09-22
    versions = [version(I, 1, "2018-09-12T09:00:00+08:00", roads__surface=0, roads__curbs=0, water__drainage=0),
                version(I, 2, "2018-09-15T09:00:00+08:00", roads__surface=6, roads__curbs=0, water__drainage=0),
                version(I, 3, "2018-09-22T09:00:00+08:00", roads__surface=6, roads__curbs=4, water__drainage=0)]
    counted = rx.district_counts(items_at(versions, [], "2018-10-01").values())
    assert counted == {"heping": {"open": 1, "submitted": 0, "reopened": 0, "verified": 2, "overdue": 1,
                                  "median_days_to_verification": 6.5}}


def test_threshold_edge_exactly_the_limit_is_no_fail():
    # greenery.maintained has 3 points: 0.6 × 3 = 1.8 (1.7999999999999998 in binary floats)
    rule = rx.FailRule(RUBRIC, 0.6)
    assert rule.fails("greenery.maintained", 1.8) is False
    assert rule.fails("greenery.maintained", 1.79) is True
    assert rule.fails("lighting.yard", 3) is False  # 0.6 × 5
    assert rule.fails("lighting.yard", 2.99) is True
    assert rx.FailRule(RUBRIC, 0.7).fails("greenery.maintained", 2.1) is False  # 0.7 × 3 = 2.1 exactly
    assert rx.FailRule(RUBRIC, 0.7).fails("greenery.maintained", 2.09) is True
    versions = [version(I, 1, "2018-09-12T09:00:00+08:00", greenery__maintained=1.8, lighting__yard=2.99)]
    assert sorted(items_at(versions, [], "2018-09-30")) == [f"{I}:lighting.yard"]


def test_threshold_and_days_are_the_rounds():
    versions = [version(I, 1, "2018-09-12T09:00:00+08:00", greenery__maintained=2.5)]
    assert items_at(versions, [], "2018-09-30") == {}  # 2.5 ≥ 1.8
    strict = items_at(versions, [], "2018-09-30", threshold=0.9, days=3)  # 2.5 < 2.7
    assert (strict[f"{I}:greenery.maintained"].as_dict()["due_on"],
            strict[f"{I}:greenery.maintained"].state.overdue) == ("2018-09-15", True)
    assert items_at(versions, [], "2018-09-30", threshold=0) == {}  # nothing is below 0 …
    critical = [version(I, 1, "2018-09-12T09:00:00+08:00", illegal_structures__removed=0)]
    found = items_at(critical, [], "2018-09-30", threshold=0)  # … but a critical check scored 0 always fails
    assert found[f"{I}:illegal_structures.removed"].as_dict()["severity"] == "critical"


def test_na_never_fails_nor_verifies():
    versions = [version(I, 1, "2018-09-12T09:00:00+08:00", greenery__maintained="na", roads__surface=0),
                version(I, 2, "2018-09-20T09:00:00+08:00", roads__surface="na")]
    items = items_at(versions, [], "2018-09-30", threshold=1)
    assert list(items) == [f"{I}:{CHECK}"]  # "na" at threshold 1 opens nothing
    assert items[f"{I}:{CHECK}"].state.status == "open"  # and an amendment to "na" verifies nothing


def test_a_later_version_passing_before_any_response_verifies():
    versions = [version(I, 1, "2018-09-12T09:00:00+08:00", roads__surface=1),
                version(I, 2, "2018-09-12T16:00:00+08:00", roads__surface=6)]
    item = items_at(versions, [], "2018-09-12")[f"{I}:{CHECK}"]
    assert (item.state.status, item.as_dict()["verified_on"], item.state.days_to_verification) == (
        "verified", "2018-09-12", 0)


def test_another_inspection_on_the_opening_day_is_no_reinspection():
    versions = [version(I, 1, "2018-09-12T09:00:00+08:00", roads__surface=1),
                version(J, 1, "2018-09-12T15:00:00+08:00", agency_id="agency-b", roads__surface=6),
                version(K, 1, "2018-09-12T16:00:00+08:00", agency_id="agency-b", roads__surface=0)]
    items = items_at(versions, [response("r1", "2018-09-12")], "2018-09-30")
    assert items[f"{I}:{CHECK}"].state.status == "submitted"  # J did not verify, K did not reopen
    assert items[f"{K}:{CHECK}"].state.status == "open"  # K's own item (the response answered I's)
    # a day later the same passing inspection verifies both
    versions.append(version(J, 2, "2018-09-13T09:00:00+08:00", agency_id="agency-b", roads__surface=6))
    items = items_at(versions, [], "2018-09-30")
    assert {i: item.as_dict()["verified_on"] for i, item in items.items()} == {
        f"{I}:{CHECK}": "2018-09-13", f"{K}:{CHECK}": "2018-09-13"}


def test_a_response_on_the_day_of_a_failing_reinspection_answers_it():
    versions = [version(I, 1, "2018-09-12T09:00:00+08:00", roads__surface=1),
                version(I, 2, "2018-09-20T09:00:00+08:00", roads__surface=2)]
    answered = [response("r1", "2018-09-14"), response("r2", "2018-09-20")]
    item = items_at(versions, answered, "2018-09-20")[f"{I}:{CHECK}"]
    assert [h["event"] for h in item.state.history] == ["opened", "submitted", "reopened", "submitted"]
    assert item.state.status == "submitted"


def test_a_failing_reinspection_without_a_response_changes_nothing():
    versions = [version(I, 1, "2018-09-12T09:00:00+08:00", roads__surface=1),
                version(I, 2, "2018-09-20T09:00:00+08:00", roads__surface=2),
                version(I, 3, "2018-09-22T09:00:00+08:00", roads__surface=2)]
    item = items_at(versions, [response("r1", "2018-09-14")], "2018-09-30")[f"{I}:{CHECK}"]
    assert item.state.status == "reopened"  # version 3 found it failing again: still reopened
    assert [h["event"] for h in item.state.history] == ["opened", "submitted", "reopened"]
    assert items_at(versions, [], "2018-09-30")[f"{I}:{CHECK}"].state.status == "open"


def test_verification_is_final():
    versions = [version(I, 1, "2018-09-12T09:00:00+08:00", roads__surface=1),
                version(J, 1, "2018-09-15T09:00:00+08:00", agency_id="agency-b", roads__surface=6),
                version(I, 2, "2018-09-20T09:00:00+08:00", roads__surface=1)]
    item = items_at(versions, [], "2018-09-30")[f"{I}:{CHECK}"]
    assert (item.state.status, item.as_dict()["verified_on"]) == ("verified", "2018-09-15")
    assert item.as_dict()["points"] == 1  # the failing version before verification


def test_an_amendment_dated_before_its_version_counts_on_that_versions_date():
    versions = [version(I, 1, "2018-09-12T09:00:00+08:00", roads__surface=1),
                version(I, 2, "2018-09-10T09:00:00+08:00", roads__surface=6)]  # a corrected date, earlier
    item = items_at(versions, [], "2018-09-30")[f"{I}:{CHECK}"]
    assert (item.as_dict()["opened_on"], item.as_dict()["verified_on"]) == ("2018-09-12", "2018-09-12")


def test_items_open_at_the_first_failing_version():
    versions = [version(I, 1, "2018-09-12T09:00:00+08:00", roads__surface=6),
                version(I, 2, "2018-09-18T09:00:00+08:00", roads__surface=2)]
    item = items_at(versions, [], "2018-09-30")[f"{I}:{CHECK}"]
    assert (item.as_dict()["opened_on"], item.as_dict()["due_on"]) == ("2018-09-18", "2018-10-03")


def test_china_dates_decide():
    # 2018-09-12T23:30+08:00 is 15:30 UTC on the 12th; 2018-09-12T17:00Z is the 13th in China
    versions = [version(I, 1, "2018-09-12T17:00:00+00:00", roads__surface=1)]
    assert items_at(versions, [], "2018-09-12") == {}
    assert items_at(versions, [], "2018-09-13")[f"{I}:{CHECK}"].as_dict()["opened_on"] == "2018-09-13"


def test_other_stages_neither_open_nor_verify():
    versions = [version(I, 1, "2018-09-12T09:00:00+08:00", stage="construction", roads__surface=0),
                version(J, 1, "2018-09-13T09:00:00+08:00", roads__surface=0),
                version(K, 1, "2018-09-20T09:00:00+08:00", stage="aftercare", roads__surface=6)]
    items = items_at(versions, [], "2018-09-30")
    assert list(items) == [f"{J}:{CHECK}"] and items[f"{J}:{CHECK}"].state.status == "open"


def test_responses_after_verification_change_nothing():
    versions = [version(I, 1, "2018-09-12T09:00:00+08:00", roads__surface=1),
                version(I, 2, "2018-09-14T09:00:00+08:00", roads__surface=6)]
    item = items_at(versions, [response("late", "2018-09-16")], "2018-09-30")[f"{I}:{CHECK}"]
    assert item.state.status == "verified" and [r.response_id for r in item.state.responses] == ["late"]


def test_doctests():
    result = doctest.testmod(rx)
    assert result.attempted >= 3 and result.failed == 0


def test_kept_item_json_shares_its_evidence_links_and_gives_the_same_bytes():
    """An item's kept JSON holds one copy of each evidence link for the whole board, and joins back to the
    item's canonical JSON; link-like text inside a note (quotes escaped) is left as it is."""
    from scoring_service.domain.canonical import array_length, canonical_bytes
    from scoring_service.services import rectification as service

    a, b = "a" * 64, "b" * 64
    note = '{"sha256":"' + a + '","thumbnail_url":null,"url":"/api/v1/attachments/' + a + '"}'
    links: dict[bytes, bytes] = {}
    items = []
    for k in range(2):
        evidence = service.evidence_links([a, b], lambda h: h == a)
        item = {"id": f"i{k}", "evidence": evidence, "note": note, "verifying": {"evidence": evidence[:1]},
                "responses": [{"evidence": service.evidence_links([b], lambda h: False)}]}
        items.append(canonical_bytes(item))
    kept = [service.kept_json(item, links) for item in items]
    assert [service.item_bytes(k) for k in kept] == items
    assert array_length(b"", b"", kept) == len(b"[" + b",".join(items) + b"]")
    assert len(links) == 2  # a's link and b's, whichever item, response or verifying version shows them
    assert all(len(k) == 2 * 4 + 1 for k in kept)  # four links each; the note's escaped text is no link
    assert kept[0][1] is kept[1][1] and kept[0][1] in links.values()
    assert service.kept_json(b'{"evidence":[]}', links) == b'{"evidence":[]}'


def test_packed_items_give_back_their_json_in_order_and_keep_less():
    """Memory at national size (issue 18 item 4): the board keeps each item's JSON deflated against its
    dictionary, its links shared; inflated, every item gives back its canonical JSON byte for byte (links
    in place, none lost or moved), alone and sent in pieces of a list with the stated length, and the
    items keep fewer bytes than their own JSON."""
    from scoring_service.domain.canonical import array_length, array_pieces, canonical_bytes
    from scoring_service.services import rectification as service

    a, b = "a" * 64, "b" * 64
    note = '{"sha256":"' + a + '","thumbnail_url":null,"url":"/api/v1/attachments/' + a + '"}'
    board = service.RectificationBoard.__new__(service.RectificationBoard)
    board.links, board.zdict = {}, None
    items = []
    for k in range(40):
        evidence = service.evidence_links([a, b][: 1 + k % 2], lambda h: h == a)
        item = {"id": f"i{k:03d}", "check_text_zh": "屋面防水已完成", "evidence": evidence, "note": note * (k % 3),
                "verifying": {"evidence": evidence[1:]}, "points": k / 10,
                "responses": [{"evidence": service.evidence_links([b], lambda h: False), "note": "已整改。"}]}
        items.append(canonical_bytes(item))
    items.append(canonical_bytes({"id": "no links", "evidence": []}))
    packed = [board.pack(item) for item in items]
    assert [service.item_bytes(p) for p in packed] == items
    assert [p.length for p in packed] == list(map(len, items))
    want = b'{"items":[' + b",".join(items) + b"]}"
    for per_piece in (1, 3, 64):
        assert b"".join(array_pieces(b'{"items":', b"}", packed, per_piece)) == want
    assert array_length(b'{"items":', b"}", packed) == len(want)
    assert len(board.links) == 2 and packed[1].links[0] is packed[3].links[0]  # one copy of each link
    assert all(p.zdict is board.zdict for p in packed)
    assert sum(len(p.deflated) for p in packed) < sum(map(len, items)) / 4


# -- through the API, on both stores -------------------------------------------------------------------

R = "/api/v1/rounds/r2018"
RX = f"{R}/rectifications"
TODAY = "2018-10-20"


def png(seed: int) -> bytes:
    """A small PNG of its own (Pillow, made here: no binary ships with the tests)."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (seed % 256, seed // 256 % 256, 90)).save(out, "PNG")
    return out.getvalue()


def upload(client, header, seed: int) -> str:
    r = client.post("/api/v1/attachments", data=png(seed), content_type="image/png", headers=header)
    assert r.status_code in (200, 201), r.get_json()
    return r.get_json()["sha256"]


@pytest.fixture
def today(app):
    app.config["TODAY"] = TODAY
    return date.fromisoformat(TODAY)


def checks(community: dict, **points) -> dict:
    values = full_checks(community)
    values.update({code.replace("__", "."): value for code, value in points.items()})
    return values


def inspect(client, keys, agency, community_id, inspected_at, inspection_id=None, amend=None, evidence=None,
            **points):
    from .conftest import inspection

    community = {c["community_id"]: c for c in COMMUNITIES}[community_id]
    body = inspection(community, checks(community, **points), inspected_at=inspected_at)
    if inspection_id:
        body["inspection_id"] = inspection_id
    if evidence:
        body["check_evidence"] = evidence
    if amend:
        body["amend_reason"] = amend
        r = client.put(f"{R}/inspections/{body['inspection_id']}", json=body, headers=keys.header(agency))
    else:
        r = client.post(f"{R}/inspections", json=body, headers=keys.header(agency))
    assert r.status_code in (200, 201), r.get_json()
    return body["inspection_id"]


def answer(client, keys, item, fixed_on, evidence, key="district_heping", response_id=None, note="已修补路面"):
    body = {"response_id": response_id or str(uuid.uuid4()), "fixed_on": fixed_on, "note": note,
            "evidence": evidence}
    return client.post(f"{RX}/{item}/responses", json=body, headers=keys.header(key))


def listed(client, keys, key="leadership", **query):
    r = client.get(RX, query_string=query, headers=keys.header(key))
    assert r.status_code == 200, r.get_json()
    return r.get_json()


@pytest.fixture
def hand_worked(client, keys, world, today):
    """The hand-worked case through the API (see HAND_WORKED): photos on the failing checks and the responses."""
    photo_a = upload(client, keys.header("agency_a"), 1)
    photo_a2 = upload(client, keys.header("agency_a"), 2)
    fixed = [upload(client, keys.header("district_heping"), n) for n in (3, 4)]
    iid = inspect(client, keys, "agency_a", "heping-001", "2018-09-12T09:00:00+08:00", inspection_id=I,
                  evidence={CHECK: [photo_a]}, roads__surface=2)
    item = f"{iid}:{CHECK}"
    assert answer(client, keys, item, "2018-09-15", [fixed[0]], response_id=str(uuid.UUID(int=1))).status_code == 201
    inspect(client, keys, "agency_a", "heping-001", "2018-09-20T10:00:00+08:00", inspection_id=I, amend="复验",
            evidence={CHECK: [photo_a2]}, roads__surface=3)
    assert answer(client, keys, item, "2018-09-25", [fixed[1]], response_id=str(uuid.UUID(int=2))).status_code == 201
    inspect(client, keys, "agency_b", "heping-001", "2018-10-05T14:00:00+08:00", inspection_id=J, roads__surface=5)
    return {"item": item, "photos": [photo_a, photo_a2], "fixed": fixed}


def link(sha256: str) -> dict:
    return {"sha256": sha256, "url": f"/api/v1/attachments/{sha256}",
            "thumbnail_url": f"/api/v1/attachments/{sha256}/thumbnail"}


@pytest.mark.parametrize("t, status, overdue", [
    ("2018-09-11", None, None), ("2018-09-12", "open", False), ("2018-09-15", "submitted", False),
    ("2018-09-20", "reopened", False), ("2018-09-25", "submitted", False), ("2018-09-28", "submitted", True),
    ("2018-10-05", "verified", False)])
def test_hand_worked_case_through_the_api(client, keys, hand_worked, t, status, overdue):
    body = listed(client, keys, as_of=t)
    assert body["round_id"] == "r2018" and body["as_of"] == t
    if status is None:
        assert body["items"] == []
        return
    [item] = body["items"]
    assert (item["id"], item["community_id"], item["district_id"], item["inspection_id"], item["agency_id"],
            item["check_code"], item["item_code"], item["severity"], item["max_points"]) == (
        hand_worked["item"], "heping-001", "heping", I, "agency-a", CHECK, "roads", "major", 6)
    assert (item["check_text_zh"], item["check_text_en"]) == ("路面完好平整，无坑洼破损",
                                                              "Road surface intact and level, no potholes")
    assert (item["opened_on"], item["due_on"], item["status"], item["overdue"]) == (
        "2018-09-12", "2018-09-27", status, overdue)
    reinspected = t >= "2018-09-20"
    assert item["points"] == (3 if reinspected else 2)
    assert item["evidence"] == [link(hand_worked["photos"][1 if reinspected else 0])]
    answered = [r for r, fixed_on in zip(hand_worked["fixed"], ("2018-09-15", "2018-09-25")) if fixed_on <= t]
    assert [(r["fixed_on"], r["evidence"]) for r in item["responses"]] == [
        (fixed_on, [link(h)]) for h, fixed_on in zip(answered, ("2018-09-15", "2018-09-25"))]
    assert all(r["note"] == "已修补路面" and r["key_id"] == keys.ids["district_heping"] for r in item["responses"])
    counts = {d["district_id"]: d for d in body["districts"]}
    assert counts["heping"][status] == 1 and counts["heping"]["overdue"] == int(overdue)
    assert counts["shenhe"] == {"district_id": "shenhe", "name_zh": "沈河区", "open": 0, "submitted": 0,
                                "reopened": 0, "verified": 0, "overdue": 0, "median_days_to_verification": None}
    if status == "verified":
        assert item["verified_on"] == "2018-10-05" and item["days_to_verification"] == 23
        assert item["verifying"] == {"inspection_id": J, "version": 1, "agency_id": "agency-b",
                                     "inspected_at": "2018-10-05T06:00:00.000000Z", "on": "2018-10-05",
                                     "points": 5, "evidence": []}
        assert counts["heping"]["median_days_to_verification"] == 23
        assert [h["event"] for h in item["history"]] == ["opened", "submitted", "reopened", "submitted", "verified"]
    else:
        assert item["verified_on"] is None and item["verifying"] is None


def test_default_as_of_is_today_while_the_round_is_open(client, keys, hand_worked):
    body = listed(client, keys)
    assert body["as_of"] == TODAY and body["items"][0]["status"] == "verified"


def test_a_veto_lifted_by_the_verifying_amendment(client, keys, world, today):
    lead = keys.header("leadership")
    iid = inspect(client, keys, "agency_a", "heping-002", "2018-09-12T09:00:00+08:00",
                  illegal_structures__removed=0)
    before = client.get(f"{R}/communities/heping-002/score", headers=lead).get_json()
    assert "veto:illegal_structures.removed" in before["flags"]
    item = f"{iid}:illegal_structures.removed"
    opened = listed(client, keys, as_of="2018-09-13")["items"]
    assert [(i["id"], i["severity"], i["points"], i["status"]) for i in opened] == [(item, "critical", 0, "open")]
    inspect(client, keys, "agency_a", "heping-002", "2018-09-18T09:00:00+08:00", inspection_id=iid,
            amend="复验：违建已拆除")
    after = client.get(f"{R}/communities/heping-002/score", headers=lead).get_json()
    assert not any(f.startswith("veto:") for f in after["flags"])
    assert after["professional"]["score"] > before["professional"]["score"]
    [verified] = listed(client, keys, as_of="2018-09-18")["items"]
    assert (verified["status"], verified["verified_on"], verified["points"]) == ("verified", "2018-09-18", 0)
    assert (verified["verifying"]["inspection_id"], verified["verifying"]["version"],
            verified["verifying"]["points"]) == (iid, 2, 6)


def test_overdue_at_an_as_of_date_and_the_rounds_fields(client, keys, world, today):
    admin = keys.header("admin")
    from .conftest import ROUND

    r = client.post("/api/v1/rounds", json={**ROUND, "round_id": "strict", "rectification_threshold": 0.9,
                                            "rectification_days": 3}, headers=admin)
    assert r.status_code == 201, r.get_json()
    assert (r.get_json()["rectification_threshold"], r.get_json()["rectification_days"]) == (0.9, 3)
    community = {c["community_id"]: c for c in COMMUNITIES}["heping-001"]
    from .conftest import inspection

    body = inspection(community, checks(community, greenery__maintained=2.5), inspected_at="2018-09-12T09:00:00+08:00")
    assert client.post("/api/v1/rounds/strict/inspections", json=body, headers=keys.header("agency_a")).status_code == 201
    assert client.post(f"{R}/inspections", json=body, headers=keys.header("agency_a")).status_code == 409  # its id
    r2018 = {**body, "inspection_id": str(uuid.uuid4())}
    assert client.post(f"{R}/inspections", json=r2018, headers=keys.header("agency_a")).status_code == 201
    assert listed(client, keys, as_of="2018-09-30")["items"] == []  # 2.5 of 3 passes at 0.6
    strict = client.get("/api/v1/rounds/strict/rectifications", query_string={"as_of": "2018-09-15"},
                        headers=keys.header("leadership")).get_json()
    [item] = strict["items"]  # 2.5 < 0.9 × 3
    assert (item["due_on"], item["overdue"]) == ("2018-09-15", False)
    late = client.get("/api/v1/rounds/strict/rectifications", query_string={"as_of": "2018-09-16"},
                      headers=keys.header("leadership")).get_json()
    assert late["items"][0]["overdue"] is True
    assert {d["district_id"]: d["overdue"] for d in late["districts"]} == {"heping": 1, "shenhe": 0}
    assert client.get("/api/v1/rounds/strict", headers=admin).get_json()["rectification_days"] == 3
    assert "rectification_threshold" not in client.get(R, headers=admin).get_json()  # absent unless given


@pytest.mark.parametrize("field, value", [
    ("rectification_threshold", 1.5), ("rectification_threshold", -0.1), ("rectification_threshold", "x"),
    ("rectification_threshold", True), ("rectification_days", 0), ("rectification_days", 1.5),
    ("rectification_days", "15"), ("rectification_days", None)])
def test_round_fields_are_checked(client, keys, world, field, value):
    from .conftest import ROUND

    r = client.post("/api/v1/rounds", json={**ROUND, "round_id": "bad", field: value}, headers=keys.header("admin"))
    assert r.status_code == 422 and list(r.get_json()["errors"]) == [field], r.get_json()


def test_filters(client, keys, world, today):
    inspect(client, keys, "agency_a", "heping-001", "2018-09-12T09:00:00+08:00", inspection_id=I, roads__surface=0,
            water__drainage=1)
    inspect(client, keys, "agency_a", "heping-001", "2018-09-14T09:00:00+08:00", inspection_id=I, amend="复验",
            roads__surface=6, water__drainage=1)  # roads verified on 09-14, water still open
    inspect(client, keys, "agency_b", "shenhe-001", "2018-09-28T09:00:00+08:00", inspection_id=J, lighting__yard=0)

    def ids(**query):
        return [i["id"] for i in listed(client, keys, as_of="2018-10-01", **query)["items"]]

    roads, water, lighting = f"{I}:roads.surface", f"{I}:water.drainage", f"{J}:lighting.yard"
    assert ids() == [roads, water, lighting]  # by community, then id
    assert ids(status="verified") == [roads]
    assert ids(status="open") == [water, lighting]
    assert ids(overdue="true") == [water]  # due 09-27; lighting is due 10-13
    assert ids(overdue="false") == [roads, lighting]
    assert ids(district_id="shenhe") == [lighting]
    assert ids(community_id="heping-001", status="open") == [water]
    assert ids(status="submitted") == []
    body = listed(client, keys, as_of="2018-10-01", district_id="shenhe")
    assert [d["district_id"] for d in body["districts"]] == ["shenhe"]
    counts = {d["district_id"]: d for d in listed(client, keys, as_of="2018-10-01")["districts"]}
    assert counts["heping"] == {"district_id": "heping", "name_zh": "和平区", "open": 1, "submitted": 0, "reopened": 0,
                                "verified": 1, "overdue": 1, "median_days_to_verification": 2}
    for bad in ({"status": "closed"}, {"overdue": "maybe"}, {"as_of": "2018-13-01"}, {"district_id": "Bad!"},
                {"colour": "red"}):
        r = client.get(RX, query_string=bad, headers=keys.header("leadership"))
        assert r.status_code == 422 and list(r.get_json()["errors"]) == list(bad), (bad, r.get_json())
    assert client.get("/api/v1/rounds/missing/rectifications", headers=keys.header("leadership")).status_code == 404


def test_role_rules(client, keys, world, today):
    inspect(client, keys, "agency_a", "heping-001", "2018-09-12T09:00:00+08:00", inspection_id=I, roads__surface=0)
    inspect(client, keys, "agency_b", "heping-002", "2018-09-12T09:00:00+08:00", inspection_id=J, roads__surface=0)
    inspect(client, keys, "agency_b", "shenhe-001", "2018-09-12T09:00:00+08:00", inspection_id=K, roads__surface=0)

    def ids(key, **query):
        return [i["id"] for i in listed(client, keys, key, as_of="2018-10-01", **query)["items"]]

    everything = [f"{I}:{CHECK}", f"{J}:{CHECK}", f"{K}:{CHECK}"]
    assert ids("leadership") == ids("admin") == everything
    assert ids("district_heping") == everything[:2] == ids("district_heping", district_id="heping")
    assert ids("district_shenhe") == everything[2:]
    body = listed(client, keys, "district_heping", as_of="2018-10-01")
    assert [d["district_id"] for d in body["districts"]] == ["heping"]
    r = client.get(RX, query_string={"district_id": "shenhe"}, headers=keys.header("district_heping"))
    assert r.status_code == 403
    assert ids("agency_a") == everything[:1]
    assert ids("agency_b") == everything[1:]
    counts = {d["district_id"]: d["open"] for d in listed(client, keys, "agency_b", as_of="2018-10-01")["districts"]}
    assert counts == {"heping": 1, "shenhe": 1}  # an agency's counts are its own items'
    assert client.get(RX, headers=keys.header("kiosk_1")).status_code == 403
    assert client.get(RX).status_code == 401


def test_responses_replay_conflict_and_refusals(client, keys, world, today):
    iid = inspect(client, keys, "agency_a", "heping-001", "2018-09-12T09:00:00+08:00", roads__surface=0)
    item = f"{iid}:{CHECK}"
    photo = upload(client, keys.header("district_heping"), 7)
    rid = str(uuid.uuid4())
    first = answer(client, keys, item, "2018-09-14", [photo], response_id=rid)
    assert first.status_code == 201
    view = first.get_json()
    assert {k: view[k] for k in ("response_id", "round_id", "item_id", "community_id", "district_id", "fixed_on",
                                 "note", "evidence", "key_id")} == {
        "response_id": rid, "round_id": "r2018", "item_id": item, "community_id": "heping-001",
        "district_id": "heping", "fixed_on": "2018-09-14", "note": "已修补路面", "evidence": [link(photo)],
        "key_id": keys.ids["district_heping"]}
    again = answer(client, keys, item, "2018-09-14", [photo, photo], response_id=rid)  # a repeat counts once
    assert again.status_code == 200 and again.get_json() == view
    other = answer(client, keys, item, "2018-09-15", [photo], response_id=rid)
    assert other.status_code == 409 and other.get_json()["error"] == "conflict"
    by_admin = answer(client, keys, item, "2018-09-14", [photo], key="admin", response_id=rid)  # the same answer
    assert by_admin.status_code == 200 and by_admin.get_json()["key_id"] == keys.ids["district_heping"]
    # refusals name their field
    for fixed_on, message in (("2018-10-21", "must not be after today (2018-10-20, China time)"),
                              ("2018-09-11", "must not be before the item opened (2018-09-12)")):
        r = answer(client, keys, item, fixed_on, [photo])
        assert r.status_code == 422 and r.get_json()["errors"] == {"fixed_on": [message]}, r.get_json()
    for body, field in (({"note": ""}, "note"), ({"note": "长" * 501}, "note"), ({"evidence": []}, "evidence"),
                        ({"evidence": ["ABC"]}, "evidence"), ({"response_id": "not-a-uuid"}, "response_id"),
                        ({"fixed_on": "2018-02-30"}, "fixed_on"), ({"evidence": [photo] * 21}, "evidence"),
                        ({"colour": "red"}, "colour")):
        full = {"response_id": str(uuid.uuid4()), "fixed_on": "2018-09-14", "note": "x", "evidence": [photo], **body}
        r = client.post(f"{RX}/{item}/responses", json=full, headers=keys.header("district_heping"))
        assert r.status_code == 422 and field in r.get_json()["errors"], (body, r.get_json())
    missing = {"response_id": str(uuid.uuid4()), "fixed_on": "2018-09-14", "note": "x"}
    r = client.post(f"{RX}/{item}/responses", json=missing, headers=keys.header("district_heping"))
    assert r.status_code == 422 and list(r.get_json()["errors"]) == ["evidence"]
    # evidence must be attachments the caller may read: unknown, or another key's upload
    unknown = "0" * 64
    r = answer(client, keys, item, "2018-09-14", [unknown])
    assert r.status_code == 422 and list(r.get_json()["errors"]) == ["evidence"]
    theirs = upload(client, keys.header("district_shenhe"), 8)
    r = answer(client, keys, item, "2018-09-14", [theirs])
    assert r.status_code == 422 and list(r.get_json()["errors"]) == ["evidence"]
    # unknown items: 404
    for missing_item in (f"{iid}:roads.curbs", f"{uuid.uuid4()}:{CHECK}", "nonsense", f"{iid}:no.such"):
        assert answer(client, keys, missing_item, "2018-09-14", [photo]).status_code == 404, missing_item
    # another district's key: 403; roles that never answer: 403
    assert answer(client, keys, item, "2018-09-14", [theirs], key="district_shenhe").status_code == 403
    for key in ("leadership", "agency_a", "kiosk_1"):
        assert answer(client, keys, item, "2018-09-14", [photo], key=key).status_code == 403
    # nothing of that was stored: one response
    [shown] = listed(client, keys, as_of="2018-10-01")["items"]
    assert [r["response_id"] for r in shown["responses"]] == [rid] and shown["status"] == "submitted"


def test_response_photos_become_readable_by_the_district_and_the_items_agency(client, keys, world, today):
    # the item is agency A's (its inspection opened it); agency B inspected the community too, later
    iid = inspect(client, keys, "agency_a", "heping-001", "2018-09-12T09:00:00+08:00", roads__surface=0)
    inspect(client, keys, "agency_b", "heping-001", "2018-09-13T09:00:00+08:00", roads__surface=1)
    photo = upload(client, keys.header("admin"), 9)  # sent by an admin for the district
    readers = ("district_heping", "district_shenhe", "agency_a", "agency_b")

    def statuses(path):
        return {key: client.get(path, headers=keys.header(key)).status_code for key in readers}

    for path in (f"/api/v1/attachments/{photo}", f"/api/v1/attachments/{photo}/thumbnail"):
        assert statuses(path) == dict.fromkeys(readers, 403)
    r = answer(client, keys, f"{iid}:{CHECK}", "2018-09-14", [photo], key="admin")
    assert r.status_code == 201 and r.get_json()["key_id"] == keys.ids["admin"]
    # the district answering and the agency verifying the fix (复验) read the photos; nobody else
    for path in (f"/api/v1/attachments/{photo}", f"/api/v1/attachments/{photo}/thumbnail"):
        assert statuses(path) == {"district_heping": 200, "district_shenhe": 403, "agency_a": 200,
                                  "agency_b": 403}, path
    refs = client.application.extensions["scoring"].store.attachment_refs(photo)
    assert [(ref["source"], ref["source_id"], ref["district_id"], ref["agency_id"]) for ref in refs] == [
        ("rectification", r.get_json()["response_id"], "heping", "agency-a")]
    # the item's agency sees the photos in its list too
    [item] = listed(client, keys, key="agency_a", as_of="2018-09-14")["items"]
    assert [e["sha256"] for e in item["responses"][0]["evidence"]] == [photo]


def test_responses_are_audited(client, keys, world, today):
    iid = inspect(client, keys, "agency_a", "heping-001", "2018-09-12T09:00:00+08:00", roads__surface=0)
    photo = upload(client, keys.header("district_heping"), 10)
    rid = str(uuid.uuid4())
    answer(client, keys, f"{iid}:{CHECK}", "2018-09-14", [photo], response_id=rid)
    answer(client, keys, f"{iid}:{CHECK}", "2018-09-14", [photo], response_id=rid)
    events = client.get("/api/v1/audit", query_string={"entity_id": rid}, headers=keys.header("admin")).get_json()
    assert [(e["entity_type"], e["outcome"], e["status"]) for e in events["items"]] == [
        ("rectification_response", "created", 201), ("rectification_response", "duplicate", 200)]
    assert events["items"][0]["detail"] == {"item_id": f"{iid}:{CHECK}"}


# -- the list follows what changed ---------------------------------------------------------------------

class Spy:
    """Calls of the store's rectification reads and what they returned."""

    NAMES = ("inspection_version_numbers", "inspection_histories", "rectification_response_changes")

    def __init__(self, store, monkeypatch):
        self.calls: list[tuple[str, tuple, object]] = []
        for name in self.NAMES:
            real = getattr(store, name)

            def spy(*args, _real=real, _name=name, **kwargs):
                result = _real(*args, **kwargs)
                self.calls.append((_name, args, result))
                return result

            monkeypatch.setattr(store, name, spy)

    def take(self) -> list[tuple[str, tuple, object]]:
        calls, self.calls = self.calls, []
        return calls


def body_of(client, keys, as_of="2018-10-01") -> bytes:
    r = client.get(RX, query_string={"as_of": as_of}, headers=keys.header("leadership"))
    assert r.status_code == 200
    return r.get_data()


def test_the_list_reads_only_what_was_written_since(app, client, keys, hand_worked, monkeypatch, database_url,
                                                    tmp_path):
    store = app.extensions["scoring"].store
    first = body_of(client, keys)
    spy = Spy(store, monkeypatch)
    assert body_of(client, keys) == first and spy.take() == []  # nothing written since: nothing read

    # a response: that response only, no inspection
    second = inspect(client, keys, "agency_a", "heping-002", "2018-09-26T09:00:00+08:00", inspection_id=K,
                     lighting__yard=0)
    spy.take()
    body_of(client, keys)  # the new inspection's items
    calls = spy.take()
    assert [(name, args[1:] if name == "inspection_histories" else ()) for name, args, _ in calls
            if name != "inspection_version_numbers"] == [("inspection_histories", ([second],))]
    photo = upload(client, keys.header("district_heping"), 11)
    assert answer(client, keys, f"{K}:lighting.yard", "2018-09-28", [photo]).status_code == 201
    spy.take()
    after = json.loads(body_of(client, keys))
    calls = spy.take()
    assert [name for name, _, _ in calls] == ["rectification_response_changes"]
    assert [r["item_id"] for r in calls[0][2][0]] == [f"{K}:lighting.yard"]
    assert {i["id"]: i["status"] for i in after["items"]} == {hand_worked["item"]: "submitted",
                                                             f"{K}:lighting.yard": "submitted"}

    # an amendment: that inspection's versions only
    inspect(client, keys, "agency_a", "heping-002", "2018-09-30T09:00:00+08:00", inspection_id=K, amend="复验")
    spy.take()
    after = json.loads(body_of(client, keys))
    calls = spy.take()
    histories = [(args, result) for name, args, result in calls if name == "inspection_histories"]
    assert len(histories) == 1 and list(histories[0][0][1]) == [K]
    assert [(v["inspection_id"], v["version"]) for v in histories[0][1]] == [(K, 1), (K, 2)]
    assert {i["id"]: i["status"] for i in after["items"]}[f"{K}:lighting.yard"] == "verified"

    # whatever was kept is what a fresh instance derives from the store (at two dates)
    for as_of in ("2018-10-01", "2018-09-27"):
        kept = body_of(client, keys, as_of)
        fresh_app = make_app(database_url, tmp_path / f"fresh-{as_of}")
        try:
            assert body_of(fresh_app.test_client(), keys, as_of) == kept
        finally:
            fresh_app.extensions["scoring"].store.close()


def test_a_response_through_another_instance_is_seen(app, client, keys, hand_worked, database_url, tmp_path):
    item = f"{J}:{CHECK}"
    assert json.loads(body_of(client, keys))["items"][0]["status"] == "submitted"
    other = make_app(database_url, tmp_path / "other-instance")
    other.config["TODAY"] = TODAY
    try:
        other_client = other.test_client()
        inspect(other_client, keys, "agency_b", "heping-001", "2018-10-06T09:00:00+08:00", inspection_id=J,
                amend="复验", roads__surface=0)  # J now fails roads.surface: J's own item
        photo = upload(other_client, keys.header("district_heping"), 12)
        assert answer(other_client, keys, item, "2018-10-07", [photo]).status_code == 201
    finally:
        other.extensions["scoring"].store.close()
    items = {i["id"]: i for i in json.loads(body_of(client, keys, "2018-10-08"))["items"]}
    assert items[item]["status"] == "submitted" and items[item]["opened_on"] == "2018-10-06"
    assert items[hand_worked["item"]]["status"] == "verified"  # final, though J now fails the check


# -- in the supervision report (SPEC §11) and its 督办通报 ------------------------------------------------

NO_ITEMS = {"open": 0, "submitted": 0, "reopened": 0, "verified": 0, "overdue": 0,
            "median_days_to_verification": None}


def supervision(client, keys, as_of, key="leadership", **query):
    r = client.get(f"{R}/supervision", query_string={"as_of": as_of, **query}, headers=keys.header(key))
    assert r.status_code == 200, r.get_data(as_text=True)[:300]
    return r


def test_counts_and_the_overdue_warning_in_the_supervision_report(client, keys, hand_worked):
    districts = {d["district_id"]: d for d in supervision(client, keys, "2018-09-28").get_json()["districts"]}
    assert districts["heping"]["rectifications"] == {**NO_ITEMS, "submitted": 1, "overdue": 1}
    assert {"code": "rectifications_overdue", "communities": ["heping-001"]} in districts["heping"]["reasons"]
    assert districts["heping"]["warning"] is True
    assert districts["shenhe"]["rectifications"] == NO_ITEMS
    assert "rectifications_overdue" not in [r["code"] for r in districts["shenhe"]["reasons"]]
    districts = {d["district_id"]: d for d in supervision(client, keys, "2018-09-27").get_json()["districts"]}
    assert districts["heping"]["rectifications"] == {**NO_ITEMS, "submitted": 1}  # due today: not yet overdue
    assert "rectifications_overdue" not in [r["code"] for r in districts["heping"]["reasons"]]
    districts = {d["district_id"]: d for d in supervision(client, keys, "2018-10-05").get_json()["districts"]}
    assert districts["heping"]["rectifications"] == {**NO_ITEMS, "verified": 1, "median_days_to_verification": 23}
    assert "rectifications_overdue" not in [r["code"] for r in districts["heping"]["reasons"]]
    own = supervision(client, keys, "2018-09-28", key="district_heping").get_json()["districts"]
    assert [(d["district_id"], d["rectifications"]["overdue"]) for d in own] == [("heping", 1)]


def test_the_printable_notice_has_the_rectification_table(client, keys, hand_worked):
    from .test_supervision_reports import csv_blocks

    notice = csv_blocks(supervision(client, keys, "2018-09-28", format="csv").get_data())
    table = notice["四、整改情况"]
    assert table[0] == ["区编号", "区名称", "待整改", "已整改待复验", "复验未通过", "复验通过", "整改逾期",
                        "整改至复验通过用时中位数（天）"]
    assert {row[0]: row[1:] for row in table[1:]} == {"heping": ["和平区", "0", "1", "0", "0", "1", "—"],
                                                      "shenhe": ["沈河区", "0", "0", "0", "0", "0", "—"]}
    [heping] = [row for row in notice["一、各区进度"] if row[0] == "heping"]
    assert "整改逾期" in heping[11].split("；")
    verified = csv_blocks(supervision(client, keys, "2018-10-05", format="csv").get_data())["四、整改情况"]
    assert [row for row in verified if row[0] == "heping"] == [["heping", "和平区", "0", "0", "0", "1", "0", "23"]]


def notice_with_items() -> dict:
    from .test_supervision_reports import make_report

    report = make_report()
    report["districts"][0]["rectifications"] = {"open": 2, "submitted": 1, "reopened": 1, "verified": 4,
                                                "overdue": 3, "median_days_to_verification": 12.5}
    report["districts"][1]["rectifications"] = dict(NO_ITEMS)
    return report


def test_notice_spreadsheet_and_pdf_show_the_rectification_counts(tmp_path):
    import io

    from openpyxl import load_workbook

    from scoring_service.reports.supervision import supervision_xlsx

    from .test_supervision_reports import make_report, pdf_of, pdf_text

    book = load_workbook(io.BytesIO(supervision_xlsx(notice_with_items())))
    assert book.sheetnames == ["区进度", "警示督办", "逾期节点", "整改情况"]
    rows = [list(row) for row in book["整改情况"].iter_rows(values_only=True)]
    assert rows[1:] == [["shenhe", "沈河区", 2, 1, 1, 4, 3, "12.5"], ["heping", "和平区", 0, 0, 0, 0, 0, "—"]]
    # a report made before §13 (no counts in its rows) prints as before
    assert load_workbook(io.BytesIO(supervision_xlsx(make_report()))).sheetnames == ["区进度", "警示督办", "逾期节点"]
    text = pdf_text(pdf_of(notice_with_items()), tmp_path)
    section = text.split("四、整改情况")[1].split("附：")[0]
    for words in ("待整改", "已整改待复验", "复验未通过", "复验通过", "整改逾期", "12.5", "沈河区", "和平区"):
        assert words in section, words
    assert "四、整改情况" not in pdf_text(pdf_of(make_report()), tmp_path)


def test_bodies_conform_to_the_openapi_document(app, client, keys, hand_worked):
    import schemathesis
    from schemathesis.errors import FailureGroup

    from .test_result_schemas import CHECKS, PREFIX

    document = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)

    def conforms(method, template, response, path_parameters=None, **case):
        operation = document[PREFIX + template][method]
        operation.Case(path_parameters={"round_id": "r2018", **(path_parameters or {})}, **case).validate_response(
            response, checks=CHECKS)

    for as_of in ("2018-09-12", "2018-09-28", "2018-10-05"):
        conforms("GET", "/rectifications", supervision_or_list(client, keys, RX, as_of), query={"as_of": as_of})
        conforms("GET", "/supervision", supervision(client, keys, as_of), query={"as_of": as_of})
    photo = upload(client, keys.header("district_heping"), 13)
    body = {"response_id": str(uuid.uuid4()), "fixed_on": "2018-10-01", "note": "复查", "evidence": [photo]}
    for status in (201, 200):
        r = client.post(f"{RX}/{hand_worked['item']}/responses", json=body, headers=keys.header("district_heping"))
        assert r.status_code == status
        conforms("POST", "/rectifications/{item_id}/responses", r, {"item_id": hand_worked["item"]}, body=body)
    # the description is closed: an unknown field in an item does not conform
    drifted = supervision_or_list(client, keys, RX, "2018-10-05")
    data = json.loads(drifted.get_data())
    data["items"][0]["colour"] = "red"
    drifted.set_data(json.dumps(data))
    with pytest.raises(FailureGroup):
        conforms("GET", "/rectifications", drifted, query={"as_of": "2018-10-05"})


def supervision_or_list(client, keys, url, as_of):
    r = client.get(url, query_string={"as_of": as_of}, headers=keys.header("leadership"))
    assert r.status_code == 200
    return r


def test_a_restored_round_has_the_same_items_and_answers(app, client, keys, hand_worked, tmp_path):
    import io

    from scoring_service.ops.backup import export_round, import_round, write_jsonl

    from .conftest import add_key

    buffer = io.StringIO()
    write_jsonl(export_round(app.extensions["scoring"].store, "r2018"), buffer)
    kinds = [json.loads(line)["type"] for line in buffer.getvalue().splitlines()]
    assert kinds.count("rectification_response") == 2
    target = make_app(str(tmp_path / "restored.sqlite3"), tmp_path / "restored", TODAY=TODAY)
    try:
        assert import_round(target.extensions["scoring"].store, buffer.getvalue().splitlines())[
            "rectification_response"] == 2
        _, token = add_key(target, "leadership", "restored")
        for as_of in ("2018-09-28", "2018-10-05"):
            restored = target.test_client().get(RX, query_string={"as_of": as_of},
                                                headers={"Authorization": f"Bearer {token}"})
            assert restored.status_code == 200 and restored.get_data() == body_of(client, keys, as_of)
    finally:
        target.extensions["scoring"].store.close()


def test_a_chain_keeps_what_the_rules_read():
    """The board keeps an inspection's versions compact (scores as float64 bytes): the versions it gives
    back hold the same scores, ints as ints, the evidence of scored checks, and no other stage."""
    from scoring_service.services.rectification import Chain

    codes = ["a", "b", "c", "d"]
    base = {"inspection_id": "i", "community_id": "c1", "agency_id": "g", "inspected_at": "2018-09-01T01:00:00.000000Z"}
    records = [{**base, "version": 1, "checks": {"a": 3, "b": 1.7, "c": "na", "x": 2, "d": True},
                "check_evidence": {"a": ["h1"], "c": ["h2"]}},
               {**base, "version": 2, "stage": "construction", "checks": {"a": 1}},
               {**base, "version": 3, "checks": {"a": 2 ** 60, "b": 0.1}}]
    versions = Chain.of(records, codes).versions(codes)
    assert [(v.version, v.checks, dict(v.check_evidence)) for v in versions] == [
        (1, {"a": 3, "b": 1.7}, {"a": ("h1",)}), (3, {"a": 2 ** 60, "b": 0.1}, {})]
    assert type(versions[0].checks["a"]) is int and type(versions[0].checks["b"]) is float
    assert {(v.inspection_id, v.community_id, v.agency_id) for v in versions} == {("i", "c1", "g")}


def test_a_chain_keeps_scores_as_tenths_only_when_they_come_back_the_same():
    """Scores that are whole tenths are kept as int16 tenths (a quarter of the bytes) and come back as the
    same floats; a version with any other score (1/3, -0.0, beyond int16) keeps float64."""
    import numpy as np

    from scoring_service.services.rectification import Chain, _packed

    codes = ["a", "b", "c"]
    base = {"inspection_id": "i", "community_id": "c1", "agency_id": "g", "inspected_at": "2018-09-01T01:00:00.000000Z"}
    cases = [{"a": 2.7, "b": 5, "c": 0.1}, {"a": 1 / 3, "b": 2.7}, {"a": -0.0, "b": 1.1}, {"a": 5000.5},
             {"a": 3276.6, "c": 0.3}]
    for checks in cases:
        chain = Chain.of([{**base, "version": 1, "checks": checks}], codes)
        (version,) = chain.versions(codes)
        assert version.checks == checks
        assert [repr(version.checks[c]) for c in checks] == [repr(v) for v in checks.values()]
        assert [type(version.checks[c]) for c in checks] == [type(v) for v in checks.values()]
    assert [len(_packed(np.array([*c.values()], dtype=float))) for c in cases] == [6, 16, 16, 8, 4]


def test_the_board_keeps_responses_and_items_compact():
    """Issue 18 item 4 (memory): a response read from the store keeps shared strings and dates, not its own
    copies (hashes, item and key ids interned; one date object per day; a board's repeated note once),
    and items are slotted records sharing their dates; the values are the ones stored."""
    def record(response_id):  # parsed anew each time, as the store's change feed does
        return json.loads(json.dumps({"response_id": response_id, "item_id": f"{I}:{CHECK}", "fixed_on": "2018-09-15",
                                      "note": "已修复", "evidence": ["e" * 64], "key_id": "k_district",
                                      "recorded_at": "2018-09-15T01:00:00.000000Z"}))

    notes: dict = {}
    first, second = (rx.Response.of(record(rid), notes) for rid in ("r1", "r2"))
    assert first == rx.Response("r1", f"{I}:{CHECK}", date(2018, 9, 15), "已修复", ("e" * 64,), "k_district",
                                "2018-09-15T01:00:00.000000Z")
    assert first.item_id is second.item_id and first.key_id is second.key_id
    assert first.evidence[0] is second.evidence[0] and first.fixed_on is second.fixed_on
    assert first.note is second.note
    two = [version(I, 1, "2018-09-12T09:00:00+08:00", roads__surface=2),
           version(J, 1, "2018-09-12T10:00:00+08:00", roads__surface=1)]
    rule = rx.FailRule(RUBRIC, rx.DEFAULT_THRESHOLD)
    a, b = rx.community_timelines([rx.Version.of(v) for v in two], rule, 15)
    assert not hasattr(a, "__dict__") and not hasattr(a.opening, "__dict__")
    assert (a.opened_on, a.due_on) == (date(2018, 9, 12), date(2018, 9, 27))
    assert a.opened_on is b.opened_on and a.due_on is b.due_on


def test_a_table_gives_back_its_rows_without_keeping_them():
    """A kept date holds only its Table (no Row per item beside it): a table rebuilt after a community's
    number of items changed takes the other communities' rows back from the table, as they were written."""
    from scoring_service.services.rectification import Row, Table

    rows = {"c1": [Row("i1", "c1", "d1", "g1", "verified", False, 3, b'{"id":"i1"}'),
                   Row("i2", "c1", "d1", "g2", "open", True, None, (b'{"a":', b'{"l":1}', b"}"))],
            "c2": [Row("i3", "c2", None, "g1", "reopened", True, None, b"")], "c3": []}
    table = Table(["c1", "c2", "c3"], rows)
    for community_id, expected in rows.items():
        assert table.rows(community_id) == [r._replace(id="") for r in expected]
    assert table.rows("unknown") == []
    again = Table(["c1", "c2"], {"c1": table.rows("c1"), "c2": rows["c2"] * 2})
    assert again.json == [r.json for r in rows["c1"] + rows["c2"] * 2]
    assert again.counts(again.mask(), ["d1"])["d1"]["overdue"] == 1 and again.overdue_communities() == {"d1": ["c1"]}


def test_the_list_is_served_in_pieces_of_the_stated_length(app, client, keys, hand_worked, monkeypatch):
    """The list goes out in pieces (a national list is some 60 MB): the same bytes as the service's JSON,
    with its Content-Length, unfiltered, filtered to nothing and over several pieces."""
    from scoring_service.services import rectification as service

    monkeypatch.setattr(service, "STREAM_ITEMS", 1)
    inspect(client, keys, "agency_a", "heping-002", "2018-09-26T09:00:00+08:00", inspection_id=K, lighting__yard=0)
    ctx = app.extensions["scoring"]
    for query in ({"as_of": "2018-10-01"}, {"as_of": "2018-10-01", "status": "verified", "overdue": "true"}):
        r = client.get(RX, query_string=query, headers=keys.header("leadership"))
        assert r.status_code == 200 and r.is_streamed
        body = r.get_data()
        assert int(r.headers["Content-Length"]) == len(body)
        filters = {"as_of": date.fromisoformat(query["as_of"]), "status": query.get("status"),
                   "overdue": True if "overdue" in query else None}
        assert body == service.rectifications_json(ctx, "r2018", None, **filters)
        assert len(json.loads(body)["items"]) == (0 if "status" in query else 2)


def test_the_report_keeps_no_item_json_and_the_list_shapes_it(app, client, keys, hand_worked, database_url,
                                                              tmp_path):
    """The supervision report's counts keep the items without their JSON (some 60 MB nationally); the list
    shapes it then, and keeps it up to date after a write, as a fresh instance shapes it."""
    from scoring_service.services import rectification as service

    ctx = app.extensions["scoring"]
    round_, t = ctx.store.get_round("r2018"), date(2018, 10, 1)
    assert service.summary(ctx, round_, t).counts
    kept = service.board(ctx, round_).kept(t)
    assert not kept.json and kept.table.json and not any(kept.table.json)
    first = body_of(client, keys)
    assert kept.json and all(kept.table.json)
    inspect(client, keys, "agency_a", "heping-002", "2018-09-26T09:00:00+08:00", inspection_id=K, lighting__yard=0)
    service.summary(ctx, round_, t)
    assert all(kept.table.json) and len(kept.table.json) == 2
    after = body_of(client, keys)
    assert after != first and f"{K}:lighting.yard".encode() in after
    fresh_app = make_app(database_url, tmp_path / "fresh")
    try:
        assert body_of(fresh_app.test_client(), keys) == after
    finally:
        fresh_app.extensions["scoring"].store.close()
