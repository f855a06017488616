"""Competition ranking ("1224"), as Excel's RANK and COINr do."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def ranking_order(scores: np.ndarray, ids: Sequence[str]) -> np.ndarray:
    """Indices of ``scores`` from best to worst; equal scores listed by id.

    Scores must already be rounded (SPEC: rankings use 2-decimal scores).
    """
    scores = np.asarray(scores, dtype=float)
    id_keys = np.asarray(ids, dtype=object)
    # lexsort sorts by the last key first: score descending, then id ascending.
    id_rank = np.argsort(np.argsort(id_keys, kind="stable"), kind="stable")
    return np.lexsort((id_rank, -scores))


def competition_rank(scores: np.ndarray) -> np.ndarray:
    """Rank = 1 + number of strictly better scores.

    >>> competition_rank(np.array([90.0, 85.5, 85.5, 70.0])).tolist()
    [1, 2, 2, 4]
    """
    scores = np.asarray(scores, dtype=float)
    if scores.size == 0:
        return np.zeros(0, dtype=int)
    ascending = np.sort(scores)
    better = scores.size - np.searchsorted(ascending, scores, side="right")
    return better.astype(int) + 1


def competition_rank_within(scores: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Competition rank of each score among the scores of its own group.

    >>> competition_rank_within(np.array([9.0, 7.0, 9.0, 7.0, 8.0]), np.array([0, 0, 1, 1, 0])).tolist()
    [1, 3, 1, 2, 2]
    """
    scores = np.asarray(scores, dtype=float)
    groups = np.asarray(groups)
    n = scores.size
    if n == 0:
        return np.zeros(0, dtype=int)
    order = np.lexsort((-scores, groups))  # by group, then best first
    g, s = groups[order], scores[order]
    index = np.arange(n)
    new_group = np.r_[True, g[1:] != g[:-1]]
    new_run = new_group | np.r_[True, s[1:] != s[:-1]]
    group_start = np.maximum.accumulate(np.where(new_group, index, 0))
    run_start = np.maximum.accumulate(np.where(new_run, index, 0))
    ranks = np.empty(n, dtype=int)
    ranks[order] = run_start - group_start + 1
    return ranks
