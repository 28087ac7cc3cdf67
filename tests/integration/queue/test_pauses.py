"""Pausing a tenant, or one job type of a tenant, with real workers: its jobs wait
PENDING (created all the same) while the others run, the pause outlives a Redis flush
and a worker restart, and a resume runs what it held."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.support.audit import sql, wait_until
from tests.support.jobs import new_tenant, sleep_job
from tests.support.processes import api_process, ferry_env, shared_env, worker_process
from tests.support.services import private_redis_db


def create(base: str, jobs: list[dict[str, Any]]) -> list[str]:
    response = httpx.post(f"{base}/jobs/batch", json={"jobs": jobs}, timeout=10)
    assert response.status_code == 201, response.text
    return list(response.json()["jobIds"])


def statuses(url: str, ids: list[str]) -> set[str]:
    listed = ",".join(f"'{job_id}'" for job_id in ids)
    return {row["status"] for row in sql(url, f"SELECT status FROM jobs WHERE id IN ({listed})")}


def post(base: str, path: str, **params: str) -> dict[str, Any]:
    response = httpx.post(f"{base}{path}", params=params, timeout=10)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def sum_job(tenant: str) -> dict[str, Any]:
    payload = {"operation": "sum", "values": [1, 2]}
    return {"tenantId": tenant, "type": "data_processing", "payload": payload}


def test_paused_jobs_wait_through_a_redis_flush_and_run_once_resumed(
    own_database: str, tmp_path: Path
) -> None:
    paused, typed, free = new_tenant(), new_tenant(), new_tenant()
    with private_redis_db() as redis_url:
        env = ferry_env(
            DATABASE_URL=own_database,
            REDIS_URL=redis_url,
            REDIS_NAMESPACE="paused",
            HEARTBEAT_MS="200",
            RECOVERY_INTERVAL_MS="500",
            RECOVERY_GRACE_MS="500",
        )
        with api_process(env, tmp_path, tmp_path / "api.log") as base:
            assert post(base, f"/tenants/{paused}/pause")["paused"] is True
            assert post(base, f"/tenants/{typed}/pause", type="sleep")["pausedTypes"] == ["sleep"]
            held = create(base, [sleep_job(paused)] * 5) + create(base, [sleep_job(typed)] * 3)
            others = create(base, [sum_job(typed)] * 3) + create(base, [sleep_job(free)] * 3)
            with worker_process(env, tmp_path / "first.log", threads=4):
                wait_until(lambda: statuses(own_database, others) == {"COMPLETED"}, 30, "others")
                time.sleep(2)  # recovery passes come and go: the held jobs are not run
                assert statuses(own_database, held) == {"PENDING"}
            stats = httpx.get(f"{base}/jobs/stats", params={"tenantId": typed}).json()
            assert (stats["paused"], stats["pausedTypes"]) == (False, ["sleep"])
            flushed = redis.Redis.from_url(redis_url)
            flushed.flushdb()  # Redis forgets everything: the pauses are PostgreSQL's
            flushed.close()
            with worker_process(env, tmp_path / "second.log", threads=4):
                time.sleep(2)
                assert statuses(own_database, held) == {"PENDING"}
                resumed = post(base, f"/tenants/{paused}/resume")
                assert (resumed["paused"], resumed["resent"]) == (False, 5)
                post(base, f"/tenants/{typed}/resume", type="sleep")
                wait_until(lambda: statuses(own_database, held) == {"COMPLETED"}, 30, "resumed")
    attempts = sql(own_database, "SELECT max(attempts) AS n FROM jobs")[0]["n"]
    assert attempts == 1  # each held job ran once: skipping a message costs no attempt


def test_a_job_created_right_after_a_pause_answered_is_held(
    own_database: str, own_namespace: str, tmp_path: Path
) -> None:
    # The default heartbeat (2 s): the workers read pauses that often, and the API answers
    # a pause once they all have.
    env = shared_env(own_database, own_namespace)
    tenant = new_tenant()
    with (
        api_process(env, tmp_path, tmp_path / "api.log") as base,
        worker_process(env, tmp_path / "worker.log", threads=2),
    ):
        [warm] = create(base, [sleep_job(tenant)])  # the worker runs, its pauses read
        wait_until(lambda: statuses(own_database, [warm]) == {"COMPLETED"}, 30, "a first job")
        post(base, f"/tenants/{tenant}/pause")
        held = create(base, [sleep_job(tenant)])
        time.sleep(2.5)
        assert statuses(own_database, held) == {"PENDING"}
        post(base, f"/tenants/{tenant}/resume")
        wait_until(lambda: statuses(own_database, held) == {"COMPLETED"}, 30, "the resumed job")
