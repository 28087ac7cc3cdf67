"""Schedules fired by real `dramatiq actors` processes: once per due time however many
processes fire them, across a Redis flush and a killed worker, and after downtime as
their `missed` policy says. Each test has its own database and Redis namespace."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.support.audit import sql, wait_until
from tests.support.jobs import new_tenant
from tests.support.processes import (
    api_process,
    ferry_env,
    kill_hard,
    shared_env,
    worker_process,
)
from tests.support.services import private_redis_db

EVERY_SECOND = "* * * * * *"
QUICK_RECOVERY = {
    "HEARTBEAT_MS": "200",
    "LEASE_MS": "2000",
    "RECOVERY_INTERVAL_MS": "500",
    "RECOVERY_GRACE_MS": "1000",
}


def create_schedule(base: str, tenant: str, name: str, **fields: Any) -> str:
    body = {
        "tenantId": tenant,
        "name": name,
        "cron": EVERY_SECOND,
        "job": {"type": "sleep", "payload": {"delayMs": 0}},
        **fields,
    }
    response = httpx.post(f"{base}/schedules", json=body, timeout=10)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def pause(base: str, schedule_id: str) -> None:
    response = httpx.post(f"{base}/schedules/{schedule_id}/pause", timeout=10)
    assert response.status_code == 200, response.text


def fired(url: str, schedule_id: str) -> list[Any]:
    """The schedule's jobs, by due time: (scheduled_for, created_at, status)."""
    return sql(
        url,
        "SELECT scheduled_for, created_at, status FROM jobs "
        f"WHERE schedule_id = '{schedule_id}' ORDER BY scheduled_for",
    )


def due_times(jobs: list[Any]) -> list[datetime]:
    return [job["scheduled_for"] for job in jobs]


def all_completed(url: str, schedule_id: str) -> bool:
    return all(job["status"] == "COMPLETED" for job in fired(url, schedule_id))


def gaps(times: list[datetime]) -> list[float]:
    return [(later - earlier).total_seconds() for earlier, later in pairwise(times)]


def test_three_worker_processes_fire_each_due_time_once(
    own_database: str, own_namespace: str, tmp_path: Path
) -> None:
    env = shared_env(own_database, own_namespace)
    tenant = new_tenant()
    with (
        api_process(env, tmp_path, tmp_path / "api.log") as base,
        worker_process(env, tmp_path / "workers.log", threads=2, processes=3),
    ):
        # Several schedules: three schedulers wake for each due time, and each firing
        # takes them all, so that the processes often try the same rows at once.
        ids = [create_schedule(base, tenant, f"every-second-{n}") for n in range(10)]
        time.sleep(10)
        for schedule_id in ids:
            pause(base, schedule_id)
        wait_until(
            lambda: all(all_completed(own_database, one) for one in ids), 60, "the jobs to run"
        )
        schedules = [httpx.get(f"{base}/schedules/{one}", timeout=10).json() for one in ids]
    for schedule_id, schedule in zip(ids, schedules, strict=True):
        jobs = fired(own_database, schedule_id)
        times = due_times(jobs)
        assert len(times) == len(set(times)), f"a due time fired twice: {times}"
        assert len(times) >= 8, times  # 10 s of a schedule every second
        assert gaps(times) == [1.0] * (len(times) - 1), f"a due time did not fire: {times}"
        assert all(job["created_at"] >= job["scheduled_for"] for job in jobs)
        assert datetime.fromisoformat(schedule["lastRunAt"]) == times[-1]


def test_a_schedule_keeps_firing_across_a_redis_flush_and_a_killed_worker(
    own_database: str, tmp_path: Path
) -> None:
    with private_redis_db() as redis_url:
        env = ferry_env(
            DATABASE_URL=own_database,
            REDIS_URL=redis_url,
            REDIS_NAMESPACE="flushed",
            **QUICK_RECOVERY,
        )
        with api_process(env, tmp_path, tmp_path / "api.log") as base:
            schedule_id = create_schedule(base, new_tenant(), "survivor")
            with worker_process(env, tmp_path / "doomed.log", threads=2) as doomed:
                wait_until(lambda: len(fired(own_database, schedule_id)) >= 3, 30, "3 firings")
                kill_hard(doomed)
            killed_at = max(due_times(fired(own_database, schedule_id)))
            flushed = redis.Redis.from_url(redis_url)
            flushed.flushdb()  # the queues, the fired jobs' messages, every lock
            flushed.close()
            with worker_process(env, tmp_path / "survivor.log", threads=2):
                wait_until(
                    lambda: sum(t > killed_at + timedelta(seconds=2) for t in due_times(
                        fired(own_database, schedule_id))) >= 3,
                    30,
                    "3 firings after the restart",
                )  # fmt: skip
                pause(base, schedule_id)
                wait_until(
                    lambda: all_completed(own_database, schedule_id), 30, "every fired job to run"
                )
    times = due_times(fired(own_database, schedule_id))
    assert len(times) == len(set(times)), "a due time fired twice"


def test_after_downtime_once_catches_up_with_one_run_and_skip_with_none(
    own_database: str, own_namespace: str, tmp_path: Path
) -> None:
    grace = timedelta(seconds=1)
    env = shared_env(own_database, own_namespace, SCHEDULE_GRACE_MS="1000")
    tenant = new_tenant()
    with api_process(env, tmp_path, tmp_path / "api.log") as base:
        once = create_schedule(base, tenant, "catch-up-once", missed="once")
        skip = create_schedule(base, tenant, "catch-up-skip", missed="skip")
        with worker_process(env, tmp_path / "before.log", threads=2):
            wait_until(lambda: len(fired(own_database, skip)) >= 2, 30, "2 firings")
        stopped = max(due_times(fired(own_database, skip)))
        time.sleep(5)  # no worker: 5 due times pass
        with worker_process(env, tmp_path / "after.log", threads=2):
            wait_until(
                lambda: sum(t > stopped + timedelta(seconds=6) for t in due_times(
                    fired(own_database, skip))) >= 2,
                30,
                "2 firings after the restart",
            )  # fmt: skip
            pause(base, once)
            pause(base, skip)
    # After the downtime (before it, the first worker's boot made both schedules late too).
    late = {
        name: [job for job in fired(own_database, schedule_id)
               if job["scheduled_for"] > stopped
               and job["created_at"] - job["scheduled_for"] > grace]
        for name, schedule_id in (("once", once), ("skip", skip))
    }  # fmt: skip
    assert len(late["once"]) == 1, late  # one catch-up run for the 5 s without a worker
    assert late["skip"] == [], late
    skip_times = due_times(fired(own_database, skip))
    assert max(gaps(skip_times)) >= 4, skip_times  # the missed due times got no run
    for schedule_id in (once, skip):
        times = due_times(fired(own_database, schedule_id))
        assert len(times) == len(set(times))
