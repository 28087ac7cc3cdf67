"""The progress statement (`ferry.db.transitions`) on PostgreSQL and on SQLite: it stores a
report only on its attempt while it runs, and answers the tenant of each job it stored (that
it finds the rows by id alone: tests/integration/worker/test_statements.py)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.jobs import NewRow, create_jobs
from ferry.db.models import Job, JobStatus, utcnow
from ferry.db.transitions import ProgressReport, statements_for
from tests.support.jobs import force_status, new_tenant


async def test_a_report_is_stored_on_its_running_attempt_only(db: AsyncEngine) -> None:
    tenant = new_tenant()
    row = NewRow(tenant, "sleep", {"delayMs": 0}, max_attempts=5, delay_ms=0)
    running, retried, pending, ended = [job.id for job in await create_jobs(db, [row] * 4)]
    sql = statements_for(db.dialect.name)
    async with db.connect() as conn:
        await sql.claim(conn, [running, retried, ended], utcnow())
    await force_status(db, str(retried), "RUNNING", attempts=2)  # its next attempt runs
    await force_status(db, str(ended), "COMPLETED")
    reports = [
        ProgressReport(running, 1, 0.25, "a quarter"),
        ProgressReport(retried, 1, 0.9, "late: attempt 1 is over"),
        ProgressReport(pending, 1, 0.5, None),
        ProgressReport(ended, 1, 0.5, None),
        ProgressReport(uuid.uuid4(), 1, 0.5, "deleted"),
    ]
    async with db.connect() as conn:
        stored = await sql.progress(conn, reports)
    assert stored == {running: tenant}
    async with db.connect() as conn:
        rows = {
            row.id: (row.progress, row.progress_message)
            for row in await conn.execute(select(Job.id, Job.progress, Job.progress_message))
            if row.id in (running, retried, pending, ended)
        }
    assert rows == {
        running: (0.25, "a quarter"),
        retried: (None, None),
        pending: (None, None),
        ended: (None, None),
    }
    # Again, for two jobs at once (a message cleared); a new claim clears it all.
    await force_status(db, str(pending), JobStatus.RUNNING, attempts=1)
    async with db.connect() as conn:
        stored = await sql.progress(
            conn, [ProgressReport(running, 1, 1.0, None), ProgressReport(pending, 1, 0.0, "go")]
        )
    assert stored == {running: tenant, pending: tenant}
    async with db.connect() as conn:
        found = (
            await conn.execute(select(Job.progress, Job.progress_message).where(Job.id == running))
        ).one()
    assert tuple(found) == (1.0, None)
