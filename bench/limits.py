"""The machine's own limits, in a fresh process: `python -m bench.limits ...`.

- Redis: `redis-benchmark` (32 clients, no pipelining) running LPUSH and
  PUBLISH on keys and channels of this run's namespace: requests/s.
- PostgreSQL: 100,000 rows into the jobs table (indexes and triggers
  included) by multi-row INSERT of 1,000 rows per statement, then updated by
  `UPDATE ... WHERE id = ANY($1)` 1,000 at a time: rows/s.
Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import uuid

import asyncpg
import redis

from bench.services import REDIS_URL, plain

ROWS, CHUNK = 100_000, 1_000


def redis_rate(namespace: str, *command: str) -> float:
    """requests/s of one command under redis-benchmark (CSV output: "name","rps",...)."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise SystemExit("bench: redis-benchmark is not installed (apt-get install redis-tools)")
    client = redis.Redis.from_url(REDIS_URL)
    host, port = (
        client.connection_pool.connection_kwargs["host"],
        client.connection_pool.connection_kwargs["port"],
    )
    output = subprocess.run(
        [binary, "-h", str(host), "-p", str(port), "-c", "32", "-n", "100000", "--csv", *command],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    client.delete(f"{namespace}:limits-list")
    client.close()
    return float(output.strip().splitlines()[-1].split(",")[1].strip('"'))


async def postgres_rates(database_url: str) -> tuple[float, float]:
    conn = await asyncpg.connect(plain(database_url))
    ids = [uuid.uuid4() for _ in range(ROWS)]
    chunks = [ids[i : i + CHUNK] for i in range(0, ROWS, CHUNK)]
    try:
        start = time.perf_counter()
        for chunk in chunks:
            await conn.execute(
                "INSERT INTO jobs (id, tenant_id, type, payload, status, attempts, max_attempts,"
                " created_at, updated_at, next_run_at) SELECT id, 'limits', 'sleep',"
                " '{\"delayMs\": 0}', 'PENDING', 0, 5, now(), now(), now()"
                " FROM unnest($1::uuid[]) AS id",
                chunk,
            )
        inserted = ROWS / (time.perf_counter() - start)
        start = time.perf_counter()
        for chunk in chunks:
            await conn.execute(
                "UPDATE jobs SET status = 'RUNNING', updated_at = now() WHERE id = ANY($1)", chunk
            )
        updated = ROWS / (time.perf_counter() - start)
    finally:
        await conn.close()
    return inserted, updated


def main() -> None:
    namespace, database_url = sys.argv[1], sys.argv[2]
    lpush = redis_rate(namespace, "lpush", f"{namespace}:limits-list", "x")
    publish = redis_rate(namespace, "publish", f"{namespace}:limits-channel", "x")
    inserted, updated = asyncio.run(postgres_rates(database_url))
    print(json.dumps({"redis_lpush_per_s": lpush, "redis_publish_per_s": publish,
                      "pg_insert_rows_per_s": inserted, "pg_update_rows_per_s": updated}))  # fmt: skip


if __name__ == "__main__":
    main()
