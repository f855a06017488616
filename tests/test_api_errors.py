"""Malformed requests: one JSON error shape, never a 500, never a partial write."""

from __future__ import annotations

import json

from .conftest import survey

URL = "/api/v1/rounds/r2018/surveys"


def assert_error_shape(r, code):
    assert r.status_code == code, r.get_data(as_text=True)
    body = r.get_json()
    assert body["code"] == code and isinstance(body["status"], str) and isinstance(body["message"], str)
    return body


def test_malformed_json(client, keys, world, app):
    r = client.post(URL, data=b'{"response_id": ', headers={**keys.header("kiosk_1"), "Content-Type": "application/json"})
    body = assert_error_shape(r, 400)
    assert "json" in json.dumps(body).lower()
    assert app.extensions["scoring"].store.count_responses("r2018", include_voided=True) == 0


def test_wrong_content_type_is_415_naming_the_header(client, keys, world):
    r = client.post(URL, data=json.dumps(survey()), headers={**keys.header("kiosk_1"), "Content-Type": "text/plain"})
    body = assert_error_shape(r, 415)
    assert "Content-Type" in body["errors"]


def test_oversize_body_is_413_before_parsing(client, keys, world, app):
    big = {"responses": [survey(comment="长" * 400) for _ in range(2000)]}
    data = json.dumps(big).encode()
    assert len(data) > 2 * 1024 * 1024
    r = client.post(f"{URL}/batch", data=data, headers={**keys.header("kiosk_1"), "Content-Type": "application/json"})
    assert_error_shape(r, 413)
    assert app.extensions["scoring"].store.count_responses("r2018", include_voided=True) == 0


def test_json_body_that_is_not_an_object(client, keys, world):
    r = client.post(URL, json=[1, 2, 3], headers=keys.header("kiosk_1"))
    assert_error_shape(r, 422)


def test_wrong_types_name_their_fields(client, keys, world):
    r = client.post(URL, json={**survey(), "overall": "4", "answers": "roads=4"}, headers=keys.header("kiosk_1"))
    body = assert_error_shape(r, 422)
    assert {"overall", "answers"} <= set(body["errors"])


def test_unknown_path_and_method_are_json(client, keys):
    assert_error_shape(client.get("/api/v1/nothing-here", headers=keys.header("admin")), 404)
    assert_error_shape(client.put("/api/v1/rounds", json={}, headers=keys.header("admin")), 405)


def test_missing_and_bad_tokens_are_401(client, world):
    body = assert_error_shape(client.get("/api/v1/rounds"), 401)
    assert "token" in body["message"]
    assert_error_shape(client.get("/api/v1/rounds", headers={"Authorization": "Bearer k_x.y"}), 401)
    assert_error_shape(client.get("/api/v1/rounds", headers={"Authorization": "Basic abc"}), 401)
    assert client.get("/api/v1/rounds").headers["WWW-Authenticate"] == "Bearer"
