"""Small statistics used by the scores: sample rule and Wilson interval."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import NamedTuple

#: two-sided 95 % normal quantile used by SPEC §5
Z95 = 1.959963984540054


def exact_fraction(value) -> Fraction:
    """The decimal a person wrote, as an exact fraction (0.1 → 1/10, not 0.1000000000000000055…)."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        return Fraction(value)
    return Fraction(repr(float(value)))


def required_responses(households: int, share=0.10, minimum: int = 10, maximum: int = 100) -> int:
    """Minimum resident sample: clamp(ceil(share × households), minimum, maximum), exactly.

    >>> required_responses(150)   # 10 % of 150 is 15, not the 16 binary floats give
    15
    >>> required_responses(40), required_responses(5000)
    (10, 100)
    """
    needed = math.ceil(exact_fraction(share) * int(households))
    return max(int(minimum), min(int(maximum), needed))


def required_responses_array(households, share=0.10, minimum: int = 10, maximum: int = 100):
    """:func:`required_responses` for an array of household counts, in exact integer arithmetic."""
    import numpy as np

    fraction = exact_fraction(share)
    num, den = fraction.numerator, fraction.denominator
    # ceil(h·num/den) with Python integers: exact and free of overflow
    needed = np.array([-(-int(h) * num // den) for h in np.asarray(households).tolist()], dtype=np.int64)
    return np.clip(needed, int(minimum), int(maximum))


def wilson_arrays(successes, n, z: float = Z95):
    """Vectorised :func:`wilson_interval`: (rate, low, high) arrays, NaN where ``n`` is 0."""
    import numpy as np

    successes = np.asarray(successes, dtype=float)
    n = np.asarray(n, dtype=float)
    safe = np.where(n > 0, n, 1.0)
    p = successes / safe
    z2 = z * z
    denom = 1.0 + z2 / safe
    centre = (p + z2 / (2 * safe)) / denom
    half = z * np.sqrt(np.maximum(p * (1 - p) / safe + z2 / (4 * safe * safe), 0.0)) / denom
    low = np.where(successes == 0, 0.0, np.maximum(0.0, centre - half))
    high = np.where(successes == n, 1.0, np.minimum(1.0, centre + half))
    undefined = n <= 0
    return (np.where(undefined, np.nan, p), np.where(undefined, np.nan, low), np.where(undefined, np.nan, high))


class Interval(NamedTuple):
    rate: float | None
    low: float | None
    high: float | None


def wilson_interval(successes: int, n: int, z: float = Z95) -> Interval:
    """Proportion with its Wilson score interval (Newcombe 1998, method 3).

    Returns ``Interval(None, None, None)`` when ``n`` is 0.

    >>> r = wilson_interval(81, 263)
    >>> round(r.low, 4), round(r.high, 4)
    (0.2553, 0.3662)
    """
    if n <= 0:
        return Interval(None, None, None)
    if not 0 <= successes <= n:
        raise ValueError("successes must be between 0 and n")
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    low = max(0.0, centre - half)
    high = min(1.0, centre + half)
    # Exactly 0 or n successes: the bound on that side is the rate itself.
    if successes == 0:
        low = 0.0
    if successes == n:
        high = 1.0
    return Interval(p, low, high)


def below_rate(successes: int, n: int, threshold) -> bool:
    """``successes / n < threshold`` in exact rational arithmetic."""
    return Fraction(successes, n) < exact_fraction(threshold)


def below_rate_array(successes, n, threshold):
    """``successes / n < threshold`` per element, exactly (False where ``n`` is 0)."""
    import numpy as np

    fraction = exact_fraction(threshold)
    # s/n < a/b  ⇔  s·b < a·n  (n > 0), in Python integers
    return np.array([n_i > 0 and s_i * fraction.denominator < fraction.numerator * n_i
                     for s_i, n_i in zip(np.asarray(successes).tolist(), np.asarray(n).tolist())], dtype=bool)
