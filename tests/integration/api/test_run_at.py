"""`runAt` on create: checked, and a job due far ahead waits in PostgreSQL, parked, with
no message in Redis (real app on PostgreSQL and Redis, no worker)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.models import Job
from tests.support.jobs import Client, create, new_tenant, queued_job_ids, sleep_job


def iso(moment: datetime) -> str:
    return moment.isoformat()


async def parked(engine: AsyncEngine, job_id: str) -> bool:
    async with engine.connect() as conn:
        return bool(await conn.scalar(select(Job.parked).where(Job.id == uuid.UUID(job_id))))


def queued_anywhere(namespace: str) -> set[str]:
    """Every job id a queue of the namespace holds a message for, delayed ones too."""
    return set(queued_job_ids(namespace)) | set(queued_job_ids(namespace, "jobs.DQ"))


async def test_a_job_due_months_ahead_is_parked_with_no_message_in_redis(
    client: Client, engine: AsyncEngine, namespace: str
) -> None:
    run_at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=300)
    job_id = await create(client, sleep_job(new_tenant(), runAt=iso(run_at)))
    job = (await client.get(f"/jobs/{job_id}")).json()
    assert (job["status"], datetime.fromisoformat(job["nextRunAt"])) == ("PENDING", run_at)
    assert await parked(engine, job_id)
    assert job_id not in queued_anywhere(namespace)


async def test_a_job_due_soon_is_sent_as_a_delayed_message(
    client: Client, engine: AsyncEngine, namespace: str
) -> None:
    run_at = datetime.now(UTC) + timedelta(seconds=30)  # within PARK_AFTER_MS (60 s)
    job_id = await create(client, sleep_job(new_tenant(), runAt=iso(run_at)))
    assert not await parked(engine, job_id)
    assert job_id in set(queued_job_ids(namespace, "jobs.DQ"))


async def test_a_run_at_in_the_past_is_due_now(client: Client, namespace: str) -> None:
    job_id = await create(client, sleep_job(new_tenant(), runAt="2020-01-01T00:00:00Z"))
    assert job_id in set(queued_job_ids(namespace))  # ready, not delayed
    job = (await client.get(f"/jobs/{job_id}")).json()
    assert datetime.fromisoformat(job["nextRunAt"]) > datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"runAt": iso(datetime.now(UTC) + timedelta(minutes=5)), "delayMs": 100}, "not both"),
        ({"runAt": iso(datetime.now(UTC) + timedelta(days=400))}, "days ahead"),
        ({"runAt": "2030-01-01T00:00:00"}, "timezone"),  # no offset: no instant
        ({"runAt": "tomorrow"}, "datetime"),
    ],
)
async def test_a_bad_run_at_is_a_400_naming_it_and_creates_nothing(
    client: Client, extra: dict[str, Any], says: str
) -> None:
    tenant = new_tenant()
    for path, body in (
        ("/jobs", sleep_job(tenant, **extra)),
        ("/jobs/batch", {"jobs": [sleep_job(tenant), sleep_job(tenant, **extra)]}),
    ):
        response = await client.post(path, json=body)
        assert response.status_code == 400, response.text
        [error] = response.json()["extra"]
        assert error["key"].endswith("runAt"), error
        assert says in error["message"], error
    stats = (await client.get("/jobs/stats", params={"tenantId": tenant})).json()
    assert stats["total"] == 0


async def test_a_cancelled_or_replayed_parked_job_is_parked_no_more(
    client: Client, engine: AsyncEngine
) -> None:
    run_at = datetime.now(UTC) + timedelta(days=30)
    job_id = await create(client, sleep_job(new_tenant(), runAt=iso(run_at)))
    assert await parked(engine, job_id)
    assert (await client.post(f"/jobs/{job_id}/cancel")).status_code == 200
    assert not await parked(engine, job_id)  # else the dispatcher would send it anyway
    replayed = await client.post(f"/jobs/{job_id}/retry")
    assert replayed.json()["status"] == "PENDING"
    assert not await parked(engine, job_id)  # it was sent: due now
