"""A worker's transitions (a claim, an attempt's outcome) and the SQL of a tick: one
statement per kind of transition, for any number of jobs; and one for the progress
its running jobs reported (not a transition: no outbox row, no status change).

Every statement is conditional on the status it expects (`PENDING` for a
claim, `RUNNING` for an outcome) and returns the rows it changed, so a job
deleted, cancelled or claimed elsewhere is simply absent from the answer. On
PostgreSQL each one also writes the outbox row of the jobs it changed, in the
same statement (`ferry.db.outbox`).

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol

import msgspec
from sqlalchemy import ColumnElement, Table, case, literal, null, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ferry.db.models import Job, JobStatus, new_mark

ERROR_LIMIT = 2000  # characters of a job's error that are kept


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job this worker moved PENDING -> RUNNING: everything a handler needs."""

    id: uuid.UUID
    tenant_id: str
    type: str
    payload: Any
    attempts: int
    max_attempts: int
    # The job's own backoff, if it was given one (else its type's applies).
    retry_base_ms: int | None = None
    retry_cap_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ended: COMPLETED, FAILED, or PENDING again (retry scheduled)."""

    job_id: uuid.UUID
    status: JobStatus
    result: Any = None
    error: str | None = None
    next_run_at: datetime | None = None
    # Retries only: the delay of the message that will run the next attempt.
    retry_delay_ms: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class ProgressReport:
    """The latest `ctx.progress` of one attempt of a job."""

    job_id: uuid.UUID
    attempt: int  # stored only while this attempt is the job's running one
    fraction: float
    message: str | None


jobs: Table = Job.__table__  # type: ignore[assignment]


class Finished(NamedTuple):
    tenant_id: str
    attempts: int


Row = ClaimedJob | Finished


class Wrote(NamedTuple):
    """What one statement committed: the jobs it changed and what they became."""

    status: JobStatus
    rows: Mapping[uuid.UUID, Row]
    # Its row in job_event_outbox (PostgreSQL): marks the append of its events.
    mark: uuid.UUID | None = None
    # The error every job of it got, when it failed them alone (else the outcomes').
    error: str | None = None


class TransitionStatements(Protocol):
    async def claim(self, conn: AsyncConnection, ids: list[uuid.UUID], now: datetime) -> Wrote: ...

    async def finish(
        self, conn: AsyncConnection, kind: JobStatus, outcomes: list[Outcome], now: datetime
    ) -> Wrote: ...

    async def fail(
        self,
        conn: AsyncConnection,
        job_id: uuid.UUID,
        expected: JobStatus,
        error: str,
        now: datetime,
    ) -> Wrote:
        """One job straight to FAILED (from `expected`): its own transition was refused."""

    async def unclaim(
        self, conn: AsyncConnection, claims: list[tuple[uuid.UUID, int]], now: datetime
    ) -> Wrote:
        """RUNNING -> PENDING again, the attempt not counted, for each (job, attempt) claimed
        but never started (its message went back to the queue)."""

    async def progress(
        self, conn: AsyncConnection, reports: list[ProgressReport]
    ) -> dict[uuid.UUID, str]:
        """Store each report on its job if that attempt still runs: the tenant of each job
        stored (the others ended, or were cancelled, retried or deleted meanwhile)."""


def statements_for(dialect: str) -> TransitionStatements:
    return PostgresStatements() if dialect == "postgresql" else PortableStatements()


_json = msgspec.json.Encoder()


def _announced(update: str, mark: int, at: int) -> str:
    """`update` (whose RETURNING starts with the job id), and in the same statement the
    outbox row of its jobs: committed together, so no committed change goes unannounced."""
    return f"""
WITH changed AS ({update}),
announced AS (
  INSERT INTO job_event_outbox (id, at, job_ids)
  SELECT ${mark}, ${at}, array_agg(id) FROM changed HAVING count(*) > 0
)
SELECT * FROM changed
"""


_CLAIM = _announced(
    """
UPDATE jobs SET status = 'RUNNING', attempts = attempts + 1, started_at = $2,
       updated_at = $2, heartbeat_at = $2, next_run_at = NULL,
       progress = NULL, progress_message = NULL
 WHERE id = ANY($1::uuid[]) AND status IS NOT DISTINCT FROM 'PENDING'
RETURNING id, tenant_id, type, payload::text, attempts, max_attempts,
          retry_base_ms, retry_cap_ms""",
    mark=3,
    at=2,
)
_COMPLETE = _announced(
    """
UPDATE jobs AS j SET status = 'COMPLETED', result = v.result, error = NULL,
       finished_at = $3, updated_at = $3, heartbeat_at = NULL, next_run_at = NULL
  FROM unnest($1::uuid[], $2::jsonb[]) AS v(id, result)
 WHERE j.id = v.id AND j.status IS NOT DISTINCT FROM 'RUNNING'
RETURNING j.id, j.tenant_id, j.attempts""",
    mark=4,
    at=3,
)
_FAIL = _announced(
    """
UPDATE jobs AS j SET status = 'FAILED', error = v.error,
       finished_at = $3, updated_at = $3, heartbeat_at = NULL, next_run_at = NULL
  FROM unnest($1::uuid[], $2::text[]) AS v(id, error)
 WHERE j.id = v.id AND j.status IS NOT DISTINCT FROM 'RUNNING'
RETURNING j.id, j.tenant_id, j.attempts""",
    mark=4,
    at=3,
)
_RETRY = _announced(
    """
UPDATE jobs AS j SET status = 'PENDING', error = v.error, next_run_at = v.next_run_at,
       updated_at = $4, heartbeat_at = NULL
  FROM unnest($1::uuid[], $2::text[], $3::timestamptz[]) AS v(id, error, next_run_at)
 WHERE j.id = v.id AND j.status IS NOT DISTINCT FROM 'RUNNING'
RETURNING j.id, j.tenant_id, j.attempts""",
    mark=5,
    at=4,
)
_FAIL_ALONE = _announced(
    """
UPDATE jobs SET status = 'FAILED', error = $2, finished_at = $3, updated_at = $3,
       heartbeat_at = NULL, next_run_at = NULL
 WHERE id = $1 AND status IS NOT DISTINCT FROM $4
RETURNING id, tenant_id, attempts""",
    mark=5,
    at=3,
)

_UNCLAIM = _announced(
    """
UPDATE jobs AS j SET status = 'PENDING', attempts = j.attempts - 1, started_at = NULL,
       updated_at = $3, heartbeat_at = NULL, next_run_at = $3
  FROM unnest($1::uuid[], $2::int[]) AS v(id, attempts)
 WHERE j.id = v.id AND j.status IS NOT DISTINCT FROM 'RUNNING' AND j.attempts = v.attempts
RETURNING j.id, j.tenant_id, j.attempts""",
    mark=4,
    at=3,
)


# Not announced: progress is no status change. `attempts` must still be the reporting
# attempt's: a late report of an attempt that ended never lands on the next one.
_PROGRESS = """
UPDATE jobs AS j SET progress = v.progress, progress_message = v.message
  FROM unnest($1::uuid[], $2::int[], $3::float8[], $4::text[])
       AS v(id, attempts, progress, message)
 WHERE j.id = v.id AND j.status IS NOT DISTINCT FROM 'RUNNING' AND j.attempts = v.attempts
RETURNING j.id, j.tenant_id"""


class PostgresStatements:
    async def claim(self, conn: AsyncConnection, ids: list[uuid.UUID], now: datetime) -> Wrote:
        mark = new_mark()
        rows = await _run(conn, _CLAIM, ids, now, mark)
        claimed = {
            row[0]: ClaimedJob(
                row[0], row[1], row[2], _payload(row[3]), row[4], row[5], row[6], row[7]
            )
            for row in rows
        }
        return Wrote(JobStatus.RUNNING, claimed, mark if claimed else None)

    async def finish(
        self, conn: AsyncConnection, kind: JobStatus, outcomes: list[Outcome], now: datetime
    ) -> Wrote:
        mark = new_mark()
        ids = [outcome.job_id for outcome in outcomes]
        errors = [outcome.error for outcome in outcomes]
        if kind is JobStatus.COMPLETED:
            results = [
                None if outcome.result is None else _json.encode(outcome.result).decode()
                for outcome in outcomes
            ]
            rows = await _run(conn, _COMPLETE, ids, results, now, mark)
        elif kind is JobStatus.FAILED:
            rows = await _run(conn, _FAIL, ids, errors, now, mark)
        else:
            next_runs = [outcome.next_run_at for outcome in outcomes]
            rows = await _run(conn, _RETRY, ids, errors, next_runs, now, mark)
        finished = {row[0]: Finished(row[1], row[2]) for row in rows}
        return Wrote(kind, finished, mark if finished else None)

    async def fail(
        self,
        conn: AsyncConnection,
        job_id: uuid.UUID,
        expected: JobStatus,
        error: str,
        now: datetime,
    ) -> Wrote:
        mark = new_mark()
        rows = await _run(conn, _FAIL_ALONE, job_id, error, now, expected.value, mark)
        failed = {row[0]: Finished(row[1], row[2]) for row in rows}
        return Wrote(JobStatus.FAILED, failed, mark if failed else None, error)

    async def unclaim(
        self, conn: AsyncConnection, claims: list[tuple[uuid.UUID, int]], now: datetime
    ) -> Wrote:
        mark = new_mark()
        ids, attempts = [job_id for job_id, _ in claims], [attempt for _, attempt in claims]
        rows = await _run(conn, _UNCLAIM, ids, attempts, now, mark)
        pending = {row[0]: Finished(row[1], row[2]) for row in rows}
        return Wrote(JobStatus.PENDING, pending, mark if pending else None)

    async def progress(
        self, conn: AsyncConnection, reports: list[ProgressReport]
    ) -> dict[uuid.UUID, str]:
        rows = await _run(
            conn,
            _PROGRESS,
            [report.job_id for report in reports],
            [report.attempt for report in reports],
            [report.fraction for report in reports],
            [report.message for report in reports],
        )
        return {row[0]: row[1] for row in rows}


def _payload(text: str) -> Any:
    """The claimed job's payload. Never raises: the claim is committed by now, and a payload
    that does not decode is the handler's to refuse (its job fails, alone)."""
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text


async def _run(conn: AsyncConnection, sql: str, *params: Any) -> Sequence[Any]:
    # Straight to the driver (asyncpg prepares it once), outside a transaction:
    # each statement commits on its own.
    conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
    return (await conn.exec_driver_sql(sql, params)).all()


class PortableStatements:
    async def claim(self, conn: AsyncConnection, ids: list[uuid.UUID], now: datetime) -> Wrote:
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
                progress=None,
                progress_message=None,
            )
            .returning(
                jobs.c.id,
                jobs.c.tenant_id,
                jobs.c.type,
                jobs.c.payload,
                jobs.c.attempts,
                jobs.c.max_attempts,
                jobs.c.retry_base_ms,
                jobs.c.retry_cap_ms,
            )
        )
        async with conn.begin():
            result = await conn.execute(statement)
            return Wrote(JobStatus.RUNNING, {row.id: ClaimedJob(*row) for row in result})

    async def finish(
        self, conn: AsyncConnection, kind: JobStatus, outcomes: list[Outcome], now: datetime
    ) -> Wrote:
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
        return Wrote(kind, await _finished(conn, statement))

    async def fail(
        self,
        conn: AsyncConnection,
        job_id: uuid.UUID,
        expected: JobStatus,
        error: str,
        now: datetime,
    ) -> Wrote:
        statement = (
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status == expected)
            .values(
                status=JobStatus.FAILED,
                error=error,
                finished_at=now,
                updated_at=now,
                heartbeat_at=None,
                next_run_at=None,
            )
            .returning(jobs.c.id, jobs.c.tenant_id, jobs.c.attempts)
        )
        return Wrote(JobStatus.FAILED, await _finished(conn, statement), error=error)

    async def unclaim(
        self, conn: AsyncConnection, claims: list[tuple[uuid.UUID, int]], now: datetime
    ) -> Wrote:
        statement = (
            update(jobs)
            .where(
                jobs.c.id.in_([job_id for job_id, _ in claims]),
                jobs.c.status == JobStatus.RUNNING,
                jobs.c.attempts == _by_id(claims, jobs.c.attempts),
            )
            .values(
                status=JobStatus.PENDING,
                attempts=jobs.c.attempts - 1,
                started_at=None,
                updated_at=now,
                heartbeat_at=None,
                next_run_at=now,
            )
            .returning(jobs.c.id, jobs.c.tenant_id, jobs.c.attempts)
        )
        return Wrote(JobStatus.PENDING, await _finished(conn, statement))

    async def progress(
        self, conn: AsyncConnection, reports: list[ProgressReport]
    ) -> dict[uuid.UUID, str]:
        statement = (
            update(jobs)
            .where(
                jobs.c.id.in_([report.job_id for report in reports]),
                jobs.c.status == JobStatus.RUNNING,
                jobs.c.attempts == _per_job(reports, "attempt", jobs.c.attempts),
            )
            .values(
                progress=_per_job(reports, "fraction", jobs.c.progress),
                progress_message=_per_job(reports, "message", jobs.c.progress_message),
            )
            .returning(jobs.c.id, jobs.c.tenant_id)
        )
        async with conn.begin():
            return {row.id: row.tenant_id for row in await conn.execute(statement)}


async def _finished(conn: AsyncConnection, statement: Any) -> dict[uuid.UUID, Finished]:
    async with conn.begin():
        result = await conn.execute(statement)
        return {row.id: Finished(row.tenant_id, row.attempts) for row in result}


def _per_job(
    outcomes: Sequence[Outcome | ProgressReport], attribute: str, column: Any
) -> ColumnElement[Any]:
    return _by_id([(outcome.job_id, getattr(outcome, attribute)) for outcome in outcomes], column)


def _by_id(values: Sequence[tuple[uuid.UUID, Any]], column: Any) -> ColumnElement[Any]:
    """`CASE WHEN id = ... THEN ... END`: a different value per row in one statement."""
    if all(value is None for _, value in values):
        return null()
    return case(
        *(
            (jobs.c.id == literal(job_id, jobs.c.id.type), literal(value, column.type))
            for job_id, value in values
        )
    )
