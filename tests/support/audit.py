"""A database whose every job status change is recorded by a trigger, for chaos tests:
they check what the workers committed, including processes that were killed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import asyncpg

from tests.support.services import migrated_database

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


@contextmanager
def audited_database(prefix: str = "ferry_chaos") -> Iterator[str]:
    with migrated_database(prefix) as url:
        sql(url, AUDIT)
        yield url


def counts(url: str) -> dict[str, int]:
    return {
        row["status"]: row["n"]
        for row in sql(url, "SELECT status, count(*) AS n FROM jobs GROUP BY status")
    }


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def transitions(url: str, status: str) -> dict[str, int]:
    """How many times each job entered `status`."""
    seen: dict[str, int] = {}
    for row in sql(url, f"SELECT job_id FROM job_transitions WHERE status = '{status}'"):
        seen[str(row["job_id"])] = seen.get(str(row["job_id"]), 0) + 1
    return seen


def attempts(url: str) -> dict[str, int]:
    return {str(row["id"]): row["attempts"] for row in sql(url, "SELECT id, attempts FROM jobs")}
