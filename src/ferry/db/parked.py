"""Parked jobs: created due further ahead than `PARK_AFTER_MS`, they wait in the
database with no message in Redis (a million of them cost Redis nothing), until
the dispatcher unparks them a little before they are due and sends each as a
delayed message (`ferry.worker.dispatcher`).

Unparking takes the rows it changes with `FOR UPDATE SKIP LOCKED`: dispatchers
in several worker processes share the due jobs without waiting on each other. A
job sent twice would be harmless anyway (the claim lets one message run it), and
one whose send failed is re-sent by the recovery pass once it is overdue.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ferry.db.models import Job, JobStatus

UNPARK_BATCH = 1000  # jobs per statement


@dataclass(frozen=True, slots=True)
class Unparked:
    id: uuid.UUID
    type: str
    tenant_id: str
    next_run_at: datetime
    priority: int


async def unpark_due(conn: AsyncConnection, until: datetime) -> tuple[list[Unparked], int]:
    """Unpark the jobs due by `until` (at most UNPARK_BATCH): the PENDING ones to send,
    and how many rows were unparked. (A cancel or a replay unparks its job itself.)"""
    due = (
        select(Job.id)
        .where(Job.parked, Job.next_run_at <= until)  # as the partial index says
        .order_by(Job.next_run_at)
        .limit(UNPARK_BATCH)
        .with_for_update(skip_locked=True)
    )
    statement = (
        update(Job)
        .where(Job.id.in_(due.scalar_subquery()))
        .values(parked=False)
        .returning(Job.id, Job.type, Job.tenant_id, Job.status, Job.next_run_at, Job.priority)
    )
    rows = (await conn.execute(statement)).all()
    pending = [
        Unparked(row.id, row.type, row.tenant_id, row.next_run_at, row.priority)
        for row in rows
        if row.status == JobStatus.PENDING
    ]
    return pending, len(rows)
