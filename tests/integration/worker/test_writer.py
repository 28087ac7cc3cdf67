"""The status writer on PostgreSQL: what the database refuses fails one job, never a tick."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from functools import partial

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.jobs import NewRow, create_jobs
from ferry.db.models import Job, JobEventOutbox, JobStatus, utcnow
from ferry.db.transitions import Outcome
from ferry.events.event import JobEvent
from ferry.events.log import Committed
from ferry.worker.writer import StatusWriter
from tests.support.jobs import force_status, new_tenant


async def test_outcomes_the_database_refuses_fail_alone(
    engine: AsyncEngine, pg_writer: tuple[StatusWriter, list[Committed]]
) -> None:
    tenant = new_tenant()
    rows = [NewRow(tenant, "sleep", {"delayMs": 0}, max_attempts=5, delay_ms=0)] * 5
    ids = [job.id for job in await create_jobs(engine, rows)]
    for job_id in ids:
        await force_status(engine, str(job_id), "RUNNING", attempts=1)
    later = utcnow() + timedelta(seconds=60)
    outcomes = [
        Outcome(ids[0], JobStatus.COMPLETED, result={"value": 1}),
        Outcome(ids[1], JobStatus.COMPLETED, result={"text": "a\x00b"}),  # jsonb refuses NUL
        Outcome(ids[2], JobStatus.COMPLETED, result={"text": "a\ud800b"}),  # UTF-8 cannot say it
        Outcome(ids[3], JobStatus.FAILED, error="boom\x00"),  # text refuses NUL
        Outcome(ids[4], JobStatus.PENDING, error="again", next_run_at=later, retry_delay_ms=60_000),
    ]
    writer, published = pg_writer
    recorded: dict[uuid.UUID, JobStatus | None] = {}
    done = threading.Semaphore(0)

    def then(job_id: uuid.UUID, status: JobStatus | None) -> None:
        recorded[job_id] = status
        done.release()

    for outcome in outcomes:
        writer.finish_then(outcome, partial(then, outcome.job_id))
    for _ in outcomes:
        assert done.acquire(timeout=30)
    writer.settle(timeout=10)

    async with engine.connect() as conn:
        stored = {
            row.id: (row.status, row.error, row.result)
            for row in await conn.execute(
                select(Job.id, Job.status, Job.error, Job.result).where(Job.id.in_(ids))
            )
        }
        outboxed = {
            job_id
            for row in await conn.execute(select(JobEventOutbox.job_ids))
            for job_id in row.job_ids
        }
    assert stored[ids[0]] == ("COMPLETED", None, {"value": 1})
    assert stored[ids[4]] == ("PENDING", "again", None)
    for refused, what in ((ids[1], "result"), (ids[2], "result"), (ids[3], "error")):
        status, error, _ = stored[refused]
        assert status == "FAILED"
        assert error.startswith(f"{what} could not be stored: "), error
    assert recorded == {
        ids[0]: "COMPLETED",
        ids[1]: "FAILED",
        ids[2]: "FAILED",
        ids[3]: "FAILED",
        ids[4]: "PENDING",
    }
    # Every change was announced, in the outbox and in the events handed on.
    assert set(ids) <= outboxed
    events = {
        event.job_id: (event.status, event.error)
        for part in published
        for event in part.events
        if isinstance(event, JobEvent)
    }
    assert {job_id: events[job_id] for job_id in ids} == {
        job_id: stored[job_id][:2] for job_id in ids
    }
    assert all(part.mark is not None for part in published)
