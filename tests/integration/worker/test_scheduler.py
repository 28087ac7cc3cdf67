"""The scheduler's firing on PostgreSQL and SQLite: the job of a due time, its events and
message, the schedule moved on, once per due time, and its `missed` policy."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import msgspec
import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.models import Job, Schedule, utcnow
from ferry.events.event import JobEvent
from ferry.events.log import Committed
from ferry.settings import Settings
from ferry.worker.scheduler import Scheduler
from tests.support.jobs import SentJobs, new_tenant


class Events:
    def __init__(self) -> None:
        self.appended: list[Committed] = []

    async def append(self, committed: list[Committed]) -> None:
        self.appended.extend(committed)


def scheduler(db: AsyncEngine, **settings: Any) -> tuple[Scheduler, Events, SentJobs]:
    events, sent = Events(), SentJobs()
    knobs = Settings(**{"schedule_grace_ms": 60_000, **settings})
    return Scheduler(lambda: db, sent, events, knobs), events, sent  # type: ignore[arg-type]


async def add_schedule(db: AsyncEngine, next_run_at: datetime, **values: Any) -> uuid.UUID:
    schedule_id = uuid.uuid4()
    row = {
        "id": schedule_id,
        "tenant_id": new_tenant(),
        "name": f"every-second-{schedule_id.hex[:8]}",
        "cron": "* * * * * *",
        "timezone": "UTC",
        "missed": "skip",
        "job_type": "sleep",
        "payload": {"delayMs": 0},
        "max_attempts": None,
        "paused": False,
        "next_run_at": next_run_at,
        "created_at": utcnow(),
        "updated_at": utcnow(),
        **values,
    }
    async with db.begin() as conn:
        await conn.execute(insert(Schedule).values(**row))
    return schedule_id


async def fired_jobs(db: AsyncEngine, schedule_id: uuid.UUID) -> list[Any]:
    async with db.connect() as conn:
        query = select(Job).where(Job.schedule_id == schedule_id).order_by(Job.scheduled_for)
        return list((await conn.execute(query)).all())


async def schedule_row(db: AsyncEngine, schedule_id: uuid.UUID) -> Any:
    async with db.connect() as conn:
        return (await conn.execute(select(Schedule).where(Schedule.id == schedule_id))).one()


async def test_a_due_schedule_fires_its_job_once_and_moves_on(db: AsyncEngine) -> None:
    # An hourly schedule, its due time this hour's start: late, but within the grace.
    due = utcnow().replace(minute=0, second=0, microsecond=0)
    schedule_id = await add_schedule(db, due, cron="0 * * * *", max_attempts=2, priority=0)
    fire, events, sent = scheduler(db, schedule_grace_ms=3_600_000)
    wait_s = await fire.fire_due()
    [job] = await fired_jobs(db, schedule_id)
    assert (job.type, job.payload, job.status, job.max_attempts) == (
        "sleep",
        {"delayMs": 0},
        "PENDING",
        2,
    )
    assert job.scheduled_for == due
    assert job.priority == 0  # the lowest, not the default
    row = await schedule_row(db, schedule_id)
    assert (row.last_run_at, row.last_job_id) == (due, job.id)
    assert row.next_run_at == due + timedelta(hours=1)
    assert 0 < wait_s <= 1
    # Announced as any create: the PENDING event, then the message. (On PostgreSQL the
    # database is the session's: other tests' schedules may be due too.)
    announced = [
        (e.job_id, e.status) for c in events.appended for e in c.events if isinstance(e, JobEvent)
    ]
    assert (job.id, "PENDING") in announced
    assert job.id in [one.id for one in sent.jobs]
    # Nothing is due again until the next due time.
    await fire.fire_due()
    assert len(await fired_jobs(db, schedule_id)) == 1


async def test_a_paused_schedule_fires_nothing(db: AsyncEngine) -> None:
    schedule_id = await add_schedule(db, utcnow() - timedelta(seconds=1), paused=True)
    fire, _, _ = scheduler(db)
    await fire.fire_due()
    assert await fired_jobs(db, schedule_id) == []
    assert (await schedule_row(db, schedule_id)).last_run_at is None


@pytest.mark.parametrize(("missed", "runs"), [("skip", 0), ("once", 1)])
async def test_after_downtime_skip_fires_nothing_and_once_fires_one(
    db: AsyncEngine, missed: str, runs: int
) -> None:
    # An hourly schedule whose due time passed two hours and a half ago.
    now = utcnow()
    due = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    schedule_id = await add_schedule(db, due, cron="0 * * * *", missed=missed)
    fire, _, _ = scheduler(db, schedule_grace_ms=1_000)
    await fire.fire_due()
    jobs = await fired_jobs(db, schedule_id)
    assert len(jobs) == runs
    if jobs:  # the catch-up run is the latest due time's
        assert jobs[0].scheduled_for == now.replace(minute=0, second=0, microsecond=0)
    row = await schedule_row(db, schedule_id)
    assert row.next_run_at == now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


async def test_a_second_job_for_the_same_due_time_is_refused(db: AsyncEngine) -> None:
    due = utcnow().replace(microsecond=0)
    schedule_id = await add_schedule(db, due + timedelta(hours=1))
    values = {
        "tenant_id": "t",
        "type": "sleep",
        "payload": {},
        "max_attempts": 1,
        "schedule_id": schedule_id,
        "scheduled_for": due,
    }
    async with db.begin() as conn:
        await conn.execute(insert(Job).values(id=uuid.uuid4(), **values))
    with pytest.raises(IntegrityError):
        async with db.begin() as conn:
            await conn.execute(insert(Job).values(id=uuid.uuid4(), **values))
    assert len(await fired_jobs(db, schedule_id)) == 1


def test_settings_bound_the_tick() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"schedule_tick_ms": 0}, Settings)


async def test_a_due_time_that_has_its_job_already_fires_nothing_more(db: AsyncEngine) -> None:
    # As if the schedule's due time had been set back to one it fired already.
    due = utcnow().replace(minute=0, second=0, microsecond=0)
    again = await add_schedule(db, due, cron="0 * * * *")
    other = await add_schedule(db, due, cron="0 * * * *")
    values = {"tenant_id": "t", "type": "sleep", "payload": {}, "max_attempts": 1}
    async with db.begin() as conn:
        await conn.execute(
            insert(Job).values(id=uuid.uuid4(), schedule_id=again, scheduled_for=due, **values)
        )
    fire, _, _ = scheduler(db, schedule_grace_ms=3_600_000)
    await fire.fire_due()
    assert len(await fired_jobs(db, again)) == 1  # the one it had
    assert [job.scheduled_for for job in await fired_jobs(db, other)] == [due]  # unhindered
    for schedule_id in (again, other):
        assert (await schedule_row(db, schedule_id)).next_run_at == due + timedelta(hours=1)


async def test_a_schedule_this_host_cannot_read_does_not_stop_the_others(db: AsyncEngine) -> None:
    due = utcnow().replace(minute=0, second=0, microsecond=0)
    unreadable = await add_schedule(db, due, cron="0 * * * *", timezone="Nowhere/Else")
    other = await add_schedule(db, due, cron="0 * * * *")
    fire, _, _ = scheduler(db, schedule_grace_ms=3_600_000)
    await fire.fire_due()
    assert await fired_jobs(db, unreadable) == []
    assert len(await fired_jobs(db, other)) == 1
    # Looked at again in a while, not at every tick.
    assert (await schedule_row(db, unreadable)).next_run_at > utcnow() + timedelta(seconds=30)
