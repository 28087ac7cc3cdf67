"""Claims sent ahead and given back (`ferry.worker.claims_ahead`) through the status writer
on PostgreSQL: the job is RUNNING once claimed, and PENDING again with its attempt
uncounted once its message returns to the queue, each change announced in order."""

from __future__ import annotations

import asyncio
import time
import uuid
from types import SimpleNamespace

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.jobs import NewRow, create_jobs
from ferry.db.models import Job, JobStatus
from ferry.events.event import JobEvent
from ferry.events.log import Committed
from ferry.queue.messages import JOBS_QUEUE
from ferry.worker.claims_ahead import ClaimsAhead
from ferry.worker.writer import StatusWriter
from tests.support.jobs import new_tenant


async def test_a_claim_sent_ahead_and_given_back_leaves_the_job_as_it_was(
    engine: AsyncEngine, pg_writer: tuple[StatusWriter, list[Committed]], sync_type: str
) -> None:
    writer, published = pg_writer
    row = NewRow(new_tenant(), sync_type, {}, max_attempts=1, delay_ms=0)
    [created] = await create_jobs(engine, [row])
    message = SimpleNamespace(
        queue_name=JOBS_QUEUE,
        actor_name=sync_type,
        args=[str(created.id)],
        options={"redis_message_id": "r1"},
    )
    claims = ClaimsAhead(writer, threads=1)
    claims.fetched(message)
    deadline = time.monotonic() + 10
    while claims.ids() != [created.id]:  # committed: RUNNING, waiting for a thread
        assert time.monotonic() < deadline, "the claim sent ahead was not committed"
        await asyncio.sleep(0.01)
    assert await status(engine, created.id) == (JobStatus.RUNNING, 1)

    claims.requeueing([message])  # the worker stops before a thread took it

    # Its only attempt is still to come: another worker may claim and run it.
    assert await status(engine, created.id) == (JobStatus.PENDING, 0)
    events = [e for part in published for e in part.events if isinstance(e, JobEvent)]
    assert [(e.job_id, e.status, e.attempts) for e in events] == [
        (created.id, JobStatus.RUNNING, 1),
        (created.id, JobStatus.PENDING, 0),
    ]
    assert all(part.mark is not None for part in published)  # both in the outbox
    assert claims.ids() == []


async def status(engine: AsyncEngine, job_id: uuid.UUID) -> tuple[str, int]:
    async with engine.connect() as conn:
        found = (await conn.execute(select(Job.status, Job.attempts).where(Job.id == job_id))).one()
    return found.status, found.attempts
