"""`data_processing`: a statistic over `values`, stored as the job's result."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

from ferry.jobs.payloads import DataProcessingPayload
from ferry.jobs.registry import job


def percentile(ordered: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default method)."""
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# The payload refuses too few values for an operation (ferry.service.schemas.MIN_VALUES).
OPERATIONS: dict[str, Callable[[list[float]], float]] = {
    "count": lambda values: len(values),
    "sum": math.fsum,
    "mean": statistics.fmean,
    "median": statistics.median,
    "min": min,
    "max": max,
    "stdev": statistics.stdev,
}


def compute(payload: DataProcessingPayload) -> dict[str, object]:
    if payload.operation == "percentiles":
        ordered = sorted(payload.values)
        value: object = {f"p{p:g}": percentile(ordered, p) for p in payload.percentiles}
    else:
        value = OPERATIONS[payload.operation](payload.values)
    return {"operation": payload.operation, "count": len(payload.values), "value": value}


@job("data_processing", time_limit_s=120)
def run(payload: DataProcessingPayload) -> dict[str, object]:
    return compute(payload)
