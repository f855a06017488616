"""Canonical JSON (SPEC §5): keys sorted, ``,``/``:`` separators, UTF-8, no ASCII escaping."""

from __future__ import annotations

import hashlib
import json
import uuid
import zlib
from collections.abc import Iterator
from typing import Any, Protocol

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


def split_at(head: dict, key: str, *more: str) -> tuple[bytes, ...]:
    """The canonical JSON of ``head`` with ``key`` added, before and after that key's value: the caller
    puts the value's own bytes between them (keys are sorted, so the value sits in place). With ``more``
    keys, the pieces around each key's value, in the order of the keys in the JSON (sorted).

    >>> split_at({"a": 1, "z": 2}, "m")
    (b'{"a":1,"m":', b',"z":2}')
    >>> split_at({"a": 1}, "m", "b")
    (b'{"a":1,"b":', b',"m":', b'}')
    """
    placeholder = uuid.uuid4().hex
    body = canonical_bytes({**head, **{name: placeholder for name in (key, *more)}})
    return tuple(body.split(canonical_bytes(placeholder)))


class Packed(Protocol):
    """An element of a JSON array kept in another form (compressed): it states the length of its canonical
    JSON and gives that JSON in pieces when asked."""

    length: int

    def pieces(self) -> tuple[bytes, ...]: ...


#: an element of a JSON array kept as bytes: its canonical JSON, that JSON in pieces to be joined, or a
#: :class:`Packed` element
Kept = bytes | tuple[bytes, ...] | Packed


def _kept_length(element: Kept) -> int:
    if isinstance(element, bytes):
        return len(element)
    return sum(map(len, element)) if isinstance(element, tuple) else element.length


def _kept_pieces(element: Kept) -> tuple[bytes, ...]:
    if isinstance(element, bytes):
        return (element,)
    return element if isinstance(element, tuple) else element.pieces()


def deflate(data: bytes, zdict: bytes) -> bytes:
    """``data`` deflated (raw, no header) against ``zdict``: kept rows of one kind share their keys and much
    of their values with one row of that kind, so each keeps in a fraction of its bytes."""
    packer = zlib.compressobj(6, zlib.DEFLATED, -15, zdict=zdict)
    return packer.compress(data) + packer.flush()


def inflate(data: bytes, zdict: bytes) -> bytes:
    """:func:`deflate`'s ``data`` again."""
    return zlib.decompressobj(-15, zdict=zdict).decompress(data)


class Deflated:
    """Canonical JSON kept deflated (:func:`deflate`) against a dictionary its kind shares (a :class:`Packed`
    element): inflated when it is sent.

    >>> zdict = b'{"a":1,"b":"x"}'
    >>> row = Deflated(b'{"a":2,"b":"x"}', zdict)
    >>> row.length, row.pieces()
    (15, (b'{"a":2,"b":"x"}',))
    """

    __slots__ = ("length", "deflated", "zdict")

    def __init__(self, data: bytes, zdict: bytes):
        self.length, self.deflated, self.zdict = len(data), deflate(data, zdict), zdict

    def pieces(self) -> tuple[bytes, ...]:
        return (inflate(self.deflated, self.zdict),)


def array_length(before: bytes, after: bytes, elements: list[Kept]) -> int:
    """Length of ``before`` + the JSON array of ``elements`` + ``after`` (:func:`array_pieces` joined)."""
    return len(before) + len(after) + 2 + max(len(elements) - 1, 0) + sum(map(_kept_length, elements))


def array_pieces(before: bytes, after: bytes, elements: list[Kept], per_piece: int) -> Iterator[bytes]:
    """``before``, the JSON array of ``elements`` and ``after``, in pieces of ``per_piece`` elements each,
    made as they are asked for: a large response is never joined into one more copy of its elements.

    >>> b"".join(array_pieces(b"{", b"}", [b"1", (b"[", b"2]"), b"3"], 2))
    b'{[1,[2],3]}'
    """
    yield before + b"["
    for start in range(0, len(elements), per_piece):
        parts: list[bytes] = []
        for element in elements[start:start + per_piece]:
            parts.append(b",")
            parts.extend(_kept_pieces(element))
        yield b"".join(parts[0 if start else 1:])  # a comma before every element but the first
    yield b"]" + after
