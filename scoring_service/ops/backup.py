"""Backup and restore of one round as JSON Lines: raw submissions, every version (inspections and
milestones), the districts' answers to rectification items, the audit trail, and the attachments its
records name (bytes and thumbnails in base64, so one file is the whole backup).

Each line is ``{"type": …, "data": …}``. Restoring into an empty store
replays the records through the store interface in their original order,
so every kept statistic is rebuilt and every score and ranking comes out
identical. Keys are not exported (their secrets are not recoverable anyway);
household hashes are, so the restored store must use the same
``SCORING_SECRET_KEY`` to keep refusing repeated households.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Iterator

from ..domain.rounds import covered_years
from ..store import Outcome, Store

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
    yield from export_attachments(store, round_id)
    for response in store.iter_responses(round_id):
        yield {"type": "response", "data": response}
    for current in store.current_inspections(round_id):
        full = store.get_inspection(round_id, current["inspection_id"])
        yield {"type": "inspection", "data": {k: full[k] for k in ("inspection_id", "round_id", "community_id",
                                                                   "agency_id", "versions")}}
    # every version of every milestone (SPEC §11), each code's versions oldest first
    for community_id in sorted({record["community_id"] for record in store.current_milestones(round_id)}):
        for version in store.milestone_versions(round_id, community_id):
            yield {"type": "milestone", "data": version}
    # the districts' answers to rectification items (SPEC §13), in the order they were written
    for answer in store.rectification_responses(round_id):
        yield {"type": "rectification_response", "data": answer}
    for event in store.list_audit({"round_id": round_id}, limit=10**9):
        yield {"type": "audit", "data": {k: v for k, v in event.items() if k != "seq"}}
    snapshot = store.get_snapshot(round_id)
    if snapshot is not None:
        yield {"type": "snapshot", "data": {"body": base64.b64encode(snapshot[0]).decode(), "sha256": snapshot[1]}}


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
    """Restore a round into a store that does not have it yet."""
    records = (json.loads(line) for line in lines if line.strip())
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
    freed: set[tuple[str, str]] = set()  # (community, household) of the voided responses in ``pending``
    milestone_versions: dict[tuple[str, str], int] = {}  # (community, code) → versions restored

    def flush():
        """Store the pending responses, then void those that were voided (which frees their households)."""
        if pending:
            outcomes = store.add_responses(round_id, pending, len(rubric["items"]))
            if any(o is not Outcome.CREATED for o in outcomes):
                raise RestoreError("a response could not be restored as new")
            pending.clear()
        for response in voided:
            store.void_response(round_id, response["response_id"], response["void_reason"],
                                response["voided_by"], response["voided_at"], len(rubric["items"]))
        voided.clear()
        freed.clear()

    for record in records:
        kind, data = record["type"], record["data"]
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
            if household in freed:  # answered again after a void: restore that void first
                flush()
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
            # the store numbers each code's versions; they must come back with the same numbers
            key = (data["community_id"], data["code"])
            expected = milestone_versions.get(key, 0) + 1
            if data.get("round_id") != round_id or data.get("version") != expected:
                raise RestoreError(f"milestone {key[0]}/{key[1]}: version {data.get('version')} of round "
                                   f"{data.get('round_id')!r} where version {expected} of {round_id!r} comes next")
            if store.add_milestone_version(data) is not Outcome.CREATED:
                raise RestoreError(f"milestone {key[0]}/{key[1]} version {expected} could not be restored as new")
            milestone_versions[key] = expected
        elif kind == "rectification_response":
            if data.get("round_id") != round_id:
                raise RestoreError(f"rectification response of round {data.get('round_id')!r} in a backup of "
                                   f"{round_id!r}")
            if store.add_rectification_response(data) is not Outcome.CREATED:
                raise RestoreError(f"rectification response {data.get('response_id')} could not be restored as new")
        elif kind == "attachment":
            import_attachment(store, data)
        elif kind == "attachment_ref":
            if data.get("round_id") != round_id:
                raise RestoreError(f"attachment reference of round {data.get('round_id')!r} in a backup of "
                                   f"{round_id!r}")
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
