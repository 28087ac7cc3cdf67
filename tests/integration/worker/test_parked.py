"""Parked jobs on PostgreSQL and SQLite: the dispatcher unparks those due soon, sends the
PENDING ones delayed until their due time, and leaves the others parked."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.models import Job, utcnow
from ferry.worker.dispatcher import AHEAD_S, Dispatcher
from tests.support.jobs import SentJobs


async def add_parked(db: AsyncEngine, due_in: timedelta, status: str = "PENDING") -> uuid.UUID:
    job_id = uuid.uuid4()
    values: dict[str, Any] = {
        "id": job_id,
        "tenant_id": "t-parked",
        "type": "sleep",
        "payload": {"delayMs": 0},
        "max_attempts": 1,
        "status": status,
        "next_run_at": utcnow() + due_in,
        "parked": True,
    }
    async with db.begin() as conn:
        await conn.execute(insert(Job).values(**values))
    return job_id


async def still_parked(db: AsyncEngine, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    async with db.connect() as conn:
        rows = await conn.execute(select(Job.id).where(Job.id.in_(ids), Job.parked.is_(True)))
        return {row.id for row in rows}


async def test_the_dispatcher_sends_the_parked_jobs_that_come_due(db: AsyncEngine) -> None:
    overdue = await add_parked(db, timedelta(seconds=-3))
    soon = await add_parked(db, timedelta(seconds=AHEAD_S / 2))
    later = await add_parked(db, timedelta(days=30))
    cancelled = await add_parked(db, timedelta(seconds=-1), status="CANCELLED")
    sent = SentJobs()
    dispatcher = Dispatcher(lambda: db, sent)  # type: ignore[arg-type]
    await dispatcher.dispatch()
    by_id = {job.id: job for job in sent.jobs}
    assert {overdue, soon} <= set(by_id)
    assert later not in by_id and cancelled not in by_id
    assert by_id[overdue].delay_ms == 0  # overdue: at once
    assert 0 < by_id[soon].delay_ms <= AHEAD_S * 1000  # held back until it is due
    assert not by_id[soon].parked
    assert await still_parked(db, [overdue, soon, later, cancelled]) == {later}
    # Unparked once: the next pass sends them again never.
    sent.jobs.clear()
    await dispatcher.dispatch()
    assert not {overdue, soon} & {job.id for job in sent.jobs}
