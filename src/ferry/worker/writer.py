"""Group commit: the status transitions of every message in flight, one write per tick.

Worker threads hand their claims and outcomes to one `StatusWriter` per
process and block until the transaction that contains them has committed.
On the worker's background loop, the writer gathers what arrived
during one tick (up to `batch_size`), writes one `UPDATE ... WHERE id IN (...)
RETURNING` per kind of transition in a single transaction, wakes the waiting
threads with what RETURNING confirmed, and hands the committed events to
`on_commit` (which publishes them in one Redis round trip).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Table, case, literal, null, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ferry.models import Job, JobStatus, utcnow
from ferry.worker.loop import BackgroundLoop
from ferry.worker.transitions import ClaimedJob, JobEvent, Outcome

log = logging.getLogger(__name__)

jobs: Table = Job.__table__  # type: ignore[assignment]
OnCommit = Callable[[list[JobEvent]], Awaitable[None]]


@dataclass(slots=True)
class _Request:
    kind: JobStatus  # RUNNING for a claim, else the outcome's status
    job_id: uuid.UUID
    outcome: Outcome | None = None
    future: Future[Any] = field(default_factory=Future)


class StatusWriter:
    def __init__(
        self,
        loop: BackgroundLoop,
        engine: Callable[[], AsyncEngine],
        *,
        batch_size: int,
        tick_ms: int,
        on_commit: OnCommit | None = None,
    ) -> None:
        self.loop = loop
        self.engine = engine
        self.batch_size = batch_size
        self.tick = tick_ms / 1000
        self.on_commit = on_commit
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._wake: asyncio.Event | None = None
        # Statistics for benchmarks and metrics.
        self.ticks = 0
        self.statements = 0
        self.transitions = 0

    # -- called from worker threads ------------------------------------------------

    def claim(self, job_id: uuid.UUID) -> ClaimedJob | None:
        """PENDING -> RUNNING (attempts + 1); None if the job is gone, cancelled or taken."""
        result: ClaimedJob | None = self._submit(_Request(JobStatus.RUNNING, job_id)).result()
        return result

    def finish(self, outcome: Outcome) -> bool:
        """Record how an attempt ended; False if the job was no longer RUNNING."""
        request = _Request(outcome.status, outcome.job_id, outcome)
        committed: bool = self._submit(request).result()
        return committed

    def _submit(self, request: _Request) -> Future[Any]:
        if self._wake is None:
            raise RuntimeError("StatusWriter is not running")
        self._requests.put(request)
        self.loop.loop.call_soon_threadsafe(self._wake.set)
        return request.future

    # -- the service -----------------------------------------------------------------

    async def run(self) -> None:
        self._wake = asyncio.Event()
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.tick:
                await asyncio.sleep(self.tick)  # let the tick fill up
            while batch := self._drain():
                await self._write_until_committed(batch)

    def _drain(self) -> list[_Request]:
        batch: list[_Request] = []
        while len(batch) < self.batch_size:
            try:
                batch.append(self._requests.get_nowait())
            except queue.Empty:
                break
        return batch

    # -- the write -----------------------------------------------------------------

    async def _write_until_committed(self, batch: list[_Request]) -> None:
        """Retry until the database takes the batch: waiting threads must not see an error,
        since an exception in a worker hook would ack the message without its status."""
        delay = 0.05
        while True:
            try:
                async with self.engine().begin() as conn:
                    replies, events = await self._write(conn, batch)
                break
            except Exception:
                log.exception("status write of %d transitions failed; retrying", len(batch))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self.ticks += 1
        self.transitions += len(batch)
        for request, reply in zip(batch, replies, strict=True):
            request.future.set_result(reply)
        if events and self.on_commit is not None:
            try:
                await self.on_commit(events)
            except Exception:
                log.exception("publishing %d events failed", len(events))

    async def _write(
        self, conn: AsyncConnection, batch: Sequence[_Request]
    ) -> tuple[list[Any], list[JobEvent]]:
        now = utcnow()
        by_kind: dict[JobStatus, list[_Request]] = {}
        for request in batch:
            by_kind.setdefault(request.kind, []).append(request)
        replies: dict[int, Any] = {}
        events: list[JobEvent] = []
        for kind, requests in by_kind.items():
            if kind is JobStatus.RUNNING:
                rows = await self._claim(conn, requests, now)
            else:
                rows = await self._finish(conn, kind, requests, now)
            self.statements += 1
            for request in requests:
                row = rows.pop(request.job_id, None)  # a duplicate claim gets nothing
                replies[id(request)] = row if kind is JobStatus.RUNNING else row is not None
                if row is not None:
                    outcome = request.outcome
                    events.append(
                        JobEvent(
                            tenant_id=row.tenant_id,
                            job_id=request.job_id,
                            status=kind,
                            attempts=row.attempts,
                            error=outcome.error if outcome else None,
                            at=now,
                        )
                    )
        return [replies[id(request)] for request in batch], events

    async def _claim(
        self, conn: AsyncConnection, requests: list[_Request], now: Any
    ) -> dict[uuid.UUID, Any]:
        ids = list({request.job_id for request in requests})
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
        result = await conn.execute(statement)
        return {row.id: ClaimedJob(*row) for row in result}

    async def _finish(
        self, conn: AsyncConnection, kind: JobStatus, requests: list[_Request], now: Any
    ) -> dict[uuid.UUID, Any]:
        outcomes = [request.outcome for request in requests if request.outcome is not None]
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
        result = await conn.execute(statement)
        return {row.id: row for row in result}


def _per_job(outcomes: Sequence[Outcome], attribute: str, column: Any) -> ColumnElement[Any]:
    """`CASE id WHEN ... THEN ... END`: a different value per row in one statement."""
    values = [getattr(outcome, attribute) for outcome in outcomes]
    if all(value is None for value in values):
        return null()
    whens = [
        (literal(outcome.job_id, jobs.c.id.type), literal(value, column.type))
        for outcome, value in zip(outcomes, values, strict=True)
    ]
    return case(*((jobs.c.id == job_id, value) for job_id, value in whens))
