"""Operations: rate limits, metrics across gunicorn workers, request ids, and no secrets in logs."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .conftest import add_key, make_app, survey
from .live_server import LiveServer


@pytest.fixture
def limited(database_url, tmp_path):
    app = make_app(database_url, tmp_path / "limited", RATELIMIT_ENABLED=True, RATELIMIT_DEFAULT="5 per minute",
                   RATELIMIT_WRITE="2 per minute", RATELIMIT_PER_ADDRESS="8 per minute")
    yield app
    app.extensions["scoring"].store.close()


def test_rate_limit_per_token_with_retry_after(limited):
    client = limited.test_client()
    _, a = add_key(limited, "leadership", "a")
    _, b = add_key(limited, "leadership", "b")
    for _ in range(5):
        assert client.get("/api/v1/rounds", headers={"Authorization": f"Bearer {a}"}).status_code == 200
    r = client.get("/api/v1/rounds", headers={"Authorization": f"Bearer {a}"})
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) > 0
    body = r.get_json()
    assert body["code"] == 429 and body["status"] == "Too Many Requests"
    # another token has its own allowance
    assert client.get("/api/v1/rounds", headers={"Authorization": f"Bearer {b}"}).status_code == 200
    # ops endpoints are not limited
    assert all(client.get("/healthz").status_code == 200 for _ in range(20))


def test_rate_limit_on_writes_and_per_address(limited):
    client = limited.test_client()
    _, admin = add_key(limited, "admin", "a")
    h = {"Authorization": f"Bearer {admin}"}
    statuses = [client.put("/api/v1/districts/d1", json={"name_zh": "甲", "name_en": "A"}, headers=h).status_code
                for _ in range(3)]
    assert statuses == [201, 200, 429]
    # one address, many tokens: the address limit (8) still holds
    tokens = [add_key(limited, "leadership", f"t{i}")[1] for i in range(6)]
    statuses = [client.get("/api/v1/rounds", headers={"Authorization": f"Bearer {t}"}).status_code
                for t in tokens for _ in range(2)]
    assert statuses.count(429) >= 1 and statuses[:5] == [200] * 5
    # guessing tokens from one address is limited too
    r = [client.get("/api/v1/rounds", headers={"Authorization": f"Bearer k_{i}.x"}).status_code for i in range(3)]
    assert 429 in r


@pytest.mark.slow
def test_metrics_logs_and_request_ids_under_gunicorn(database_url, tmp_path, client, keys, world):
    instance = tmp_path / "instance"
    server = LiveServer(database_url, instance, workers=2,
                        extra_env={"SCORING_METRICS_PUBLIC": "false", "SCORING_METRICS_TOKEN": "metrics-secret-42"})
    kiosk = keys["kiosk_1"]
    with server:
        base = f"{server.url}/api/v1/rounds/r2018/surveys"
        h = {"Authorization": f"Bearer {kiosk}"}
        bodies: list[dict] = []

        def survey_pids():
            entries = [json.loads(x) for x in server.log_path.read_text().splitlines() if x.startswith("{")]
            return {e["pid"] for e in entries if e.get("path") == "/api/v1/rounds/r2018/surveys"}

        with ThreadPoolExecutor(max_workers=6) as pool:  # concurrent, so that both workers serve
            while len(bodies) < 100 and (len(bodies) < 20 or len(survey_pids()) < 2):
                chunk = [survey() for _ in range(10)]
                statuses = list(pool.map(lambda b: requests.post(base, json=b, headers=h, timeout=10).status_code,
                                         chunk))
                assert statuses == [201] * 10
                bodies += chunk
        for body in bodies[:5]:
            assert requests.post(base, json=body, headers=h, timeout=10).status_code == 200
        for _ in range(3):
            assert requests.post(base, json=survey(overall=9), headers=h, timeout=10).status_code == 422
        batch = requests.post(f"{base}/batch", json={"responses": [survey(), bodies[0], survey(overall=0)]},
                              headers=h, timeout=10).json()
        assert (batch["created"], batch["duplicate"], batch["rejected"]) == (1, 1, 1)
        # a token that is wrong is refused and must not be logged either
        assert requests.get(f"{server.url}/api/v1/rounds", headers={"Authorization": "Bearer k_x.leaked-guess"},
                            timeout=10).status_code == 401
        r = requests.get(f"{server.url}/api/v1/rounds", headers={**h, "X-Request-ID": "trace-abc-123"}, timeout=10)
        assert r.headers["X-Request-ID"] == "trace-abc-123"
        assert re.fullmatch(r"[0-9a-f]{32}", requests.get(f"{server.url}/healthz", timeout=10).headers["X-Request-ID"])

        assert requests.get(f"{server.url}/metrics", timeout=10).status_code == 401
        assert requests.get(f"{server.url}/metrics", headers=h, timeout=10).status_code == 403
        text = ""
        for _ in range(4):  # whichever worker answers, it reports every worker's samples
            m = requests.get(f"{server.url}/metrics", headers={"Authorization": "Bearer metrics-secret-42"},
                             timeout=10)
            assert m.status_code == 200
            text = m.text
            assert f'scoring_submissions_total{{kind="survey",outcome="accepted"}} {len(bodies) + 1}.0' in text
            assert 'scoring_submissions_total{kind="survey",outcome="duplicate"} 6.0' in text
            assert 'scoring_submissions_total{kind="survey",outcome="rejected"} 4.0' in text
        assert 'url_rule="/api/v1/rounds/<round_id>/surveys"' in text
    log = server.log_path.read_text()
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    survey_pids = {e["pid"] for e in entries if e.get("path") == "/api/v1/rounds/r2018/surveys"}
    assert len(survey_pids) == 2, "both workers served submissions"
    assert any(e.get("request_id") == "trace-abc-123" for e in entries)
    for secret in (kiosk.split(".", 1)[1], keys["admin"].split(".", 1)[1], "leaked-guess", "metrics-secret-42"):
        assert secret not in log
