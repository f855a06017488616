"""The milestone board of a round (SPEC §11): its current milestone records, followed through the
store's change feed, with what the supervision report derives from them per community.

A board reads every version of the round once; after that each use reads only the versions written
since (``Store.milestone_changes``: after a write to one community, that community's new version),
recomputes the reach dates of the communities they touched and marks them, so that the report shapes
again only their rows. Writes by other processes are seen too: the feed is the store's.

Boards live in ``ServiceState.milestone_boards`` (one per round); use one under its ``lock``.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from ..domain import milestones as ms
from ..domain.supervision import NO_DATE
from ..store import Store
from .context import ServiceState


@dataclass(frozen=True, slots=True)
class Current:
    """What the report needs of a community's current record of one milestone."""

    version: int
    reached_on: str | None  # the record's date (None: withdrawn)
    reach: int  # day number of the effective reach date (NO_DATE: withdrawn, or a failed vote)
    votes: Mapping[str, int] | None
    management_mode: str | None

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> Current:
        reached = ms.effective_reach_date(record)
        reached_on = record.get("reached_on")
        mode = record.get("management_mode") or None
        votes = record.get("votes") or None
        if votes:  # one copy of its keys for every community's record (its own parse made its own)
            votes = {sys.intern(k): v for k, v in votes.items()}
        return cls(int(record["version"]), sys.intern(reached_on) if reached_on else None,
                   reached.toordinal() if reached else NO_DATE, votes,
                   sys.intern(mode) if isinstance(mode, str) else mode)


class Rows:
    """The report's community rows at one as-of date, as canonical JSON, each tagged with the stamp and
    flag it was shaped with: a row whose community changed since is shaped again."""

    def __init__(self, n: int):
        self.stamp = np.full(n, -1, dtype=np.int64)
        self.flag = np.zeros(n, dtype=bool)
        #: each row's canonical JSON in pieces (``supervision._kept_row``), its milestone entries shared
        self.json: list[tuple[bytes, ...] | None] = [None] * n
        self.entries: dict[bytes, bytes] = {}

    def stale(self, stamp: np.ndarray, flag: np.ndarray) -> np.ndarray:
        return np.flatnonzero((self.stamp != stamp) | (self.flag != flag))


class Layout:
    """The communities a round covers at one reference-data generation, by id, and their reach dates."""

    #: as-of dates whose shaped rows are kept (the round's default date, and one asked for)
    KEPT_DATES = 2

    def __init__(self, token: str, communities: Sequence[Mapping], records: Mapping[str, Mapping[str, Current]]):
        ordered = sorted(communities, key=lambda c: c["community_id"])
        self.token = token
        self.ids = [c["community_id"] for c in ordered]
        self.names = [c.get("name_zh") for c in ordered]
        self.district_ids = [c["district_id"] for c in ordered]
        self.position = {cid: i for i, cid in enumerate(self.ids)}
        #: day numbers of the effective reach dates, community × milestone (ms.CODES order)
        self.reach = np.full((len(self.ids), len(ms.CODES)), NO_DATE, dtype=np.int64)
        #: changes of each community's records since the layout was made
        self.stamp = np.zeros(len(self.ids), dtype=np.int64)
        self._rows: OrderedDict[tuple, Rows] = OrderedDict()
        for community_id, recorded in records.items():
            self.update(community_id, recorded)

    def update(self, community_id: str, recorded: Mapping[str, Current]) -> None:
        i = self.position.get(community_id)
        if i is None:
            return  # a community the round does not cover
        self.reach[i] = [recorded[code].reach if code in recorded else NO_DATE for code in ms.CODES]
        self.stamp[i] += 1

    def rows(self, key: tuple) -> Rows:
        """The shaped rows for ``key`` (the as-of date and the deadlines)."""
        rows = self._rows.get(key)
        if rows is None:
            rows = self._rows[key] = Rows(len(self.ids))
            while len(self._rows) > self.KEPT_DATES:
                self._rows.popitem(last=False)
        self._rows.move_to_end(key)
        return rows


class MilestoneBoard:
    """The current milestone records of one round: community → code → :class:`Current`."""

    #: versions read from the store at a time
    CHUNK = 5000

    def __init__(self, round_id: str):
        self.round_id = round_id
        self.lock = threading.Lock()
        self.cursor: int | None = None
        #: the store's milestone generation read before the last read of the feed
        self.token: str | None = None
        self.records: dict[str, dict[str, Current]] = {}
        #: one copy of each record without votes (communities share their dates and versions: a national
        #: round's 180,000 current records are a few thousand distinct ones)
        self._shared: dict[Current, Current] = {}
        self.layout: Layout | None = None

    def sync(self, store: Store, reference_token: str, communities: Sequence[Mapping]) -> set[str]:
        """Merge the versions written since the last sync (all of them the first time) and bring the
        layout to ``communities`` at ``reference_token``. Returns the communities whose records changed.

        The feed is not read when the store's milestone generation is the one read before the last
        read: a write replaces it before it is acknowledged, so none was acknowledged since."""
        touched: set[str] = set()
        token = store.generation("milestones")
        # in chunks, so that a first read holds a few thousand versions at a time, not the round's
        while token != self.token:
            versions, self.cursor = store.milestone_changes(self.round_id, self.cursor, limit=self.CHUNK)
            for record in versions:
                recorded = self.records.setdefault(sys.intern(record["community_id"]), {})
                current = recorded.get(record["code"])
                if current is None or record["version"] > current.version:
                    fresh = Current.of(record)
                    if fresh.votes is None:  # a record with votes holds a dict: not hashable, kept as it is
                        fresh = self._shared.setdefault(fresh, fresh)
                    recorded[sys.intern(record["code"])] = fresh
                    touched.add(record["community_id"])
            if len(versions) < self.CHUNK:
                self.token = token
        if self.layout is None or self.layout.token != reference_token:
            self.layout = Layout(reference_token, communities, self.records)
        else:
            for community_id in touched:
                self.layout.update(community_id, self.records[community_id])
        return touched


def board(ctx: ServiceState, round_id: str) -> MilestoneBoard:
    """The round's board from the state's cache (made empty; the first sync reads every version)."""
    return ctx.milestone_boards.get(round_id, lambda: MilestoneBoard(round_id))


def deadline_numbers(deadlines: Mapping[str, date]) -> np.ndarray:
    """The round's deadlines as day numbers in milestone order (NO_DATE: none)."""
    return np.array([deadlines[code].toordinal() if code in deadlines else NO_DATE for code in ms.CODES],
                    dtype=np.int64)
