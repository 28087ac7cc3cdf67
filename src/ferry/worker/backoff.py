"""Retry delays: exponential backoff with full jitter."""

from __future__ import annotations

import random

RETRY_BASE_MS = 2_000
RETRY_CAP_MS = 32_000


def retry_delay_ms(
    attempt: int,
    *,
    base_ms: int = RETRY_BASE_MS,
    cap_ms: int = RETRY_CAP_MS,
    rng: random.Random | None = None,
) -> int:
    """Delay before the attempt after `attempt` (1-based): base * 2^(attempt-1), capped,
    jittered into [delay/2, delay] so that a burst of failures does not retry in lockstep."""
    ceiling = min(cap_ms, base_ms * 2 ** max(attempt - 1, 0))
    return int((rng or random).uniform(ceiling / 2, ceiling))
