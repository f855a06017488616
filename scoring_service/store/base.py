"""The store interface every backend implements, and the contract it keeps.

Records are plain dicts. Times are UTC strings in one fixed-width format
(see :mod:`scoring_service.domain.timeutil`), so they sort as text.

Idempotency lives here: client-chosen ids (``response_id``,
``inspection_id``) are unique keys, and a repeated id is compared by its
``content_hash``. Survey statistics (counts per community, respondent type,
item and Likert level) are kept or computed by the store so that scoring
never loads raw responses.
"""

from __future__ import annotations

import abc
import enum
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np


class StoreError(RuntimeError):
    """The store cannot do what was asked (unreachable, corrupt, misconfigured)."""


class Outcome(str, enum.Enum):
    """How a write ended. A new record is CREATED and its identical replay a DUPLICATE;
    a state change (close, publish, void) is CHANGED, or UNCHANGED when it was already so."""

    CREATED = "created"
    DUPLICATE = "duplicate"
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    CONFLICT = "conflict"
    VOIDED = "voided"
    HOUSEHOLD = "household_already_responded"
    ROUND_CLOSED = "round_closed"
    ROUND_PUBLISHED = "round_published"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    #: a disbursement of a tranche that already has one (SPEC §12)
    ALREADY_PAID = "already_paid"
    #: a public response beyond the round's ``public_cap`` for its community (SPEC §14)
    PUBLIC_CAP = "public_cap_reached"
    #: a survey-link response beyond the hourly cap of its link and client address (SPEC §14)
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True)
class AuditEvent:
    """An audit event handed to a write that stores it in the same transaction as its data.

    ``complete(outcomes)`` returns the event to store for the write's outcomes (pure: no I/O).
    """

    complete: Callable[[list[Outcome]], Mapping]


@dataclass
class CommunityCounts:
    """Survey statistics of one community and respondent type.

    ``counts[k, level-1]`` counts answers of level 1..5 to item ``k`` (rubric
    order); the last row counts the ``overall`` answers.
    """

    counts: np.ndarray
    responses: int = 0

    @classmethod
    def zeros(cls, n_items: int) -> CommunityCounts:
        return cls(np.zeros((n_items + 1, 5), dtype=np.int64), 0)


@dataclass
class RoundCounts:
    """Survey statistics of a round, one row per (community, respondent type) that has any.

    ``counts[r]`` is the ``(n_items + 1, 5)`` table of row ``r`` (overall last).
    """

    n_items: int
    community_ids: list[str] = field(default_factory=list)
    respondent_types: list[str] = field(default_factory=list)
    responses: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    counts: np.ndarray | None = None

    def __post_init__(self):
        if self.counts is None:
            self.counts = np.zeros((0, self.n_items + 1, 5), dtype=np.int64)

    @classmethod
    def from_tables(cls, n_items: int, tables: dict[tuple[str, str], CommunityCounts]) -> RoundCounts:
        keys = sorted(tables)
        return cls(
            n_items=n_items,
            community_ids=[c for c, _ in keys],
            respondent_types=[t for _, t in keys],
            responses=np.array([tables[k].responses for k in keys], dtype=np.int64),
            counts=np.stack([tables[k].counts for k in keys]) if keys
            else np.zeros((0, n_items + 1, 5), dtype=np.int64),
        )

    def tables(self) -> dict[tuple[str, str], CommunityCounts]:
        """The rows as count tables keyed by (community_id, respondent_type)."""
        return {(c, t): CommunityCounts(self.counts[r], int(self.responses[r]))
                for r, (c, t) in enumerate(zip(self.community_ids, self.respondent_types))}

    def get(self, respondent_type: str, community_id: str) -> CommunityCounts | None:
        return self.tables().get((community_id, respondent_type))


@dataclass(frozen=True)
class LinkQuota:
    """The limits of responses posted through a survey link (SPEC §14), checked inside the write.

    ``public_cap``: at most this many standing public responses of a community in the round (None: no
    limit). ``hourly_cap``: at most this many accepted responses of one (``link_id``, ``address_hash``)
    of the records since ``window_start`` (a stored UTC time, the start of the current hour).
    """

    public_cap: int | None
    hourly_cap: int | None
    window_start: str


#: the stage of an inspection stored without one (SPEC §13): every inspection before stages existed
DEFAULT_STAGE = "acceptance"


@dataclass
class InspectionRows:
    """What scoring needs of the current version of each inspection of a round (``M`` rows)."""

    community_ids: list[str]
    agency_ids: list[str]
    inspected_at: list[str]
    seq: list[int]
    points: np.ndarray  # float[M, K]: Σ points of checks not "na", per rubric item
    maxima: np.ndarray  # float[M, K]: Σ max_points of those checks
    vetoes: list[list[str]]  # critical checks scored 0

    def __len__(self) -> int:
        return len(self.community_ids)


def response_count_rows(levels: Iterable[int], n_items: int) -> np.ndarray:
    """One-hot counts of one response: ``levels`` has ``n_items + 1`` entries (0 = no answer)."""
    counts = np.zeros((n_items + 1, 5), dtype=np.int64)
    for k, level in enumerate(levels):
        if level:
            counts[k, level - 1] += 1
    return counts


#: (community_id, respondent_type)
TableKey = tuple[str, str]


def tally(rows: Iterable[tuple[str, str, Iterable[int]]], n_items: int) -> dict[TableKey, CommunityCounts]:
    """Count tables of raw responses given as (community_id, respondent_type, levels)."""
    tables: dict[TableKey, CommunityCounts] = {}
    for community_id, respondent_type, levels in rows:
        entry = table_of(tables, (community_id, respondent_type), n_items)
        entry.counts += response_count_rows(levels, n_items)
        entry.responses += 1
    return tables


def table_of(tables: dict[TableKey, CommunityCounts], key: TableKey, n_items: int) -> CommunityCounts:
    """The count table of ``key``, added empty when ``tables`` has none yet."""
    entry = tables.get(key)
    if entry is None:
        entry = tables[key] = CommunityCounts.zeros(n_items)
    return entry


def count_differences(raw: dict[TableKey, CommunityCounts], kept: dict[TableKey, CommunityCounts],
                      n_items: int) -> list[dict]:
    """Where kept statistics disagree with a tally of the raw responses (``recount``)."""
    empty = CommunityCounts.zeros(n_items)
    differences = []
    for key in sorted(set(raw) | set(kept)):
        want, have = raw.get(key, empty), kept.get(key, empty)
        if want.responses != have.responses or not np.array_equal(want.counts, have.counts):
            differences.append({
                "community_id": key[0], "respondent_type": key[1],
                "kept_responses": int(have.responses), "raw_responses": int(want.responses),
                "cells_differing": int(np.count_nonzero(want.counts != have.counts)),
            })
    return differences


# -- anomaly statistics (the /evidence/anomalies report, SPEC §14) ------------------------------
#
# What the report could flag is found from a few facts of each response, computed when it is stored:
# its level when straight-lined, the minute it was received (bursts), a digest of its content with its
# ten-minute window (duplicates) and its device. A *mark* names a group of standing responses the
# report may have to read: a burst of more than BURST_PER_MINUTE responses of one key to one community
# within a minute lies inside two consecutive minutes, so ``minute|[key, community, p]`` groups the
# responses of minutes p and p + 1 (each response is in the marks of p = its minute − 1 and its minute);
# two identical responses at most DUPLICATE_WINDOW_MINUTES apart lie in two consecutive windows
# (``window|[content, p]``); a device's responses to one community form ``device|[community, device]``.
# A mark is *hot* when it holds more than MARK_LIMITS[kind] standing responses; the report reads the
# responses of hot marks only, and applies its rules to them exactly as to all responses: a window of
# the rules that flags anything lies inside one hot mark, whose responses are read whole.

#: a straight-lined response gives at least this many answers (overall included), all one level
STRAIGHT_MIN_ANSWERS = 5
#: more responses than this from one key to one community within a minute (by received_at) are a burst
BURST_PER_MINUTE = 4
#: identical responses of one community received at most this many minutes apart look duplicated …
DUPLICATE_WINDOW_MINUTES = 10
#: … when they give at least this many answers
DUPLICATE_MIN_ANSWERS = 3
#: a device that sent more link responses than this to one community is counted as repeated
DEVICE_LIMIT = 3
#: a mark is hot when it holds more standing responses than this
MARK_LIMITS = {"minute": BURST_PER_MINUTE, "window": 1, "device": DEVICE_LIMIT}

_EPOCH = datetime(1970, 1, 1)


def straight_level(response: Mapping) -> tuple[int, int] | None:
    """(level, number of answers) of a response whose every answer, overall included, is one level
    (at least STRAIGHT_MIN_ANSWERS of them); None otherwise."""
    levels = [v for v in response["answers"].values() if v is not None] + (
        [response["overall"]] if response.get("overall") else [])
    if len(levels) >= STRAIGHT_MIN_ANSWERS and len(set(levels)) == 1:
        return levels[0], len(levels)
    return None


def content_digest(response: Mapping) -> str:
    """One value per (community, answers, overall, comment): responses the duplicates rule compares."""
    key = [response["community_id"], sorted(response["answers"].items()), response.get("overall"),
           response.get("comment") or ""]
    return hashlib.sha256(json.dumps(key, ensure_ascii=False).encode()).hexdigest()[:32]


_PLAIN_TEXT = re.compile(r'[^"\\\x00-\x1f]*')


def _json_atom(value) -> str:
    """``json.dumps(value, ensure_ascii=False)`` of a mark's part, the common cases without the encoder."""
    if value is None:
        return "null"
    if type(value) is int:
        return str(value)
    if type(value) is str and _PLAIN_TEXT.fullmatch(value):
        return f'"{value}"'
    return json.dumps(value, ensure_ascii=False)


def _mark(kind: str, *parts) -> str:
    """``kind|`` and the JSON list of ``parts`` (``json.dumps(list(parts), ensure_ascii=False)``)."""
    return f"{kind}|[{', '.join(map(_json_atom, parts))}]"


def parse_mark(mark: str) -> tuple[str, list]:
    """``(kind, parts)`` of a mark made by :class:`AnomalyFacts`."""
    kind, _, parts = mark.partition("|")
    return kind, json.loads(parts)


@dataclass(frozen=True)
class AnomalyFacts:
    """What the anomaly report needs of one response, computed once when it is stored."""

    key_id: str | None
    community_id: str
    device_id: str | None
    straight: int | None  #: the level of a straight-lined response
    minute: int | None  #: received_at in whole minutes since 1970 (None: no receive time)
    content: str | None  #: :func:`content_digest` when the duplicates rule applies to it
    window: int | None  #: received_at in DUPLICATE_WINDOW_MINUTES since 1970

    @classmethod
    def of(cls, response: Mapping) -> AnomalyFacts:
        straight = straight_level(response)
        minute = window = content = None
        received = response.get("received_at")
        if received:
            since = datetime.fromisoformat(received.rstrip("Z")) - _EPOCH
            minute = since // timedelta(minutes=1)
            if len(response["answers"]) >= DUPLICATE_MIN_ANSWERS:
                content = content_digest(response)
                window = since // timedelta(minutes=DUPLICATE_WINDOW_MINUTES)
        return cls(key_id=response.get("key_id"), community_id=response["community_id"],
                   device_id=response.get("device_id") or None, straight=straight[0] if straight else None,
                   minute=minute, content=content, window=window)

    def marks(self) -> list[str]:
        """The marks this response belongs to (see the comment above)."""
        marks = []
        if self.minute is not None:
            marks += [_mark("minute", self.key_id, self.community_id, p) for p in (self.minute - 1, self.minute)]
        if self.content is not None:
            marks += [_mark("window", self.content, p) for p in (self.window - 1, self.window)]
        if self.device_id is not None:
            marks.append(_mark("device", self.community_id, self.device_id))
        return marks


def hot_marks(facts: Iterable[AnomalyFacts]) -> set[str]:
    """The hot marks of these standing responses (what a recount compares with the kept ones)."""
    counts: dict[str, int] = {}
    for fact in facts:
        for mark in fact.marks():
            counts[mark] = counts.get(mark, 0) + 1
    return {mark for mark, n in counts.items() if n > MARK_LIMITS[mark.partition("|")[0]]}


@dataclass
class AnomalyCandidates:
    """What the anomaly report reads of a round: standing responses (as :meth:`Store.get_response`
    returns them) that the rules could flag, and where the groups they belong to first appear.

    ``bursts`` and ``duplicates`` leave out responses posted with the excluded keys."""

    straight: list[dict]  #: straight-lined responses, in arrival order
    bursts: list[dict]  #: the responses of hot minute marks
    #: (key_id, community_id) of each key in ``bursts`` → arrival seq of its first standing response there
    burst_first: dict[tuple, int]
    duplicates: list[dict]  #: the responses of hot window marks
    #: response_id in ``duplicates`` → arrival seq of the first standing response of its content
    duplicate_first: dict[str, int]
    devices: list[dict]  #: the responses of hot device marks


# -- contract rules: every backend decides these cases by these functions ------

def round_gate(status: str | None, *, closed_ok: bool = False) -> Outcome | None:
    """Whether a round of this status (None: no such round) takes writes: None when it does,
    else NOT_FOUND, ROUND_CLOSED (unless ``closed_ok``, as for voiding) or ROUND_PUBLISHED."""
    if status is None:
        return Outcome.NOT_FOUND
    if status == "published":
        return Outcome.ROUND_PUBLISHED
    if status == "closed" and not closed_ok:
        return Outcome.ROUND_CLOSED
    return None


def replay_outcome(stored_hash: str, new_hash: str, *, same_round: bool = True, voided: bool = False) -> Outcome:
    """A write of an id that is already stored: VOIDED when the stored record is voided, DUPLICATE
    when it has the same content (hash or digest) in the same round, else CONFLICT."""
    if voided:
        return Outcome.VOIDED
    return Outcome.DUPLICATE if same_round and stored_hash == new_hash else Outcome.CONFLICT


def response_replay(stored: Mapping, record: Mapping, round_id: str) -> Outcome:
    """:func:`replay_outcome` of a response whose id is stored (``stored`` has at least
    ``round_id``, ``content_hash`` and ``voided_at``)."""
    return replay_outcome(stored["content_hash"], record["content_hash"],
                          same_round=stored["round_id"] == round_id, voided=stored["voided_at"] is not None)


def quota_refusal(record: Mapping, quota: LinkQuota, rate_used: int, public_used: int) -> Outcome | None:
    """Why a new link response is refused by its quota (RATE_LIMITED, then PUBLIC_CAP), else None:
    ``rate_used`` accepted responses of its (link, address) in the window, ``public_used`` standing
    public responses of its community."""
    if quota.hourly_cap is not None and rate_used >= quota.hourly_cap:
        return Outcome.RATE_LIMITED
    if quota.public_cap is not None and record["respondent_type"] == "public" and public_used >= quota.public_cap:
        return Outcome.PUBLIC_CAP
    return None


def first_occurrences(records: list[Mapping]) -> dict[str, int]:
    """Where each ``response_id`` of a batch first stands; later records with that id are repeats."""
    first: dict[str, int] = {}
    for i, record in enumerate(records):
        first.setdefault(record["response_id"], i)
    return first


def settle_repeats(records: list[Mapping], outcomes: list[Outcome | None], first: Mapping[str, int]) -> None:
    """Give each repeat of an id within one batch its outcome: CONFLICT when its content differs
    from the first record's, else the first's outcome (DUPLICATE when that one was CREATED)."""
    for i, record in enumerate(records):
        j = first[record["response_id"]]
        if j == i:
            continue
        if records[j]["content_hash"] != record["content_hash"]:
            outcomes[i] = Outcome.CONFLICT
        else:
            outcomes[i] = Outcome.DUPLICATE if outcomes[j] is Outcome.CREATED else outcomes[j]


#: what a response records about its voiding (None while it stands)
VOID_FIELDS = ("voided_at", "void_reason", "voided_by")


def void_fields(at: str, reason: str, key_id: str) -> dict:
    return dict(zip(VOID_FIELDS, (at, reason, key_id)))


def with_void_fields(response: dict) -> dict:
    """A stored response as the store returns it: the void fields present, None when not voided."""
    for name in VOID_FIELDS:
        response.setdefault(name, None)
    return response


def amendment_refusal(header: Mapping | None, version: Mapping, agency_id: str | None) -> Outcome | None:
    """Why an amendment cannot apply to this inspection (``header``: None when the round has no
    such inspection): NOT_FOUND, FORBIDDEN (another agency's), CONFLICT (another community); else None."""
    if header is None:
        return Outcome.NOT_FOUND
    if agency_id is not None and header["agency_id"] != agency_id:
        return Outcome.FORBIDDEN
    if header["community_id"] != version["community_id"]:
        return Outcome.CONFLICT
    return None


def same_as_current(current: Mapping, version: Mapping) -> bool:
    """An amendment equal to the current version (content and reason) is a DUPLICATE: no new version."""
    return current["content_hash"] == version["content_hash"] and current.get("amend_reason") == version.get(
        "amend_reason")


def audit_conditions(filters: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """The audit listing's filters as ``(field, operator, value)``; operators ``=``, ``>=``, ``<``, ``>``.

    ``since`` is inclusive, ``until`` exclusive, ``after_seq`` exclusive; empty filters are ignored.
    """
    conditions: list[tuple[str, str, Any]] = [
        (name, "=", filters[name]) for name in ("key_id", "round_id", "entity_id") if filters.get(name)]
    if filters.get("since"):
        conditions.append(("at", ">=", filters["since"]))
    if filters.get("until"):
        conditions.append(("at", "<", filters["until"]))
    if filters.get("after_seq"):
        conditions.append(("seq", ">", int(filters["after_seq"])))
    return conditions


#: a milestone write's last check: called with the community's current records (code → latest
#: version) inside the write, it raises to refuse the write
MilestoneCheck = Callable[[dict[str, dict]], None]

def latest_by_code(versions: Iterable[Mapping]) -> dict[str, dict]:
    """code → the version with the highest number."""
    latest: dict[str, dict] = {}
    for version in versions:
        code = version["code"]
        if code not in latest or version["version"] > latest[code]["version"]:
            latest[code] = dict(version)
    return latest


def next_milestone_version(current: Mapping[str, Mapping], record: Mapping,
                           check: MilestoneCheck | None) -> dict | None:
    """The version to write for ``record`` given the community's ``current`` records: None when
    it repeats the current version of its code (DUPLICATE), else the record with its number,
    after ``check`` passed."""
    previous = current.get(record["code"])
    if previous is not None and previous["content_hash"] == record["content_hash"]:
        return None
    if check is not None:
        check({code: dict(v) for code, v in current.items()})
    return {**record, "version": previous["version"] + 1 if previous else 1}


#: a funding write's last check: called with the community's current funding version (None before
#: the first) inside the write, it raises to refuse the write
FundingCheck = Callable[[dict | None], None]


def next_funding_version(current: Mapping | None, record: Mapping, check: FundingCheck | None) -> dict | None:
    """The funding version to write for ``record`` given the ``current`` one: None when it repeats it
    (DUPLICATE), else the record with its number, after ``check`` passed."""
    if current is not None and current["content_hash"] == record["content_hash"]:
        return None
    if check is not None:
        check(dict(current) if current is not None else None)
    return {**record, "version": current["version"] + 1 if current else 1}


#: the sources of attachment references (SPEC §13): an inspection version's check_evidence and a
#: rectification response's evidence
ATTACHMENT_SOURCES = ("inspection", "rectification")


def attachment_grants(ref: Mapping) -> list[str]:
    """Who a reference to an attachment lets read it (SPEC §13), as grant names: ``district:<id>``, the
    district of its community, and ``agency:<id>``, its agency — for an inspection the agency of that
    inspection, for a rectification response the agency whose inspection opened the item (its inspector
    verifies the fix, the 复验). Uploaders are granted ``key:<key_id>``. A store keeps a reference's grants
    beside it so that a read is decided by exact look-ups (:meth:`Store.attachment_access`)."""
    grants = []
    if ref["source"] in ATTACHMENT_SOURCES and ref.get("district_id"):
        grants.append(f"district:{ref['district_id']}")
    if ref["source"] in ATTACHMENT_SOURCES and ref.get("agency_id"):
        grants.append(f"agency:{ref['agency_id']}")
    return grants


ATTACHMENT_REF_FIELDS = ("sha256", "round_id", "community_id", "district_id", "agency_id", "source", "source_id")


def attachment_ref(ref: Mapping) -> dict:
    """A reference with exactly its fields (``agency_id`` None when not given)."""
    return {name: ref.get(name) for name in ATTACHMENT_REF_FIELDS}


class Store(abc.ABC):
    """What the service needs from a database."""

    # -- life cycle -------------------------------------------------------
    @abc.abstractmethod
    def init(self) -> None:
        """Create tables/collections and indexes; idempotent."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise :class:`StoreError` when the store cannot serve."""

    def close(self) -> None:  # pragma: no cover - optional
        pass

    @abc.abstractmethod
    def generation(self, scope: str | None = None) -> str:
        """A token that changes after every committed write that can change a score (cache invalidation).

        With ``scope`` ("reference", "inspections", "surveys" or "milestones") only writes
        of that kind change it, so a survey does not invalidate cached reference data.
        Funding and disbursement writes (SPEC §12) change only scope "funding": money changes
        no score, so they leave the token without scope (and cached results) as they were.
        """

    # -- keys -------------------------------------------------------------
    @abc.abstractmethod
    def create_key(self, record: Mapping[str, Any]) -> None: ...

    @abc.abstractmethod
    def get_key(self, key_id: str) -> dict | None: ...

    @abc.abstractmethod
    def list_keys(self) -> list[dict]: ...

    @abc.abstractmethod
    def revoke_key(self, key_id: str, at: str) -> bool:
        """Revoke; False when there is no such key. Revoking twice keeps the first time."""

    # -- rubrics ----------------------------------------------------------
    @abc.abstractmethod
    def put_rubric(self, rubric_id: str, body: Mapping, digest: str, at: str) -> Outcome:
        """CREATED, DUPLICATE (same digest) or CONFLICT (same id, other content)."""

    @abc.abstractmethod
    def get_rubric(self, rubric_id: str) -> dict | None: ...

    @abc.abstractmethod
    def list_rubrics(self) -> list[dict]: ...

    # -- reference data ---------------------------------------------------
    @abc.abstractmethod
    def put_district(self, record: Mapping) -> bool:
        """Create or replace; True when created."""

    @abc.abstractmethod
    def get_district(self, district_id: str) -> dict | None: ...

    @abc.abstractmethod
    def list_districts(self) -> list[dict]: ...

    @abc.abstractmethod
    def put_communities(self, records: list[Mapping]) -> list[bool]:
        """Create or replace all, or none; one ``created`` flag per record."""

    @abc.abstractmethod
    def get_community(self, community_id: str) -> dict | None: ...

    @abc.abstractmethod
    def list_communities(self, district_id: str | None = None, renovation_year: int | None = None,
                         renovation_years: Iterable[int] | None = None) -> list[dict]:
        """Communities by id, filtered by district, one renovation year, and/or any of several
        (``renovation_years``: an aftercare round's ``covers_years``, SPEC §15)."""

    @abc.abstractmethod
    def put_agency(self, record: Mapping) -> bool: ...

    @abc.abstractmethod
    def get_agency(self, agency_id: str) -> dict | None: ...

    @abc.abstractmethod
    def list_agencies(self) -> list[dict]: ...

    # -- rounds -----------------------------------------------------------
    @abc.abstractmethod
    def create_round(self, record: Mapping) -> Outcome:
        """CREATED, DUPLICATE (same content) or CONFLICT."""

    @abc.abstractmethod
    def get_round(self, round_id: str) -> dict | None: ...

    @abc.abstractmethod
    def list_rounds(self) -> list[dict]: ...

    @abc.abstractmethod
    def close_round(self, round_id: str, at: str) -> Outcome:
        """open → closed. CHANGED when it changed, UNCHANGED when already closed, ROUND_PUBLISHED."""

    @abc.abstractmethod
    def publish_round(self, round_id: str, snapshot: bytes, sha256: str, at: str) -> Outcome:
        """Store the snapshot and mark published (from open or closed). UNCHANGED when already published."""

    @abc.abstractmethod
    def get_snapshot(self, round_id: str) -> tuple[bytes, str] | None: ...

    @abc.abstractmethod
    def rubric_in_use(self, rubric_id: str) -> bool: ...

    # -- surveys ----------------------------------------------------------
    @abc.abstractmethod
    def add_responses(self, round_id: str, records: list[Mapping], n_items: int,
                      audit: AuditEvent | None = None, quota: LinkQuota | None = None) -> list[Outcome]:
        """Store new responses and update statistics atomically; one outcome per record.

        ``audit``, when given, is the audit event of this write, completed with the outcomes; it is
        stored in the same transaction where the backend has transactions (SQLite).

        Each record carries ``levels`` (``n_items + 1`` Likert levels, 0 = no
        answer, overall last). A record whose ``response_id`` exists is a
        DUPLICATE when its ``content_hash`` matches, else CONFLICT (VOIDED when
        voided): :func:`response_replay`; an id repeated within the batch:
        :func:`settle_repeats`. A ``household_hash`` held by a response of the
        community and round that is not voided gives HOUSEHOLD. A round that is
        not open gives ROUND_CLOSED or ROUND_PUBLISHED for every record.

        With ``quota`` (survey links, SPEC §14; records then carry ``link_id`` and ``address_hash``)
        a new record beyond the hourly cap gives RATE_LIMITED and a new public one beyond the
        public cap PUBLIC_CAP; both are exact under concurrency (checked inside the write).
        """

    @abc.abstractmethod
    def get_response(self, round_id: str, response_id: str) -> dict | None: ...

    @abc.abstractmethod
    def void_response(self, round_id: str, response_id: str, reason: str, key_id: str, at: str, n_items: int) -> Outcome:
        """CHANGED (voided now), UNCHANGED (already voided), NOT_FOUND, ROUND_PUBLISHED.

        A voided response frees its household: another response of it is then accepted.
        """

    @abc.abstractmethod
    def survey_counts(self, round_id: str, n_items: int) -> RoundCounts: ...

    @abc.abstractmethod
    def iter_responses(self, round_id: str) -> Iterator[dict]:
        """Every raw response of the round, voided included, in arrival order."""

    @abc.abstractmethod
    def count_responses(self, round_id: str, include_voided: bool = False) -> int: ...

    @abc.abstractmethod
    def anomaly_candidates(self, round_id: str, excluded_keys: Iterable[str] = ()) -> AnomalyCandidates:
        """The standing responses the anomaly report could flag (see :class:`AnomalyFacts`), found from
        statistics kept at write time: the report's cost grows with what it may flag, not with the
        round's responses. ``excluded_keys``: keys whose responses bursts and duplicates leave out."""

    # -- inspections ------------------------------------------------------
    @abc.abstractmethod
    def add_inspection(self, record: Mapping) -> Outcome:
        """CREATED, DUPLICATE, CONFLICT, ROUND_CLOSED or ROUND_PUBLISHED."""

    @abc.abstractmethod
    def amend_inspection(self, round_id: str, inspection_id: str, version: Mapping, agency_id: str | None) -> Outcome:
        """Add a version. NOT_FOUND, FORBIDDEN (other agency), DUPLICATE (same as current), round outcomes."""

    @abc.abstractmethod
    def get_inspection(self, round_id: str, inspection_id: str) -> dict | None:
        """Inspection with ``versions`` (oldest first)."""

    @abc.abstractmethod
    def current_inspections(self, round_id: str) -> list[dict]:
        """Current version of every inspection of the round, with ``seq`` (arrival order)."""

    @abc.abstractmethod
    def inspection_sums(self, round_id: str, n_items: int, stage: str = DEFAULT_STAGE) -> InspectionRows:
        """What scoring needs of each current inspection whose current version has ``stage``, and nothing
        else (read on recomputation). An acceptance round scores only acceptance inspections (SPEC §13)."""

    # -- milestones (SPEC §11) ------------------------------------------------
    @abc.abstractmethod
    def add_milestone_version(self, record: Mapping, check: MilestoneCheck | None = None) -> Outcome:
        """Add a version of one milestone of a community: CREATED, or DUPLICATE when its
        ``content_hash`` equals the current version's (nothing written).

        ``record`` has ``round_id, community_id, code, reached_on`` (None: withdrawn), ``note,
        votes, management_mode, changed_reason, key_id, recorded_at, content_hash``; the store
        gives it ``version`` = the code's previous version + 1. ``check(current)``, when given,
        is called with the community's current records (code → latest version) just before the
        write, and may raise to refuse it: the writes of one community are serialised, so what
        it checked is what the version is added to. Allowed whatever the round's status (works
        go on after a round closes); changes generation scope "milestones".
        """

    @abc.abstractmethod
    def milestone_versions(self, round_id: str, community_id: str) -> list[dict]:
        """Every version of the community's milestones in the round, by code then version."""

    @abc.abstractmethod
    def current_milestones(self, round_id: str) -> list[dict]:
        """The latest version of every (community, code) of the round, withdrawn ones included,
        by community then code."""

    @abc.abstractmethod
    def milestone_changes(self, round_id: str, after: int | None = None,
                          limit: int | None = None) -> tuple[list[dict], int]:
        """The versions of the round's milestones written since the cursor ``after`` (None: every
        version), in the order they were written, and the cursor to pass next time. With ``limit``,
        at most that many per call, besides (in a first call, ``after`` None) versions a store kept
        from before it numbered them; a reader calls again until it gets fewer than ``limit``.

        Exact across processes: every version whose write was acknowledged before the call is
        returned by it or by an earlier call in the chain of cursors, and none twice. A reader
        that keeps the highest ``version`` of each (community, code) thus holds the current
        records, and after a write to one community reads that community's new version only.
        """

    # -- funding ledger (SPEC §12) ---------------------------------------------
    @abc.abstractmethod
    def put_funding(self, record: Mapping, check: FundingCheck | None = None) -> Outcome:
        """Add a version of a community's funding record in a round (replace semantics, every version
        kept): CREATED, or DUPLICATE when its ``content_hash`` equals the current version's (nothing
        written, no check).

        ``record`` has ``round_id, community_id, land_category, approved_budget_fen,
        settled_budget_fen, district_funds_in_place_fen, key_id, recorded_at, content_hash``; the
        store gives it ``version`` = the previous version + 1. ``check(current)``, when given, is
        called with the current version (None for the first) just before the write and may raise
        to refuse it: the writes of one community are serialised, so what it checked is what the
        version replaces. Changes generation scope "funding" only (money changes no score, so
        cached results stay).
        """

    @abc.abstractmethod
    def funding_versions(self, round_id: str, community_id: str) -> list[dict]:
        """Every version of the community's funding record in the round, oldest first."""

    @abc.abstractmethod
    def current_funding(self, round_id: str) -> list[dict]:
        """The latest funding version of every community of the round, by community."""

    @abc.abstractmethod
    def funding_changes(self, round_id: str, after: int | None = None,
                        limit: int | None = None) -> tuple[list[dict], int]:
        """The round's funding versions written since the cursor ``after`` (None: every version), in
        the order they were written, and the cursor to pass next time; exact across processes as
        :meth:`milestone_changes` (with ``limit`` likewise). A reader that keeps the highest
        ``version`` of each community holds the current records."""

    @abc.abstractmethod
    def disbursement_changes(self, round_id: str, after: int | None = None,
                             limit: int | None = None) -> tuple[list[dict], int]:
        """The round's disbursements recorded since the cursor ``after`` (None: all of them), in the
        order they were written, and the cursor to pass next time; exact across processes as
        :meth:`milestone_changes` (with ``limit`` likewise)."""

    @abc.abstractmethod
    def add_disbursement(self, record: Mapping) -> Outcome:
        """Record a payment of one tranche, insert-only and idempotent by ``disbursement_id``:
        CREATED; DUPLICATE when that id exists with the same ``content_hash``; CONFLICT when it
        exists with other content; ALREADY_PAID when the (round, community, tranche) has another
        disbursement. Exact under concurrency: of several writers of one tranche exactly one
        creates. ``record`` has ``disbursement_id, round_id, community_id, tranche, amount_fen,
        paid_on, voucher, key_id, recorded_at, content_hash``. Changes generation scope "funding"
        only."""

    @abc.abstractmethod
    def get_disbursement(self, disbursement_id: str) -> dict | None: ...

    @abc.abstractmethod
    def disbursements(self, round_id: str, community_id: str | None = None) -> list[dict]:
        """The round's disbursements (of one community when given), by community then tranche."""

    # -- rectification (SPEC §13) -------------------------------------------------
    @abc.abstractmethod
    def inspection_version_numbers(self, round_id: str) -> dict[str, int]:
        """inspection id → its current version number, for every inspection of the round (every stage):
        a reader that kept the versions it read re-reads only the inspections whose number changed."""

    @abc.abstractmethod
    def inspection_histories(self, round_id: str, inspection_ids: Iterable[str] | None = None) -> list[dict]:
        """Every version of the round's inspections (only of ``inspection_ids`` when given), by inspection id
        then version: each the stored version (``inspected_at, stage, checks, check_evidence, amend_reason``,
        …) with ``inspection_id, community_id, agency_id`` and ``version``."""

    @abc.abstractmethod
    def add_rectification_response(self, record: Mapping) -> Outcome:
        """Store a district's response to a rectification item, insert-only and idempotent by
        ``response_id``: CREATED; DUPLICATE when that id exists with the same ``content_hash``; CONFLICT
        when it exists with other content. ``record`` has ``response_id, round_id, item_id, community_id,
        district_id, fixed_on, note, evidence, key_id, recorded_at, content_hash``. Allowed whatever the
        round's status; changes generation scope "rectifications" only (no score depends on it)."""

    @abc.abstractmethod
    def get_rectification_response(self, response_id: str) -> dict | None: ...

    @abc.abstractmethod
    def rectification_responses(self, round_id: str, item_id: str | None = None) -> list[dict]:
        """The round's responses (to one item when given), in the order they were written."""

    @abc.abstractmethod
    def rectification_response_changes(self, round_id: str, after: int | None = None,
                                       limit: int | None = None) -> tuple[list[dict], int]:
        """The round's responses written since the cursor ``after`` (None: all of them), in the order they
        were written, and the cursor to pass next time; exact across processes as
        :meth:`milestone_changes` (with ``limit`` likewise)."""

    # -- survey links (SPEC §14) -------------------------------------------------
    @abc.abstractmethod
    def create_survey_link(self, record: Mapping[str, Any]) -> None:
        """Store a new link: ``link_id, round_id, community_id, secret_hash, created_at, created_by,
        expires_at, revoked_at``."""

    @abc.abstractmethod
    def get_survey_link(self, link_id: str) -> dict | None: ...

    @abc.abstractmethod
    def list_survey_links(self, round_id: str, community_id: str | None = None) -> list[dict]:
        """The links of a community in a round, oldest first; without ``community_id`` every link of the
        round in one read, by community and then oldest first (a backup's export)."""

    @abc.abstractmethod
    def revoke_survey_link(self, link_id: str, at: str) -> bool:
        """Revoke; False when there is no such link. Revoking twice keeps the first time."""

    # -- attachments (SPEC §13) ------------------------------------------------
    @abc.abstractmethod
    def put_attachment(self, record: Mapping, data: bytes, thumbnail: bytes | None) -> Outcome:
        """Store a file named by the SHA-256 of its bytes: CREATED, or DUPLICATE when that hash is
        stored (nothing replaced). The bytes (and thumbnail) are durable before the record is written,
        so a record never names bytes that are missing. Either way ``record["uploaded_by"]`` is granted
        reading (``key:<key_id>``).

        ``record`` has ``sha256, content_type, size, width, height, captured_at, gps, uploaded_by,
        uploaded_at, has_thumbnail``. Changes no generation (no score depends on a file)."""

    @abc.abstractmethod
    def get_attachment(self, sha256: str) -> dict | None:
        """The record of a stored file (the fields :meth:`put_attachment` took), None when unknown."""

    @abc.abstractmethod
    def attachment_bytes(self, sha256: str, thumbnail: bool = False) -> bytes | None:
        """The file's bytes (or its thumbnail's); None when unknown or when it has no thumbnail."""

    @abc.abstractmethod
    def add_attachment_uploader(self, sha256: str, key_id: str) -> None:
        """Grant ``key:<key_id>`` reading a stored file (someone uploaded the same bytes again); idempotent."""

    @abc.abstractmethod
    def add_attachment_refs(self, refs: list[Mapping]) -> None:
        """Record references to attachments, idempotent by (sha256, source, source_id); a ref has
        :data:`ATTACHMENT_REF_FIELDS`. Each also stores its :func:`attachment_grants`."""

    @abc.abstractmethod
    def attachment_refs(self, sha256: str) -> list[dict]:
        """The references to a file, by round, source and source id."""

    @abc.abstractmethod
    def round_attachment_refs(self, round_id: str) -> list[dict]:
        """The references of a round's records, by hash, source and source id."""

    @abc.abstractmethod
    def attachment_access(self, sha256: str, grants: Iterable[str]) -> bool:
        """Whether any of ``grants`` (``key:…``, ``district:…``, ``agency:…``) was given for the file."""

    # -- audit ------------------------------------------------------------
    @abc.abstractmethod
    def append_audit(self, event: Mapping) -> None: ...

    @abc.abstractmethod
    def list_audit(self, filters: Mapping[str, Any], limit: int) -> list[dict]: ...

    # -- maintenance ------------------------------------------------------
    @abc.abstractmethod
    def recount(self, round_id: str, n_items: int, fix: bool = True) -> list[dict]:
        """Rebuild kept statistics from raw responses; return the differences found.

        The anomaly statistics too (differences with ``"statistic": "anomalies"``): the facts kept
        with each response and the hot marks (:class:`AnomalyFacts`)."""


def open_store(url: str) -> Store:
    """A store for ``url``: ``mongodb://…`` / ``mongodb+srv://…`` or a SQLite file path."""
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from .mongo import MongoStore

        return MongoStore(url)
    from .sqlite import SQLiteStore

    path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url
    return SQLiteStore(path)
