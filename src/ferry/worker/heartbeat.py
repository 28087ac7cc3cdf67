"""Leases of running jobs: renewed every heartbeat, and the way cancels reach a worker.

One `UPDATE ... WHERE id IN (running) AND status = 'RUNNING' RETURNING id` per
heartbeat renews every lease this process holds; a running job missing from
RETURNING was cancelled (or deleted, or handed to another worker after this
one stalled), so its thread is aborted. On Redis the process also tells
Dramatiq it is alive every heartbeat (`keep_alive`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.models import Job, JobStatus, utcnow
from ferry.worker.running import RunningJobs

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(
        self, engine: Callable[[], AsyncEngine], running: RunningJobs, interval_ms: int
    ) -> None:
        self.engine = engine
        self.running = running
        self.interval = interval_ms / 1000

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.beat()
            except Exception:
                log.exception("heartbeat failed; leases were not renewed this time")

    async def beat(self) -> None:
        ids = self.running.ids()
        if not ids:
            return
        statement = (
            update(Job)
            .where(Job.id.in_(ids), Job.status == JobStatus.RUNNING)
            .values(heartbeat_at=utcnow())
            .returning(Job.id)
            .execution_options(synchronize_session=False)
        )
        async with self.engine().begin() as conn:
            alive = set((await conn.scalars(statement)).all())
        gone = set(ids) - alive
        if gone:
            for job_id in self.running.abort(gone):
                log.info("job %s is no longer RUNNING (cancelled?): aborting it", job_id)


async def keep_alive(client: aioredis.Redis, key: str, broker_id: str, interval_ms: int) -> None:
    """Tell Dramatiq this worker process is alive, every heartbeat: its consumers do so only
    when they fetch, and one whose threads are all busy does not fetch."""
    while True:
        try:
            await client.zadd(key, {broker_id: int(time.time() * 1000)})
        except Exception:
            log.exception("telling Dramatiq this worker is alive failed")
        await asyncio.sleep(interval_ms / 1000)
