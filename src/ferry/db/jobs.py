"""Every SQL statement the API runs against the `jobs` table.

State changes are single conditional statements (`UPDATE ... WHERE status IN
(...) RETURNING`), so two concurrent requests can never both win a transition.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from ferry.db.models import (
    DEFAULT_PRIORITY,
    RETRYABLE_STATUSES,
    Job,
    JobCount,
    JobStatus,
    new_job_id,
    new_mark,
    utcnow,
)


@dataclass(frozen=True, slots=True)
class NewRow:
    tenant_id: str
    type: str
    payload: Any
    max_attempts: int
    delay_ms: int
    # The job's own backoff (None: its type's).
    retry_base_ms: int | None = None
    retry_cap_ms: int | None = None
    # Due too far ahead to be sent now: the dispatcher sends it (`ferry.db.parked`).
    parked: bool = False
    # When it is due, if given as a time (`runAt`): then its due time, to the microsecond.
    run_at: datetime | None = None
    priority: int = DEFAULT_PRIORITY


@dataclass(frozen=True, slots=True)
class Enqueued:
    """What the Sender needs to send one job to its actor."""

    id: uuid.UUID
    type: str
    tenant_id: str
    delay_ms: int
    parked: bool = False  # not to be sent: it waits in the database
    priority: int = DEFAULT_PRIORITY

    @classmethod
    def of(cls, row: Any, tenant_id: str | None = None) -> Enqueued:
        """A job to send now, from a row of its id, type, priority and (unless given)
        tenant."""
        return cls(row.id, row.type, tenant_id or row.tenant_id, 0, priority=row.priority)


class Conflict(Exception):
    """The job exists but its status forbids the change."""

    def __init__(self, status: str, action: str) -> None:
        super().__init__(f"cannot {action} a job that is {status}")
        self.status = status


class NotFound(Exception):
    """No `what` (a job, an API key...) has this id, or none the caller may see."""

    def __init__(self, what: str, key: object) -> None:
        super().__init__(f"{what} {key} not found")


def _replayed(now: datetime) -> dict[str, Any]:
    """A replayed job starts afresh: PENDING, due now, with all its attempts."""
    return {
        "status": JobStatus.PENDING,
        "attempts": 0,
        "error": None,
        "result": None,
        "started_at": None,
        "finished_at": None,
        "next_run_at": now,
        "parked": False,
    }


# PostgreSQL: the whole group as arrays, one prepared statement whatever its size,
# with the outbox row of its PENDING events (`ferry.db.outbox`) in the same statement.
_INSERT_JOBS = """
WITH announced AS (
  INSERT INTO job_event_outbox (id, at, job_ids) VALUES ($8, $7, $1::uuid[])
)
INSERT INTO jobs (id, tenant_id, type, payload, status, attempts, max_attempts,
                  created_at, updated_at, next_run_at, retry_base_ms, retry_cap_ms, parked,
                  priority)
SELECT v.id, v.tenant_id, v.type, v.payload, 'PENDING', 0, v.max_attempts,
       $7::timestamptz, $7::timestamptz,
       coalesce(v.run_at, $7::timestamptz + v.delay_ms * interval '1 ms'),
       v.retry_base_ms, v.retry_cap_ms, v.parked, v.priority
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::int[], $6::bigint[],
              $9::int[], $10::int[], $11::bool[], $12::timestamptz[], $13::smallint[])
       AS v(id, tenant_id, type, payload, max_attempts, delay_ms, retry_base_ms, retry_cap_ms,
            parked, run_at, priority)
"""
_json = msgspec.json.Encoder()


async def insert_jobs(
    db: AsyncSession | AsyncConnection, rows: Sequence[NewRow], mark: uuid.UUID | None = None
) -> list[Enqueued]:
    """New PENDING jobs, in one multi-row INSERT (committed with `db`'s transaction, or
    at once on an autocommit connection); on PostgreSQL with their outbox row under
    `mark` (a new one if None)."""
    now = utcnow()
    enqueued = [
        Enqueued(new_job_id(), row.type, row.tenant_id, row.delay_ms, row.parked, row.priority)
        for row in rows
    ]
    conn = await db.connection() if isinstance(db, AsyncSession) else db
    if conn.dialect.name == "postgresql":
        columns = (
            [job.id for job in enqueued],
            [row.tenant_id for row in rows],
            [row.type for row in rows],
            [_json.encode(row.payload).decode() for row in rows],
            [row.max_attempts for row in rows],
            [row.delay_ms for row in rows],
            now,
            mark or new_mark(),
            [row.retry_base_ms for row in rows],
            [row.retry_cap_ms for row in rows],
            [row.parked for row in rows],
            [row.run_at for row in rows],
            [row.priority for row in rows],
        )
        await conn.exec_driver_sql(_INSERT_JOBS, columns)
        return enqueued
    values = [
        {
            "id": job.id,
            "tenant_id": row.tenant_id,
            "type": row.type,
            "payload": row.payload,
            "status": JobStatus.PENDING,
            "attempts": 0,
            "max_attempts": row.max_attempts,
            "created_at": now,
            "updated_at": now,
            "next_run_at": row.run_at or now + timedelta(milliseconds=row.delay_ms),
            "retry_base_ms": row.retry_base_ms,
            "retry_cap_ms": row.retry_cap_ms,
            "parked": row.parked,
            "priority": row.priority,
        }
        for job, row in zip(enqueued, rows, strict=True)
    ]
    await conn.execute(insert(Job), values)
    return enqueued


async def create_jobs(
    engine: AsyncEngine, rows: Sequence[NewRow], mark: uuid.UUID | None = None
) -> list[Enqueued]:
    """`insert_jobs`, committed. On PostgreSQL its single statement commits on its own:
    one round trip, no BEGIN or COMMIT."""
    async with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            return await insert_jobs(autocommit, rows, mark)
        async with conn.begin():
            return await insert_jobs(conn, rows)


class JobStore:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, job_id: uuid.UUID) -> Job:
        job = await self.session.get(Job, job_id)
        if job is None:
            raise NotFound("job", job_id)
        return job

    async def page(
        self,
        *,
        tenant_id: str | None,
        status: str | None,
        job_type: str | None,
        limit: int,
        offset: int,
    ) -> tuple[Sequence[Job], int]:
        filters = []
        if tenant_id is not None:
            filters.append(Job.tenant_id == tenant_id)
        if status is not None:
            filters.append(Job.status == status)
        if job_type is not None:
            filters.append(Job.type == job_type)
        # `id` (UUIDv7) breaks ties in created_at, so pages never overlap or skip.
        query = (
            select(Job)
            .where(*filters)
            .order_by(Job.created_at.desc(), Job.id.desc())
            .limit(limit)
            .offset(offset)
        )
        jobs = (await self.session.scalars(query)).all()
        counts = await self._counts(tenant_id, status, job_type)
        return jobs, sum(counts.values())

    async def counts(self, tenant_id: str | None) -> dict[str, int]:
        return await self._counts(tenant_id, None, None)

    async def _counts(
        self, tenant_id: str | None, status: str | None, job_type: str | None
    ) -> dict[str, int]:
        """Jobs per status: from the trigger-kept counters on PostgreSQL (a sum over
        a few rows, whatever the table's size), by counting rows on SQLite."""
        table: Any = JobCount if self._counted else Job
        filters = [
            column == value
            for column, value in (
                (table.tenant_id, tenant_id), (table.status, status), (table.type, job_type)
            )
            if value is not None
        ]  # fmt: skip
        amount = func.sum(JobCount.n) if self._counted else func.count()
        query = select(table.status, amount).where(*filters).group_by(table.status)
        rows = (await self.session.execute(query)).all()
        return {row_status: int(count) for row_status, count in rows if count}

    @property
    def _counted(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    async def _transition(
        self,
        job_id: uuid.UUID,
        allowed: Sequence[str],
        action: str,
        now: datetime | None = None,
        **values: Any,
    ) -> Job:
        """Apply `values` (and `updated_at` = `now`) if the job's status is in `allowed`;
        else NotFound or Conflict."""
        statement = (
            update(Job)
            .where(Job.id == job_id, Job.status.in_(allowed))
            .values(updated_at=now or utcnow(), **values)
            .returning(Job)
            # A job the session read before (PATCH reads its type) is answered as
            # updated, not as it was read.
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        job = (await self.session.scalars(statement)).one_or_none()
        if job is None:
            current = await self.session.scalar(select(Job.status).where(Job.id == job_id))
            if current is None:
                raise NotFound("job", job_id)
            raise Conflict(current, action)
        return job

    async def retry(self, job_id: uuid.UUID, now: datetime) -> Job:
        return await self._transition(job_id, RETRYABLE_STATUSES, "retry", now, **_replayed(now))

    async def retry_many(
        self,
        tenant_id: str,
        *,
        ids: Sequence[uuid.UUID] | None,
        job_type: str | None,
        failed_since: datetime | None,
        limit: int,
        now: datetime,
    ) -> list[Enqueued]:
        """Replay the given FAILED/CANCELLED jobs, or up to `limit` FAILED jobs of a filter."""
        filters = [Job.tenant_id == tenant_id]
        if ids is not None:
            filters += [Job.id.in_(ids), Job.status.in_(RETRYABLE_STATUSES)]
        else:
            filters.append(Job.status == JobStatus.FAILED)
        if job_type is not None:
            filters.append(Job.type == job_type)
        if failed_since is not None:
            filters.append(Job.finished_at >= failed_since)
        chosen = select(Job.id).where(*filters).order_by(Job.finished_at).limit(limit)
        statement = (
            update(Job)
            .where(Job.id.in_(chosen.scalar_subquery()), *filters)
            .values(updated_at=now, **_replayed(now))
            .returning(Job.id, Job.type, Job.priority)
            .execution_options(synchronize_session=False)
        )
        rows = (await self.session.execute(statement)).all()
        return [Enqueued.of(row, tenant_id) for row in rows]

    async def cancel(self, job_id: uuid.UUID, now: datetime) -> Job:
        # A RUNNING job's worker notices at its next heartbeat and aborts it.
        return await self._transition(
            job_id,
            (JobStatus.PENDING, JobStatus.RUNNING),
            "cancel",
            now,
            status=JobStatus.CANCELLED,
            finished_at=now,
            next_run_at=None,
            heartbeat_at=None,
            parked=False,  # nothing to send any more
        )

    async def patch(self, job_id: uuid.UUID, **values: Any) -> Job:
        return await self._transition(job_id, (JobStatus.PENDING,), "change", **values)

    async def delete(self, job_id: uuid.UUID) -> None:
        statement = delete(Job).where(Job.id == job_id, Job.status != JobStatus.RUNNING)
        result = await self.session.execute(statement)
        if result.rowcount == 0:  # type: ignore[attr-defined]
            current = await self.session.scalar(select(Job.status).where(Job.id == job_id))
            if current is None:
                raise NotFound("job", job_id)
            raise Conflict(current, "delete")
