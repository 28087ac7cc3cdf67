"""SIGTERM to a worker: what it runs finishes, what it holds goes back, nothing is lost."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
from sqlalchemy import text

from ferry.db.engine import create_engine
from ferry.settings import Settings
from tests.support.jobs import new_tenant, sleep_job
from tests.support.processes import api_process, shared_env, wait_for_status, worker_process
from tests.support.services import redis_namespace


def test_a_stopped_worker_finishes_its_jobs_and_leaves_the_rest(
    own_database: str, tmp_path: Path
) -> None:
    with redis_namespace() as namespace:
        env = shared_env(own_database, namespace)
        with api_process(env, tmp_path, tmp_path / "api.log") as base:
            tenant = new_tenant()
            with worker_process(env, tmp_path / "first.log", threads=2) as first:
                jobs = [sleep_job(tenant, 1500) for _ in range(8)]
                job_ids = httpx.post(f"{base}/jobs/batch", json={"jobs": jobs}).json()["jobIds"]
                running: list[str] = []
                while len(running) < 2:  # the first worker holds two at a time
                    page = httpx.get(
                        f"{base}/jobs", params={"tenantId": tenant, "status": "RUNNING"}
                    )
                    running = [job["id"] for job in page.json()["jobs"]]
                first.send_signal(signal.SIGTERM)
                assert first.wait(timeout=30) == 0
            # It finished what it was running before it exited, once.
            for job_id in running:
                job = httpx.get(f"{base}/jobs/{job_id}").json()
                assert (job["status"], job["attempts"]) == ("COMPLETED", 1)
            with worker_process(env, tmp_path / "second.log"):
                finished = [
                    wait_for_status(base, job_id, {"COMPLETED", "FAILED"}) for job_id in job_ids
                ]
    # The messages it had fetched but not started went back to the queue: each job ran once.
    assert [(job["status"], job["attempts"]) for job in finished] == [("COMPLETED", 1)] * 8


def test_a_stopped_worker_gives_back_what_it_claimed_ahead(
    own_database: str, tmp_path: Path
) -> None:
    """Short jobs are claimed as their messages are fetched (ferry.worker.claims_ahead):
    whatever a stopping worker claimed and did not start is PENDING again, its attempt
    uncounted, before its message returns to the queue, so the next worker runs it at
    once (not after its lease) and each job runs once. (Whether any claim is left at
    the stop depends on timing; tests/integration/worker/test_claims_ahead.py gives one
    back for sure.)"""
    with redis_namespace() as namespace:
        env = shared_env(own_database, namespace)
        with api_process(env, tmp_path, tmp_path / "api.log") as base:
            tenant = new_tenant()
            with worker_process(env, tmp_path / "first.log", threads=2) as first:
                for _ in range(3):
                    jobs = [sleep_job(tenant) for _ in range(1000)]
                    httpx.post(f"{base}/jobs/batch", json={"jobs": jobs}, timeout=30)
                until_completed(base, tenant, 300)
                first.send_signal(signal.SIGTERM)
                assert first.wait(timeout=30) == 0
            with worker_process(env, tmp_path / "second.log"):
                # Well within the 30 s lease a job left RUNNING would wait for.
                until_completed(base, tenant, 3000, within_s=20)
    assert asyncio.run(attempts(own_database)) == {1: 3000}


def until_completed(base: str, tenant: str, count: int, within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    while (done := stats(base, tenant)["completed"]) < count:
        assert time.monotonic() < deadline, f"{done} of {count} jobs completed"
        time.sleep(0.1)


def stats(base: str, tenant: str) -> dict[str, int]:
    answer = httpx.get(f"{base}/jobs/stats", params={"tenantId": tenant}, timeout=10)
    return answer.json()  # type: ignore[no-any-return]


async def attempts(database_url: str) -> dict[int, int]:
    """How many jobs ran how many attempts."""
    engine = create_engine(Settings(database_url=database_url), pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT attempts, count(*) FROM jobs GROUP BY 1"))
            return {attempts: count for attempts, count in rows.all()}
    finally:
        await engine.dispose()
