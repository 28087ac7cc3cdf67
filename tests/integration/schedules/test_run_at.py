"""Jobs created with `runAt`, parked in PostgreSQL, run by a real worker in the order of
their due times, none before its time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.support.jobs import new_tenant, queued_job_ids, sleep_job
from tests.support.processes import api_process, shared_env, wait_for_status, worker_process


def test_parked_jobs_run_in_the_order_of_their_run_at_and_not_before(
    own_database: str, own_namespace: str, tmp_path: Path
) -> None:
    # Parked past half a second, so that these wait in PostgreSQL and the dispatcher sends them.
    env = shared_env(own_database, own_namespace, PARK_AFTER_MS="500")
    tenant = new_tenant()
    with (
        api_process(env, tmp_path, tmp_path / "api.log") as base,
        worker_process(env, tmp_path / "worker.log", threads=4),
    ):
        start = datetime.now(UTC)
        # 1.5 s apart: a job starts within tens of milliseconds of its time, but a busy
        # machine (the whole suite on two cores) has delayed one by half a second.
        offsets_s = [9, 3, 7.5, 6, 4.5]
        jobs = [
            sleep_job(tenant, runAt=(start + timedelta(seconds=s)).isoformat()) for s in offsets_s
        ]
        response = httpx.post(f"{base}/jobs/batch", json={"jobs": jobs}, timeout=10)
        assert response.status_code == 201, response.text
        ids = response.json()["jobIds"]
        # Parked: no queue holds them, delayed or not.
        queued = set(queued_job_ids(own_namespace)) | set(queued_job_ids(own_namespace, "jobs.DQ"))
        assert not set(ids) & queued
        done = [wait_for_status(base, job_id, {"COMPLETED"}, timeout=40) for job_id in ids]
    run_at = {
        job["id"]: start + timedelta(seconds=s) for job, s in zip(done, offsets_s, strict=True)
    }
    started = {job["id"]: datetime.fromisoformat(job["startedAt"]) for job in done}
    assert sorted(started, key=started.__getitem__) == sorted(run_at, key=run_at.__getitem__)
    for job_id in ids:
        assert started[job_id] >= run_at[job_id], "a job started before its runAt"
