"""Ferry's asyncio Redis clients: bounded pools that wait, commands that survive a reconnect."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

# Connections per client. A burst of commands (hundreds of subscribers arriving at
# once) waits for a free one instead of failing with "Too many connections".
MAX_CONNECTIONS = 50
POOL_WAIT_S = 10


def connect(url: str, **options: Any) -> aioredis.Redis:
    """A client whose commands are retried (with backoff, up to about 2 s) when the
    connection fails: after Redis restarts, the pooled connections are all dead,
    and the first command on each would otherwise fail."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_S,
        retry=aioredis.retry.Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=5),
        retry_on_error=[ConnectionError, TimeoutError],
        **options,
    )
    return aioredis.Redis.from_pool(pool)  # closing the client closes its pool
