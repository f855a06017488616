"""Per-process service state: the store, the settings, rubrics and the results caches.

Services receive this object explicitly; the HTTP layer finds it on the app
(``scoring_service.extensions.state``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from ..domain.rubric import Rubric
from ..store import Store


class BoundedCache:
    """A least-recently-used cache of one kind of value, with its own bound.

    Values are computed outside the lock, once: a thread that asks for a key
    another thread is computing waits for that result (gunicorn's threaded
    workers serve several requests at once, and the dashboard asks for one
    rank-interval run twice in parallel). If the computation fails, one waiter
    tries again.
    """

    def __init__(self, name: str, size: int):
        self.name = name
        self.size = size
        self._values: OrderedDict = OrderedDict()
        self._pending: dict[Hashable, threading.Event] = {}
        self._families: dict[Hashable, Hashable] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], Any], family: Hashable | None = None) -> Any:
        """The value of ``key``, computed once. ``family``: keys of one family replace each other (the same
        round at newer generation tokens: a token once replaced never comes back), so a miss drops the
        family's other values before computing, and a worker never holds a round's arrays twice."""
        while True:
            with self._lock:
                if key in self._values:
                    self._values.move_to_end(key)
                    return self._values[key]
                running = self._pending.get(key)
                if running is None:
                    running = self._pending[key] = threading.Event()
                    if family is not None:
                        for old in [k for k, f in self._families.items() if f == family and k in self._values]:
                            del self._values[old], self._families[old]
                        self._families[key] = family
                    break  # this thread computes
            running.wait()
        try:
            value = compute()
            with self._lock:
                self._values[key] = value
                while len(self._values) > self.size:
                    self._families.pop(self._values.popitem(last=False)[0], None)
        finally:
            with self._lock:
                del self._pending[key]
                if key not in self._values:  # failed: no value to replace the family's others
                    self._families.pop(key, None)
            running.set()
        return value

    def __len__(self) -> int:
        return len(self._values)


class ServiceState:
    """Everything a worker process shares between requests.

    The store opens its connections lazily, so creating the state before
    gunicorn forks is safe. Each cache holds one kind of value, so a burst of
    uncertainty requests cannot evict the arrays every ranking needs.
    """

    def __init__(self, store: Store, secret_key: str, settings: Mapping[str, Any]):
        self.store = store
        self.secret_key = secret_key
        self.settings = settings
        self._rubrics: dict[str, Rubric] = {}
        #: communities of a round year as arrays, per reference-data generation
        self.reference_arrays = BoundedCache("reference_arrays", 8)
        #: considered inspections as arrays, per round and inspection generation
        self.inspection_arrays = BoundedCache("inspection_arrays", 16)
        #: community scores of a round, per round and the generations of surveys, inspections and reference data
        self.live_scores = BoundedCache("live_scores", 16)
        #: scored rounds (live results), per round and the generations that change them (results.results_key)
        self.live_results = BoundedCache("live_results", 16)
        #: current milestone records of a round, followed through the store's change feed (SPEC §11)
        self.milestone_boards = BoundedCache("milestone_boards", 16)
        #: current funding records and disbursements of a round and its kept ledger rows (SPEC §12)
        self.ledger_boards = BoundedCache("ledger_boards", 16)
        #: communities with a construction inspection below pass, per round, inspection and reference generation
        self.construction_checks = BoundedCache("construction_checks", 16)
        #: inspection versions, rectification items and responses of a round, with its kept item rows (SPEC §13)
        self.rectification_boards = BoundedCache("rectification_boards", 16)
        #: communities with a reached 后续管理落实 milestone, per acceptance round and milestone generation
        #: (the baselines of an aftercare round's live results; a survey write changes none of it)
        self.managed_communities = BoundedCache("managed_communities", 16)
        #: each agency's deviation from the others (the anomaly report), per round and reference and
        #: inspection generation: a survey write changes none of it
        self.agency_bias = BoundedCache("agency_bias", 8)
        #: published snapshots, parsed once
        self.snapshots = BoundedCache("snapshots", 32)
        #: Monte Carlo rank intervals, per round, generation, draws and seed
        self.uncertainty = BoundedCache("uncertainty", 8)
        #: on-demand Monte Carlo runs this process does at once (CPU-bound; more wait for a 429)
        self.uncertainty_slots = threading.BoundedSemaphore(int(settings.get("UNCERTAINTY_CONCURRENCY", 1)))

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

    def setting(self, name: str, default: Any = None) -> Any:
        return self.settings.get(name, default)
