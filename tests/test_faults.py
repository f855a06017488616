"""Faults: workers and whole servers killed mid-upload lose nothing acknowledged and count nothing twice."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import numpy as np
import pytest
import requests

from scoring_service.store.base import response_count_rows

from .conftest import RUBRIC, make_app, survey
from .live_server import LiveServer

pytestmark = pytest.mark.slow
COMMUNITIES = ["heping-001", "heping-002", "shenhe-001"]
BATCH = 250


def make_responses(n: int, seed: int) -> list[dict]:
    rnd = random.Random(seed)
    items = RUBRIC.item_codes
    return [survey(rnd.choice(COMMUNITIES), answers={c: rnd.randint(1, 5) for c in rnd.sample(items, 4)},
                   overall=rnd.randint(1, 5), respondent_type=rnd.choice(["resident"] * 9 + ["public"]),
                   household_ref=f"{i}-1" if i % 5 == 0 else None)
            for i in range(n)]


class Uploader:
    """A kiosk fleet's client: batches with retries until each batch is acknowledged."""

    def __init__(self, token: str):
        self.token = token
        self.url = None
        self.acknowledged: dict[str, str] = {}
        self.batches_done = 0
        self.retries = 0
        self.in_flight = threading.Event()

    def upload(self, responses: list[dict], deadline: float) -> None:
        session = requests.Session()
        for start in range(0, len(responses), BATCH):
            chunk = responses[start:start + BATCH]
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError("upload did not finish")
                self.in_flight.set()
                try:
                    r = session.post(f"{self.url}/api/v1/rounds/r2018/surveys/batch", json={"responses": chunk},
                                     headers={"Authorization": f"Bearer {self.token}"}, timeout=20)
                except requests.RequestException:
                    self.in_flight.clear()
                    self.retries += 1
                    session = requests.Session()
                    time.sleep(0.2)
                    continue
                self.in_flight.clear()
                if r.status_code != 200:
                    self.retries += 1
                    time.sleep(0.2)
                    continue
                for item in r.json()["results"]:
                    assert item["status"] in ("created", "duplicate"), item
                    self.acknowledged[item["response_id"]] = item["status"]
                self.batches_done += 1
                break


def check_exact(app, responses):
    """Stored = distinct acknowledged ids; kept statistics = a recount from raw rows; scores agree."""
    store = app.extensions["scoring"].store
    stored = {r["response_id"] for r in store.iter_responses("r2018")}
    assert stored == {r["response_id"] for r in responses}
    assert store.count_responses("r2018") == len(responses)
    assert store.recount("r2018", len(RUBRIC.item_codes), fix=False) == []
    counts = store.survey_counts("r2018", len(RUBRIC.item_codes))
    raw: dict = {}
    for r in store.iter_responses("r2018"):
        key = (r["respondent_type"], r["community_id"])
        raw[key] = raw.get(key, 0) + response_count_rows(r["levels"], len(RUBRIC.item_codes))
    for (kind, community), expected in raw.items():
        np.testing.assert_array_equal(counts.get(kind, community).counts, expected)
    from scoring_service.services.results import compute_results

    with app.app_context():
        results = compute_results(app.extensions["scoring"], "r2018")
    for community in COMMUNITIES:
        n = sum(1 for r in responses if r["community_id"] == community and r["respondent_type"] == "resident")
        assert results.scores[community]["resident"]["responses"] == n


@pytest.fixture
def setup(database_url, tmp_path, client, keys, world):
    return {"database_url": database_url, "instance": tmp_path / "instance", "token": keys["admin"]}


def test_worker_killed_mid_batch(setup):
    responses = make_responses(3000, seed=1)
    uploader = Uploader(setup["token"])
    kills = []
    with LiveServer(setup["database_url"], setup["instance"], workers=2) as server:
        uploader.url = server.url
        stop = threading.Event()

        def killer():
            # while a batch is in flight, SIGKILL the workers: the one serving it dies mid-batch
            rnd = random.Random(7)
            while not stop.is_set() and len(kills) < 2:
                if uploader.batches_done < 2 * (len(kills) + 1) or not uploader.in_flight.wait(0.05):
                    time.sleep(0.005)
                    continue
                time.sleep(rnd.uniform(0.0, 0.02))
                for pid in server.worker_pids():
                    os.kill(pid, signal.SIGKILL)
                    kills.append(pid)

        thread = threading.Thread(target=killer)
        thread.start()
        try:
            uploader.upload(responses, deadline=time.monotonic() + 240)
        finally:
            stop.set()
            thread.join()
    assert kills, "no worker was killed"
    assert uploader.retries >= 1, "no batch was interrupted"
    assert len(uploader.acknowledged) == len(responses)
    check_exact(make_app(setup["database_url"], setup["instance"]), responses)


def test_whole_server_killed_and_restarted(setup):
    responses = make_responses(3000, seed=2)
    uploader = Uploader(setup["token"])
    first = LiveServer(setup["database_url"], setup["instance"], workers=2).start()
    uploader.url = first.url
    done = threading.Event()
    failure = []

    def run():
        try:
            uploader.upload(responses, deadline=time.monotonic() + 300)
        except Exception as exc:  # reported by the main thread
            failure.append(exc)
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    while uploader.batches_done < 3 and not done.is_set():
        time.sleep(0.02)
    time.sleep(0.05)
    first.kill()  # master and workers at once, mid-upload
    second = LiveServer(setup["database_url"], setup["instance"], workers=2).start()
    uploader.url = second.url
    thread.join()
    second.stop()
    assert not failure, failure
    assert uploader.retries >= 1
    assert len(uploader.acknowledged) == len(responses)
    check_exact(make_app(setup["database_url"], setup["instance"]), responses)
