"""Pauses: a tenant, or one job type of a tenant, whose jobs are held (not started).

PostgreSQL keeps them (a Redis loss forgets nothing); each worker process reads
them every heartbeat and skips the messages of held jobs, which stay PENDING in
the database with no message. Resuming sends them again; the recovery pass
leaves held jobs alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, and_, delete, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from ferry.db.engine import skipping_insert
from ferry.db.jobs import Enqueued
from ferry.db.models import Job, JobStatus, Pause, utcnow

EVERY_TYPE = ""  # the job type of a pause of the whole tenant
RESEND_LIMIT = 10_000  # jobs a resume sends at once; the recovery pass sends the rest


async def pause(session: AsyncSession, tenant_id: str, job_type: str = EVERY_TYPE) -> None:
    insert = skipping_insert(session.get_bind().dialect.name)
    statement = insert(Pause).values(tenant_id=tenant_id, job_type=job_type, paused_at=utcnow())
    await session.execute(statement.on_conflict_do_nothing())


async def resume(session: AsyncSession, tenant_id: str, job_type: str | None = None) -> int:
    """Lift a pause of one type, or (None) every pause of the tenant; how many it lifted."""
    condition = [Pause.tenant_id == tenant_id]
    if job_type is not None:
        condition.append(Pause.job_type == job_type)
    result = await session.execute(delete(Pause).where(*condition))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def tenant_pauses(session: AsyncSession, tenant_id: str) -> tuple[bool, list[str]]:
    """A tenant's pauses: (the whole tenant paused, the job types paused on their own)."""
    query = select(Pause.job_type).where(Pause.tenant_id == tenant_id).order_by(Pause.job_type)
    held = (await session.scalars(query)).all()
    return EVERY_TYPE in held, [job_type for job_type in held if job_type != EVERY_TYPE]


async def all_pauses(conn: AsyncConnection | AsyncSession) -> set[tuple[str, str]]:
    rows = await conn.execute(select(Pause.tenant_id, Pause.job_type))
    return {(row.tenant_id, row.job_type) for row in rows}


def held(
    tenant_id: ColumnElement[str] | InstrumentedAttribute[str] = Job.tenant_id,
    job_type: ColumnElement[str] | InstrumentedAttribute[str] = Job.type,
) -> ColumnElement[bool]:
    """The condition that a pause holds the jobs of this tenant and type (by default a
    `jobs` row's own)."""
    return exists().where(
        Pause.tenant_id == tenant_id,
        or_(Pause.job_type == EVERY_TYPE, Pause.job_type == job_type),
    )


def not_held() -> ColumnElement[bool]:
    """The condition on `jobs` rows that their tenant and their type are not paused."""
    return ~held()


async def held_jobs(
    session: AsyncSession, tenant_id: str, job_type: str | None
) -> Sequence[Enqueued]:
    """The tenant's due PENDING jobs (of one type, or all) that no pause holds now: what
    a resume sends again (at most RESEND_LIMIT, the longest due first)."""
    condition = [
        Job.tenant_id == tenant_id,
        Job.status == JobStatus.PENDING,
        Job.next_run_at <= utcnow(),
        Job.parked.is_(False),
        not_held(),
    ]
    if job_type is not None:
        condition.append(Job.type == job_type)
    query = (
        select(Job.id, Job.type, Job.tenant_id, Job.priority)
        .where(and_(*condition))
        .order_by(Job.next_run_at)
        .limit(RESEND_LIMIT)
    )
    return [Enqueued.of(row) for row in await session.execute(query)]
