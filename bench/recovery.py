"""Two steps of the recovery pass beside rows they must leave, in a fresh process:
`python -m bench.recovery HELD LOST namespace database_url`.

The search for lost jobs behind a paused tenant's backlog.
HELD overdue PENDING jobs of a paused tenant (held: no message, on purpose), due in
groups of 1,000 at one time (as batch creates make them), then LOST overdue jobs of
another tenant whose messages are gone. Measured, on the same
database, one after the other:
- baseline: the search before windows, one query that skips the held jobs in SQL
  (an anti-join on the pauses) and reads up to SCAN_LIMIT others, every pass;
- Ferry: `Recovery.resend_lost`, pass after pass, until every lost job is sent
  again; each pass reads at most WINDOWS_PER_PASS windows of SCAN_LIMIT jobs.

Retention's pruning beside a tenant that keeps its jobs longer: HELD COMPLETED jobs
of that tenant (its own retention: 90 days) finished 30 days ago, then PRUNED jobs
of other tenants past the deployment's 7 days, deleted a batch at a time:
- baseline: every batch reads from the oldest finished job (the pruning before
  places), so each reads past the other tenant's rows;
- Ferry: each batch goes on where the last ended (`retention.prune`'s `after`).

Then, with nothing left to delete, one pass of the recovery's pruning: from the
oldest finished job (places cleared every pass, as before them), and from the
places the pass before left.

Prints one JSON line: the milliseconds of each pass (medians), how many passes
found every lost job, the seconds each pruning took, and the idle passes' ms.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from datetime import timedelta
from typing import Any

import asyncpg
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import and_, select

from bench.services import plain
from ferry.db import retention
from ferry.db.engine import create_engine
from ferry.db.models import Job, JobStatus, utcnow
from ferry.db.pauses import not_held
from ferry.queue.messages import JOBS_QUEUE
from ferry.settings import Settings
from ferry.worker import recovery as passes
from ferry.worker.recovery import SCAN_LIMIT, Recovery

FILL = """
INSERT INTO jobs (id, tenant_id, type, payload, status, attempts, max_attempts,
                  created_at, updated_at, next_run_at)
SELECT gen_random_uuid(), $2, 'sleep', '{"delayMs": 0}', 'PENDING', 0, 5,
       now() - $3 * interval '1 hour', now() - $3 * interval '1 hour',
       now() - $3 * interval '1 hour' + make_interval(secs => n / 1000)
FROM generate_series(1, $1) AS n
"""
BASELINE_PASSES = 5
PRUNED = 20_000
KEPT = """
INSERT INTO jobs (id, tenant_id, type, payload, status, attempts, max_attempts,
                  created_at, updated_at, finished_at)
SELECT gen_random_uuid(), $2, 'sleep', '{"delayMs": 0}', 'COMPLETED', 1, 5,
       now() - $3 * interval '1 day', now() - $3 * interval '1 day',
       now() - $3 * interval '1 day' + make_interval(secs => n / 1000.0)
FROM generate_series(1, $1) AS n
"""


async def fill(database_url: str, held: int, lost: int) -> None:
    conn = await asyncpg.connect(plain(database_url))
    try:
        await conn.execute(FILL, held, "paused", 3)
        await conn.execute(FILL, lost, "other", 2)
        await conn.execute(
            "INSERT INTO pauses (tenant_id, job_type, paused_at) VALUES ($1, '', now())", "paused"
        )
        await conn.execute("VACUUM ANALYZE jobs")
    finally:
        await conn.close()


async def run(database_url: str, held: int, lost: int) -> dict[str, Any]:
    await fill(database_url, held, lost)
    settings = Settings(database_url=database_url)
    engine = create_engine(settings, pool_size=2)
    try:
        baseline = []
        for _ in range(BASELINE_PASSES):
            started = time.perf_counter()
            async with engine.connect() as conn:
                due = and_(Job.next_run_at < utcnow(), not_held())
                query = select(Job.id).where(Job.status == JobStatus.PENDING, due)
                found = (
                    await conn.scalars(query.order_by(Job.next_run_at).limit(SCAN_LIMIT))
                ).all()
            baseline.append((time.perf_counter() - started) * 1000)
        broker = StubBroker()
        broker.declare_queue(JOBS_QUEUE)
        recovery = Recovery(lambda: engine, broker, settings)
        passes = []
        while recovery.resent < lost:
            started = time.perf_counter()
            await recovery.resend_lost()
            passes.append((time.perf_counter() - started) * 1000)
        return {
            "baseline_pass_ms": statistics.median(baseline),
            "baseline_found": len(found),
            "pass_ms": statistics.median(passes),
            "pass_max_ms": max(passes),
            "passes": len(passes),
            "resent": recovery.resent,
        }
    finally:
        await engine.dispose()


async def pruning(database_url: str, kept: int) -> dict[str, Any]:
    conn = await asyncpg.connect(plain(database_url))
    engine = create_engine(Settings(database_url=database_url), pool_size=2)
    try:
        await conn.execute("DELETE FROM jobs")
        await conn.execute(
            "INSERT INTO tenant_limits (tenant_id, weight, retention_completed_ms, updated_at)"
            " VALUES ('keeper', 1, $1, now())",
            90 * 86_400_000,
        )
        await conn.execute(KEPT, kept, "keeper", 30)
        seconds = {}
        for name, places in (("prune_baseline_s", False), ("prune_s", True)):
            await conn.execute(KEPT, PRUNED, "other", 8)
            await conn.execute("VACUUM ANALYZE jobs")
            rule = retention.Rule("COMPLETED", utcnow() - timedelta(days=7))
            started, after, deleted = time.perf_counter(), None, 0
            while True:
                async with engine.begin() as tx:
                    n, last = await retention.prune(tx, rule, after=after)
                deleted += n
                after = last if places and last is not None else after
                if n < retention.BATCH:
                    break
            seconds[name] = time.perf_counter() - started
            assert deleted == PRUNED, deleted
        # Nothing left to delete: a pass of the recovery's pruning, starting from the
        # oldest (places cleared, as before them) and going on from its last place.
        recovery = Recovery(lambda: engine, StubBroker(), Settings(database_url=database_url))
        for name, kept_s in (("idle_pass_baseline_ms", 0.0), ("idle_pass_ms", 3600.0)):
            passes.PRUNE_PLACES_KEPT_S = kept_s
            await recovery.prune_finished()  # the places, where they are kept
            started = time.perf_counter()
            await recovery.prune_finished()
            seconds[name] = (time.perf_counter() - started) * 1000
        return seconds
    finally:
        await engine.dispose()
        await conn.close()


def main() -> None:
    held, lost, _namespace, database_url = int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:5]
    result = asyncio.run(run(database_url, held, lost))
    result |= asyncio.run(pruning(database_url, held))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
