"""Canonical JSON (SPEC §5): keys sorted, ``,``/``:`` separators, UTF-8, no ASCII escaping."""

from __future__ import annotations

import hashlib
import json
from typing import Any

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)


def canonical_bytes(value: Any) -> bytes:
    return _encoder.encode(value).encode("utf-8")


def digest(value: Any) -> str:
    """SHA-256 hex of the canonical JSON of ``value``."""
    return hashlib.sha256(canonical_bytes(value)).hexdigest()


def tidy_numbers(value: Any) -> Any:
    """Whole floats as ints (10.0 → 10), so equal content has equal bytes."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: tidy_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [tidy_numbers(v) for v in value]
    return value
