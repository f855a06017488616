"""The OpenAPI document describes every leadership response body, and describes it strictly.

Real responses of every leadership endpoint (live and published, with rank
intervals, CSV and XLSX) validate against ``/api/v1/openapi.json`` through
schemathesis' own response validation; bodies that drift from the description
(an unknown field, a missing field, a wrong type, in a body or in one of its
rows) do not.
"""

from __future__ import annotations

import copy
import json
from urllib.parse import parse_qsl, urlsplit

import pytest
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.errors import FailureGroup
from schemathesis.openapi.checks import JsonSchemaError

from .conftest import RUBRIC, survey
from .test_results import R, scored  # noqa: F401  (the worked example of test_results)

PREFIX = "/api/v1/rounds/{round_id}"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
#: every leadership GET (path template, concrete path)
JSON_ENDPOINTS = [
    ("/communities/{community_id}/score", "/communities/heping-001/score"),  # public part, two agencies
    ("/communities/{community_id}/score", "/communities/heping-002/score"),  # veto
    ("/communities/{community_id}/score", "/communities/heping-003/score"),  # nothing yet: all nulls
    ("/rankings/communities", "/rankings/communities"),
    ("/rankings/communities", "/rankings/communities?district_id=heping"),
    ("/rankings/communities", "/rankings/communities?uncertainty=1&draws=20&seed=3"),
    ("/rankings/districts", "/rankings/districts"),
    ("/rankings/districts", "/rankings/districts?uncertainty=1&draws=20"),
    ("/rewards", "/rewards"),
    ("/evidence/funnel", "/evidence/funnel"),
    ("/evidence/anomalies", "/evidence/anomalies"),
]
EXPORTS = [
    ("/rankings/communities", "/rankings/communities?format=csv"),
    ("/rankings/districts", "/rankings/districts?format=xlsx"),
    ("/rewards", "/rewards?format=csv"),
]


@pytest.fixture
def evidence_world(client, scored, world):  # noqa: F811
    """The worked example, plus a community with no data (unranked) and responses every anomaly check flags."""
    admin = scored.header("admin")
    pending = {**world["communities"]["heping-002"], "community_id": "heping-003", "name_zh": "待测小区"}
    assert client.put("/api/v1/communities/heping-003", json=pending, headers=admin).status_code == 201
    codes = [code for code in RUBRIC.item_codes if code not in ("elevator", "heating")][:4]
    # five identical all-5 kiosk answers in one minute: straight-lining, a burst and duplicates
    same = [survey("heping-001", answers={code: 5 for code in codes}, overall=5, channel="kiosk",
                   comment="很好") for _ in range(5)]
    r = client.post(f"{R}/surveys/batch", json={"responses": same}, headers=scored.header("kiosk_1"))
    assert r.status_code == 200 and r.get_json()["created"] == 5
    return scored


@pytest.fixture
def document(app):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


def get(client, path, headers=None):
    response = client.get(R + path, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response


def conforms(document, template, response) -> None:
    """The checks of test_fuzz: documented status and content type, and the body against its schema."""
    url = urlsplit(response.request.url)
    names, values = (PREFIX + template).split("/"), url.path.split("/")
    case = document[PREFIX + template]["GET"].Case(
        path_parameters={name[1:-1]: value for name, value in zip(names, values) if name.startswith("{")},
        query=dict(parse_qsl(url.query)),
    )
    case.validate_response(response, checks=CHECKS)


def leadership_bodies(client, keys):
    lead = keys.header("leadership")
    return [(template, path, get(client, path, lead)) for template, path in JSON_ENDPOINTS]


def test_every_leadership_response_conforms_live(client, evidence_world, document):
    lead = evidence_world.header("leadership")
    seen = {}
    for template, path, response in leadership_bodies(client, evidence_world):
        conforms(document, template, response)
        seen[path] = response.get_json()
    # the data reaches what the schemas have to describe
    assert seen["/communities/heping-003/score"]["composite"] is None
    assert seen["/communities/heping-001/score"]["public"] is not None
    assert seen["/communities/heping-002/score"]["public"] is None
    assert [row["community_id"] for row in seen["/rankings/communities"]["unranked"]] == ["heping-003"]
    spread = seen["/rankings/communities?uncertainty=1&draws=20&seed=3"]
    assert spread["uncertainty"]["draws"] == 20 and spread["communities"][0]["uncertainty"]["rank_interval_90"]
    assert seen["/rankings/districts?uncertainty=1&draws=20"]["districts"][0]["uncertainty"] is not None
    anomalies = seen["/evidence/anomalies"]
    assert anomalies["straight_lining"] and anomalies["bursts"] and anomalies["duplicates"]
    assert anomalies["agency_bias"]
    assert seen["/evidence/funnel"]["points"]
    for template, path in EXPORTS:
        conforms(document, template, get(client, path, lead))
    # a content type the operation does not document is caught
    with pytest.raises(FailureGroup, match="Undocumented Content-Type"):
        conforms(document, "/evidence/funnel", get(client, "/rewards?format=csv", lead))


def test_every_leadership_response_conforms_published(client, evidence_world, document):
    lead = evidence_world.header("leadership")
    r = client.post(f"{R}/publish", headers=evidence_world.header("admin"))
    assert r.status_code == 200
    snapshot = get(client, "/snapshot")
    conforms(document, "/snapshot", snapshot)
    assert snapshot.get_json()["scores"]["heping-003"]["grade"] is None
    assert snapshot.get_json()["uncertainty"]["communities"]
    for template, path, response in leadership_bodies(client, evidence_world):
        conforms(document, template, response)
    # public reads, from the snapshot (rank intervals as frozen at publication)
    for template in ("/rankings/communities", "/rankings/districts", "/rewards"):
        conforms(document, template, get(client, template))
    for template in ("/rankings/communities", "/rankings/districts"):
        conforms(document, template, get(client, template + "?uncertainty=1"))
    districts = get(client, "/rankings/districts").get_json()
    assert districts["snapshot_sha256"] == r.get_json()["snapshot_sha256"]
    for template, path in EXPORTS:
        conforms(document, template, get(client, path, lead))


# -- the schemas are not permissive ----------------------------------------------------------

def first_object(body: dict) -> dict | None:
    """The first object nested in ``body`` (a row of a list, or a value of a map), depth first."""
    for value in body.values():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return first_object(value[0]) or value[0]
        if isinstance(value, dict) and value:
            return first_object(value) or value
    return None


#: fields a body may leave out (rank intervals only when asked for, the hash only once published)
OPTIONAL = {"uncertainty", "snapshot_sha256"}


def drifted(body: dict):
    """Bodies that no longer match a correct description of ``body``.

    An added value is a string, which neither a closed object nor a map of numbers or objects accepts.
    """
    extra = copy.deepcopy(body)
    extra["unexpected"] = "drift"
    yield "unknown top-level field", extra
    for name in sorted(set(body) - OPTIONAL):
        missing = copy.deepcopy(body)
        del missing[name]
        yield f"without {name}", missing
    nested = copy.deepcopy(body)
    row = first_object(nested)
    if row is not None:
        row["unexpected"] = "drift"
        yield "unknown field in a nested object", nested
        retyped = copy.deepcopy(body)
        row = first_object(retyped)
        key = next(iter(row))
        row[key] = [row[key]]  # no field of these bodies is a list of itself
        yield f"nested {key} retyped", retyped


def test_drifted_bodies_do_not_conform(client, evidence_world, document):
    responses = leadership_bodies(client, evidence_world)
    r = client.post(f"{R}/publish", headers=evidence_world.header("admin"))
    assert r.status_code == 200
    responses.append(("/snapshot", "/snapshot", get(client, "/snapshot")))
    checked = 0
    for template, path, response in responses:
        body = response.get_json()
        for what, wrong in drifted(body):
            response.set_data(json.dumps(wrong, ensure_ascii=False).encode())
            try:
                conforms(document, template, response)
            except FailureGroup as failures:
                assert [type(e) for e in failures.exceptions] == [JsonSchemaError], what
                checked += 1
            else:
                pytest.fail(f"GET {path}: a body {what} conforms to the document")
        response.set_data(json.dumps(body, ensure_ascii=False).encode())
        conforms(document, template, response)  # the untouched body still does
    assert checked > 100


def test_views_serve_the_published_bytes_unchanged(client, evidence_world):
    """Response schemas document only: the published snapshot and sections are not re-serialised."""
    r = client.post(f"{R}/publish", headers=evidence_world.header("admin"))
    snapshot = get(client, "/snapshot").data
    frozen = json.loads(snapshot)
    canonical = {"ensure_ascii": False, "sort_keys": True, "separators": (",", ":")}
    assert get(client, "/rankings/communities").data == json.dumps(frozen["community_ranking"], **canonical).encode()
    assert get(client, "/rewards").data == json.dumps(frozen["rewards"], **canonical).encode()
    assert json.loads(get(client, "/rankings/districts").data)["snapshot_sha256"] == r.get_json()["snapshot_sha256"]
