"""`Idempotency-Key` on POST /jobs and /jobs/batch: a repeated request creates nothing,
and the recovery pass forgets the keys a day old (on a worker inside the test
process: tests/integration/conftest.py)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.models import IdempotencyKey, utcnow
from tests.support.jobs import LONG_AGO, Client, new_tenant, sleep_job


async def jobs_of(client: Client, tenant: str) -> int:
    return int((await client.get("/jobs", params={"tenantId": tenant})).json()["total"])


async def test_a_repeated_create_returns_the_first_job_and_creates_nothing(client: Client) -> None:
    tenant, key = new_tenant(), uuid.uuid4().hex
    first = await client.post("/jobs", json=sleep_job(tenant, 5), headers={"Idempotency-Key": key})
    again = await client.post("/jobs", json=sleep_job(tenant, 5), headers={"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["jobId"] == first.json()["jobId"]
    assert again.headers["location"] == first.headers["location"]
    assert await jobs_of(client, tenant) == 1
    # Without a key, or with another one, it is a new job.
    assert (await client.post("/jobs", json=sleep_job(tenant, 5))).status_code == 201
    other = await client.post("/jobs", json=sleep_job(tenant, 5), headers={"Idempotency-Key": "x"})
    assert other.status_code == 201 and await jobs_of(client, tenant) == 3


async def test_the_same_key_with_another_body_is_a_conflict(client: Client) -> None:
    tenant, key = new_tenant(), uuid.uuid4().hex
    await client.post("/jobs", json=sleep_job(tenant, 5), headers={"Idempotency-Key": key})
    other = await client.post("/jobs", json=sleep_job(tenant, 6), headers={"Idempotency-Key": key})
    assert other.status_code == 409
    assert "Idempotency-Key" in other.json()["detail"]
    assert await jobs_of(client, tenant) == 1


async def test_keys_belong_to_their_tenant(client: Client) -> None:
    key = uuid.uuid4().hex
    for tenant in (new_tenant(), new_tenant()):
        response = await client.post(
            "/jobs", json=sleep_job(tenant), headers={"Idempotency-Key": key}
        )
        assert response.status_code == 201


async def test_a_repeated_batch_returns_the_first_ids(client: Client) -> None:
    tenant, key = new_tenant(), uuid.uuid4().hex
    body = {"jobs": [sleep_job(tenant, i) for i in range(3)]}
    first = await client.post("/jobs/batch", json=body, headers={"Idempotency-Key": key})
    again = await client.post("/jobs/batch", json=body, headers={"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["jobIds"] == first.json()["jobIds"]
    assert await jobs_of(client, tenant) == 3


async def test_concurrent_requests_with_one_key_create_one_job(client: Client) -> None:
    tenant, key = new_tenant(), uuid.uuid4().hex
    responses = await asyncio.gather(
        *[
            client.post("/jobs", json=sleep_job(tenant), headers={"Idempotency-Key": key})
            for _ in range(10)
        ]
    )
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert len({r.json()["jobId"] for r in responses}) == 1
    assert await jobs_of(client, tenant) == 1


async def test_a_key_older_than_a_day_is_taken_afresh(client: Client, engine: AsyncEngine) -> None:
    tenant, key = new_tenant(), uuid.uuid4().hex
    first = await client.post("/jobs", json=sleep_job(tenant), headers={"Idempotency-Key": key})
    async with engine.begin() as conn:
        await conn.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == key)
            .values(created_at=utcnow() - timedelta(hours=25))
        )
    again = await client.post("/jobs", json=sleep_job(tenant), headers={"Idempotency-Key": key})
    assert again.status_code == 201 and again.json()["jobId"] != first.json()["jobId"]
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT count(*) FROM idempotency_keys WHERE key = :k"), {"k": key}
        )
        assert rows.scalar_one() == 1


async def test_a_bad_key_is_a_400(client: Client) -> None:
    response = await client.post(
        "/jobs", json=sleep_job(new_tenant()), headers={"Idempotency-Key": "k" * 201}
    )
    assert response.status_code == 400 and "Idempotency-Key" in response.text


async def test_recovery_forgets_idempotency_keys_after_a_day(
    app_client: Client, worker_engine: AsyncEngine
) -> None:
    fresh, old = uuid.uuid4().hex, uuid.uuid4().hex
    for key in (fresh, old):
        response = await app_client.post(
            "/jobs", json=sleep_job(new_tenant()), headers={"Idempotency-Key": key}
        )
        assert response.status_code == 201
    async with worker_engine.begin() as conn:
        await conn.execute(
            update(IdempotencyKey).where(IdempotencyKey.key == old).values(created_at=LONG_AGO)
        )
    for _ in range(100):  # the recovery pass runs every RECOVERY_INTERVAL_MS
        async with worker_engine.connect() as conn:
            keys = await conn.execute(
                select(IdempotencyKey.key).where(IdempotencyKey.key.in_([fresh, old]))
            )
            left = set(keys.scalars())
        if old not in left:
            break
        await asyncio.sleep(0.1)
    assert left == {fresh}
