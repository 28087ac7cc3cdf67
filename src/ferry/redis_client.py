"""Ferry's asyncio Redis clients: bounded pools that wait, commands that survive a reconnect."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from typing import Any

import redis.asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

log = logging.getLogger(__name__)

# Connections per client. A burst of commands (hundreds of subscribers arriving at
# once) waits for a free one instead of failing with "Too many connections".
MAX_CONNECTIONS = 50
POOL_WAIT_S = 10
# How long a cancelled task may take to end (its cleanup's own Redis commands) before
# it is cancelled again, and how long before it is given up on.
CANCEL_GRACE_S = 2.5
CANCEL_GIVE_UP_S = 10.0


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
    running after `CANCEL_GRACE_S` is cancelled again, each `CANCEL_GRACE_S` (its cleanup
    has that long), and given up on, logged with where it is, after `CANCEL_GIVE_UP_S`."""
    pending = {task for task in tasks if not task.done()}
    deadline = time.monotonic() + CANCEL_GIVE_UP_S
    while pending and (left := deadline - time.monotonic()) > 0:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(CANCEL_GRACE_S, left))
    for task in pending:
        log.error("%s did not end when cancelled; it waits at %s", task.get_name(), _where(task))
    for task in tasks:
        if task.done() and not task.cancelled() and (exc := task.exception()) is not None:
            log.error("%s ended with an error", task.get_name(), exc_info=exc)


def _where(task: asyncio.Task[Any]) -> str:
    """The coroutines a task waits in, the innermost last."""
    chain: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None and (frame := getattr(awaited, "cr_frame", None)) is not None:
        chain.append(f"{frame.f_code.co_filename}:{frame.f_lineno} ({frame.f_code.co_name})")
        awaited = getattr(awaited, "cr_await", None)
    return " > ".join(chain[-4:]) or "?"
