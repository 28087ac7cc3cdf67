"""The dispatcher: every worker process sends the parked jobs (`ferry.db.parked`) as
they come due, each as a message delayed until its due time, sent `AHEAD_S` early
so that it runs on time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.jobs import Enqueued
from ferry.db.models import utcnow
from ferry.db.parked import UNPARK_BATCH, unpark_due
from ferry.queue.sender import Sender

log = logging.getLogger(__name__)

EVERY_S = 1.0
AHEAD_S = 5.0


class Dispatcher:
    def __init__(self, engine: Callable[[], AsyncEngine], sender: Sender) -> None:
        self.engine = engine
        self.sender = sender
        self.sent = 0  # jobs this dispatcher sent (tests, logs)

    async def run(self) -> None:
        while True:
            try:
                unparked = await self.dispatch()
            except Exception:
                log.exception("sending the parked jobs that are due failed; trying again")
                unparked = 0
            if unparked < UNPARK_BATCH:
                await asyncio.sleep(EVERY_S)

    async def dispatch(self) -> int:
        """Unpark and send the jobs due within AHEAD_S; how many rows were unparked."""
        now = utcnow()
        async with self.engine().begin() as conn:
            due, unparked = await unpark_due(conn, now + timedelta(seconds=AHEAD_S))
        jobs = [
            Enqueued(
                job.id,
                job.type,
                job.tenant_id,
                _ms_until(job.next_run_at - now),
                priority=job.priority,
            )
            for job in due
        ]
        # A failed send is logged; the recovery pass re-sends the jobs once overdue.
        if jobs and await self.sender.send(jobs):
            self.sent += len(jobs)
        return unparked


def _ms_until(delta: timedelta) -> int:
    return max(int(delta.total_seconds() * 1000), 0)
