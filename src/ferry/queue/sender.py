"""The only sender of job messages: the API after a commit, the recovery pass, retries,
and the jobs a worker's thread sends back from a message of several.

A parked job (created due too far ahead) is not sent: it waits in the database
until the dispatcher sends it (`ferry.worker.dispatcher`).

The API sends only after the rows are committed, so a worker never sees a
message for a row that does not exist yet. A failed send is logged and
swallowed: the row stays PENDING with `next_run_at` due, and the recovery
pass (`ferry.worker.recovery`) re-sends every PENDING job that is overdue.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import anyio.to_thread
import dramatiq
import redis.asyncio as aioredis

from ferry.db.jobs import Enqueued
from ferry.events.log import Committed, EventLog
from ferry.queue.fair.broker import fair_broker
from ferry.queue.fair.queue import FairQueue, TenantQueue
from ferry.queue.group_ack import GroupAckRedisBroker
from ferry.queue.messages import job_message, outgoing

log = logging.getLogger(__name__)


class Sender:
    def __init__(self, broker: dramatiq.Broker, redis: aioredis.Redis | None = None) -> None:
        """`redis`: an asyncio client of the caller's event loop; with it, the fair
        broker's sends for now run on that loop, not in a thread."""
        self.broker = broker
        self.redis = redis
        self._fair_broker = fair_broker(broker)

    @property
    def fair(self) -> FairQueue | None:
        """The tenants' queues, when fair scheduling is on."""
        return None if self._fair_broker is None else self._fair_broker.fair

    def send_now(self, jobs: Iterable[Enqueued]) -> None:
        """Blocking: enqueue the jobs, delayed ones on the delay queue; on the fair
        broker the others go to their tenants' queues a chunk per round trip."""
        now = []
        for job in jobs:
            if job.parked:
                continue
            if self._fair_broker is not None and not job.delay_ms:
                now.append(outgoing(str(job.id), job.type, job.tenant_id, job.priority))
                continue
            message = job_message(str(job.id), job.type, job.tenant_id, job.priority)
            self.broker.enqueue(message, delay=job.delay_ms or None)
        if self._fair_broker is not None and now:
            self._fair_broker.push(now)

    def send_ready(self, jobs: Sequence[Enqueued]) -> None:
        """Blocking: jobs that have had their tenant's turn (those of a message of several
        that a worker's thread sends back), back at the head of Dramatiq's queue, one
        message each, in one round trip."""
        assert isinstance(self.broker, GroupAckRedisBroker), "bundles come from the fair queue"
        messages = [outgoing(str(job.id), job.type, job.tenant_id, job.priority) for job in jobs]
        self.broker.enqueue_ready(messages)

    async def announce(
        self, events: EventLog | None, committed: Committed, jobs: Sequence[Enqueued] = ()
    ) -> None:
        """After a commit: publish its events, then send its jobs (in that order: a
        worker's RUNNING never overtakes the PENDING). A failed publish is logged; the
        recovery pass relays the outbox row."""
        if events is not None and committed.events:
            try:
                await events.append([committed])
            except Exception:
                log.exception("publishing %d job events failed", len(committed.events))
        await self.send(jobs)

    async def send(self, jobs: Sequence[Enqueued]) -> bool:
        """Enqueue without blocking the event loop; False (and logged) if the broker refused."""
        jobs = [job for job in jobs if not job.parked]  # the dispatcher sends them when due
        rest = jobs
        try:
            if self._fair_broker is not None and self.redis is not None:
                now = [
                    outgoing(str(job.id), job.type, job.tenant_id, job.priority)
                    for job in jobs
                    if not job.delay_ms
                ]
                if now:
                    await self._fair_broker.push_on(self.redis, now)
                rest = [job for job in jobs if job.delay_ms]
            if rest:
                await anyio.to_thread.run_sync(self.send_now, rest)
        except Exception:
            log.exception("enqueue failed for %d job(s); the recovery pass will re-send", len(jobs))
            return False
        return True

    async def waiting(self, tenant_id: str | None = None) -> list[TenantQueue] | None:
        """The tenants' queues waiting for a turn (of one tenant, or all); None when
        fair scheduling is off."""
        if self.fair is None:
            return None
        return await anyio.to_thread.run_sync(self.fair.peek, [tenant_id] if tenant_id else [])
