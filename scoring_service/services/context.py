"""Per-process service state: the store, rubrics and the results cache."""

from __future__ import annotations

import threading
from collections import OrderedDict

from flask import current_app

from ..domain.rubric import Rubric
from ..store import Store


class ServiceState:
    """Everything a worker process shares between requests.

    The store opens its connections lazily, so creating the state before
    gunicorn forks is safe.
    """

    def __init__(self, store: Store, secret_key: str, settings: dict):
        self.store = store
        self.secret_key = secret_key
        self.settings = settings
        self._rubrics: dict[str, Rubric] = {}
        self._results: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def rubric(self, rubric_id: str) -> Rubric | None:
        """A rubric by id; cached, since a rubric never changes once stored."""
        rubric = self._rubrics.get(rubric_id)
        if rubric is None:
            body = self.store.get_rubric(rubric_id)
            if body is None:
                return None
            rubric = Rubric(body)
            self._rubrics[rubric_id] = rubric
        return rubric

    def cached_results(self, key, compute):
        """Results for ``key`` (round id and store generation), computed once."""
        with self._lock:
            if key in self._results:
                self._results.move_to_end(key)
                return self._results[key]
        value = compute()
        with self._lock:
            self._results[key] = value
            while len(self._results) > 64:
                self._results.popitem(last=False)
        return value


def state() -> ServiceState:
    return current_app.extensions["scoring"]
