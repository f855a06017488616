"""The shipped aftercare rubric ``shenyang-aftercare`` (SPEC §15): shape, validation, seeding."""

from __future__ import annotations

import json

import pytest

from scoring_service.domain.rubric_schema import RubricSchema, load_rubric_file

from .conftest import ROOT

PATH = ROOT / "rubrics" / "shenyang-aftercare.json"
ACCEPTANCE = json.loads((ROOT / "rubrics" / "shenyang-2018.json").read_text(encoding="utf-8"))
ITEMS = {  # SPEC §15: code → name
    "cleaning": "保洁到位",
    "order": "秩序维护（停车有序、无新增违建）",
    "repairs": "共用部位和设施小修养护",
    "greenery_upkeep": "绿化养护",
    "management": "物业管理或自治管理落实、三方联动",
    "funds": "维修资金归集和使用公开",
}


@pytest.fixture(scope="module")
def body() -> dict:
    return json.loads(PATH.read_text(encoding="utf-8"))


def test_file_validates_with_the_rubric_schema(body):
    rubric = load_rubric_file(PATH)
    assert rubric.rubric_id == "shenyang-aftercare"
    assert RubricSchema().load(body)["rubric_id"] == "shenyang-aftercare"


def test_items_and_weights_are_those_of_the_spec(body):
    assert {i["code"]: i["name_zh"] for i in body["items"]} == ITEMS
    assert [i["code"] for i in body["items"]] == list(ITEMS)
    assert sum(i["weight"] for i in body["items"]) == 100
    assert all(i["weight"] > 0 for i in body["items"])
    assert all("applies_when" not in i for i in body["items"])  # every community is kept up after renovation


def test_checks_have_points_and_both_texts(body):
    for item in body["items"]:
        assert 2 <= len(item["checks"]) <= 4, item["code"]
        for check in item["checks"]:
            assert check["code"].startswith(item["code"] + "."), check["code"]
            assert isinstance(check["max_points"], int) and check["max_points"] > 0
            assert check["text_zh"].strip() and check["text_en"].strip(), check["code"]
            assert isinstance(check["critical"], bool)
        assert item["question_zh"].strip() and item["question_en"].strip(), item["code"]
        assert item["question_zh"].endswith("。") and "满意" in item["question_zh"]


def test_safety_lapses_are_critical(body):
    critical = {c["code"] for i in body["items"] for c in i["checks"] if c["critical"]}
    assert critical == {"order.fire_lanes", "order.no_new_structures", "repairs.safety_checks"}


def test_same_sources_grades_and_rules_as_the_acceptance_rubric(body):
    for key in ("likert_points", "source_weights", "grades", "district_weights", "min_responses",
                "acceptance_satisfaction_rate"):
        assert body[key] == ACCEPTANCE[key], key
    assert body["overall_question_zh"] and body["overall_question_en"]
    assert list(body) == list(ACCEPTANCE)  # the same shape, key for key


def test_seed_stores_it_beside_the_acceptance_rubric_idempotently(app, keys, client):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["seed", "shenyang-2018"])
    assert result.exit_code == 0, result.output
    assert "rubric shenyang-aftercare: created" in result.output
    r = client.get("/api/v1/rubrics/shenyang-aftercare", headers=keys.header("leadership"))
    assert r.status_code == 200, r.get_json()
    stored = r.get_json()
    assert [i["code"] for i in stored["items"]] == list(ITEMS)
    assert stored["items"][1]["checks"][1]["code"] == "order.fire_lanes"
    again = runner.invoke(args=["seed", "shenyang-2018"])
    assert again.exit_code == 0, again.output
    assert "rubric shenyang-aftercare: duplicate" in again.output
    assert "rubric shenyang-2018: duplicate" in again.output
