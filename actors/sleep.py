"""`sleep`: waits `delayMs` (the smallest real job; benchmarks use it with 0 ms)."""

from __future__ import annotations

import time

from ferry.schemas import SleepPayload
from ferry.worker.runtime import job_handler


@job_handler("sleep", time_limit_ms=660_000)
def run(payload: SleepPayload) -> None:
    if payload.delay_ms:
        time.sleep(payload.delay_ms / 1000)
