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
