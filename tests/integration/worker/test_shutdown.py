"""SIGTERM to a worker: what it runs finishes, what it holds goes back, nothing is lost."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

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
