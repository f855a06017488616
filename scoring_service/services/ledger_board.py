"""The ledger board of a round (SPEC §12): its current funding records and disbursements, followed
through the store's change feeds, with each community's ledger row kept as canonical JSON.

A board reads every funding version and disbursement of the round once; after that each use reads
only those written since (``Store.funding_changes`` and ``Store.disbursement_changes``: after a
funding write, that community's new version), by this or any other process. Milestone reach dates
come from the round's milestone board (:mod:`.milestone_board`). A community's row at an as-of date
is shaped again only when its funding, its payments, its milestones or (when tranche 3 needs it) its
grade changed.

Boards live in ``ServiceState.ledger_boards`` (one per round); use one under its ``lock``.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import date

import numpy as np

from ..domain import ledger as lg
from ..domain.canonical import Deflated
from ..domain import milestones as ms
from ..domain.supervision import NO_DATE
from ..store import Store
from .context import ServiceState

#: the milestones a community's ledger reads (each tranche's; tranche 3's is ``settled``)
LEDGER_CODES = tuple(dict.fromkeys(tr.milestone for tr in lg.TRANCHES))
#: their columns in the milestone board's reach dates (ms.CODES order)
LEDGER_COLUMNS = [ms.CODES.index(code) for code in LEDGER_CODES]
#: the Totals fields a community adds to its district's and the city's sums
TOTAL_FIELDS = tuple(lg.Totals().as_dict())


class _NotNeeded:
    """The grade of a row whose ledger does not read one."""


NOT_NEEDED = _NotNeeded()


def reached_dates(reach: np.ndarray) -> dict[str, date | None]:
    """A community's reach day numbers (LEDGER_CODES order) as the ledger's ``reached``."""
    return {code: None if day == NO_DATE else date.fromordinal(day) for code, day in zip(LEDGER_CODES, reach)}


class Kept:
    """The rows of one as-of date for one milestone layout (the covered communities, by id): each
    row's canonical JSON and its Totals, tagged with the stamps (and grade) it was shaped with."""

    def __init__(self, layout: object, n: int):
        self.layout = layout
        self.funding_stamp = np.full(n, -1, dtype=np.int64)
        self.milestone_stamp = np.full(n, -1, dtype=np.int64)
        self.grade: list[object] = [NOT_NEEDED] * n
        #: each row's canonical JSON, deflated against the first row made (canonical.Deflated)
        self.json: list[Deflated | None] = [None] * n
        self.zdict: bytes | None = None
        #: Totals of each community (TOTAL_FIELDS order; zero without a funding record)
        self.totals = np.zeros((n, len(TOTAL_FIELDS)), dtype=np.int64)


class LedgerBoard:
    """The current funding record and the disbursements of every community of one round."""

    #: versions read from the store at a time
    CHUNK = 5000
    #: as-of dates whose rows are kept (the round's default date, and one asked for)
    KEPT_DATES = 2

    def __init__(self, round_id: str):
        self.round_id = round_id
        self.lock = threading.Lock()
        self.funding_cursor: int | None = None
        self.disbursement_cursor: int | None = None
        #: community → (version, its current funding)
        self.funding: dict[str, tuple[int, lg.Funding]] = {}
        #: community → tranche → payment
        self.payments: dict[str, dict[int, lg.Payment]] = {}
        #: changes of each community's funding or payments since the board was made
        self.stamp: dict[str, int] = {}
        self._kept: OrderedDict[date, Kept] = OrderedDict()

    def sync(self, store: Store) -> set[str]:
        """Merge the funding versions and disbursements written since the last sync (all of them the
        first time). Returns the communities whose funding or payments changed."""
        touched: set[str] = set()
        while True:
            versions, self.funding_cursor = store.funding_changes(self.round_id, self.funding_cursor,
                                                                  limit=self.CHUNK)
            for record in versions:
                community_id = sys.intern(record["community_id"])
                current = self.funding.get(community_id)
                if current is None or record["version"] > current[0]:
                    self.funding[community_id] = (int(record["version"]), lg.Funding.of(record))
                    touched.add(community_id)
            if len(versions) < self.CHUNK:
                break
        while True:
            paid, self.disbursement_cursor = store.disbursement_changes(self.round_id, self.disbursement_cursor,
                                                                        limit=self.CHUNK)
            for d in paid:
                community_id = sys.intern(d["community_id"])
                self.payments.setdefault(community_id, {})[int(d["tranche"])] = lg.Payment(
                    d["amount_fen"], date.fromisoformat(d["paid_on"]), d["disbursement_id"], d.get("voucher"))
                touched.add(community_id)
            if len(paid) < self.CHUNK:
                break
        for community_id in touched:
            self.stamp[community_id] = self.stamp.get(community_id, 0) + 1
        return touched

    def kept(self, t: date, layout: object, n: int) -> Kept:
        """The kept rows at ``t`` for ``layout`` (made afresh when the layout changed)."""
        kept = self._kept.get(t)
        if kept is None or kept.layout is not layout:
            kept = self._kept[t] = Kept(layout, n)
            while len(self._kept) > self.KEPT_DATES:
                self._kept.popitem(last=False)
        self._kept.move_to_end(t)
        return kept


def board(ctx: ServiceState, round_id: str) -> LedgerBoard:
    """The round's board from the state's cache (made empty; the first sync reads everything)."""
    return ctx.ledger_boards.get(round_id, lambda: LedgerBoard(round_id))


def funding_stamps(board_: LedgerBoard, ids: list[str]) -> np.ndarray:
    stamp = board_.stamp
    return np.fromiter((stamp.get(cid, 0) for cid in ids), dtype=np.int64, count=len(ids))


def totals_of(ledger: lg.CommunityLedger) -> list[int]:
    totals = lg.Totals()
    totals.add(ledger)
    return list(totals.as_dict().values())


def paid_of(payments: Mapping[int, lg.Payment] | None) -> Mapping[int, lg.Payment]:
    return payments if payments is not None else {}
