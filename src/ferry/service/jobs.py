"""The job service: creates, replays and cancels jobs, each as commit -> announce.

Rows are committed before their events are published and their messages are
sent (a worker must never see a message for a row it cannot read), and events
before messages (a worker's RUNNING must never overtake the PENDING that
announced the job). What is committed is the truth: a failed publish or send is
logged, and the recovery pass relays the outbox row and re-sends what no queue
holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from ferry.db import outbox
from ferry.db.idempotency import claim, remember
from ferry.db.jobs import Enqueued, JobStore, NewRow, insert_jobs
from ferry.db.models import Job, JobStatus, new_mark, utcnow
from ferry.events.event import JobEvent, event_of, pending_events
from ferry.events.log import Committed, EventLog
from ferry.observability.metrics import recorder
from ferry.queue.sender import Sender
from ferry.service.intake import Intake


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A create's `Idempotency-Key`, its tenant, and the digest of its request."""

    tenant_id: str
    key: str
    digest: str


class JobService:
    def __init__(
        self,
        engine: AsyncEngine,
        intake_engine: AsyncEngine,
        events: EventLog,
        sender: Sender,
        *,
        default_max_attempts: int,
        park_after_ms: int,
    ) -> None:
        """`intake_engine`: the connection the intake writes its groups on."""
        self.engine = engine
        self.default_max_attempts = default_max_attempts  # of a job that names none
        self.park_after_ms = park_after_ms  # a job due later waits in the database
        self.events = events
        self.sender = sender
        self.intake = Intake(intake_engine, self.announce)

    async def create(
        self, rows: Sequence[NewRow], key: IdempotencyKey | None = None
    ) -> tuple[list[uuid.UUID], bool]:
        """Create the jobs, announce and send them: (their ids, True). With an
        Idempotency-Key already used for this request: (the first request's ids, False)."""
        if key is None:
            # Shares a transaction with the creates that arrive with it (ferry.service.intake).
            jobs = await self.intake.create(rows)
        else:
            async with self.session() as session:
                if earlier := await claim(session, key.tenant_id, key.key, key.digest):
                    return earlier.job_ids, False
                mark = new_mark()
                jobs = await insert_jobs(session, rows, mark)
                await remember(session, key.tenant_id, key.key, [job.id for job in jobs])
                await self._commit_and_announce(session, pending_events(jobs, utcnow()), jobs, mark)
        for job in jobs:
            recorder.inc("ferry_jobs_created", job.tenant_id, job.type)
        return [job.id for job in jobs], True

    async def retry(self, session: AsyncSession, job_id: uuid.UUID) -> Job:
        """Replay a FAILED or CANCELLED job."""
        now = utcnow()
        job = await JobStore(session).retry(job_id, now)
        queued = Enqueued(job.id, job.type, job.tenant_id, 0, priority=job.priority)
        await self._commit_and_announce(session, [event_of(job, now)], [queued])
        return job

    async def retry_many(
        self,
        session: AsyncSession,
        tenant_id: str,
        *,
        ids: Sequence[uuid.UUID] | None,
        job_type: str | None,
        failed_since: datetime | None,
        limit: int,
    ) -> list[Enqueued]:
        """Replay a tenant's dead letters, the oldest first."""
        now = utcnow()
        jobs = await JobStore(session).retry_many(
            tenant_id, ids=ids, job_type=job_type, failed_since=failed_since, limit=limit, now=now
        )
        await self._commit_and_announce(session, pending_events(jobs, now), jobs)
        return jobs

    async def cancel(self, session: AsyncSession, job_id: uuid.UUID) -> Job:
        """Cancel a PENDING or RUNNING job (a running one is aborted at its worker's
        next heartbeat)."""
        now = utcnow()
        job = await JobStore(session).cancel(job_id, now)
        await self._commit_and_announce(session, [event_of(job, now)])
        recorder.inc("ferry_jobs_finished", job.tenant_id, job.type, JobStatus.CANCELLED)
        return job

    def session(self) -> AsyncSession:
        return AsyncSession(self.engine, expire_on_commit=False)

    async def _commit_and_announce(
        self,
        session: AsyncSession,
        events: list[JobEvent],
        jobs: Sequence[Enqueued] = (),
        mark: uuid.UUID | None = None,
    ) -> None:
        """Commit, with the outbox row of the events' jobs (`ferry.db.outbox`; `mark`:
        written already), then announce. The events' `at` is the `updated_at` their
        jobs got."""
        if mark is None and events:
            mark = await outbox.add(session, (event.job_id for event in events), events[0].at)
        await session.commit()
        await self.announce(events, jobs, mark)

    async def announce(
        self, events: list[JobEvent], jobs: Sequence[Enqueued] = (), mark: uuid.UUID | None = None
    ) -> None:
        """After a commit: publish the events (of the outbox row `mark`), then send the jobs."""
        await self.sender.announce(self.events, Committed(events, mark), jobs)
