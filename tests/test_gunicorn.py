"""gunicorn with two workers while concurrent clients replay the same responses."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .conftest import add_key, make_app, survey
from .live_server import LiveServer

pytestmark = pytest.mark.slow


@pytest.fixture
def seeded(database_url, tmp_path, client, keys, world, app):
    """The small world, stored where the live server will find it."""
    kiosk_id, kiosk_token = add_key(app, "kiosk", "终端", community_id="heping-001")
    return {"database_url": database_url, "instance": tmp_path / "instance", "admin": keys["admin"],
            "kiosk": kiosk_token}


def test_concurrent_replays_store_each_id_once(seeded):
    responses = [survey("heping-001", household_ref=f"{i}-1-101" if i % 3 == 0 else None) for i in range(120)]
    distinct = {r["response_id"] for r in responses}
    statuses: list[tuple[str, int | str]] = []

    with LiveServer(seeded["database_url"], seeded["instance"], workers=2) as server:
        assert len(server.worker_pids()) == 2
        headers = {"Authorization": f"Bearer {seeded['kiosk']}"}

        def client(seed: int):
            rnd = random.Random(seed)
            mine = responses[:]
            rnd.shuffle(mine)
            session = requests.Session()
            seen = []
            for start in range(0, len(mine), 15):
                chunk = mine[start:start + 15]
                if rnd.random() < 0.5:
                    r = session.post(f"{server.url}/api/v1/rounds/r2018/surveys/batch",
                                     json={"responses": chunk}, headers=headers, timeout=30)
                    assert r.status_code == 200, r.text
                    seen += [(x["response_id"], x["status"]) for x in r.json()["results"]]
                else:
                    for body in chunk:
                        r = session.post(f"{server.url}/api/v1/rounds/r2018/surveys", json=body, headers=headers,
                                         timeout=30)
                        assert r.status_code in (200, 201), r.text
                        seen.append((body["response_id"], r.status_code))
            return seen

        with ThreadPoolExecutor(max_workers=8) as pool:
            for seen in pool.map(client, range(8)):
                statuses += seen

        lead = {"Authorization": f"Bearer {seeded['admin']}"}
        score = requests.get(f"{server.url}/api/v1/rounds/r2018/communities/heping-001/score", headers=lead,
                             timeout=30).json()

    created = [rid for rid, status in statuses if status in ("created", 201)]
    assert sorted(created) == sorted(distinct), "every id created exactly once"
    assert len(statuses) == 8 * len(responses)
    app = make_app(seeded["database_url"], seeded["instance"])
    assert app.extensions["scoring"].store.count_responses("r2018") == len(distinct)
    assert score["resident"]["responses"] == len(distinct)
    assert app.extensions["scoring"].store.recount("r2018", 11, fix=False) == []
