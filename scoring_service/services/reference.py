"""Reference data: districts, communities and agencies (create or replace, all or nothing for imports)."""

from __future__ import annotations

from .context import ServiceState
from .errors import Invalid


def put_district(ctx: ServiceState, record: dict) -> bool:
    """Create or replace a district; True when created."""
    return ctx.store.put_district(record)


def put_agency(ctx: ServiceState, record: dict) -> bool:
    """Create or replace an agency; True when created."""
    return ctx.store.put_agency(record)


def district_problems(ctx: ServiceState, record: dict) -> dict[str, list[str]]:
    """Field errors of a community's references (its district must exist)."""
    if ctx.store.get_district(record["district_id"]) is None:
        return {"district_id": [f"unknown district {record['district_id']!r}"]}
    return {}


def put_community(ctx: ServiceState, record: dict) -> bool:
    """Create or replace one community; True when created."""
    problems = district_problems(ctx, record)
    if problems:
        raise Invalid.fields(problems)
    return ctx.store.put_communities([record])[0]


def import_communities(ctx: ServiceState, records: list[dict], row_errors: dict[str, dict]) -> dict:
    """Store every community or none: ``row_errors`` (by row number) already holds the rows that did
    not validate; references and repeated ids are checked here."""
    errors = dict(row_errors)
    seen: set[str] = set()
    for index, record in records:
        problems = district_problems(ctx, record)
        if record["community_id"] in seen:
            problems["community_id"] = ["listed twice in this import"]
        seen.add(record["community_id"])
        if problems:
            errors[str(index)] = problems
    if errors:
        raise Invalid(f"{len(errors)} invalid rows; nothing imported", errors)
    created = ctx.store.put_communities([record for _, record in records])
    return {"imported": len(created), "created": sum(created), "replaced": len(created) - sum(created)}
