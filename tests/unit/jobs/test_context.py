"""`JobContext.progress`: what it accepts, and what it hands on."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest

from ferry.jobs.context import MESSAGE_LIMIT, JobContext
from ferry.text import ELLIPSIS, REPLACEMENT

Reported = tuple[uuid.UUID, int, float, str | None]


def context() -> tuple[JobContext, list[Reported]]:
    reported: list[Reported] = []

    def sink(job_id: uuid.UUID, attempt: int, fraction: float, message: str | None) -> None:
        reported.append((job_id, attempt, fraction, message))

    return JobContext(uuid.uuid4(), "t", "resize", 1, 3, _progress_sink=sink), reported


@pytest.mark.parametrize("fraction", [0, 0.0, 0.5, 1, 1.0, -0.0])
def test_a_fraction_from_0_to_1_is_handed_on_as_a_float(fraction: float) -> None:
    ctx, reported = context()
    ctx.progress(fraction, "halfway")
    assert reported == [(ctx.job_id, 1, float(fraction), "halfway")]
    assert type(reported[0][2]) is float


@pytest.mark.parametrize("fraction", [math.nan, math.inf, -math.inf, -0.01, 1.0001, 50, -1])
def test_a_fraction_outside_0_to_1_is_a_value_error(fraction: float) -> None:
    ctx, reported = context()
    with pytest.raises(ValueError, match="the fraction must be a finite number from 0 to 1"):
        ctx.progress(fraction)
    assert reported == []


@pytest.mark.parametrize("fraction", ["0.5", None, True, [0.5]])
def test_a_fraction_that_is_no_number_is_a_type_error(fraction: Any) -> None:
    ctx, reported = context()
    with pytest.raises(TypeError, match="the fraction must be a number from 0 to 1"):
        ctx.progress(fraction)
    assert reported == []


def test_a_message_is_made_storable_and_capped() -> None:
    ctx, reported = context()
    ctx.progress(0.1, "a\x00b\ud800c")
    ctx.progress(0.2, "x" * 100_000)
    ctx.progress(0.3, "y" * MESSAGE_LIMIT)
    ctx.progress(0.4)
    messages = [message for *_, message in reported]
    assert messages[0] == f"a{REPLACEMENT}b{REPLACEMENT}c"
    assert messages[1] == "x" * (MESSAGE_LIMIT - 1) + ELLIPSIS
    assert messages[2] == "y" * MESSAGE_LIMIT  # exactly the limit: kept whole
    assert messages[3] is None


def test_a_message_that_is_no_string_is_a_type_error() -> None:
    ctx, reported = context()
    with pytest.raises(TypeError, match="the message must be a string or None, not int"):
        ctx.progress(0.5, 3)  # type: ignore[arg-type]
    assert reported == []


def test_a_context_made_outside_a_worker_accepts_progress_and_drops_it() -> None:
    JobContext(uuid.uuid4(), "t", "resize", 1, 3).progress(0.5, "nowhere to go")
