"""Small statistics helpers (no numpy): percentiles with linear interpolation, summaries."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def percentile(values: Iterable[float], p: float) -> float:
    """The p-th percentile (0..100) with linear interpolation between closest ranks.

    Same definition as numpy's default (`method="linear"`): rank = p/100 * (n-1).
    Raises ValueError for an empty input or p outside [0, 100].
    """
    data = sorted(values)
    if not data:
        raise ValueError("percentile of an empty sequence")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within [0, 100], got {p}")
    rank = (len(data) - 1) * p / 100.0
    lo = math.floor(rank)
    hi = math.ceil(rank)
    if lo == hi:
        return float(data[lo])
    return data[lo] + (data[hi] - data[lo]) * (rank - lo)


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("mean of an empty sequence")
    return math.fsum(values) / len(values)


def summarize(values: Sequence[float]) -> dict[str, float | int]:
    """n, mean, min, p50, p90, p99, max of a sample (an empty sample gives {"n": 0})."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "mean": mean(values),
        "min": float(min(values)),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": float(max(values)),
    }


def paired_difference(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Element-wise a[i] - b[i] of two samples taken in pairs (same length required)."""
    if len(a) != len(b):
        raise ValueError(f"samples differ in length: {len(a)} vs {len(b)}")
    return [x - y for x, y in zip(a, b, strict=True)]


def ms(seconds: float | None) -> float | None:
    """Seconds to milliseconds (None stays None)."""
    return None if seconds is None else seconds * 1000.0
