"""Group commit for creates (`ferry.service.intake`) on PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import redis
import redis.asyncio as aioredis
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.engine import create_engine
from ferry.db.jobs import Enqueued, NewRow
from ferry.db.models import Job
from ferry.events.redis_log import RedisEventLog
from ferry.queue.brokers import build_broker
from ferry.queue.sender import Sender
from ferry.service.intake import Intake
from ferry.service.jobs import JobService
from ferry.settings import Settings
from tests.support.jobs import new_tenant, queued_job_ids
from tests.support.services import TEST_REDIS_URL


@pytest.fixture
async def intake(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Intake]:
    client = aioredis.Redis.from_url(TEST_REDIS_URL)
    events = RedisEventLog(client, settings.redis_namespace, retain=1000, ttl_s=60)
    broker = build_broker(settings)
    # The app's intake: announced (events, then messages) by the job service.
    jobs = JobService(
        engine, engine, events, Sender(broker, client), default_max_attempts=3, park_after_ms=60_000
    )
    yield jobs.intake
    broker.close()
    await client.aclose()


def row(tenant: str, delay_ms: int = 0) -> NewRow:
    return NewRow(tenant, "sleep", {"delayMs": delay_ms}, max_attempts=5, delay_ms=0)


async def payloads(engine: AsyncEngine, tenant: str) -> dict[str, object]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(Job.id, Job.payload).where(Job.tenant_id == tenant))
        return {str(job_id): payload for job_id, payload in rows}


async def test_creates_that_arrive_together_share_a_transaction(
    intake: Intake, engine: AsyncEngine, settings: Settings
) -> None:
    tenant = new_tenant()
    created = await asyncio.gather(*(intake.create([row(tenant, i)]) for i in range(64)))
    assert intake.groups < 64  # grouped: fewer transactions than requests
    assert [len(jobs) for jobs in created] == [1] * 64
    ids = [str(jobs[0].id) for jobs in created]
    # Each request got its own job, stored with its own payload, announced and queued once.
    stored = await payloads(engine, tenant)
    assert {job_id: stored[job_id] for job_id in ids} == {
        job_id: {"delayMs": i} for i, job_id in enumerate(ids)
    }
    queued = queued_job_ids(settings.redis_namespace)
    assert all(queued.count(job_id) == 1 for job_id in ids)
    client = redis.Redis.from_url(TEST_REDIS_URL)
    entries: list[tuple[bytes, dict[bytes, bytes]]] = client.xrange(  # type: ignore[assignment]
        f"{settings.redis_namespace}:events:stream:{tenant}"
    )
    client.close()
    announced = [json.loads(fields[b"data"])["jobId"] for _, fields in entries]
    assert sorted(announced) == sorted(ids)


async def test_a_request_whose_rows_fail_fails_alone(intake: Intake, engine: AsyncEngine) -> None:
    tenant = new_tenant()
    too_long = "t" * 101  # longer than the column: the group's INSERT fails
    results = await asyncio.gather(
        intake.create([row(tenant, 1)]),
        intake.create([row(tenant, 2), row(too_long)]),
        intake.create([row(tenant, 3)]),
        return_exceptions=True,
    )
    assert isinstance(results[1], Exception)
    assert sorted(map(str, (await payloads(engine, tenant)).values())) == [
        "{'delayMs': 1}", "{'delayMs': 3}",
    ]  # fmt: skip


async def test_rows_are_stored_as_given(intake: Intake, engine: AsyncEngine) -> None:
    tenant = new_tenant()
    payload = {"text": "żółw ✓", "nested": {"list": [1, 2.5, None, True]}}
    [job] = await intake.create([NewRow(tenant, "echo", payload, max_attempts=2, delay_ms=1500)])
    async with engine.connect() as conn:
        stored = (await conn.execute(select(Job).where(Job.id == job.id))).one()
    assert (stored.tenant_id, stored.type, stored.payload) == (tenant, "echo", payload)
    assert (stored.status, stored.attempts, stored.max_attempts) == ("PENDING", 0, 2)
    assert stored.created_at == stored.updated_at
    assert stored.next_run_at - stored.created_at == timedelta(milliseconds=1500)


async def test_a_connection_the_server_closed_is_replaced_not_used(
    settings: Settings, engine: AsyncEngine, intake: Intake
) -> None:
    # The app's intake pool: one connection, no ping before each group.
    intake.engine = create_engine(settings, pool_size=1, pre_ping=False)
    tenant = new_tenant()
    try:
        await intake.create([row(tenant)])
        async with intake.engine.connect() as conn:
            pid = await conn.scalar(text("SELECT pg_backend_pid()"))
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await asyncio.sleep(0.2)  # the loop reads the connection's end
        [job] = await intake.create([row(tenant)])  # alone: a failed group is not retried
        assert str(job.id) in await payloads(engine, tenant)
    finally:
        await intake.engine.dispose()


async def test_a_group_whose_connection_was_lost_is_not_written_again(
    intake: Intake, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lost mid-statement, the INSERT may have committed: writing each request again
    # could store every job twice. (A stub: a connection cannot be cut at that instant.)
    calls: list[int] = []

    async def lost(engine: AsyncEngine, rows: list[NewRow], mark: object) -> list[Enqueued]:
        calls.append(len(rows))
        raise DBAPIError("INSERT", None, ConnectionError("lost"), connection_invalidated=True)

    monkeypatch.setattr("ferry.service.intake.create_jobs", lost)
    tenant = new_tenant()
    results = await asyncio.gather(
        *(intake.create([row(tenant)]) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(result, DBAPIError) for result in results), results
    assert calls == [3]  # one group, not written again request by request
