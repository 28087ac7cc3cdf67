"""Fair scheduling with real `dramatiq` workers: a flood does not starve a quiet tenant,
weights share the workers, caps hold; and the limits routes.

Who ran when comes from the rows the workers committed (`started_at` is the
claim, `finished_at` the outcome), so the checks count jobs rather than time
them: they hold on a slow machine as on a fast one.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.engine import create_engine
from ferry.settings import Settings
from tests.support.jobs import Client, new_tenant, sleep_job
from tests.support.processes import api_process, shared_env, worker_process

# The workers here run 8 threads (prefetch 16): a shared queue of twice that, as
# the default (128) is for the 32 threads of `just worker`.
DEPTH = 32


@pytest.fixture
def env(own_database: str, own_namespace: str) -> dict[str, str]:
    return shared_env(own_database, own_namespace, FAIR_QUEUE_DEPTH=str(DEPTH))


@pytest.fixture
async def workers_db(own_database: str) -> AsyncIterator[AsyncEngine]:
    """The database the test's workers use (its own)."""
    engine = create_engine(Settings(database_url=own_database), pool_size=1)
    yield engine
    await engine.dispose()


def create(base: str, tenant: str, count: int, delay_ms: int = 0, **extra: Any) -> list[str]:
    ids: list[str] = []
    for start in range(0, count, 1000):
        jobs = [sleep_job(tenant, delay_ms, **extra) for _ in range(min(1000, count - start))]
        response = httpx.post(f"{base}/jobs/batch", json={"jobs": jobs}, timeout=30)
        assert response.status_code == 201, response.text
        ids += response.json()["jobIds"]
    return ids


def wait_completed(base: str, tenants: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    for tenant in tenants:
        while True:
            stats = httpx.get(f"{base}/jobs/stats", params={"tenantId": tenant}).json()
            if stats["completed"] == stats["total"]:
                break
            assert time.monotonic() < deadline, f"{tenant} did not finish: {stats}"
            time.sleep(0.1)


async def runs(engine: AsyncEngine, *tenants: str) -> list[dict[str, Any]]:
    """Every job of the tenants, in the order their claims were committed."""
    query = text(
        "SELECT tenant_id, created_at, started_at, finished_at FROM jobs"
        " WHERE tenant_id = ANY(:tenants) ORDER BY started_at, id"
    )
    async with engine.connect() as conn:
        return [dict(row._mapping) for row in await conn.execute(query, {"tenants": tenants})]


def most_at_once(jobs: list[dict[str, Any]]) -> int:
    """The largest number of these jobs RUNNING at one instant (claim to outcome)."""
    edges: list[tuple[datetime, int]] = []
    for job in jobs:
        edges += [(job["started_at"], 1), (job["finished_at"], -1)]
    now = peak = 0
    for _, step in sorted(edges):  # at a tie, an end (-1) sorts before a start
        now += step
        peak = max(peak, now)
    return peak


def set_limits(base: str, tenant: str, **limits: Any) -> None:
    response = httpx.put(f"{base}/tenants/{tenant}/limits", json=limits)
    assert response.status_code == 200, response.text


async def test_a_quiet_tenant_is_not_starved_by_a_flood(
    env: dict[str, str], workers_db: AsyncEngine, tmp_path: Path
) -> None:
    flood, quiet = new_tenant(), new_tenant()
    with (
        api_process(env, tmp_path, tmp_path / "api.log") as base,
        worker_process(env, tmp_path / "worker.log"),
    ):
        create(base, flood, 5000)
        create(base, quiet, 20)
        wait_completed(base, [quiet, flood])
    jobs = await runs(workers_db, flood, quiet)
    quiet_jobs = [job for job in jobs if job["tenant_id"] == quiet]
    flood_jobs = [job for job in jobs if job["tenant_id"] == flood]
    arrived = min(job["created_at"] for job in quiet_jobs)
    served = max(job["finished_at"] for job in quiet_jobs)
    # The flood had a backlog when the quiet tenant arrived (else nothing was tested)...
    assert sum(job["finished_at"] > arrived for job in flood_jobs) > 1000
    # ...and the quiet tenant's 20 jobs were all done while the flood ran at most 5%
    # of its jobs: one round of turns plus what sits in the shared queue and prefetch.
    assert sum(arrived < job["finished_at"] <= served for job in flood_jobs) <= 250


async def test_weights_share_the_workers_under_contention(
    env: dict[str, str], workers_db: AsyncEngine, tmp_path: Path
) -> None:
    heavy, light = new_tenant(), new_tenant()
    with api_process(env, tmp_path, tmp_path / "api.log") as base:
        set_limits(base, heavy, weight=3)
        create(base, heavy, 400)  # both backlogs wait before any worker runs
        create(base, light, 400)
        with worker_process(env, tmp_path / "worker.log"):
            wait_completed(base, [heavy, light])
    jobs = await runs(workers_db, heavy, light)
    # Past what the first push put straight into the shared queue, while both wait:
    window = Counter(job["tenant_id"] for job in jobs[2 * DEPTH : 2 * DEPTH + 200])
    assert 135 <= window[heavy] <= 165, window


async def test_a_tenants_higher_priority_jobs_start_before_its_backlog(
    env: dict[str, str], workers_db: AsyncEngine, tmp_path: Path
) -> None:
    tenant = new_tenant()
    with api_process(env, tmp_path, tmp_path / "api.log") as base:
        backlog = create(base, tenant, 300, priority=1)  # waits before any worker runs
        urgent = set(create(base, tenant, 10, priority=9))  # created after all of them
        with worker_process(env, tmp_path / "worker.log"):
            wait_completed(base, [tenant])
    async with workers_db.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, priority FROM jobs WHERE tenant_id = :t ORDER BY started_at, id"),
            {"t": tenant},
        )
        order = [(str(row.id), row.priority) for row in rows]
    assert {job_id for job_id, priority in order if priority == 9} == urgent
    last_urgent = max(i for i, (job_id, _) in enumerate(order) if job_id in urgent)
    # Only what the first push put straight into the shared queue (DEPTH) went first,
    # and what the worker had fetched of it: not the 290 others of the backlog.
    assert last_urgent < 2 * DEPTH, order[: last_urgent + 1]
    assert len(backlog) == 300


async def test_a_running_cap_is_never_exceeded(
    env: dict[str, str], workers_db: AsyncEngine, tmp_path: Path
) -> None:
    capped, free = new_tenant(), new_tenant()
    with api_process(env, tmp_path, tmp_path / "api.log") as base:
        set_limits(base, capped, maxRunning=2)
        with worker_process(env, tmp_path / "worker.log", threads=8):
            create(base, capped, 12, delay_ms=150)
            create(base, free, 12, delay_ms=150)
            wait_completed(base, [capped, free])
    jobs = await runs(workers_db, capped, free)
    assert most_at_once([job for job in jobs if job["tenant_id"] == capped]) == 2
    # The workers could have run more of them at once: the free tenant's did.
    assert most_at_once([job for job in jobs if job["tenant_id"] == free]) > 2


async def test_a_rate_limit_spaces_the_starts(
    env: dict[str, str], workers_db: AsyncEngine, tmp_path: Path
) -> None:
    rated = new_tenant()
    with api_process(env, tmp_path, tmp_path / "api.log") as base:
        set_limits(base, rated, ratePerSecond=10, burst=1)
        with worker_process(env, tmp_path / "worker.log"):
            create(base, rated, 8)
            wait_completed(base, [rated])
    jobs = await runs(workers_db, rated)
    # 8 jobs at 10/s with no burst: the first goes at once, each next one waits for a
    # token (100 ms). From the jobs' creation (before they were sent) to the last claim:
    created, last_start = min(job["created_at"] for job in jobs), jobs[-1]["started_at"]
    assert (last_start - created).total_seconds() >= 0.7


# -- the limits routes (the app in-process, no worker) ---------------------------------


async def test_limits_default_then_set_and_read_back(client: Client) -> None:
    tenant = new_tenant()
    default = (await client.get(f"/tenants/{tenant}/limits")).json()
    kept = {"retentionCompletedMs": None, "retentionFailedMs": None, "retentionCancelledMs": None}
    assert default == {
        "tenantId": tenant, "weight": 1, "maxRunning": None, "ratePerSecond": None,
        "burst": None, "enforced": True, **kept,
    }  # fmt: skip
    limits = {"weight": 3, "maxRunning": 5, "ratePerSecond": 2.5, "burst": 4}
    response = await client.put(f"/tenants/{tenant}/limits", json=limits)
    assert response.status_code == 200
    assert (await client.get(f"/tenants/{tenant}/limits")).json() == {
        "tenantId": tenant,
        **limits,
        "enforced": True,
        **kept,
    }
    own = {**limits, "retentionCompletedMs": 3_600_000, "retentionFailedMs": 86_400_000}
    assert (await client.put(f"/tenants/{tenant}/limits", json=own)).status_code == 200
    assert (await client.get(f"/tenants/{tenant}/limits")).json() == {
        "tenantId": tenant, **own, "retentionCancelledMs": None, "enforced": True,
    }  # fmt: skip


@pytest.mark.parametrize(
    "body",
    [{"weight": 0}, {"weight": 1001}, {"maxRunning": 0}, {"ratePerSecond": 0},
     {"ratePerSecond": -1}, {"burst": 0}, {"weight": "heavy"}, {"priority": 1},
     {"retentionCompletedMs": 0}, {"retentionFailedMs": 10**12}],
)  # fmt: skip
async def test_bad_limits_are_refused_and_change_nothing(
    client: Client, body: dict[str, Any]
) -> None:
    tenant = new_tenant()
    await client.put(f"/tenants/{tenant}/limits", json={"weight": 2})
    response = await client.put(f"/tenants/{tenant}/limits", json=body)
    assert response.status_code == 400, response.text
    assert (await client.get(f"/tenants/{tenant}/limits")).json()["weight"] == 2


async def test_stats_show_the_tenants_queue(client: Client) -> None:
    tenant = new_tenant()
    # No worker runs here: past the shared queue's depth, jobs wait in the tenant's queue.
    count = Settings().fair_queue_depth + 10
    await client.post("/jobs/batch", json={"jobs": [sleep_job(tenant)] * count})
    stats = (await client.get("/jobs/stats", params={"tenantId": tenant})).json()
    assert stats["pending"] == count
    assert stats["waiting"] >= 10
    assert stats["oldestWaitMs"] >= 0
    metrics = (await client.get("/metrics")).text
    assert f'ferry_tenant_waiting_jobs{{tenant="{tenant}"}} {float(stats["waiting"])}' in metrics
    assert f'ferry_tenant_oldest_wait_seconds{{tenant="{tenant}"}}' in metrics


def test_limits_lost_from_redis_are_written_again(
    own_database: str, own_namespace: str, tmp_path: Path
) -> None:
    env = shared_env(own_database, own_namespace, RECOVERY_INTERVAL_MS="200")
    restores_limits(env, new_tenant(), tmp_path)


def restores_limits(env: dict[str, str], tenant: str, tmp_path: Path) -> None:
    key = f"{env['REDIS_NAMESPACE']}:fair:limits:{tenant}"
    store = redis.Redis.from_url(env["REDIS_URL"])
    with (
        api_process(env, tmp_path, tmp_path / "api.log") as base,
        worker_process(env, tmp_path / "worker.log"),
    ):
        set_limits(base, tenant, maxRunning=2, weight=4)
        assert store.hgetall(key) == {b"max_running": b"2", b"weight": b"4"}
        store.delete(key)  # as after a Redis restart without persistence
        deadline = time.monotonic() + 10
        while not store.exists(key):
            assert time.monotonic() < deadline, "the recovery pass did not restore the limits"
            time.sleep(0.05)
    assert store.hgetall(key) == {b"max_running": b"2", b"weight": b"4"}
    store.close()
