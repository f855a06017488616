"""Pieces every blueprint uses: schema base, audit notes, path-id checks."""

from __future__ import annotations

import marshmallow as ma
from flask import g

from .errors import field_error


class StrictSchema(ma.Schema):
    """Unknown fields are errors (SPEC §6)."""

    class Meta:
        unknown = ma.RAISE


def note_audit(entity_type: str, entity_id: str | None, outcome: str | None = None, **detail) -> None:
    """Tell the audit hook what this write touched and how it ended."""
    g.audit = {"entity_type": entity_type, "entity_id": entity_id, "outcome": outcome, **detail}


def same_id(body: dict, field: str, path_value: str) -> None:
    """A PUT body may repeat the path's id; it must then be equal."""
    if field in body and body[field] != path_value:
        field_error(field, f"must equal the id in the path ({path_value!r})")
    body[field] = path_value
