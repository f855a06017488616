"""Small statistics used by the scores: sample rule, Wilson interval, acceptance test.

Each function takes scalars or arrays and broadcasts like a numpy ufunc: a
scalar in gives a numpy scalar out.
"""

from __future__ import annotations

from fractions import Fraction
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

#: two-sided 95 % normal quantile, as SPEC §5 writes it. ``NormalDist().inv_cdf(0.975)`` gives
#: 1.9599639845400536, two units in the last place away, so the SPEC's digits are kept here.
Z95 = 1.959963984540054
#: two-sided 99.8 % normal quantile (funnel control limits; not in the SPEC)
Z998 = NormalDist().inv_cdf(0.999)

#: products below this bound are exact in int64
_INT64_SAFE = 2**62


def exact_fraction(value) -> Fraction:
    """The decimal a person wrote, as an exact fraction (0.1 → 1/10, not 0.1000000000000000055…)."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        return Fraction(value)
    return Fraction(repr(float(value)))


def _exact_integers(*arrays: np.ndarray, factor: int) -> tuple[np.ndarray, ...]:
    """The integer ``arrays``, as int64 when every product with ``factor`` fits, else as Python ints."""
    largest = max((int(np.abs(a).max(initial=0)) for a in arrays), default=0)
    dtype = np.int64 if largest * max(1, abs(factor)) < _INT64_SAFE else object
    return tuple(a.astype(dtype) for a in arrays)


def required_responses(households, share=0.10, minimum: int = 10, maximum: int = 100):
    """Minimum resident sample: clamp(ceil(share × households), minimum, maximum), exactly.

    >>> int(required_responses(150))   # 10 % of 150 is 15, not the 16 binary floats give
    15
    >>> required_responses([40, 5000]).tolist()
    [10, 100]
    """
    fraction = exact_fraction(share)
    (h,) = _exact_integers(np.asarray(households), factor=fraction.numerator)
    needed = -(-h * fraction.numerator // fraction.denominator)  # ceil, in integers
    return np.clip(needed, int(minimum), int(maximum)).astype(np.int64)[()]


class Interval(NamedTuple):
    rate: np.ndarray
    low: np.ndarray
    high: np.ndarray


def wilson_interval(successes, n, z: float = Z95) -> Interval:
    """Proportion with its Wilson score interval (Newcombe 1998, method 3); NaN where ``n`` is 0.

    >>> r = wilson_interval(81, 263)
    >>> round(float(r.low), 4), round(float(r.high), 4)
    (0.2553, 0.3662)
    """
    successes = np.asarray(successes, dtype=float)
    n = np.asarray(n, dtype=float)
    if np.any((successes < 0) | (successes > n)):
        raise ValueError("successes must be between 0 and n")
    safe = np.where(n > 0, n, 1.0)
    p = successes / safe
    z2 = z * z
    denom = 1.0 + z2 / safe
    centre = (p + z2 / (2 * safe)) / denom
    half = z * np.sqrt(np.maximum(p * (1 - p) / safe + z2 / (4 * safe * safe), 0.0)) / denom
    # Exactly 0 or n successes: the bound on that side is the rate itself.
    low = np.where(successes == 0, 0.0, np.maximum(0.0, centre - half))
    high = np.where(successes == n, 1.0, np.minimum(1.0, centre + half))
    undefined = n <= 0
    return Interval(*(np.where(undefined, np.nan, x)[()] for x in (p, low, high)))


def below_rate(successes, n, threshold):
    """``successes / n < threshold`` per element, in exact rational arithmetic; False where ``n`` is 0.

    >>> bool(below_rate(7, 10, 0.8)), bool(below_rate(8, 10, 0.8)), bool(below_rate(0, 0, 0.8))
    (True, False, False)
    """
    fraction = exact_fraction(threshold)
    s, t = np.broadcast_arrays(np.asarray(successes), np.asarray(n))
    s, t = _exact_integers(s, t, factor=max(fraction.numerator, fraction.denominator))
    # s/t < a/b  ⇔  s·b < a·t  (t > 0)
    below = (t > 0) & (s * fraction.denominator < fraction.numerator * t)
    return np.asarray(below, dtype=bool)[()]
