"""The job types of the benchmarks (FERRY_JOBS=bench.jobs), written as a team writes its own."""

from __future__ import annotations

import asyncio
from typing import Any

from ferry import job

NAP_S = 1.0


@job("bench_nap", max_attempts=1)
async def bench_nap(payload: dict[str, Any]) -> None:
    """An async job that waits on I/O: a second of `await asyncio.sleep`."""
    await asyncio.sleep(NAP_S)
