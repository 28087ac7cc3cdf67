"""No job is lost: real `dramatiq` worker processes, one killed with -9 mid-batch,
and the Redis database flushed mid-run. Every job still ends COMPLETED, exactly once.

A trigger records every status change of the test database, so the test sees
each transition the workers committed, including those of the dead worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis

from ferry.migrate import upgrade
from tests.helpers import new_tenant
from tests.processes import api_process, ferry_env, kill_hard, worker_process
from tests.services import postgres_database, private_redis_db

AUDIT = """
CREATE TABLE job_transitions (job_id uuid, status text, attempts int);
CREATE FUNCTION audit_transition() RETURNS trigger AS $$
BEGIN
  IF NEW.status IS DISTINCT FROM OLD.status THEN
    INSERT INTO job_transitions VALUES (NEW.id, NEW.status, NEW.attempts);
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER audit AFTER UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION audit_transition();
"""


async def _sql(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        if not sql.lstrip().upper().startswith("SELECT"):
            await conn.execute(sql)  # a script of several statements
            return []
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def sql(url: str, statement: str) -> list[asyncpg.Record]:
    return asyncio.run(_sql(url, statement))


@pytest.fixture
def audited_database() -> Iterator[str]:
    with postgres_database("ferry_chaos") as url:
        upgrade(url)
        sql(url, AUDIT)
        yield url


def counts(url: str) -> dict[str, int]:
    return {
        row["status"]: row["n"]
        for row in sql(url, "SELECT status, count(*) AS n FROM jobs GROUP BY status")
    }


def wait_until(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_no_job_is_lost_when_a_worker_dies_and_redis_is_flushed(
    audited_database: str, tmp_path: Path
) -> None:
    url = audited_database
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
        transitions = sql(url, "SELECT job_id, status, attempts FROM job_transitions")
        completed: dict[str, int] = {}
        started: dict[str, int] = {}
        for row in transitions:
            key = str(row["job_id"])
            if row["status"] == "COMPLETED":
                completed[key] = completed.get(key, 0) + 1
            if row["status"] == "RUNNING":
                started[key] = started.get(key, 0) + 1
        # Each job completed exactly once: the claim never let two runs commit.
        assert completed == {job_id: 1 for job_id in ids}
        attempts = {
            str(row["id"]): row["attempts"] for row in sql(url, "SELECT id, attempts FROM jobs")
        }
        assert started == attempts
        # The jobs the dead worker held were run again, after their lease expired.
        assert sum(1 for n in attempts.values() if n > 1) >= 1
        assert "re-sending" in (tmp_path / "survivor.log").read_text()
