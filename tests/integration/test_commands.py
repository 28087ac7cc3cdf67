"""The commands a user runs, as real processes: `just dev`, and `just api` + `just worker`."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from tests.helpers import new_tenant
from tests.processes import api_process, ferry_env, shared_env, wait_for_status, worker_process


def test_dev_runs_everything_in_one_process_on_sqlite(tmp_path: Path) -> None:
    """`just dev`: no server to install; a sleep job reaches COMPLETED."""
    with api_process(ferry_env(), tmp_path, tmp_path / "dev.log", embedded=True) as base:
        ready = httpx.get(f"{base}/health/ready").json()
        assert ready == {"status": "ok", "checks": {"sqlite": "ok", "broker": "in-process"}}
        # The seeds' walk-through, as written.
        body = {"tenantId": "tenant-1", "type": "sleep", "payload": {"delayMs": 300}}
        created = httpx.post(f"{base}/jobs", json=body)
        assert created.status_code == 201
        job = wait_for_status(base, created.json()["jobId"], {"COMPLETED", "FAILED"})
        assert (job["status"], job["attempts"]) == ("COMPLETED", 1)
        assert job["startedAt"] <= job["finishedAt"]
        listing = httpx.get(f"{base}/jobs", params={"tenantId": "tenant-1"}).json()
        assert [j["id"] for j in listing["jobs"]] == [job["id"]]
        assert httpx.get(f"{base}/schema").status_code == 200
    # The embedded default keeps its data in a local SQLite file.
    with sqlite3.connect(tmp_path / "ferry.db") as db:
        assert db.execute("SELECT status FROM jobs").fetchall() == [("COMPLETED",)]


def test_api_and_worker_processes_on_postgres_and_redis(
    database_url: str, namespace: str, tmp_path: Path
) -> None:
    """`just api` and `just worker`, configured only by the environment."""
    env = shared_env(
        database_url,
        namespace,
    )
    tenant = new_tenant()
    with (
        api_process(env, tmp_path, tmp_path / "api.log") as base,
        worker_process(env, tmp_path / "worker.log"),
    ):
        jobs = [{"tenantId": tenant, "type": "sleep", "payload": {"delayMs": 50}}] * 20
        ids = httpx.post(f"{base}/jobs/batch", json={"jobs": jobs}).json()["jobIds"]
        delayed = httpx.post(
            f"{base}/jobs",
            json={"tenantId": tenant, "type": "sleep", "payload": {"delayMs": 0}, "delayMs": 1500},
        ).json()["jobId"]
        for job_id in ids:
            assert wait_for_status(base, job_id, {"COMPLETED", "FAILED"})["status"] == "COMPLETED"
        job = wait_for_status(base, delayed, {"COMPLETED", "FAILED"})
        assert job["status"] == "COMPLETED"
        # delayMs held the first run back.
        waited = datetime.fromisoformat(job["startedAt"]) - datetime.fromisoformat(job["createdAt"])
        assert waited >= timedelta(milliseconds=1500)
        stats = httpx.get(f"{base}/jobs/stats", params={"tenantId": tenant}).json()
        assert (stats["completed"], stats["total"]) == (21, 21)
