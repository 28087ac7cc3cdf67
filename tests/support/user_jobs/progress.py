"""Job types that report their progress (`ctx.progress`), sync and async.

A `steps` job reports each of its steps, then waits at its gate before the next
one: the file named by the step's number in the directory `gate`, which the
test creates once it has seen that step's PROGRESS event. So each report is
written and published before the next is made, however slow the machine, with
no sleep to tune. `chatty` reports as fast as it can, to show the coalescing.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec

from ferry import JobContext, job

GATE_TIMEOUT_S = 30  # a gate never opened: the step goes on (the test has failed by then)


class Steps(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    steps: list[tuple[float, str]]  # (fraction, message) of each report
    gate: str | None = None  # a directory: step n waits for the file `n` in it


def _open(gate: str | None, step: int) -> bool:
    return gate is None or (Path(gate) / str(step)).exists()


@job("steps", payload=Steps, max_attempts=1)
def steps(payload: Steps, ctx: JobContext) -> dict[str, int]:
    for step, (fraction, message) in enumerate(payload.steps, 1):
        ctx.progress(fraction, message)
        deadline = time.monotonic() + GATE_TIMEOUT_S
        while not _open(payload.gate, step) and time.monotonic() < deadline:
            time.sleep(0.01)
    return {"steps": len(payload.steps)}


@job("async_steps", payload=Steps, max_attempts=1)
async def async_steps(payload: Steps, ctx: JobContext) -> dict[str, int]:
    for step, (fraction, message) in enumerate(payload.steps, 1):
        ctx.progress(fraction, message)
        deadline = time.monotonic() + GATE_TIMEOUT_S
        while not _open(payload.gate, step) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    return {"steps": len(payload.steps)}


class Chatty(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    reports: int


@job("chatty", payload=Chatty, max_attempts=1)
def chatty(payload: Chatty, ctx: JobContext) -> dict[str, int]:
    for n in range(1, payload.reports + 1):
        ctx.progress(n / payload.reports, f"row {n} of {payload.reports}")
    return {"reports": payload.reports}
