"""The data_processing handler as pure logic: its statistics and percentiles."""

from __future__ import annotations

import random
import statistics

import msgspec
import pytest

from ferry.jobs.builtin.data_processing import compute, percentile
from ferry.jobs.payloads import DataProcessingPayload


def process(operation: str, values: list[float], **extra: object) -> object:
    payload = msgspec.convert(
        {"operation": operation, "values": values, **extra}, DataProcessingPayload
    )
    return compute(payload)["value"]


def test_statistics_match_the_standard_library() -> None:
    rng = random.Random(7)
    values = [rng.uniform(-100, 100) for _ in range(501)]
    assert process("count", values) == 501
    assert process("sum", values) == pytest.approx(sum(values))
    assert process("mean", values) == pytest.approx(statistics.fmean(values))
    assert process("median", values) == statistics.median(values)
    assert process("min", values) == min(values)
    assert process("max", values) == max(values)
    assert process("stdev", values) == pytest.approx(statistics.stdev(values))


def test_percentiles_interpolate_linearly() -> None:
    assert process("percentiles", [4, 1, 3, 2], percentiles=[0, 50, 100, 25]) == {
        "p0": 1, "p50": 2.5, "p100": 4, "p25": 1.75,
    }  # fmt: skip
    assert percentile([10.0], 99) == 10.0
    ordered = sorted(random.Random(1).random() for _ in range(1000))
    assert percentile(ordered, 50) == pytest.approx(statistics.median(ordered))


@pytest.mark.parametrize(
    ("operation", "values"),
    [("mean", []), ("median", []), ("min", []), ("max", []), ("stdev", [1.0]),
     ("percentiles", [])],
)  # fmt: skip
def test_too_few_values_are_refused_by_the_payload(operation: str, values: list[float]) -> None:
    # At create (a 400 naming payload.values), never as a failure in the worker.
    with pytest.raises(msgspec.ValidationError, match=f"`values`: {operation} needs at least"):
        process(operation, values)


def test_empty_count_and_sum_are_zero() -> None:
    assert (process("count", []), process("sum", [])) == (0, 0)
