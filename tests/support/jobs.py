"""Jobs as the tests make and inspect them: tenants, bodies, forced states, queued messages."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import redis
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.jobs import Enqueued
from ferry.db.models import Job
from ferry.queue.sender import Sender
from tests.support.services import TEST_REDIS_URL

Client = AsyncTestClient[Litestar]

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}
LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)  # for a heartbeat or a key far older than any limit


class SentJobs:
    """In place of a Sender: what a service sends (its `send`), kept for the test."""

    announce = Sender.announce  # the real one: the events, then this `send`

    def __init__(self) -> None:
        self.jobs: list[Enqueued] = []

    async def send(self, jobs: Sequence[Enqueued]) -> bool:
        self.jobs.extend(jobs)
        return True


def new_tenant() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def sleep_job(tenant: str, delay_ms: int = 0, **extra: Any) -> dict[str, Any]:
    return {"tenantId": tenant, "type": "sleep", "payload": {"delayMs": delay_ms}, **extra}


async def create(client: Client, body: dict[str, Any]) -> str:
    """POST /jobs, which must answer 201; the job's id."""
    response = await client.post("/jobs", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["jobId"])


async def finished(
    client: Client, job_id: str, wait_s: float = 20, statuses: set[str] = TERMINAL
) -> dict[str, Any]:
    """The job once its status is one of `statuses` (a terminal one by default)."""
    for _ in range(int(wait_s / 0.02)):
        job: dict[str, Any] = (await client.get(f"/jobs/{job_id}")).json()
        if job["status"] in statuses:
            return job
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} is still {job['status']}")


async def force_status(engine: AsyncEngine, job_id: str, status: str, **values: Any) -> None:
    """Put a job into a state directly, as a worker would have."""
    async with engine.begin() as conn:
        await conn.execute(
            update(Job).where(Job.id == uuid.UUID(job_id)).values(status=status, **values)
        )


async def count_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM jobs"))).scalar_one())


def queued_job_ids(namespace: str, queue: str = "jobs") -> list[str]:
    """Job ids of the messages waiting in a Dramatiq queue on the test Redis (for the
    jobs queue, those waiting for their tenant's turn too: see ferry.queue.fair)."""
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        messages = client.hvals(f"{namespace}:{queue}.msgs")
        if queue == "jobs":
            messages += client.hvals(f"{namespace}:fair:msgs")
    finally:
        client.close()
    return [json.loads(message)["args"][0] for message in messages]
