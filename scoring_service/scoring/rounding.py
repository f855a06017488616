"""Rounding rules of SPEC §2: half to even (GB/T 8170-2008), as numpy rounds."""

from __future__ import annotations

import math

import numpy as np


def round_score(x):
    """Round a score (or array of scores) once to 2 decimals, half to even.

    ``None`` and NaN stay undefined (returned as ``None`` for scalars).

    >>> round_score(84.125)
    84.12
    >>> round_score(np.array([84.125, 84.135]))
    array([84.12, 84.14])
    """
    return _round(x, 2)


def round_rate(x):
    """Round a rate to 4 decimals, half to even.

    >>> round_rate(0.80005)
    0.8
    """
    return _round(x, 4)


def _round(x, decimals: int):
    if isinstance(x, np.ndarray):
        return np.round(x, decimals)
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return float(np.round(float(x), decimals))
