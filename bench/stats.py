"""Percentiles of a benchmark's samples."""

from __future__ import annotations

from collections.abc import Iterable


def percentile(values: Iterable[float], q: float) -> float:
    """The sample at quantile `q` (0.99: the p99), NaN without samples."""
    ordered = sorted(values) or [float("nan")]
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
