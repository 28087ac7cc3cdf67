"""Retention: finished jobs deleted once they are older than their tenant's (or the
deployment's) retention, a small batch per statement.

Each batch is one short `DELETE ... WHERE id IN (SELECT ... LIMIT n FOR UPDATE SKIP
LOCKED)`, the jobs finished longest ago first (`ix_jobs_status_finished`): no
lock is held for long, and rows another transaction holds are left for later.
A batch may start where the rule's last one ended (`after`): the rows before it
that are left (another tenant's, kept longer by a rule of its own) are not read
again. On PostgreSQL the `job_counts` triggers count the deleted rows out in the
same statement, so `/jobs/stats` stays exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ferry.db.models import Job, TenantLimit

BATCH = 1000  # jobs per statement


@dataclass(frozen=True, slots=True)
class Rule:
    """Delete the jobs of `status` finished before `cutoff`: of `tenant_id`, or (None)
    of every tenant without a rule of its own for the status."""

    status: str
    cutoff: datetime
    tenant_id: str | None = None


_TENANT_RETENTION = {  # each status's column of a tenant's own retention
    "COMPLETED": TenantLimit.retention_completed_ms,
    "FAILED": TenantLimit.retention_failed_ms,
    "CANCELLED": TenantLimit.retention_cancelled_ms,
}


async def rules(
    conn: AsyncConnection, default_ms: Mapping[str, int | None], now: datetime
) -> list[Rule]:
    """The deployment's rule for each status it does not keep for ever, and each
    tenant's own rules."""
    found = [
        Rule(status, now - timedelta(milliseconds=ms))
        for status, ms in default_ms.items()
        if ms is not None
    ]
    for status, column in _TENANT_RETENTION.items():
        query = select(TenantLimit.tenant_id, column).where(column.is_not(None))
        for tenant_id, ms in await conn.execute(query):
            found.append(Rule(status, now - timedelta(milliseconds=ms or 0), tenant_id))
    return found


async def prune(
    conn: AsyncConnection, rule: Rule, batch: int = BATCH, after: datetime | None = None
) -> tuple[int, datetime | None]:
    """Delete up to `batch` jobs by `rule`, of those finished at `after` or later if
    given; how many were deleted, and when the last of them had finished (None: none)."""
    condition: list[Any] = [Job.status == rule.status, Job.finished_at < rule.cutoff]
    if after is not None:
        condition.append(Job.finished_at >= after)
    if rule.tenant_id is not None:
        condition.append(Job.tenant_id == rule.tenant_id)
    else:  # the tenants with a rule of their own for this status follow theirs
        own = select(TenantLimit.tenant_id).where(_TENANT_RETENTION[rule.status].is_not(None))
        condition.append(Job.tenant_id.not_in(own))
    chosen = (
        select(Job.id)
        .where(*condition)
        .order_by(Job.finished_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    deleting = delete(Job).where(Job.id.in_(chosen.scalar_subquery()))
    rows = (await conn.scalars(deleting.returning(Job.finished_at))).all()
    finished = [at for at in rows if at is not None]  # all: the rule asks for finished_at
    return len(rows), max(finished, default=None)
