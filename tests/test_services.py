"""The service layer and the hardening that lives in it: rank intervals frozen at publication, a cap on
on-demand Monte Carlo runs, a bounded audit trail, the last admin key, replays after a round closes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import survey
from .test_evidence import R, evidence_world  # noqa: F401  (fixture)


def test_no_flask_below_the_http_layer():
    """scoring/, services/, store/ and domain/ never import Flask: the CLI and tests can use them bare."""
    code = (
        "import sys, importlib, pkgutil, scoring_service\n"
        "for pkg in ('scoring', 'services', 'store', 'domain'):\n"
        "    base = importlib.import_module('scoring_service.' + pkg)\n"
        "    for m in pkgutil.iter_modules(base.__path__):\n"
        "        importlib.import_module(f'scoring_service.{pkg}.{m.name}')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'flask_smorest', 'werkzeug'))\n"
        "print(','.join(bad))\n"
    )
    # the package's __init__ imports the app factory; import the layers without it
    code = "import sys, types; sys.modules['scoring_service'] = types.ModuleType('scoring_service'); " \
           "sys.modules['scoring_service'].__path__ = [__import__('os').path.join(" \
           f"{str(__import__('pathlib').Path(__file__).resolve().parent.parent / 'scoring_service')!r})]\n" + code
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_published_round_serves_rank_intervals_frozen_at_publication(client, evidence_world):
    keys = evidence_world
    admin = keys.header("admin")
    assert client.post(f"{R}/publish", headers=admin).status_code == 200
    snapshot = client.get(f"{R}/snapshot").get_json()
    frozen = snapshot["uncertainty"]
    assert frozen["about"]["draws"] == 1000 and frozen["about"]["seed"] == 0
    # the public reads exactly the frozen intervals, without a key
    public = client.get(f"{R}/rankings/districts?uncertainty=1")
    assert public.status_code == 200
    body = public.get_json()
    assert body["uncertainty"] == frozen["about"]
    assert {row["district_id"]: row["uncertainty"] for row in body["districts"]} == frozen["districts"]
    assert client.get(f"{R}/rankings/communities?uncertainty=1&draws=1000&seed=0").status_code == 200
    # other draws or seeds are on-demand Monte Carlo runs: not for anonymous callers
    r = client.get(f"{R}/rankings/communities?uncertainty=1&draws=50&seed=123")
    assert r.status_code == 401
    r = client.get(f"{R}/rankings/communities?uncertainty=1&draws=50&seed=123", headers=keys.header("leadership"))
    assert r.status_code == 200 and r.get_json()["uncertainty"]["seed"] == 123


def test_on_demand_rank_intervals_are_capped_per_worker(app, client, evidence_world):
    app.extensions["scoring"].uncertainty_slots.acquire()  # one run in progress: the default cap is 1
    try:
        r = client.get(f"{R}/rankings/districts?uncertainty=1&draws=50&seed=7",
                       headers=evidence_world.header("leadership"))
        assert r.status_code == 429 and r.headers["Retry-After"] == "5"
        assert "try again" in r.get_json()["message"]
    finally:
        app.extensions["scoring"].uncertainty_slots.release()
    r = client.get(f"{R}/rankings/districts?uncertainty=1&draws=50&seed=7", headers=evidence_world.header("leadership"))
    assert r.status_code == 200


def test_anonymous_refused_writes_do_not_grow_the_audit_trail(client, keys, world):
    admin = keys.header("admin")
    before = len(client.get("/api/v1/audit?limit=5000", headers=admin).get_json()["items"])
    for _ in range(20):
        assert client.delete("/api/v1/" + "A" * 4000).status_code == 404
        assert client.post("/api/v1/keys", json={"role": "admin", "name": "x"}).status_code == 401
        assert client.post("/api/v1/keys", json={"role": "admin", "name": "x"},
                           headers={"Authorization": "Bearer k_nope.nope"}).status_code == 401
    after = client.get("/api/v1/audit?limit=5000", headers=admin).get_json()["items"]
    assert len(after) == before
    # a refused attempt by a valid key is still recorded, with its path bounded
    assert client.post("/api/v1/rounds/" + "x" * 600 + "/close", headers=keys.header("leadership")).status_code == 403
    events = client.get("/api/v1/audit?limit=5000", headers=admin).get_json()["items"]
    assert len(events) == before + 1 and events[-1]["status"] == 403 and len(events[-1]["path"]) <= 256


def test_the_last_admin_key_cannot_be_revoked(client, keys, world):
    admin = keys.header("admin")
    r = client.delete(f"/api/v1/keys/{keys.ids['admin']}", headers=admin)
    assert r.status_code == 409 and r.get_json()["error"] == "last_admin_key"
    second = client.post("/api/v1/keys", json={"role": "admin", "name": "第二管理员"}, headers=admin).get_json()
    r = client.delete(f"/api/v1/keys/{keys.ids['admin']}", headers={"Authorization": f"Bearer {second['token']}"})
    assert r.status_code == 200 and r.get_json()["revoked_at"]


def test_replays_of_accepted_responses_after_close_drain_the_kiosk_queue(client, keys, world):
    kiosk, admin = keys.header("kiosk_1"), keys.header("admin")
    url = "/api/v1/rounds/r2018/surveys"
    accepted, late = survey(), survey()
    assert client.post(url, json=accepted, headers=kiosk).status_code == 201
    assert client.post("/api/v1/rounds/r2018/close", headers=admin).status_code == 200
    r = client.post(url, json=accepted, headers=kiosk)
    assert r.status_code == 200 and r.get_json()["response_id"] == accepted["response_id"]
    r = client.post(url, json=late, headers=kiosk)
    assert r.status_code == 409 and r.get_json()["error"] == "round_closed"
    changed = {**accepted, "overall": 1}
    assert client.post(url, json=changed, headers=kiosk).get_json()["error"] == "round_closed"
    # a queued batch: the accepted one is a duplicate, the new one can never be accepted
    r = client.post(f"{url}/batch", json={"responses": [accepted, late]}, headers=kiosk)
    assert r.status_code == 200
    assert [x["status"] for x in r.get_json()["results"]] == ["duplicate", "conflict"]
    assert r.get_json()["results"][1]["error"] == "round_closed"
    # a batch with nothing accepted before is refused whole, as before
    r = client.post(f"{url}/batch", json={"responses": [late]}, headers=kiosk)
    assert r.status_code == 409 and r.get_json()["error"] == "round_closed"
    # nothing was counted twice
    body = client.get("/api/v1/rounds/r2018/communities/heping-001/score", headers=admin).get_json()
    assert body["resident"]["responses"] == 1


@pytest.mark.parametrize("size", [1, 3])
def test_named_caches_keep_their_own_bounds(size):
    from scoring_service.services.context import BoundedCache

    cache = BoundedCache("test", size)
    calls = []
    for key in range(5):
        cache.get(key, lambda key=key: calls.append(key) or key)
    assert len(cache) == size
    assert cache.get(4, lambda: calls.append("again")) == 4 and "again" not in calls
    cache.get(0, lambda: calls.append("recomputed"))
    assert calls[-1] == "recomputed"


def test_a_cache_family_holds_one_value():
    """A round's values at newer generation tokens replace its older ones on the miss, before computing (a
    worker never holds a national round's arrays twice); other families and keys without one stay."""
    from scoring_service.services.context import BoundedCache

    cache = BoundedCache("test", 8)
    cache.get(("r1", "t1"), lambda: "a", family="r1")
    cache.get(("r2", "t1"), lambda: "b", family="r2")
    cache.get("plain", lambda: "c")
    seen = []
    cache.get(("r1", "t2"), lambda: seen.append(len(cache)) or "d", family="r1")
    assert seen == [2] and len(cache) == 3  # r1's old value gone before the new one was computed
    assert cache.get(("r1", "t1"), lambda: "again", family="r1") == "again"
    assert cache.get(("r2", "t1"), lambda: "never") == "b" and cache.get("plain", lambda: "never") == "c"
    with pytest.raises(ZeroDivisionError):
        cache.get(("r2", "t2"), lambda: 1 / 0, family="r2")
    assert len(cache) == 2 and cache.get(("r1", "t1"), lambda: "never", family="r1") == "again"


def test_a_json_body_is_parsed_once_per_request(client, keys, world, monkeypatch):
    """The request hook bounds the body and the views' argument parser reuses it (a batch is up to 2 MiB)."""
    import scoring_service.api as api
    from webargs import core

    calls = []
    real = core.parse_json

    def counting(data, *args, **kwargs):
        calls.append(len(data))
        return real(data, *args, **kwargs)

    monkeypatch.setattr(core, "parse_json", counting)
    monkeypatch.setattr(api, "parse_json", counting)
    body = {"responses": [survey(), survey()]}
    r = client.post("/api/v1/rounds/r2018/surveys/batch", json=body, headers=keys.header("kiosk_1"))
    assert r.status_code == 200 and r.get_json()["created"] == 2
    assert len(calls) == 1
