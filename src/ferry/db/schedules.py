"""Every SQL statement on `schedules`: the API's reads and writes, and the firing.

A schedule fires in one transaction: its row, locked (`FOR UPDATE SKIP LOCKED`,
so that schedulers in several processes share the due schedules without
waiting on each other), moves on to its next due time, and the job of the due
time is inserted with its outbox row. The unique index on the jobs' (schedule,
due time) makes sure of it whatever happens: a second job for a due time is not
inserted.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from ferry.db import outbox
from ferry.db.engine import skipping_insert
from ferry.db.jobs import Enqueued, NotFound
from ferry.db.models import DEFAULT_PRIORITY, Job, JobStatus, Schedule, new_job_id

DUE_BATCH = 100  # schedules fired per transaction


class NameTaken(Exception):
    """The tenant has a schedule of that name already."""

    def __init__(self, tenant_id: str, name: str) -> None:
        super().__init__(f"tenant {tenant_id} already has a schedule named {name!r}")


class ScheduleStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, schedule_id: uuid.UUID, tenant_id: str | None = None) -> Schedule:
        """The schedule; NotFound if absent or, with `tenant_id`, another tenant's."""
        schedule = await self.session.get(Schedule, schedule_id)
        if schedule is None or tenant_id not in (None, schedule.tenant_id):
            raise NotFound("schedule", schedule_id)
        return schedule

    async def page(
        self, *, tenant_id: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Schedule], int]:
        """By name (then tenant), and how many there are in all."""
        filters = [] if tenant_id is None else [Schedule.tenant_id == tenant_id]
        query = (
            select(Schedule)
            .where(*filters)
            .order_by(Schedule.name, Schedule.tenant_id)
            .limit(limit)
            .offset(offset)
        )
        schedules = (await self.session.scalars(query)).all()
        total = await self.session.scalar(
            select(func.count()).select_from(Schedule).where(*filters)
        )
        return schedules, int(total or 0)

    async def save(self, schedule: Schedule) -> Schedule:
        """Write a new or changed schedule now (not at the request's end), so that a
        name already taken is a NameTaken here."""
        key, tenant_id, name = schedule.id, schedule.tenant_id, schedule.name  # kept: a
        self.session.add(schedule)  # rollback expires them
        try:
            await self.session.flush()
        except IntegrityError:
            await self.session.rollback()
            raise NameTaken(tenant_id, name) from None
        except StaleDataError:  # deleted meanwhile
            await self.session.rollback()
            raise NotFound("schedule", key) from None
        return schedule

    async def delete(self, schedule: Schedule) -> None:
        await self.session.delete(schedule)
        await self.session.flush()


# -- firing (the workers' schedulers) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fired:
    """A job a schedule fires for one of its due times."""

    schedule: Row[Any]  # of `due`
    due: datetime
    max_attempts: int


async def due(conn: AsyncConnection, now: datetime) -> list[Row[Any]]:
    """The active schedules due at `now`, longest due first, locked until the end of
    `conn`'s transaction; those another scheduler holds are left to it."""
    query = (
        select(Schedule.__table__)
        .where(Schedule.paused.is_(False), Schedule.next_run_at <= now)
        .order_by(Schedule.next_run_at)
        .limit(DUE_BATCH)
        .with_for_update(skip_locked=True)
    )
    return list((await conn.execute(query)).all())


async def insert_fired(
    conn: AsyncConnection, fired: Sequence[Fired], now: datetime
) -> tuple[list[tuple[Fired, Enqueued]], uuid.UUID | None]:
    """The fired jobs, PENDING and due now, with their outbox row (its mark). A due time
    that has its job already gets no second one: the firings that made a job, each
    with it."""
    if not fired:
        return [], None
    jobs = [
        Enqueued(
            new_job_id(),
            one.schedule.job_type,
            one.schedule.tenant_id,
            0,
            priority=(DEFAULT_PRIORITY if one.schedule.priority is None else one.schedule.priority),
        )
        for one in fired
    ]
    values = [
        {
            "id": job.id,
            "tenant_id": one.schedule.tenant_id,
            "type": one.schedule.job_type,
            "payload": one.schedule.payload,
            "status": JobStatus.PENDING,
            "attempts": 0,
            "max_attempts": one.max_attempts,
            "created_at": now,
            "updated_at": now,
            "next_run_at": now,
            "schedule_id": one.schedule.id,
            "scheduled_for": one.due,
            "priority": job.priority,
        }
        for job, one in zip(jobs, fired, strict=True)
    ]
    statement = (
        skipping_insert(conn.dialect.name)(Job)
        .values(values)
        .on_conflict_do_nothing(
            index_elements=[Job.schedule_id, Job.scheduled_for],
            index_where=Job.schedule_id.is_not(None),
        )
        .returning(Job.id)
    )
    inserted = set((await conn.execute(statement)).scalars())
    made = [(one, job) for one, job in zip(fired, jobs, strict=True) if job.id in inserted]
    mark = await outbox.add(conn, (job.id for _, job in made), now)
    return made, mark


async def move_on(
    conn: AsyncConnection,
    schedule_id: uuid.UUID,
    next_run_at: datetime,
    now: datetime,
    fired: tuple[datetime, uuid.UUID] | None,
) -> None:
    """The schedule's next due time; `fired`: the due time it fired for, and its job."""
    values: dict[str, Any] = {"next_run_at": next_run_at, "updated_at": now}
    if fired is not None:
        values["last_run_at"], values["last_job_id"] = fired
    await conn.execute(update(Schedule).where(Schedule.id == schedule_id).values(**values))


async def next_due(conn: AsyncConnection) -> datetime | None:
    """The earliest due time of the active schedules."""
    query = select(func.min(Schedule.next_run_at)).where(Schedule.paused.is_(False))
    return await conn.scalar(query)
