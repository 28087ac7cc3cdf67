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
from ferry.worker.bundles import BUDGET_S
from ferry.worker.lifecycle import JobLifecycle
from tests.support.jobs import Client, create, finished, new_tenant, sleep_job
from tests.support.services import TEST_REDIS_URL


def logged(settings: Settings, tenant: str) -> list[dict[str, Any]]:
    """The tenant's events in its stream, in seq order."""
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        entries: list[Any] = client.xrange(f"{settings.redis_namespace}:events:stream:{tenant}")  # type: ignore[assignment]
    finally:
        client.close()
    return [json.loads(fields[b"data"]) for _, fields in entries]


def statuses(settings: Settings, tenant: str) -> dict[str, list[tuple[str, int]]]:
    """Each job's events in the tenant's stream: (status, attempts) in order."""
    found: dict[str, list[tuple[str, int]]] = {}
    for event in logged(settings, tenant):
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


async def measured_fast(client: Client, tenant: str, below_s: float = BUDGET_S / 40) -> None:
    """Until the worker's average duration of `sleep` jobs is below `below_s` (a slow job
    of an earlier test raised it): fast jobs of `tenant`, a batch at a time."""
    durations = lifecycle().services.durations
    for _ in range(20):
        typical = durations.typical("sleep")
        if typical is not None and typical < below_s:
            return
        await all_finished(client, await create_batch(client, [sleep_job(tenant)] * 50))
    raise AssertionError(f"sleep jobs still take {durations.typical('sleep')} s on average")


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


async def test_jobs_stuck_behind_a_slow_one_are_given_back_before_it_ends(
    app_client: Client, worker_settings: Settings
) -> None:
    """The thread of a bundle gives back only between jobs: the jobs waiting behind a
    slow one are given back by the heartbeat once they have waited OVERDUE_S (1 s), and
    other threads run them while it still runs (past its time limit: 1.5 to 2.5 s)."""
    tenant = await tenant_of_short_jobs(app_client, worker_settings)
    await measured_fast(app_client, tenant)  # one thread takes the whole batch below
    slow = sleep_job(tenant, 3000, maxAttempts=1)
    ids = await create_batch(app_client, [slow] + [sleep_job(tenant) for _ in range(30)])

    jobs = await all_finished(app_client, ids)

    assert jobs[0]["status"] == "FAILED"
    assert {job["status"] for job in jobs[1:]} == {"COMPLETED"}
    # The events are appended after the commit: wait for each job's last one.
    ends = {(ids[0], "FAILED")} | {(job_id, "COMPLETED") for job_id in ids[1:]}
    for _ in range(200):
        events = logged(worker_settings, tenant)
        seq_of = {(e["jobId"], e["status"]): e["seq"] for e in events if e["attempts"] == 1}
        if ends <= seq_of.keys():
            break
        await asyncio.sleep(0.05)
    slow_ended = seq_of[(ids[0], "FAILED")]
    of_job: dict[str, list[tuple[str, int]]] = {}
    for event in events:
        of_job.setdefault(event["jobId"], []).append((event["status"], event["attempts"]))
    given_back = [("PENDING", 0), ("RUNNING", 1), ("PENDING", 0), ("RUNNING", 1), ("COMPLETED", 1)]
    back = [job_id for job_id in ids[1:] if of_job[job_id] == given_back]
    assert back, "no job waiting behind the slow one was given back"
    late = [job_id for job_id in back if seq_of[(job_id, "COMPLETED")] > slow_ended]
    assert not late, f"{len(late)} of {len(back)} given back only once the slow job ended"
