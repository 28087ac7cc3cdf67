"""The outbox of job events: no committed status change goes unannounced.

A status change is committed in PostgreSQL, then its event is appended to the
tenant's event log in Redis. A process that dies in between (or cannot reach
Redis then) would leave subscribers without the event and without a gap in
seq to notice it by. So every statement or transaction that changes jobs'
statuses also writes a `job_event_outbox` row, in the same commit: the jobs it
changed, the `updated_at` it gave them, and a random id, the mark. The
committer appends the events with their mark; the event log appends the
events of a mark once (`ferry.events.redis_log`).

The recovery pass relays the rows older than a grace period: events whose mark
was never appended are built again from the jobs as they are now. A job that
has changed since cannot get its old event after its newer ones (subscribers
see each job's events in lifecycle order): its tenant's log gets `EventsLost`
instead, which subscribers receive as RESYNC. Then the rows are deleted.

SQLite (the embedded default) has no outbox: its worker shares the API's
process and in-memory event log, so nothing can die in between.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Uuid, any_, bindparam, delete, insert, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from ferry.db.models import Job, JobEventOutbox, new_mark, utcnow
from ferry.events.event import event_of, events_lost
from ferry.events.log import Committed, EventLog

log = logging.getLogger(__name__)

RELAY_BATCH = 500  # outbox rows per transaction of the relay


def kept_on(dialect: str) -> bool:
    """Whether a database of this dialect keeps an outbox (migration 0007)."""
    return dialect == "postgresql"


async def add(
    db: AsyncSession | AsyncConnection, job_ids: Iterable[uuid.UUID], at: datetime
) -> uuid.UUID | None:
    """Record, in `db`'s transaction, the jobs it changed at `at`; their mark (None
    without an outbox, on SQLite)."""
    conn = await db.connection() if isinstance(db, AsyncSession) else db
    ids = list(job_ids)
    if not kept_on(conn.dialect.name) or not ids:
        return None
    mark = new_mark()
    await conn.execute(insert(JobEventOutbox).values(id=mark, at=at, job_ids=ids))
    return mark


class Relay:
    """Appends the events of outbox rows their committer left, then deletes the rows."""

    def __init__(self, engine: AsyncEngine, events: EventLog, grace_ms: int) -> None:
        self.engine = engine
        self.events = events
        self.grace = timedelta(milliseconds=grace_ms)
        self.relayed = 0  # rows whose events this relay appended (tests, logs)

    async def relay(self) -> int:
        """One pass over the rows older than the grace period; how many it relayed."""
        if not kept_on(self.engine.dialect.name):
            return 0
        total = 0
        while True:
            seen, relayed = await self._relay_some(utcnow() - self.grace)
            total += relayed
            if seen < RELAY_BATCH:
                return total

    async def _relay_some(self, before: datetime) -> tuple[int, int]:
        outbox = JobEventOutbox
        async with self.engine.begin() as conn:
            rows = (
                await conn.execute(
                    select(outbox.id, outbox.at, outbox.job_ids)
                    .where(outbox.at < before)
                    .order_by(outbox.at)
                    .limit(RELAY_BATCH)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0, 0
            appended = await self.events.appended([row.id for row in rows])
            left = [row for row, done in zip(rows, appended, strict=True) if not done]
            if left:
                log.warning("relaying the events of %d changes their committer left", len(left))
                await self.events.append(await _again(conn, left))
                self.relayed += len(left)
            await conn.execute(
                delete(outbox).where(outbox.id == any_(_uuids([r.id for r in rows])))
            )
        return len(rows), len(left)


async def _again(conn: AsyncConnection, rows: Sequence[Any]) -> list[Committed]:
    """The events of `rows` as the jobs are now: the event of a job still as its row's
    statement left it, `EventsLost` for the tenant of one that changed since."""
    ids = {job_id for row in rows for job_id in row.job_ids}
    # FOR SHARE: no job changes (and announces it) before its old event is appended;
    # in id order, as the writer's UPDATEs lock them (an index scan over `= ANY` takes
    # the ids sorted), lest the two deadlock.
    jobs = {
        job.id: job
        for job in await conn.execute(
            select(Job.id, Job.tenant_id, Job.status, Job.attempts, Job.error, Job.updated_at)
            .where(Job.id == any_(_uuids(ids)))
            .order_by(Job.id)
            .with_for_update(read=True)
        )
    }
    committed = []
    for row in rows:
        events: list[Any] = []
        lost: set[str] = set()
        for job_id in row.job_ids:
            job = jobs.get(job_id)
            if job is None:
                continue  # deleted since: there is nothing to tell of it
            if job.updated_at == row.at:
                events.append(event_of(job, row.at))
            else:
                lost.add(job.tenant_id)
        events += [events_lost(tenant) for tenant in sorted(lost)]
        committed.append(Committed(events, row.id))
    return committed


def _uuids(ids: Iterable[uuid.UUID]) -> Any:
    """One array parameter (an IN list would take a parameter per id)."""
    return bindparam(None, list(ids), type_=ARRAY(Uuid()))
