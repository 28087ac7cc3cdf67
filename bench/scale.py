"""Reads at scale, in a fresh process: `python -m bench.scale ROWS ...`.

ROWS jobs are put in the table first (90% of them one tenant's, the rest
spread over 100 tenants; statuses and types mixed), then one API process
answers, one request at a time, `GET /jobs` (the first page, with and without
a status filter) and `GET /jobs/stats` for the big tenant: p50/p99 in ms.
The baseline, in the same run and database: the row counts those answers
would need without Ferry's counters (`count(*)` over the tenant's jobs),
timed straight on PostgreSQL. Then 5,000 new jobs are drained by Ferry's
worker (32 threads) with the full table beside them: a claim must not slow
down because the table is large (the baseline: the same drain first, on the
empty table). Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from typing import Any

import asyncpg
import httpx

from bench.drain import ferry as drain
from bench.services import REDIS_URL, log_directory, plain
from bench.stats import percentile
from tests.support.processes import PROJECT_ROOT, api_process, ferry_env

TENANT = "big"
REQUESTS = 300
COUNTS = 20  # the baseline's queries take long: fewer of them
FILL = """
INSERT INTO jobs (id, tenant_id, type, payload, status, attempts, max_attempts,
                  created_at, updated_at, next_run_at)
SELECT gen_random_uuid(),
       CASE WHEN n % 10 = 0 THEN 'small-' || (n % 100) ELSE 'big' END,
       (ARRAY['sleep', 'email', 'webhook', 'data_processing'])[1 + n % 4],
       '{"delayMs": 0}',
       (ARRAY['COMPLETED', 'COMPLETED', 'COMPLETED', 'FAILED', 'CANCELLED'])[1 + n % 5],
       1, 5, now() - make_interval(secs => n), now(), now()
FROM generate_series(1, $1) AS n
"""
BASELINE = {
    "stats": "SELECT status, count(*) FROM jobs WHERE tenant_id = 'big' GROUP BY status",
    "list": "SELECT count(*) FROM jobs WHERE tenant_id = 'big'",
    "list_failed": "SELECT count(*) FROM jobs WHERE tenant_id = 'big' AND status = 'FAILED'",
}
ROUTES = {
    "list": "/jobs?tenantId=big&limit=20",
    "list_failed": "/jobs?tenantId=big&status=FAILED&limit=20",
    "stats": "/jobs/stats?tenantId=big",
}


def summary(latencies: list[float]) -> tuple[float, float]:
    return statistics.median(latencies), percentile(latencies, 0.99)


async def fill(database_url: str, rows: int) -> dict[str, tuple[float, float]]:
    conn = await asyncpg.connect(plain(database_url))
    try:
        await conn.execute(FILL, rows)
        await conn.execute("VACUUM ANALYZE jobs")
        baseline = {}
        for name, query in BASELINE.items():
            latencies = []
            for _ in range(COUNTS):
                start = time.perf_counter()
                await conn.fetch(query)
                latencies.append((time.perf_counter() - start) * 1000)
            baseline[name] = summary(latencies)
        return baseline
    finally:
        await conn.close()


def requests(base: str) -> dict[str, tuple[float, float]]:
    timings = {}
    with httpx.Client(base_url=base) as client:
        for name, path in ROUTES.items():
            client.get(path).raise_for_status()  # warm: connections, prepared statements
            latencies = []
            for _ in range(REQUESTS):
                start = time.perf_counter()
                client.get(path).raise_for_status()
                latencies.append((time.perf_counter() - start) * 1000)
            timings[name] = summary(latencies)
    return timings


def main() -> None:
    rows, namespace, database_url = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    print("... scale: draining 5,000 jobs, the table empty", file=sys.stderr, flush=True)
    empty = drain(5000, f"{namespace}-empty", database_url, 32, fair=True)
    print(f"... scale: {rows:,} jobs into the table", file=sys.stderr, flush=True)
    baseline = asyncio.run(fill(database_url, rows))
    env = ferry_env(
        DATABASE_URL=database_url, REDIS_URL=REDIS_URL, REDIS_NAMESPACE=namespace,
        LOG_LEVEL="WARNING",
    )  # fmt: skip
    print("... scale: list and stats, one request at a time", file=sys.stderr, flush=True)
    with log_directory() as logs, api_process(env, PROJECT_ROOT, logs / "api.log") as base:
        ferry = requests(base)
    print("... scale: draining 5,000 jobs beside them", file=sys.stderr, flush=True)
    drained = drain(5000, namespace, database_url, 32, fair=True)
    result: dict[str, Any] = {
        "rows": rows,
        "drain_jobs_per_s": drained["jobs_per_s"],
        "drain_empty_jobs_per_s": empty["jobs_per_s"],
    }
    for name in ROUTES:
        result[f"{name}_p50_ms"], result[f"{name}_p99_ms"] = ferry[name]
        result[f"{name}_count_p50_ms"], result[f"{name}_count_p99_ms"] = baseline[name]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
