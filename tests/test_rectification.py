"""Rectification items (整改台账, SPEC §13): the derivation worked by hand, its edge cases, the round
fields, responses and the list through the API on both stores, and the counts in the supervision report."""

from __future__ import annotations

import doctest
from datetime import date, datetime

import pytest

from scoring_service.domain import rectification as rx
from scoring_service.domain.timeutil import to_stored

from .conftest import COMMUNITIES, RUBRIC, full_checks

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
