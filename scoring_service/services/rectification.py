"""Rectification items (整改台账, SPEC §13): the districts' responses, the round's list of items at an
as-of date, and the per-district counts the supervision report shows (§11).

Who: a response is an admin's or the district key's of the item's community; the list is read by
leadership and admins (every item), a district key (its own district's; asking for another → 403)
and an agency (the items of its own inspections).

The list follows what changed (a board per round in ``ServiceState.rectification_boards``):

* inspections — when the store's "inspections" generation changed, the current version number of
  every inspection of the round is read (one small query) and only the inspections whose number
  changed are read again; the items of their communities are derived again (another inspection of
  a community can verify or reopen an item, so a community is the unit);
* responses — read through the store's change feed (``rectification_response_changes``) only when
  the "rectifications" generation changed: after one response, that response;
* each community's item rows are kept as canonical JSON per as-of date (two dates) and shaped again
  only when the community's items, its responses or the reference data changed.
"""

from __future__ import annotations

import bisect
import json
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, NamedTuple

import numpy as np

from ..domain import rectification as rx
from ..domain.canonical import array_length, array_pieces, canonical_bytes, deflate, digest, inflate, split_at
from ..domain.rubric import Rubric
from ..domain.timeutil import now_stored
from ..store import Outcome, Store
from .clock import today
from .context import ServiceState
from .errors import Conflict, Forbidden, Invalid, NotFound
from .keys import Principal, check_district_scope
from .results import round_reference
from . import attachments, supervision
from .rounds import get_round

#: roles that pass the district check for any district (a district key passes for its own)
WRITERS = ("admin",)
READERS = ("admin", "leadership")
#: most attachments one response carries (as a check's evidence, SPEC §13)
MAX_EVIDENCE = 20
ATTACHMENTS = "/api/v1/attachments"


def evidence_links(hashes: Iterable[str], has_thumbnail: Callable[[str], bool]) -> list[dict]:
    """Attachments' links: the file and its thumbnail (None when it has none: a PDF, or a file not stored)."""
    return [{"sha256": h, "url": f"{ATTACHMENTS}/{h}",
             "thumbnail_url": f"{ATTACHMENTS}/{h}/thumbnail" if has_thumbnail(h) else None} for h in hashes]


def thumbnails(store: Store, known: dict[str, bool] | None = None) -> Callable[[str], bool]:
    """Whether a file has a thumbnail, looked up once per hash (``known`` keeps the answers of files that
    exist: a file never changes, its hash names its bytes)."""
    known = {} if known is None else known

    def has_thumbnail(sha256: str) -> bool:
        if sha256 not in known:
            record = store.get_attachment(sha256)
            if record is None:
                return False  # perhaps not yet copied back after a restore: asked again next time
            known[sha256] = bool(record.get("has_thumbnail"))
        return known[sha256]

    return has_thumbnail


# -- one item from the store (the write path) ------------------------------------------------------

def _stored_timeline(ctx: ServiceState, round_: dict, item_id: str) -> rx.Timeline:
    """The item as its own inspection's versions open it (its opening does not depend on other
    inspections); NotFound when no version of that inspection fails that check."""
    parts = rx.split_item_id(item_id)
    stored = ctx.store.get_inspection(round_["round_id"], parts[0]) if parts else None
    if stored is not None:
        header = {name: stored[name] for name in ("inspection_id", "community_id", "agency_id")}
        versions = [rx.Version.of({**v, **header}) for v in stored["versions"]]
        settings = rx.round_settings(round_)
        rule = rx.FailRule(ctx.rubric(round_["rubric_id"]), settings.threshold)
        for timeline in rx.community_timelines(versions, rule, settings.days):
            if timeline.id == item_id:
                return timeline
    raise NotFound("rectification item", item_id)


def _response_view(ctx: ServiceState, record: Mapping) -> dict:
    return {"response_id": record["response_id"], "round_id": record["round_id"], "item_id": record["item_id"],
            "community_id": record["community_id"], "district_id": record["district_id"],
            "fixed_on": record["fixed_on"], "note": record["note"],
            "evidence": evidence_links(record["evidence"], thumbnails(ctx.store)),
            "key_id": record.get("key_id"), "recorded_at": record["recorded_at"]}


def response_hash(record: Mapping) -> str:
    """What makes two responses with one id the same: the round, the item and what was answered."""
    return digest({name: record[name] for name in ("response_id", "round_id", "item_id", "fixed_on", "note",
                                                   "evidence")})


def respond(ctx: ServiceState, round_id: str, item_id: str, data: Mapping[str, Any],
            principal: Principal) -> tuple[Outcome, dict]:
    """Record a district's response to an item: CREATED, or DUPLICATE for an identical replay (same
    ``response_id`` and content; whatever today's date). NotFound for an unknown round or item,
    Forbidden for a district key of another district, Conflict ``conflict`` for the id used with other
    content, Invalid naming ``fixed_on`` (after today, or before the item opened) or ``evidence``."""
    round_ = get_round(ctx, round_id)
    timeline = _stored_timeline(ctx, round_, item_id)
    community = ctx.store.get_community(timeline.community_id)
    district_id = community["district_id"] if community else None
    check_district_scope(principal, district_id, WRITERS)
    record = {"response_id": str(data["response_id"]), "round_id": round_id, "item_id": item_id,
              "inspection_id": timeline.inspection_id, "check_code": timeline.check_code,
              "community_id": timeline.community_id, "district_id": district_id,
              "fixed_on": data["fixed_on"].isoformat(), "note": data["note"],
              "evidence": list(dict.fromkeys(data["evidence"])),  # a hash given twice counts once
              "key_id": principal.key_id, "recorded_at": now_stored()}
    record["content_hash"] = response_hash(record)
    stored = ctx.store.get_rectification_response(record["response_id"])
    if stored is not None:
        if stored["content_hash"] != record["content_hash"]:
            raise Conflict("conflict", f"response {record['response_id']} exists with other content")
        return Outcome.DUPLICATE, _response_view(ctx, stored)

    day = today(ctx)
    fixed_on = data["fixed_on"]
    if fixed_on > day:
        raise Invalid.field("fixed_on", f"must not be after today ({day.isoformat()}, China time)")
    if fixed_on < timeline.opened_on:
        raise Invalid.field("fixed_on", f"must not be before the item opened ({timeline.opened_on.isoformat()})")
    attachments.check_readable(ctx, principal, record["evidence"], "evidence")
    # the references first: a crash between them and the response only lets the item's district and
    # agency read photos sent for it, and a retry of the response completes it. They grant the district
    # and the agency whose inspection opened the item (its inspector verifies the fix, the 复验)
    ctx.store.add_attachment_refs([
        {"sha256": h, "round_id": round_id, "community_id": timeline.community_id, "district_id": district_id,
         "agency_id": timeline.agency_id, "source": "rectification", "source_id": record["response_id"]}
        for h in record["evidence"]])
    outcome = ctx.store.add_rectification_response(record)
    if outcome is Outcome.CONFLICT:
        raise Conflict("conflict", f"response {record['response_id']} exists with other content")
    if outcome is Outcome.DUPLICATE:  # an identical write won a race with this one
        return outcome, _response_view(ctx, ctx.store.get_rectification_response(record["response_id"]))
    return outcome, _response_view(ctx, record)


# -- the round's board -------------------------------------------------------------------------------

class Row(NamedTuple):
    """One item at one as-of date, as the list filters and counts it, with its JSON."""

    id: str
    community_id: str
    district_id: str | None
    agency_id: str
    status: str
    overdue: bool
    days: int | None  # from opening to verification
    json: bytes | PackedItem  # b"" in rows kept without their JSON (Kept.json); see PackedItem


#: an evidence link's canonical JSON (from :func:`evidence_links`): a JSON string cannot hold an unescaped
#: ``"``, so this matches link objects only, never text inside a note or a name
_LINK = re.compile(rb'\{"sha256":"[^"\\]*","thumbnail_url":(?:null|"[^"\\]*"),"url":"[^"\\]*"\}')


def kept_json(item: bytes, links: dict[bytes, bytes]) -> bytes | tuple[bytes, ...]:
    """An item's canonical JSON as kept on the board: its evidence links (some half of a national list's
    bytes, the same file's link repeated across the items, responses and verifying versions that show it)
    are the board's one copy of each link (``links``), between the item's own pieces; :func:`item_bytes`
    joins them again, the same bytes."""
    pieces: list[bytes] = []
    start = 0
    for match in _LINK.finditer(item):
        link = match.group()
        pieces += (item[start:match.start()], links.setdefault(link, link))
        start = match.end()
    if not pieces:
        return item
    pieces.append(item[start:])
    return tuple(pieces)


#: where a link stood in a packed item's own bytes: canonical JSON never holds a NUL byte (a control
#: character in a string is escaped), so splitting at it gives back the pieces exactly
_LINK_MARK = b"\x00"


class PackedItem:
    """An item's kept JSON, compressed (issue 18 item 4, memory): its own bytes, with a NUL where each
    evidence link stood, deflated against the board's dictionary (the first item it packed: items repeat
    their keys and much of their values, so a national list's own bytes, some 29 MB, keep in about 7 MB),
    the board's one copy of each of its links (:func:`kept_json`), and the length of its JSON.
    :meth:`pieces` inflates them again when the item is sent (some 2 µs an item)."""

    __slots__ = ("length", "deflated", "links", "zdict")

    def __init__(self, item: bytes, links: dict[bytes, bytes], zdict: bytes):
        kept = kept_json(item, links)
        own, self.links = ((kept,), ()) if isinstance(kept, bytes) else (kept[0::2], kept[1::2])
        self.deflated = deflate(_LINK_MARK.join(own), zdict)
        self.length, self.zdict = len(item), zdict

    def pieces(self) -> tuple[bytes, ...]:
        """The item's canonical JSON in pieces: its own bytes between its links."""
        own = inflate(self.deflated, self.zdict).split(_LINK_MARK)
        if not self.links:
            return tuple(own)
        pieces: list[bytes] = [b""] * (2 * len(own) - 1)
        pieces[0::2], pieces[1::2] = own, self.links
        return tuple(pieces)


def item_bytes(kept: bytes | tuple[bytes, ...] | PackedItem) -> bytes:
    """A kept item's canonical JSON (see :func:`kept_json` and :class:`PackedItem`)."""
    if isinstance(kept, PackedItem):
        kept = kept.pieces()
    return kept if isinstance(kept, bytes) else b"".join(kept)


class Table:
    """Every item of the round at one as-of date, by community then id: their JSON, and what the filters
    and counts read as arrays (codes of districts, agencies and communities, in the order first seen).

    A community's rows are one block; when a change keeps its number of rows (a response, a passing
    re-inspection) the block is written over in place, so that one write costs its community's rows only."""

    def __init__(self, order: list[str], communities: Mapping[str, list[Row]]):
        self.codes: dict[str, dict[str, int]] = {"district": {}, "agency": {}, "community": {}}
        self.blocks: dict[str, tuple[int, int]] = {}
        rows: list[Row] = []
        for community_id in order:
            block = communities[community_id]
            self.blocks[community_id] = (len(rows), len(rows) + len(block))
            rows += block
        n = len(rows)
        self.json: list[bytes | tuple[bytes, ...]] = [r.json for r in rows]
        self.district = np.empty(n, dtype=np.int32)
        self.agency = np.empty(n, dtype=np.int32)
        self.community = np.empty(n, dtype=np.int32)
        self.status = np.empty(n, dtype=np.int8)
        self.overdue = np.empty(n, dtype=bool)
        self.days = np.empty(n, dtype=np.int64)
        self._write(0, rows)

    def _code(self, kind: str, name: str | None) -> int:
        if name is None:
            return -1
        codes = self.codes[kind]
        code = codes.get(name)
        if code is None:
            code = codes[name] = len(codes)
        return code

    def _write(self, start: int, rows: list[Row]) -> None:
        end = start + len(rows)
        self.json[start:end] = [r.json for r in rows]
        self.district[start:end] = [self._code("district", r.district_id) for r in rows]
        self.agency[start:end] = [self._code("agency", r.agency_id) for r in rows]
        self.community[start:end] = [self._code("community", r.community_id) for r in rows]
        self.status[start:end] = [STATUS_NUMBERS[r.status] for r in rows]
        self.overdue[start:end] = [r.overdue for r in rows]
        self.days[start:end] = [-1 if r.days is None else r.days for r in rows]
        self._all_counts: dict[str, dict] | None = None
        self._overdue: dict[str, list[str]] | None = None

    def replace(self, community_id: str, rows: list[Row]) -> bool:
        """Write a community's new rows over its block: False (nothing written) when their number changed."""
        block = self.blocks.get(community_id)
        if block is None or block[1] - block[0] != len(rows):
            return False
        self._write(block[0], rows)
        return True

    def rows(self, community_id: str) -> list[Row]:
        """A community's rows as written (without their ids, which the table does not read); none for a
        community it does not hold."""
        start, end = self.blocks.get(community_id, (0, 0))
        if start == end:
            return []
        names = {kind: list(codes) for kind, codes in self.codes.items()}
        return [Row("", community_id, None if d < 0 else names["district"][d], names["agency"][a],
                    rx.STATUSES[s], o, None if n < 0 else n, j)
                for d, a, s, o, n, j in zip(self.district[start:end].tolist(), self.agency[start:end].tolist(),
                                            self.status[start:end].tolist(), self.overdue[start:end].tolist(),
                                            self.days[start:end].tolist(), self.json[start:end])]

    @property
    def district_ids(self) -> list[str]:
        return list(self.codes["district"])

    def mask(self, district_id: str | None = None, agency_id: str | None = None, community_id: str | None = None,
             status: str | None = None, overdue: bool | None = None) -> np.ndarray:
        """The rows the filters select (a name the table does not hold selects nothing)."""
        selected = np.ones(len(self.json), dtype=bool)
        for value, kind, column in ((district_id, "district", self.district), (agency_id, "agency", self.agency),
                                    (community_id, "community", self.community)):
            if value is not None:
                selected &= column == self.codes[kind].get(value, -2)
        if status is not None:
            selected &= self.status == STATUS_NUMBERS[status]
        if overdue is not None:
            selected &= self.overdue == overdue
        return selected

    def counts(self, selected: np.ndarray, district_ids: Iterable[str]) -> dict[str, dict]:
        """The counts of SPEC §13 of each district (zeros for one without a selected item)."""
        out = {}
        for district_id in district_ids:
            k = self.codes["district"].get(district_id)
            if k is None:
                out[district_id] = no_items()
                continue
            inside = selected & (self.district == k)
            tally = np.bincount(self.status[inside], minlength=len(rx.STATUSES)).tolist()
            verified = self.days[inside & (self.status == STATUS_NUMBERS[rx.VERIFIED])].tolist()
            out[district_id] = {**dict(zip(rx.STATUSES, tally)), "overdue": int(self.overdue[inside].sum()),
                                "median_days_to_verification": rx.median_days(verified)}
        return out

    def all_counts(self, district_ids: list[str]) -> dict[str, dict]:
        """:meth:`counts` of every item (kept: the supervision report and the full list ask for it)."""
        if self._all_counts is None or list(self._all_counts) != district_ids:
            self._all_counts = self.counts(np.ones(len(self.json), dtype=bool), district_ids)
        return self._all_counts

    def overdue_communities(self) -> dict[str, list[str]]:
        """district → its communities with an overdue item, by id (kept until the rows change)."""
        if self._overdue is None:
            districts, communities = list(self.codes["district"]), list(self.codes["community"])
            found: dict[str, set[str]] = {}
            for d, c in zip(self.district[self.overdue].tolist(), self.community[self.overdue].tolist()):
                if d >= 0:
                    found.setdefault(districts[d], set()).add(communities[c])
            self._overdue = {d: sorted(ids) for d, ids in sorted(found.items())}
        return self._overdue


#: a status's number in a Table
STATUS_NUMBERS = {status: k for k, status in enumerate(rx.STATUSES)}


class Kept:
    """The item rows of every community at one as-of date, and their :class:`Table`, as of a board version."""

    def __init__(self):
        self.version = -1  # the board version the rows were brought to
        self.reference_token: str | None = None
        self.table: Table | None = None
        #: whether the rows carry their JSON (only the list needs it: the supervision report's counts and
        #: overdue communities do not, so a report alone never holds the items' JSON, some 60 MB nationally)
        self.json = False


_NO_EVIDENCE: dict = {}


#: a score absent from a version, among scores kept as tenths
_NO_TENTHS = np.iinfo(np.int16).min


def _packed(scores: np.ndarray) -> bytes:
    """A version's scores (float64, NaN: none) as bytes: int16 tenths when every score is a whole number of
    tenths that gives back exactly the same float (as inspectors' scores are: 2.7, 5), else float64. A
    national round's versions are a quarter of the size as tenths."""
    tenths = np.rint(scores * 10)
    scored = ~np.isnan(scores)
    if (np.abs(tenths[scored]) < 2 ** 15 - 1).all() and (tenths[scored] / 10 == scores[scored]).all() \
            and not np.signbit(scores[scored]).any():
        return np.where(scored, tenths, _NO_TENTHS).astype(np.int16).tobytes()
    return scores.tobytes()


def _unpacked(packed: bytes, n: int) -> np.ndarray:
    """:func:`_packed`'s scores again (float64, NaN: none), the same floats."""
    if len(packed) == 8 * n:
        return np.frombuffer(packed)
    tenths = np.frombuffer(packed, dtype=np.int16)
    return np.where(tenths == _NO_TENTHS, np.nan, tenths / 10)


class Chain:
    """One inspection's versions as the rules read them (:func:`rx.community_timelines`), compact: per
    version of the acceptance stage its number, time and the scores of the rubric's checks as float64
    bytes (NaN: not a score, so never read), which of them were ints (so the points shown keep their
    JSON form), and the evidence of the scored checks that have any. A version holding a score that float64
    cannot carry exactly keeps its checks as read. Versions of other stages are left out (the rules
    ignore them)."""

    __slots__ = ("community_id", "agency_id", "inspection_id", "rows")

    def __init__(self, inspection_id: str, community_id: str, agency_id: str, rows: list[tuple]):
        self.inspection_id, self.community_id, self.agency_id, self.rows = inspection_id, community_id, agency_id, rows

    @classmethod
    def of(cls, records: list[Mapping], codes: list[str]) -> Chain:
        first = records[0]
        rows = []
        for record in records:
            if rx.stage_of(record) != rx.STAGE:
                continue
            checks = record.get("checks") or {}
            evidence = record.get("check_evidence") or {}
            scores = np.full(len(codes), np.nan)
            ints = 0
            exact = None
            kept_evidence = {}
            for k, code in enumerate(codes):
                value = checks.get(code)
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                if isinstance(value, int):
                    ints |= 1 << k
                    exact = exact or (None if abs(value) < 2 ** 53 else checks)
                elif value != value or value in (float("inf"), float("-inf")):
                    exact = checks
                scores[k] = value
                if evidence.get(code):
                    kept_evidence[code] = tuple(sys.intern(h) if isinstance(h, str) else h for h in evidence[code])
            rows.append((int(record["version"]), sys.intern(record["inspected_at"]), _packed(scores), ints,
                         kept_evidence or _NO_EVIDENCE, exact))
        return cls(sys.intern(str(first["inspection_id"])), sys.intern(first["community_id"]),
                   sys.intern(first["agency_id"]), rows)

    def versions(self, codes: list[str]) -> list[rx.Version]:
        out = []
        for number, inspected_at, scores, ints, evidence, exact in self.rows:
            if exact is None:
                values = _unpacked(scores, len(codes)).tolist()
                exact = {code: (int(x) if ints >> k & 1 else x) for k, (code, x) in enumerate(zip(codes, values))
                         if x == x}
            out.append(rx.Version(self.inspection_id, self.community_id, self.agency_id, number, inspected_at,
                                  exact, evidence))
        return out


class RectificationBoard:
    """The versions of a round's inspections, the items they open, the responses, and the kept rows."""

    #: responses read from the store at a time
    CHUNK = 5000
    #: inspections whose versions are read from the store at a time
    INSPECTION_CHUNK = 1000
    #: as-of dates whose rows are kept (the round's default date, and one asked for)
    KEPT_DATES = 2

    def __init__(self, round_id: str, rubric: Rubric, settings: rx.Settings):
        self.round_id = round_id
        self.lock = threading.Lock()
        self.rule = rx.FailRule(rubric, settings.threshold)
        self.days = settings.days
        self.inspection_token: str | None = None
        self.numbers: dict[str, int] = {}
        self.codes = list(rubric.checks)  # the rubric's checks: the columns of a Chain's scores
        self.chains: dict[str, Chain] = {}  # inspection → its versions, compact
        self.inspections_of: dict[str, set[str]] = {}  # community → its inspections
        self.timelines: dict[str, list[rx.Timeline]] = {}  # community → its items, by id
        self.response_token: str | None = None
        self.response_cursor: int | None = None
        self.responses: dict[str, list[rx.Response]] = {}  # item → its responses
        self.notes: dict[str, str] = {}  # a response's note → its one copy (districts repeat their texts)
        self.order: list[str] = []  # the communities with items, by id
        self.thumbnails: dict[str, bool] = {}  # attachment → whether it has a thumbnail
        self.links: dict[bytes, bytes] = {}  # an evidence link's JSON → its one copy in the kept rows
        #: the kept items' deflate dictionary: the own bytes of the first item packed (PackedItem)
        self.zdict: bytes | None = None
        #: changes so far; the log holds (version, community) of the latest LOG changes, oldest first
        self.version = 0
        self.log_versions: list[int] = []
        self.log_ids: list[str] = []
        self._kept: OrderedDict[date, Kept] = OrderedDict()
        self._communities: tuple[str | None, dict[str, Mapping]] = (None, {})

    #: changes the log keeps; kept rows further behind are all shaped again
    LOG = 100_000

    def _touch(self, communities: Iterable[str]) -> None:
        for community_id in sorted(communities):
            self.version += 1
            self.log_versions.append(self.version)
            self.log_ids.append(community_id)
        if len(self.log_versions) > self.LOG:
            del self.log_versions[:-self.LOG // 2], self.log_ids[:-self.LOG // 2]

    def communities(self, reference_token: str, communities: Iterable[Mapping]) -> dict[str, Mapping]:
        """The round's communities by id at ``reference_token`` (made once per token)."""
        if self._communities[0] != reference_token:
            self._communities = (reference_token, {c["community_id"]: c for c in communities})
        return self._communities[1]

    def changed_since(self, version: int) -> set[str] | None:
        """The communities changed after board version ``version``; None when the log no longer reaches it."""
        if self.log_versions and self.log_versions[0] > version + 1:
            return None
        return set(self.log_ids[bisect.bisect_right(self.log_versions, version):])

    def sync(self, store: Store) -> None:
        """Read what was written since the last sync (everything the first time)."""
        touched: set[str] = set()
        token = store.generation("inspections")
        if token != self.inspection_token:
            numbers = store.inspection_version_numbers(self.round_id)
            changed = [iid for iid, n in numbers.items() if self.numbers.get(iid) != n]
            # read a chunk of inspections at a time, each kept compact (see Chain): the parsed versions of
            # a national round's inspections (hundreds of MB) are never held at once
            for start in range(0, len(changed), self.INSPECTION_CHUNK):
                fresh: dict[str, list[Mapping]] = {}
                for record in store.inspection_histories(self.round_id, changed[start:start + self.INSPECTION_CHUNK]):
                    fresh.setdefault(record["inspection_id"], []).append(record)
                for iid, records in fresh.items():
                    chain = self.chains[iid] = Chain.of(records, self.codes)
                    self.numbers[iid] = max(int(r["version"]) for r in records)  # what was read, whatever numbers said
                    self.inspections_of.setdefault(chain.community_id, set()).add(iid)
                    touched.add(chain.community_id)
                del fresh
            for community_id in touched:
                versions = [v for iid in sorted(self.inspections_of[community_id])
                            for v in self.chains[iid].versions(self.codes)]
                self.timelines[community_id] = rx.community_timelines(versions, self.rule, self.days)
            if touched:
                self.order = sorted(community_id for community_id, items in self.timelines.items() if items)
            self.inspection_token = token
        token = store.generation("rectifications")
        while token != self.response_token:
            records, self.response_cursor = store.rectification_response_changes(
                self.round_id, self.response_cursor, limit=self.CHUNK)
            for record in records:
                response = rx.Response.of(record, self.notes)
                answers = self.responses.setdefault(response.item_id, [])
                if all(r.response_id != response.response_id for r in answers):
                    answers.append(response)
                    touched.add(record["community_id"])
            if len(records) < self.CHUNK:
                self.response_token = token
        self._touch(touched)

    def pack(self, item: bytes) -> PackedItem:
        """An item's JSON as kept on the board (:class:`PackedItem`), its links shared."""
        if self.zdict is None:  # the first item's own bytes, its links marked, as PackedItem deflates them
            kept = kept_json(item, {})
            self.zdict = _LINK_MARK.join(kept[0::2]) if isinstance(kept, tuple) else kept
        return PackedItem(item, self.links, self.zdict)

    def kept(self, t: date) -> Kept:
        kept = self._kept.get(t)
        if kept is None:
            kept = self._kept[t] = Kept()
            while len(self._kept) > self.KEPT_DATES:
                self._kept.popitem(last=False)
        self._kept.move_to_end(t)
        return kept


def board(ctx: ServiceState, round_: dict) -> RectificationBoard:
    """The round's board from the state's cache (made empty; the first sync reads everything)."""
    settings = rx.round_settings(round_)
    key = (round_["round_id"], round_["rubric_id"], settings)
    return ctx.rectification_boards.get(
        key, lambda: RectificationBoard(round_["round_id"], ctx.rubric(round_["rubric_id"]), settings))


# -- shaping -------------------------------------------------------------------------------------

def _item_json(state: rx.ItemState, district_id: str | None, community: Mapping | None, rubric: Rubric,
               has_thumbnail: Callable[[str], bool]) -> dict:
    timeline = state.timeline

    def links(hashes: Iterable[str]) -> list[dict]:
        return evidence_links(hashes, has_thumbnail)

    check = rubric.checks[timeline.check_code]
    verifying = None
    if state.verifying is not None:
        verifying = {**state.verifying.ref(), "evidence": links(state.verifying.evidence)}
    return {
        "id": timeline.id, "community_id": timeline.community_id,
        "community_name_zh": (community or {}).get("name_zh"), "district_id": district_id,
        "inspection_id": timeline.inspection_id, "agency_id": timeline.agency_id,
        "check_code": timeline.check_code, "item_code": check["item"],
        "check_text_zh": check.get("text_zh"), "check_text_en": check.get("text_en"),
        "severity": timeline.severity, "points": state.failing.points, "max_points": timeline.max_points,
        "opened_on": timeline.opened_on.isoformat(), "due_on": timeline.due_on.isoformat(),
        "status": state.status, "overdue": state.overdue,
        "verified_on": state.verified_on.isoformat() if state.verified_on else None,
        "days_to_verification": state.days_to_verification,
        "evidence": links(state.failing.evidence),
        "responses": [{"response_id": r.response_id, "fixed_on": r.fixed_on.isoformat(), "note": r.note,
                       "evidence": links(r.evidence), "key_id": r.key_id, "recorded_at": r.recorded_at}
                      for r in state.responses],
        "verifying": verifying,
        "history": list(state.history),
    }


def _community_rows(b: RectificationBoard, community_id: str, t: date, district_id: str | None,
                    community: Mapping | None, rubric: Rubric, has_thumbnail: Callable[[str], bool],
                    with_json: bool = True) -> list[Row]:
    rows = []
    for timeline in b.timelines.get(community_id, ()):
        state = rx.item_at(timeline, b.responses.get(timeline.id, ()), t)
        if state is not None:
            rows.append(Row(timeline.id, community_id, district_id, timeline.agency_id, state.status, state.overdue,
                            state.days_to_verification,
                            b.pack(canonical_bytes(_item_json(state, district_id, community, rubric,
                                                              has_thumbnail)))
                            if with_json else b""))
    return rows


@dataclass
class Prepared:
    t: date
    district_names: dict[str, str | None]
    districts: list[str]  # the round's districts and any with items, by id
    table: Table  # every item at t


def _prepare(ctx: ServiceState, round_: dict, t: date, with_json: bool = True) -> Prepared:
    """Every item of the round at ``t``: the board synced, the rows of the communities changed since they
    were kept shaped again (all of them when the reference data changed, or when ``with_json`` asks for
    the items' JSON and the rows were kept without it)."""
    reference_token = ctx.store.generation("reference")
    reference = round_reference(ctx, round_, reference_token)
    b = board(ctx, round_)
    with b.lock:
        b.sync(ctx.store)
        kept = b.kept(t)
        stale = b.changed_since(kept.version) if kept.reference_token == reference_token else None
        with_json = with_json or kept.json  # rows kept with their JSON keep it
        if with_json and not kept.json:
            stale = None
        old = kept.table
        if stale is None:  # everything
            old, stale = None, set(b.order)
        if stale or kept.table is None:
            communities = b.communities(reference_token, reference.communities)
            rubric = ctx.rubric(round_["rubric_id"])
            has_thumbnail = thumbnails(ctx.store, b.thumbnails)
            whole = old is None
            fresh: dict[str, list[Row]] = {}  # the stale communities' rows (the table keeps no rows of its own)
            for community_id in stale:
                community = communities.get(community_id)
                rows = fresh[community_id] = _community_rows(
                    b, community_id, t, community["district_id"] if community else None, community, rubric,
                    has_thumbnail, with_json)
                whole = whole or not old.replace(community_id, rows)
            if whole or len(old.blocks) != len(b.order):  # rows added or taken away: made again
                kept.table = Table(b.order, {c: fresh[c] if c in fresh else old.rows(c) for c in b.order})
            del fresh
        kept.version, kept.reference_token, kept.json = b.version, reference_token, with_json
        table = kept.table
    districts = sorted(set(round_.get("quotas") or {}) | set(table.district_ids))
    return Prepared(t, reference.district_names, districts, table)


def no_items() -> dict:
    """The counts of a district without an item."""
    return rx.counts(())


@dataclass(frozen=True)
class Summary:
    """What the supervision report takes at ``t``: counts by district, communities with an overdue item."""

    counts: dict[str, dict]
    overdue: dict[str, list[str]]


def summary(ctx: ServiceState, round_: dict, t: date) -> Summary:
    """The per-district counts and the communities with an overdue item at ``t`` (every district of the
    round, zeros included)."""
    prepared = _prepare(ctx, round_, t, with_json=False)
    return Summary(prepared.table.all_counts(prepared.districts), prepared.table.overdue_communities())


def _scope(ctx: ServiceState, round_id: str, principal: Principal | None,
           district_id: str | None) -> tuple[dict, str | None, str | None]:
    """The round, the district the caller may see (None: all) and the agency whose items it may see."""
    round_ = get_round(ctx, round_id)
    agency_id = None
    if principal is not None:
        if principal.role == "district":
            if district_id not in (None, principal.district_id):
                raise Forbidden("a district key reads its own district's rectification items only")
            district_id = principal.district_id
        elif principal.role == "agency":
            agency_id = principal.agency_id
        elif principal.role not in READERS:
            raise Forbidden(f"the {principal.role} role may not read rectification items")
    return round_, district_id, agency_id


def _list_parts(ctx: ServiceState, round_id: str, principal: Principal | None, *, as_of: date | None = None,
                status: str | None = None, district_id: str | None = None, community_id: str | None = None,
                overdue: bool | None = None) -> tuple[bytes, list[bytes], bytes]:
    """The list's JSON in three parts: what goes before the items' array, the selected items' kept JSON
    (:func:`kept_json`; a list of its own: kept rows written over later do not change it) and what goes
    after."""
    round_, district_id, agency_id = _scope(ctx, round_id, principal, district_id)
    t = supervision.as_of_date(ctx, round_, as_of)
    prepared = _prepare(ctx, round_, t)
    table = prepared.table
    districts = [d for d in prepared.districts if district_id is None or d == district_id]
    if district_id is None and agency_id is None:
        counts = table.all_counts(districts)
    else:
        counts = table.counts(table.mask(district_id=district_id, agency_id=agency_id), districts)
    filters = {"district_id": district_id, "agency_id": agency_id, "community_id": community_id, "status": status,
               "overdue": overdue}
    if all(value is None for value in filters.values()):
        selected = list(table.json)
    else:
        selected = [table.json[i] for i in np.flatnonzero(table.mask(**filters)).tolist()]
    head = {"round_id": round_id, "as_of": t.isoformat(),
            "districts": [{"district_id": d, "name_zh": prepared.district_names.get(d), **counts[d]}
                          for d in districts]}
    before, after = split_at(head, "items")
    return before, selected, after


def rectifications_json(ctx: ServiceState, round_id: str, principal: Principal | None, **filters) -> bytes:
    """``GET /rounds/{r}/rectifications`` as canonical JSON: ``{round_id, as_of, districts, items}``.

    ``districts`` counts every item the caller may see in each district (the round's districts, and
    only the caller's own for a district key), whatever ``status``, ``community_id`` and ``overdue``
    select; ``items`` are those the filters select, by community then id. Filters: ``as_of``,
    ``status``, ``district_id``, ``community_id``, ``overdue``."""
    before, selected, after = _list_parts(ctx, round_id, principal, **filters)
    return b"".join((before, b"[", b",".join(map(item_bytes, selected)), b"]", after))


#: items joined into one piece of a streamed list
STREAM_ITEMS = 256


def rectifications_stream(ctx: ServiceState, round_id: str, principal: Principal | None,
                          **filters) -> tuple[int, Iterator[bytes]]:
    """:func:`rectifications_json` as its length and its bytes in pieces of :data:`STREAM_ITEMS` items, so
    that a national list (some 60 MB) is never joined into one more copy of its rows. Errors are raised
    here, before any piece."""
    before, selected, after = _list_parts(ctx, round_id, principal, **filters)
    return array_length(before, after, selected), array_pieces(before, after, selected, STREAM_ITEMS)


def rectifications(ctx: ServiceState, round_id: str, principal: Principal | None, **filters) -> dict:
    """:func:`rectifications_json` parsed (for reports and tests)."""
    return json.loads(rectifications_json(ctx, round_id, principal, **filters))
