"""Reward allocation by the largest-remainder method, in exact integer fen."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class Allocation(NamedTuple):
    amounts: dict[str, int]
    unallocated: int


def largest_remainder(pool: int, weights: Sequence[tuple[str, int]]) -> Allocation:
    """Split ``pool`` fen in proportion to integer ``weights``.

    Each receiver gets the floor of its exact share; the fen left over go one
    each to the largest remainders (ties by id). Amounts always sum to the
    pool; with no positive weight the whole pool is unallocated.

    >>> largest_remainder(100, [("a", 1), ("b", 1), ("c", 1)]).amounts
    {'a': 34, 'b': 33, 'c': 33}
    """
    pool = int(pool)
    if pool < 0:
        raise ValueError("pool must not be negative")
    receivers = [(rid, int(w)) for rid, w in weights if int(w) > 0]
    total = sum(w for _, w in receivers)
    if total == 0:
        return Allocation({}, pool)
    amounts: dict[str, int] = {}
    remainders: list[tuple[int, str]] = []
    for rid, w in receivers:
        share, rem = divmod(pool * w, total)
        amounts[rid] = share
        remainders.append((rem, rid))
    left = pool - sum(amounts.values())
    remainders.sort(key=lambda t: (-t[0], t[1]))
    for _, rid in remainders[:left]:
        amounts[rid] += 1
    return Allocation(dict(sorted(amounts.items())), 0)
