"""The SQL of a tick: one statement per kind of transition, for any number of jobs.

Every statement is conditional on the status it expects (`PENDING` for a
claim, `RUNNING` for an outcome) and returns the rows it changed, so a job
deleted, cancelled or claimed elsewhere is simply absent from the answer.

PostgreSQL gets prepared statements over arrays (`= ANY($1)`, `unnest`): the
same statement text for every batch size, run straight on asyncpg. They test
the status with `IS NOT DISTINCT FROM` (the same, for a column that is never
NULL), which no index serves: the rows are found by id alone. With `=`, after
a burst of creates and before autovacuum's next ANALYZE the planner took
PENDING for rare and intersected the status index too, reading every PENDING
entry (the whole backlog) for each claim. Other
databases (SQLite, for the embedded default) get the portable SQLAlchemy form
with an `IN` list and a `CASE` per row.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol

import msgspec
from sqlalchemy import ColumnElement, Table, case, literal, null, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ferry.models import Job, JobStatus
from ferry.worker.transitions import ClaimedJob, Outcome

jobs: Table = Job.__table__  # type: ignore[assignment]


class Finished(NamedTuple):
    tenant_id: str
    attempts: int


class TransitionStatements(Protocol):
    async def claim(
        self, conn: AsyncConnection, ids: list[uuid.UUID], now: datetime
    ) -> dict[uuid.UUID, ClaimedJob]: ...

    async def finish(
        self, conn: AsyncConnection, kind: JobStatus, outcomes: list[Outcome], now: datetime
    ) -> dict[uuid.UUID, Finished]: ...


def statements_for(dialect: str) -> TransitionStatements:
    return PostgresStatements() if dialect == "postgresql" else PortableStatements()


_json = msgspec.json.Encoder()

_CLAIM = """
UPDATE jobs SET status = 'RUNNING', attempts = attempts + 1, started_at = $2,
       updated_at = $2, heartbeat_at = $2, next_run_at = NULL
 WHERE id = ANY($1::uuid[]) AND status IS NOT DISTINCT FROM 'PENDING'
RETURNING id, tenant_id, type, payload::text, attempts, max_attempts
"""
_COMPLETE = """
UPDATE jobs AS j SET status = 'COMPLETED', result = v.result, error = NULL,
       finished_at = $3, updated_at = $3, heartbeat_at = NULL, next_run_at = NULL
  FROM unnest($1::uuid[], $2::jsonb[]) AS v(id, result)
 WHERE j.id = v.id AND j.status IS NOT DISTINCT FROM 'RUNNING'
RETURNING j.id, j.tenant_id, j.attempts
"""
_FAIL = """
UPDATE jobs AS j SET status = 'FAILED', error = v.error,
       finished_at = $3, updated_at = $3, heartbeat_at = NULL, next_run_at = NULL
  FROM unnest($1::uuid[], $2::text[]) AS v(id, error)
 WHERE j.id = v.id AND j.status IS NOT DISTINCT FROM 'RUNNING'
RETURNING j.id, j.tenant_id, j.attempts
"""
_RETRY = """
UPDATE jobs AS j SET status = 'PENDING', error = v.error, next_run_at = v.next_run_at,
       updated_at = $4, heartbeat_at = NULL
  FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS v(id, error, next_run_at)
 WHERE j.id = v.id AND j.status IS NOT DISTINCT FROM 'RUNNING'
RETURNING j.id, j.tenant_id, j.attempts
"""


class PostgresStatements:
    async def claim(
        self, conn: AsyncConnection, ids: list[uuid.UUID], now: datetime
    ) -> dict[uuid.UUID, ClaimedJob]:
        rows = await _run(conn, _CLAIM, ids, now)
        return {
            row[0]: ClaimedJob(row[0], row[1], row[2], msgspec.json.decode(row[3]), row[4], row[5])
            for row in rows
        }

    async def finish(
        self, conn: AsyncConnection, kind: JobStatus, outcomes: list[Outcome], now: datetime
    ) -> dict[uuid.UUID, Finished]:
        ids = [outcome.job_id for outcome in outcomes]
        errors = [outcome.error for outcome in outcomes]
        if kind is JobStatus.COMPLETED:
            results = [
                None if outcome.result is None else _json.encode(outcome.result).decode()
                for outcome in outcomes
            ]
            rows = await _run(conn, _COMPLETE, ids, results, now)
        elif kind is JobStatus.FAILED:
            rows = await _run(conn, _FAIL, ids, errors, now)
        else:
            next_runs = [outcome.next_run_at for outcome in outcomes]
            rows = await _run(conn, _RETRY, ids, errors, next_runs, now)
        return {row[0]: Finished(row[1], row[2]) for row in rows}


async def _run(conn: AsyncConnection, sql: str, *params: Any) -> Sequence[Any]:
    # Straight to the driver (asyncpg prepares it once), outside a transaction:
    # each statement commits on its own.
    conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
    return (await conn.exec_driver_sql(sql, params)).all()


class PortableStatements:
    async def claim(
        self, conn: AsyncConnection, ids: list[uuid.UUID], now: datetime
    ) -> dict[uuid.UUID, ClaimedJob]:
        statement = (
            update(jobs)
            .where(jobs.c.id.in_(ids), jobs.c.status == JobStatus.PENDING)
            .values(
                status=JobStatus.RUNNING,
                attempts=jobs.c.attempts + 1,
                started_at=now,
                updated_at=now,
                heartbeat_at=now,
                next_run_at=None,
            )
            .returning(
                jobs.c.id,
                jobs.c.tenant_id,
                jobs.c.type,
                jobs.c.payload,
                jobs.c.attempts,
                jobs.c.max_attempts,
            )
        )
        async with conn.begin():
            result = await conn.execute(statement)
            return {row.id: ClaimedJob(*row) for row in result}

    async def finish(
        self, conn: AsyncConnection, kind: JobStatus, outcomes: list[Outcome], now: datetime
    ) -> dict[uuid.UUID, Finished]:
        ids = [outcome.job_id for outcome in outcomes]
        values: dict[str, Any] = {"status": kind, "updated_at": now, "heartbeat_at": None}
        if kind is JobStatus.COMPLETED:
            values |= {"result": _per_job(outcomes, "result", jobs.c.result), "error": None}
        else:
            values["error"] = _per_job(outcomes, "error", jobs.c.error)
        if kind is JobStatus.PENDING:
            values["next_run_at"] = _per_job(outcomes, "next_run_at", jobs.c.next_run_at)
        else:
            values |= {"finished_at": now, "next_run_at": None}
        statement = (
            update(jobs)
            .where(jobs.c.id.in_(ids), jobs.c.status == JobStatus.RUNNING)
            .values(**values)
            .returning(jobs.c.id, jobs.c.tenant_id, jobs.c.attempts)
        )
        async with conn.begin():
            result = await conn.execute(statement)
            return {row.id: Finished(row.tenant_id, row.attempts) for row in result}


def _per_job(outcomes: Sequence[Outcome], attribute: str, column: Any) -> ColumnElement[Any]:
    """`CASE WHEN id = ... THEN ... END`: a different value per row in one statement."""
    values = [getattr(outcome, attribute) for outcome in outcomes]
    if all(value is None for value in values):
        return null()
    return case(
        *(
            (jobs.c.id == literal(outcome.job_id, jobs.c.id.type), literal(value, column.type))
            for outcome, value in zip(outcomes, values, strict=True)
        )
    )
