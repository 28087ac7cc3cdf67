"""`sleep`: waits `delayMs` (the smallest real job; benchmarks use it with 0 ms)."""

from __future__ import annotations

import time

from ferry.jobs.payloads import SleepPayload
from ferry.jobs.registry import job

# Sleep in short steps: the time limit and an abort interrupt a thread between
# bytecodes, never inside one long time.sleep().
STEP_S = 0.05


@job("sleep", time_limit_s=660)
def run(payload: SleepPayload) -> None:
    deadline = time.monotonic() + payload.delay_ms / 1000
    while (remaining := deadline - time.monotonic()) > 0:
        time.sleep(min(STEP_S, remaining))
