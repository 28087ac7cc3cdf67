"""Leases of running jobs: renewed every heartbeat, and the way cancels reach a worker.
Jobs stuck behind a slow one in their message are given back here too
(`ClaimsAhead.overdue`).

One `UPDATE ... WHERE id IN (running) AND status = 'RUNNING' RETURNING id` per
heartbeat renews every lease this process holds; a running job missing from
RETURNING was cancelled (or deleted, or handed to another worker after this
one stalled), so its thread is aborted. On Redis the process also tells
Dramatiq it is alive every heartbeat, and the API which job types it runs
(`keep_alive`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress

import redis.asyncio as aioredis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.models import Job, JobStatus, utcnow
from ferry.jobs import agreement
from ferry.jobs.registry import REGISTRY, digests
from ferry.observability.metrics import INSTANCE
from ferry.worker.claims_ahead import ClaimsAhead
from ferry.worker.running import RunningJobs

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(
        self,
        engine: Callable[[], AsyncEngine],
        running: RunningJobs,
        interval_ms: int,
        claims: ClaimsAhead | None = None,
    ) -> None:
        """`claims`: jobs claimed ahead and not started yet, whose leases are renewed too."""
        self.engine = engine
        self.running = running
        self.interval = interval_ms / 1000
        self.claims = claims
        # Give-backs of jobs stuck behind a slow one: apart from the loop's own pool
        # (acks, lookups), which a stalled database must not fill.
        self._giving = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ferry-give-back")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.beat()
            except Exception:
                log.exception("heartbeat failed; leases were not renewed this time")

    async def beat(self) -> None:
        if self.claims is not None:
            self._give_back_overdue(self.claims)
        ids = self.running.ids()
        if self.claims is not None:
            ids += self.claims.ids()
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
            if self.claims is not None:
                self.claims.abort(gone)
            for job_id in self.running.abort(gone):
                log.info("job %s is no longer RUNNING (cancelled?): aborting it", job_id)

    def _give_back_overdue(self, claims: ClaimsAhead) -> None:
        """Jobs stuck in a bundle behind a slow one go back for other threads. A give-back
        blocks (a write, a send): it runs on a pool of its own, and the beat goes on."""
        for behind, jobs in claims.overdue():
            log.info("%d jobs waited behind a slow job of their message: giving them back",
                     len(jobs))  # fmt: skip
            self._giving.submit(behind.give_back, jobs).add_done_callback(_log_failure)


def _log_failure(given: Future[None]) -> None:
    if not given.cancelled() and (exc := given.exception()) is not None:
        log.error("giving back jobs that waited behind a slow one failed: %r; they are "
                  "left to their leases and the recovery pass", exc)  # fmt: skip


async def keep_alive(
    client: aioredis.Redis,
    key: str,
    broker_id: str,
    interval_ms: int,
    namespace: str,
) -> None:
    """Tell Dramatiq this worker process is alive, every heartbeat: its consumers do so only
    when they fetch, and one whose threads are all busy does not fetch. And publish the
    digests of the job types it runs, for the API to compare with its own
    (`ferry.jobs.agreement`) under the deployment's `namespace`, withdrawn when it stops."""
    runs = agreement.Published(worker=INSTANCE, types=digests(REGISTRY))
    ttl_ms = agreement.ttl_ms(interval_ms)
    try:
        while True:
            try:
                await client.zadd(key, {broker_id: int(time.time() * 1000)})
            except Exception:
                log.exception("telling Dramatiq this worker is alive failed")
            try:
                await agreement.publish(client, namespace, broker_id, runs, ttl_ms)
            except Exception:
                log.exception("publishing this worker's job types failed")
            await asyncio.sleep(interval_ms / 1000)
    finally:
        with suppress(Exception):
            async with asyncio.timeout(2):
                await agreement.withdraw(client, namespace, broker_id)
