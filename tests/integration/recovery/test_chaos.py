"""Chaos with real processes: Redis restarted empty mid-run, PostgreSQL refusing
connections mid-run, an API process killed with open streams. Every job reaches a
terminal state, none completes twice, and the outages show while they last."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx

from tests.support.audit import audited_database, counts, sql, transitions, wait_until
from tests.support.jobs import new_tenant, sleep_job
from tests.support.live import seqs, statuses, stream
from tests.support.processes import api_process, ferry_env, free_port, shared_env, worker_process
from tests.support.services import ADMIN_DATABASE_URL, redis_namespace, redis_server

FAST_RECOVERY = {"RECOVERY_INTERVAL_MS": "500", "RECOVERY_GRACE_MS": "1000", "LOG_LEVEL": "WARNING"}


def ready_checks(base: str) -> tuple[int, dict[str, str]]:
    response = httpx.get(f"{base}/health/ready", timeout=10)
    return response.status_code, response.json().get("checks", {})


def test_redis_restarted_empty_mid_run_loses_no_job(tmp_path: Path) -> None:
    with audited_database() as url, redis_server(free_port(), tmp_path) as server:
        env = ferry_env(DATABASE_URL=url, REDIS_URL=server.url, **FAST_RECOVERY)
        jobs = [sleep_job(new_tenant(), 100) for _ in range(80)]
        with (
            api_process(env, tmp_path, tmp_path / "api.log") as base,
            worker_process(env, tmp_path / "worker.log", threads=4),
        ):
            ids = httpx.post(f"{base}/jobs/batch", json={"jobs": jobs}, timeout=10).json()["jobIds"]
            wait_until(lambda: counts(url).get("COMPLETED", 0) >= 10, 60, "the batch to get going")
            server.stop()  # Redis dies, with the queue in it
            wait_until(lambda: ready_checks(base)[0] == 503, 20, "readiness to report Redis down")
            assert ready_checks(base)[1]["redis"].startswith("down")
            # Creating still works: the row is committed, its message is sent later.
            during = httpx.post(f"{base}/jobs", json=sleep_job(new_tenant()), timeout=30)
            assert during.status_code == 201
            server.start()  # empty: every queued message is gone
            wait_until(lambda: ready_checks(base)[0] == 200, 20, "readiness to recover")
            everything = [*ids, during.json()["jobId"]]
            wait_until(
                lambda: counts(url).get("COMPLETED", 0) == len(everything),
                90,
                "all jobs to complete",
            )
        assert transitions(url, "COMPLETED") == {job_id: 1 for job_id in everything}


def test_postgres_refusing_connections_mid_run_loses_no_job(tmp_path: Path) -> None:
    with audited_database() as url, redis_namespace() as namespace:
        database = url.rsplit("/", 1)[1]
        env = shared_env(url, namespace, **FAST_RECOVERY)
        jobs = [sleep_job(new_tenant(), 100) for _ in range(60)]
        with (
            api_process(env, tmp_path, tmp_path / "api.log") as base,
            worker_process(env, tmp_path / "worker.log", threads=4),
        ):
            ids = httpx.post(f"{base}/jobs/batch", json={"jobs": jobs}, timeout=10).json()["jobIds"]
            wait_until(lambda: counts(url).get("COMPLETED", 0) >= 10, 60, "the batch to get going")
            sql(ADMIN_DATABASE_URL, f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
            sql(
                ADMIN_DATABASE_URL,
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'",
            )
            try:
                wait_until(
                    lambda: ready_checks(base)[0] == 503, 20, "readiness to report PostgreSQL down"
                )
                assert ready_checks(base)[1]["postgres"].startswith("down")
                started = time.monotonic()
                refused = httpx.post(f"{base}/jobs", json=sleep_job(new_tenant()), timeout=30)
                assert refused.status_code == 503, refused.text  # not a 500, not a hang
                assert time.monotonic() - started < 15
                time.sleep(1)
            finally:
                sql(ADMIN_DATABASE_URL, f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
            wait_until(lambda: ready_checks(base)[0] == 200, 30, "readiness to recover")
            wait_until(
                lambda: counts(url).get("COMPLETED", 0) == len(ids), 90, "all jobs to complete"
            )
        assert transitions(url, "COMPLETED") == {job_id: 1 for job_id in ids}


async def test_an_api_killed_with_open_streams_loses_its_clients_no_events(
    tmp_path: Path, own_database: str
) -> None:
    with redis_namespace() as namespace:
        env = shared_env(
            own_database,
            namespace,
            LOG_LEVEL="WARNING",
        )
        tenant = new_tenant()
        with (
            api_process(env, tmp_path, tmp_path / "doomed.log") as doomed,
            api_process(env, tmp_path, tmp_path / "other.log") as other,
            worker_process(env, tmp_path / "worker.log"),
        ):
            async with httpx.AsyncClient(timeout=10) as client:
                async with stream(doomed, tenant) as sse:
                    first = (await client.post(f"{other}/jobs", json=sleep_job(tenant))).json()[
                        "jobId"
                    ]
                    seen = await sse.updates(3)
                    instance = (await client.get(f"{doomed}/health")).json()["instance"]
                    pid = int(instance.rsplit(":", 1)[1])
                    os.kill(pid, signal.SIGKILL)
                    try:
                        await sse.next(timeout=10)
                        raise AssertionError("the stream of a killed process went on")
                    except (httpx.HTTPError, StopAsyncIteration):
                        pass
                missed = (await client.post(f"{other}/jobs", json=sleep_job(tenant))).json()[
                    "jobId"
                ]
                await asyncio.sleep(1)
                async with stream(other, tenant, last_event_id=seen[-1]["seq"]) as again:
                    replayed = await again.updates(3)
    assert statuses(seen) == [(first, s) for s in ("PENDING", "RUNNING", "COMPLETED")]
    assert statuses(replayed) == [(missed, s) for s in ("PENDING", "RUNNING", "COMPLETED")]
    assert seqs(replayed) == [4, 5, 6]
