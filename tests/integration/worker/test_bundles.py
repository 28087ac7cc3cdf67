"""Messages of several jobs (`ferry.worker.bundles`) through the real app and its worker
(8 threads on Redis, the fair queue, PostgreSQL): each job of a bundle runs once and is
recorded with its own events; a job far slower than its type's average gives the jobs
after it back, which other threads run."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis

from ferry.settings import Settings
from ferry.worker.boot import current_broker
from ferry.worker.lifecycle import JobLifecycle
from tests.support.jobs import Client, create, finished, new_tenant, sleep_job
from tests.support.services import TEST_REDIS_URL


def statuses(settings: Settings, tenant: str) -> dict[str, list[tuple[str, int]]]:
    """Each job's events in the tenant's stream: (status, attempts) in order."""
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        entries: list[Any] = client.xrange(f"{settings.redis_namespace}:events:stream:{tenant}")  # type: ignore[assignment]
    finally:
        client.close()
    found: dict[str, list[tuple[str, int]]] = {}
    for _, fields in entries:
        event = json.loads(fields[b"data"])
        found.setdefault(event["jobId"], []).append((event["status"], event["attempts"]))
    return found


async def measured_short(settings: Settings, job_type: str = "sleep") -> None:
    """Until the worker has told the fair queue that `job_type`'s jobs are short (its
    feeder does every heartbeat)."""
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        for _ in range(200):
            if client.exists(f"{settings.redis_namespace}:fair:short:{job_type}"):
                return
            await asyncio.sleep(0.02)
    finally:
        client.close()
    raise AssertionError(f"{job_type} was never measured short")


def lifecycle() -> JobLifecycle:
    """The lifecycle middleware of the module's worker (in this process)."""
    return next(m for m in current_broker().middleware if isinstance(m, JobLifecycle))


async def create_batch(client: Client, jobs: list[dict[str, Any]]) -> list[str]:
    response = await client.post("/jobs/batch", json={"jobs": jobs})
    assert response.status_code == 201, response.text
    return [str(job_id) for job_id in response.json()["jobIds"]]


async def all_finished(client: Client, ids: list[str]) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(finished(client, job_id, wait_s=30) for job_id in ids)))


async def tenant_of_short_jobs(client: Client, settings: Settings) -> str:
    """A new tenant, once the worker has run one `sleep` job and told the fair queue the
    type is short: its next batch goes several jobs a message."""
    tenant = new_tenant()
    await finished(client, await create(client, sleep_job(tenant)))
    await measured_short(settings)
    return tenant


async def test_a_batch_of_short_jobs_runs_several_a_message_each_recorded_once(
    app_client: Client, worker_settings: Settings
) -> None:
    tenant = await tenant_of_short_jobs(app_client, worker_settings)
    before = lifecycle().ran_after_first

    ids = await create_batch(app_client, [sleep_job(tenant) for _ in range(200)])

    jobs = await all_finished(app_client, ids)
    assert {(job["status"], job["attempts"]) for job in jobs} == {("COMPLETED", 1)}
    events = statuses(worker_settings, tenant)
    for job_id in ids:
        assert events[job_id] == [("PENDING", 0), ("RUNNING", 1), ("COMPLETED", 1)]
    # Some message ran more than one job on its thread (most of them, here).
    assert lifecycle().ran_after_first - before > 0


async def test_a_slow_job_gives_back_the_jobs_after_it_and_keeps_its_own_time_limit(
    app_client: Client, worker_settings: Settings
) -> None:
    tenant = await tenant_of_short_jobs(app_client, worker_settings)
    # Far slower than its type's average, and past its time limit (`sleep`: 1,500 ms in
    # these tests, checked every second): it fails alone, and the budget is spent.
    slow = sleep_job(tenant, 3000, maxAttempts=1)
    batch = [sleep_job(tenant), slow] + [sleep_job(tenant) for _ in range(30)]

    ids = await create_batch(app_client, batch)

    jobs = await all_finished(app_client, ids)
    assert (jobs[1]["status"], jobs[1]["error"]) == ("FAILED", "time limit exceeded")
    others = jobs[:1] + jobs[2:]
    assert {(job["status"], job["attempts"]) for job in others} == {("COMPLETED", 1)}
    events = statuses(worker_settings, tenant)
    ran = [("PENDING", 0), ("RUNNING", 1), ("COMPLETED", 1)]
    given_back = [("PENDING", 0), ("RUNNING", 1), ("PENDING", 0), ("RUNNING", 1), ("COMPLETED", 1)]
    back = [job_id for job_id in ids[2:] if events[job_id] == given_back]
    assert back, "no job waiting behind the slow one was given back"
    for job_id in ids[:1] + ids[2:]:  # each ran once: given back before it started, or not
        assert events[job_id] in (ran, given_back)
