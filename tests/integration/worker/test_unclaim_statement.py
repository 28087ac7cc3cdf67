"""Giving back a claim (`ferry.db.transitions`, for `ferry.worker.claims_ahead`) on
PostgreSQL and on SQLite: only the claimed attempt of a job still RUNNING goes back to
PENDING, with the attempt uncounted."""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.jobs import NewRow, create_jobs
from ferry.db.models import Job, JobStatus, utcnow
from ferry.db.transitions import statements_for
from tests.support.jobs import force_status, new_tenant


async def test_only_the_claimed_attempt_of_a_running_job_goes_back(db: AsyncEngine) -> None:
    tenant = new_tenant()
    row = NewRow(tenant, "sleep", {"delayMs": 0}, max_attempts=5, delay_ms=0)
    given_back, later, ended = [job.id for job in await create_jobs(db, [row] * 3)]
    sql = statements_for(db.dialect.name)
    async with db.connect() as conn:
        claimed = await sql.claim(conn, [given_back, later, ended], utcnow())
    assert {job.attempts for job in claimed.rows.values()} == {1}
    await force_status(db, str(later), "RUNNING", attempts=2)  # recovered and claimed anew
    await force_status(db, str(ended), "COMPLETED")
    now = utcnow()
    async with db.connect() as conn:
        wrote = await sql.unclaim(conn, [(given_back, 1), (later, 1), (ended, 1)], now)
    assert wrote.status is JobStatus.PENDING
    assert {job_id: (row.tenant_id, row.attempts) for job_id, row in wrote.rows.items()} == {
        given_back: (tenant, 0)
    }
    async with db.connect() as conn:
        rows = {
            row.id: row for row in await conn.execute(select(Job).where(Job.tenant_id == tenant))
        }
    back = rows[given_back]
    assert (back.status, back.attempts, back.started_at, back.heartbeat_at) == (
        JobStatus.PENDING, 0, None, None,
    )  # fmt: skip
    assert back.next_run_at is not None  # due now: the recovery pass re-sends it if lost
    assert (rows[later].status, rows[later].attempts) == (JobStatus.RUNNING, 2)
    assert rows[ended].status == JobStatus.COMPLETED
    if db.dialect.name == "postgresql":  # its events are announced in the same statement
        assert wrote.mark is not None
        async with db.connect() as conn:
            announced = await conn.execute(
                text("SELECT job_ids FROM job_event_outbox WHERE id = :mark"), {"mark": wrote.mark}
            )
            assert announced.scalar_one() == [given_back]
