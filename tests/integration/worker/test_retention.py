"""Retention on PostgreSQL and SQLite: the recovery pass deletes exactly the finished jobs
past their retention (the deployment's, or their tenant's own), and the counters
`/jobs/stats` reads stay equal to a COUNT(*)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.models import Job, JobCount, TenantLimit, utcnow
from ferry.db.retention import BATCH, Rule, prune
from ferry.settings import Settings
from ferry.worker import recovery as recovery_module
from ferry.worker.recovery import Recovery
from tests.support.jobs import new_tenant

DAY = timedelta(days=1)


async def add_jobs(db: AsyncEngine, tenant: str, status: str, age: timedelta, n: int) -> None:
    now = utcnow()
    finished = now - age if status in ("COMPLETED", "FAILED", "CANCELLED") else None
    rows: list[dict[str, Any]] = [
        {
            "id": uuid.uuid4(),
            "tenant_id": tenant,
            "type": "sleep",
            "payload": {},
            "status": status,
            "max_attempts": 1,
            "created_at": now - age - DAY,
            "updated_at": now - age,
            "finished_at": finished,
        }
        for _ in range(n)
    ]
    async with db.begin() as conn:
        await conn.execute(insert(Job), rows)


async def counted(db: AsyncEngine, tenant: str) -> dict[str, int]:
    async with db.connect() as conn:
        query = select(Job.status, func.count()).where(Job.tenant_id == tenant).group_by(Job.status)
        return {status: n for status, n in await conn.execute(query)}


async def kept_counters(db: AsyncEngine, tenant: str) -> dict[str, int]:
    """What the triggers keep (PostgreSQL), without the statuses counted down to 0."""
    async with db.connect() as conn:
        query = (
            select(JobCount.status, func.sum(JobCount.n))
            .where(JobCount.tenant_id == tenant)
            .group_by(JobCount.status)
        )
        return {status: int(n) for status, n in await conn.execute(query) if n}


async def test_finished_jobs_past_their_retention_are_deleted_and_no_others(
    db: AsyncEngine,
) -> None:
    plain, own = new_tenant(), new_tenant()
    for tenant in (plain, own):
        await add_jobs(
            db, tenant, "COMPLETED", 8 * DAY, BATCH + 5
        )  # past 7 days: more than a batch
        await add_jobs(db, tenant, "COMPLETED", 6 * DAY, 3)
        await add_jobs(db, tenant, "FAILED", 31 * DAY, 2)
        await add_jobs(db, tenant, "FAILED", 8 * DAY, 4)
        await add_jobs(db, tenant, "CANCELLED", 40 * DAY, 1)
        await add_jobs(db, tenant, "PENDING", 90 * DAY, 2)  # not finished: never
        await add_jobs(db, tenant, "RUNNING", 90 * DAY, 1)
    # The tenant's own: completed kept 1 day only, failed kept for ever... 10 years.
    async with db.begin() as conn:
        await conn.execute(
            insert(TenantLimit).values(
                tenant_id=own, weight=1, retention_completed_ms=DAY // timedelta(milliseconds=1),
                retention_failed_ms=10 * 365 * 86_400_000, updated_at=utcnow(),
            )
        )  # fmt: skip
    settings = Settings(database_url="unused", retention_cancelled="0")  # cancelled: for ever
    recovery = Recovery(lambda: db, StubBroker(), settings)
    await recovery.prune_finished()
    assert await counted(db, plain) == {
        "COMPLETED": 3, "FAILED": 4, "CANCELLED": 1, "PENDING": 2, "RUNNING": 1,
    }  # fmt: skip
    assert await counted(db, own) == {"FAILED": 6, "CANCELLED": 1, "PENDING": 2, "RUNNING": 1}
    if db.dialect.name == "postgresql":
        for tenant in (plain, own):
            assert await kept_counters(db, tenant) == await counted(db, tenant)
    # Nothing more to delete: a second pass deletes nothing.
    before = recovery.pruned
    await recovery.prune_finished()
    assert recovery.pruned == before


async def test_a_batch_after_a_place_leaves_the_rows_before_it(db: AsyncEngine) -> None:
    """A rule's batches go on where its last ended (`after`): the rows left before it (a
    tenant's own longer retention) are not read again, batch after batch."""
    tenant = new_tenant()
    await add_jobs(db, tenant, "COMPLETED", 10 * DAY, 3)
    await add_jobs(db, tenant, "COMPLETED", 9 * DAY, 2)
    rule = Rule("COMPLETED", utcnow() - 7 * DAY, tenant)
    place = utcnow() - 9 * DAY - timedelta(minutes=1)
    async with db.begin() as conn:
        deleted, last = await prune(conn, rule, after=place)
    assert deleted == 2 and last is not None and last > place
    assert await counted(db, tenant) == {"COMPLETED": 3}  # those before the place
    async with db.begin() as conn:
        deleted, last = await prune(conn, rule)  # from the oldest
    assert deleted == 3 and last is not None and last < place


async def test_a_row_a_pass_went_past_is_pruned_once_the_places_start_over(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row another transaction held while its batch ran is skipped (SKIP LOCKED), and the
    rule's place moves past it: it is taken when the places start over."""
    tenant = new_tenant()
    await add_jobs(engine, tenant, "COMPLETED", 10 * DAY, 1)
    await add_jobs(engine, tenant, "COMPLETED", 9 * DAY, 2)
    async with engine.connect() as conn:
        [oldest] = (
            await conn.scalars(
                select(Job.id).where(Job.tenant_id == tenant).order_by(Job.finished_at).limit(1)
            )
        ).all()
    settings = Settings(database_url="unused", retention_completed="7d")
    recovery = Recovery(lambda: engine, StubBroker(), settings)
    async with engine.begin() as holder:
        await holder.execute(select(Job.id).where(Job.id == oldest).with_for_update())
        await recovery.prune_finished()
    assert await counted(engine, tenant) == {"COMPLETED": 1}  # held: left
    monkeypatch.setattr(recovery_module, "PRUNE_PLACES_KEPT_S", 0.0)
    await recovery.prune_finished()
    assert await counted(engine, tenant) == {}
