"""Ferry's asyncio Redis clients: bounded pools that wait, commands that survive a reconnect."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

import redis.asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

# Connections per client. A burst of commands (hundreds of subscribers arriving at
# once) waits for a free one instead of failing with "Too many connections".
MAX_CONNECTIONS = 50
POOL_WAIT_S = 10
# How long a cancelled task may take to end (its cleanup's own Redis commands) before
# it is cancelled again, and how often then.
CANCEL_GRACE_S = 2.5
CANCEL_AGAIN_S = 0.1


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


async def cancel_until_done(tasks: Collection[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` and wait until each has ended. redis-py's asyncio client can swallow
    a cancellation: a command returns normally after its task was cancelled, and a loop
    of commands then runs on (a worker's keep-alive outlived its worker so). A task still
    running after `CANCEL_GRACE_S` is cancelled again until it ends."""
    pending = {task for task in tasks if not task.done()}
    wait_s = CANCEL_GRACE_S
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=wait_s)
        wait_s = CANCEL_AGAIN_S
