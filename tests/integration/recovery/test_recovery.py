"""No job is lost: the recovery pass re-sends the PENDING jobs no queue holds and
returns (or fails) the RUNNING jobs whose worker is gone.

With real `dramatiq` worker processes, one killed with -9 mid-batch, and the
Redis database flushed mid-run, every job still ends COMPLETED, exactly once: a
trigger records every status change of the test database, so the test sees each
transition the workers committed, including those of the dead worker. The
single cases run on a worker inside the test process (tests/integration/conftest.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import redis
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.app import create_app
from ferry.queue.fair.broker import FairRedisBroker
from ferry.queue.messages import JOBS_QUEUE, job_message
from ferry.settings import Settings
from ferry.worker.recovery import unqueued
from tests.support.audit import attempts, audited_database, counts, transitions, wait_until
from tests.support.jobs import (
    LONG_AGO,
    Client,
    create,
    finished,
    force_status,
    new_tenant,
    sleep_job,
)
from tests.support.processes import api_process, ferry_env, kill_hard, worker_process
from tests.support.services import TEST_REDIS_URL, private_redis_db, redis_namespace


@pytest.fixture
def audited() -> Iterator[str]:
    with audited_database() as url:
        yield url


def test_no_job_is_lost_when_a_worker_dies_and_redis_is_flushed(
    audited: str, tmp_path: Path
) -> None:
    url = audited
    with private_redis_db() as redis_url:
        env = ferry_env(
            DATABASE_URL=url,
            REDIS_URL=redis_url,
            REDIS_NAMESPACE="chaos",
            HEARTBEAT_MS="200",
            LEASE_MS="2000",
            RECOVERY_INTERVAL_MS="500",
            RECOVERY_GRACE_MS="1000",
        )
        jobs = [{"tenantId": new_tenant(), "type": "sleep", "payload": {"delayMs": 300}}] * 100
        with (
            api_process(env, tmp_path, tmp_path / "api.log") as base,
            worker_process(env, tmp_path / "doomed.log", threads=4) as doomed,
        ):
            ids = httpx.post(f"{base}/jobs/batch", json={"jobs": jobs}, timeout=10).json()["jobIds"]
            wait_until(lambda: counts(url).get("COMPLETED", 0) >= 15, 60, "the batch to get going")
            wait_until(lambda: counts(url).get("RUNNING", 0) > 0, 10, "a job to be running")
            kill_hard(doomed)  # kill -9, mid-batch: the jobs it was running stay RUNNING
            running_at_kill = counts(url).get("RUNNING", 0)
            flushed = redis.Redis.from_url(redis_url)
            queued_before_flush = flushed.hlen("chaos:jobs.msgs")
            with worker_process(env, tmp_path / "survivor.log", threads=4):
                time.sleep(0.5)
                flushed.flushdb()  # every queued message is gone
                flushed.close()
                wait_until(
                    lambda: counts(url).get("COMPLETED", 0) == 100, 90, "every job to complete"
                )

        assert counts(url) == {"COMPLETED": 100}
        assert running_at_kill > 0 and queued_before_flush > 0
        # Each job completed exactly once: the claim never let two runs commit.
        assert transitions(url, "COMPLETED") == {job_id: 1 for job_id in ids}
        tries = attempts(url)
        assert transitions(url, "RUNNING") == tries
        # The jobs the dead worker held were run again, after their lease expired.
        assert sum(1 for n in tries.values() if n > 1) >= 1
        assert "re-sending" in (tmp_path / "survivor.log").read_text()


def test_a_message_moving_between_queues_while_they_are_read_is_still_seen() -> None:
    """The recovery pass must not take a message for lost (and send it twice) because the
    feeder moved it from its tenant's queue into Dramatiq's between two reads."""
    with redis_namespace() as namespace:
        broker = FairRedisBroker(depth=2, url=TEST_REDIS_URL, namespace=namespace)
        sent = broker.enqueue_many([job_message(f"job-{i}", "sleep", "t") for i in range(10)])
        ready = f"{namespace}:{JOBS_QUEUE}"
        scan = broker.client.hscan_iter

        def scan_then_move(key: str, **options: Any) -> Iterator[Any]:
            yield from scan(key, **options)
            # A worker fetches what is ready (its data stays until acked) and the
            # feeder moves the next messages in, after each hash has been read.
            broker.client.delete(ready)
            broker.fair.refill()

        broker.client.hscan_iter = scan_then_move  # type: ignore[method-assign]
        try:
            held = [message.args[0] for message in sent]
            assert unqueued(broker, [*held, "job-lost"]) == {"job-lost"}
        finally:
            broker.client.close()


def test_every_job_of_a_queued_message_of_several_counts_as_held() -> None:
    """A bundle (`ferry.worker.bundles`) waiting in Dramatiq's queue holds all its jobs: none
    is sent again while it waits."""
    with redis_namespace() as namespace:
        broker = FairRedisBroker(depth=10, bundle=5, url=TEST_REDIS_URL, namespace=namespace)
        try:
            broker.fair.refill(lease_ms=60_000, short=["sleep"])  # as a worker tells it
            broker.enqueue_many([job_message(f"job-{i}", "sleep", "t") for i in range(4)])
            assert broker.client.llen(f"{namespace}:{JOBS_QUEUE}") == 1  # one message of 4
            held = [f"job-{i}" for i in range(4)]
            assert unqueued(broker, [*held, "job-lost"]) == {"job-lost"}
        finally:
            broker.client.close()


async def test_recovery_resends_a_pending_job_no_queue_holds(
    app_client: Client, worker_settings: Settings
) -> None:
    # The API could not reach Redis: the row exists, its message was never sent.
    broken = msgspec.structs.replace(worker_settings, redis_url="redis://127.0.0.1:1/0")
    async with AsyncTestClient(app=create_app(broken, run_worker=False)) as cut_off:
        job_id = await create(cut_off, sleep_job(new_tenant()))
    job = await finished(app_client, job_id, wait_s=10)
    assert (job["status"], job["attempts"]) == ("COMPLETED", 1)


async def test_recovery_returns_an_orphaned_running_job(
    app_client: Client, worker_engine: AsyncEngine
) -> None:
    # As if its worker died mid-job: RUNNING, lease long expired, no message anywhere.
    job_id = await create(app_client, sleep_job(new_tenant(), delayMs=60_000))
    await force_status(
        worker_engine, job_id, "RUNNING", attempts=1, heartbeat_at=LONG_AGO, next_run_at=None
    )
    job = await finished(app_client, job_id, wait_s=10)
    assert (job["status"], job["attempts"]) == ("COMPLETED", 2)


async def test_an_orphan_on_its_last_attempt_fails(
    app_client: Client, worker_engine: AsyncEngine
) -> None:
    job_id = await create(app_client, sleep_job(new_tenant(), delayMs=60_000, maxAttempts=1))
    await force_status(worker_engine, job_id, "RUNNING", attempts=1, heartbeat_at=LONG_AGO)
    job = await finished(app_client, job_id, wait_s=10)
    assert job["status"] == "FAILED"
    assert "worker lost" in job["error"]
