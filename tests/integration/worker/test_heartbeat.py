"""The heartbeat (`ferry.worker.heartbeat`) renews the leases of jobs claimed ahead and not
started yet, as of running ones, and marks those cancelled meanwhile."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.jobs import NewRow, create_jobs
from ferry.db.models import Job, utcnow
from ferry.db.transitions import ClaimedJob, statements_for
from ferry.queue.messages import JOBS_QUEUE
from ferry.worker.claims_ahead import ClaimsAhead
from ferry.worker.heartbeat import Heartbeat
from ferry.worker.running import RunningJobs
from tests.support.jobs import force_status, new_tenant


class Writer:
    """Commits each claim sent ahead at once, as the job the database claimed."""

    def __init__(self, claimed: dict[uuid.UUID, ClaimedJob]) -> None:
        self.claimed = claimed

    def claim_then(self, job_id: uuid.UUID, then: Callable[[ClaimedJob | None], None]) -> None:
        then(self.claimed.get(job_id))


async def test_waiting_claims_are_renewed_and_cancelled_ones_marked(
    engine: AsyncEngine, sync_type: str
) -> None:
    row = NewRow(new_tenant(), "sleep", {"delayMs": 0}, max_attempts=5, delay_ms=0)
    kept, cancelled = [job.id for job in await create_jobs(engine, [row] * 2)]
    async with engine.connect() as conn:
        wrote = await statements_for("postgresql").claim(conn, [kept, cancelled], utcnow())
    claims = ClaimsAhead(Writer(dict(wrote.rows)), threads=2)  # type: ignore[arg-type, arg-type]
    for job_id in (kept, cancelled):
        claims.fetched(
            SimpleNamespace(
                queue_name=JOBS_QUEUE,
                actor_name=sync_type,
                args=[str(job_id)],
                options={"redis_message_id": str(job_id)},
            )
        )
    stale = utcnow() - timedelta(minutes=5)
    await force_status(engine, str(kept), "RUNNING", heartbeat_at=stale)
    await force_status(engine, str(cancelled), "CANCELLED", heartbeat_at=stale)

    await Heartbeat(lambda: engine, RunningJobs(), 1000, claims).beat()

    async with engine.connect() as conn:
        beats = dict((await conn.execute(select(Job.id, Job.heartbeat_at).where(Job.id.in_([kept, cancelled])))).all())  # fmt: skip
    renewed = beats[kept]
    assert renewed is not None and renewed > stale and beats[cancelled] == stale
    assert claims.ids() == [kept]  # the cancelled one is skipped by the thread that takes it
