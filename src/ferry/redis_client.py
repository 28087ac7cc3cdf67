"""Ferry's asyncio Redis clients: commands survive a reconnect."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError


def connect(url: str, **options: Any) -> aioredis.Redis:
    """A client whose commands are retried (with backoff, up to about 2 s) when
    the connection fails: after Redis restarts, the pooled connections are all
    dead, and the first command on each would otherwise fail."""
    return aioredis.Redis.from_url(
        url,
        retry=aioredis.retry.Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=5),
        retry_on_error=[ConnectionError, TimeoutError],
        **options,
    )
