"""Payloads of the job types (`ferry.jobs.payloads`): what each operation needs."""

from __future__ import annotations

import msgspec
import pytest

from ferry.jobs.payloads import DataProcessingPayload


@pytest.mark.parametrize(
    ("operation", "values", "accepted"),
    [("mean", [], False), ("median", [], False), ("min", [], False), ("max", [], False),
     ("percentiles", [], False), ("stdev", [1], False), ("stdev", [1, 2], True),
     ("mean", [1], True), ("count", [], True), ("sum", [], True)],
)  # fmt: skip
def test_operations_need_enough_values(operation: str, values: list[float], accepted: bool) -> None:
    data = {"operation": operation, "values": values}
    if accepted:
        msgspec.convert(data, DataProcessingPayload)
    else:
        with pytest.raises(msgspec.ValidationError, match=r"^`values`: .* needs at least"):
            msgspec.convert(data, DataProcessingPayload)
