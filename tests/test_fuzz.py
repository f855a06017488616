"""Property-based fuzzing of the whole API from its OpenAPI document (schemathesis), on both stores.

Bounded to a few examples per operation so it fits CI. Checks: no 5xx, the
status code is documented, the content type and body match the document.
Half the cases of a read under ``/rounds/{round_id}`` name the fixture's round
(and a community of it), so the bodies of 200 answers are checked too, not only
those of 404s.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import make_app

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
#: ids the ``world`` fixture creates
KNOWN_IDS = {"round_id": "r2018", "community_id": "heping-001"}


def operations():
    """The documented operations (the document does not depend on the store)."""
    where = Path(tempfile.mkdtemp(prefix="fuzz-schema-"))
    app = make_app(str(where / "schema.sqlite3"), where / "instance")
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    return [op.ok() for op in schema.get_all_operations()]


OPERATIONS = operations()


def cases(operation):
    """Generated cases; for a GET with a round in its path, also cases that name the existing round."""
    strategy = operation.as_strategy()
    if operation.method.upper() != "GET" or "round_id" not in [p.name for p in operation.path_parameters]:
        return strategy

    def known(case):
        case.path_parameters.update({k: v for k, v in KNOWN_IDS.items() if k in case.path_parameters})
        return case

    return st.one_of(strategy, strategy.map(known))


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
def test_api_holds_under_generated_input(operation, client, keys, world):
    # keep the admin key alive: generated DELETEs run with the leadership key
    role = "leadership" if operation.method.upper() == "DELETE" else "admin"

    @given(case=cases(operation))
    @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    def run(case):
        kwargs = case.as_transport_kwargs(base_url="http://localhost", headers=keys.header(role))
        kwargs["headers"]["Authorization"] = keys.header(role)["Authorization"]
        response = client.open(**kwargs)
        case.validate_response(response, checks=CHECKS)

    run()
