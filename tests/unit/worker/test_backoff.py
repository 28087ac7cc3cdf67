"""The delay before a failed attempt's retry (`ferry.worker.backoff`)."""

from __future__ import annotations

import random

from ferry.worker.backoff import retry_delay_ms


def test_backoff_doubles_from_the_base_up_to_the_cap_with_jitter() -> None:
    rng = random.Random(3)
    for attempt, ceiling in [
        (1, 2_000),
        (2, 4_000),
        (3, 8_000),
        (4, 16_000),
        (5, 32_000),
        (9, 32_000),
    ]:
        delays = [retry_delay_ms(attempt, rng=rng) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 100  # jittered, not in lockstep
