"""Backup and restore of one round as JSON Lines: raw submissions, every version (inspections and
milestones), the districts' answers to rectification items, the funding ledger (every version of every
community's funding record and every disbursement, in the order they were written, money in integer fen),
the survey links (revoked ones too), the audit trail, and the attachments its records name (bytes and
thumbnails in base64, so one file is the whole backup).

Each line is ``{"type": …, "data": …}``. Restoring into an empty store
replays the records through the store interface in their original order,
so every kept statistic is rebuilt and every score, ranking, ledger figure,
supervision report and link list comes out identical; numbered records
(milestone and funding versions) come back with the same numbers, and a
record of another round, or one the store does not take as new, stops the
restore with :class:`RestoreError` naming it. Responses posted through a
survey link are written with the link's quota (SPEC §14), so a store that
keeps quota places (MongoDB) holds the same places again: the public cap and
the hourly cap of each link and address go on from where they were.

Keys are not exported (their secrets are not recoverable anyway); survey
links are, with their secrets' hashes, so a printed link keeps working.
Household and client-address hashes are keyed by ``SCORING_SECRET_KEY``, so
the restored store must use the same key to keep refusing repeated
households, to count the hourly cap of an address on, and to print a link's
poster again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator

from ..domain.rounds import covered_years
from ..domain.timeutil import from_stored
from ..store import Outcome, Store
from ..services.survey_links import hour_start
from ..store.base import LinkQuota

FORMAT = "scoring-service/round-backup/1"


class RestoreError(Exception):
    pass


def export_round(store: Store, round_id: str) -> Iterator[dict]:
    round_ = store.get_round(round_id)
    if round_ is None:
        raise RestoreError(f"unknown round {round_id!r}")
    yield {"type": "header", "data": {"format": FORMAT, "round_id": round_id}}
    yield {"type": "rubric", "data": store.get_rubric(round_["rubric_id"])}
    for district in store.list_districts():
        yield {"type": "district", "data": district}
    for agency in store.list_agencies():
        yield {"type": "agency", "data": agency}
    for community in store.list_communities(renovation_years=covered_years(round_)):
        yield {"type": "community", "data": community}
    yield {"type": "round", "data": round_}
    # the round's survey links (SPEC §14), revoked ones too, before the responses posted through them;
    # one read for the round (a read per community was 20,000 scans of the collection on FerretDB)
    for link in store.list_survey_links(round_id):
        yield {"type": "survey_link", "data": link}
    yield from export_attachments(store, round_id)
    for response in store.iter_responses(round_id):
        yield {"type": "response", "data": response}
    for current in store.current_inspections(round_id):
        full = store.get_inspection(round_id, current["inspection_id"])
        yield {"type": "inspection", "data": {k: full[k] for k in ("inspection_id", "round_id", "community_id",
                                                                   "agency_id", "versions")}}
    # every version of every milestone (SPEC §11), each code's versions oldest first
    milestones: dict[tuple[str, str], int] = {}  # (community, code) → the last version exported
    for community_id in sorted({record["community_id"] for record in store.current_milestones(round_id)}):
        for version in store.milestone_versions(round_id, community_id):
            milestones[(version["community_id"], version["code"])] = version["version"]
            yield {"type": "milestone", "data": version}
    # the districts' answers to rectification items (SPEC §13), in the order they were written
    for answer in store.rectification_responses(round_id):
        yield {"type": "rectification_response", "data": answer}
    yield from export_ledger(store, round_id, milestones)
    for event in store.list_audit({"round_id": round_id}, limit=10**9):
        yield {"type": "audit", "data": {k: v for k, v in event.items() if k != "seq"}}
    snapshot = store.get_snapshot(round_id)
    if snapshot is not None:
        yield {"type": "snapshot", "data": {"body": base64.b64encode(snapshot[0]).decode(), "sha256": snapshot[1]}}


def export_ledger(store: Store, round_id: str, milestones: dict[tuple[str, str], int]) -> Iterator[dict]:
    """The round's money (SPEC §12): every version of every community's funding record, then every
    disbursement, each in the order it was written (the store's change feeds, read whole). A feed that
    does not hold every version or disbursement the store lists stops the export rather than leave one out,
    and so does a funding or milestone version (``milestones``: (community, code) → the last version
    exported) written before the disbursements were read: a payment is recorded after the funding and the
    milestone it is computed from, so every payment exported then has them in the backup."""
    versions, cursor = store.funding_changes(round_id)
    latest = {record["community_id"]: record["version"] for record in store.current_funding(round_id)}
    counted: dict[str, int] = {}
    for version in versions:
        counted[version["community_id"]] = counted.get(version["community_id"], 0) + 1
    if counted != latest:
        raise RestoreError(f"round {round_id!r}: the funding of {_differing(counted, latest)} changed while it "
                           "was exported; export again")
    for version in versions:
        yield {"type": "funding", "data": version}
    payments, _ = store.disbursement_changes(round_id)
    listed = store.disbursements(round_id)
    if sorted(d["disbursement_id"] for d in payments) != sorted(d["disbursement_id"] for d in listed):
        raise RestoreError(f"round {round_id!r}: the disbursements read are not every disbursement stored; "
                           "export again")
    later, _ = store.funding_changes(round_id, cursor)
    if later:
        raise RestoreError(f"round {round_id!r}: the funding of {later[0]['community_id']} changed while the "
                           "round was exported; export again")
    current = {(m["community_id"], m["code"]): m["version"] for m in store.current_milestones(round_id)}
    if current != milestones:
        raise RestoreError(f"round {round_id!r}: the milestone {_differing(milestones, current)} changed while "
                           "the round was exported; export again")
    for payment in payments:
        yield {"type": "disbursement", "data": payment}


def _differing(read: dict, stored: dict) -> str:
    """The first key (community, or community/code) whose value differs between two mappings."""
    key = min((k for k in read.keys() | stored.keys() if read.get(k) != stored.get(k)), key=str)
    return "/".join(key) if isinstance(key, tuple) else str(key)


def export_attachments(store: Store, round_id: str) -> Iterator[dict]:
    """The files the round's records name (SPEC §13), each with its bytes and thumbnail in base64, before
    the references to them: a restored round serves the same evidence to the same readers."""
    refs = store.round_attachment_refs(round_id)
    for sha256 in sorted({ref["sha256"] for ref in refs}):
        record = store.get_attachment(sha256)
        data = None if record is None else store.attachment_bytes(sha256)
        if data is None:
            raise RestoreError(f"attachment {sha256} is named by round {round_id!r} but its "
                               f"{'record' if record is None else 'bytes'} are missing "
                               "(scoring-service check-attachments lists every such file)")
        thumbnail = store.attachment_bytes(sha256, thumbnail=True) if record.get("has_thumbnail") else None
        yield {"type": "attachment", "data": {
            **record, "body": base64.b64encode(data).decode(),
            "thumbnail": None if thumbnail is None else base64.b64encode(thumbnail).decode()}}
    for ref in refs:
        yield {"type": "attachment_ref", "data": ref}


def import_attachment(store: Store, data: dict) -> None:
    """Store an exported file (already there, e.g. named by another round too: nothing changes)."""
    record = {k: v for k, v in data.items() if k not in ("body", "thumbnail")}
    body = base64.b64decode(data["body"], validate=True)
    if hashlib.sha256(body).hexdigest() != record.get("sha256"):
        raise RestoreError(f"attachment {record.get('sha256')!r}: its bytes do not have that SHA-256")
    thumbnail = base64.b64decode(data["thumbnail"], validate=True) if data.get("thumbnail") else None
    store.put_attachment(record, body, thumbnail)


def write_jsonl(records: Iterable[dict], fh) -> int:
    n = 0
    for record in records:
        fh.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
        n += 1
    return n


def import_round(store: Store, lines: Iterable[str]) -> dict[str, int]:
    """Restore a round into a store that does not have it yet.

    A line that is not JSON or lacks what its record type needs stops the restore with a
    :class:`RestoreError` naming the line. What was restored before it stays (the store has no
    transaction that could hold a whole round): the message then says that the store holds part of the
    round, and a restore must go into an empty store again."""
    at = [0]  # the number of the line being restored
    begun: list[str] = []  # the round's id once its restore has written something

    def numbered() -> Iterator[dict]:
        for at[0], line in enumerate(lines, 1):
            if line.strip():
                yield json.loads(line)

    def in_part(message: str) -> str:
        if not begun:
            return message
        return (f"{message}. The store now holds round {begun[0]!r} in part (the lines before line {at[0]}): "
                f"restore the mended backup into a new, empty store (a new SQLite file or MongoDB database)")

    try:
        return _import_records(store, numbered(), begun)
    except RestoreError as exc:
        raise RestoreError(in_part(str(exc))) from exc
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as exc:
        problem = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise RestoreError(in_part(f"line {at[0]} of the backup is malformed: {problem}")) from exc


def _import_records(store: Store, records: Iterator[dict], begun: list[str]) -> dict[str, int]:
    header = next(records, None)
    if not header or header.get("type") != "header" or header["data"].get("format") != FORMAT:
        raise RestoreError("not a round backup (missing header)")
    round_id = header["data"]["round_id"]
    if store.get_round(round_id) is not None:
        raise RestoreError(f"round {round_id!r} already exists; restore into an empty store")
    from ..domain.canonical import digest

    counts: dict[str, int] = {}
    round_ = rubric = None
    voided: list[dict] = []
    pending: list[dict] = []
    #: the hourly window of the link responses in ``pending`` (None: responses posted without a link)
    pending_window: list[str | None] = [None]
    freed: set[tuple[str, str]] = set()  # (community, household) of the voided responses in ``pending``
    milestone_versions: dict[tuple[str, str], int] = {}  # (community, code) → versions restored
    funding_versions: dict[str, int] = {}  # community → funding versions restored
    public_restored: dict[str, int] = {}  # community → public responses restored (voided ones too)
    link_restored: dict[tuple, int] = {}  # (link, address hash) → link responses restored

    def of_this_round(data: dict, what: str) -> None:
        if data.get("round_id") != round_id:
            raise RestoreError(f"{what} of round {data.get('round_id')!r} in a backup of {round_id!r}")

    def next_version(restored: dict, key, what: str, data: dict) -> int:
        """The version number the store gives ``data`` next (it numbers them; they must come back the same)."""
        expected = restored.get(key, 0) + 1
        if data.get("round_id") != round_id or data.get("version") != expected:
            raise RestoreError(f"{what}: version {data.get('version')} of round {data.get('round_id')!r} where "
                               f"version {expected} of {round_id!r} comes next")
        return expected

    def restored_as_new(outcome: Outcome, what: str) -> None:
        if outcome is not Outcome.CREATED:
            raise RestoreError(f"{what} could not be restored as new")

    def link_quota() -> LinkQuota:
        """The quota the pending link responses are written with: caps no count of either store can reach
        (what a store counts are responses restored before them), so each takes the quota places it took
        when it was posted (its hourly window: the hour it was received) and none is refused."""
        public = {r["community_id"] for r in pending if r["respondent_type"] == "public"}
        senders = {(r.get("link_id"), r.get("address_hash")) for r in pending}
        return LinkQuota(public_cap=max((public_restored.get(c, 0) for c in public), default=0) + len(pending),
                         hourly_cap=max(link_restored.get(s, 0) for s in senders) + len(pending),
                         window_start=pending_window[0])

    def flush():
        """Store the pending responses, then void those that were voided (which frees their households)."""
        if pending:
            quota = link_quota() if pending_window[0] is not None else None
            outcomes = store.add_responses(round_id, pending, len(rubric["items"]), quota=quota)
            refused = next((r for r, o in zip(pending, outcomes) if o is not Outcome.CREATED), None)
            if refused is not None:
                raise RestoreError(f"response {refused['response_id']} could not be restored as new")
            for r in pending:
                if r["respondent_type"] == "public":
                    public_restored[r["community_id"]] = public_restored.get(r["community_id"], 0) + 1
                if r.get("link_id"):
                    sender = (r["link_id"], r.get("address_hash"))
                    link_restored[sender] = link_restored.get(sender, 0) + 1
            pending.clear()
        for response in voided:
            store.void_response(round_id, response["response_id"], response["void_reason"],
                                response["voided_by"], response["voided_at"], len(rubric["items"]))
        voided.clear()
        freed.clear()

    for record in records:
        kind, data = record["type"], record["data"]
        if not begun:
            begun.append(round_id)  # from here on, records are written as they are read
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "rubric":
            rubric = data
            store.put_rubric(data["rubric_id"], data, digest(data), data.get("created_at", ""))
        elif kind == "district":
            store.put_district(data)
        elif kind == "agency":
            store.put_agency(data)
        elif kind == "community":
            store.put_communities([data])
        elif kind == "round":
            round_ = data
            store.create_round({**data, "status": "open"})
        elif kind == "response":
            household = (data.get("community_id"), data.get("household_hash"))
            # a link response's hourly window (SPEC §14): the hour it was received
            window = (hour_start(from_stored(data["received_at"]))
                      if data.get("link_id") and data.get("received_at") else None)
            if household in freed or window != pending_window[0]:  # a void to restore first, or another quota
                flush()
            pending_window[0] = window
            pending.append({k: v for k, v in data.items() if k not in ("voided_at", "void_reason", "voided_by")})
            if data.get("voided_at"):
                voided.append(data)
                if data.get("household_hash"):
                    freed.add(household)
            if len(pending) >= 1000:
                flush()
        elif kind == "inspection":
            flush()
            first, *later = data["versions"]
            store.add_inspection({**data, "versions": [first]})
            for version in later:
                store.amend_inspection(round_id, data["inspection_id"], version, None)
        elif kind == "milestone":
            key = (data["community_id"], data["code"])
            what = f"milestone {key[0]}/{key[1]}"
            expected = next_version(milestone_versions, key, what, data)
            restored_as_new(store.add_milestone_version(data), f"{what} version {expected}")
            milestone_versions[key] = expected
        elif kind == "rectification_response":
            of_this_round(data, "rectification response")
            restored_as_new(store.add_rectification_response(data), f"rectification response {data.get('response_id')}")
        elif kind == "survey_link":
            of_this_round(data, f"survey link {data.get('link_id')}")
            if store.get_survey_link(data["link_id"]) is not None:
                raise RestoreError(f"survey link {data['link_id']} could not be restored as new (the store has it)")
            store.create_survey_link({**data, "revoked_at": None})
            if data.get("revoked_at"):
                store.revoke_survey_link(data["link_id"], data["revoked_at"])
        elif kind == "funding":
            community = data.get("community_id")
            expected = next_version(funding_versions, community, f"funding of {community}", data)
            restored_as_new(store.put_funding({k: v for k, v in data.items() if k != "version"}),
                            f"funding of {community} version {expected}")
            funding_versions[community] = expected
        elif kind == "disbursement":
            of_this_round(data, f"disbursement {data.get('disbursement_id')}")
            outcome = store.add_disbursement(data)
            if outcome is not Outcome.CREATED:
                raise RestoreError(f"disbursement {data.get('disbursement_id')} could not be restored as new "
                                   f"({outcome.value})")
        elif kind == "attachment":
            import_attachment(store, data)
        elif kind == "attachment_ref":
            of_this_round(data, "attachment reference")
            store.add_attachment_refs([data])
        elif kind == "audit":
            store.append_audit(data)
        elif kind == "snapshot":
            flush()
            body = base64.b64decode(data["body"])
            store.publish_round(round_id, body, data["sha256"], round_["published_at"])
    flush()
    if round_ and round_["status"] == "closed":
        store.close_round(round_id, round_["closed_at"])
    return counts


def key_check(secret_key: str) -> str:
    """What a backup keeps of the SCORING_SECRET_KEY it was made with: enough to tell another key, not the key."""
    return hmac.new(secret_key.encode(), b"scoring-service/round-backup secret key check", "sha256").hexdigest()[:16]


def sealed(records: Iterable[dict], check: str) -> Iterator[dict]:
    """The backup's records, its header naming the secret key's check and promising an ``end`` line that
    counts the records before it (so that a file cut at the end of a line is told from a whole one)."""
    n = 0
    for record in records:
        if record["type"] == "header":
            record = {**record, "data": {**record["data"], "sealed": True, "secret_key_check": check}}
        n += 1
        yield record
    yield {"type": "end", "data": {"records": n}}


def check_backup_file(path: str, check: str | None) -> int | None:
    """Read the whole backup once before restoring, so that a refused file restores nothing: every line JSON
    (each is an object, so no part of a line is), and a backup that :func:`sealed` made with the secret key
    whose :func:`key_check` is ``check`` (None: any key) ends with its ``end`` line. Returns the number of
    lines to restore (None: all of an older backup, which has no seal)."""
    header = end = None
    records = 0
    with open(path, "rb") as fh:  # bytes: a cut through a character is this line's error too
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
                raise RestoreError(f"line {n} of the backup is malformed (cut short?): {exc}; "
                                   "nothing restored") from None
            if end is not None:
                raise RestoreError(f"line {n} of the backup follows its end line; nothing restored")
            if header is None:
                header = record.get("data") if isinstance(record, dict) and record.get("type") == "header" else {}
                header = header if isinstance(header, dict) else {}
            elif isinstance(record, dict) and record.get("type") == "end" and header.get("sealed"):
                end = n
                if not isinstance(record.get("data"), dict) or record["data"].get("records") != records:
                    counted = record["data"].get("records") if isinstance(record.get("data"), dict) else None
                    raise RestoreError(f"the end line of the backup counts {counted} records, not "
                                       f"the {records} before it; nothing restored")
            records += 1
    if header and header.get("sealed") and end is None:
        raise RestoreError("the backup has no end line (cut short?); nothing restored")
    made_with = (header or {}).get("secret_key_check")
    if check is not None and made_with is not None and made_with != check:
        raise RestoreError("the backup was made with another SCORING_SECRET_KEY: restore with that key (or "
                           "--other-secret-key to accept that repeated households are no longer refused); "
                           "nothing restored")
    return None if end is None else end - 1
