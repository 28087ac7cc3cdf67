"""The commands a user runs, as real processes: `just dev`, and `just api` + `just worker`."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from tests.support.jobs import new_tenant
from tests.support.processes import (
    api_process,
    ferry_env,
    shared_env,
    wait_for_status,
    worker_process,
)


def test_dev_runs_everything_in_one_process_on_sqlite(tmp_path: Path) -> None:
    """`just dev`: no server to install; a sleep job reaches COMPLETED."""
    with api_process(ferry_env(), tmp_path, tmp_path / "dev.log", embedded=True) as base:
        ready = httpx.get(f"{base}/health/ready").json()
        assert ready == {
            "status": "ok",
            "checks": {"sqlite": "ok", "broker": "in-process", "jobTypes": "ok"},
        }
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
    own_database: str, own_namespace: str, tmp_path: Path
) -> None:
    """`just api` and `just worker`, configured only by the environment."""
    env = shared_env(own_database, own_namespace)
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


def test_dev_stops_on_ctrl_c_with_one_line(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) on `just dev`: a goodbye, no traceback."""
    log = tmp_path / "dev.log"
    with api_process(ferry_env(), tmp_path, log, embedded=True) as base:
        pid = int(httpx.get(f"{base}/health").json()["instance"].rsplit(":", 1)[1])
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 20
        while "ferry: stopped" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # anything it would print after
    output = log.read_text()
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert output.rstrip().endswith("ferry: stopped"), output


def test_a_second_dev_on_a_taken_port_says_so_before_doing_anything(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    with api_process(ferry_env(), first, first / "dev.log", embedded=True) as base:
        port = base.rsplit(":", 1)[1]
        again = subprocess.run(
            [sys.executable, "-m", "ferry.serve", "--embedded"],
            env=ferry_env(PORT=port),
            cwd=second,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert again.returncode == 1
    assert f"PORT={int(port) + 1} just dev" in again.stderr, again.stderr
    assert "Traceback" not in again.stderr
    assert not (second / "ferry.db").exists()  # nothing migrated, no worker started
