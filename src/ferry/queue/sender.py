"""Sends committed jobs to their Dramatiq actors.

The API calls `send` only after the rows are committed, so a worker never
sees a message for a row that does not exist yet. A failed send is logged and
swallowed: the row stays PENDING with `next_run_at` due, and the recovery pass
(`ferry.worker.recovery`) re-sends every PENDING job that is overdue.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence

import anyio.to_thread
import dramatiq
import redis.asyncio as aioredis

from ferry.db.jobs import Enqueued
from ferry.db.models import JobStatus, utcnow
from ferry.events.event import JobEvent
from ferry.events.log import Committed, EventLog
from ferry.queue.fair.broker import FairRedisBroker
from ferry.queue.messages import job_message

log = logging.getLogger(__name__)


def send_now(broker: dramatiq.Broker, jobs: Iterable[Enqueued]) -> None:
    """Blocking: enqueue the jobs, delayed ones on the delay queue; on the fair
    broker the others go to their tenants' queues a chunk per round trip."""
    fair = broker if isinstance(broker, FairRedisBroker) else None
    now = []
    for job in jobs:
        message = job_message(str(job.id), job.type, job.tenant_id)
        if job.delay_ms:
            broker.enqueue(message, delay=job.delay_ms)
        elif fair is not None:
            now.append(message)
        else:
            broker.enqueue(message)
    if fair is not None and now:
        fair.enqueue_many(now)


class Dispatcher:
    def __init__(self, broker: dramatiq.Broker, redis: aioredis.Redis | None = None) -> None:
        self.broker = broker
        # With an asyncio client, the fair broker's sends for now run on the loop;
        # the rest (delays, other brokers) go through Dramatiq, off the loop.
        self.fair = broker if isinstance(broker, FairRedisBroker) else None
        self.redis = redis

    async def send(self, jobs: Sequence[Enqueued]) -> bool:
        """Enqueue without blocking the event loop; False (and logged) if the broker refused."""
        rest = jobs
        try:
            if self.fair is not None and self.redis is not None:
                now = [
                    job_message(str(job.id), job.type, job.tenant_id)
                    for job in jobs
                    if not job.delay_ms
                ]
                if now:
                    await self.fair.enqueue_many_on(self.redis, now)
                rest = [job for job in jobs if job.delay_ms]
            if rest:
                await anyio.to_thread.run_sync(send_now, self.broker, rest)
        except Exception:
            log.exception("enqueue failed for %d job(s); the recovery pass will re-send", len(jobs))
            return False
        return True


def pending_events(jobs: Sequence[Enqueued]) -> list[JobEvent]:
    """The PENDING event that announces each new job."""
    at = utcnow()
    return [JobEvent(job.tenant_id, job.id, JobStatus.PENDING, 0, None, at) for job in jobs]


async def announce(
    event_log: EventLog,
    dispatcher: Dispatcher,
    events: list[JobEvent],
    jobs: Sequence[Enqueued] = (),
    mark: uuid.UUID | None = None,
) -> None:
    """After a commit: publish the events (of the outbox row `mark`), then send the
    messages, so a worker's RUNNING event never overtakes the PENDING that announced
    the job. The rows are committed and are the truth: a failure here is logged (the
    recovery pass relays the outbox row, and re-sends what no queue holds)."""
    if events:
        try:
            await event_log.append([Committed(events, mark)])
        except Exception:
            log.exception("publishing %d job events failed", len(events))
    await dispatcher.send(jobs)
